use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use serde_json::{Value, json};
use telemetry::{Application, Config, Settings};
use tokio_util::sync::CancellationToken;

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn(db: TestDatabase, settings: Settings) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    let app = Application::build(Config { chassis, settings })
        .await
        .expect("telemetry starts");
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    App {
        url,
        http: reqwest::Client::new(),
        shutdown,
        _db: db,
    }
}

/// Trace ids `n` repeated; span ids likewise.
fn trace_id(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn hex(n: u8, len: usize) -> String {
    format!("{n:02x}").repeat(len)
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    from_ms: u64,
    to_ms: u64,
    failed: bool,
) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_795_000_000_000_000_000 + from_ms * 1_000_000,
        end_time_unix_nano: 1_795_000_000_000_000_000 + to_ms * 1_000_000,
        status: failed.then(|| Status {
            message: "card declined".into(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}

fn export(service: &str, spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

impl App {
    async fn send(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/traces", self.url))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("answers")
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }
}

/// Two services' spans of one trace arrive in separate exports, children before the root;
/// the trace reads back whole, in order, summarized right.
async fn a_trace_is_assembled_from_separate_exports(db: TestDatabase) {
    let app = spawn(db, Settings::default()).await;
    let answer = app
        .send(export(
            "payments",
            vec![span(1, 3, Some(2), "POST /charges", 5, 9, true)],
        ))
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/x-protobuf");
    let decoded = ExportTraceServiceResponse::decode(answer.bytes().await.expect("body"))
        .expect("an OTLP answer");
    assert_eq!(decoded.partial_success, None);
    // Until its root arrives, a trace is named by the earliest span seen.
    let named = || async {
        let (_, list) = app.get("/v1/traces").await;
        (
            list[0]["root_service"].clone(),
            list[0]["root_name"].clone(),
        )
    };
    assert_eq!(named().await, (json!("payments"), json!("POST /charges")));
    app.send(export(
        "gateway",
        vec![span(1, 2, Some(1), "POST 127.0.0.1:7713", 1, 19, false)],
    ))
    .await;
    assert_eq!(
        named().await,
        (json!("gateway"), json!("POST 127.0.0.1:7713"))
    );
    app.send(export(
        "gateway",
        vec![span(1, 1, None, "POST /api/orders", 0, 20, false)],
    ))
    .await;
    // The same spans again (an exporter retrying) count once.
    app.send(export(
        "payments",
        vec![span(1, 3, Some(2), "POST /charges", 5, 9, true)],
    ))
    .await;

    let (status, trace) = app.get(&format!("/v1/traces/{}", hex(1, 16))).await;
    assert_eq!(status, 200, "{trace}");
    let names: Vec<&str> = trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["POST /api/orders", "POST 127.0.0.1:7713", "POST /charges"]
    );
    assert_eq!(trace["spans"][2]["service"], "payments");
    assert_eq!(trace["spans"][2]["parent_span_id"], hex(2, 8));
    assert_eq!(trace["spans"][2]["status"], "error");
    assert_eq!(trace["spans"][2]["status_message"], "card declined");

    let (status, list) = app.get("/v1/traces").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let summary = &list[0];
    assert_eq!(summary["trace_id"], hex(1, 16));
    assert_eq!(summary["root_service"], "gateway");
    assert_eq!(summary["root_name"], "POST /api/orders");
    assert_eq!(summary["duration_nanos"], 20_000_000);
    assert_eq!(summary["spans"], 3);
    assert_eq!(summary["errors"], 1);
    assert_eq!(
        summary["services"],
        serde_json::json!(["gateway", "payments"])
    );
}

/// An export larger than one statement's worth of rows is kept whole, counted right.
async fn a_large_export_is_kept_whole(db: TestDatabase) {
    let app = spawn(db, Settings::default()).await;
    // 25 traces of 30 spans: 750 spans, more than three statements' worth.
    let mut spans = Vec::new();
    for trace in 1..=25u8 {
        spans.push(span(trace, 1, None, "GET /", 0, 100, false));
        for id in 2..=30u8 {
            spans.push(span(trace, id, Some(1), "child", 1, 2, id == 30));
        }
    }
    let answer = app.send(export("gateway", spans)).await;
    assert_eq!(answer.status(), 200);
    let (_, list) = app.get("/v1/traces?limit=100").await;
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 25);
    for summary in list {
        assert_eq!(summary["spans"], 30, "{summary}");
        assert_eq!(summary["errors"], 1, "{summary}");
    }
    let (_, trace) = app.get(&format!("/v1/traces/{}", hex(25, 16))).await;
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(30));
}

/// Slowest first, failed only, one service's only.
async fn lists_order_and_filter(db: TestDatabase) {
    let app = spawn(db, Settings::default()).await;
    app.send(export(
        "gateway",
        vec![span(1, 1, None, "GET /a", 0, 5, false)],
    ))
    .await;
    app.send(export(
        "gateway",
        vec![span(2, 1, None, "GET /b", 0, 50, false)],
    ))
    .await;
    app.send(export(
        "orders",
        vec![span(3, 1, None, "GET /c", 0, 10, true)],
    ))
    .await;
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .expect("a list")
            .iter()
            .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, slowest) = app.get("/v1/traces?order=slowest&limit=2").await;
    assert_eq!(ids(&slowest), [hex(2, 16), hex(3, 16)]);
    let (_, failed) = app.get("/v1/traces?errors=true").await;
    assert_eq!(ids(&failed), [hex(3, 16)]);
    let (_, of_orders) = app.get("/v1/traces?service=orders").await;
    assert_eq!(ids(&of_orders), [hex(3, 16)]);
}

/// Bad requests are refused with a problem naming what is wrong, and nothing is kept.
async fn bad_input_is_refused(db: TestDatabase) {
    let app = spawn(db, Settings::default()).await;
    let json = app
        .http
        .post(format!("{}/v1/traces", app.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(json.status(), 415);
    let problem: Value = json.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("application/x-protobuf")
    );
    let garbage = app.send(vec![0xff, 0xff, 0xff]).await;
    assert_eq!(garbage.status(), 400);
    // A span with no trace id is rejected, the rest kept: OTLP's partial success.
    let mut broken = span(9, 1, None, "broken", 0, 1, false);
    broken.trace_id = vec![];
    let partial = app
        .send(export(
            "gateway",
            vec![broken, span(8, 1, None, "kept", 0, 1, false)],
        ))
        .await;
    assert_eq!(partial.status(), 200);
    let decoded = ExportTraceServiceResponse::decode(partial.bytes().await.expect("body"))
        .expect("an OTLP answer");
    assert_eq!(decoded.partial_success.map(|p| p.rejected_spans), Some(1));
    let (status, list) = app.get("/v1/traces").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    let (status, problem) = app.get("/v1/traces/not-a-trace").await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = app.get(&format!("/v1/traces/{}", hex(7, 16))).await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not sampled")
    );
    for query in ["order=fastest", "limit=0", "limit=5000"] {
        let (status, problem) = app.get(&format!("/v1/traces?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
}

/// More traces than `max_traces`: the oldest go, within a pruning period or two.
async fn the_store_keeps_its_bounds(db: TestDatabase) {
    let app = spawn(
        db,
        Settings {
            max_traces: 3,
            prune_every: Duration::from_millis(50),
            ..Settings::default()
        },
    )
    .await;
    for n in 1..=6u8 {
        app.send(export(
            "gateway",
            vec![
                span(n, 1, None, "GET /", 0, 2, false),
                span(n, 2, Some(1), "GET /child", 0, 1, false),
            ],
        ))
        .await;
        // Arrival order is what the bound goes by; keep arrivals a millisecond apart.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, list) = app.get("/v1/traces?limit=100").await;
        let kept: Vec<String> = list
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
            .collect();
        if kept.len() <= 3 {
            assert_eq!(kept, [hex(6, 16), hex(5, 16), hex(4, 16)]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {kept:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The spans of pruned traces go with them.
    let (status, _) = app.get(&format!("/v1/traces/{}", hex(1, 16))).await;
    assert_eq!(status, 404);
    let (status, trace) = app.get(&format!("/v1/traces/{}", hex(6, 16))).await;
    assert_eq!(status, 200);
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(2));
}

/// Traces older than `max_age` go even below the count.
async fn old_traces_expire(db: TestDatabase) {
    let app = spawn(
        db,
        Settings {
            max_age: Duration::from_millis(300),
            prune_every: Duration::from_millis(50),
            ..Settings::default()
        },
    )
    .await;
    app.send(export(
        "gateway",
        vec![span(1, 1, None, "GET /", 0, 2, false)],
    ))
    .await;
    let (_, list) = app.get("/v1/traces").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, list) = app.get("/v1/traces").await;
        if list.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every service exports on its own schedule, so exports touching the same traces arrive at
/// once; on PostgreSQL their transactions contend for the same summary rows. Every export
/// lands, and each trace counts every span once.
async fn concurrent_exports_of_shared_traces_all_land(db: TestDatabase) {
    let app = std::sync::Arc::new(spawn(db, Settings::default()).await);
    let traces: Vec<u8> = (1..=6).collect();
    let mut exports = Vec::new();
    for service in 0..8u8 {
        let app = std::sync::Arc::clone(&app);
        // Half the exports name the traces in the opposite order.
        let mut order = traces.clone();
        if service % 2 == 1 {
            order.reverse();
        }
        exports.push(tokio::spawn(async move {
            let spans = order
                .iter()
                .map(|&t| span(t, 10 + service, Some(1), "work", 1, 2, false))
                .collect();
            app.send(export(&format!("service-{service}"), spans))
                .await
                .status()
                .as_u16()
        }));
    }
    for export in exports {
        assert_eq!(export.await.expect("joined"), 200, "an export was refused");
    }
    for t in traces {
        let (status, trace) = app.get(&format!("/v1/traces/{}", hex(t, 16))).await;
        assert_eq!(status, 200, "{trace}");
        assert_eq!(trace["spans"].as_array().map(Vec::len), Some(8), "{trace}");
    }
}

chassis::database_tests!(
    concurrent_exports_of_shared_traces_all_land,
    a_trace_is_assembled_from_separate_exports,
    a_large_export_is_kept_whole,
    lists_order_and_filter,
    bad_input_is_refused,
    the_store_keeps_its_bounds,
    old_traces_expire,
);
