//! The OpenAPI service: every API area's endpoints in one document, served
//! at `/openapi.json` with the console at `/docs`.

use poem_openapi::{OpenApiService, Tags};

use crate::operations::OperationsApi;

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness, readiness and metrics.
    Operations,
}

pub type Api = OperationsApi;

pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(OperationsApi, "Coupon rush", env!("CARGO_PKG_VERSION")).description(
        "First-come-first-served coupons behind a waiting room. \
             Errors are `{code, message}` with a stable `code`.",
    )
}

/// The OpenAPI document as the gateway serves it.
pub fn spec_json() -> String {
    service().spec()
}
