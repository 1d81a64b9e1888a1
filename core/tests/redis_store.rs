//! With Redis down, a burst of callers waiting for the shared connection is
//! answered by one attempt to open it, not by one attempt each in turn.

use coupon_core::config::Secret;
use coupon_core::testing::{dead_port, TestEnv};
use coupon_core::RedisStore;
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread")]
async fn callers_waiting_on_a_failed_attempt_share_its_error() {
    let mut config = TestEnv::unmigrated(&[]).config;
    config.redis_url = Secret::new(format!("redis://127.0.0.1:{}", dead_port()));
    let redis = RedisStore::new(&config).unwrap();

    let outcomes = join_all((0..20).map(|_| {
        let redis = redis.clone();
        async move { redis.conn().await.map(|_| ()) }
    }))
    .await;

    for outcome in &outcomes {
        let error = outcome.as_ref().expect_err("Redis is down");
        assert_eq!(error.kind(), redis::ErrorKind::IoError, "{error}");
    }
    assert_eq!(redis.connection_attempts(), 1);

    // A later caller tries again rather than repeating an old failure.
    assert!(redis.conn().await.is_err());
    assert_eq!(redis.connection_attempts(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_opens_once_and_is_shared() {
    let env = TestEnv::unmigrated(&[]);
    let redis = RedisStore::new(&env.config).unwrap();
    let outcomes = join_all((0..20).map(|_| {
        let redis = redis.clone();
        async move { redis.ping().await }
    }))
    .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(redis.connection_attempts(), 1);
}
