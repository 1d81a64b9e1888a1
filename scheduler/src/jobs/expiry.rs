//! Expiry: coupons past `valid_to` become `expired` in MySQL and Redis;
//! everyone still waiting is rejected EXPIRED; new claims get 422
//! NOT_ACTIVE (the enqueue script checks the window). After the grace
//! period (`TICKET_TTL_SECS`), a finished coupon's Redis state is removed,
//! once its outbox is empty; tickets then read their end from MySQL.

use chrono::Utc;
use coupon_core::domain::CouponId;
use coupon_core::scripts::{self, CouponKeys};
use coupon_core::{metrics as names, stock};
use redis::AsyncCommands;

use super::Ctx;

/// Users rejected per script call.
const CHUNK: u32 = 5000;

pub async fn run(ctx: &Ctx) -> anyhow::Result<u64> {
    let now = Utc::now();
    let expired = sqlx::query(
        "UPDATE coupon SET status = 'expired' WHERE status <> 'expired' AND valid_to <= ?",
    )
    .bind(now.naive_utc())
    .execute(&ctx.db)
    .await?
    .rows_affected();
    metrics::counter!(names::COUPONS_EXPIRED).increment(expired);

    let mut changed = expired;
    let mut conn = ctx.redis.conn().await?;
    for coupon in stock::active(&ctx.redis).await? {
        let k = CouponKeys::new(ctx.redis.keys(), coupon);
        let meta: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&k.meta)
            .arg(&["valid_to_ms", "status", "expired_ms", "sold_out_ms"])
            .query_async(&mut conn)
            .await?;
        let number = |i: usize| {
            meta.get(i)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok())
        };
        let Some(valid_to) = number(0) else {
            // No meta: nothing to end; forget the coupon.
            let _: () = conn
                .srem(stock::active_key(ctx.redis.keys()), coupon.0)
                .await?;
            continue;
        };
        let now_ms = now.timestamp_millis();
        if now_ms >= valid_to {
            loop {
                let rejected = scripts::expire(&ctx.redis, coupon, now_ms, CHUNK).await?;
                metrics::counter!(names::TICKETS_EXPIRED).increment(rejected);
                changed += rejected;
                if rejected == 0 {
                    break;
                }
            }
        }
        let finished_at = number(2).or(number(3));
        let grace = ctx.config.ticket_ttl.as_millis() as i64;
        if finished_at.is_some_and(|t| now_ms - t >= grace) && clean_up(ctx, coupon, &k).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Removes a finished coupon's Redis state if nothing is still on its way
/// (line, admitted set and outbox empty). Returns whether it did.
async fn clean_up(ctx: &Ctx, coupon: CouponId, k: &CouponKeys) -> anyhow::Result<bool> {
    let mut conn = ctx.redis.conn().await?;
    let (waiting, admitted, outbox): (u64, u64, u64) = redis::pipe()
        .zcard(&k.queue)
        .zcard(&k.admitted)
        .xlen(&k.outbox)
        .query_async(&mut conn)
        .await?;
    if waiting + admitted + outbox > 0 {
        return Ok(false);
    }
    let reconcile = ctx.redis.keys().coupon(coupon.0, "reconcile");
    redis::pipe()
        .atomic()
        .del(&[
            &k.meta,
            &k.stock,
            &k.queue,
            &k.admitted,
            &k.results,
            &k.issued,
            &k.seq,
            &k.outbox,
            &k.outcomes,
            &reconcile,
        ])
        .ignore()
        .srem(stock::active_key(ctx.redis.keys()), coupon.0)
        .ignore()
        .query_async::<()>(&mut conn)
        .await?;
    tracing::info!(%coupon, "finished coupon's Redis state cleaned up");
    Ok(true)
}
