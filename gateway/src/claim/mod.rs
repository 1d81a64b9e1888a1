//! `POST /api/coupons/{id}/claim`: join a coupon's waiting line.
//!
//! The hot path touches Redis only, in one round trip (`enqueue.lua`): the
//! fast rejections (unknown or inactive coupon, sold out, already issued,
//! daily limit) and the `ZADD NX` into the line. A repeated claim returns
//! the same ticket and the same place. MySQL is read only when Redis does
//! not know the coupon at all (never warmed, or Redis lost it), to tell a
//! 404 from a coupon that needs warming up. Claims arriving together share
//! one script call ([`batch`]). Once a coupon is sold out with nobody left
//! in line, claims by users without a ticket result are answered 410 in
//! the gateway, without Redis ([`sold_out`]).

pub mod batch;
pub mod sold_out;

use chrono::{DateTime, Utc};
use coupon_core::domain::CouponId;
use coupon_core::scripts::{Claimant, Enqueued};
use coupon_core::{coupons, daily, metrics as names, stock};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::api::ApiTags;
use crate::api_errors;
use crate::auth::{Auth, AuthUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tickets::{Ticket, View};

#[derive(ApiResponse)]
pub enum ClaimResponse {
    /// The ticket is final already (issued, or rejected with a reason).
    #[oai(status = 200)]
    Final(Json<Ticket>),
    /// In line (or being decided): poll the ticket after `poll_after_ms`.
    #[oai(status = 202)]
    Accepted(Json<Ticket>),
}

impl ClaimResponse {
    pub fn ticket(&self) -> &Ticket {
        match self {
            ClaimResponse::Final(t) | ClaimResponse::Accepted(t) => t,
        }
    }
}

api_errors!(pub ClaimError {
    Validation = 400,
    Unauthorized = 401,
    CouponNotFound = 404,
    AlreadyIssued = 409,
    SoldOut = 410,
    NotActive = 422,
    DailyLimit = 429,
});

pub struct ClaimApi;

#[OpenApi(tag = "ApiTags::Claims")]
impl ClaimApi {
    /// Claim a coupon: join its waiting line and get a ticket.
    #[oai(path = "/api/coupons/:id/claim", method = "post")]
    async fn claim(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "9223372036854775807")))] id: Path<
            u64,
        >,
    ) -> Result<ClaimResponse, ClaimError> {
        Ok(claim(&state, auth.user(), CouponId(id.0)).await?)
    }
}

/// The claim, for the API and the pages alike.
pub async fn claim(
    state: &AppState,
    user: AuthUser,
    coupon: CouponId,
) -> Result<ClaimResponse, ApiError> {
    let result = enqueue(state, user, coupon).await;
    let label = match &result {
        Ok(Enqueued::Waiting { joined: true, .. }) => "queued",
        Ok(Enqueued::Waiting { joined: false, .. }) => "waiting",
        Ok(Enqueued::Admitted) => "admitted",
        Ok(Enqueued::Final(_)) => "final",
        Ok(Enqueued::AlreadyIssued) => "already_issued",
        Ok(Enqueued::SoldOut) => "sold_out",
        Ok(Enqueued::DailyLimit) => "daily_limit",
        Ok(Enqueued::NotActive { .. }) => "not_active",
        Ok(Enqueued::NoCoupon) => "not_found",
        Err(_) => "error",
    };
    metrics::counter!(names::CLAIMS, "result" => label).increment(1);

    // Signed only for an answer that carries it: most claims in a storm
    // are turned away at the door.
    let ticket = |view: View| view.into_ticket(state.tickets.encode(coupon, user.id), coupon, None);
    match result? {
        Enqueued::Waiting { rank, rate, .. } => {
            Ok(ClaimResponse::Accepted(Json(ticket(View::Waiting {
                rank,
                rate,
                progress: None,
            }))))
        }
        Enqueued::Admitted => Ok(ClaimResponse::Accepted(Json(ticket(View::Admitted)))),
        Enqueued::Final(result) => Ok(ClaimResponse::Final(Json(ticket(View::from_result(
            &result,
        ))))),
        Enqueued::AlreadyIssued => Err(ApiError::AlreadyIssued),
        Enqueued::SoldOut => Err(ApiError::SoldOut),
        Enqueued::DailyLimit => Err(ApiError::DailyLimit),
        Enqueued::NotActive { expired: true } => {
            Err(ApiError::NotActive("This coupon has expired.".into()))
        }
        Enqueued::NotActive { expired: false } => {
            Err(ApiError::NotActive("This coupon is not open yet.".into()))
        }
        Enqueued::NoCoupon => Err(ApiError::CouponNotFound),
    }
}

async fn enqueue(state: &AppState, user: AuthUser, coupon: CouponId) -> Result<Enqueued, ApiError> {
    let config = &state.config;
    let now = Utc::now();
    if state
        .enqueuer
        .turns_away(coupon, user.id, now.timestamp_millis())
    {
        return Ok(Enqueued::SoldOut);
    }
    let day = daily::day_of(now, config.daily_limit_tz);
    let run = || {
        let claimant = Claimant::new(
            state.redis.keys(),
            user.id,
            &day.label,
            now.timestamp_millis(),
        );
        state
            .enqueuer
            .enqueue(&state.redis, coupon, claimant, config.daily_limit)
    };
    match run().await? {
        Enqueued::NoCoupon => {
            // Off the hot path, and boxed (the retry too) so that neither
            // makes every claim's future, copied at each boxed middleware
            // layer, larger.
            match Box::pin(warm_up(state, coupon, now)).await? {
                Some(answer) => Ok(answer),
                None => Ok(Box::pin(run()).await?),
            }
        }
        other => Ok(other),
    }
}

/// Redis does not know `coupon`: warms it up from MySQL if it exists (SET
/// NX never resets live stock; its holders with it, so none of them can
/// get it twice) and returns `None`, to enqueue again; or the answer itself
/// when there is nothing to warm up.
async fn warm_up(
    state: &AppState,
    coupon: CouponId,
    now: DateTime<Utc>,
) -> Result<Option<Enqueued>, ApiError> {
    let Some(row) = coupons::by_id(&state.db, coupon).await? else {
        return Ok(Some(Enqueued::NoCoupon));
    };
    // An ended coupon whose Redis state was cleaned up stays ended.
    if row.status == "expired" || now >= row.valid_to {
        return Ok(Some(Enqueued::NotActive { expired: true }));
    }
    tracing::warn!(%coupon, "coupon missing in Redis; warming it up");
    stock::warm_up(&state.redis, &state.db, &state.config, &row).await?;
    Ok(None)
}
