//! The OpenAPI service: every API area's endpoints in one document, served
//! at `/openapi.json` with the console at `/docs`.

use poem_openapi::{OpenApiService, Tags};

use crate::accounts::AccountsApi;
use crate::admin::AdminApi;
use crate::claim::ClaimApi;
use crate::coupons::CouponsApi;
use crate::operations::OperationsApi;
use crate::tickets::TicketsApi;

#[derive(Tags)]
pub enum ApiTags {
    /// Sign up, log in, the signed-in account.
    Accounts,
    /// Coupons and the caller's issued coupons.
    Coupons,
    /// Claiming a coupon and following the ticket.
    Claims,
    /// Creating and watching coupons (admins only).
    Admin,
    /// Liveness, readiness and metrics.
    Operations,
}

pub type Api = (
    AccountsApi,
    CouponsApi,
    ClaimApi,
    TicketsApi,
    AdminApi,
    OperationsApi,
);

pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            AccountsApi,
            CouponsApi,
            ClaimApi,
            TicketsApi,
            AdminApi,
            OperationsApi,
        ),
        "Coupon rush",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "First-come-first-served coupons behind a waiting room.\n\n\
         Every error is `{code, message}` with a stable `code`. Authenticate \
         with `Authorization: Bearer <access_token>` from `POST /api/auth/login` \
         (or the `access_token` cookie the pages set).",
    )
}

/// The OpenAPI document as the gateway serves it.
pub fn spec_json() -> String {
    service().spec()
}
