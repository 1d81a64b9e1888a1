//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/docs` on a real
//! gateway (port 0) against the real services, and against dead ports.

use coupon_core::testing::{dead_port, TestEnv};
use gateway::{AppState, Application};
use tokio_util::sync::CancellationToken;

struct Running {
    base: String,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn spawn(env: &TestEnv) -> Running {
    let state = AppState::new(env.config.clone()).unwrap();
    let app = Application::bind(state).await.unwrap();
    let base = format!("http://{}", app.addr());
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    Running { base, stop }
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn ready_when_mysql_redis_and_kafka_answer() {
    let env = TestEnv::new().await;
    let gw = spawn(&env).await;
    let (status, body) = get(format!("{}/readyz", gw.base)).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "ready");
    assert!(body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
}

async fn not_ready_naming(var: &str, value: String, name: &str) {
    // With MySQL itself down there is no database to create.
    let env = if var == "DATABASE_URL" {
        TestEnv::unmigrated(&[(var, value.as_str())])
    } else {
        TestEnv::with(&[(var, value.as_str())]).await
    };
    let gw = spawn(&env).await;
    let (status, body) = get(format!("{}/readyz", gw.base)).await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "NOT_READY");
    assert_eq!(body["message"], format!("unreachable: {name}"));
    for check in body["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], check["name"] != name, "{check}");
    }
    // Liveness does not depend on anything.
    assert_eq!(get(format!("{}/healthz", gw.base)).await.0, 200);
}

#[tokio::test]
async fn not_ready_names_kafka_when_no_broker_listens() {
    not_ready_naming(
        "KAFKA_BROKERS",
        format!("127.0.0.1:{}", dead_port()),
        "kafka",
    )
    .await;
}

#[tokio::test]
async fn not_ready_names_redis_when_redis_is_down() {
    not_ready_naming(
        "REDIS_URL",
        format!("redis://127.0.0.1:{}", dead_port()),
        "redis",
    )
    .await;
}

#[tokio::test]
async fn not_ready_names_mysql_when_mysql_is_down() {
    let url = format!("mysql://root@127.0.0.1:{}/coupons", dead_port());
    not_ready_naming("DATABASE_URL", url, "mysql").await;
}

#[tokio::test]
async fn metrics_openapi_and_console_are_served() {
    let env = TestEnv::new().await;
    let gw = spawn(&env).await;
    let (status, _) = get(format!("{}/metrics", gw.base)).await;
    assert_eq!(status, 200);
    let (status, spec) = get(format!("{}/openapi.json", gw.base)).await;
    assert_eq!(status, 200);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    let (status, page) = get(format!("{}/docs", gw.base)).await;
    assert_eq!(status, 200);
    assert!(page.contains("swagger"), "the interactive console");
}
