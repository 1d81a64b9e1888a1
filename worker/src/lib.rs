//! The worker: moves claims from the waiting queues to MySQL.
//!
//! Its loops (admitter, relay, persister) all stop on the same shutdown
//! token. It serves `/healthz`, `/readyz` and `/metrics` on
//! `WORKER_METRICS_ADDR`.

use std::time::Duration;

use coupon_core::health::Dependencies;
use coupon_core::Config;
use tokio_util::sync::CancellationToken;

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

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let deps = Dependencies::new(&config)?;
    let (addr, ops) = coupon_core::ops_http::serve(
        config.worker_metrics_addr,
        deps,
        coupon_core::metrics::install(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "worker metrics and health endpoints listening");
    if ensure_topics(&config, &shutdown).await {
        tracing::info!(topic = %config.kafka_topic, "worker ready");
    }
    shutdown.cancelled().await;
    ops.await??;
    Ok(())
}
