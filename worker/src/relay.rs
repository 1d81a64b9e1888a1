//! The relay: carries each coupon's outbox stream to Kafka.
//!
//! It reads with a consumer group (`relay`), produces one event per coupon
//! batch with the idempotent producer (acks=all, key = coupon id; replaced
//! by a new one once the broker fenced it, see [`kafka::Producer`]), and only
//! after the delivery report succeeded acknowledges the entries and trims
//! the stream up to the first one not delivered yet (`lua/delivered.lua`:
//! the stream's length is the undelivered backlog). A relay's name in the
//! group is its worker's (`relay.<WORKER_ID>`), so a worker restarted under
//! the same name carries what it held when it died at once; entries any
//! other dead relay left pending are taken over after [`RECLAIM_IDLE`].
//! While Kafka is down, entries stay pending and are retried with backoff;
//! claims keep being answered, since nothing on the claim path waits for
//! Kafka.
//!
//! Invariant 4 (nothing lost): an entry leaves the stream only after Kafka
//! has it. Delivery is at least once; the persister's insert is idempotent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coupon_core::domain::{CouponId, UserId};
use coupon_core::events::{Event, Issue};
use coupon_core::scripts::{self, CouponKeys};
use coupon_core::{kafka, metrics as names, stock, Config, RedisStore};
use rdkafka::producer::FutureRecord;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// The relays' consumer group on every outbox stream.
pub const GROUP: &str = "relay";
/// Entries per Kafka message.
const BATCH: usize = 500;
/// Pending this long without an ack, an entry is taken over from its relay
/// (a relay that is alive acks within the Kafka message timeout).
pub const RECLAIM_IDLE: Duration = Duration::from_secs(15);
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// The first wait before a coupon that failed is tried again; it doubles
/// with each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What one [`Relay::relay_coupon`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Outbox entries delivered to Kafka and acknowledged.
    pub delivered: usize,
    /// The outbox's length once they left it (the undelivered backlog);
    /// `None` when there was nothing to deliver and the stream was left
    /// as it was.
    pub backlog: Option<u64>,
}

#[derive(Clone)]
pub struct Relay {
    config: Arc<Config>,
    redis: RedisStore,
    producer: kafka::Producer,
    /// This relay's name in the consumer group.
    consumer: String,
    groups: Arc<Mutex<HashSet<CouponId>>>,
    /// Coupons whose last attempt failed: when to try again, and the wait
    /// that set.
    failing: Arc<Mutex<HashMap<CouponId, (Instant, Duration)>>>,
    reclaim_idle: Duration,
}

/// A live relay may hold an entry for as long as one delivery can take.
fn config_timeout_margin(config: &Config) -> Duration {
    config.kafka_message_timeout + Duration::from_secs(5)
}

impl Relay {
    pub fn new(config: Arc<Config>, redis: RedisStore) -> anyhow::Result<Self> {
        let producer = kafka::Producer::new(&config)?;
        let consumer = Self::consumer_name(&config);
        let reclaim_idle = RECLAIM_IDLE.max(config_timeout_margin(&config));
        Ok(Self {
            config,
            redis,
            producer,
            consumer,
            groups: Arc::default(),
            failing: Arc::default(),
            reclaim_idle,
        })
    }

    /// This worker's relay name in each outbox's consumer group. It stays
    /// the same across restarts, like the persister's static membership:
    /// a relay killed between reading entries and acknowledging them left
    /// them pending under this name, and its successor reads them back
    /// first thing instead of waiting [`RECLAIM_IDLE`] to take them over.
    pub fn consumer_name(config: &Config) -> String {
        format!("relay.{}", config.worker_id)
    }

    /// Takes over entries pending longer than `idle` (tests shorten it).
    pub fn with_reclaim_idle(mut self, idle: Duration) -> Self {
        self.reclaim_idle = idle;
        self
    }

    async fn ensure_group(&self, coupon: CouponId, key: &str) -> redis::RedisResult<()> {
        if self.groups.lock().expect("lock").contains(&coupon) {
            return Ok(());
        }
        let mut conn = self.redis.conn().await?;
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(key, GROUP, "0").await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        self.groups.lock().expect("lock").insert(coupon);
        Ok(())
    }

    /// The entries this relay should carry next for one coupon: its own
    /// pending ones (a failed produce, or taken over from a dead relay)
    /// first, then new ones.
    async fn next_entries(&self, key: &str) -> redis::RedisResult<Vec<StreamId>> {
        let mut conn = self.redis.conn().await?;
        let _: redis::Value = redis::cmd("XAUTOCLAIM")
            .arg(key)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.reclaim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(BATCH)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        for id in ["0", ">"] {
            let options = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(BATCH);
            let reply: StreamReadReply = conn.xread_options(&[key], &[id], &options).await?;
            let entries: Vec<StreamId> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        Ok(Vec::new())
    }

    /// Carries at most one batch of one coupon's outbox to Kafka.
    pub async fn relay_coupon(&self, coupon: CouponId) -> anyhow::Result<Relayed> {
        let key = CouponKeys::new(self.redis.keys(), coupon).outbox;
        self.ensure_group(coupon, &key).await?;
        let entries = self.next_entries(&key).await?;
        if entries.is_empty() {
            return Ok(Relayed::default());
        }
        let mut issues = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for entry in &entries {
            ids.push(entry.id.clone());
            let user: Option<u64> = entry.get("user");
            let issued_at_ms: Option<i64> = entry.get("issued_at_ms");
            match (user, issued_at_ms) {
                (Some(user), Some(issued_at_ms)) => issues.push(Issue {
                    user_id: UserId(user),
                    issued_at_ms,
                    outbox_id: entry.id.clone(),
                }),
                // Only the claim script writes here; log and drop rather
                // than block the stream forever.
                _ => tracing::error!(%coupon, id = %entry.id, "malformed outbox entry skipped"),
            }
        }
        if !issues.is_empty() {
            let payload = Event::issued(coupon, issues).encode();
            let key = coupon.to_string();
            let started = Instant::now();
            let delivery = self
                .producer
                .send(
                    FutureRecord::to(&self.config.kafka_topic)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(5),
                )
                .await;
            metrics::histogram!(names::KAFKA_PRODUCE_DURATION)
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = delivery {
                metrics::counter!(names::KAFKA_PRODUCE_ERRORS).increment(1);
                anyhow::bail!("producing to Kafka: {e}");
            }
        }
        // Delivered: now, and only now, the entries may leave the stream.
        let backlog = scripts::delivered(&self.redis, coupon, GROUP, &ids).await?;
        metrics::counter!(names::RELAYED_ISSUES).increment(ids.len() as u64);
        Ok(Relayed {
            delivered: ids.len(),
            backlog: Some(backlog),
        })
    }

    /// One pass over every active coupon; returns the entries delivered.
    /// A coupon that fails is logged and passed over, and tried again after
    /// a backoff of its own, so that one broken outbox does not hold up the
    /// others; the pass fails (and the caller backs off) only when every
    /// coupon it tried failed, as when Kafka or Redis is down.
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        let mut backlog = 0u64;
        let (mut tried, mut failures, mut last_error) = (0, 0, None);
        for coupon in stock::active(&self.redis).await? {
            let mut left = None;
            if self.due(coupon) {
                tried += 1;
                match self.relay_coupon(coupon).await {
                    Ok(relayed) => {
                        total += relayed.delivered;
                        left = relayed.backlog;
                        self.failing.lock().expect("lock").remove(&coupon);
                    }
                    Err(e) => {
                        let wait = self.failed(coupon);
                        tracing::warn!(%coupon, error = format!("{e:#}"), retry_in = ?wait, "relaying a coupon failed");
                        failures += 1;
                        last_error = Some(e.context(format!("relaying coupon {coupon}")));
                    }
                }
            }
            backlog += match left {
                Some(left) => left,
                None => {
                    let mut conn = self.redis.conn().await?;
                    let key = CouponKeys::new(self.redis.keys(), coupon).outbox;
                    conn.xlen::<_, u64>(&key).await.unwrap_or(0)
                }
            };
        }
        metrics::gauge!(names::OUTBOX_BACKLOG).set(backlog as f64);
        match last_error {
            Some(e) if failures == tried => Err(e),
            _ => Ok(total),
        }
    }

    /// Whether `coupon` may be tried now: it did not fail last time, or its
    /// backoff is over.
    fn due(&self, coupon: CouponId) -> bool {
        let failing = self.failing.lock().expect("lock");
        failing
            .get(&coupon)
            .is_none_or(|(at, _)| *at <= Instant::now())
    }

    /// Records that `coupon` failed; returns the wait before it is tried
    /// again.
    fn failed(&self, coupon: CouponId) -> Duration {
        let mut failing = self.failing.lock().expect("lock");
        let wait = failing
            .get(&coupon)
            .map_or(FIRST_BACKOFF, |(_, w)| (*w * 2).min(MAX_BACKOFF));
        failing.insert(coupon, (Instant::now() + wait, wait));
        wait
    }

    /// Runs until `shutdown`: relays as fast as entries come, waits a little
    /// when there are none, backs off while Kafka or Redis fails. A batch in
    /// hand is finished (delivered and acknowledged) before it stops.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.relay_once().await {
                Ok(0) => IDLE_WAIT,
                Ok(_) => {
                    backoff = FIRST_BACKOFF;
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), retry_in = ?backoff, "relay failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.producer_flush();
                    return Ok(());
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn producer_flush(&self) {
        self.producer.flush(Duration::from_secs(5));
    }

    /// The producer this relay sends with (tests check that a fenced one
    /// is replaced).
    pub fn producer(&self) -> &kafka::Producer {
        &self.producer
    }
}
