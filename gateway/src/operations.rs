//! Operations endpoints: liveness, readiness, Prometheus metrics.

use coupon_core::health::Report;
use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::api::ApiTags;
use crate::state::AppState;

pub struct OperationsApi;

/// The state of one dependency.
#[derive(Object)]
struct DependencyState {
    /// `mysql`, `redis` or `kafka`.
    name: String,
    ok: bool,
}

/// Readiness of the gateway and what it depends on.
#[derive(Object)]
struct Readiness {
    /// `ready`, or `NOT_READY` when a dependency is down.
    code: String,
    /// A sentence naming what is down, if anything.
    message: String,
    checks: Vec<DependencyState>,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// MySQL, Redis and Kafka are reachable.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// At least one dependency is down; `message` names which.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The process is alive.
    #[oai(status = 200)]
    Alive(PlainText<&'static str>),
}

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Metrics(PlainText<String>),
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OperationsApi {
    /// Liveness: answers as long as the process runs.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Alive(PlainText("ok"))
    }

    /// Readiness: MySQL, Redis and Kafka reachable; 503 naming the one that
    /// is not.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self, state: Data<&AppState>) -> ReadyResponse {
        readiness(state.dependencies().check().await)
    }

    /// Prometheus metrics of this gateway.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, state: Data<&AppState>) -> MetricsResponse {
        MetricsResponse::Metrics(PlainText(state.metrics.render()))
    }
}

fn readiness(checks: Vec<coupon_core::health::Check>) -> ReadyResponse {
    let report = Report::new(checks);
    let ready = report.is_ready();
    let body = Json(Readiness {
        code: report.code.to_owned(),
        message: report.message,
        checks: report
            .checks
            .into_iter()
            .map(|c| DependencyState {
                name: c.name.to_owned(),
                ok: c.ok,
            })
            .collect(),
    });
    if ready {
        ReadyResponse::Ready(body)
    } else {
        ReadyResponse::NotReady(body)
    }
}
