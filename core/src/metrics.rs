//! Metric names (one place, so dashboards and code agree) and the
//! Prometheus recorder every process installs.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests by route and status (counter), and their latency
/// (histogram, seconds).
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";

/// Claims answered by the gateway, by result (`queued`, `waiting`,
/// `sold_out`, ...).
pub const CLAIMS: &str = "coupon_claims_total";
/// Of those, the `sold_out` ones the gateway answered without asking Redis
/// (the coupon sold out with nobody left in line).
pub const CLAIMS_SOLD_OUT_IN_GATEWAY: &str = "coupon_claims_sold_out_in_gateway_total";
/// Ticket reads, by status.
pub const TICKET_POLLS: &str = "coupon_ticket_polls_total";
/// Users admitted from a waiting line, by coupon.
pub const ADMISSIONS: &str = "coupon_admissions_total";
/// Claim outcomes decided by the claim script, by outcome.
pub const CLAIM_OUTCOMES: &str = "coupon_claim_outcomes_total";
/// One `claim.lua` call (seconds) and its batch size (users).
pub const CLAIM_SCRIPT_DURATION: &str = "coupon_claim_script_duration_seconds";
pub const CLAIM_BATCH_SIZE: &str = "coupon_claim_batch_size";
/// Claims per `enqueue.lua` call in the gateway (claims arriving together
/// share one call).
pub const ENQUEUE_BATCH_SIZE: &str = "coupon_enqueue_batch_size";
/// Waiting users, by coupon.
pub const QUEUE_LENGTH: &str = "coupon_queue_length";
/// Outbox entries not yet delivered to Kafka.
pub const OUTBOX_BACKLOG: &str = "coupon_outbox_backlog";
/// Issues delivered to Kafka; produce latency (seconds) and errors.
pub const RELAYED_ISSUES: &str = "coupon_relayed_issues_total";
pub const KAFKA_PRODUCE_DURATION: &str = "coupon_kafka_produce_duration_seconds";
pub const KAFKA_PRODUCE_ERRORS: &str = "coupon_kafka_produce_errors_total";
/// Persister: rows inserted, issues per batch, batch latency (seconds),
/// failed attempts, dead-lettered messages.
pub const PERSISTED_ROWS: &str = "coupon_persisted_rows_total";
pub const PERSIST_BATCH_SIZE: &str = "coupon_persist_batch_size";
pub const PERSIST_DURATION: &str = "coupon_persist_duration_seconds";
pub const PERSIST_ERRORS: &str = "coupon_persist_errors_total";
pub const DLQ_MESSAGES: &str = "coupon_dlq_messages_total";

/// Kafka consumer lag of the persister (messages behind the high
/// watermark, all partitions).
pub const CONSUMER_LAG: &str = "coupon_consumer_lag";
/// Scheduler: job runs by job and result, and their duration (seconds).
pub const JOB_RUNS: &str = "coupon_job_runs_total";
pub const JOB_DURATION: &str = "coupon_job_duration_seconds";
/// Reconciliation: drift found and repaired, by kind (`missing_row`,
/// `remaining`, `extra_row`, `stock`).
pub const DRIFT_FOUND: &str = "coupon_reconcile_drift_found_total";
pub const DRIFT_REPAIRED: &str = "coupon_reconcile_drift_repaired_total";
/// Coupons expired by the scheduler, and tickets it rejected as EXPIRED.
pub const COUPONS_EXPIRED: &str = "coupon_expired_total";
pub const TICKETS_EXPIRED: &str = "coupon_tickets_expired_total";

/// Every metric name this crate defines, for the dashboard check.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    CLAIMS,
    CLAIMS_SOLD_OUT_IN_GATEWAY,
    TICKET_POLLS,
    ADMISSIONS,
    CLAIM_OUTCOMES,
    CLAIM_SCRIPT_DURATION,
    CLAIM_BATCH_SIZE,
    ENQUEUE_BATCH_SIZE,
    QUEUE_LENGTH,
    OUTBOX_BACKLOG,
    RELAYED_ISSUES,
    KAFKA_PRODUCE_DURATION,
    KAFKA_PRODUCE_ERRORS,
    PERSISTED_ROWS,
    PERSIST_BATCH_SIZE,
    PERSIST_DURATION,
    PERSIST_ERRORS,
    DLQ_MESSAGES,
    CONSUMER_LAG,
    JOB_RUNS,
    JOB_DURATION,
    DRIFT_FOUND,
    DRIFT_REPAIRED,
    COUPONS_EXPIRED,
    TICKETS_EXPIRED,
];

/// Latency buckets (seconds) for every `*_seconds` histogram.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder once per process and returns its handle;
/// later calls (tests build several apps in one process) get the same one.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            // Histograms need periodic upkeep when no HTTP listener of the
            // exporter's own does it.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}
