//! The operations console: a real registry on port 0 listing mock instances (each a mock
//! server with its own `/metrics`, traces or dead letters), the gateway's identity headers set
//! as the gateway would set them.

use std::time::{Duration, Instant};

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{App, location, spawn_with_registry};

const ADMIN: [(&str, &str); 2] = [
    ("x-bazaar-user-id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    ("x-bazaar-user-roles", "customer,admin"),
];
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A registry for one test; stops when dropped.
struct Registry {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Registry {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDatabase::sqlite();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        let settings = registry::Settings {
            check_interval: Duration::from_millis(100),
            ..registry::Settings::default()
        };
        let app = registry::Application::build(registry::Config { chassis, settings })
            .await
            .expect("the registry starts");
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            _db: db,
        }
    }

    /// Registers `id`, a mock server answering its health checks, and waits until it passes.
    async fn register(&self, id: &str, service: &str, version: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/health/ready"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ready"))
            .mount(&server)
            .await;
        let registration = json!({
            "service": service, "address": server.uri(), "version": version,
            "health_url": format!("{}/health/ready", server.uri()),
        });
        let answer = self
            .http
            .put(format!("{}/v1/instances/{id}", self.url))
            .json(&registration)
            .send()
            .await
            .expect("the registry answers");
        assert!(answer.status().is_success(), "{}", answer.status());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed: Value = self
                .http
                .get(format!("{}/v1/instances", self.url))
                .send()
                .await
                .expect("answers")
                .json()
                .await
                .expect("json");
            let passing = listed["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["id"] == id && i["status"] == "passing");
            if passing {
                return server;
            }
            assert!(Instant::now() < deadline, "{id} never passed: {listed}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn put_kv(&self, key: &str, value: &Value) {
        let answer = self
            .http
            .put(format!("{}/v1/kv/{key}", self.url))
            .body(value.to_string())
            .send()
            .await
            .expect("the registry answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }
}

/// Prometheus text of `ok` and `failed` requests, all under 10 ms.
fn metrics(ok: u32, failed: u32) -> String {
    let all = ok + failed;
    format!(
        "# TYPE bazaar_http_server_requests_total counter\n\
         bazaar_http_server_requests_total{{method=\"GET\",route=\"/products\",status=\"200\"}} {ok}\n\
         bazaar_http_server_requests_total{{method=\"GET\",route=\"/products\",status=\"503\"}} {failed}\n\
         bazaar_http_server_requests_total{{method=\"GET\",route=\"/metrics\",status=\"200\"}} 7\n\
         bazaar_http_server_request_duration_seconds_bucket{{method=\"GET\",route=\"/products\",le=\"0.01\"}} {all}\n\
         bazaar_http_server_request_duration_seconds_bucket{{method=\"GET\",route=\"/products\",le=\"+Inf\"}} {all}\n"
    )
}

/// `/metrics` answers `first` once, then `then`.
async fn metrics_then(server: &MockServer, first: String, then: String) {
    Mock::given(method("GET"))
        .and(path("/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_string(first))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_string(then))
        .with_priority(2)
        .mount(server)
        .await;
}

async fn get_as(app: &App, at: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.get(format!("{}{at}", app.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("answers")
}

async fn post_as(app: &App, at: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.post(format!("{}{at}", app.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("answers")
}

fn summary(root: &str, millis: i64) -> Value {
    json!({"trace_id": TRACE_ID, "root_service": "gateway", "root_name": root,
        "start_unix_nanos": 1_764_000_000_000_000_000_i64, "duration_nanos": millis * 1_000_000,
        "spans": 12, "errors": 0, "services": ["gateway", "orders"]})
}

#[tokio::test]
async fn the_console_is_for_administrators_only() {
    let app = crate::spawn().await;
    let anonymous = get_as(&app, "/console", &[]).await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(location(&anonymous), "/login?next=%2Fconsole");

    let customer = get_as(
        &app,
        "/console",
        &[ADMIN[0], ("x-bazaar-user-roles", "customer")],
    )
    .await;
    assert_eq!(customer.status(), 403);
    assert!(
        customer
            .text()
            .await
            .expect("html")
            .contains("The operations console is for administrators")
    );
    // Signed in a moment ago, yet the gateway passed no identity: its route does not read
    // the cookie, and sending the visitor to log in again would only loop.
    let cookie = format!("bazaar_access={}", crate::token(&["customer", "admin"]));
    let misrouted = get_as(&app, "/console", &[("cookie", cookie.as_str())]).await;
    assert_eq!(misrouted.status(), 401);
    assert!(
        misrouted
            .text()
            .await
            .expect("html")
            .contains("session_cookie")
    );
    let replay = post_as(&app, "/console/dead-letters/notifications/dl-1/replay", &[]).await;
    assert_eq!(replay.status(), 303, "nothing is replayed for a stranger");
    assert!(location(&replay).starts_with("/login"));
}

#[tokio::test]
async fn the_console_shows_services_a_canary_faults_sagas_traces_and_dead_letters() {
    let registry = Registry::start().await;
    let stable = registry.register("catalog-1", "catalog", "1.0.0").await;
    let candidate = registry
        .register("catalog-2.0.0-1", "catalog", "2.0.0")
        .await;
    let telemetry = registry.register("telemetry-1", "telemetry", "1.0.0").await;
    let notifications = registry
        .register("notifications-1", "notifications", "1.0.0")
        .await;
    metrics_then(&stable, metrics(100, 0), metrics(160, 0)).await;
    metrics_then(&candidate, metrics(0, 0), metrics(15, 5)).await;
    registry
        .put_kv(
            "traffic/catalog",
            &json!({"stable": "1.0.0", "candidate": "2.0.0", "weight": 25, "sticky": "none"}),
        )
        .await;
    registry
        .put_kv(
            "faults/slow-catalog",
            &json!({"service": "catalog", "version": "2.0.0", "delay_ms": 300, "delay_rate": 0.5}),
        )
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/traces"))
        .and(query_param("order", "recent"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([summary("GET /api/products", 4)])),
        )
        .mount(&telemetry)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/traces"))
        .and(query_param("order", "slowest"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([summary("POST /api/orders", 912)])),
        )
        .mount(&telemetry)
        .await;
    Mock::given(method("GET"))
        .and(path("/internal/dead-letters"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": [{
            "id": "dl-7", "consumer": "notifications",
            "event": {"id": "e1", "type": "order.confirmed", "source": "orders", "time": "2026-11-27T10:00:00Z", "data": {}},
            "error": "smtp: connection refused", "attempts": 5,
            "dead_at": "2026-11-27T10:00:05Z", "replayed_at": null
        }], "next_cursor": null})))
        .mount(&notifications)
        .await;
    let app = spawn_with_registry(Some(registry.url.clone())).await;
    app.mock_get(
        "/api/sagas",
        json!({"items": [{"order_id": "0190ffee-aaaa-7bbb-8ccc-000000000001", "status": "running",
            "step": "charge", "attempts": 2, "stuck": false, "last_error": "payments: 503"}]}),
    )
    .await;
    app.mock_get(
        "/api/orders",
        json!({"items": [{"id": "0190ffee-bbbb-7bbb-8ccc-000000000002", "status": "CANCELLED",
            "cancel_reason": "the card was declined", "total": {"amount_minor": 1800, "currency": "USD"},
            "created_at": "2026-11-27T10:01:02Z"}]}),
    )
    .await;

    let response = get_as(&app, "/console", &ADMIN).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.expect("html");
    // The map: every registered instance, the storefront itself included.
    for id in [
        "catalog-1",
        "catalog-2.0.0-1",
        "telemetry-1",
        "notifications-1",
    ] {
        assert!(html.contains(id), "{id} is on the map:\n{html}");
    }
    assert!(
        html.contains("<h4>web</h4>"),
        "the storefront registered itself"
    );
    assert!(html.contains("1.0.0, 2.0.0"), "catalog runs two versions");
    let version_row = html
        .split("<tr class=\"version\">")
        .find(|row| row.contains("catalog 2.0.0"))
        .expect("RED of the catalog's candidate in the table of every service");
    assert!(version_row.contains("25.0 %"), "{version_row}");
    assert!(
        html.contains("<h4>registry</h4>"),
        "the registry, which does not list itself, is on the map too"
    );
    // The canary, each version's own errors: the candidate failed 5 of its 20 requests.
    assert!(html.contains("catalog: canary of 2.0.0 at 25 %"), "{html}");
    let candidate_row = html
        .split("<tr>")
        .find(|row| row.contains("<th scope=\"row\">2.0.0</th>"))
        .expect("a row for the candidate");
    assert!(candidate_row.contains("candidate"), "{candidate_row}");
    assert!(candidate_row.contains("25.0 %"), "{candidate_row}");
    assert!(candidate_row.contains("10.0 ms"), "{candidate_row}");
    let stable_row = html
        .split("<tr>")
        .find(|row| row.contains("<th scope=\"row\">1.0.0</th>"))
        .expect("a row for the stable version");
    assert!(stable_row.contains("0.0 %"), "{stable_row}");
    // The fault, the saga, the order, the traces and the dead letter.
    assert!(html.contains("slow-catalog"), "{html}");
    assert!(html.contains("300 ms on 50 %"), "{html}");
    assert!(html.contains("payments: 503"));
    assert!(html.contains("the card was declined"));
    assert!(html.contains(&format!("href=\"/console/traces/{TRACE_ID}\"")));
    assert!(
        html.contains("gateway: POST &#x2f;api&#x2f;orders"),
        "{html}"
    );
    assert!(html.contains("912.0 ms"), "the slowest trace's time");
    assert!(html.contains("smtp: connection refused"));
    assert!(
        html.contains("action=\"/console/dead-letters/notifications/dl-7/replay\""),
        "{html}"
    );
    assert!(!html.contains("could not be"), "nothing failed: {html}");
}

#[tokio::test]
async fn a_dead_letter_is_replayed_and_a_failed_replay_says_why() {
    let registry = Registry::start().await;
    let notifications = registry
        .register("notifications-1", "notifications", "1.0.0")
        .await;
    Mock::given(method("POST"))
        .and(path("/internal/dead-letters/dl-1/replay"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dl-1"})))
        .expect(1)
        .mount(&notifications)
        .await;
    Mock::given(method("POST"))
        .and(path("/internal/dead-letters/dl-2/replay"))
        .respond_with(
            ResponseTemplate::new(409)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(json!({"type": "urn:bazaar:problem:replay-failed",
                    "title": "Replay failed", "status": 409,
                    "detail": "the handler failed again: smtp down"})),
        )
        .mount(&notifications)
        .await;
    let app = spawn_with_registry(Some(registry.url.clone())).await;

    let replayed = post_as(
        &app,
        "/console/dead-letters/notifications/dl-1/replay",
        &ADMIN,
    )
    .await;
    assert_eq!(replayed.status(), 303);
    assert_eq!(location(&replayed), "/console?replayed=dl-1#dead-letters");
    let failed = post_as(
        &app,
        "/console/dead-letters/notifications/dl-2/replay",
        &ADMIN,
    )
    .await;
    let to = location(&failed);
    assert!(to.starts_with("/console?failed="), "{to}");
    assert!(to.contains("smtp+down"), "the reason travels: {to}");

    app.mock_get("/api/sagas", json!({"items": []})).await;
    app.mock_get("/api/orders", json!({"items": []})).await;
    let notice = get_as(
        &app,
        "/console?failed=the%20handler%20failed%20again",
        &ADMIN,
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(notice.contains("The replay failed: the handler failed again"));

    let unknown = post_as(&app, "/console/dead-letters/nobody/dl-1/replay", &ADMIN).await;
    assert!(
        location(&unknown).contains("no+instance+of+nobody"),
        "{}",
        location(&unknown)
    );
}

#[tokio::test]
async fn a_trace_is_drawn_as_a_waterfall() {
    let registry = Registry::start().await;
    let telemetry = registry.register("telemetry-1", "telemetry", "1.0.0").await;
    let span = |id: &str,
                parent: Option<&str>,
                service: &str,
                start: i64,
                end: i64,
                status: &str| {
        json!({"trace_id": TRACE_ID, "span_id": id, "parent_span_id": parent, "service": service,
            "name": format!("{service} work"), "kind": "server", "start_unix_nanos": start * 1_000_000,
            "end_unix_nanos": end * 1_000_000, "status": status})
    };
    Mock::given(method("GET"))
        .and(path(format!("/v1/traces/{TRACE_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"trace_id": TRACE_ID, "spans": [
                span("a1a1a1a1a1a1a1a1", None, "gateway", 0, 40, "ok"),
                span("b2b2b2b2b2b2b2b2", Some("a1a1a1a1a1a1a1a1"), "orders", 10, 30, "error"),
            ]}),
        ))
        .mount(&telemetry)
        .await;
    let app = spawn_with_registry(Some(registry.url.clone())).await;

    let page = get_as(&app, &format!("/console/traces/{TRACE_ID}"), &ADMIN).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("2 spans over 40.0 ms"), "{html}");
    assert!(html.contains("gateway work") && html.contains("orders work"));
    assert!(
        html.contains("margin-left: 25.0%; width: 50.0%"),
        "the child sits a quarter in, half as long: {html}"
    );
    assert!(
        html.contains("class=\"bar failed\""),
        "the failed span is marked"
    );

    let missing = get_as(
        &app,
        "/console/traces/0000000000000000000000000000000f",
        &ADMIN,
    )
    .await;
    assert_eq!(missing.status(), 404);
    let malformed = get_as(&app, "/console/traces/not-a-trace", &ADMIN).await;
    assert_eq!(malformed.status(), 404);
}
