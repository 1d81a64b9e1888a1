//! Structured logs through `tracing`, as text for people or JSON for
//! collectors (`LOG_FORMAT`). `RUST_LOG` overrides the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter used when `RUST_LOG` is not set: our own crates at info, the
/// chatty drivers at warn.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,rdkafka=warn,librdkafka=warn,poem=info,tokio_cron_scheduler=warn";

/// Installs the global subscriber. Safe to call more than once (tests do);
/// later calls are ignored.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A log line that cannot be written (the reader of our output gone,
    // as when Ctrl-C in `ops/up` ends its log prefixers first) is dropped.
    // By default the subscriber would report that on stderr with
    // `eprintln!`, which panics when stderr is gone too: the task that was
    // logging, shutdown's among them, would die mid-way.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
