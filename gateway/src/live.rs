//! Live updates for waiting pages, fanned out per coupon.
//!
//! However many people watch a coupon, the gateway polls Redis for it once
//! every [`POLL`] (one pipeline: the line's head, the stock, the flags) and
//! publishes a [`Snapshot`] on a `watch` channel. Each watcher works out
//! its own place from arrival numbers: the line only ever shrinks from its
//! head, so a user's 0-based rank is their arrival number minus the head's.
//! A watcher reads its own ticket from Redis only when it may have become
//! final (the head passed it, or the coupon sold out or ended). The poller
//! stops when the last watcher leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use coupon_core::domain::CouponId;
use coupon_core::scripts::CouponKeys;
use coupon_core::{stock, RedisStore};
use tokio::sync::watch;

pub const POLL: Duration = Duration::from_millis(250);

/// What every watcher of one coupon needs to know.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// False until the first poll answered.
    pub known: bool,
    /// Arrival number at the head of the line; `None` when it is empty.
    pub head_seq: Option<u64>,
    pub stock: u64,
    pub sold_out: bool,
    pub expired: bool,
    /// Admissions per second observed (or configured).
    pub rate: f64,
}

#[derive(Clone, Default)]
pub struct Hub {
    coupons: Arc<Mutex<HashMap<CouponId, watch::Sender<Snapshot>>>>,
}

impl Hub {
    /// Watches `coupon`, starting its poller if this is the first watcher.
    pub fn subscribe(&self, redis: &RedisStore, coupon: CouponId) -> watch::Receiver<Snapshot> {
        let mut coupons = self.coupons.lock().expect("hub lock");
        if let Some(sender) = coupons.get(&coupon) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Snapshot::default());
        coupons.insert(coupon, sender.clone());
        tokio::spawn(poll(self.clone(), redis.clone(), coupon, sender));
        receiver
    }

    /// Coupons being watched now (for metrics and tests).
    pub fn watched(&self) -> usize {
        self.coupons.lock().expect("hub lock").len()
    }
}

async fn poll(hub: Hub, redis: RedisStore, coupon: CouponId, sender: watch::Sender<Snapshot>) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        {
            let mut coupons = hub.coupons.lock().expect("hub lock");
            if sender.receiver_count() == 0 {
                coupons.remove(&coupon);
                return;
            }
        }
        match read(&redis, coupon).await {
            Ok(snapshot) => {
                sender.send_if_modified(|current| {
                    let changed = *current != snapshot;
                    *current = snapshot;
                    changed
                });
            }
            Err(e) => {
                tracing::debug!(%coupon, error = %e, "live poll failed; watchers fall back to their last view")
            }
        }
    }
}

type SnapshotReply = (Vec<Option<String>>, Option<i64>, Vec<(u64, f64)>);

async fn read(redis: &RedisStore, coupon: CouponId) -> redis::RedisResult<Snapshot> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    let (meta, stock, head): SnapshotReply = redis::pipe()
        .cmd("HMGET")
        .arg(&k.meta)
        .arg(&stock::FLAG_FIELDS)
        .get(&k.stock)
        .zrange_withscores(&k.queue, 0, 0)
        .query_async(&mut conn)
        .await?;
    let stock = stock.unwrap_or(0).max(0) as u64;
    let flags = stock::Flags::read(&meta, stock, Utc::now().timestamp_millis());
    Ok(Snapshot {
        known: flags.known,
        head_seq: head.first().map(|(_, s)| *s as u64),
        stock,
        sold_out: flags.sold_out,
        expired: flags.expired,
        rate: flags.rate,
    })
}
