//! The HTTP gateway: JSON API (poem-openapi), the OpenAPI console at
//! `/docs`, and the operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`).
//!
//! - [`state`]: the one state value (config, MySQL pool, Redis, Kafka probe).
//! - [`startup`]: migrations at start, routes, binding and serving.
//! - [`api`]: the OpenAPI service that gathers every API area, one file
//!   each: [`accounts`] (sign-up, login, me), [`coupons`] (list, one, mine),
//!   [`claim`] (join the line: Redis only, one round trip,
//!   shared by the claims arriving together), [`tickets`]
//!   (where a claim stands; signed ticket ids), [`admin`] (create, stats,
//!   dashboard), [`operations`] (liveness, readiness, metrics).
//! - [`auth`]: JWT access tokens and the bearer/cookie security scheme.
//! - [`error`]: the one error type, its codes and statuses.
//! - [`allow`]: 405 answers name the allowed methods.
//! - [`http_metrics`]: requests by route pattern and status, latency;
//!   [`body_limit`]: bodies over 16 KiB are refused unread;
//!   [`rate_limit`]: per-address and per-account limits, with
//!   [`client_addr`]: the client's address, also behind trusted proxies.
//! - [`request_log`]: one log span per request, naming that client.
//! - [`pages`]: the server-rendered pages (askama, `templates/`) and
//!   [`live`]: their live updates, one Redis poll per watched coupon.
//! - [`json`]: strict JSON request bodies whose errors name the field.
//! - [`time`]: RFC 3339 UTC times in and out.
//!
//! The gateway's claim path touches Redis only; MySQL serves accounts and
//! the read APIs.

pub mod accounts;
pub mod admin;
pub mod allow;
pub mod api;
pub mod auth;
pub mod body_limit;
pub mod claim;
pub mod client_addr;
pub mod coupons;
pub mod error;
pub mod http_metrics;
pub mod json;
pub mod live;
pub mod operations;
pub mod pages;
pub mod rate_limit;
pub mod request_log;
pub mod startup;
pub mod state;
pub mod tickets;
pub mod time;

pub use startup::Application;
pub use state::AppState;
