//! Test isolation for the integration tests of every crate.
//!
//! Every [`TestEnv`] gets its own MySQL database (`coupons_test_<id>`,
//! migrated), its own Redis key prefix and its own Kafka topics and consumer
//! group, so tests run in parallel against the one set of real services
//! without seeing each other. `ops/test` drops the databases of earlier runs.

use std::collections::HashMap;

use rand::Rng;

use crate::config::Config;

/// One test's private slice of MySQL, Redis and Kafka.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Random, lower-case hex; part of every name below.
    pub id: String,
    pub config: Config,
}

impl TestEnv {
    /// A migrated database of its own, with the environment's services.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// Like [`TestEnv::new`], with some variables set as given.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        let env = Self::unmigrated(overrides);
        crate::db::create_database_if_missing(&env.config)
            .await
            .expect("create the test database (is MySQL up? run ops/services)");
        let pool = crate::db::connect_lazy(&env.config).expect("valid DATABASE_URL");
        crate::db::migrate(&pool)
            .await
            .expect("migrate the test database");
        pool.close().await;
        env
    }

    /// Names only: no database is created. For tests that point a process
    /// at services that are down.
    pub fn unmigrated(overrides: &[(&str, &str)]) -> Self {
        let id = format!("{:010x}", rand::rng().random::<u64>() & 0xff_ffff_ffff);
        let base_db = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/coupons".to_owned());
        let server = base_db
            .rsplit_once('/')
            .map_or(base_db.as_str(), |(s, _)| s);
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let own = [
            ("DATABASE_URL", format!("{server}/coupons_test_{id}")),
            ("REDIS_KEY_PREFIX", format!("test:{id}:")),
            ("KAFKA_TOPIC", format!("test-{id}-issued")),
            ("KAFKA_DLQ_TOPIC", format!("test-{id}-dlq")),
            ("KAFKA_CONSUMER_GROUP", format!("test-{id}-persister")),
            ("KAFKA_PARTITIONS", "3".to_owned()),
            ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
            ("WORKER_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("SCHEDULER_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ];
        for (k, v) in own {
            vars.insert(k.to_owned(), v);
        }
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config =
            Config::from_lookup(|k| vars.get(k).cloned()).expect("valid test configuration");
        Self { id, config }
    }
}

impl TestEnv {
    /// Removes this environment's database and Redis keys. For the bench,
    /// whose 100,000 users would otherwise pile up run after run (tests
    /// leave theirs to `ops/test`, which clears them all before a run).
    pub async fn clean_up(&self) -> anyhow::Result<()> {
        crate::db::drop_database(&self.config).await?;
        lose_redis(&crate::RedisStore::new(&self.config)?).await
    }
}

/// What Redis losing its data looks like to one environment: every key
/// under its prefix is gone.
pub async fn lose_redis(redis: &crate::RedisStore) -> anyhow::Result<()> {
    let mut conn = redis.conn().await?;
    let pattern = format!("{}*", redis.keys().prefix());
    let mut cursor = 0u64;
    loop {
        let (next, keys) = crate::RedisStore::scan_page(&mut conn, &pattern, cursor, 5000).await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// What Redis losing one coupon looks like (an eviction, a partial
/// restore): its meta, stock and holders are gone, the rest stays.
pub async fn lose_coupon(
    redis: &crate::RedisStore,
    coupon: crate::domain::CouponId,
) -> anyhow::Result<()> {
    let k = crate::scripts::CouponKeys::new(redis.keys(), coupon);
    let mut conn = redis.conn().await?;
    let _: () = redis::cmd("DEL")
        .arg(&[&k.meta, &k.stock, &k.issued])
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// A loopback port where nothing listens: bind, read the port, close.
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` until it returns `Some`, or panics naming `what` after
/// `deadline`. For waiting on something that cannot be awaited directly;
/// never a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, deadline: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = std::time::Instant::now() + deadline;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

/// A coupon that exists only in Redis (for script tests): warmed up as the
/// admin API would, active for the next hour.
pub async fn redis_coupon(
    redis: &crate::RedisStore,
    id: u64,
    total: u32,
    rate: u32,
) -> crate::coupons::Coupon {
    let now = chrono::Utc::now();
    let coupon = crate::coupons::Coupon {
        id: crate::domain::CouponId(id),
        title: format!("test coupon {id}"),
        total_quantity: total,
        remaining_quantity: total,
        valid_from: now - chrono::Duration::hours(1),
        valid_to: now + chrono::Duration::hours(1),
        status: "active".into(),
        admission_rate_per_sec: Some(rate),
        created_at: now,
    };
    crate::stock::warm_up_redis_only(redis, &coupon, rate)
        .await
        .expect("warm up");
    coupon
}

/// The invariants of DESIGN.md for `coupons`, once the pipeline has settled
/// (every issue persisted). Panics naming the one that broke.
pub async fn assert_invariants(
    config: &Config,
    db: &sqlx::MySqlPool,
    redis: &crate::RedisStore,
    coupons: &[crate::domain::CouponId],
) {
    use redis::AsyncCommands;
    use std::collections::{HashMap, HashSet};

    let mut conn = redis.conn().await.expect("redis");
    let mut per_user_day: HashMap<(u64, String), u32> = HashMap::new();
    for &coupon in coupons {
        let keys = crate::scripts::CouponKeys::new(redis.keys(), coupon);
        let (total, remaining): (u32, u32) =
            sqlx::query_as("SELECT total_quantity, remaining_quantity FROM coupon WHERE id = ?")
                .bind(coupon.0)
                .fetch_one(db)
                .await
                .expect("coupon row");
        let rows: Vec<(u64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT user_id, issued_at FROM coupon_issue WHERE coupon_id = ?")
                .bind(coupon.0)
                .fetch_all(db)
                .await
                .expect("issue rows");
        let users: HashSet<u64> = rows.iter().map(|(u, _)| *u).collect();
        // 1. Never more than the total, in MySQL and in Redis.
        assert!(
            rows.len() as u32 <= total,
            "invariant 1 (MySQL): {} rows > total {total}",
            rows.len()
        );
        let issued: HashSet<u64> = conn.smembers(&keys.issued).await.expect("issued set");
        let stock: i64 = conn
            .get::<_, Option<i64>>(&keys.stock)
            .await
            .expect("stock")
            .unwrap_or(0);
        assert!(
            issued.len() as u32 <= total,
            "invariant 1 (Redis): {} issued > total {total}",
            issued.len()
        );
        assert_eq!(
            stock + issued.len() as i64,
            i64::from(total),
            "stock + issued = total in Redis"
        );
        // 2. One row per (user, coupon).
        assert_eq!(
            users.len(),
            rows.len(),
            "invariant 2: duplicate (user, coupon) rows"
        );
        // 4. Every issue the claim script made is a row.
        assert_eq!(
            users, issued,
            "invariant 4: Redis issued set and MySQL rows differ"
        );
        // 7. remaining = total - rows.
        assert_eq!(
            remaining,
            total - rows.len() as u32,
            "invariant 7: remaining_quantity drifted"
        );
        for (user, at) in rows {
            let day = crate::daily::day_of(at, config.daily_limit_tz).label;
            *per_user_day.entry((user, day)).or_default() += 1;
        }
    }
    // 3. The daily limit, across these coupons.
    for ((user, day), n) in per_user_day {
        assert!(
            n <= config.daily_limit,
            "invariant 3: user {user} got {n} coupons on {day}"
        );
    }
}
