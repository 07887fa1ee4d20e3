//! The internal client against fake neighbours: retries only what is safe, deadlines, and the
//! request id travelling on.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chassis::client::{CallError, ServiceClient, Transport};
use chassis::config::{ChassisConfig, DiscoveryConfig};
use chassis::context::{self, RequestContext};
use chassis::discovery::Discovery;
use chassis::{Server, ServiceInfo};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(instances: Vec<String>) -> ServiceClient {
    let mut config = DiscoveryConfig {
        registry: None,
        call_timeout: Duration::from_millis(800),
        ..DiscoveryConfig::default()
    };
    config.static_instances.insert("stock".into(), instances);
    let discovery = Discovery::new(&config, Transport::http(), &CancellationToken::new());
    ServiceClient::new(discovery, Transport::http(), &config, "tests")
}

async fn failing() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    server
}

async fn working() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string("made"))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn idempotent_calls_move_to_another_instance_on_503() {
    let (bad, good) = (failing().await, working().await);
    let client = client(vec![bad.uri(), good.uri()]);
    for _ in 0..10 {
        let response = client
            .get("stock", "/items")
            .send()
            .await
            .expect("succeeds")
            .error_for_status()
            .expect("2xx");
        assert_eq!(response.body, "ok");
    }
}

#[tokio::test]
async fn plain_posts_are_never_repeated_but_keyed_ones_are() {
    let (bad, good) = (failing().await, working().await);
    let client = client(vec![bad.uri(), good.uri()]);
    let mut refused = 0;
    for _ in 0..20 {
        match client
            .post("stock", "/reservations")
            .send()
            .await
            .expect("answers")
            .error_for_status()
        {
            Ok(_) => {}
            Err(CallError::Status { status, .. }) => {
                assert_eq!(status, 503);
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        refused > 0,
        "some POSTs reached the failing instance and were not retried"
    );
    let bad_posts = bad
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(bad_posts, refused, "each failed POST was sent exactly once");

    for _ in 0..10 {
        let response = client
            .post("stock", "/reservations")
            .idempotency_key("saga-1:reserve")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status, 201, "a keyed POST is retried elsewhere");
    }
}

#[tokio::test]
async fn a_dead_instance_costs_a_retry_not_an_error() {
    let good = working().await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let client = client(vec![dead, good.uri()]);
    for _ in 0..10 {
        let response = client
            .post("stock", "/reservations")
            .send()
            .await
            .expect("succeeds");
        assert_eq!(
            response.status, 201,
            "refused connections are safe to retry whatever the method"
        );
    }
}

#[tokio::test]
async fn the_deadline_covers_the_whole_call() {
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let client = client(vec![slow.uri()]);
    let started = Instant::now();
    let error = client
        .get("stock", "/items")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("times out");
    assert!(matches!(error, CallError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_request_id_and_trace_travel_with_every_call() {
    // This process records no spans, so the caller's trace position passes through as it is.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let neighbour = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("x-request-id", "checkout-123"))
        .and(header("traceparent", traceparent))
        .and(header("user-agent", "bazaar-tests"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&neighbour)
        .await;
    let client = client(vec![neighbour.uri()]);
    let context = RequestContext {
        request_id: "checkout-123".into(),
        path: "/checkout".into(),
        trace: chassis::trace::parse_traceparent(traceparent),
    };
    let response = context::scope(context, client.get("stock", "/items").send())
        .await
        .expect("answers");
    assert_eq!(response.status, 200);
    neighbour.verify().await;
}

#[tokio::test]
async fn a_chassis_server_forwards_its_request_id_to_the_services_it_calls() {
    // An upstream that answers with the request id it got, behind a server that calls it.
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("x-request-id", "edge-42"))
        .respond_with(ResponseTemplate::new(200).set_body_string("seen"))
        .mount(&upstream)
        .await;
    let caller = client(vec![upstream.uri()]);
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let server = Server::bind(ServiceInfo::new("front", "1", &config), &config)
        .await
        .expect("binds");
    let url = server.url().to_owned();
    let app = Router::new().route(
        "/front",
        get(move || {
            let caller = caller.clone();
            async move {
                match caller.get("stock", "/items").send().await {
                    Ok(response) => String::from_utf8_lossy(&response.body).into_owned(),
                    Err(error) => error.to_string(),
                }
            }
        }),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(app, shutdown.clone()));
    let request = http::Request::get(format!("{url}/front"))
        .header("x-request-id", "edge-42")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = Transport::http().send(request).await.expect("answers");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "seen");
    shutdown.cancel();
}
