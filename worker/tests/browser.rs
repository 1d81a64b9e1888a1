//! The waiting page in a real browser (Debian's Chromium, driven through
//! chromedriver): sign up, log in, claim, and watch the page reach its end
//! while the real worker runs; the same with JavaScript off (meta refresh);
//! and a sold-out ending. Screenshots of each final state go to
//! `artifacts/screenshots/` (`ops/test` installs Chromium when missing).

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Stack;
use coupon_core::testing::eventually;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

/// A headless Chromium behind its own chromedriver. [`Browser::close`]
/// ends the session (chromedriver quits Chromium); on drop, as when a test
/// fails half-way, the whole process group goes: chromedriver runs in a
/// group of its own, which Chromium's processes join, so none outlives the
/// test. The profile folder goes too.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn start(lang: &str, javascript: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver (ops/test installs chromium-driver)");
        let profile = std::env::temp_dir().join(format!("chromium-test-{port}"));
        let mut options = json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=430,900",
                format!("--lang={lang}"), format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": { "intl.accept_languages": lang },
        });
        if !javascript {
            options["prefs"]["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to start", Duration::from_secs(30), || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            driver,
            profile,
        }
    }

    /// Ends the WebDriver session, which closes Chromium, then the rest
    /// (drop).
    async fn close(self) {
        self.client.clone().close().await.unwrap();
    }

    /// The element, once the page shows it.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        eventually(&format!("element {css}"), DEADLINE, || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    async fn fill(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the element's text contains `expected`.
    async fn wait_text(&self, css: &str, expected: &str) {
        eventually(&format!("{css} to read {expected:?}"), DEADLINE, || async {
            self.text(css)
                .await
                .filter(|t| t.contains(expected))
                .map(|_| ())
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Signs up through the form; the page logs the new user in.
    async fn sign_up(&self, base: &str, email: &str) {
        self.client.goto(&format!("{base}/signup")).await.unwrap();
        self.fill("#email", email).await;
        self.fill("#name", "Browser User").await;
        self.fill("#password", "password-123").await;
        self.click("form button[type=submit]").await;
        eventually("the coupon list after sign-up", DEADLINE, || async {
            let url = self.client.current_url().await.ok()?;
            (url.path() == "/").then_some(())
        })
        .await;
    }

    /// Logs out and in again through the login form.
    async fn log_in_again(&self, base: &str, email: &str) {
        self.click("nav form button").await;
        eventually("logged out", DEADLINE, || async {
            let nav = self.text("nav").await?;
            (!nav.contains("로그아웃")).then_some(())
        })
        .await;
        self.client.goto(&format!("{base}/login")).await.unwrap();
        self.fill("#email", email).await;
        self.fill("#password", "password-123").await;
        self.click("form button[type=submit]").await;
        eventually("the coupon list after login", DEADLINE, || async {
            let url = self.client.current_url().await.ok()?;
            let signed_in = self.text("nav").await?.contains("로그아웃");
            (url.path() == "/" && signed_in).then_some(())
        })
        .await;
    }

    async fn claim(&self, coupon: u64) {
        self.click(&format!("#coupon-{coupon} form button")).await;
        eventually("the waiting page", DEADLINE, || async {
            let url = self.client.current_url().await.ok()?;
            url.path().starts_with("/tickets/").then_some(())
        })
        .await;
    }
}

fn email() -> String {
    format!("browser.{:08x}@example.com", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_page_follows_the_ticket_to_issued_live() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(5, 50).await;
    let browser = Browser::start("ko-KR", true).await;
    let email = email();
    browser.sign_up(&stack.base, &email).await;
    browser.log_in_again(&stack.base, &email).await;
    browser.claim(coupon.0).await;

    // No worker yet: the page shows the line.
    browser.wait_text("#headline", "대기 중입니다").await;
    assert_eq!(browser.text("#position").await.as_deref(), Some("1"));
    // A refresh keeps the same place.
    browser.client.refresh().await.unwrap();
    assert_eq!(browser.text("#position").await.as_deref(), Some("1"));

    // The worker runs: the page moves to "issued" by itself.
    let worker = stack.spawn_worker();
    browser.wait_text("#headline", "쿠폰을 받았습니다").await;
    browser.screenshot("issued-ko").await;
    // Once persisted, "My coupons" lists it.
    stack.wait_rows(coupon, 1, DEADLINE).await;
    browser.click("a[href='/me/coupons']").await;
    browser.wait_text("main", "Storm").await;
    browser.screenshot("my-coupons-ko").await;
    browser.close().await;
    worker.stop().await;
    stack.assert_invariants(&[coupon]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_page_works_without_javascript() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(5, 50).await;
    let browser = Browser::start("en-US", false).await;
    browser.sign_up(&stack.base, &email()).await;
    browser.claim(coupon.0).await;
    browser.wait_text("#headline", "You are in line").await;

    let worker = stack.spawn_worker();
    // Only the meta refresh can bring the news.
    browser.wait_text("#headline", "You got the coupon!").await;
    browser.screenshot("issued-en-no-js").await;
    browser.close().await;
    stack.wait_rows(coupon, 1, DEADLINE).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_coupon_says_so() {
    let stack = Stack::start(&[]).await;
    let coupon = stack.coupon(1, 50).await;
    // Someone else is first in line for the only coupon.
    let others = stack.users(1).await;
    let (status, _) = stack.claim(coupon, &others[0].1).await;
    assert_eq!(status, 202);

    let browser = Browser::start("ko-KR", true).await;
    browser.sign_up(&stack.base, &email()).await;
    browser.claim(coupon.0).await;
    assert_eq!(browser.text("#position").await.as_deref(), Some("2"));
    browser.screenshot("waiting-ko").await;

    let worker = stack.spawn_worker();
    browser
        .wait_text("#live", "쿠폰이 모두 소진되었습니다")
        .await;
    browser.screenshot("sold-out-ko").await;

    // The list says so too, and refuses a new claim with the reason.
    browser
        .client
        .goto(&format!("{}/", stack.base))
        .await
        .unwrap();
    browser
        .wait_text(&format!("#coupon-{}", coupon.0), "매진")
        .await;
    browser.screenshot("list-sold-out-ko").await;
    browser.close().await;
    stack.wait_rows(coupon, 1, DEADLINE).await;
    worker.stop().await;
    stack.assert_invariants(&[coupon]).await;
}
