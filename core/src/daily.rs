//! The calendar day of the daily limit, in `DAILY_LIMIT_TZ`.
//!
//! The caller computes the day once and passes it to the claim script, so a
//! batch that runs across midnight counts every user against one day, with
//! no race between reading the clock and writing the counter.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use chrono_tz::Tz;

/// Extra life for a day's counters after the day ends, for claims in flight.
const GRACE: Duration = Duration::hours(1);

/// A day in the limit's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Day {
    /// `YYYYMMDD`.
    pub label: String,
    /// Seconds the day's counters should live: until the day ends, plus grace.
    pub ttl_secs: u64,
}

pub fn day_of(now: DateTime<Utc>, tz: Tz) -> Day {
    let local = now.with_timezone(&tz);
    let next_midnight = tz
        .with_ymd_and_hms(local.year(), local.month(), local.day(), 0, 0, 0)
        .earliest()
        .map(|m| m + Duration::days(1))
        .unwrap_or_else(|| now.with_timezone(&tz) + Duration::days(1));
    let ttl = (next_midnight.with_timezone(&Utc) - now + GRACE)
        .num_seconds()
        .max(60);
    Day {
        label: local.format("%Y%m%d").to_string(),
        ttl_secs: ttl as u64,
    }
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
    }
}
