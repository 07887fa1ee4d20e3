//! Events end to end, on both transports: a sign-up gets a welcome email, a checkout a
//! confirmation, each exactly once, even when the notifications service is killed.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::checkout::{login, place, settled, shopper};
use crate::system::Running;

/// The emails to `to`, as an administrator reads them through the gateway.
async fn emails(running: &Running, admin: &str, to: &str) -> Vec<Value> {
    let response = running
        .get(&format!("/api/emails?to={to}"), Some(admin))
        .await;
    if response.status() != 200 {
        return Vec::new();
    }
    let page: Value = response.json().await.unwrap_or_default();
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Waits (60 s at most) for a delivered email to `to` with `subject`.
async fn wait_for_email(running: &Running, admin: &str, to: &str, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(email) = emails(running, admin, to)
            .await
            .into_iter()
            .find(|e| e["subject"] == subject && e["status"] == "delivered")
        {
            return email;
        }
        assert!(
            Instant::now() < deadline,
            "no {subject:?} email to {to}:\n{}",
            running.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sign-up and checkout through the gateway; the emails arrive once each, also across a
/// SIGKILL of the notifications service, and the recommendations learn from the order.
async fn emails_follow_events(running: &Running, email: &str) {
    let admin = login(running, "admin@bazaar.example", "keys-to-the-shop").await;
    let customer = shopper(running, email).await;
    let welcome = wait_for_email(running, &admin, email, "Welcome to Bazaar, Shopper!").await;
    assert!(
        welcome["body"].as_str().is_some_and(|b| b.contains(email)),
        "{welcome}"
    );

    // Kill the consumer outright, then check out: the events wait for it.
    let (instance, pid) = running.instances("notifications")[0].clone();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("killed");
    let id = place(
        running,
        &customer.token,
        &[("MUG-STONE", 2), ("BOOK-RUST", 1)],
        &customer.card,
    )
    .await;
    let order = settled(running, &customer.token, &id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let restart = format!("{instance} restarted on");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.output().contains(&restart) {
        assert!(Instant::now() < deadline, "notifications was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let confirmed = wait_for_email(running, &admin, email, "Your Bazaar order is confirmed").await;
    let body = confirmed["body"].as_str().unwrap_or_default();
    assert!(body.contains(&id), "{body}");
    assert!(
        body.contains("2 x Stoneware Mug (MUG-STONE)  36.00 USD"),
        "{body}"
    );

    // The recommendations learnt that the mug and the book go together.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = running
            .get("/api/recommendations?product=MUG-STONE", None)
            .await
            .json()
            .await
            .unwrap_or_default();
        if page["items"][0]["sku"] == "BOOK-RUST" {
            break;
        }
        assert!(Instant::now() < deadline, "no recommendation: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mine = running
        .get("/api/recommendations/for-me", Some(&customer.token))
        .await;
    assert_eq!(mine.status(), 200);

    // Nothing arrives twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = emails(running, &admin, email).await;
    let subjects: Vec<&str> = all.iter().filter_map(|e| e["subject"].as_str()).collect();
    assert_eq!(
        subjects.len(),
        2,
        "one welcome, one confirmation: {subjects:?}"
    );
}

#[tokio::test]
async fn emails_follow_events_on_the_feed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    emails_follow_events(&running, "feed@example.com").await;

    // `bazaar events` finds the consumers through the registry.
    let listed = std::process::Command::new(crate::system::BIN)
        .args(["events", "dead-letters", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains("No dead letters"), "{stdout}");
    let replay = std::process::Command::new(crate::system::BIN)
        .args([
            "events",
            "replay",
            "notifications",
            "no-such-letter",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert_eq!(replay.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no dead letter \"no-such-letter\""),
        "{stderr}"
    );
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
#[ignore = "needs NATS JetStream at 127.0.0.1:4222"]
async fn emails_follow_events_on_nats() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Streams of this test only, removed at the end.
    let prefix = format!("e2e{}", std::process::id());
    let running = Running::start_with_env(
        dir.path(),
        &["--bus", "nats://127.0.0.1:4222"],
        &[("BAZAAR_EVENTS__NATS_PREFIX", prefix.as_str())],
    );
    emails_follow_events(&running, "nats@example.com").await;
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
    let client = async_nats::connect("127.0.0.1:4222")
        .await
        .expect("NATS answers");
    let js = async_nats::jetstream::new(client);
    for producer in [
        "USERS",
        "CATALOG",
        "ORDERS",
        "PAYMENTS",
        "SHIPPING",
        "NOTIFICATIONS",
        "RECOMMENDATIONS",
    ] {
        let _ = js
            .delete_stream(format!("{}_{producer}", prefix.to_uppercase()))
            .await;
    }
}
