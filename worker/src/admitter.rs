//! The admitter: for every active coupon, takes the head of the waiting line
//! at the coupon's admission rate (`admit.lua`, rate enforced in Redis so it
//! holds across worker instances) and decides the claims of that batch with
//! one atomic `claim.lua` call per chunk.
//!
//! Invariants kept here: 1 and 3 (the claim script checks stock and the
//! daily count atomically), 2 (issued set), 6 (the line is taken in score
//! order), 5 (sold out: the line is drained at once, not at the rate).
//! Several instances may run: a user is decided at most once, because the
//! claim script only decides users still in the admitted set.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use coupon_core::domain::CouponId;
use coupon_core::scripts::{self, Outcome};
use coupon_core::{daily, metrics as names, stock, Config, RedisStore};
use tokio_util::sync::CancellationToken;

/// Most users admitted at the rate in one call.
const MAX_BATCH: u32 = 1000;
/// Most users taken in one call once the coupon is sold out.
const DRAIN_BATCH: u32 = 2000;
/// Most `admit.lua` calls for one coupon in one tick. A call that comes
/// back full is followed by another, so a coupon's rate is kept however
/// high it is set (up to 200,000 a second, twice the highest the admin API
/// takes), each call still small; the bound keeps one coupon's burst from
/// holding the others up for long.
const MAX_CALLS_PER_TICK: usize = 10;
/// Users per `claim.lua` call: large enough to approach the script's raw
/// rate, small enough to keep Redis responsive for everyone else.
const CLAIM_CHUNK: usize = 500;
/// How often the admitter looks at the lines.
const TICK: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Admitter {
    config: Arc<Config>,
    redis: RedisStore,
}

/// What one pass over one coupon did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmitReport {
    pub issued: u64,
    pub rejected: u64,
}

impl Admitter {
    pub fn new(config: Arc<Config>, redis: RedisStore) -> Self {
        Self { config, redis }
    }

    /// Admits what the rate allows now from one coupon's line and decides
    /// those claims: calls of up to [`MAX_BATCH`] users while each comes
    /// back full, at most [`MAX_CALLS_PER_TICK`] of them. A call that sold
    /// the coupon out is followed by another too, which drains the line
    /// (sold out, the rate no longer applies): the users still waiting
    /// hear `SOLD_OUT` now, not a tick later, and the gateways may answer
    /// the coupon's claims themselves that much sooner.
    pub async fn admit_once(&self, coupon: CouponId) -> anyhow::Result<AdmitReport> {
        let mut report = AdmitReport::default();
        for _ in 0..MAX_CALLS_PER_TICK {
            // The claims decided before a failed call stay decided (and
            // counted in the metrics): the error says so.
            let (decided, more) = self.admit_call(coupon).await.with_context(|| {
                format!(
                    "after {} issued and {} rejected in this pass",
                    report.issued, report.rejected
                )
            })?;
            report.issued += decided.issued;
            report.rejected += decided.rejected;
            if !more {
                break;
            }
        }
        Ok(report)
    }

    /// One `admit.lua` call and the claim script for the users it took;
    /// whether another call may find users due now: this one took as many
    /// as it may, or it sold the coupon out.
    async fn admit_call(&self, coupon: CouponId) -> anyhow::Result<(AdmitReport, bool)> {
        let now = Utc::now();
        let users = scripts::admit(
            &self.redis,
            coupon,
            now.timestamp_millis(),
            MAX_BATCH,
            DRAIN_BATCH,
        )
        .await?;
        let mut report = AdmitReport::default();
        if users.is_empty() {
            return Ok((report, false));
        }
        let full = users.len() >= MAX_BATCH as usize;
        let mut sold_out = false;
        let day = daily::day_of(now, self.config.daily_limit_tz);
        let label = coupon.to_string();
        for chunk in users.chunks(CLAIM_CHUNK) {
            let started = std::time::Instant::now();
            let claimed = scripts::claim(
                &self.redis,
                coupon,
                chunk,
                &day,
                self.config.daily_limit,
                now.timestamp_millis(),
            )
            .await?;
            metrics::histogram!(names::CLAIM_SCRIPT_DURATION)
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!(names::CLAIM_BATCH_SIZE).record(chunk.len() as f64);
            metrics::counter!(names::ADMISSIONS, "coupon" => label.clone())
                .increment(claimed.decided.len() as u64);
            for (_, outcome) in &claimed.decided {
                metrics::counter!(names::CLAIM_OUTCOMES, "outcome" => outcome.as_str())
                    .increment(1);
                match outcome {
                    Outcome::Issued => report.issued += 1,
                    _ => report.rejected += 1,
                }
            }
            // Also when the call's last user took the last coupon.
            sold_out |= claimed.sold_out();
        }
        Ok((report, full || sold_out))
    }

    /// One pass over every active coupon.
    pub async fn tick(&self) -> anyhow::Result<AdmitReport> {
        let mut total = AdmitReport::default();
        let coupons = stock::active(&self.redis).await?;
        if let Ok(live) = stock::live(&self.redis, &coupons).await {
            for (coupon, live) in coupons.iter().zip(live) {
                metrics::gauge!(names::QUEUE_LENGTH, "coupon" => coupon.to_string())
                    .set(live.waiting as f64);
            }
        }
        for coupon in coupons {
            match self.admit_once(coupon).await {
                Ok(r) => {
                    total.issued += r.issued;
                    total.rejected += r.rejected;
                }
                Err(e) => {
                    tracing::warn!(%coupon, error = format!("{e:#}"), "admission failed; will retry")
                }
            }
        }
        Ok(total)
    }

    /// Runs until `shutdown`; the batch in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = interval.tick() => {}
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = format!("{e:#}"), "admitter tick failed");
            }
        }
    }
}
