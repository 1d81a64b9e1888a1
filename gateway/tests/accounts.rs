//! Sign-up, login, `/api/me` and the auth filter, over HTTP against the real
//! MySQL: every row of API.md for these endpoints.

mod common;

use common::{rand_suffix, TestApp};
use coupon_core::domain::{Role, UserId};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

fn signup_body(email: &str) -> serde_json::Value {
    json!({"email": email, "name": "Ann", "password": "password-123"})
}

#[tokio::test]
async fn signup_login_and_me() {
    let app = TestApp::spawn().await;
    let email = format!("Ann.{}@Example.com", rand_suffix());
    let created = app
        .post("/api/auth/signup", None, &signup_body(&email))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["email"], email.to_lowercase());
    assert_eq!(created.body["name"], "Ann");
    assert_eq!(created.body["role"], "user");
    assert!(created.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(created.body.get("password").is_none() && created.body.get("password_hash").is_none());

    let login = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": email, "password": "password-123"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 3600);
    let token = login.body["access_token"].as_str().unwrap();

    let me = app.get("/api/me", Some(token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], created.body["id"]);

    // The same token works from the cookie the pages set.
    let by_cookie = app
        .http
        .get(app.url("/api/me"))
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);

    // The stored hash is argon2id, never the password.
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM `user` WHERE id = ?")
        .bind(created.body["id"].as_u64().unwrap())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("password-123"));
}

#[tokio::test]
async fn email_is_unique_in_any_letter_case() {
    let app = TestApp::spawn().await;
    let email = format!("bob.{}@example.com", rand_suffix());
    assert_eq!(
        app.post("/api/auth/signup", None, &signup_body(&email))
            .await
            .status,
        201
    );
    app.post(
        "/api/auth/signup",
        None,
        &signup_body(&email.to_uppercase()),
    )
    .await
    .assert_error(409, "EMAIL_TAKEN");
}

#[tokio::test]
async fn signup_rejects_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let long_email = format!("{}@example.com", "a".repeat(95));
    let cases = [
        (
            json!({"email": "not-an-email", "name": "A", "password": "password-123"}),
            "email",
        ),
        (
            json!({"email": long_email, "name": "A", "password": "password-123"}),
            "email",
        ),
        (
            json!({"email": "a@x.io", "name": "", "password": "password-123"}),
            "name",
        ),
        (
            json!({"email": "a@x.io", "name": "   ", "password": "password-123"}),
            "name",
        ),
        (
            json!({"email": "a@x.io", "name": "n".repeat(51), "password": "password-123"}),
            "name",
        ),
        (
            json!({"email": "a@x.io", "name": "A", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "a@x.io", "name": "A", "password": "p".repeat(129)}),
            "password",
        ),
        (json!({"email": "a@x.io", "name": "A"}), "password"),
        (
            json!({"email": "a@x.io", "name": 5, "password": "password-123"}),
            "name",
        ),
        (
            json!({"email": ["a@x.io"], "name": "A", "password": "password-123"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let answer = app.post("/api/auth/signup", None, &body).await;
        answer.assert_error(400, "VALIDATION");
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    // The schema's validators are told as sentences, not as their rules.
    for (body, expected) in [
        (
            json!({"email": "not-an-email", "name": "A", "password": "password-123"}),
            "email: must be an email address such as name@example.com",
        ),
        (
            json!({"email": "a@x.io", "name": "", "password": "password-123"}),
            "name: must not be empty",
        ),
        (
            json!({"email": "a@x.io", "name": "   ", "password": "password-123"}),
            "name: must not be only spaces",
        ),
        (
            json!({"email": "a@x.io", "name": "A", "password": "short"}),
            "password: must be at least 8 characters long",
        ),
        (
            json!({"email": "a@x.io", "name": "A", "password": "p".repeat(129)}),
            "password: must be at most 128 characters long",
        ),
    ] {
        let answer = app.post("/api/auth/signup", None, &body).await;
        answer.assert_error(400, "VALIDATION");
        assert_eq!(answer.body["message"], expected, "{body}");
    }
    let malformed = app.post_raw("/api/auth/signup", None, "{\"email\": ").await;
    malformed.assert_error(400, "VALIDATION");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM `user`")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 0, "bad input changes nothing");
}

#[tokio::test]
async fn wrong_email_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    let email = format!("cid.{}@example.com", rand_suffix());
    app.user(&email).await;
    let wrong_password = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": email, "password": "not-the-password"}),
        )
        .await;
    let wrong_email = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": "nobody@example.com", "password": "password-123"}),
        )
        .await;
    let malformed_email = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": "nobody", "password": "password-123"}),
        )
        .await;
    for answer in [&wrong_password, &wrong_email, &malformed_email] {
        answer.assert_error(401, "INVALID_CREDENTIALS");
    }
    assert_eq!(wrong_password.body, wrong_email.body);
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    iat: i64,
    exp: i64,
}

#[tokio::test]
async fn the_auth_filter_refuses_every_bad_token() {
    let app = TestApp::spawn().await;
    let (id, good) = app
        .user(&format!("dan.{}@example.com", rand_suffix()))
        .await;
    let now = chrono::Utc::now().timestamp();
    let sub = id.to_string();
    let secret = app.env.config.jwt_secret.expose().to_owned();
    let sign = |claims: &Claims, key: &str| {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let fresh = Claims {
        sub: &sub,
        role: "user",
        iat: now,
        exp: now + 600,
    };

    // A changed signature.
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    // alg: none.
    let none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine;
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = json!({"sub": sub, "role": "admin", "iat": now, "exp": now + 600});
        let payload = B64.encode(claims.to_string());
        format!("{header}.{payload}.")
    };
    // Another algorithm with the same secret.
    let hs512 = encode(
        &Header::new(jsonwebtoken::Algorithm::HS512),
        &fresh,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let expired = sign(
        &Claims {
            sub: &sub,
            role: "user",
            iat: now - 7200,
            exp: now - 3600,
        },
        &secret,
    );
    let other_key = sign(&fresh, "another-secret-that-is-long-enough-to-use");
    let bad_sub = sign(
        &Claims {
            sub: "not-a-number",
            role: "user",
            iat: now,
            exp: now + 600,
        },
        &secret,
    );
    let bad_role = sign(
        &Claims {
            sub: &sub,
            role: "root",
            iat: now,
            exp: now + 600,
        },
        &secret,
    );

    for (what, token) in [
        ("changed signature", tampered),
        ("alg none", none),
        ("HS512", hs512),
        ("expired", expired),
        ("other key", other_key),
        ("bad sub", bad_sub),
        ("bad role", bad_role),
        ("garbage", "abc.def.ghi".to_owned()),
    ] {
        let answer = app.get("/api/me", Some(&token)).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_eq!(answer.body["code"], "UNAUTHORIZED", "{what}");
        // The bearer check's reason reaches the client, though the cookie
        // scheme is tried after it and finds no cookie.
        assert_eq!(
            answer.body["message"],
            "The access token is invalid or has expired. Please log in again.",
            "{what}"
        );
    }
    let none = app.get("/api/me", None).await;
    none.assert_error(401, "UNAUTHORIZED");
    assert_eq!(none.body["message"], gateway::auth::NO_TOKEN_MESSAGE);
    let basic = app
        .http
        .get(app.url("/api/me"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let basic: serde_json::Value = basic.json().await.unwrap();
    assert_eq!(basic["code"], "UNAUTHORIZED");
    assert_eq!(basic["message"], gateway::auth::NOT_BEARER_MESSAGE);
    assert_eq!(app.get("/api/me", Some(&good)).await.status, 200);
    // A token signed by us for a user that does not exist.
    let ghost = app.token(UserId(999_999), Role::User);
    app.get("/api/me", Some(&ghost))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn admin_bootstrap_creates_then_promotes_idempotently() {
    let email = format!("boss.{}@example.com", rand_suffix());
    let app = TestApp::spawn_with(&[
        ("ADMIN_EMAIL", email.as_str()),
        ("ADMIN_PASSWORD", "boss-password"),
    ])
    .await;
    // The start-up in spawn ran it once; run it again, as a restart would.
    gateway::accounts::bootstrap_admin(&app.state)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT email, role FROM `user`")
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows, vec![(email.clone(), "admin".to_owned())]);
    let login = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": email, "password": "boss-password"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);

    // An existing user account is promoted, not duplicated.
    let user_email = format!("eve.{}@example.com", rand_suffix());
    app.user(&user_email).await;
    let mut config = app.env.config.clone();
    config.admin = Some(coupon_core::config::AdminBootstrap {
        email: user_email.clone(),
        password: coupon_core::config::Secret::new("eve-admin-password"),
    });
    let state = gateway::AppState::new(config).unwrap();
    gateway::accounts::bootstrap_admin(&state).await.unwrap();
    gateway::accounts::bootstrap_admin(&state).await.unwrap();
    let role: String = sqlx::query_scalar("SELECT role FROM `user` WHERE email = ?")
        .bind(&user_email)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(role, "admin");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM `user`")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let app = TestApp::spawn().await;
    let huge = format!(
        r#"{{"email":"a@x.io","name":"{}","password":"password-123"}}"#,
        "n".repeat(64 * 1024)
    );
    app.post_raw("/api/auth/signup", None, &huge)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // Headers and addresses are bounded too, before anything reads them.
    let email = format!("heads.{}@example.com", rand_suffix());
    let body = json!({"email": email, "name": "Heads", "password": "password-123"});
    let signup = |extra: usize| {
        app.http
            .post(app.url("/api/auth/signup"))
            .header("x-padding", "p".repeat(extra))
            .json(&body)
            .send()
    };
    let response = signup(gateway::body_limit::MAX_HEADER_BYTES).await.unwrap();
    assert_eq!(response.status(), 431);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("headers"),
        "{error}"
    );
    let long = format!(
        "/api/coupons?q={}",
        "q".repeat(gateway::body_limit::MAX_URI_BYTES)
    );
    let response = app.http.get(app.url(&long)).send().await.unwrap();
    assert_eq!(response.status(), 414);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("address"),
        "{error}"
    );
    // Nothing was made; the same sign-up with ordinary headers goes through.
    assert_eq!(signup(1024).await.unwrap().status(), 201);
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    let header = |name: &str| {
        page.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert!(header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("referrer-policy").as_deref(), Some("same-origin"));
}

#[tokio::test]
async fn logins_from_one_address_are_rate_limited() {
    let app = TestApp::spawn().await;
    let mut limited = None;
    for i in 0..40 {
        let body = json!({"email": format!("nobody{i}@example.com"), "password": "whatever-123"});
        // No proxy is trusted, so a forwarded address of the client's own
        // choosing changes nothing.
        let response = app
            .http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let response = limited.expect("a burst of logins from one address hits the limit");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
}

/// Logins of one client until the limit answers; the number let through.
async fn logins_until_limited(app: &TestApp, forwarded_for: &str) -> usize {
    for i in 0..40 {
        let body = json!({"email": format!("nobody{i}@example.com"), "password": "whatever-123"});
        let response = app
            .http
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", forwarded_for)
            .json(&body)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            429 => return i,
            401 => {}
            other => panic!("login answered {other}"),
        }
    }
    panic!("40 logins from {forwarded_for} were never limited");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_limit() {
    // The test client's own address plays the load balancer.
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;
    // Each address may log in 20 times at once (then once a second), so
    // each client gets at least its burst, whatever the time taken.
    let first = logins_until_limited(&app, "198.51.100.7").await;
    assert!(first >= 20, "{first}");
    // Another client behind the same proxies (the balancer, then an inner
    // one) starts with a budget of its own.
    let second = logins_until_limited(&app, "203.0.113.9, 10.0.0.4").await;
    assert!(second >= 20, "{second}");
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account_for_a_while() {
    let app = TestApp::spawn().await;
    let email = format!("lock.{}@example.com", rand_suffix());
    let other = format!("free.{}@example.com", rand_suffix());
    app.user(&email).await;
    app.user(&other).await;
    for _ in 0..5 {
        app.post(
            "/api/auth/login",
            None,
            &json!({"email": email, "password": "wrong-password"}),
        )
        .await
        .assert_error(401, "INVALID_CREDENTIALS");
    }
    // Even the right password is refused now, with the time to wait.
    let response = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": email.to_uppercase(), "password": "password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60 && retry <= 15 * 60, "{retry}");
    // Other accounts are not affected, and the form login is locked too.
    let ok = app
        .post(
            "/api/auth/login",
            None,
            &json!({"email": other, "password": "password-123"}),
        )
        .await;
    assert_eq!(ok.status, 200);
    let page = app
        .http
        .post(app.url("/login"))
        .form(&[("email", email.as_str()), ("password", "password-123")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
}
