//! The scheduler's jobs against the real MySQL and Redis, with a real
//! gateway for what people see: expiry, reconciliation, one run per tick.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coupon_core::coupons::{self, NewIssue};
use coupon_core::domain::{CouponId, Role, UserId};
use coupon_core::scripts::{self, CouponKeys};
use coupon_core::testing::TestEnv;
use coupon_core::{daily, stock};
use redis::AsyncCommands;
use scheduler::{lock, run_tick, Ctx, Job};
use serde_json::{json, Value};

struct Setup {
    ctx: Ctx,
    gateway: gateway::startup::Spawned,
    state: gateway::AppState,
    http: reqwest::Client,
}

async fn setup(vars: &[(&str, &str)]) -> Setup {
    coupon_core::telemetry::init(coupon_core::config::LogFormat::Text);
    let env = TestEnv::with(vars).await;
    let state = gateway::AppState::new(env.config.clone()).unwrap();
    let gateway = gateway::startup::spawn(state.clone()).await.unwrap();
    let ctx = Ctx {
        config: Arc::new(env.config.clone()),
        db: state.db.clone(),
        redis: state.redis.clone(),
    };
    Setup {
        ctx,
        gateway,
        state,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn users(&self, n: usize) -> Vec<(UserId, String)> {
        let mut out = Vec::new();
        for i in 0..n {
            let email = coupon_core::domain::Email::parse(&format!(
                "s{i}.{:x}@example.com",
                rand::random::<u32>()
            ))
            .unwrap();
            let user = coupon_core::users::create(&self.state.db, &email, "S", "-", Role::User)
                .await
                .unwrap();
            out.push((
                user.id,
                self.state.tokens.issue(user.id, Role::User).unwrap(),
            ));
        }
        out
    }

    async fn coupon(&self, total: u32) -> CouponId {
        let now = Utc::now();
        let row = coupons::create(
            &self.state.db,
            &coupons::NewCoupon {
                title: "Scheduled".into(),
                total_quantity: total,
                valid_from: now - chrono::Duration::minutes(5),
                valid_to: now + chrono::Duration::hours(1),
                admission_rate_per_sec: Some(1000),
            },
        )
        .await
        .unwrap();
        stock::warm_up(&self.state.redis, &self.state.db, &self.ctx.config, &row)
            .await
            .unwrap();
        row.id
    }

    async fn enqueue(&self, coupon: CouponId, user: UserId) {
        let day = daily::day_of(Utc::now(), self.ctx.config.daily_limit_tz);
        scripts::enqueue(
            &self.state.redis,
            coupon,
            user,
            &day.label,
            Utc::now().timestamp_millis(),
            5,
        )
        .await
        .unwrap();
    }

    /// One issue reaches MySQL, as the persister would write it.
    async fn persist_issue(&self, coupon: CouponId, user: UserId, issued_at: DateTime<Utc>) {
        let issue = NewIssue {
            coupon,
            user,
            issued_at,
        };
        coupons::persist_issues(&self.state.db, &[issue])
            .await
            .unwrap();
    }

    async fn claim(&self, coupon: CouponId, token: &str) -> (u16, Value) {
        let path = format!("/api/coupons/{}/claim", coupon.0);
        self.api(reqwest::Method::POST, &path, token).await
    }

    /// The admin stats of `coupon`.
    async fn stats(&self, coupon: CouponId) -> Value {
        let admin = self.state.tokens.issue(UserId(0), Role::Admin).unwrap();
        let path = format!("/api/admin/coupons/{}/stats", coupon.0);
        let (status, stats) = self.api(reqwest::Method::GET, &path, &admin).await;
        assert_eq!(status, 200, "{stats}");
        stats
    }

    async fn api(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.gateway.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn expiry_rejects_everyone_waiting_and_closes_the_line() {
    let s = setup(&[]).await;
    let coupon = s.coupon(10).await;
    let users = s.users(4).await;
    let mut tickets = Vec::new();
    for (_, token) in &users[..3] {
        let (status, body) = s.claim(coupon, token).await;
        assert_eq!(status, 202, "{body}");
        tickets.push(body["ticket_id"].as_str().unwrap().to_owned());
    }

    // Time is up: valid_to passes (in MySQL and in Redis).
    let past = Utc::now() - chrono::Duration::seconds(1);
    sqlx::query("UPDATE coupon SET valid_to = ? WHERE id = ?")
        .bind(past.naive_utc())
        .bind(coupon.0)
        .execute(&s.state.db)
        .await
        .unwrap();
    let meta = CouponKeys::new(s.state.redis.keys(), coupon).meta;
    let _: () = s
        .state
        .redis
        .conn()
        .await
        .unwrap()
        .hset(&meta, "valid_to_ms", past.timestamp_millis())
        .await
        .unwrap();

    let changed = Job::Expiry.run(&s.ctx).await.unwrap();
    assert!(changed >= 4, "one coupon and three tickets: {changed}");
    for (ticket, (_, token)) in tickets.iter().zip(&users) {
        let (status, body) = s
            .api(
                reqwest::Method::GET,
                &format!("/api/tickets/{ticket}"),
                token,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "rejected");
        assert_eq!(body["reason"], "EXPIRED");
    }
    let (status, body) = s.claim(coupon, &users[3].1).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("NOT_ACTIVE")));
    let stored: String = sqlx::query_scalar("SELECT status FROM coupon WHERE id = ?")
        .bind(coupon.0)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert_eq!(stored, "expired");
    // Idempotent: a second run changes nothing.
    assert_eq!(Job::Expiry.run(&s.ctx).await.unwrap(), 0);
}

#[tokio::test]
async fn reconciliation_restores_lost_rows_and_fixes_remaining() {
    let s = setup(&[("RECONCILE_DELAY_SECS", "0")]).await;
    let coupon = s.coupon(10).await;
    let users = s.users(4).await;
    for (user, _) in &users {
        s.enqueue(coupon, *user).await;
    }
    let ids: Vec<UserId> = users.iter().map(|(u, _)| *u).collect();
    let admitted = scripts::admit(
        &s.state.redis,
        coupon,
        Utc::now().timestamp_millis(),
        100,
        100,
    )
    .await
    .unwrap();
    assert_eq!(admitted.len(), 4);
    let day = daily::day_of(Utc::now(), s.ctx.config.daily_limit_tz);
    scripts::claim(
        &s.state.redis,
        coupon,
        &ids,
        &day,
        5,
        Utc::now().timestamp_millis(),
    )
    .await
    .unwrap();

    // The first three were relayed and persisted; the fourth's Kafka event
    // was lost (dropped from the outbox on purpose).
    let now = Utc::now();
    let rows: Vec<NewIssue> = ids[..3]
        .iter()
        .map(|u| NewIssue {
            coupon,
            user: *u,
            issued_at: now,
        })
        .collect();
    coupons::persist_issues(&s.state.db, &rows).await.unwrap();
    let outbox = CouponKeys::new(s.state.redis.keys(), coupon).outbox;
    let mut conn = s.state.redis.conn().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&outbox)
        .query_async(&mut conn)
        .await
        .unwrap();
    // And someone deletes a row behind the system's back.
    sqlx::query("DELETE FROM coupon_issue WHERE coupon_id = ? AND user_id = ?")
        .bind(coupon.0)
        .bind(ids[0].0)
        .execute(&s.state.db)
        .await
        .unwrap();

    let report = scheduler::jobs::reconcile::run(&s.ctx).await.unwrap();
    assert_eq!(report.missing_rows, 2, "{report:?}");
    assert_eq!(report.rows_repaired, 2);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupon_issue WHERE coupon_id = ?")
        .bind(coupon.0)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert_eq!(count, 4);

    // remaining_quantity corrupted: the job recomputes it.
    sqlx::query("UPDATE coupon SET remaining_quantity = 9 WHERE id = ?")
        .bind(coupon.0)
        .execute(&s.state.db)
        .await
        .unwrap();
    let report = scheduler::jobs::reconcile::run(&s.ctx).await.unwrap();
    assert_eq!(report.remaining_corrected, 1, "{report:?}");
    let remaining: u32 = sqlx::query_scalar("SELECT remaining_quantity FROM coupon WHERE id = ?")
        .bind(coupon.0)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    assert_eq!(remaining, 6);
    coupon_core::testing::assert_invariants(&s.ctx.config, &s.state.db, &s.state.redis, &[coupon])
        .await;

    // Visible in the admin stats and in the metrics.
    let stats = s.stats(coupon).await;
    assert_eq!(
        stats["reconciliation"],
        json!({"missing_rows_found": 2, "rows_repaired": 2, "remaining_corrected": 1, "issues_taken_back": 0, "last_checked_at": stats["reconciliation"]["last_checked_at"]})
    );
    let metrics = coupon_core::metrics::install().render();
    assert!(
        metrics.contains(r#"coupon_reconcile_drift_repaired_total{kind="missing_row"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn reconciliation_gives_redis_back_the_issues_it_forgot() {
    let s = setup(&[("DAILY_LIMIT", "2")]).await;
    let coupon = s.coupon(3).await;
    let users = s.users(2).await;
    // An issue reached MySQL, and Redis lost it afterwards (a restart from
    // an append-only file a second behind): Redis still counts the coupon
    // as in stock and the user as not holding it.
    let issued_at = Utc::now();
    s.persist_issue(coupon, users[0].0, issued_at).await;

    let report = scheduler::jobs::reconcile::run(&s.ctx).await.unwrap();
    assert_eq!(report.extra_rows, 1, "{report:?}");
    let k = CouponKeys::new(s.state.redis.keys(), coupon);
    let mut conn = s.state.redis.conn().await.unwrap();
    let day = daily::day_of(Utc::now(), s.ctx.config.daily_limit_tz);
    let (stock, holder, result, today): (i64, bool, String, u32) = redis::pipe()
        .get(&k.stock)
        .sismember(&k.issued, users[0].0 .0)
        .hget(&k.results, users[0].0 .0)
        .get(scripts::daily_key(
            s.state.redis.keys(),
            users[0].0,
            &day.label,
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stock, 2, "the coupon is handed out once");
    assert!(holder);
    assert_eq!(result, format!("I:{}", issued_at.timestamp_millis()));
    assert_eq!(today, 1, "counted in today's limit");

    // Taken back once: a second run finds nothing and changes nothing.
    let report = scheduler::jobs::reconcile::run(&s.ctx).await.unwrap();
    assert_eq!(report.extra_rows, 0, "{report:?}");
    let stock: i64 = conn.get(&k.stock).await.unwrap();
    assert_eq!(stock, 2);
    let (status, body) = s.claim(coupon, &users[0].1).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("issued")),
        "a claim again shows the issue it had: {body}"
    );
    coupon_core::testing::assert_invariants(&s.ctx.config, &s.state.db, &s.state.redis, &[coupon])
        .await;
    let stats = s.stats(coupon).await;
    assert_eq!(stats["reconciliation"]["issues_taken_back"], 1);
}

#[tokio::test]
async fn two_schedulers_run_each_tick_once() {
    let s = setup(&[]).await;
    // A second scheduler process: its own Redis connection, same deployment.
    let other = Ctx {
        redis: coupon_core::RedisStore::new(&s.ctx.config).unwrap(),
        ..s.ctx.clone()
    };
    for job in Job::ALL {
        for tick in [1_000_i64, 1_001, 1_002] {
            let (a, b) = tokio::join!(run_tick(&s.ctx, job, tick), run_tick(&other, job, tick));
            let ran = [a.unwrap(), b.unwrap()];
            assert_eq!(
                ran.iter().filter(|r| **r).count(),
                1,
                "{job:?} tick {tick}: {ran:?}"
            );
        }
    }
    let metrics = coupon_core::metrics::install().render();
    assert!(
        metrics.contains("coupon_job_runs_total"),
        "job runs are counted"
    );
}

#[tokio::test]
async fn the_lock_is_released_only_by_its_owner() {
    let s = setup(&[]).await;
    let held = lock::acquire(&s.ctx.redis, "demo", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(lock::acquire(&s.ctx.redis, "demo", Duration::from_secs(30))
        .await
        .unwrap()
        .is_none());
    // Someone else's lock taken after ours expired is not ours to release.
    let key = s.ctx.redis.keys().global("lock:demo");
    let mut conn = s.ctx.redis.conn().await.unwrap();
    let _: () = conn.set(&key, "someone-else").await.unwrap();
    assert!(!held.release(&s.ctx.redis).await.unwrap());
    let value: String = conn.get(&key).await.unwrap();
    assert_eq!(value, "someone-else");
}

#[tokio::test]
async fn activation_warms_coupons_redis_lost_with_their_holders() {
    let s = setup(&[]).await;
    let coupon = s.coupon(5).await;
    let users = s.users(1).await;
    s.persist_issue(coupon, users[0].0, Utc::now()).await;
    // Redis loses the coupon.
    coupon_core::testing::lose_coupon(&s.state.redis, coupon)
        .await
        .unwrap();
    let k = CouponKeys::new(s.state.redis.keys(), coupon);
    let mut conn = s.state.redis.conn().await.unwrap();

    assert_eq!(Job::Activation.run(&s.ctx).await.unwrap(), 1);
    let stock: i64 = conn.get(&k.stock).await.unwrap();
    assert_eq!(stock, 4, "stock from MySQL's remaining_quantity");
    let holder: bool = conn.sismember(&k.issued, users[0].0 .0).await.unwrap();
    assert!(holder, "the holder cannot get it twice");
    let (status, body) = s.claim(coupon, &users[0].1).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ALREADY_ISSUED"))
    );
    assert_eq!(Job::Activation.run(&s.ctx).await.unwrap(), 0, "idempotent");
}

#[tokio::test]
async fn warm_up_takes_the_stock_from_the_holders_it_adds() {
    let s = setup(&[]).await;
    let coupon = s.coupon(5).await;
    // Read before the row below arrived: remaining_quantity 5.
    let read_earlier = coupons::by_id(&s.state.db, coupon).await.unwrap().unwrap();
    let users = s.users(1).await;
    s.persist_issue(coupon, users[0].0, Utc::now()).await;
    coupon_core::testing::lose_redis(&s.state.redis)
        .await
        .unwrap();

    let holders = stock::warm_up(&s.state.redis, &s.state.db, &s.ctx.config, &read_earlier)
        .await
        .unwrap();
    assert_eq!(holders, 1);
    let k = CouponKeys::new(s.state.redis.keys(), coupon);
    let mut conn = s.state.redis.conn().await.unwrap();
    let stock: i64 = conn.get(&k.stock).await.unwrap();
    assert_eq!(stock, 4, "the holder's coupon is not in stock");
}

#[tokio::test]
async fn activation_after_a_redis_loss_restores_the_days_counts() {
    let s = setup(&[("DAILY_LIMIT", "1")]).await;
    let (first, second) = (s.coupon(5).await, s.coupon(5).await);
    let users = s.users(2).await;
    s.persist_issue(first, users[0].0, Utc::now()).await;
    coupon_core::testing::lose_redis(&s.state.redis)
        .await
        .unwrap();

    assert_eq!(Job::Activation.run(&s.ctx).await.unwrap(), 2);
    let (status, body) = s.claim(second, &users[0].1).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("DAILY_LIMIT")),
        "today's issue on the other coupon still counts"
    );
    let (status, _) = s.claim(second, &users[1].1).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn rollover_removes_stale_daily_counters_only() {
    let s = setup(&[]).await;
    let other = TestEnv::new().await;
    let other_redis = coupon_core::RedisStore::new(&other.config).unwrap();
    let tz = s.ctx.config.daily_limit_tz;
    let day =
        |days_ago: i64| daily::day_of(Utc::now() - chrono::Duration::days(days_ago), tz).label;
    let mut conn = s.ctx.redis.conn().await.unwrap();
    let key = |redis: &coupon_core::RedisStore, user: u64, days_ago: i64| {
        scripts::daily_key(redis.keys(), UserId(user), &day(days_ago))
    };
    // Counters written without their expiry: today, yesterday, and older.
    for (user, days_ago) in [(1, 0), (2, 1), (3, 2), (4, 30)] {
        let _: () = conn
            .set(key(&s.ctx.redis, user, days_ago), 1)
            .await
            .unwrap();
    }
    let _: () = conn.set(key(&other_redis, 5, 30), 1).await.unwrap();

    let removed = Job::Rollover.run(&s.ctx).await.unwrap();
    assert_eq!(removed, 2, "the counters of two and thirty days ago");
    for (user, days_ago, kept) in [(1, 0, true), (2, 1, true), (3, 2, false), (4, 30, false)] {
        let exists: bool = conn
            .exists(key(&s.ctx.redis, user, days_ago))
            .await
            .unwrap();
        assert_eq!(exists, kept, "{days_ago} days ago");
    }
    let exists: bool = conn.exists(key(&other_redis, 5, 30)).await.unwrap();
    assert!(exists, "another deployment's keys are not touched");
}
