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
//! answered 410 here. Anyone with a result, or holding the coupon, still goes to Redis
//! and gets their answer.
//!
//! The answer is never earlier than Redis's (the set is taken only after
//! Redis said sold out) and never differs from it; after `valid_to` every
//! claim goes to Redis again, which answers for an ended coupon. Kept per
//! gateway, at most [`MAX_USERS`] users per coupon and [`MAX_TOTAL`] in
//! all (8 bytes each); a larger coupon is answered by Redis as before. The
//! set is read in pages of a thousand, each under a millisecond of Redis,
//! so reading it never holds Redis up for long, however large the coupon.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{self, SoldOutUsers};
use coupon_core::RedisStore;

/// Most users with a result, plus holders, a coupon may have for its set
/// to be kept (8 MB).
pub const MAX_USERS: u32 = 1_000_000;
/// Most users kept over all coupons (32 MB).
pub const MAX_TOTAL: usize = 4_000_000;
/// How soon to look again when the line was not empty yet.
const LOOK_AGAIN: Duration = Duration::from_millis(50);
/// How soon to look again after an error, or when a set did not fit.
const LOOK_LATER: Duration = Duration::from_secs(5);
/// A look that never reported back (its task was dropped) is retried after this.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

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
                now_ms < set.valid_to_ms && set.users.binary_search(&user.0).is_err()
            }
            _ => false,
        }
    }

    /// Redis answered `SOLD_OUT` for `coupon`: unless known already or
    /// looked at a moment ago, asks it in the background for the users
    /// with a result.
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
        {
            let mut coupons = self.coupons.write().unwrap_or_else(PoisonError::into_inner);
            if !due(&coupons) {
                return;
            }
            let look_at = now + LOOK_TIMEOUT;
            coupons.insert(coupon, State::Unknown { look_at });
        }
        let this = self.clone();
        let redis = redis.clone();
        tokio::spawn(async move {
            let found = scripts::sold_out_users(&redis, coupon, MAX_USERS).await;
            this.learned(coupon, found);
        });
    }

    fn learned(&self, coupon: CouponId, found: redis::RedisResult<Option<SoldOutUsers>>) {
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut coupons = self.coupons.write().unwrap_or_else(PoisonError::into_inner);
        let state = match found {
            Ok(Some(set)) => {
                // Ended coupons are answered by Redis again: forget them.
                coupons.retain(|_, s| match s {
                    State::Known(set) => now_ms < set.valid_to_ms,
                    State::Unknown { look_at } => *look_at > now,
                });
                let kept: usize = coupons
                    .values()
                    .map(|s| match s {
                        State::Known(set) => set.users.len(),
                        State::Unknown { .. } => 0,
                    })
                    .sum();
                if kept + set.users.len() <= MAX_TOTAL {
                    tracing::info!(%coupon, with_result = set.users.len(),
                        "sold out with nobody in line: the gateway answers its claims");
                    State::Known(set)
                } else {
                    State::Unknown {
                        look_at: now + LOOK_LATER,
                    }
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
    }
}
