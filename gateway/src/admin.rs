//! The admin API: create coupons, and watch them (stats, dashboard).
//! Stats are cheap enough to poll every second during a storm: one grouped
//! COUNT on an index, one Redis pipeline.

use chrono::Utc;
use coupon_core::coupons::{self, NewCoupon};
use coupon_core::domain::CouponId;
use coupon_core::stock;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::api::ApiTags;
use crate::api_errors;
use crate::auth::Auth;
use crate::coupons::{live_states, Coupon};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;
use crate::time::UtcTime;

#[derive(Object, serde::Deserialize)]
struct CreateCoupon {
    /// 1 to 100 characters, not all blank.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"\S"))]
    title: String,
    /// 1 to 10,000,000.
    #[oai(validator(minimum(value = "1"), maximum(value = "10000000")))]
    total_quantity: u32,
    /// From 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (in UTC).
    valid_from: UtcTime,
    /// After `valid_from`, and no later than 9999-12-31T23:59:59Z (in UTC).
    valid_to: UtcTime,
    /// Admissions per second from the waiting line (1 to 100,000); the
    /// configured default when absent.
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "100000")))]
    admission_rate_per_sec: Option<u32>,
}

/// Claim outcomes by reason.
#[derive(Object, Default)]
struct Outcomes {
    issued: u64,
    sold_out: u64,
    already_issued: u64,
    daily_limit: u64,
}

/// What reconciliation found and repaired for a coupon.
#[derive(Object, Default)]
struct Reconciliation {
    /// Issues in Redis that had no row in MySQL past the delay.
    missing_rows_found: u64,
    rows_repaired: u64,
    /// Times `remaining_quantity` was recomputed.
    remaining_corrected: u64,
    /// Issues in MySQL that Redis had forgotten (lost after their event
    /// left), given back to Redis.
    issues_taken_back: u64,
    #[oai(nullable)]
    last_checked_at: Option<UtcTime>,
}

#[derive(Object)]
pub struct Stats {
    coupon_id: u64,
    title: String,
    status: String,
    total_quantity: u32,
    /// Rows in `coupon_issue`: coupons persisted to MySQL.
    issued: u64,
    /// Coupons not yet handed out (live, from Redis).
    remaining: u32,
    /// People in the waiting line now.
    waiting: u64,
    outcomes: Outcomes,
    reconciliation: Reconciliation,
}

#[derive(Object)]
struct Dashboard {
    coupons: Vec<Stats>,
    /// Sum of `issued` over all coupons shown.
    total_issued: u64,
    /// Sum of `waiting` over all coupons shown.
    total_waiting: u64,
    generated_at: UtcTime,
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// The coupon was created and its stock is ready in Redis.
    #[oai(status = 201)]
    Created(Json<Coupon>),
}

api_errors!(pub CreateError { Validation = 400, Unauthorized = 401, Forbidden = 403 });
api_errors!(pub StatsError { Validation = 400, Unauthorized = 401, Forbidden = 403, CouponNotFound = 404 });
api_errors!(pub DashboardError { Unauthorized = 401, Forbidden = 403 });

pub struct AdminApi;

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// Create a coupon (admin).
    #[oai(path = "/api/admin/coupons", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        body: JsonBody<CreateCoupon>,
    ) -> Result<CreateResponse, CreateError> {
        auth.admin()?;
        Ok(CreateResponse::Created(Json(create(&state, body.0).await?)))
    }

    /// Live statistics of one coupon (admin).
    #[oai(path = "/api/admin/coupons/:id/stats", method = "get")]
    async fn stats(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "9223372036854775807")))] id: Path<
            u64,
        >,
    ) -> Result<Json<Stats>, StatsError> {
        auth.admin()?;
        Ok(Json(coupon_stats(&state, CouponId(id.0)).await?))
    }

    /// Live statistics of every coupon (admin).
    #[oai(path = "/api/admin/dashboard", method = "get")]
    async fn dashboard(
        &self,
        state: Data<&AppState>,
        auth: Auth,
    ) -> Result<Json<Dashboard>, DashboardError> {
        auth.admin()?;
        Ok(Json(dashboard(&state).await?))
    }
}

async fn create(state: &AppState, body: CreateCoupon) -> Result<Coupon, ApiError> {
    let title = body.title.trim();
    if title.is_empty() {
        return Err(ApiError::Validation("title: must not be blank".into()));
    }
    in_storable_range("valid_from", &body.valid_from)?;
    in_storable_range("valid_to", &body.valid_to)?;
    if body.valid_from >= body.valid_to {
        return Err(ApiError::Validation(
            "valid_to: must be after valid_from".into(),
        ));
    }
    let new = NewCoupon {
        title: title.to_owned(),
        total_quantity: body.total_quantity,
        valid_from: body.valid_from.0,
        valid_to: body.valid_to.0,
        admission_rate_per_sec: body.admission_rate_per_sec,
    };
    let row = coupons::create(&state.db, &new).await?;
    // The claim path reads only Redis: make the stock ready now. If this
    // fails the coupon exists but cannot be claimed until the scheduler's
    // warm-up job succeeds, so tell the admin now rather than later.
    stock::warm_up(&state.redis, &state.db, &state.config, &row).await?;
    tracing::info!(coupon_id = %row.id, total = row.total_quantity, "coupon created");
    Ok(Coupon::new(&row, None, state.config.admission_rate_per_sec))
}

/// Coupon times are kept between the Unix epoch (Redis's millisecond
/// fields count from it) and the end of year 9999 (MySQL's DATETIME ends
/// there; a later time broke the insert with a 500). A time outside is
/// no coupon anyone means, so it is a validation error here.
fn in_storable_range(field: &str, time: &UtcTime) -> Result<(), ApiError> {
    if coupons::is_storable(&time.0) {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "{field}: must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (UTC)"
        )))
    }
}

async fn coupon_stats(state: &AppState, id: CouponId) -> Result<Stats, ApiError> {
    let row = coupons::by_id(&state.db, id)
        .await?
        .ok_or(ApiError::CouponNotFound)?;
    let mut stats = stats(state, vec![row]).await?;
    Ok(stats.remove(0))
}

async fn dashboard(state: &AppState) -> Result<Dashboard, ApiError> {
    let rows = coupons::list(&state.db, 200).await?;
    let coupons = stats(state, rows).await?;
    Ok(Dashboard {
        total_issued: coupons.iter().map(|s| s.issued).sum(),
        total_waiting: coupons.iter().map(|s| s.waiting).sum(),
        coupons,
        generated_at: Utc::now().into(),
    })
}

async fn stats(state: &AppState, rows: Vec<coupons::Coupon>) -> Result<Vec<Stats>, ApiError> {
    let ids: Vec<CouponId> = rows.iter().map(|c| c.id).collect();
    let issued: std::collections::HashMap<CouponId, u64> = coupons::issued_counts(&state.db, &ids)
        .await?
        .into_iter()
        .collect();
    let live = live_states(state, &ids).await;
    let records = reconciliation(state, &ids).await;
    let rate = state.config.admission_rate_per_sec;
    Ok(rows
        .iter()
        .zip(live)
        .zip(records)
        .map(|((row, live), reconciliation)| {
            let coupon = Coupon::new(row, live.as_ref(), rate);
            let live = live.unwrap_or_default();
            Stats {
                coupon_id: row.id.0,
                title: row.title.clone(),
                status: coupon.status,
                total_quantity: row.total_quantity,
                issued: issued.get(&row.id).copied().unwrap_or(0),
                remaining: coupon.remaining_quantity,
                waiting: live.waiting,
                outcomes: Outcomes {
                    issued: live.outcomes.issued,
                    sold_out: live.outcomes.sold_out,
                    already_issued: live.outcomes.already_issued,
                    daily_limit: live.outcomes.daily_limit,
                },
                reconciliation,
            }
        })
        .collect())
}

/// The reconciliation records of `ids` (empty when Redis cannot answer).
async fn reconciliation(state: &AppState, ids: &[CouponId]) -> Vec<Reconciliation> {
    let read = async {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(state.redis.keys().coupon(id.0, "reconcile"));
        }
        let mut conn = state.redis.conn().await?;
        pipe.query_async::<Vec<std::collections::HashMap<String, i64>>>(&mut conn)
            .await
    };
    match read.await {
        Ok(maps) => maps
            .into_iter()
            .map(|m| {
                let n = |k: &str| m.get(k).copied().unwrap_or(0).max(0) as u64;
                Reconciliation {
                    missing_rows_found: n("missing_rows_found"),
                    rows_repaired: n("rows_repaired"),
                    remaining_corrected: n("remaining_corrected"),
                    issues_taken_back: n("issues_taken_back"),
                    last_checked_at: m
                        .get("last_run_ms")
                        .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
                        .map(UtcTime),
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reconciliation records unavailable");
            ids.iter().map(|_| Reconciliation::default()).collect()
        }
    }
}
