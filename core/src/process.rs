//! The start and end of every binary: read the config (a bad value stops
//! start-up with exit code 2 and the variable's name), install logs, turn
//! transparent huge pages off for the process, run until SIGINT or SIGTERM,
//! and say why the process stopped.

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
    disable_transparent_huge_pages(name);
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

/// Turns transparent huge pages off for this process (and its children).
///
/// The first page fault in a fresh 2 MiB huge page makes the kernel zero all
/// of it. In the first 170 ms of a claim storm that zeroing (`clear_page_erms`)
/// was 84% of the gateway's CPU samples: the memory grows fast at the door
/// opening, and every new huge page costs about 100 µs of one core while
/// requests wait. With 4 KiB pages the first 1,000 answers' p50 fell from
/// 82-107 ms to 36-43 ms and the worker's RSS halved (README, performance,
/// three bench runs against three). The allocator is
/// built with mimalloc's `no_thp` feature so it never asks for huge pages;
/// this also covers hosts whose THP setting is `always`.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages(name: &str) {
    if let Err(errno) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(
            process = name,
            %errno,
            "could not turn transparent huge pages off; the first seconds of a storm may be slower"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages(_name: &str) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn transparent_huge_pages_are_off_afterwards() {
        super::disable_transparent_huge_pages("test");
        assert!(nix::sys::prctl::get_thp_disable().expect("PR_GET_THP_DISABLE"));
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        // Kernels since 5.0 show the flag here as well.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
