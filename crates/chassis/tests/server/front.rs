//! A front: requests a service answers ahead of its router, still inside the chassis's
//! middleware (request id, metrics, problem bodies for panics), never for the chassis's paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::ChassisConfig;
use chassis::server::front::Front;
use chassis::server::middleware::RouteLabel;
use chassis::{Server, ServiceInfo};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;

/// Answers `front saw <path> from <peer>`, labelled `front`; panics on `/front/panic`.
fn front() -> Front {
    let service = tower::service_fn(|request: Request| async move {
        let path = request.uri().path().to_owned();
        if path == "/front/panic" {
            panic!("the front broke");
        }
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string())
            .unwrap_or_default();
        let mut response = format!("front saw {path} from {peer}").into_response();
        response.extensions_mut().insert(RouteLabel("front".into()));
        Ok::<Response, Infallible>(response)
    });
    Front {
        takes: Arc::new(|request: &Request| request.uri().path() != "/mine"),
        service: BoxCloneSyncService::new(service),
    }
}

async fn get_text(url: &str) -> (u16, http::HeaderMap, String) {
    let request = http::Request::get(url)
        .body(Body::empty())
        .expect("request");
    let response = Transport::http().send(request).await.expect("answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn a_front_takes_its_requests_inside_the_middleware_and_leaves_the_chassis_its_paths() {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let info = ServiceInfo::new("edge", "1.0.0", &config);
    let server = Server::bind(info, &config)
        .await
        .expect("binds")
        .with_front(front());
    let url = server.url().to_owned();
    let app = Router::new().route("/mine", get(|| async { "the router's" }));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(app, shutdown.clone()));
    assert!(
        chassis::health::wait_until_ready(&Transport::http(), &url, Some(Duration::from_secs(5)))
            .await,
        "the chassis answers its health path, not the front"
    );

    let (status, headers, body) = get_text(&format!("{url}/api/things")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "front saw /api/things from 127.0.0.1")
    );
    assert!(
        headers.contains_key("x-request-id"),
        "the front's answers carry a request id: {headers:?}"
    );

    let (status, _, body) = get_text(&format!("{url}/mine")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "the router's"),
        "a path the front leaves"
    );

    let (status, headers, body) = get_text(&format!("{url}/front/panic")).await;
    assert_eq!(status, 500, "a panic in the front is a 500: {body}");
    assert!(
        headers
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json")),
        "with a problem body: {headers:?}"
    );
    assert!(
        !body.contains("the front broke"),
        "the panic message stays in the log: {body}"
    );

    let (status, _, metrics) = get_text(&format!("{url}/metrics")).await;
    assert_eq!(status, 200, "the chassis keeps /metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("bazaar_http_server_requests_total")
                && line.contains("route=\"front\"")
                && line.contains("status=\"200\"")),
        "the front's requests are counted under their label:\n{metrics}"
    );

    shutdown.cancel();
    task.await.expect("joins").expect("stops cleanly");
}
