//! A coupon's live state in Redis, all under its hash tag:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `coupon:{id}:stock` | string | coupons left to hand out |
//! | `coupon:{id}:meta` | hash | title, total, valid_from_ms, valid_to_ms, rate, status, sold_out, observed_rate |
//! | `coupon:{id}:queue` | sorted set | waiting users, score = arrival number |
//! | `coupon:{id}:seq` | string | arrival counter |
//! | `coupon:{id}:admitted` | sorted set | users taken from the line, claim in flight |
//! | `coupon:{id}:results` | hash | user -> `I:<issued_at_ms>` or `R:<REASON>` |
//! | `coupon:{id}:issued` | set | users who hold the coupon |
//! | `coupon:{id}:outbox` | stream | one entry per issue, for the relay |
//! | `coupon:{id}:outcomes` | hash | claim outcomes by reason |
//! | `coupons:active` | set | coupons the admitter and relay look at |
//!
//! MySQL is the source of truth for what a coupon *is*; Redis holds what is
//! happening to it now. Warm-up copies the first into the second (with the
//! coupon's holders and the day's per-user counts, which a Redis loss would
//! otherwise forget), so that the claim path never needs MySQL.

use chrono::Utc;
use redis::AsyncCommands;

use crate::config::Config;
use crate::coupons::Coupon;
use crate::daily;
use crate::domain::CouponId;
use crate::keys::Keys;
use crate::redis_store::RedisStore;
use crate::scripts::CouponKeys;

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
    CouponKeys::new(keys, id).stock
}

/// Makes a coupon MySQL holds ready for the claim path, in this order:
///
/// 1. today's daily counters count at least the issues MySQL holds for
///    today ([`daily::restore`]: nothing to do unless Redis lost its data
///    or the day just began);
/// 2. the users with a row are put in the issued set;
/// 3. the stock and metadata are written ([`warm_up_redis_only`]). The
///    stock is the total less those same rows, not the row's
///    `remaining_quantity` read earlier: a row that arrives in between is
///    then either counted in both or in neither, and reconciliation gives
///    Redis the latter ([`crate::scripts::remember`]) exactly once.
///
/// Claims need the metadata, so they see the coupon only after its holders
/// and the day's counts are back: after a Redis loss nobody is issued a
/// coupon twice or past the daily limit, whoever warms a coupon up first
/// (the admin API, the activation job or a claim). Returns how many
/// holders MySQL knew.
pub async fn warm_up(
    redis: &RedisStore,
    db: &sqlx::MySqlPool,
    config: &Config,
    coupon: &Coupon,
) -> anyhow::Result<usize> {
    daily::restore(redis, db, &daily::day_of(Utc::now(), config.daily_limit_tz)).await?;
    let holders = crate::coupons::holders(db, coupon.id).await?;
    let k = CouponKeys::new(redis.keys(), coupon.id);
    let mut conn = redis.conn().await?;
    for chunk in holders.chunks(1000) {
        let ids: Vec<u64> = chunk.iter().map(|u| u.0).collect();
        let _: () = conn.sadd(&k.issued, ids).await?;
    }
    let coupon = Coupon {
        remaining_quantity: coupon
            .total_quantity
            .saturating_sub(u32::try_from(holders.len()).unwrap_or(u32::MAX)),
        ..coupon.clone()
    };
    warm_up_redis_only(redis, &coupon, config.admission_rate_per_sec).await?;
    Ok(holders.len())
}

/// Writes a coupon's stock and metadata, and nothing else: for a coupon
/// only Redis knows (the script tests), and the last step of [`warm_up`],
/// which every coupon in MySQL goes through. The stock is set only if it
/// is absent (`SET NX`), so warming up a coupon that is being claimed never
/// gives back stock that was handed out; the metadata is rewritten.
pub async fn warm_up_redis_only(
    redis: &RedisStore,
    coupon: &Coupon,
    default_rate: u32,
) -> redis::RedisResult<()> {
    let k = CouponKeys::new(redis.keys(), coupon.id);
    let mut conn = redis.conn().await?;
    let rate = coupon.admission_rate_per_sec.unwrap_or(default_rate);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&k.stock)
        .arg(coupon.remaining_quantity)
        .arg("NX")
        .ignore()
        .hset_multiple(
            &k.meta,
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
        .sadd(active_key(redis.keys()), coupon.id.0)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
}

/// Live state of several coupons in one round trip.
pub async fn live(redis: &RedisStore, ids: &[CouponId]) -> redis::RedisResult<Vec<Live>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        let k = CouponKeys::new(redis.keys(), *id);
        pipe.get(k.stock).zcard(k.queue).hgetall(k.outcomes);
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

/// The set of coupons the admitter and the relay work on.
pub fn active_key(keys: &Keys) -> String {
    keys.global("coupons:active")
}

/// Coupons in the active set.
pub async fn active(redis: &RedisStore) -> redis::RedisResult<Vec<CouponId>> {
    let mut conn = redis.conn().await?;
    let ids: Vec<u64> = conn.smembers(active_key(redis.keys())).await?;
    Ok(ids.into_iter().map(CouponId).collect())
}

/// What Redis knows about one user's ticket for one coupon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TicketState {
    /// False when the coupon's Redis state is gone (never warmed, or
    /// cleaned up after the coupon ended).
    pub coupon_known: bool,
    /// `I:<issued_at_ms>` or `R:<REASON>`.
    pub result: Option<String>,
    /// 0-based rank in the waiting line.
    pub rank: Option<u64>,
    pub admitted: bool,
    pub sold_out: bool,
    pub expired: bool,
    pub stock: u64,
    pub total: u64,
    /// Admissions per second actually observed, or the configured rate.
    pub rate: f64,
    /// Arrival number of this user and of the line's head: how far the line
    /// has moved since the user joined.
    pub own_seq: Option<u64>,
    pub head_seq: Option<u64>,
    pub last_seq: u64,
}

/// The meta fields that say how a coupon stands now, in the order
/// [`Flags::read`] expects them.
pub const FLAG_FIELDS: [&str; 6] = [
    "valid_to_ms",
    "status",
    "sold_out",
    "rate",
    "observed_rate",
    "total",
];

/// How a coupon stands now, from its meta hash and stock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flags {
    /// False when Redis has no meta for the coupon.
    pub known: bool,
    pub sold_out: bool,
    pub expired: bool,
    /// Admissions per second observed (or the configured rate).
    pub rate: f64,
    pub total: u64,
}

impl Flags {
    /// `meta` holds the values of [`FLAG_FIELDS`], in order.
    pub fn read(meta: &[Option<String>], stock: u64, now_ms: i64) -> Self {
        let field = |i: usize| meta.get(i).cloned().flatten();
        let number = |i: usize| field(i).and_then(|v| v.parse::<f64>().ok());
        let valid_to = number(0);
        Self {
            known: valid_to.is_some(),
            sold_out: field(2).is_some() || (valid_to.is_some() && stock == 0),
            expired: field(1).as_deref() == Some("expired")
                || valid_to.is_some_and(|t| now_ms as f64 >= t),
            rate: number(4).or(number(3)).unwrap_or(1.0).max(0.001),
            total: number(5).unwrap_or(0.0) as u64,
        }
    }
}

/// One transaction: everything a ticket answer needs, as of one moment.
pub async fn ticket_state(
    redis: &RedisStore,
    coupon: CouponId,
    user: crate::domain::UserId,
    now_ms: i64,
) -> redis::RedisResult<TicketState> {
    let k = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    #[allow(clippy::type_complexity)]
    let (meta, stock, result, rank, admitted, own, head, last): (
        Vec<Option<String>>,
        Option<i64>,
        Option<String>,
        Option<u64>,
        Option<f64>,
        Option<f64>,
        Vec<(u64, f64)>,
        Option<u64>,
    ) = redis::pipe()
        // Atomic: a claim script running between these reads could move the
        // user from "admitted" to "decided" unseen, leaving no trace at all.
        .atomic()
        .cmd("HMGET")
        .arg(&k.meta)
        .arg(&FLAG_FIELDS)
        .get(&k.stock)
        .hget(&k.results, user.0)
        .zrank(&k.queue, user.0)
        .zscore(&k.admitted, user.0)
        .zscore(&k.queue, user.0)
        .zrange_withscores(&k.queue, 0, 0)
        .get(&k.seq)
        .query_async(&mut conn)
        .await?;
    let stock = stock.unwrap_or(0).max(0) as u64;
    let flags = Flags::read(&meta, stock, now_ms);
    Ok(TicketState {
        coupon_known: flags.known,
        result,
        rank,
        admitted: admitted.is_some(),
        sold_out: flags.sold_out,
        expired: flags.expired,
        stock,
        total: flags.total,
        rate: flags.rate,
        own_seq: own.map(|s| s as u64),
        head_seq: head.first().map(|(_, s)| *s as u64),
        last_seq: last.unwrap_or(0),
    })
}
