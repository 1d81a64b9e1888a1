//! The worker: moves claims from the waiting lines to MySQL.
//!
//! - [`admitter`]: takes each coupon's line at its rate and runs the claim
//!   script per batch (Redis).
//! - [`relay`]: carries each coupon's outbox stream to Kafka.
//! - [`persister`]: consumes Kafka into `coupon_issue` (MySQL).
//!
//! Each has a one-step function (`admit_once`, `relay_once`,
//! `persist_once`) that tests drive deterministically, and a `run` loop
//! that stops on the shared shutdown token after finishing the batch in
//! hand. The worker serves `/healthz`, `/readyz` and `/metrics` on
//! `WORKER_METRICS_ADDR`. Any number of workers may run at once.

pub mod admitter;
pub mod persister;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use coupon_core::health::Dependencies;
use coupon_core::{Config, RedisStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use admitter::Admitter;
pub use persister::Persister;
pub use relay::Relay;

/// Creates the Kafka topics, retrying with backoff while the broker is
/// unreachable, until it succeeds or shutdown is requested.
pub async fn ensure_topics(config: &Config, shutdown: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        match coupon_core::kafka::ensure_topics(config).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "Kafka topics not ready"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs the admitter, relay and persister until `shutdown` is cancelled or
/// one of them fails; says which stopped and why.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let deps = Dependencies::new(&config)?;
    let (addr, ops) = coupon_core::ops_http::serve(
        config.worker_metrics_addr,
        deps.clone(),
        coupon_core::metrics::install(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "worker metrics and health endpoints listening");
    if !ensure_topics(&config, &shutdown).await {
        return Ok(());
    }
    let redis = RedisStore::new(&config)?;
    let mut tasks = JoinSet::new();
    let admitter = Admitter::new(config.clone(), redis.clone());
    let relay = Relay::new(config.clone(), redis.clone())?;
    let persister = Persister::new(config.clone(), deps.db.clone())?;
    let stop = shutdown.clone();
    tasks.spawn(async move { ("admitter", admitter.run(stop).await) });
    let stop = shutdown.clone();
    tasks.spawn(async move { ("relay", relay.run(stop).await) });
    let stop = shutdown.clone();
    tasks.spawn(async move { ("persister", persister.run(stop).await) });
    tracing::info!(topic = %config.kafka_topic, "worker running: admitter, relay, persister");

    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined?;
        match result {
            Ok(()) => tracing::info!(task = name, "stopped"),
            Err(e) => {
                tracing::error!(
                    task = name,
                    error = format!("{e:#}"),
                    "stopped on an error; stopping the worker"
                );
                failure.get_or_insert(e.context(format!("{name} failed")));
            }
        }
        shutdown.cancel();
    }
    ops.await??;
    failure.map_or(Ok(()), Err)
}
