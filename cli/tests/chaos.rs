//! `bazaar chaos`, short: customers shop while instances are killed, frozen and made to fail,
//! and the run's own invariant check finds nothing wrong. (`.ci/run` also runs a minute of it
//! on each backend; the closing notes report five-minute runs.)
//!
//! A test binary of its own: test binaries run one after another, so the load and the kills of
//! a chaos run never share the machine with the end-to-end tests that measure latency (a
//! canary's p99 against its stable version's).

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bazaar");

#[test]
fn a_short_chaos_run_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("system");
    let report = dir.path().join("report.json");
    let output = Command::new(BIN)
        .args([
            "chaos",
            "--duration",
            "15s",
            "--every",
            "700ms",
            "--customers",
            "6",
        ])
        .args(["--settle", "2m", "--seed", "11"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--json")
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("every invariant holds"), "{printed}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).expect("json");
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    let kills: u64 = report["faults"]["kills"]
        .as_object()
        .expect("kills")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(kills >= 5, "faults happened: {report}");
    for first in ["orders", "registry", "notifications"] {
        assert!(
            report["faults"]["kills"][first].as_u64() >= Some(1),
            "{first} was killed: {report}"
        );
    }
    let orders: u64 = report["orders"]
        .as_object()
        .expect("orders")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(orders >= 10, "customers placed orders: {report}");
    // Every accepted checkout is one order; only a checkout given up on (its acceptance lost
    // every time) may be an order its customer never heard of.
    let placed = report["customers_saw"]["placed"].as_u64().expect("placed");
    let abandoned = report["customers_saw"]["abandoned"]
        .as_u64()
        .expect("abandoned");
    assert!(
        placed <= orders && orders <= placed + abandoned,
        "{placed} placed, {abandoned} abandoned, {orders} orders: {report}"
    );
    assert!(!data.exists(), "a passing run deletes its data");
}

#[test]
fn chaos_names_the_bad_flag_before_starting_anything() {
    for (args, expected) in [
        (
            vec!["--duration", "2s"],
            "--duration 2s: a run lasts at least 10s",
        ),
        (vec!["--settle", "1s"], "--settle 1s"),
        (vec!["--every", "10ms"], "--every 10ms"),
        (
            vec!["--db", "mysql://127.0.0.1"],
            "--db \"mysql://127.0.0.1\"",
        ),
        (
            vec!["--db", "postgres://127.0.0.1/shop"],
            "without a database",
        ),
        (
            vec!["--bus", "redis://127.0.0.1"],
            "--bus \"redis://127.0.0.1\"",
        ),
        (vec!["--data-dir", "/"], "already exists"),
    ] {
        let output = Command::new(BIN)
            .arg("chaos")
            .args(&args)
            .output()
            .expect("runs");
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}
