//! The OpenAPI document is a reviewed artifact: the committed
//! `gateway/openapi.json` must equal what the code renders. After an
//! intended API change, regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p gateway --test openapi` and review the diff.

use std::path::PathBuf;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let rendered = format!("{}\n", gateway::api::spec_json());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "gateway/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p gateway --test openapi` and review the diff"
    );
}

#[test]
fn every_endpoint_of_the_contract_is_documented_with_its_statuses() {
    let spec: serde_json::Value = serde_json::from_str(&gateway::api::spec_json()).unwrap();
    let expect = [
        ("/api/auth/signup", "post", &["201", "400", "409"][..]),
        ("/api/auth/login", "post", &["200", "401"]),
        ("/api/me", "get", &["200", "401"]),
        ("/api/me/coupons", "get", &["200", "401"]),
        ("/api/coupons", "get", &["200"]),
        ("/api/coupons/{id}", "get", &["200", "404"]),
        ("/api/admin/coupons", "post", &["201", "400", "401", "403"]),
        (
            "/api/admin/coupons/{id}/stats",
            "get",
            &["200", "401", "403", "404"],
        ),
        ("/api/admin/dashboard", "get", &["200", "401", "403"]),
        (
            "/api/coupons/{id}/claim",
            "post",
            &["200", "202", "401", "404", "409", "410", "422", "429"],
        ),
        ("/api/tickets/{ticket_id}", "get", &["200", "401", "404"]),
        ("/healthz", "get", &["200"]),
        ("/readyz", "get", &["200", "503"]),
        ("/metrics", "get", &["200"]),
    ];
    for (path, method, statuses) in expect {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
        // Everything behind /api needs MySQL or Redis, and says what it
        // answers while one of them is down.
        if path.starts_with("/api/") {
            let unavailable = &op["responses"]["503"];
            assert!(unavailable.is_object(), "{method} {path} documents 503");
            assert!(
                unavailable["headers"]["RETRY-AFTER"].is_object(),
                "{method} {path} documents Retry-After on 503"
            );
        }
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    assert!(spec["paths"]["/api/me"]["get"]["security"].is_array());
}

/// `gateway::error::catch_all` names a path parameter that fails to parse
/// `id` (poem-openapi itself says `param0`): true only while every path
/// parameter other than a string is called `id`.
#[test]
fn every_path_parameter_that_can_fail_to_parse_is_an_id() {
    let spec: serde_json::Value = serde_json::from_str(&gateway::api::spec_json()).unwrap();
    let mut ids = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for parameter in parameters.iter().filter(|p| p["in"] == "path") {
                if parameter["schema"]["type"] != "string" {
                    assert_eq!(parameter["name"], "id", "{method} {path}");
                    ids += 1;
                }
            }
        }
    }
    assert!(ids > 0, "the coupon routes take an id");
}
