//! `bazaar demo`: every scenario run from a fresh `up`, as a user runs it, its verdict
//! asserted (the exit code and the verdict line), and the narration checked for the step
//! that shows the pattern.

use crate::releases::run_bazaar;
use crate::system::{BIN, Running};

/// Runs `bazaar demo <scenario>` against `running`; the exit code and the output.
async fn demo(running: &Running, scenario: &str) -> (Option<i32>, String) {
    run_bazaar(
        running.data_dir.clone(),
        vec!["demo".to_owned(), scenario.to_owned()],
    )
    .await
}

/// A fresh system, `scenario` run on it: its verdict held, and its story says `shows`.
async fn holds(scenario: &str, shows: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    let (code, out) = demo(&running, scenario).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Verdict: it held."), "{out}");
    assert!(!out.contains("✗"), "{out}");
    for text in shows {
        assert!(out.contains(text), "{text:?} is not in:\n{out}");
    }
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
async fn checkout() {
    holds(
        "checkout",
        &[
            "checkout charge",
            "order.confirmed process",
            "bazaar trace ",
        ],
    )
    .await;
}

#[tokio::test]
async fn declined_card() {
    holds(
        "declined-card",
        &["reserve done → charge refused → release_stock done"],
    )
    .await;
}

#[tokio::test]
async fn payments_outage() {
    holds("payments-outage", &["next try at", "breaker is closed"]).await;
}

#[tokio::test]
async fn crash_mid_saga() {
    holds(
        "crash-mid-saga",
        &["SIGKILL to orders", "exactly one charge"],
    )
    .await;
}

#[tokio::test]
async fn lost_consumer() {
    holds(
        "lost-consumer",
        &["Stopped notifications", "0 dead letters"],
    )
    .await;
}

#[tokio::test]
async fn discovery() {
    holds("discovery", &["critical", "0 of "]).await;
}

#[tokio::test]
async fn rate_limit() {
    holds("rate-limit", &["429", "Retry-After", "locked nobody out"]).await;
}

#[tokio::test]
async fn mtls_refusal() {
    holds(
        "mtls-refusal",
        &["403 Forbidden", "cart may not call POST /charges"],
    )
    .await;
}

#[tokio::test]
async fn canary_rollback() {
    holds("canary-rollback", &["rolled back"]).await;
}

#[tokio::test]
async fn blue_green() {
    holds("blue-green", &["Released"]).await;
}

#[tokio::test]
async fn an_unknown_scenario_is_named_with_the_ones_there_are() {
    let output = tokio::process::Command::new(BIN)
        .args(["demo", "teleport"])
        .output()
        .await
        .expect("bazaar runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("'teleport'") && text.contains("checkout"),
        "{text}"
    );
}

#[tokio::test]
async fn the_monolith_and_the_microservices_take_the_same_load_side_by_side() {
    let output = tokio::process::Command::new(BIN)
        .args(["demo", "monolith-vs-microservices", "--duration", "3s"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("bazaar runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("Verdict: it held."), "{out}");
    let row = |label: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} row in:\n{out}"))
            .split_whitespace()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("processes"), ["10", "1"], "{out}");
    assert_eq!(row("failed checkouts"), ["0", "0"], "{out}");
    for side in row("checkouts confirmed per second") {
        assert!(side.parse::<f64>().is_ok_and(|n| n > 0.0), "{out}");
    }
}
