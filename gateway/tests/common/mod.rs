//! A real gateway on port 0 with its own database, Redis prefix and topics,
//! plus helpers to make accounts and tokens.
#![allow(dead_code)]

use coupon_core::domain::{Email, Role, UserId};
use coupon_core::testing::TestEnv;
use gateway::AppState;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub env: TestEnv,
    pub state: AppState,
    pub http: reqwest::Client,
    _gateway: gateway::startup::Spawned,
}

/// A JSON answer: status and body (Null when the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// Asserts an error answer: this status, this code, a message.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        coupon_core::telemetry::init(coupon_core::config::LogFormat::Text);
        let env = TestEnv::with(vars).await;
        let state = AppState::new(env.config.clone()).unwrap();
        let gateway = gateway::startup::spawn(state.clone()).await.unwrap();
        Self {
            base: gateway.base_url(),
            env,
            state,
            http: reqwest::Client::new(),
            _gateway: gateway,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    /// POST with a raw body, for malformed JSON.
    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    /// Signs up through the API and logs in; returns (user id, token).
    pub async fn user(&self, email: &str) -> (u64, String) {
        let signup = self
            .post(
                "/api/auth/signup",
                None,
                &json!({"email": email, "name": "Test User", "password": "password-123"}),
            )
            .await;
        assert_eq!(signup.status, 201, "{}", signup.body);
        let login = self
            .post(
                "/api/auth/login",
                None,
                &json!({"email": email, "password": "password-123"}),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.body);
        (
            signup.body["id"].as_u64().unwrap(),
            login.body["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// An admin made directly in MySQL, and a token for it.
    pub async fn admin(&self) -> String {
        let email = Email::parse(&format!("admin-{}@example.com", rand_suffix())).unwrap();
        let user = coupon_core::users::upsert_admin(&self.state.db, &email, "not-a-real-hash")
            .await
            .unwrap();
        self.token(user.id, Role::Admin)
    }

    pub fn token(&self, id: UserId, role: Role) -> String {
        self.state.tokens.issue(id, role).unwrap()
    }

    /// An issue row made now, as the persister would write it.
    pub async fn persist_issue(&self, user_id: u64, coupon_id: u64) {
        sqlx::query(
            "INSERT INTO coupon_issue (user_id, coupon_id, issued_at) VALUES (?, ?, NOW(3))",
        )
        .bind(user_id)
        .bind(coupon_id)
        .execute(&self.state.db)
        .await
        .unwrap();
    }

    /// Creates a coupon as admin; returns its JSON.
    pub async fn coupon(&self, admin: &str, body: Value) -> Value {
        let created = self.post("/api/admin/coupons", Some(admin), &body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        created.body
    }
}

pub fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A coupon that is active now, with `total` coupons.
pub fn active_coupon(title: &str, total: u32) -> Value {
    let now = chrono::Utc::now();
    json!({
        "title": title,
        "total_quantity": total,
        "valid_from": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "valid_to": (now + chrono::Duration::hours(1)).to_rfc3339(),
    })
}
