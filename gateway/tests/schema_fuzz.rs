//! Schema fuzzing: schemathesis (`st`, from PyPI; `ops/test` installs it)
//! against `/openapi.json` of a real gateway, with an admin token (which
//! every endpoint accepts) and a bounded number of examples per operation.
//! No 5xx, every response matches the documented schema, every
//! schema-valid request is accepted (within the rules in
//! `ops/schemathesis.toml`), undocumented methods get 405 with `Allow`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{active_coupon, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_documented_contract_under_fuzzing() {
    let app = TestApp::spawn_with(&[("RATE_LIMITS", "off")]).await;
    let admin = app.admin().await;
    // Something to find: a coupon that can be claimed.
    app.coupon(&admin, active_coupon("Fuzzed", 1000)).await;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/schemathesis.toml");
    let url = format!("{}/openapi.json", app.base);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into()))
            .arg("--config-file")
            .arg(config)
            .args(["run", &url, "--max-examples", "25", "--seed", "20261124"])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis (`st`) is installed: ops/test installs it with pip")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report.split("SUMMARY").last().unwrap_or(&report);
    println!("{summary}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
