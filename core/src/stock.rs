//! A coupon's live state in Redis, all under its hash tag:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `coupon:{id}:stock` | string | coupons left to hand out |
//! | `coupon:{id}:meta` | hash | title, total, valid_from_ms, valid_to_ms, rate |
//! | `coupon:{id}:queue` | sorted set | waiting users by arrival order |
//! | `coupon:{id}:outcomes` | hash | claim outcomes by reason |
//!
//! MySQL is the source of truth for what a coupon *is*; Redis holds what is
//! happening to it now. Warm-up copies the first into the second, so that the
//! claim path never needs MySQL.

use redis::AsyncCommands;

use crate::coupons::Coupon;
use crate::domain::CouponId;
use crate::keys::Keys;
use crate::redis_store::RedisStore;

/// Claim outcomes, as counted by the claim script.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub issued: u64,
    pub sold_out: u64,
    pub already_issued: u64,
    pub daily_limit: u64,
}

/// What Redis says about one coupon right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// `None` when the coupon was never warmed up (or Redis lost it).
    pub stock: Option<u64>,
    pub waiting: u64,
    pub outcomes: Outcomes,
}

pub fn stock_key(keys: &Keys, id: CouponId) -> String {
    keys.coupon(id.0, "stock")
}

pub fn meta_key(keys: &Keys, id: CouponId) -> String {
    keys.coupon(id.0, "meta")
}

pub fn queue_key(keys: &Keys, id: CouponId) -> String {
    keys.coupon(id.0, "queue")
}

pub fn outcomes_key(keys: &Keys, id: CouponId) -> String {
    keys.coupon(id.0, "outcomes")
}

/// Makes the coupon ready for the claim path. The stock is set only if it is
/// absent (`SET NX`), so warming up a coupon that is being claimed never
/// gives back stock that was handed out; the metadata is rewritten.
pub async fn warm_up(
    redis: &RedisStore,
    coupon: &Coupon,
    default_rate: u32,
) -> redis::RedisResult<()> {
    let keys = redis.keys();
    let mut conn = redis.conn().await?;
    let rate = coupon.admission_rate_per_sec.unwrap_or(default_rate);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(stock_key(keys, coupon.id))
        .arg(coupon.remaining_quantity)
        .arg("NX")
        .ignore()
        .hset_multiple(
            meta_key(keys, coupon.id),
            &[
                ("title", coupon.title.clone()),
                ("total", coupon.total_quantity.to_string()),
                (
                    "valid_from_ms",
                    coupon.valid_from.timestamp_millis().to_string(),
                ),
                (
                    "valid_to_ms",
                    coupon.valid_to.timestamp_millis().to_string(),
                ),
                ("rate", rate.to_string()),
                ("status", coupon.status.clone()),
            ],
        )
        .ignore()
        .sadd(keys.global("coupons:active"), coupon.id.0)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
}

/// Live state of several coupons in one round trip.
pub async fn live(redis: &RedisStore, ids: &[CouponId]) -> redis::RedisResult<Vec<Live>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys = redis.keys();
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.get(stock_key(keys, *id))
            .zcard(queue_key(keys, *id))
            .hgetall(outcomes_key(keys, *id));
    }
    let mut conn = redis.conn().await?;
    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in replies.chunks(3) {
        let stock: Option<i64> = redis::from_redis_value(&chunk[0])?;
        let waiting: u64 = redis::from_redis_value(&chunk[1])?;
        let counts: std::collections::HashMap<String, u64> = redis::from_redis_value(&chunk[2])?;
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        out.push(Live {
            stock: stock.map(|s| s.max(0) as u64),
            waiting,
            outcomes: Outcomes {
                issued: count("issued"),
                sold_out: count("sold_out"),
                already_issued: count("already_issued"),
                daily_limit: count("daily_limit"),
            },
        });
    }
    Ok(out)
}

/// The live stock of one coupon, if Redis knows it.
pub async fn stock(redis: &RedisStore, id: CouponId) -> redis::RedisResult<Option<u64>> {
    let mut conn = redis.conn().await?;
    let stock: Option<i64> = conn.get(stock_key(redis.keys(), id)).await?;
    Ok(stock.map(|s| s.max(0) as u64))
}
