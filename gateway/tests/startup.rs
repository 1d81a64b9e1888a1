//! Start-up refuses a bad configuration with a message naming the variable;
//! a signal stops the running binary cleanly, even with its output gone.

use std::process::Command;

fn start_with(var: &str, value: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env(var, value)
        .output()
        .expect("run the gateway binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("DAILY_LIMIT", "many"),
        ("DAILY_LIMIT_TZ", "Nowhere/Special"),
        ("GATEWAY_ADDR", "not-an-address"),
        ("KAFKA_ONE_MESSAGE_PER_BATCH", "perhaps"),
        ("JWT_SECRET", "too-short"),
    ] {
        let (code, stderr) = start_with(var, value);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

/// Ctrl-C in `ops/up` reaches its log prefixers too, which may end first:
/// the gateway must still stop on the signal with nowhere left to write
/// its logs (it once panicked in the task that cancels on the signal, and
/// ran on).
#[tokio::test]
async fn a_signal_stops_the_gateway_with_its_output_gone() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let env = coupon_core::testing::TestEnv::new().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("DATABASE_URL", env.config.database_url.expose())
        .env("REDIS_KEY_PREFIX", &env.config.redis_key_prefix)
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the gateway binary");
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Read until it listens, then close both pipes' reading ends.
    let listening = tokio::task::spawn_blocking(move || {
        let lines = BufReader::new(stdout.expect("piped stdout")).lines();
        let found = lines
            .map_while(Result::ok)
            .any(|l| l.contains("gateway listening"));
        drop(stderr);
        found
    });
    assert!(
        listening.await.expect("reader"),
        "the gateway never listened"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());
    let exit = tokio::task::spawn_blocking(move || child.wait());
    let Ok(status) = tokio::time::timeout(std::time::Duration::from_secs(30), exit).await else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the gateway did not stop within 30 s of SIGTERM");
    };
    let status = status.expect("waiter").expect("wait for the gateway");
    assert!(status.success(), "{status}");
}
