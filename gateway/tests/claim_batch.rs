//! The claim batcher against a real Redis: claims arriving together share
//! `enqueue.lua` calls, and each still gets its own exact answer.

use std::collections::HashMap;

use chrono::Utc;
use coupon_core::daily::day_of;
use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{Claimant, Enqueued};
use coupon_core::testing::{redis_coupon, TestEnv};
use coupon_core::RedisStore;
use futures::future::join_all;
use gateway::claim::batch::Enqueuer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_two_coupons_gives_every_user_one_place() {
    const USERS: u64 = 400;
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    redis_coupon(&redis, 1, 10, 100).await;
    redis_coupon(&redis, 2, 10, 100).await;
    let enqueuer = Enqueuer::default();
    let day = day_of(Utc::now(), env.config.daily_limit_tz).label;
    let now = Utc::now().timestamp_millis();

    // Every user claims each coupon twice, all at once, interleaved, plus
    // claims on a coupon Redis does not know.
    let claims: Vec<(u64, u64)> = (0..USERS * 4)
        .map(|i| (1 + i % 2, 1 + (i / 2) % USERS))
        .chain((1..=5).map(|u| (3, u)))
        .collect();
    let answers = join_all(claims.iter().map(|&(coupon, user)| {
        let claimant = Claimant::new(redis.keys(), UserId(user), &day, now);
        enqueuer.enqueue(&redis, CouponId(coupon), claimant, env.config.daily_limit)
    }))
    .await;

    // Per coupon: each user holds one place, joined exactly once, and the
    // places are 0..USERS, each given once.
    let mut places: HashMap<(u64, u64), (u64, usize)> = HashMap::new();
    for (&(coupon, user), answer) in claims.iter().zip(answers) {
        match answer.unwrap() {
            Enqueued::Waiting { rank, joined, .. } => {
                let place = places.entry((coupon, user)).or_insert((rank, 0));
                assert_eq!(place.0, rank, "user {user} moved on coupon {coupon}");
                place.1 += usize::from(joined);
            }
            Enqueued::NoCoupon => assert_eq!(coupon, 3),
            other => panic!("coupon {coupon} user {user}: {other:?}"),
        }
    }
    for coupon in [1, 2] {
        let mut ranks: Vec<u64> = places
            .iter()
            .filter(|((c, _), _)| *c == coupon)
            .map(|(_, (rank, joined))| {
                assert_eq!(*joined, 1, "joined once");
                *rank
            })
            .collect();
        ranks.sort_unstable();
        assert_eq!(ranks, (0..USERS).collect::<Vec<_>>(), "coupon {coupon}");
    }
}
