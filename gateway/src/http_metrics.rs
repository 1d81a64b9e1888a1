//! HTTP metrics: requests by route and status, and their latency. Routes
//! are path patterns (`/api/coupons/{id}`), never raw paths, so ids and
//! tickets cannot blow up the number of series; unknown paths are `other`.

use std::time::Instant;

use coupon_core::metrics as names;
use poem::{Endpoint, IntoResponse, Request, Response};

/// The route pattern of `path`.
pub fn route(path: &str) -> String {
    const KNOWN: &[&str] = &[
        "api",
        "healthz",
        "readyz",
        "metrics",
        "docs",
        "openapi.json",
        "login",
        "signup",
        "logout",
        "coupons",
        "tickets",
        "me",
    ];
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    if first.is_empty() {
        return "/".into();
    }
    if !KNOWN.contains(&first) {
        return "other".into();
    }
    if first == "docs" {
        return "/docs".into();
    }
    let mut out = format!("/{first}");
    for segment in segments.take(4) {
        out.push('/');
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("{id}");
        } else if segment.starts_with("t1.") {
            out.push_str("{ticket}");
        } else if segment.len() <= 12
            && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            out.push_str(segment);
        } else {
            out.push_str("{other}");
        }
    }
    out
}

/// Wraps the whole app.
pub async fn record<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route(req.uri().path());
    let response = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn routes_are_patterns() {
        assert_eq!(route("/"), "/");
        assert_eq!(route("/api/coupons/42/claim"), "/api/coupons/{id}/claim");
        assert_eq!(route("/api/tickets/t1.AAAA.BBBB"), "/api/tickets/{ticket}");
        assert_eq!(route("/tickets/t1.x.y/events"), "/tickets/{ticket}/events");
        assert_eq!(route("/docs/swagger-ui.css"), "/docs");
        assert_eq!(route("/wp-admin/setup.php"), "other");
        assert_eq!(route("/api/coupons/abc"), "/api/coupons/abc");
        assert_eq!(
            route("/api/coupons/AbC123xyzLONGthing"),
            "/api/coupons/{other}"
        );
    }
}
