//! The calendar day of the daily limit, in `DAILY_LIMIT_TZ`, and the
//! day's counters after a Redis loss.
//!
//! The caller computes the day once and passes it to the claim script, so a
//! batch that runs across midnight counts every user against one day, with
//! no race between reading the clock and writing the counter.
//!
//! The per-user counters (`daily:{u<user>}:<day>`) live only in Redis. If
//! Redis loses its data they are gone while MySQL still holds the day's
//! issues, and a user could be issued up to `DAILY_LIMIT` more that day.
//! [`restore`] raises them again from `coupon_issue`; every warm-up calls it
//! before it writes a coupon's metadata, which is what lets claims in, so
//! after a loss no claim is decided against counters MySQL has not raised.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use redis::AsyncCommands;
use sqlx::MySqlPool;

use crate::domain::UserId;
use crate::keys::Keys;
use crate::redis_store::RedisStore;
use crate::scripts;

/// Extra life for a day's counters after the day ends, for claims in flight.
const GRACE: Duration = Duration::hours(1);

/// A day in the limit's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Day {
    /// `YYYYMMDD`.
    pub label: String,
    /// Seconds the day's counters should live: until the day ends, plus grace.
    pub ttl_secs: u64,
    /// When the day starts and ends (exclusive), as instants: the issues
    /// of the day are the rows whose `issued_at` falls in between.
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

pub fn day_of(now: DateTime<Utc>, tz: Tz) -> Day {
    let date = now.with_timezone(&tz).date_naive();
    let starts = start_of(date, tz);
    let ends = date
        .succ_opt()
        .map_or(starts + Duration::days(1), |next| start_of(next, tz));
    let ttl = (ends - now + GRACE).num_seconds().max(60);
    Day {
        label: date.format("%Y%m%d").to_string(),
        ttl_secs: ttl as u64,
        starts,
        ends,
    }
}

/// The first instant of `date` in `tz`: its midnight, or, where the clocks
/// skip midnight (a daylight-saving change at 00:00), the first whole hour
/// that exists.
fn start_of(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    (0..3)
        .find_map(|hour| {
            tz.with_ymd_and_hms(date.year(), date.month(), date.day(), hour, 0, 0)
                .earliest()
        })
        .map_or_else(
            || date.and_time(NaiveTime::MIN).and_utc(),
            |start| start.with_timezone(&Utc),
        )
}

/// The key that says `day`'s counters were raised from MySQL: set last, so
/// its presence means a restore finished; Redis losing its data loses it
/// too, which is how a loss is noticed. The daily rollover removes it with
/// the day's counters.
pub fn restored_key(keys: &Keys, day: &Day) -> String {
    keys.global(&format!("daily:restored:{}", day.label))
}

/// Makes `day`'s counters count at least the issues MySQL holds for that
/// day, unless that was done already (since Redis last lost its data).
/// Returns how many counters were raised, `None` when there was nothing to
/// do.
///
/// Raising never lowers a counter, so restores running side by side, or
/// while claims go on, are safe. What it cannot see: issues Redis made
/// before the loss that are still on their way to MySQL (in Kafka) when it
/// reads. Reconciliation counts those when their rows arrive
/// ([`scripts::remember`]); until then each of those users could be issued
/// one more that day. A row of a coupon that arrives after this read but
/// before that coupon's warm-up reads its holders is never counted: the
/// warm-up makes its user a holder, so reconciliation sees nothing to take
/// back.
pub async fn restore(redis: &RedisStore, db: &MySqlPool, day: &Day) -> anyhow::Result<Option<u64>> {
    let marker = restored_key(redis.keys(), day);
    let mut conn = redis.conn().await?;
    if conn.exists(&marker).await? {
        return Ok(None);
    }
    let counts: Vec<(u64, i64)> = sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM coupon_issue \
         WHERE issued_at >= ? AND issued_at < ? GROUP BY user_id",
    )
    .bind(day.starts)
    .bind(day.ends)
    .fetch_all(db)
    .await?;
    let counts: Vec<(UserId, u32)> = counts
        .into_iter()
        .map(|(user, n)| (UserId(user), u32::try_from(n).unwrap_or(u32::MAX)))
        .collect();
    let raised = scripts::raise_daily(redis, day, &counts).await?;
    let _: () = conn.set_ex(&marker, 1, day.ttl_secs).await?;
    if raised > 0 {
        tracing::warn!(
            day = %day.label,
            users = counts.len(),
            raised,
            "daily counters were behind MySQL (Redis lost its data?); raised them"
        );
    }
    Ok(Some(raised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_turns_at_midnight_in_the_zone() {
        let seoul = chrono_tz::Asia::Seoul;
        let before = "2026-11-24T14:59:59Z".parse().unwrap(); // 23:59:59 in Seoul
        let after = "2026-11-24T15:00:00Z".parse().unwrap(); // 00:00:00 next day
        let a = day_of(before, seoul);
        let b = day_of(after, seoul);
        assert_eq!(a.label, "20261124");
        assert_eq!(b.label, "20261125");
        assert_eq!(a.ttl_secs, 1 + 3600);
        assert_eq!(b.ttl_secs, 86_400 + 3600);
        assert_eq!(a.ends, after);
        assert_eq!(b.starts, after);
        assert_eq!(a.ends - a.starts, Duration::days(1));
    }

    #[test]
    fn a_day_with_a_clock_change_is_as_long_as_it_is() {
        let new_york = chrono_tz::America::New_York;
        // 2026-11-01: clocks go back at 02:00, the day has 25 hours.
        let day = day_of("2026-11-01T12:00:00Z".parse().unwrap(), new_york);
        assert_eq!(day.label, "20261101");
        assert_eq!(
            day.starts,
            "2026-11-01T04:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            day.ends,
            "2026-11-02T05:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // Havana skipped midnight on 2026-03-08 (00:00 became 01:00).
        let havana = chrono_tz::America::Havana;
        let day = day_of("2026-03-08T12:00:00Z".parse().unwrap(), havana);
        assert_eq!(
            day.starts,
            "2026-03-08T05:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
