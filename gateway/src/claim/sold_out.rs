//! Sold-out claims answered in the gateway, without a Redis round trip.
//!
//! In a storm most claims come after the coupon is gone, and each used to
//! cost an `enqueue.lua` call only to hear `SOLD_OUT`. Once a coupon is
//! sold out and nobody is left in its line, Redis's answer to a claim is
//! fixed: the user's stored ticket result if they have one,
//! `ALREADY_ISSUED` if they hold the coupon without one, `SOLD_OUT` for
//! everyone else, until the coupon's window ends (`lua/sold_out.lua` says
//! why the users with a result or the coupon cannot change from then on).
//! So when a batch hears `SOLD_OUT`, this asks Redis once, in the
//! background, for those users; from then on a claim by anyone else is
//! answered 410 here. Anyone with a result, or holding the coupon, still
//! goes to Redis and gets their answer.
//!
//! One change is possible before the end: reconciliation giving Redis back
//! an issue it had lost (`remember.lua` adds a holder with a result), or
//! Redis losing the coupon altogether. So while a set is kept, it is
//! checked against Redis every [`RECHECK`] (one small call: the sizes of
//! the results and holders); when they differ, the set is dropped, claims
//! go to Redis, and the next `SOLD_OUT` reads it again.
//!
//! The answer is never earlier than Redis's (the set is taken only after
//! Redis said sold out) and differs from it only for a user Redis took
//! back, for at most [`RECHECK`]; after `valid_to` every claim goes to
//! Redis again, which answers for an ended coupon. Kept per
//! gateway, at most [`MAX_USERS`] users per coupon and [`MAX_TOTAL`] in
//! all (8 bytes each); a larger coupon is answered by Redis as before. The
//! set is read in pages of 5,000, each 2 to 3 ms of Redis (no longer than
//! a claim script call), so reading it never holds Redis up for long,
//! however large the coupon, and a coupon of 10,000 takes a few round
//! trips: under a storm's load each takes milliseconds, and until the set
//! is read every claim still goes to Redis.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{self, SoldOutCheck, SoldOutUsers};
use coupon_core::RedisStore;

/// Most users with a result, plus holders, a coupon may have for its set
/// to be kept (8 MB).
pub const MAX_USERS: u32 = 1_000_000;
/// Most users kept over all coupons (32 MB).
pub const MAX_TOTAL: usize = 4_000_000;
/// How soon to look again when the line was not empty yet (the admitter
/// drains it in the pass that sells the coupon out, so within a few
/// milliseconds; a look is one small script call).
const LOOK_AGAIN: Duration = Duration::from_millis(10);
/// How soon to look again after an error, or when a set did not fit.
const LOOK_LATER: Duration = Duration::from_secs(5);
/// A look that never reported back (its task was dropped) is retried after this.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a kept set is checked against Redis.
pub const RECHECK: Duration = Duration::from_secs(1);

enum State {
    /// Not known: a look is under way, or the last one found nothing to
    /// keep; the next `SOLD_OUT` looks again from `look_at`.
    Unknown {
        look_at: Instant,
    },
    Known(SoldOutUsers),
}

/// The sold-out coupons this gateway answers for itself.
#[derive(Default)]
pub struct SoldOut {
    coupons: RwLock<HashMap<CouponId, State>>,
}

impl SoldOut {
    /// Whether `user`'s claim on `coupon` at `now_ms` is `SOLD_OUT` by
    /// what is known here; `false` means: ask Redis.
    pub fn turns_away(&self, coupon: CouponId, user: UserId, now_ms: i64) -> bool {
        let coupons = self.coupons.read().unwrap_or_else(PoisonError::into_inner);
        match coupons.get(&coupon) {
            Some(State::Known(set)) => {
                now_ms < set.check.valid_to_ms && set.users.binary_search(&user.0).is_err()
            }
            _ => false,
        }
    }

    /// Redis answered `SOLD_OUT` for `coupon`: unless known already or
    /// looked at a moment ago, asks it in the background for the users
    /// with a result or the coupon, as many as there is room for.
    pub fn heard(self: &Arc<Self>, redis: &RedisStore, coupon: CouponId) {
        let now = Instant::now();
        let due = |coupons: &HashMap<CouponId, State>| match coupons.get(&coupon) {
            Some(State::Known(_)) => false,
            Some(State::Unknown { look_at }) => *look_at <= now,
            None => true,
        };
        if !due(&self.coupons.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let room = {
            let mut coupons = self.coupons.write().unwrap_or_else(PoisonError::into_inner);
            if !due(&coupons) {
                return;
            }
            let look_at = now + LOOK_TIMEOUT;
            coupons.insert(coupon, State::Unknown { look_at });
            forget_ended(&mut coupons, now);
            MAX_TOTAL.saturating_sub(kept(&coupons))
        };
        // A coupon too large for the room left is told apart by the check
        // alone, before any user is read.
        let most = MAX_USERS.min(u32::try_from(room).unwrap_or(u32::MAX));
        let this = self.clone();
        let redis = redis.clone();
        tokio::spawn(async move {
            let found = scripts::sold_out_users(&redis, coupon, most).await;
            if let Some(check) = this.learned(coupon, found) {
                this.watch(&redis, coupon, most, check).await;
            }
        });
    }

    /// Keeps what was found; returns its check when the set is kept.
    fn learned(
        &self,
        coupon: CouponId,
        found: redis::RedisResult<Option<SoldOutUsers>>,
    ) -> Option<SoldOutCheck> {
        let now = Instant::now();
        let mut coupons = self.coupons.write().unwrap_or_else(PoisonError::into_inner);
        let state = match found {
            Ok(Some(set)) => {
                forget_ended(&mut coupons, now);
                // Looks for two coupons at once may both have had the room.
                if kept(&coupons) + set.users.len() <= MAX_TOTAL {
                    tracing::info!(%coupon, users = set.users.len(),
                        "sold out with nobody in line: the gateway answers its claims");
                    let check = set.check;
                    coupons.insert(coupon, State::Known(set));
                    return Some(check);
                }
                State::Unknown {
                    look_at: now + LOOK_LATER,
                }
            }
            Ok(None) => State::Unknown {
                look_at: now + LOOK_AGAIN,
            },
            Err(e) => {
                tracing::warn!(%coupon, error = %e, "could not read a sold-out coupon's results");
                State::Unknown {
                    look_at: now + LOOK_LATER,
                }
            }
        };
        coupons.insert(coupon, state);
        None
    }

    /// Every [`RECHECK`], while the set read under `check` is kept and its
    /// coupon has not ended, asks Redis whether the check still holds;
    /// drops the set when it does not. A failed call keeps the set: until
    /// Redis answers, the claims it would get fail anyway.
    async fn watch(&self, redis: &RedisStore, coupon: CouponId, most: u32, check: SoldOutCheck) {
        loop {
            tokio::time::sleep(RECHECK).await;
            if !self.keeps(coupon, check) {
                return;
            }
            match scripts::sold_out_check(redis, coupon, most).await {
                Ok(now) if now == Some(check) => {}
                Ok(_) => {
                    tracing::info!(%coupon,
                        "a sold-out coupon's users changed in Redis: its claims go to Redis again");
                    self.drop_set(coupon, check);
                    return;
                }
                Err(e) => {
                    tracing::warn!(%coupon, error = %e, "could not check a sold-out coupon");
                }
            }
        }
    }

    /// Whether the set read under `check` is kept, and its coupon not over.
    fn keeps(&self, coupon: CouponId, check: SoldOutCheck) -> bool {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let coupons = self.coupons.read().unwrap_or_else(PoisonError::into_inner);
        matches!(coupons.get(&coupon),
            Some(State::Known(set)) if set.check == check && now_ms < check.valid_to_ms)
    }

    /// Drops the set read under `check`; the next `SOLD_OUT` looks again.
    fn drop_set(&self, coupon: CouponId, check: SoldOutCheck) {
        let mut coupons = self.coupons.write().unwrap_or_else(PoisonError::into_inner);
        if matches!(coupons.get(&coupon), Some(State::Known(set)) if set.check == check) {
            coupons.insert(
                coupon,
                State::Unknown {
                    look_at: Instant::now(),
                },
            );
        }
    }
}

/// Forgets coupons past their end (Redis answers them again) and looks
/// long overdue.
fn forget_ended(coupons: &mut HashMap<CouponId, State>, now: Instant) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    coupons.retain(|_, s| match s {
        State::Known(set) => now_ms < set.check.valid_to_ms,
        State::Unknown { look_at } => *look_at + LOOK_TIMEOUT > now,
    });
}

/// Users kept over all coupons.
fn kept(coupons: &HashMap<CouponId, State>) -> usize {
    coupons
        .values()
        .map(|s| match s {
            State::Known(set) => set.users.len(),
            State::Unknown { .. } => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(valid_to_ms: i64, users: Vec<u64>) -> redis::RedisResult<Option<SoldOutUsers>> {
        let check = SoldOutCheck {
            valid_to_ms,
            results: users.len() as u64,
            holders: 0,
        };
        Ok(Some(SoldOutUsers { check, users }))
    }

    #[test]
    fn turns_away_only_users_outside_the_set_and_only_before_the_end() {
        let sold_out = SoldOut::default();
        let (coupon, end) = (CouponId(1), 1_000);
        assert!(
            !sold_out.turns_away(coupon, UserId(9), 0),
            "nothing known yet"
        );
        sold_out.learned(coupon, Ok(None));
        assert!(!sold_out.turns_away(coupon, UserId(9), 0), "not ready yet");
        sold_out.learned(coupon, set(end, vec![2, 5]));
        assert!(sold_out.turns_away(coupon, UserId(9), end - 1));
        assert!(!sold_out.turns_away(coupon, UserId(2), end - 1));
        assert!(!sold_out.turns_away(coupon, UserId(5), end - 1));
        assert!(!sold_out.turns_away(coupon, UserId(9), end), "ended");
        assert!(
            !sold_out.turns_away(CouponId(2), UserId(9), 0),
            "another coupon"
        );
    }

    #[test]
    fn ended_coupons_are_forgotten_and_the_total_is_bounded() {
        let sold_out = SoldOut::default();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let later = now_ms + 3_600_000;
        sold_out.learned(CouponId(1), set(now_ms - 1, vec![1]));
        sold_out.learned(CouponId(2), set(later, (0..MAX_TOTAL as u64 - 1).collect()));
        let coupons = sold_out.coupons.read().unwrap();
        assert!(!coupons.contains_key(&CouponId(1)), "ended, forgotten");
        assert_eq!(kept(&coupons), MAX_TOTAL - 1);
        drop(coupons);
        // No room for two more users.
        sold_out.learned(CouponId(3), set(later, vec![1, 2]));
        assert!(!sold_out.turns_away(CouponId(3), UserId(9), now_ms));
        assert!(sold_out.turns_away(CouponId(2), UserId(u64::MAX), now_ms));
    }
}
