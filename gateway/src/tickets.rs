//! Tickets: the answer to "where do I stand?".
//!
//! A ticket id is the pair (coupon, user) with an HMAC tag, keyed from
//! `JWT_SECRET`: it cannot be guessed or forged, needs no storage, and a
//! repeated claim yields the same id. Only its owner can read it; for anyone
//! else it does not exist (404).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use coupon_core::domain::{CouponId, UserId};
use coupon_core::metrics as names;
use coupon_core::stock::{self, TicketState};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use ring::hmac;

use crate::api::ApiTags;
use crate::api_errors;
use crate::auth::{Auth, AuthUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::UtcTime;

const PREFIX: &str = "t1.";
const TAG_LEN: usize = 32;

/// An HMAC-SHA256 key for one `purpose`, derived from the JWT secret, so
/// that no two uses of the secret can stand in for each other.
pub fn derive_key(secret: &str, purpose: &[u8]) -> hmac::Key {
    let master = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let derived = hmac::sign(&master, purpose);
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// Signs and checks ticket ids.
#[derive(Clone)]
pub struct TicketKey(Arc<hmac::Key>);

impl TicketKey {
    /// A key of its own, derived from the JWT secret, so a ticket tag can
    /// never serve as a token signature or the other way round.
    pub fn derive(secret: &str) -> Self {
        Self(Arc::new(derive_key(secret, b"coupon-rush ticket id v1")))
    }

    pub fn encode(&self, coupon: CouponId, user: UserId) -> String {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&coupon.0.to_be_bytes());
        body[8..].copy_from_slice(&user.0.to_be_bytes());
        let tag = hmac::sign(&self.0, &body);
        format!("{PREFIX}{}.{}", B64.encode(body), B64.encode(tag.as_ref()))
    }

    /// The (coupon, user) of a genuine ticket id; `None` for anything else.
    pub fn decode(&self, ticket: &str) -> Option<(CouponId, UserId)> {
        let (body, tag) = ticket.strip_prefix(PREFIX)?.split_once('.')?;
        let body = B64.decode(body).ok()?;
        let tag = B64.decode(tag).ok()?;
        if body.len() != 16 || tag.len() != TAG_LEN {
            return None;
        }
        // Compares in constant time.
        hmac::verify(&self.0, &body, &tag).ok()?;
        let coupon = u64::from_be_bytes(body[..8].try_into().ok()?);
        let user = u64::from_be_bytes(body[8..].try_into().ok()?);
        Some((CouponId(coupon), UserId(user)))
    }
}

/// Where a claim stands.
#[derive(Object, Clone, Debug)]
pub struct Ticket {
    /// Opaque; the same for every claim of one user on one coupon.
    pub ticket_id: String,
    pub coupon_id: u64,
    /// `waiting`, `admitted` (taken from the line, being decided), `issued`
    /// or `rejected`.
    pub status: String,
    /// While waiting: 1 = next.
    #[oai(nullable)]
    pub position: Option<u64>,
    /// While waiting: seconds until admission at the rate actually observed.
    #[oai(nullable)]
    pub eta_seconds: Option<u64>,
    /// When rejected: `SOLD_OUT`, `ALREADY_ISSUED`, `DAILY_LIMIT` or `EXPIRED`.
    #[oai(nullable)]
    pub reason: Option<String>,
    /// When issued.
    #[oai(nullable)]
    pub issued_at: Option<UtcTime>,
    /// When to ask again: shorter near the front of the line, longer far
    /// back; 30000 once the ticket is final (no need to ask again).
    pub poll_after_ms: u64,
    /// Coupons left now, when known.
    #[oai(nullable)]
    pub remaining_quantity: Option<u64>,
    /// How far the line has moved past those who were ahead of you when you
    /// joined, 0 to 100.
    #[oai(nullable)]
    pub progress_percent: Option<u8>,
}

/// What a ticket says, before it is dressed for the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    /// 0-based rank; admissions per second.
    Waiting {
        rank: u64,
        rate: f64,
        progress: Option<u8>,
    },
    Admitted,
    Issued {
        at: Option<DateTime<Utc>>,
    },
    Rejected {
        reason: &'static str,
    },
}

impl View {
    pub fn is_final(&self) -> bool {
        matches!(self, View::Issued { .. } | View::Rejected { .. })
    }

    pub fn status(&self) -> &'static str {
        match self {
            View::Waiting { .. } => "waiting",
            View::Admitted => "admitted",
            View::Issued { .. } => "issued",
            View::Rejected { .. } => "rejected",
        }
    }

    /// A stored result: `I:<issued_at_ms>` or `R:<REASON>`.
    pub fn from_result(result: &str) -> Self {
        match result.split_once(':') {
            Some(("I", ms)) => View::Issued {
                at: ms.parse().ok().and_then(DateTime::from_timestamp_millis),
            },
            Some(("R", "ALREADY_ISSUED")) => View::Rejected {
                reason: "ALREADY_ISSUED",
            },
            Some(("R", "DAILY_LIMIT")) => View::Rejected {
                reason: "DAILY_LIMIT",
            },
            Some(("R", "EXPIRED")) => View::Rejected { reason: "EXPIRED" },
            _ => View::Rejected { reason: "SOLD_OUT" },
        }
    }

    /// From everything Redis knows; `None` when Redis has no trace of this
    /// claim (the caller then asks MySQL).
    pub fn from_state(s: &TicketState) -> Option<Self> {
        if let Some(result) = &s.result {
            return Some(View::from_result(result));
        }
        if s.admitted {
            return Some(View::Admitted);
        }
        let rank = s.rank?;
        // Once the stock is gone or the coupon expired, everyone still in
        // line knows at once, without waiting for their turn.
        if s.sold_out {
            return Some(View::Rejected { reason: "SOLD_OUT" });
        }
        if s.expired {
            return Some(View::Rejected { reason: "EXPIRED" });
        }
        let progress = match (s.own_seq, s.head_seq) {
            (Some(own), Some(_)) if own > 1 => {
                let ahead_at_join = own - 1;
                Some((100 - (rank.min(ahead_at_join) * 100 / ahead_at_join)) as u8)
            }
            _ => Some(100),
        };
        Some(View::Waiting {
            rank,
            rate: s.rate,
            progress,
        })
    }

    pub fn into_ticket(
        self,
        ticket_id: String,
        coupon: CouponId,
        remaining: Option<u64>,
    ) -> Ticket {
        let mut ticket = Ticket {
            ticket_id,
            coupon_id: coupon.0,
            status: self.status().to_owned(),
            position: None,
            eta_seconds: None,
            reason: None,
            issued_at: None,
            poll_after_ms: 30_000,
            remaining_quantity: remaining,
            progress_percent: None,
        };
        match self {
            View::Waiting {
                rank,
                rate,
                progress,
            } => {
                let rate = if rate > 0.0 { rate } else { 1.0 };
                let eta = (rank + 1) as f64 / rate;
                ticket.position = Some(rank + 1);
                ticket.eta_seconds = Some(eta.ceil() as u64);
                ticket.poll_after_ms = poll_after_ms(eta);
                ticket.progress_percent = progress;
            }
            View::Admitted => ticket.poll_after_ms = 250,
            View::Issued { at } => ticket.issued_at = at.map(UtcTime),
            View::Rejected { reason } => ticket.reason = Some(reason.to_owned()),
        }
        ticket
    }
}

/// A fifth of the time until admission, within half a second and five
/// seconds: quick near the front, cheap far back.
fn poll_after_ms(eta_secs: f64) -> u64 {
    ((eta_secs * 1000.0 / 5.0) as u64).clamp(500, 5000)
}

api_errors!(pub TicketError { Unauthorized = 401, TicketNotFound = 404, RateLimited = 429 });

pub struct TicketsApi;

#[OpenApi(tag = "ApiTags::Claims")]
impl TicketsApi {
    /// Where your claim stands. Ask again after `poll_after_ms`.
    #[oai(path = "/api/tickets/:ticket_id", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        ticket_id: Path<String>,
    ) -> Result<Json<Ticket>, TicketError> {
        Ok(Json(read(&state, auth.user(), &ticket_id).await?))
    }
}

/// The caller's ticket, or 404 for a malformed, forged or foreign one.
pub async fn read(state: &AppState, caller: AuthUser, ticket_id: &str) -> Result<Ticket, ApiError> {
    Ok(lookup(state, caller, ticket_id).await?.ticket)
}

/// A ticket with what live updates need to follow it.
pub struct Lookup {
    pub ticket: Ticket,
    pub coupon: CouponId,
    /// The user's arrival number while in line.
    pub own_seq: Option<u64>,
}

pub async fn lookup(
    state: &AppState,
    caller: AuthUser,
    ticket_id: &str,
) -> Result<Lookup, ApiError> {
    let (coupon, user) = state
        .tickets
        .decode(ticket_id)
        .ok_or(ApiError::TicketNotFound)?;
    if user != caller.id {
        return Err(ApiError::TicketNotFound);
    }
    let now = Utc::now();
    let s = stock::ticket_state(&state.redis, coupon, user, now.timestamp_millis()).await?;
    let view = match View::from_state(&s) {
        Some(view) => view,
        None if !s.coupon_known => from_mysql(state, coupon, user).await?,
        // The coupon is live but this user never claimed it.
        None => return Err(ApiError::TicketNotFound),
    };
    metrics::counter!(names::TICKET_POLLS, "status" => view.status()).increment(1);
    let remaining = s.coupon_known.then_some(s.stock);
    Ok(Lookup {
        ticket: view.into_ticket(ticket_id.to_owned(), coupon, remaining),
        coupon,
        own_seq: s.own_seq,
    })
}

/// How far the line has moved past those ahead of a user when they joined
/// (arrival number `own`, 0-based rank now), 0 to 100.
pub fn progress(own: u64, rank: u64) -> u8 {
    if own <= 1 {
        return 100;
    }
    let ahead_at_join = own - 1;
    (100 - rank.min(ahead_at_join) * 100 / ahead_at_join) as u8
}

/// After a coupon's Redis state is cleaned up, MySQL still knows who got it.
async fn from_mysql(state: &AppState, coupon: CouponId, user: UserId) -> Result<View, ApiError> {
    let issued: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT issued_at FROM coupon_issue WHERE coupon_id = ? AND user_id = ?",
    )
    .bind(coupon.0)
    .bind(user.0)
    .fetch_optional(&state.db)
    .await?;
    if let Some(at) = issued {
        return Ok(View::Issued { at: Some(at) });
    }
    match coupon_core::coupons::by_id(&state.db, coupon).await? {
        Some(_) => Ok(View::Rejected { reason: "EXPIRED" }),
        None => Err(ApiError::TicketNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids_round_trip_and_resist_forgery() {
        let key = TicketKey::derive("a secret that is long enough for tests");
        let id = key.encode(CouponId(42), UserId(7));
        assert_eq!(key.decode(&id), Some((CouponId(42), UserId(7))));
        assert_eq!(key.encode(CouponId(42), UserId(7)), id, "stable");

        let other = TicketKey::derive("another secret, equally long and different");
        assert_eq!(other.decode(&id), None, "another key");
        // Someone else's ids with our tag.
        let (body, tag) = id.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let mut raw = B64.decode(body).unwrap();
        raw[15] ^= 1;
        assert_eq!(
            key.decode(&format!("{PREFIX}{}.{tag}", B64.encode(&raw))),
            None
        );
        for junk in [
            "",
            "t1.",
            "t1.abc",
            "t1.a.b",
            "x1.AAAA.BBBB",
            &id[..id.len() - 1],
            "t1.!!.??",
        ] {
            assert_eq!(key.decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn polling_is_quick_near_the_front_and_slow_far_back() {
        assert_eq!(poll_after_ms(0.1), 500);
        assert_eq!(poll_after_ms(10.0), 2000);
        assert_eq!(poll_after_ms(1000.0), 5000);
    }
}
