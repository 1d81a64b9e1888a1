//! Reading coupons: the list, one coupon, and the caller's issued coupons.
//! Remaining stock and status are live: Redis first, MySQL when Redis does
//! not know the coupon (or is unreachable: reads degrade, they do not fail).

use chrono::Utc;
use coupon_core::coupons;
use coupon_core::domain::{CouponId, CouponStatus};
use coupon_core::stock::{self, Live};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::api::ApiTags;
use crate::api_errors;
use crate::auth::{Auth, AuthUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::UtcTime;

/// How many coupons the list shows at most, newest first.
const LIST_LIMIT: u32 = 200;

#[derive(Object, Clone)]
pub struct Coupon {
    pub id: u64,
    pub title: String,
    pub total_quantity: u32,
    /// Live: coupons not yet handed out.
    pub remaining_quantity: u32,
    pub valid_from: UtcTime,
    pub valid_to: UtcTime,
    /// `scheduled`, `active`, `sold_out` or `expired`.
    pub status: String,
    /// Admissions per second from this coupon's waiting line.
    pub admission_rate_per_sec: u32,
    pub created_at: UtcTime,
}

impl Coupon {
    pub fn new(row: &coupons::Coupon, live: Option<&Live>, default_rate: u32) -> Self {
        let remaining = live
            .and_then(|l| l.stock)
            .unwrap_or(u64::from(row.remaining_quantity))
            .min(u64::from(row.total_quantity));
        let status = CouponStatus::derive(
            &row.status,
            row.valid_from,
            row.valid_to,
            remaining,
            Utc::now(),
        );
        Self {
            id: row.id.0,
            title: row.title.clone(),
            total_quantity: row.total_quantity,
            remaining_quantity: remaining as u32,
            valid_from: row.valid_from.into(),
            valid_to: row.valid_to.into(),
            status: status.as_str().to_owned(),
            admission_rate_per_sec: row.admission_rate_per_sec.unwrap_or(default_rate),
            created_at: row.created_at.into(),
        }
    }
}

/// One coupon the caller holds.
#[derive(Object)]
pub struct MyCoupon {
    pub coupon_id: u64,
    pub title: String,
    pub issued_at: UtcTime,
    pub valid_from: UtcTime,
    pub valid_to: UtcTime,
    /// Whether the coupon can be used now: `scheduled` (not yet),
    /// `active`, or `expired`.
    pub status: String,
}

api_errors!(pub ListError {});
api_errors!(pub GetError { Validation = 400, CouponNotFound = 404 });
api_errors!(pub MyCouponsError { Unauthorized = 401 });

/// Live Redis state for `rows`, or nothing (with a warning) when Redis
/// cannot answer.
pub async fn live_states(state: &AppState, ids: &[CouponId]) -> Vec<Option<Live>> {
    match stock::live(&state.redis, ids).await {
        Ok(live) => live.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable; showing stock from MySQL");
            vec![None; ids.len()]
        }
    }
}

pub struct CouponsApi;

#[OpenApi(tag = "ApiTags::Coupons")]
impl CouponsApi {
    /// All coupons, newest first (at most 200).
    #[oai(path = "/api/coupons", method = "get")]
    async fn list(&self, state: Data<&AppState>) -> Result<Json<Vec<Coupon>>, ListError> {
        Ok(Json(list(&state).await?))
    }

    /// One coupon.
    #[oai(path = "/api/coupons/:id", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        #[oai(validator(minimum(value = "1"), maximum(value = "9223372036854775807")))] id: Path<
            u64,
        >,
    ) -> Result<Json<Coupon>, GetError> {
        Ok(Json(get(&state, CouponId(id.0)).await?))
    }

    /// The coupons issued to the caller, newest first.
    #[oai(path = "/api/me/coupons", method = "get")]
    async fn mine(
        &self,
        state: Data<&AppState>,
        auth: Auth,
    ) -> Result<Json<Vec<MyCoupon>>, MyCouponsError> {
        Ok(Json(mine(&state, auth.user()).await?))
    }
}

pub async fn list(state: &AppState) -> Result<Vec<Coupon>, ApiError> {
    let rows = coupons::list(&state.db, LIST_LIMIT).await?;
    let ids: Vec<CouponId> = rows.iter().map(|c| c.id).collect();
    let live = live_states(state, &ids).await;
    let rate = state.config.admission_rate_per_sec;
    Ok(rows
        .iter()
        .zip(&live)
        .map(|(row, live)| Coupon::new(row, live.as_ref(), rate))
        .collect())
}

pub async fn get(state: &AppState, id: CouponId) -> Result<Coupon, ApiError> {
    let row = coupons::by_id(&state.db, id)
        .await?
        .ok_or(ApiError::CouponNotFound)?;
    let live = live_states(state, &[id]).await.pop().flatten();
    Ok(Coupon::new(
        &row,
        live.as_ref(),
        state.config.admission_rate_per_sec,
    ))
}

pub async fn mine(state: &AppState, user: AuthUser) -> Result<Vec<MyCoupon>, ApiError> {
    let now = Utc::now();
    let rows = coupons::issued_to(&state.db, user.id, 500).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let status = if row.status == "expired" || now >= row.valid_to {
                CouponStatus::Expired
            } else if now < row.valid_from {
                CouponStatus::Scheduled
            } else {
                CouponStatus::Active
            };
            MyCoupon {
                coupon_id: row.coupon_id.0,
                title: row.title,
                issued_at: row.issued_at.into(),
                valid_from: row.valid_from.into(),
                valid_to: row.valid_to.into(),
                status: status.as_str().to_owned(),
            }
        })
        .collect())
}
