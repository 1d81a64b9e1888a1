//! Readiness: can this process reach MySQL, Redis and Kafka right now?
//! Each process serves the answer at `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use serde::Serialize;
use sqlx::MySqlPool;

use crate::redis_store::RedisStore;

/// How long one dependency may take to answer before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's state.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
}

/// What a readiness check needs to reach.
#[derive(Clone)]
pub struct Dependencies {
    pub db: MySqlPool,
    pub redis: RedisStore,
    pub kafka: Arc<AdminClient<DefaultClientContext>>,
}

impl Dependencies {
    /// Lazy handles: nothing connects until the first check.
    pub fn new(config: &crate::Config) -> anyhow::Result<Self> {
        Ok(Self {
            db: crate::db::connect_lazy(config)?,
            redis: RedisStore::new(config)?,
            kafka: Arc::new(crate::kafka::admin_client(config)?),
        })
    }

    /// Checks all three at once; each gets [`CHECK_TIMEOUT`].
    pub async fn check(&self) -> Vec<Check> {
        let mysql = timed(async { crate::db::ping(&self.db).await.map_err(|e| e.to_string()) });
        let redis = timed(async { self.redis.ping().await.map_err(|e| e.to_string()) });
        let kafka = timed(crate::kafka::probe(&self.kafka, CHECK_TIMEOUT));
        let (mysql, redis, kafka) = tokio::join!(mysql, redis, kafka);
        vec![
            check("mysql", mysql),
            check("redis", redis),
            check("kafka", kafka),
        ]
    }
}

/// The answer to "is this process ready?", as every `/readyz` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `ready`, or `NOT_READY` when a dependency is down.
    pub code: &'static str,
    /// A sentence naming what is down, if anything.
    pub message: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let down: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        if down.is_empty() {
            Self {
                code: "ready",
                message: "mysql, redis and kafka are reachable".to_owned(),
                checks,
            }
        } else {
            Self {
                code: "NOT_READY",
                message: format!("unreachable: {}", down.join(", ")),
                checks,
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

async fn timed(f: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT + Duration::from_millis(500), f)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

fn check(name: &'static str, result: Result<(), String>) -> Check {
    if let Err(error) = &result {
        tracing::warn!(dependency = name, %error, "readiness check failed");
    }
    // The detailed reason stays in the log above; clients see only the name.
    Check {
        name,
        ok: result.is_ok(),
    }
}
