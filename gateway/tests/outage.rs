//! While MySQL and Redis do not answer, every request that needs one of
//! them gets `503 UNAVAILABLE` with `Retry-After`, and the pages say so:
//! never a 500, an empty list passed off as "no coupons", or a waiting
//! ticket called "not found".

mod common;

use common::{active_coupon, rand_suffix, TestApp};
use coupon_core::config::Secret;
use futures::future::join_all;
use gateway::error::RETRY_AFTER_SECS;
use gateway::AppState;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A port nothing listens on: bound, then let go.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn retry_after(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_mysql_and_redis_down_requests_are_unavailable_and_pages_say_so() {
    // A user in line for a coupon, through a working gateway.
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = app.coupon(&admin, active_coupon("Outage", 3)).await["id"]
        .as_u64()
        .unwrap();
    let email = format!("outage-{}@example.com", rand_suffix());
    let (_, token) = app.user(&email).await;
    let claim = app
        .post(
            &format!("/api/coupons/{id}/claim"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(claim.status, 202, "{}", claim.body);
    let ticket = claim.body["ticket_id"].as_str().unwrap().to_owned();

    // The same deployment (same secret, database name and keys), with
    // MySQL and Redis unreachable.
    let mut config = app.env.config.clone();
    config.database_url = Secret::new(format!(
        "mysql://root@127.0.0.1:{}/{}",
        closed_port(),
        config.database_name()
    ));
    config.redis_url = Secret::new(format!("redis://127.0.0.1:{}", closed_port()));
    let down = gateway::startup::serve(AppState::new(config).unwrap())
        .await
        .unwrap();
    let base = down.base_url();
    let http = reqwest::Client::new();

    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    let login = json!({"email": email, "password": "password-123"});
    let signup =
        json!({"email": format!("new-{email}"), "name": "New", "password": "password-123"});
    let api: Vec<(reqwest::Method, String, Option<&str>, Option<Value>)> = vec![
        (get.clone(), "/api/coupons".into(), None, None),
        (get.clone(), format!("/api/coupons/{id}"), None, None),
        (
            post.clone(),
            format!("/api/coupons/{id}/claim"),
            Some(&token),
            Some(json!({})),
        ),
        (
            get.clone(),
            format!("/api/tickets/{ticket}"),
            Some(&token),
            None,
        ),
        (get.clone(), "/api/me".into(), Some(&token), None),
        (get.clone(), "/api/me/coupons".into(), Some(&token), None),
        (post.clone(), "/api/auth/login".into(), None, Some(login)),
        (post.clone(), "/api/auth/signup".into(), None, Some(signup)),
        (
            get.clone(),
            "/api/admin/dashboard".into(),
            Some(&admin),
            None,
        ),
        (
            get.clone(),
            format!("/api/admin/coupons/{id}/stats"),
            Some(&admin),
            None,
        ),
        (
            post.clone(),
            "/api/admin/coupons".into(),
            Some(&admin),
            Some(active_coupon("Not now", 1)),
        ),
    ];
    // Each MySQL request waits out the pool's acquire timeout: all at once.
    let answers = join_all(api.into_iter().map(|(method, path, token, body)| {
        let mut request = http.request(method.clone(), format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let retry = retry_after(&response);
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (format!("{method} {path}"), status, retry, body)
        }
    }))
    .await;
    for (request, status, retry, body) in answers {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{request}: {body}");
        assert_eq!(body["code"], "UNAVAILABLE", "{request}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{request}: {body}");
        let lower = message.to_lowercase();
        for internal in ["refused", "mysql", "redis", "pool", "io error"] {
            assert!(
                !lower.contains(internal),
                "{request} leaks {internal:?}: {body}"
            );
        }
        assert_eq!(
            retry.as_deref(),
            Some(RETRY_AFTER_SECS.to_string().as_str()),
            "{request}"
        );
    }

    // The process itself is alive and says what it is waiting for.
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The pages, in English, signed in.
    let cookie = format!("access_token={token}");
    let pages = ["/", "/me/coupons", &format!("/tickets/{ticket}")];
    let pages = join_all(pages.iter().map(|path| {
        let request = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .header("accept-language", "en");
        async move {
            let response = request.send().await.unwrap();
            let retry = retry_after(&response);
            let status = response.status();
            (
                path.to_string(),
                status,
                retry,
                response.text().await.unwrap(),
            )
        }
    }))
    .await;
    for (path, status, retry, html) in &pages {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {html}");
        assert_eq!(
            retry.as_deref(),
            Some(RETRY_AFTER_SECS.to_string().as_str()),
            "{path}"
        );
        assert!(
            !html.contains("There are no coupons right now."),
            "{path}: {html}"
        );
        assert!(!html.contains("Not found"), "{path}: {html}");
    }
    assert!(pages[0].3.contains("The list cannot be loaded just now."));
    assert!(pages[1].3.contains("The list cannot be loaded just now."));
    let ticket_page = &pages[2].3;
    assert!(ticket_page.contains("Your ticket cannot be read just now."));
    assert!(
        ticket_page.contains(&format!(
            r#"<meta http-equiv="refresh" content="{RETRY_AFTER_SECS}">"#
        )),
        "the waiting page tries again by itself, script or not: {ticket_page}"
    );

    // The waiting page's live updates answer as the ticket API does.
    let events = http
        .get(format!("{base}/tickets/{ticket}/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        retry_after(&events).as_deref(),
        Some(RETRY_AFTER_SECS.to_string().as_str())
    );
    let body: Value = events.json().await.unwrap();
    assert_eq!(body["code"], "UNAVAILABLE", "{body}");

    // Nothing changed behind the outage: the ticket still waits in line,
    // and the sign-up that could not reach MySQL made no account.
    let read = app
        .get(&format!("/api/tickets/{ticket}"), Some(&token))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["status"], "waiting", "{}", read.body);
    assert_eq!(read.body["position"], 1, "{}", read.body);
    let login = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": format!("new-{email}"), "password": "password-123"}),
        )
        .await;
    login.assert_error(401, "INVALID_CREDENTIALS");
}
