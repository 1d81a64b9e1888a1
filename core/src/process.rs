//! The start and end of every binary: read the config (a bad value stops
//! start-up with exit code 2 and the variable's name), install logs, run
//! until SIGINT or SIGTERM, and say why the process stopped.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs `body` with the configuration and a shutdown token, and exits the
/// process with 0 (stopped on a signal), 1 (failed) or 2 (bad config).
pub async fn main<F, Fut>(name: &'static str, body: F)
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    crate::telemetry::init(config.log_format);
    let shutdown = crate::shutdown::on_signal();
    match body(config, shutdown).await {
        Ok(()) => tracing::info!(process = name, "stopped after a shutdown signal"),
        Err(e) => {
            tracing::error!(
                process = name,
                error = format!("{e:#}"),
                "stopped on an error"
            );
            std::process::exit(1);
        }
    }
}
