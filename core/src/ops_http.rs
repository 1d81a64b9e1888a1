//! The small HTTP server of the worker and the scheduler: `/healthz`,
//! `/readyz` and `/metrics`, on their own port (`WORKER_METRICS_ADDR`,
//! `SCHEDULER_METRICS_ADDR`). The gateway serves the same three inside its
//! OpenAPI service.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{get, handler, EndpointExt, IntoResponse, Response, Route, Server};
use tokio_util::sync::CancellationToken;

use crate::health::{Dependencies, Report};

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn readyz(deps: Data<&Dependencies>) -> Response {
    let report = Report::new(deps.check().await);
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(report).with_status(status).into_response()
}

#[handler]
fn metrics(handle: Data<&PrometheusHandle>) -> Response {
    handle
        .render()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

/// Binds `addr` and serves until `shutdown`; returns the bound address
/// (port 0 picks a free one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    deps: Dependencies,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("the listener has no socket address"))?;
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .data(deps)
        .data(handle);
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async move { shutdown.cancelled().await },
                Some(Duration::from_secs(5)),
            )
            .await
    });
    Ok((bound, task))
}
