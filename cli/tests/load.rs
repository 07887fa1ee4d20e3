//! `bazaar load` against a running system, in a test binary of its own (the load never
//! overlaps the end-to-end tests that compare latencies).

use std::process::Command;

use serde_json::Value;

#[allow(dead_code)] // the load tests use only the start and stop of `up`
#[path = "e2e/system.rs"]
mod system;

use system::{BIN, Running};

fn load(running: &Running, extra: &[&str]) -> (Value, String) {
    let report = running.data_dir.join("load.json");
    let output = Command::new(BIN)
        .arg("load")
        .arg("--data-dir")
        .arg(&running.data_dir)
        .args(["--accounts", "4", "--every", "1s", "--seed", "5", "--json"])
        .arg(&report)
        .args(extra)
        .output()
        .expect("runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    let json = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    (json, printed)
}

#[test]
fn a_closed_and_an_open_loop_run_report_every_journey_without_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(&dir.path().join("system"), &[]);

    let (report, printed) = load(&running, &["--users", "4", "--duration", "4s"]);
    assert_eq!(report["errors"], serde_json::json!({}), "{printed}");
    for journey in ["browse", "view_product", "checkout"] {
        assert!(
            report["journeys"][journey]["count"].as_u64() > Some(0),
            "{journey}: {printed}"
        );
    }
    assert!(report["confirmed"].as_u64() > Some(0), "{printed}");
    assert!(report["order_to_confirmed_ms"]["p99"].as_f64() > Some(0.0));
    assert!(printed.contains("Order placed → CONFIRMED"), "{printed}");
    // Where the time went, from the sagas of the confirmed orders.
    let parts: Vec<&str> = report["checkout_breakdown"]
        .as_array()
        .expect("a breakdown")
        .iter()
        .filter_map(|p| p["part"].as_str())
        .collect();
    for part in [
        "placed → first step",
        "reserve (call)",
        "charge (call)",
        "last step → CONFIRMED",
        "CONFIRMED → confirmation email stored (event lag)",
    ] {
        assert!(parts.contains(&part), "{part}: {parts:?}");
    }
    // The system runs here, so its CPU is read from /proc: orders did work for every checkout.
    let orders_cpu = report["cpu"]
        .as_array()
        .expect("CPU by service")
        .iter()
        .find(|u| u["service"] == "orders")
        .and_then(|u| u["ms_per_journey"].as_f64());
    assert!(orders_cpu > Some(0.0), "{printed}");
    assert!(printed.contains("WHERE THE CPU GOES"), "{printed}");

    // Open loop, browsing only: as many journeys as scheduled, give or take the last tick.
    let scenario = dir.path().join("browse.toml");
    std::fs::write(&scenario, "[weights]\nbrowse = 1\n").expect("written");
    let scenario = scenario.to_string_lossy().into_owned();
    let (report, printed) = load(
        &running,
        &["--rate", "20", "--duration", "3s", "--scenario", &scenario],
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{printed}");
    let browsed = report["journeys"]["browse"]["count"].as_u64().unwrap_or(0);
    assert!((55..=61).contains(&browsed), "60 scheduled: {printed}");
    assert!(report["journeys"]["checkout"].is_null(), "{printed}");
    assert!(
        report["mode"]
            .as_str()
            .is_some_and(|m| m.contains("open loop"))
    );

    // With a warm-up first: the schedule runs on through it, and only what follows is counted.
    let (report, printed) = load(
        &running,
        &[
            "--rate",
            "20",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--scenario",
            &scenario,
        ],
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{printed}");
    let measured = report["journeys"]["browse"]["count"].as_u64().unwrap_or(0);
    assert!((36..=41).contains(&measured), "40 measured: {printed}");
    let warm = report["warmup"]["journeys"].as_u64().unwrap_or(0);
    assert!((18..=20).contains(&warm), "20 in the warm-up: {printed}");
    assert_eq!(report["warmup"]["failed"], 0, "{printed}");
    assert!(
        (report["seconds"].as_f64().unwrap_or(0.0) - 2.0).abs() < 0.5,
        "the measured seconds: {printed}"
    );
    assert!(
        printed.contains("Warm-up, left out below: 1 s, "),
        "{printed}"
    );
}

#[test]
fn a_warmup_longer_than_an_hour_is_refused_by_name() {
    let output = Command::new(BIN)
        .args(["load", "--warmup", "2h", "--gateway", "http://127.0.0.1:1"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "a usage error: {stderr}");
    assert!(
        stderr.contains("--warmup 2h: expected at most an hour"),
        "{stderr}"
    );
}
