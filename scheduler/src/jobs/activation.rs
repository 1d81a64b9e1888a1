//! Activation: coupons that open within [`LEAD`] (or are open now) get
//! their Redis state ready from MySQL, so the first second of an event needs
//! no MySQL at all. A coupon whose Redis state is missing (never warmed, or
//! Redis lost it) is warmed with the stock, the holders and today's
//! per-user counts MySQL knows ([`stock::warm_up`]), so after a Redis loss
//! nobody is issued the same coupon twice or more than the daily limit.

use chrono::{Duration, Utc};
use coupon_core::coupons::Coupon;
use coupon_core::scripts::CouponKeys;
use coupon_core::stock;
use redis::AsyncCommands;

use super::Ctx;

/// How long before `valid_from` a coupon is made ready.
const LEAD: Duration = Duration::minutes(10);

pub async fn run(ctx: &Ctx) -> anyhow::Result<u64> {
    let now = Utc::now();
    let due: Vec<Coupon> = sqlx::query_as(
        "SELECT id, title, total_quantity, remaining_quantity, valid_from, valid_to, status, \
                admission_rate_per_sec, created_at \
         FROM coupon WHERE status = 'active' AND valid_to > ? AND valid_from <= ?",
    )
    .bind(now.naive_utc())
    .bind((now + LEAD).naive_utc())
    .fetch_all(&ctx.db)
    .await?;
    let mut warmed = 0;
    let mut conn = ctx.redis.conn().await?;
    for coupon in due {
        let k = CouponKeys::new(ctx.redis.keys(), coupon.id);
        let known: bool = conn.exists(&k.meta).await?;
        if known {
            continue;
        }
        let holders = stock::warm_up(&ctx.redis, &ctx.db, &ctx.config, &coupon).await?;
        tracing::info!(coupon = %coupon.id, stock = coupon.remaining_quantity, holders, "coupon warmed up");
        warmed += 1;
    }
    Ok(warmed)
}
