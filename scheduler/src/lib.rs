//! The scheduler: periodic jobs that keep Redis and MySQL true over time
//! (tokio-cron-scheduler), one file each under [`jobs`]: expiry,
//! activation, daily rollover, reconciliation.
//!
//! Any number of scheduler processes may run: each job's tick is claimed in
//! Redis, so a tick runs once, and a run holds the job's lock (token and
//! expiry, released only by its owner), so runs never overlap ([`lock`]).
//! It serves `/healthz`, `/readyz` and `/metrics` on
//! `SCHEDULER_METRICS_ADDR`.

pub mod jobs;
pub mod lock;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use coupon_core::health::Dependencies;
use coupon_core::{metrics as names, Config};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tokio_util::sync::CancellationToken;

pub use jobs::{Ctx, Job};

/// The tick a job is in now: its period's number since the epoch.
pub fn current_tick(job: Job) -> i64 {
    Utc::now().timestamp() / job.period().as_secs() as i64
}

/// Runs `job` for `tick` if this scheduler is the one to: claims the tick,
/// takes the job's lock, runs, releases. Returns whether it ran.
pub async fn run_tick(ctx: &Ctx, job: Job, tick: i64) -> anyhow::Result<bool> {
    if !lock::claim_tick(&ctx.redis, job.name(), tick, job.period()).await? {
        return Ok(false);
    }
    // A run may take at most ten periods before another may start.
    let Some(held) = lock::acquire(&ctx.redis, job.name(), job.period() * 10).await? else {
        tracing::info!(
            job = job.name(),
            "previous run still holds the lock; skipping this tick"
        );
        return Ok(false);
    };
    let started = Instant::now();
    let result = job.run(ctx).await;
    metrics::histogram!(names::JOB_DURATION, "job" => job.name())
        .record(started.elapsed().as_secs_f64());
    let released = held.release(&ctx.redis).await;
    match &result {
        Ok(changed) => {
            metrics::counter!(names::JOB_RUNS, "job" => job.name(), "result" => "ok").increment(1);
            if *changed > 0 {
                tracing::info!(job = job.name(), changed, "job ran");
            }
        }
        Err(e) => {
            metrics::counter!(names::JOB_RUNS, "job" => job.name(), "result" => "error")
                .increment(1);
            tracing::warn!(
                job = job.name(),
                error = format!("{e:#}"),
                "job failed; the next tick retries"
            );
        }
    }
    released?;
    result.map(|_| true)
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let deps = Dependencies::new(&config)?;
    let (addr, ops) = coupon_core::ops_http::serve(
        config.scheduler_metrics_addr,
        deps.clone(),
        coupon_core::metrics::install(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "scheduler metrics and health endpoints listening");
    let ctx = Ctx {
        config: Arc::new(config),
        db: deps.db.clone(),
        redis: deps.redis.clone(),
    };
    let mut scheduler = JobScheduler::new().await?;
    for job in Job::ALL {
        let ctx = ctx.clone();
        scheduler
            .add(CronJob::new_async(job.cron(), move |_, _| {
                let ctx = ctx.clone();
                Box::pin(async move {
                    // Errors are counted and logged inside; the next tick retries.
                    let _ = run_tick(&ctx, job, current_tick(job)).await;
                })
            })?)
            .await?;
    }
    scheduler.start().await?;
    tracing::info!(jobs = ?Job::ALL.map(Job::name), "scheduler running");
    shutdown.cancelled().await;
    scheduler.shutdown().await?;
    ops.await??;
    Ok(())
}
