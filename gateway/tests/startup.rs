//! Start-up refuses a bad configuration with a message naming the variable.

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
