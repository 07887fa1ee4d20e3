//! Retries, the retry budget, outlier ejection and the circuit breaker, against wiremock
//! upstreams that fail on purpose.

use std::time::Duration;

use gateway::Settings;
use gateway::resilience::ResilienceSettings;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Stack, problem, settings_with_echo, spawn_echo};

/// A wiremock upstream answering every request with `status`.
async fn answering(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

fn with_resilience(resilience: ResilienceSettings) -> Settings {
    Settings {
        resilience,
        ..settings_with_echo()
    }
}

#[tokio::test]
async fn an_instance_answering_500s_is_ejected_after_five_in_a_row() {
    let broken = answering(500).await;
    let healthy = spawn_echo("healthy").await;
    let stack = Stack::serving(
        &[("echo", vec![broken.uri(), healthy])],
        settings_with_echo(),
    )
    .await;
    let mut errors = 0;
    for _ in 0..60 {
        let response = stack.get("/api/echo/x", None).await;
        if response.status() == 500 {
            errors += 1;
        } else {
            assert_eq!(response.status(), 200);
        }
    }
    // A 500 may be the application's answer, so it is passed on, not retried; the broken
    // instance costs exactly five of them before it is avoided.
    assert_eq!(errors, 5);
    assert_eq!(received(&broken).await, 5);
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(
            r#"bazaar_gateway_outlier_ejections_total{service="echo",instance="echo-static-0"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn unavailable_answers_are_retried_elsewhere_only_when_repeating_is_safe() {
    let first = answering(503).await;
    let second = answering(503).await;
    let stack = Stack::serving(
        &[("echo", vec![first.uri(), second.uri()])],
        settings_with_echo(),
    )
    .await;
    let both = || async { received(&first).await + received(&second).await };

    // A POST without an idempotency key reached an instance: never sent again.
    for n in 1..=3 {
        let response = stack
            .http
            .post(stack.at("/api/echo/orders"))
            .body("{}")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 503, "the upstream's own answer");
        assert_eq!(both().await, n);
    }
    // With a key, and for a GET, the other instance is tried too.
    let keyed = stack
        .http
        .post(stack.at("/api/echo/orders"))
        .header("idempotency-key", "k-1")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(keyed.status(), 503);
    assert_eq!(both().await, 5);
    assert_eq!(stack.get("/api/echo/orders", None).await.status(), 503);
    assert_eq!(both().await, 7);
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"bazaar_gateway_retries_total{service="echo",outcome="sent"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_retry_budget_caps_retries() {
    let first = answering(503).await;
    let second = answering(503).await;
    let settings = with_resilience(ResilienceSettings {
        retry_ratio: 0.0,
        retry_min_per_second: 1,
        window: Duration::from_secs(10),
        breaker_min_requests: 1000,
        outliers: chassis::discovery::OutlierPolicy {
            consecutive_failures: 1000,
            ..Default::default()
        },
        ..ResilienceSettings::default()
    });
    let stack = Stack::serving(&[("echo", vec![first.uri(), second.uri()])], settings).await;
    for _ in 0..15 {
        assert_eq!(stack.get("/api/echo/x", None).await.status(), 503);
    }
    // One retry per second over a ten-second window: ten of the fifteen were retried.
    assert_eq!(received(&first).await + received(&second).await, 25);
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"bazaar_gateway_retries_total{service="echo",outcome="sent"} 10"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"bazaar_gateway_retries_total{service="echo",outcome="budget_exhausted"} 5"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers_through_a_probe() {
    let upstream = answering(500).await;
    let settings = with_resilience(ResilienceSettings {
        breaker_min_requests: 10,
        breaker_open_for: Duration::from_millis(300),
        ..ResilienceSettings::default()
    });
    let stack = Stack::serving(&[("echo", vec![upstream.uri()])], settings).await;
    for _ in 0..10 {
        assert_eq!(stack.get("/api/echo/x", None).await.status(), 500);
    }
    // Open: refused without reaching the upstream.
    let refused = stack.get("/api/echo/x", None).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        problem(refused).await["type"],
        "urn:bazaar:problem:circuit-open"
    );
    assert_eq!(received(&upstream).await, 10);
    assert!(
        stack
            .metrics()
            .await
            .contains(r#"bazaar_gateway_circuit_state{service="echo"} 1"#)
    );

    // Half-open: the probe fails, so it opens again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(stack.get("/api/echo/x", None).await.status(), 500);
    assert_eq!(stack.get("/api/echo/x", None).await.status(), 503);
    assert_eq!(received(&upstream).await, 11);

    // The upstream heals; the next probe closes the breaker and traffic flows.
    upstream.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..5 {
        assert_eq!(stack.get("/api/echo/x", None).await.status(), 200);
    }
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"bazaar_gateway_circuit_state{service="echo"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bazaar_gateway_circuit_rejected_total{service="echo"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn nonsense_resilience_settings_stop_the_start() {
    let settings = with_resilience(ResilienceSettings {
        retry_ratio: -1.0,
        ..ResilienceSettings::default()
    });
    let mut config = chassis::config::ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let error = gateway::Application::build(
        gateway::Config {
            chassis: config,
            settings,
        },
        &CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(
        chassis::error::ErrorChain(&error)
            .to_string()
            .contains("gateway.resilience.retry_ratio"),
        "{error}"
    );
}
