//! The whole pipeline for tests: a real gateway on port 0 and, when asked,
//! the real worker loops, each test with its own database, key prefix and
//! topics.
#![allow(dead_code)]

use std::time::Duration;

use coupon_core::domain::{CouponId, Role, UserId};
use coupon_core::testing::{eventually, TestEnv};
use gateway::AppState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Stack {
    pub env: TestEnv,
    pub state: AppState,
    pub base: String,
    pub http: reqwest::Client,
    _gateway: gateway::startup::Spawned,
}

/// A running worker (admitter, relay, persister) that a test can stop.
pub struct RunningWorker {
    pub stop: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

impl Stack {
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        coupon_core::telemetry::init(coupon_core::config::LogFormat::Text);
        let env = TestEnv::with(vars).await;
        coupon_core::kafka::ensure_topics(&env.config)
            .await
            .unwrap();
        let state = AppState::new(env.config.clone()).unwrap();
        let gateway = gateway::startup::spawn(state.clone()).await.unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        Self {
            env,
            state,
            base: gateway.base_url(),
            http,
            _gateway: gateway,
        }
    }

    pub fn spawn_worker(&self) -> RunningWorker {
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::run(self.env.config.clone(), stop.clone()));
        RunningWorker { stop, task }
    }

    /// `n` users made directly in MySQL (one multi-row insert per 1000),
    /// with their tokens.
    pub async fn users(&self, n: usize) -> Vec<(UserId, String)> {
        let prefix = format!("u{:08x}", rand::random::<u32>());
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO `user` (email, name, password_hash) ");
            q.push_values(chunk, |mut row, i| {
                row.push_bind(format!("{prefix}.{i}@example.com"))
                    .push_bind(format!("User {i}"))
                    .push_bind("-");
            });
            q.build().execute(&self.state.db).await.unwrap();
        }
        let ids: Vec<u64> =
            sqlx::query_scalar("SELECT id FROM `user` WHERE email LIKE ? ORDER BY id")
                .bind(format!("{prefix}.%"))
                .fetch_all(&self.state.db)
                .await
                .unwrap();
        ids.into_iter()
            .map(|id| {
                (
                    UserId(id),
                    self.state.tokens.issue(UserId(id), Role::User).unwrap(),
                )
            })
            .collect()
    }

    /// An active coupon, created through the admin API.
    pub async fn coupon(&self, total: u32, rate: u32) -> CouponId {
        let admin = self.state.tokens.issue(UserId(0), Role::Admin).unwrap();
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "title": "Storm",
            "total_quantity": total,
            "valid_from": (now - chrono::Duration::minutes(5)).to_rfc3339(),
            "valid_to": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "admission_rate_per_sec": rate,
        });
        let response = self
            .http
            .post(format!("{}/api/admin/coupons", self.base))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: serde_json::Value = response.json().await.unwrap();
        CouponId(created["id"].as_u64().unwrap())
    }

    /// POST claim; returns (status, body).
    pub async fn claim(&self, coupon: CouponId, token: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/api/coupons/{}/claim", self.base, coupon.0))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn ticket(&self, ticket_id: &str, token: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/api/tickets/{ticket_id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn rows(&self, coupon: CouponId) -> u64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM coupon_issue WHERE coupon_id = ?")
            .bind(coupon.0)
            .fetch_one(&self.state.db)
            .await
            .unwrap() as u64
    }

    pub async fn remaining(&self, coupon: CouponId) -> u32 {
        sqlx::query_scalar("SELECT remaining_quantity FROM coupon WHERE id = ?")
            .bind(coupon.0)
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }

    /// Waits until `coupon` has `n` rows in MySQL.
    pub async fn wait_rows(&self, coupon: CouponId, n: u64, deadline: Duration) {
        eventually(
            &format!("{n} rows for coupon {coupon}"),
            deadline,
            || async { (self.rows(coupon).await == n).then_some(()) },
        )
        .await;
    }

    pub async fn assert_invariants(&self, coupons: &[CouponId]) {
        coupon_core::testing::assert_invariants(
            &self.env.config,
            &self.state.db,
            &self.state.redis,
            coupons,
        )
        .await;
    }
}
