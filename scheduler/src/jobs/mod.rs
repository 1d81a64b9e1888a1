//! The scheduler's jobs, one file each. Every job is idempotent: running it
//! twice, or after a crash half-way, leaves the same state.

pub mod activation;
pub mod expiry;
pub mod reconcile;
pub mod rollover;

use std::sync::Arc;
use std::time::Duration;

use coupon_core::{Config, RedisStore};
use sqlx::MySqlPool;

/// What every job works with.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub db: MySqlPool,
    pub redis: RedisStore,
}

/// The jobs and how often each runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    Expiry,
    Activation,
    Rollover,
    Reconcile,
}

impl Job {
    pub const ALL: [Job; 4] = [Job::Expiry, Job::Activation, Job::Rollover, Job::Reconcile];

    pub fn name(self) -> &'static str {
        match self {
            Job::Expiry => "expiry",
            Job::Activation => "activation",
            Job::Rollover => "daily_rollover",
            Job::Reconcile => "reconcile",
        }
    }

    pub fn period(self) -> Duration {
        Duration::from_secs(match self {
            Job::Expiry => 5,
            Job::Activation => 10,
            Job::Rollover => 600,
            Job::Reconcile => 30,
        })
    }

    /// The cron schedule (with seconds) matching [`Job::period`].
    pub fn cron(self) -> &'static str {
        match self {
            Job::Expiry => "*/5 * * * * *",
            Job::Activation => "*/10 * * * * *",
            Job::Rollover => "0 */10 * * * *",
            Job::Reconcile => "*/30 * * * * *",
        }
    }

    /// Runs the job once; returns how many things it changed.
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<u64> {
        match self {
            Job::Expiry => expiry::run(ctx).await,
            Job::Activation => activation::run(ctx).await,
            Job::Rollover => rollover::run(ctx).await,
            Job::Reconcile => reconcile::run(ctx).await.map(|r| r.repaired()),
        }
    }
}
