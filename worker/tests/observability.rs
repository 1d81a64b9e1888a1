//! After a claim, the gateway's, worker's and scheduler's `/metrics` carry
//! the named series. (In this test all three run in one process and so
//! share one registry; each endpoint is still served by its own server.)

mod common;

use std::time::Duration;

use common::Stack;
use coupon_core::testing::{dead_port, eventually};
use tokio_util::sync::CancellationToken;

async fn metrics(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_exports_its_series_after_a_claim() {
    let worker_port = dead_port();
    let scheduler_port = dead_port();
    let worker_addr = format!("127.0.0.1:{worker_port}");
    let scheduler_addr = format!("127.0.0.1:{scheduler_port}");
    let stack = Stack::start(&[
        ("WORKER_METRICS_ADDR", worker_addr.as_str()),
        ("SCHEDULER_METRICS_ADDR", scheduler_addr.as_str()),
    ])
    .await;
    let coupon = stack.coupon(3, 100).await;
    let users = stack.users(2).await;
    let worker = stack.spawn_worker();
    let stop_scheduler = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler::run(
        stack.env.config.clone(),
        stop_scheduler.clone(),
    ));

    for (_, token) in &users {
        assert_eq!(stack.claim(coupon, token).await.0, 202);
    }
    stack.wait_rows(coupon, 2, Duration::from_secs(60)).await;

    let gateway = metrics(&format!("{}/metrics", stack.base)).await;
    for series in [
        r#"coupon_claims_total{result="queued"}"#,
        r#"http_requests_total{method="POST",route="/api/coupons/{id}/claim",status="202"}"#,
        "http_request_duration_seconds_bucket",
    ] {
        assert!(gateway.contains(series), "gateway exports {series}");
    }
    let worker_metrics = eventually("worker metrics", Duration::from_secs(30), || async {
        let text = reqwest::get(format!("http://{worker_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // The lag gauge comes from librdkafka's statistics, once a second.
        (text.contains("coupon_persisted_rows_total") && text.contains("coupon_consumer_lag"))
            .then_some(text)
    })
    .await;
    for series in [
        &format!(r#"coupon_admissions_total{{coupon="{coupon}"}}"#) as &str,
        r#"coupon_claim_outcomes_total{outcome="issued"}"#,
        "coupon_claim_script_duration_seconds_bucket",
        "coupon_relayed_issues_total",
        "coupon_kafka_produce_duration_seconds_bucket",
        "coupon_persist_batch_size",
        "coupon_outbox_backlog",
        &format!(r#"coupon_queue_length{{coupon="{coupon}"}}"#),
    ] {
        assert!(worker_metrics.contains(series), "worker exports {series}");
    }
    // The scheduler's first ticks come within seconds.
    eventually("scheduler job runs", Duration::from_secs(30), || async {
        let text = reqwest::get(format!("http://{scheduler_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(r#"coupon_job_runs_total{job="expiry",result="ok"}"#)
            .then_some(())
    })
    .await;
    // No series is labelled by user.
    assert!(!worker_metrics.contains("user="));

    worker.stop().await;
    stop_scheduler.cancel();
    scheduler.await.unwrap().unwrap();
}
