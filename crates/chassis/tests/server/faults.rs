//! Fault rules from the registry's KV store, applied by the chassis middleware.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::ChassisConfig;
use chassis::{Server, ServiceInfo};
use http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A registry that accepts the instance and holds these fault rules.
async fn registry_with(rules: serde_json::Value) -> MockServer {
    let registry = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&registry)
        .await;
    let entries: Vec<_> = rules
        .as_object()
        .expect("rules by name")
        .iter()
        .map(|(name, rule)| {
            json!({ "key": format!("faults/{name}"), "value": rule.to_string(), "create_index": 1, "modify_index": 1 })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/v1/kv"))
        .and(query_param("prefix", "faults/"))
        .and(query_param_is_missing("index"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "index": 1, "entries": entries })),
        )
        .mount(&registry)
        .await;
    // The blocking follow-up query: nothing changes while the test runs.
    Mock::given(method("GET"))
        .and(path("/v1/kv"))
        .and(query_param("index", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "index": 1, "entries": entries }))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&registry)
        .await;
    registry
}

/// The status and whole body of a GET; `None` when the answer never completed.
async fn fetch(url: &str) -> Option<(http::StatusCode, String)> {
    let response = Transport::http()
        .send(Request::get(url).body(Body::empty()).expect("request"))
        .await
        .ok()?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some((parts.status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn rules_for_this_service_and_version_fail_delay_and_drop_requests_and_are_counted() {
    let registry = registry_with(json!({
        "broken": { "service": "demo", "route": "/broken", "error_rate": 1, "status": 503 },
        "slow": { "service": "demo", "route": "/slow", "delay_ms": 300 },
        "gone": { "service": "demo", "route": "/gone", "drop_rate": 1 },
        "other-version": { "service": "demo", "version": "9.9", "error_rate": 1 },
        "other-service": { "service": "orders", "error_rate": 1 },
    }))
    .await;
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = Some(registry.uri());
    let info = ServiceInfo::new("demo", "1.2.3", &config);
    let server = Server::bind(info, &config).await.expect("binds");
    let url = server.url().to_owned();
    let app = Router::new()
        .route("/broken", get(|| async { "fine" }))
        .route("/slow", get(|| async { "fine" }))
        .route("/gone", get(|| async { "fine" }))
        .route("/ok", get(|| async { "fine" }));
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(server.serve(app, shutdown));
    assert!(
        chassis::health::wait_until_ready(
            &chassis::client::Transport::http(),
            &url,
            Some(Duration::from_secs(5))
        )
        .await
    );

    // The rules arrive by the watch, shortly after start.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let answer = fetch(&format!("{url}/broken")).await.expect("answers");
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503);
    assert!(body.contains("urn:bazaar:problem:fault-injected"), "{body}");
    assert!(body.contains("broken"), "{body}");

    let started = Instant::now();
    assert_eq!(fetch(&format!("{url}/slow")).await.expect("answers").0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    assert_eq!(
        fetch(&format!("{url}/gone")).await,
        None,
        "the answer is cut off"
    );
    assert_eq!(
        fetch(&format!("{url}/ok")).await.expect("answers").0,
        200,
        "other versions and services do not apply"
    );
    assert_eq!(
        fetch(&format!("{url}/health/ready"))
            .await
            .expect("answers")
            .0,
        200
    );

    let (_, metrics) = fetch(&format!("{url}/metrics")).await.expect("answers");
    for line in [
        r#"faults_injected_total{rule="broken",kind="error"} 1"#,
        r#"faults_injected_total{rule="slow",kind="delay"} 1"#,
        r#"faults_injected_total{rule="gone",kind="drop"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
