//! Daily rollover: the daily counters expire by themselves a little after
//! their day ends; this job removes any that outlived that (a counter
//! written without its expiry, or a clock moved), leaving today's and
//! yesterday's alone so claims in flight around midnight are unaffected.

use chrono::{Duration, Utc};
use coupon_core::{daily, RedisStore};

use super::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<u64> {
    let tz = ctx.config.daily_limit_tz;
    let yesterday = daily::day_of(Utc::now() - Duration::days(1), tz).label;
    let pattern = ctx.redis.keys().global("daily:*");
    let mut conn = ctx.redis.conn().await?;
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, keys) = RedisStore::scan_page(&mut conn, &pattern, cursor, 1000).await?;
        let stale: Vec<&String> = keys
            .iter()
            .filter(|k| {
                k.rsplit(':')
                    .next()
                    .is_some_and(|day| day.len() == 8 && day < yesterday.as_str())
            })
            .collect();
        if !stale.is_empty() {
            removed += redis::cmd("UNLINK")
                .arg(&stale)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}
