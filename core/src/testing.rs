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

/// A loopback port where nothing listens: bind, read the port, close.
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
