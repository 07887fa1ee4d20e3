//! Start-up, request handling and graceful shutdown of a chassis server.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::ChassisConfig;
use chassis::{Server, ServiceInfo};
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Started {
    url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), chassis::StartError>>,
}

async fn start(config: ChassisConfig) -> Started {
    let info = ServiceInfo::new("demo", "1.2.3", &config);
    let server = Server::bind(info, &config).await.expect("binds");
    let url = server.url().to_owned();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "done"
            }),
        )
        .route(
            "/very-slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom with a secret");
                }
                "unreachable"
            }),
        )
        .route(
            "/echo-id",
            get(|headers: http::HeaderMap| async move {
                headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            }),
        );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(app, shutdown.clone()));
    assert!(
        chassis::health::wait_until_ready(
            &chassis::client::Transport::http(),
            &url,
            Some(Duration::from_secs(5))
        )
        .await
    );
    Started {
        url,
        shutdown,
        task,
    }
}

fn config() -> ChassisConfig {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config.http.request_timeout = Duration::from_secs(1);
    config.http.shutdown_grace = Duration::from_secs(3);
    config
}

async fn fetch(url: &str, headers: &[(&str, &str)]) -> (http::StatusCode, http::HeaderMap, String) {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = Transport::http()
        .send(request.body(Body::empty()).expect("request"))
        .await
        .expect("answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_stops_accepting() {
    let started = start(config()).await;
    let url = format!("{}/slow", started.url);
    let in_flight = tokio::spawn(async move { fetch(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    started.shutdown.cancel();
    let (status, _, body) = in_flight.await.expect("joins");
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "done"),
        "the in-flight request finished"
    );
    started.task.await.expect("joins").expect("stops cleanly");
    assert!(stopping.elapsed() < Duration::from_secs(2));
    let refused = Transport::http()
        .send(
            Request::get(format!("{}/health/live", started.url))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let mut config = config();
    config.http.request_timeout = Duration::from_secs(60);
    config.http.shutdown_grace = Duration::from_millis(300);
    let started = start(config).await;
    let url = format!("{}/very-slow", started.url);
    let _stuck = tokio::spawn(async move { fetch(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    started.shutdown.cancel();
    started.task.await.expect("joins").expect("stops");
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "took {:?}",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn slow_handlers_time_out_and_panics_are_500s_with_problem_bodies() {
    let started = start(config()).await;
    let (status, headers, body) = fetch(&format!("{}/very-slow", started.url), &[]).await;
    assert_eq!(status.as_u16(), 503);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(problem["type"], "urn:bazaar:problem:timeout");

    let (status, _, body) = fetch(&format!("{}/panic", started.url), &[]).await;
    assert_eq!(status.as_u16(), 500);
    let problem: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(problem["type"], "urn:bazaar:problem:internal");
    assert!(!body.contains("secret"), "{body}");
    started.shutdown.cancel();
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_and_made_otherwise() {
    let started = start(config()).await;
    let echo = format!("{}/echo-id", started.url);
    let (_, headers, body) = fetch(&echo, &[("x-request-id", "client-chose-this")]).await;
    assert_eq!(body, "client-chose-this");
    assert_eq!(headers["x-request-id"], "client-chose-this");
    let (_, headers, body) = fetch(&echo, &[("x-request-id", "bad id with spaces")]).await;
    assert_ne!(body, "bad id with spaces");
    assert_eq!(
        uuid::Uuid::parse_str(&body).map(|u| u.get_version_num()),
        Ok(7)
    );
    assert_eq!(headers["x-request-id"].to_str().ok(), Some(body.as_str()));
    started.shutdown.cancel();
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let started = start(config()).await;
    let (status, _, body) = fetch(&format!("{}/health/ready", started.url), &[]).await;
    assert_eq!(status.as_u16(), 200);
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["checks"]["registration"], "ok");
    assert_eq!(report["checks"]["database"], "skipped");
    fetch(&format!("{}/echo-id", started.url), &[]).await;
    let (_, headers, metrics) = fetch(&format!("{}/metrics", started.url), &[]).await;
    assert!(
        headers["content-type"]
            .to_str()
            .is_ok_and(|ct| ct.starts_with("application/openmetrics-text"))
    );
    assert!(
        metrics.contains(
            r#"bazaar_http_server_requests_total{method="GET",route="/echo-id",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bazaar_build_info{service="demo",version="1.2.3""#),
        "{metrics}"
    );
    started.shutdown.cancel();
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431_problems() {
    let mut config = config();
    config.http.max_headers = 20;
    config.http.max_header_bytes = 2048;
    let started = start(config).await;
    let url = format!("{}/health/live", started.url);

    let names: Vec<String> = (0..25).map(|i| format!("x-extra-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let (status, headers, body) = fetch(&url, &many).await;
    assert_eq!(status, 431);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: Value = serde_json::from_str(&body).expect("problem json");
    assert_eq!(problem["type"], "urn:bazaar:problem:headers-too-large");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 20")),
        "{problem}"
    );

    let big = "x".repeat(3000);
    let (status, _, body) = fetch(&url, &[("x-big", &big)]).await;
    assert_eq!(status, 431);
    assert!(body.contains("at most 2048"), "{body}");

    // Within the limits: served.
    let (status, _, _) = fetch(&url, &many[..10]).await;
    assert_eq!(status, 200);
}
