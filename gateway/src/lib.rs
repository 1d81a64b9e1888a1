//! The HTTP gateway: JSON API (poem-openapi), the OpenAPI console at
//! `/docs`, and the operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`).
//!
//! - [`state`]: the one state value (config, MySQL pool, Redis, Kafka probe).
//! - [`startup`]: migrations at start, routes, binding and serving.
//! - [`api`]: the OpenAPI service that gathers every API area.
//! - [`operations`]: liveness, readiness and metrics.
//!
//! The gateway's claim path touches Redis only; MySQL serves accounts and
//! the read APIs.

pub mod api;
pub mod operations;
pub mod startup;
pub mod state;

pub use startup::Application;
pub use state::AppState;
