//! The scheduler: periodic jobs that keep Redis and MySQL true over time
//! (expiry, activation, daily rollover, reconciliation). It serves
//! `/healthz`, `/readyz` and `/metrics` on `SCHEDULER_METRICS_ADDR`.

use coupon_core::health::Dependencies;
use coupon_core::Config;
use tokio_util::sync::CancellationToken;

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let deps = Dependencies::new(&config)?;
    let (addr, ops) = coupon_core::ops_http::serve(
        config.scheduler_metrics_addr,
        deps,
        coupon_core::metrics::install(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "scheduler metrics and health endpoints listening");
    shutdown.cancelled().await;
    ops.await??;
    Ok(())
}
