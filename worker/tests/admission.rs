//! The admitter keeps a coupon's admission rate: no more than its tokens
//! allow, and all that they allow, however high the rate is set (the admin
//! API takes up to 100,000 a second, more than one `admit.lua` call takes);
//! and the pass that sells a coupon out drains its line at once.

use std::sync::Arc;

use chrono::Utc;
use coupon_core::domain::UserId;
use coupon_core::scripts::{self, Claimant, CouponKeys, Enqueued};
use coupon_core::testing::{redis_coupon, TestEnv};
use coupon_core::{daily, RedisStore};
use redis::AsyncCommands;
use worker::admitter::{AdmitReport, Admitter};

/// One admitter pass over a Redis-only coupon of `stock` at `rate` a
/// second (a second's worth banked) with `users` waiting in its line: what
/// the pass decided, and how many are still waiting.
async fn one_pass(stock: u32, rate: u32, users: u64) -> (AdmitReport, u64) {
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    let coupon = redis_coupon(&redis, 1, stock, rate).await.id;
    let now = Utc::now();
    let day = daily::day_of(now, env.config.daily_limit_tz);
    let claimants: Vec<Claimant> = (1..=users)
        .map(|u| Claimant::new(redis.keys(), UserId(u), &day.label, now.timestamp_millis()))
        .collect();
    for page in claimants.chunks(256) {
        let answers = scripts::enqueue_many(&redis, coupon, page, 1)
            .await
            .unwrap();
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Enqueued::Waiting { .. })),
            "every claimant joins the line: {answers:?}"
        );
    }

    let admitter = Admitter::new(Arc::new(env.config.clone()), redis.clone());
    let report = admitter.admit_once(coupon).await.unwrap();

    let keys = CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await.unwrap();
    let waiting: u64 = conn.zcard(&keys.queue).await.unwrap();
    (report, waiting)
}

fn decided(issued: u64, rejected: u64) -> AdmitReport {
    AdmitReport { issued, rejected }
}

#[tokio::test]
async fn a_rate_above_one_calls_batch_is_kept() {
    // 100,000 a second: all 5,000 are due now, in calls of 1,000.
    assert_eq!(
        one_pass(3000, 100_000, 5000).await,
        (decided(3000, 2000), 0)
    );
}

#[tokio::test]
async fn a_low_rate_admits_only_its_tokens() {
    // 10 a second: 10 are due now, not 50.
    assert_eq!(one_pass(100, 10, 50).await, (decided(10, 0), 40));
}

#[tokio::test]
async fn the_pass_that_sells_out_tells_the_whole_line() {
    // 10 due, 5 coupons: the fifth issue ends the sale, and the 40 behind
    // the tokens hear it in the same pass.
    assert_eq!(one_pass(5, 10, 50).await, (decided(5, 45), 0));
}

#[tokio::test]
async fn the_last_coupon_of_a_full_batch_ends_the_sale_in_that_pass() {
    // The 10 due take exactly the 10 coupons: nobody of the call hears
    // SOLD_OUT, the stock says it.
    assert_eq!(one_pass(10, 10, 50).await, (decided(10, 40), 0));
}
