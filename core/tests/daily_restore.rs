//! The daily counters after a Redis loss: `daily::restore` against the real
//! MySQL and Redis raises each counter to the day's rows, never lowers one,
//! counts only the day's rows, and runs once per day until Redis loses its
//! data again.

use chrono::{Duration, Utc};
use coupon_core::coupons::{self, NewCoupon, NewIssue};
use coupon_core::daily::{self, Day};
use coupon_core::domain::{CouponId, Email, Role, UserId};
use coupon_core::scripts::daily_key;
use coupon_core::testing::{lose_redis, TestEnv};
use coupon_core::{users, RedisStore};
use redis::AsyncCommands;
use sqlx::MySqlPool;

struct Fixture {
    db: MySqlPool,
    redis: RedisStore,
    today: Day,
}

impl Fixture {
    async fn new() -> Self {
        let env = TestEnv::new().await;
        Self {
            db: coupon_core::db::connect_lazy(&env.config).unwrap(),
            redis: RedisStore::new(&env.config).unwrap(),
            today: daily::day_of(Utc::now(), env.config.daily_limit_tz),
        }
    }

    async fn user(&self, n: u32) -> UserId {
        let email = Email::parse(&format!("d{n}@example.com")).unwrap();
        users::create(&self.db, &email, "D", "-", Role::User)
            .await
            .unwrap()
            .id
    }

    async fn coupon(&self) -> CouponId {
        let now = Utc::now();
        coupons::create(
            &self.db,
            &NewCoupon {
                title: "Daily".into(),
                total_quantity: 10,
                valid_from: now - Duration::days(3),
                valid_to: now + Duration::days(1),
                admission_rate_per_sec: None,
            },
        )
        .await
        .unwrap()
        .id
    }

    async fn counter(&self, user: UserId) -> Option<u32> {
        let mut conn = self.redis.conn().await.unwrap();
        conn.get(daily_key(self.redis.keys(), user, &self.today.label))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_lost_days_counts_come_back_from_mysql_raised_never_lowered() {
    let f = Fixture::new().await;
    let (a, b, c) = (f.user(1).await, f.user(2).await, f.user(3).await);
    let coupons = [f.coupon().await, f.coupon().await, f.coupon().await];
    let issue = |user, coupon, issued_at| NewIssue {
        coupon,
        user,
        issued_at,
    };
    let in_day = f.today.starts + Duration::minutes(1);
    let day_before = f.today.starts - Duration::milliseconds(1);
    coupons::persist_issues(
        &f.db,
        &[
            // a: two today; b: one today, one the day before; c: only the
            // day before, at the last millisecond of it.
            issue(a, coupons[0], in_day),
            issue(a, coupons[1], f.today.ends - Duration::milliseconds(1)),
            issue(b, coupons[0], f.today.starts),
            issue(b, coupons[2], day_before),
            issue(c, coupons[1], day_before),
        ],
    )
    .await
    .unwrap();
    // b's counter survived somehow and already counts more than MySQL
    // (Redis counts an issue before its row arrives).
    let mut conn = f.redis.conn().await.unwrap();
    let _: () = conn
        .set(daily_key(f.redis.keys(), b, &f.today.label), 3)
        .await
        .unwrap();

    assert_eq!(
        daily::restore(&f.redis, &f.db, &f.today).await.unwrap(),
        Some(1),
        "only a's counter was behind"
    );
    assert_eq!(f.counter(a).await, Some(2));
    assert_eq!(f.counter(b).await, Some(3), "never lowered");
    assert_eq!(f.counter(c).await, None, "the day before does not count");
    let ttl: i64 = conn
        .ttl(daily_key(f.redis.keys(), a, &f.today.label))
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl as u64 <= f.today.ttl_secs,
        "a raised counter ends with its day: ttl {ttl}"
    );

    // Done for the day: a second call reads nothing, even if a counter
    // was removed since.
    let _: () = conn
        .del(daily_key(f.redis.keys(), a, &f.today.label))
        .await
        .unwrap();
    assert_eq!(
        daily::restore(&f.redis, &f.db, &f.today).await.unwrap(),
        None
    );
    assert_eq!(f.counter(a).await, None);

    // Redis loses everything, the marker too: the next call restores again.
    lose_redis(&f.redis).await.unwrap();
    assert_eq!(
        daily::restore(&f.redis, &f.db, &f.today).await.unwrap(),
        Some(2)
    );
    assert_eq!(f.counter(a).await, Some(2));
    assert_eq!(f.counter(b).await, Some(1));
    assert_eq!(f.counter(c).await, None);
}

#[tokio::test]
async fn a_day_without_issues_is_marked_restored_and_raises_nothing() {
    let f = Fixture::new().await;
    assert_eq!(
        daily::restore(&f.redis, &f.db, &f.today).await.unwrap(),
        Some(0)
    );
    let mut conn = f.redis.conn().await.unwrap();
    let marked: bool = conn
        .exists(daily::restored_key(f.redis.keys(), &f.today))
        .await
        .unwrap();
    assert!(marked);
    assert_eq!(
        daily::restore(&f.redis, &f.db, &f.today).await.unwrap(),
        None
    );
}
