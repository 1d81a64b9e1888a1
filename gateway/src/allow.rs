//! `405 Method Not Allowed` names the methods that are allowed (`Allow`,
//! RFC 9110), taken from the OpenAPI document, so it can never disagree
//! with what the API serves.

use std::sync::LazyLock;

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};

/// (path segments, with `None` for a parameter; allowed methods).
static ROUTES: LazyLock<Vec<(Vec<Option<String>>, String)>> = LazyLock::new(|| {
    let spec: serde_json::Value =
        serde_json::from_str(&crate::api::spec_json()).unwrap_or_default();
    let Some(paths) = spec["paths"].as_object() else {
        return Vec::new();
    };
    paths
        .iter()
        .map(|(path, ops)| {
            let segments = path
                .trim_start_matches('/')
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                .collect();
            let mut methods: Vec<String> = ops
                .as_object()
                .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            (segments, methods.join(", "))
        })
        .collect()
});

fn allowed(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ROUTES.iter().find_map(|(segments, methods)| {
        let fits = segments.len() == parts.len()
            && segments
                .iter()
                .zip(&parts)
                .all(|(s, p)| s.as_deref().is_none_or(|s| s == *p));
        fits.then_some(methods.as_str())
    })
}

pub async fn add_allow<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(methods) = allowed(&path) {
            if let Ok(value) = methods.parse() {
                response.headers_mut().insert("allow", value);
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn allowed_methods_come_from_the_document() {
        assert_eq!(allowed("/api/coupons/7/claim"), Some("POST"));
        assert_eq!(allowed("/api/coupons/7"), Some("GET, HEAD"));
        assert_eq!(allowed("/metrics"), Some("GET, HEAD"));
        assert_eq!(allowed("/nowhere"), None);
    }
}
