//! Rate limits: per client address on sign-up and login, per account on
//! claims and ticket reads. Over the limit: `429 RATE_LIMITED` with
//! `Retry-After`, before the handler runs. The client address is the
//! peer's, or behind `TRUSTED_PROXIES` the one they forwarded
//! ([`crate::client_addr`]).
//!
//! The limiters are the `governor` crate's keyed GCRA limiters, kept in
//! each gateway process (a client spread over N gateways gets N times the
//! rate; the limits are sized so that still stops abuse). Per-account
//! limits never count people against each other, which matters in a storm
//! where thousands share one carrier address; login lockout, which must
//! hold across gateways, lives in Redis ([`crate::accounts`]).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;

use crate::auth::{Tokens, Verified, COOKIE};
use crate::client_addr::client_ip;
use crate::error::{ErrorBody, ErrorCode};
use crate::state::AppState;

const fn n(v: u32) -> NonZeroU32 {
    match NonZeroU32::new(v) {
        Some(v) => v,
        None => panic!("a quota is never zero"),
    }
}

/// Sign-ups per address: 20 at once, then one every 6 seconds.
const SIGNUP: Quota = Quota::per_minute(n(10)).allow_burst(n(20));
/// Logins per address: 20 at once, then one a second.
const LOGIN: Quota = Quota::per_second(n(1)).allow_burst(n(20));
/// Claims per account: 10 at once, then 5 a second.
const CLAIM: Quota = Quota::per_second(n(5)).allow_burst(n(10));
/// Ticket reads per account: 20 at once, then 10 a second (the API asks
/// for at most 2 a second).
const TICKET: Quota = Quota::per_second(n(10)).allow_burst(n(20));

pub struct RateLimits {
    signup: DefaultKeyedRateLimiter<IpAddr>,
    login: DefaultKeyedRateLimiter<IpAddr>,
    claim: DefaultKeyedRateLimiter<u64>,
    ticket: DefaultKeyedRateLimiter<u64>,
    clock: DefaultClock,
    /// When the last sweep started, in ms since `started`.
    last_sweep: AtomicU64,
    started: Instant,
}

/// How often keys whose limits have fully recovered are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            signup: RateLimiter::keyed(SIGNUP),
            login: RateLimiter::keyed(LOGIN),
            claim: RateLimiter::keyed(CLAIM),
            ticket: RateLimiter::keyed(TICKET),
            clock: DefaultClock::default(),
            last_sweep: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

#[derive(Clone, Copy)]
enum Rule {
    Signup,
    Login,
    Claim,
    Ticket,
}

fn rule(method: &Method, path: &str) -> Option<Rule> {
    let api = path.strip_prefix("/api").unwrap_or(path);
    match (method, api) {
        (&Method::POST, "/auth/signup" | "/signup") => Some(Rule::Signup),
        (&Method::POST, "/auth/login" | "/login") => Some(Rule::Login),
        (&Method::POST, p) if p.starts_with("/coupons/") && p.ends_with("/claim") => {
            Some(Rule::Claim)
        }
        (&Method::GET, p) if p.starts_with("/tickets/") => Some(Rule::Ticket),
        _ => None,
    }
}

impl RateLimits {
    /// `Some(seconds to wait)` when `req` is over its limit. A token this
    /// had to verify is left in the request for the handler
    /// ([`crate::auth::Verified`]), which then need not verify it again.
    fn check(&self, tokens: &Tokens, req: &mut Request, rule: Rule) -> Option<u64> {
        let ip = || client_ip(req);
        let outcome = match rule {
            Rule::Signup => self.signup.check_key(&ip()),
            Rule::Login => self.login.check_key(&ip()),
            Rule::Claim | Rule::Ticket => {
                // Accounts are known from the token; without a valid one
                // the handler answers 401 anyway.
                let token = req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .map(str::to_owned)
                    .or_else(|| req.cookie().get(COOKIE).map(|c| c.value_str().to_owned()))?;
                let user = tokens.verify(&token).ok()?;
                req.extensions_mut().insert(Verified { token, user });
                let limiter = if matches!(rule, Rule::Claim) {
                    &self.claim
                } else {
                    &self.ticket
                };
                limiter.check_key(&user.id.0)
            }
        };
        outcome.err().map(|not_until| {
            not_until
                .wait_time_from(self.clock.now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        })
    }
}

impl RateLimits {
    /// Forgets keys whose limits have fully recovered, at most once per
    /// [`SWEEP_EVERY`] and on a blocking thread: a sweep walks every key
    /// (a storm leaves one per account), which no request should wait for.
    fn sweep_if_due(self: &Arc<Self>) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let limits = self.clone();
        tokio::task::spawn_blocking(move || {
            limits.signup.retain_recent();
            limits.login.retain_recent();
            limits.claim.retain_recent();
            limits.ticket.retain_recent();
        });
    }
}

/// A 429 in the API's error shape.
pub fn too_many(retry_after: u64, message: String) -> Response {
    Json(ErrorBody {
        code: ErrorCode::RateLimited.as_str().to_owned(),
        message,
    })
    .with_status(StatusCode::TOO_MANY_REQUESTS)
    .with_header("retry-after", retry_after.to_string())
    .into_response()
}

/// The email a login request is for (JSON for the API, a form for the
/// page); the body is small, as [`crate::body_limit`] ran first.
fn login_email(content_type: &str, body: &[u8]) -> Option<String> {
    if content_type.starts_with("application/x-www-form-urlencoded") {
        #[derive(serde::Deserialize)]
        struct Form {
            email: String,
        }
        return serde_urlencoded::from_bytes::<Form>(body)
            .ok()
            .map(|f| f.email);
    }
    serde_json::from_slice::<serde_json::Value>(body).ok()?["email"]
        .as_str()
        .map(str::to_owned)
}

/// The middleware.
pub async fn enforce<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let Some(rule) = rule(req.method(), req.uri().path()) else {
        return Ok(next.call(req).await?.into_response());
    };
    // Only the handles needed here are cloned, not the whole state: this
    // runs for every claim.
    let Some((enabled, limits, tokens)) = req
        .data::<AppState>()
        .map(|s| (s.config.rate_limits, s.limits.clone(), s.tokens.clone()))
    else {
        return Ok(next.call(req).await?.into_response());
    };
    if enabled {
        limits.sweep_if_due();
        if let Some(wait) = limits.check(&tokens, &mut req, rule) {
            return Ok(too_many(
                wait,
                format!("Too many requests. Try again in {wait} s."),
            ));
        }
    }
    if matches!(rule, Rule::Login) {
        if let Some(redis) = req.data::<AppState>().map(|s| s.redis.clone()) {
            let body = req.take_body().into_bytes().await?;
            let email = login_email(req.content_type().unwrap_or(""), &body)
                .and_then(|e| coupon_core::domain::Email::parse(&e).ok());
            req.set_body(body);
            if let Some(email) = email {
                match crate::accounts::lockout::locked(&redis, &email).await {
                    Ok(Some(wait)) => {
                        return Ok(too_many(
                            wait,
                            format!(
                                "Too many failed logins for this account. Try again in {wait} s."
                            ),
                        ))
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "login lockout unavailable; allowing the attempt")
                    }
                }
            }
        }
    }
    Ok(next.call(req).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_api_and_pages() {
        assert!(matches!(
            rule(&Method::POST, "/api/auth/login"),
            Some(Rule::Login)
        ));
        assert!(matches!(rule(&Method::POST, "/login"), Some(Rule::Login)));
        assert!(matches!(rule(&Method::POST, "/signup"), Some(Rule::Signup)));
        assert!(matches!(
            rule(&Method::POST, "/api/coupons/7/claim"),
            Some(Rule::Claim)
        ));
        assert!(matches!(
            rule(&Method::POST, "/coupons/7/claim"),
            Some(Rule::Claim)
        ));
        assert!(matches!(
            rule(&Method::GET, "/api/tickets/t1.a.b"),
            Some(Rule::Ticket)
        ));
        assert!(matches!(
            rule(&Method::GET, "/tickets/t1.a.b/events"),
            Some(Rule::Ticket)
        ));
        assert!(rule(&Method::GET, "/api/coupons").is_none());
        assert!(rule(&Method::GET, "/login").is_none());
    }
}
