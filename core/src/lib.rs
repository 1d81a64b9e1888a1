//! What the gateway, worker and scheduler share.
//!
//! - [`config`]: the typed configuration, read once at start.
//! - [`domain`]: ids, emails, roles, coupon status: parsed once, then trusted.
//! - [`users`] and [`coupons`]: the MySQL tables.
//! - [`scripts`]: the Lua scripts of `lua/` (enqueue, admit, claim, expire,
//!   sold out, daily floor, remember) and every coupon key name;
//!   [`daily`]: the day of the daily limit, and its counters rebuilt after
//!   a Redis loss.
//! - [`events`]: the versioned Kafka event the relay writes and the
//!   persister reads.
//! - [`stock`]: a coupon's live state in Redis (stock, metadata, queue,
//!   outcome counts), warmed from MySQL with its holders and the day's
//!   counts.
//! - [`db`]: the MySQL pool and the embedded migrations.
//! - [`redis_store`] and [`keys`]: the Redis connection and key names (one
//!   hash tag per coupon).
//! - [`kafka`]: client settings, the shared producer, topic creation, a
//!   reachability probe.
//! - [`health`]: the readiness check every process serves at `/readyz`, and
//!   [`ops_http`]: the small server of `/healthz`, `/readyz` and `/metrics`
//!   that the worker and scheduler run.
//! - [`metrics`]: metric names and the Prometheus recorder.
//! - [`process`], [`telemetry`] and [`shutdown`]: the start and end of every
//!   binary, logs and signal handling.
//! - [`testing`]: a private database, key prefix and topics per test.

pub mod config;
pub mod coupons;
pub mod daily;
pub mod db;
pub mod domain;
pub mod events;
pub mod health;
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod ops_http;
pub mod process;
pub mod redis_store;
pub mod scripts;
pub mod shutdown;
pub mod stock;
pub mod telemetry;

pub mod testing;
pub mod users;

pub use config::Config;
pub use redis_store::RedisStore;
