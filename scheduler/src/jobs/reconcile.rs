//! Reconciliation: compares, per coupon, what Redis says was issued with
//! what MySQL holds, and repairs what drifted.
//!
//! - An issue in Redis's issued set with no row in `coupon_issue`, older
//!   than `RECONCILE_DELAY_SECS` and no longer on its way (not in the
//!   outbox), is inserted (idempotently, with its true issue time): a lost
//!   Kafka event or a deleted row comes back (invariant 4).
//! - `remaining_quantity` that is not `total - rows` is recomputed
//!   (invariant 7), for every coupon in MySQL.
//! - A row whose user is not in Redis's issued set is an issue Redis
//!   forgot after its event left (a restart from an append-only file a
//!   second behind, or a loss while the event was in Kafka): Redis takes it
//!   back (`remember.lua`: holder again, one less in stock, counted in
//!   today's daily limit), so the coupon cannot be issued past its total
//!   or to the same user twice.
//! - Redis stock that does not add up with the issued set is reported: no
//!   automatic fix is safe.
//!
//! What it finds and fixes is logged, counted in metrics
//! (`coupon_reconcile_drift_*`) and kept per coupon in Redis for the admin
//! stats (`coupon:{id}:reconcile`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use coupon_core::coupons::{self, NewIssue};
use coupon_core::domain::{CouponId, UserId};
use coupon_core::scripts::{self, CouponKeys};
use coupon_core::{daily, metrics as names, stock};

use super::Ctx;

/// What one run found and fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub missing_rows: u64,
    pub rows_repaired: u64,
    pub remaining_corrected: u64,
    /// Rows whose issue Redis had forgotten, and took back.
    pub extra_rows: u64,
    pub stock_mismatches: u64,
}

impl Report {
    pub fn repaired(&self) -> u64 {
        self.rows_repaired + self.remaining_corrected + self.extra_rows
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for coupon in stock::active(&ctx.redis).await? {
        reconcile_coupon(ctx, coupon, &mut report).await?;
    }
    for (coupon, stored, rows) in coupons::remaining_drift(&ctx.db).await? {
        tracing::warn!(%coupon, stored, rows, "remaining_quantity drifted; recomputing");
        let mut conn = ctx.db.acquire().await?;
        coupons::refresh_remaining(&mut conn, coupon).await?;
        report.remaining_corrected += 1;
        record(ctx, coupon, "remaining_corrected", 1).await?;
    }
    let counts = [
        ("missing_row", report.missing_rows, report.rows_repaired),
        (
            "remaining",
            report.remaining_corrected,
            report.remaining_corrected,
        ),
        ("extra_row", report.extra_rows, report.extra_rows),
        ("stock", report.stock_mismatches, 0),
    ];
    for (kind, found, repaired) in counts {
        metrics::counter!(names::DRIFT_FOUND, "kind" => kind).increment(found);
        metrics::counter!(names::DRIFT_REPAIRED, "kind" => kind).increment(repaired);
    }
    if report != Report::default() {
        tracing::warn!(?report, "reconciliation found drift");
    }
    Ok(report)
}

async fn reconcile_coupon(ctx: &Ctx, coupon: CouponId, report: &mut Report) -> anyhow::Result<()> {
    let k = CouponKeys::new(ctx.redis.keys(), coupon);
    let mut conn = ctx.redis.conn().await?;
    let (issued, stock, total, outbox): (
        HashSet<u64>,
        Option<i64>,
        Option<i64>,
        redis::streams::StreamRangeReply,
    ) = redis::pipe()
        .atomic()
        .smembers(&k.issued)
        .get(&k.stock)
        .hget(&k.meta, "total")
        .xrange_all(&k.outbox)
        .query_async(&mut conn)
        .await?;
    let issues = coupons::issues(&ctx.db, coupon).await?;
    let rows: HashSet<u64> = issues.iter().map(|(user, _)| user.0).collect();
    let in_flight: HashSet<u64> = outbox
        .ids
        .iter()
        .filter_map(|e| e.get::<u64>("user"))
        .collect();

    if let (Some(stock), Some(total)) = (stock, total) {
        if stock + issued.len() as i64 != total {
            tracing::warn!(%coupon, stock, issued = issued.len(), total, "Redis stock and issued set disagree");
            report.stock_mismatches += 1;
        }
    }
    // Most rows that look extra arrived after the set was read; the
    // script takes back only users the set still lacks.
    let extra: Vec<(UserId, DateTime<Utc>)> = issues
        .into_iter()
        .filter(|(user, _)| !issued.contains(&user.0))
        .collect();
    if !extra.is_empty() {
        let now = Utc::now();
        let today = daily::day_of(now, ctx.config.daily_limit_tz);
        let taken =
            scripts::remember(&ctx.redis, coupon, &extra, &today, now.timestamp_millis()).await?;
        if !taken.is_empty() {
            tracing::warn!(%coupon, users = ?taken, "rows in MySQL whose issue Redis had forgotten; Redis took them back");
            report.extra_rows += taken.len() as u64;
            record(ctx, coupon, "issues_taken_back", taken.len() as u64).await?;
        }
    }

    let missing: Vec<u64> = issued
        .iter()
        .filter(|u| !rows.contains(u) && !in_flight.contains(u))
        .copied()
        .collect();
    if missing.is_empty() {
        record(ctx, coupon, "checked", 0).await?;
        return Ok(());
    }
    let results: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&k.results)
        .arg(&missing)
        .query_async(&mut conn)
        .await?;
    let cutoff = Utc::now() - chrono::Duration::from_std(ctx.config.reconcile_delay)?;
    let mut repair = Vec::new();
    for (user, result) in missing.iter().zip(results) {
        let issued_at = result
            .as_deref()
            .and_then(|r| r.strip_prefix("I:"))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        // Without a result the issue time is unknown: it is old by now.
        let issued_at = issued_at.unwrap_or(cutoff);
        if issued_at <= cutoff {
            repair.push(NewIssue {
                coupon,
                user: UserId(*user),
                issued_at,
            });
        }
    }
    if repair.is_empty() {
        return Ok(());
    }
    report.missing_rows += repair.len() as u64;
    let inserted = coupons::persist_issues(&ctx.db, &repair).await?;
    report.rows_repaired += inserted;
    tracing::warn!(%coupon, missing = repair.len(), inserted, "issued in Redis but missing in MySQL; repaired");
    record(ctx, coupon, "missing_rows_found", repair.len() as u64).await?;
    record(ctx, coupon, "rows_repaired", inserted).await?;
    Ok(())
}

/// Adds to the coupon's reconciliation record (read by the admin stats).
async fn record(ctx: &Ctx, coupon: CouponId, field: &str, n: u64) -> redis::RedisResult<()> {
    let key = ctx.redis.keys().coupon(coupon.0, "reconcile");
    let mut conn = ctx.redis.conn().await?;
    redis::pipe()
        .hincr(&key, field, n)
        .ignore()
        .hset(&key, "last_run_ms", Utc::now().timestamp_millis())
        .ignore()
        .query_async(&mut conn)
        .await
}
