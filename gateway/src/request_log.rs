//! One log span per request, with its outcome and duration.
//!
//! In place of poem's `Tracing` middleware, which logs the address a client
//! claims in `X-Real-IP`, `Forwarded` or `X-Forwarded-For` from anyone. Here
//! the address is the one the rate limits count ([`crate::client_addr`]):
//! the peer's, or behind `TRUSTED_PROXIES` the one they forwarded. A log
//! line then names the client an operator would block.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::client_addr::client_ip;

/// The middleware. Its fields are only computed when the span is logged.
pub async fn trace<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let span = tracing::info_span!(
        "request",
        client = %client_ip(&req),
        version = ?req.version(),
        method = %req.method(),
        uri = %req.original_uri(),
    );
    async move {
        let started = Instant::now();
        match next.call(req).await {
            Ok(response) => {
                let response = response.into_response();
                tracing::info!(status = %response.status(), duration = ?started.elapsed(), "response");
                Ok(response)
            }
            Err(err) => {
                tracing::info!(status = %err.status(), error = %err, duration = ?started.elapsed(), "error");
                Err(err)
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use coupon_core::Config;
    use poem::{handler, EndpointExt, Route};

    use super::*;
    use crate::state::AppState;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    /// The log of one request with `X-Forwarded-For: 198.51.100.9`, from
    /// a peer left unknown (read as 0.0.0.0).
    async fn logged(trusted_proxies: &str) -> String {
        let config = Config::from_lookup(|name| {
            (name == "TRUSTED_PROXIES").then(|| trusted_proxies.to_owned())
        })
        .unwrap();
        let app = Route::new()
            .at("/hello", hello)
            .around(trace)
            .data(AppState::new(config).unwrap());
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let request = Request::builder()
            .uri_str("/hello")
            .header("x-forwarded-for", "198.51.100.9")
            .finish();
        let response = app.call(request).await.unwrap();
        assert!(response.status().is_success());
        let log = captured.0.lock().expect("lock").clone();
        String::from_utf8(log).unwrap()
    }

    #[tokio::test]
    async fn the_log_names_the_client_the_rate_limits_count() {
        let untrusted = logged("").await;
        assert!(untrusted.contains("client=0.0.0.0"), "{untrusted}");
        assert!(!untrusted.contains("198.51.100.9"), "{untrusted}");
        assert!(untrusted.contains("status=200 OK"), "{untrusted}");

        let behind_proxy = logged("0.0.0.0/32").await;
        assert!(
            behind_proxy.contains("client=198.51.100.9"),
            "{behind_proxy}"
        );
    }
}
