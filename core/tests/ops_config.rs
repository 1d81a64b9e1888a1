//! The Prometheus configuration, alert rules and Grafana dashboard parse,
//! and every metric they query is one the code exports.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn ops(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Metric names in a PromQL expression: identifiers that name our series,
/// with histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word.starts_with("coupon_") || word.starts_with("http_") {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(&word);
            names.insert(base.to_owned());
        }
        word.clear();
    }
    names
}

fn assert_exported(names: &BTreeSet<String>, place: &str) {
    for name in names {
        assert!(
            coupon_core::metrics::ALL.contains(&name.as_str()),
            "{place} queries {name}, which no process exports"
        );
    }
}

#[test]
fn prometheus_scrapes_all_three_processes_with_the_alert_rules() {
    for file in [
        "prometheus/prometheus.yml",
        "prometheus/prometheus.local.yml",
    ] {
        let config: serde_yaml::Value = serde_yaml::from_str(&ops(file)).unwrap();
        let jobs: Vec<&str> = config["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|j| j["job_name"].as_str().unwrap())
            .collect();
        assert_eq!(jobs, ["gateway", "worker", "scheduler"], "{file}");
        assert_eq!(
            config["rule_files"][0].as_str(),
            Some("alerts.yml"),
            "{file}"
        );
    }
    let rules: serde_yaml::Value = serde_yaml::from_str(&ops("prometheus/alerts.yml")).unwrap();
    let mut alerts = Vec::new();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        assert_exported(&metric_names(expr), rule["alert"].as_str().unwrap());
        alerts.push(rule["alert"].as_str().unwrap().to_owned());
    }
    for wanted in [
        "ProcessDown",
        "ReconciliationFoundDrift",
        "OutboxBacklogGrowing",
        "ConsumerLagHigh",
        "ServerErrors",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "alert {wanted}");
    }
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&ops("grafana/dashboards/coupon-rush.json")).unwrap();
    let datasources: serde_yaml::Value =
        serde_yaml::from_str(&ops("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    let uid = datasources["datasources"][0]["uid"].as_str().unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            let names = metric_names(target["expr"].as_str().unwrap());
            assert_exported(&names, panel["title"].as_str().unwrap());
            queried.extend(names);
        }
    }
    // The storm's story: claims, line, admissions, outcomes, backlog, lag,
    // persisted rows, latencies.
    for wanted in [
        "coupon_claims_total",
        "coupon_queue_length",
        "coupon_admissions_total",
        "coupon_claim_outcomes_total",
        "coupon_outbox_backlog",
        "coupon_consumer_lag",
        "coupon_persisted_rows_total",
        "http_request_duration_seconds",
    ] {
        assert!(queried.contains(wanted), "the dashboard shows {wanted}");
    }
    let provisioning: serde_yaml::Value =
        serde_yaml::from_str(&ops("grafana/provisioning/dashboards/dashboards.yml")).unwrap();
    assert_eq!(
        provisioning["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
    let compose = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
    )
    .unwrap();
    assert!(compose.contains("./ops/grafana/dashboards:/var/lib/grafana/dashboards"));
    assert!(compose.contains("./ops/prometheus:/etc/prometheus"));
}
