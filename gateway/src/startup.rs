//! Building and running the gateway: `main` and the tests share this, so a
//! test runs the same app on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::{CookieJarManager, SetHeader};
use poem::{EndpointExt, IntoEndpoint, Server};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Brings the database up to date and does the other one-time start-up
/// work. Needs MySQL.
pub async fn prepare(state: &AppState) -> anyhow::Result<()> {
    if let Err(e) = coupon_core::db::create_database_if_missing(&state.config).await {
        tracing::warn!(error = %e, "could not create the database; assuming it exists");
    }
    coupon_core::db::migrate(&state.db).await?;
    tracing::info!("database schema is up to date");
    crate::accounts::bootstrap_admin(state).await?;
    Ok(())
}

/// All routes with their middleware.
pub fn routes(state: AppState) -> impl poem::Endpoint {
    let api = crate::api::service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    // The OpenAPI service answers under the prefixes it owns, paths kept
    // whole; the pages own everything else, "/" included.
    let api = Arc::new(api.into_endpoint());
    let mut routes = crate::pages::routes();
    for prefix in ["/api", "/healthz", "/readyz", "/metrics"] {
        routes = routes.nest_no_strip(prefix, api.clone());
    }
    routes
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .around(crate::rate_limit::enforce)
        .around(crate::body_limit::limit)
        // Boxing between layers keeps the middleware's nested types shallow
        // enough for the compiler's release build.
        .boxed()
        .catch_all_error(crate::error::catch_all)
        .around(crate::allow::add_allow)
        .boxed()
        .with(
            SetHeader::new()
                .overriding("x-content-type-options", "nosniff")
                .overriding("referrer-policy", "same-origin"),
        )
        .with(CookieJarManager::new())
        .around(crate::http_metrics::record)
        .around(crate::request_log::trace)
        .data(state)
        .boxed()
}

/// A bound, not yet running gateway.
pub struct Application {
    acceptor: TcpAcceptor,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Binds `GATEWAY_ADDR` (port 0 picks a free port).
    pub async fn bind(state: AppState) -> anyhow::Result<Self> {
        let acceptor = TcpListener::bind(state.config.gateway_addr)
            .into_acceptor()
            .await
            .map_err(|e| anyhow::anyhow!("GATEWAY_ADDR {}: {e}", state.config.gateway_addr))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| anyhow::anyhow!("the listener has no socket address"))?;
        Ok(Self {
            acceptor,
            addr,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight
    /// finish (up to ten seconds).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "gateway listening");
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                routes(self.state),
                async move { shutdown.cancelled().await },
                Some(Duration::from_secs(10)),
            )
            .await
    }
}

/// A gateway serving in the background; stops when dropped. For tests and
/// tools that run the real app in-process.
pub struct Spawned {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Spawned {
    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Prepares (migrations, admin), binds and serves `state` in the background.
pub async fn spawn(state: AppState) -> anyhow::Result<Spawned> {
    prepare(&state).await?;
    serve(state).await
}

/// Binds and serves `state` in the background without preparing anything
/// first, so it also starts while MySQL is down.
pub async fn serve(state: AppState) -> anyhow::Result<Spawned> {
    let app = Application::bind(state).await?;
    let addr = app.addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(Spawned { addr, stop })
}
