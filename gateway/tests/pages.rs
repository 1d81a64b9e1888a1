//! The page forms over real HTTP: each post needs the CSRF token of its own
//! page, and a post without it changes nothing.

mod common;

use common::{active_coupon, rand_suffix, TestApp};
use coupon_core::domain::{CouponId, UserId};
use reqwest::redirect::Policy;
use reqwest::Response;

/// A browser without a cookie jar: cookies are passed by hand, so each test
/// says exactly which ones a post carries.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` set by `response`, if any.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The hidden CSRF field of the first form in `html`.
fn form_token(html: &str) -> String {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker).expect("the page has a form with a token") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

struct Page {
    /// The `csrf` cookie the page handed out (None if the browser had one).
    cookie: Option<String>,
    token: String,
    html: String,
}

async fn page(app: &TestApp, path: &str, cookies: &str) -> Page {
    let response = browser()
        .get(app.url(path))
        .header("cookie", cookies)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response, "csrf");
    let html = response.text().await.unwrap();
    Page {
        cookie,
        token: form_token(&html),
        html,
    }
}

async fn post(app: &TestApp, path: &str, cookies: &str, form: &[(&str, &str)]) -> Response {
    browser()
        .post(app.url(path))
        .header("cookie", cookies)
        .header("accept-language", "en")
        .form(form)
        .send()
        .await
        .unwrap()
}

const EXPIRED: &str = "This page had expired, so nothing was done.";

async fn assert_refused(response: Response) {
    assert_eq!(response.status(), 403);
    assert!(
        set_cookie(&response, "access_token").is_none(),
        "no session is set or cleared"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains(EXPIRED), "{html}");
    // The answer carries a fresh form to try again with.
    form_token(&html);
}

#[tokio::test]
async fn a_claim_form_needs_the_token_of_its_own_page() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let coupon = app.coupon(&admin, active_coupon("Form coffee", 5)).await;
    let id = coupon["id"].as_u64().unwrap();
    let (alice, alice_token) = app
        .user(&format!("alice.{}@example.com", rand_suffix()))
        .await;
    let (_, bob_token) = app
        .user(&format!("bob.{}@example.com", rand_suffix()))
        .await;

    let first = page(&app, "/", &format!("access_token={alice_token}")).await;
    let csrf = first.cookie.expect("a first visit gets a csrf cookie");
    let alice_cookies = format!("access_token={alice_token}; csrf={csrf}");
    let alice_page = page(&app, "/", &alice_cookies).await;
    assert!(
        alice_page.cookie.is_none(),
        "the cookie is kept, not replaced"
    );
    assert!(alice_page.html.contains(&format!("/coupons/{id}/claim")));
    let bob_page = page(&app, "/", &format!("access_token={bob_token}; csrf={csrf}")).await;
    let claim = format!("/coupons/{id}/claim");

    // No field, an empty one, the right field without its cookie, a token
    // made for someone else, a token for another cookie: all refused.
    assert_refused(post(&app, &claim, &alice_cookies, &[]).await).await;
    assert_refused(post(&app, &claim, &alice_cookies, &[("csrf_token", "")]).await).await;
    let no_cookie = format!("access_token={alice_token}");
    assert_refused(
        post(
            &app,
            &claim,
            &no_cookie,
            &[("csrf_token", &alice_page.token)],
        )
        .await,
    )
    .await;
    assert_refused(
        post(
            &app,
            &claim,
            &alice_cookies,
            &[("csrf_token", &bob_page.token)],
        )
        .await,
    )
    .await;
    let other_cookie = format!("access_token={alice_token}; csrf={}", "ab".repeat(16));
    assert_refused(
        post(
            &app,
            &claim,
            &other_cookie,
            &[("csrf_token", &alice_page.token)],
        )
        .await,
    )
    .await;

    // Nothing was claimed.
    let ticket = app.state.tickets.encode(CouponId(id), UserId(alice));
    app.get(&format!("/api/tickets/{ticket}"), Some(&alice_token))
        .await
        .assert_error(404, "TICKET_NOT_FOUND");

    // With its own token the claim goes through to the waiting page.
    let response = post(
        &app,
        &claim,
        &alice_cookies,
        &[("csrf_token", &alice_page.token)],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("/tickets/{ticket}")
    );
    let answer = app
        .get(&format!("/api/tickets/{ticket}"), Some(&alice_token))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn login_and_sign_up_forms_need_their_token() {
    let app = TestApp::spawn().await;
    let email = format!("form.{}@example.com", rand_suffix());
    let signup = page(&app, "/signup", "").await;
    let csrf = signup.cookie.expect("a csrf cookie");
    let cookies = format!("csrf={csrf}");
    let mut form = vec![
        ("email", email.as_str()),
        ("name", "Form User"),
        ("password", "password-123"),
    ];
    let without = form.clone();

    // A sign-up without its token makes no account.
    assert_refused(post(&app, "/signup", &cookies, &without).await).await;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user WHERE email = ?")
        .bind(&email)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(accounts, 0);

    // With it, the account is made and signed in.
    form.push(("csrf_token", &signup.token));
    let response = post(&app, "/signup", &cookies, &form).await;
    assert_eq!(response.status(), 303);
    assert!(set_cookie(&response, "access_token").is_some_and(|t| !t.is_empty()));

    // A login without its token (or from a browser with no csrf cookie yet)
    // signs nobody in; with the login page's token it does.
    let login = [("email", email.as_str()), ("password", "password-123")];
    assert_refused(post(&app, "/login", &cookies, &login).await).await;
    let login_page = page(&app, "/login", &cookies).await;
    let with_token = [
        ("email", email.as_str()),
        ("password", "password-123"),
        ("csrf_token", login_page.token.as_str()),
    ];
    assert_refused(post(&app, "/login", "", &with_token).await).await;
    let response = post(&app, "/login", &cookies, &with_token).await;
    assert_eq!(response.status(), 303);
    assert!(set_cookie(&response, "access_token").is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn logging_out_needs_the_token_too() {
    let app = TestApp::spawn().await;
    let (_, token) = app
        .user(&format!("out.{}@example.com", rand_suffix()))
        .await;
    let first = page(&app, "/", &format!("access_token={token}")).await;
    let cookies = format!("access_token={token}; csrf={}", first.cookie.unwrap());
    let index = page(&app, "/", &cookies).await;
    assert!(index.html.contains(r#"action="/logout""#));

    assert_refused(post(&app, "/logout", &cookies, &[]).await).await;
    let response = post(&app, "/logout", &cookies, &[("csrf_token", &index.token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        set_cookie(&response, "access_token").as_deref(),
        Some(""),
        "the session cookie is cleared"
    );
}

#[tokio::test]
async fn the_api_does_not_take_the_cookie_on_a_post_from_another_site() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let coupon = app.coupon(&admin, active_coupon("Cross-site", 5)).await;
    let claim = app.url(&format!("/api/coupons/{}/claim", coupon["id"]));
    let (_, token) = app
        .user(&format!("site.{}@example.com", rand_suffix()))
        .await;
    let cookie = format!("access_token={token}");
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = browser().post(&claim).header("cookie", &cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("sec-fetch-site", "cross-site")][..],
    ] {
        let response = send(headers).await.unwrap();
        assert_eq!(response.status(), 401, "{headers:?}");
        // The cookie check's own reason, not poem-openapi's bare one.
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["message"], "The session cookie is not accepted on a request from another site.",
            "{headers:?}"
        );
    }
    // Nothing was claimed: the same user's first real claim joins the line.
    let origin = app.base.clone();
    let response = browser()
        .post(&claim)
        .header("cookie", &cookie)
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let ticket: serde_json::Value = response.json().await.unwrap();
    assert_eq!(ticket["position"], 1, "{ticket}");
}

#[tokio::test]
async fn an_unknown_address_is_a_page_for_a_browser_and_json_for_anyone_else() {
    let app = TestApp::spawn().await;
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    for (method, path) in [
        ("GET", "/no/such/page"),
        ("POST", "/no/such/page"),
        // Only a hand-made address has anything but a coupon id here.
        ("POST", "/coupons/abc/claim"),
        ("POST", "/coupons/0/claim"),
    ] {
        let response = browser()
            .request(method.parse().unwrap(), app.url(path))
            .header("accept", html)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(response.text().await.unwrap().contains("Not found"));
    }
    // JSON for a client that does not ask for HTML, and on the API's
    // prefixes whatever the client accepts.
    for (path, accept) in [("/no/such/page", "*/*"), ("/api/no/such/route", html)] {
        let response = browser()
            .get(app.url(path))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
    }
}
