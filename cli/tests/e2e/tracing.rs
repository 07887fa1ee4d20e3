//! Distributed tracing through the whole system: one checkout is one trace, from the gateway
//! through orders, the catalog, payments, shipping and the event consumers; `bazaar trace`
//! finds it from the id an order or an error carries.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::checkout::{CARD_DECLINED, place, register_card, settled, shopper};
use crate::system::{BIN, Running};

/// The trace `trace_id` once it has at least the spans `until` wants, asked of the telemetry
/// service (spans arrive in batches, a second or so after they end).
async fn trace(running: &Running, trace_id: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let telemetry = running.url_of("telemetry");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let response = running
            .http
            .get(format!("{telemetry}/v1/traces/{trace_id}"))
            .send()
            .await
            .expect("telemetry answers");
        if response.status() == 200 {
            let trace: Value = response.json().await.expect("json");
            let spans = trace["spans"].as_array().cloned().unwrap_or_default();
            if until(&spans) {
                return spans;
            }
            seen = spans;
        }
        let names: std::collections::BTreeSet<String> = seen
            .iter()
            .map(|s| format!("{} {}", s["service"], s["name"]))
            .collect();
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} never completed; it has {names:#?}\n{}",
            running.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find<'a>(spans: &'a [Value], service: &str, name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["service"] == service && s["name"] == name)
        .unwrap_or_else(|| {
            let all: Vec<String> = spans
                .iter()
                .map(|s| format!("{} {}", s["service"], s["name"]))
                .collect();
            panic!("no {service} span {name:?} in {all:#?}")
        })
}

fn parent<'a>(spans: &'a [Value], child: &Value) -> &'a Value {
    spans
        .iter()
        .find(|s| s["span_id"] == child["parent_span_id"])
        .unwrap_or_else(|| panic!("the parent of {} is not in the trace", child["name"]))
}

#[tokio::test]
async fn one_checkout_is_one_trace_through_every_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    let ada = shopper(&running, "ada@example.com").await;

    // The checkout: its order says which trace it runs in.
    let id = place(&running, &ada.token, &[("MUG-STONE", 1)], &ada.card).await;
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let trace_id = order["checkout"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace id on {order}"))
        .to_owned();
    // Each process exports on its own schedule: wait for every one's part.
    let consumed = |spans: &[Value]| {
        let services: std::collections::BTreeSet<&str> =
            spans.iter().filter_map(|s| s["service"].as_str()).collect();
        services.len() == 8
            && ["notifications", "recommendations"].iter().all(|service| {
                spans.iter().any(|s| {
                    s["service"] == *service && s["name"] == "orders.order.confirmed process"
                })
            })
            // The saga's own span ends after its steps, and may leave in a later batch.
            && spans
                .iter()
                .any(|s| s["service"] == "orders" && s["name"] == "checkout saga")
    };
    let spans = trace(&running, &trace_id, consumed).await;

    let services: std::collections::BTreeSet<&str> =
        spans.iter().filter_map(|s| s["service"].as_str()).collect();
    for service in [
        "gateway",
        "orders",
        "catalog",
        "payments",
        "shipping",
        "notifications",
        "recommendations",
        "users",
    ] {
        assert!(
            services.contains(service),
            "no {service} span: {services:?}"
        );
    }
    // gateway → orders: the request.
    let edge = find(&spans, "gateway", "POST /api/orders");
    assert!(
        edge.get("parent_span_id").is_none(),
        "the gateway starts the trace"
    );
    let placed = find(&spans, "orders", "POST /orders");
    let hop = parent(&spans, placed);
    assert_eq!(hop["kind"], "client");
    assert_eq!(hop["service"], "gateway");
    assert_eq!(parent(&spans, hop)["span_id"], edge["span_id"]);
    // orders → payments: a saga step, after the request, in the same trace.
    let saga = find(&spans, "orders", "checkout saga");
    assert_eq!(parent(&spans, saga)["span_id"], placed["span_id"]);
    let charge = find(&spans, "payments", "POST /charges");
    let step = parent(&spans, parent(&spans, charge));
    assert_eq!(step["name"], "checkout charge");
    assert_eq!(parent(&spans, step)["span_id"], saga["span_id"]);
    find(&spans, "catalog", "POST /reservations");
    // orders → users over gRPC, inside the request: who the customer is.
    let lookup = find(&spans, "users", "POST /bazaar.users.v1.Users/GetUser");
    let call = parent(&spans, lookup);
    assert_eq!(
        (&call["service"], &call["kind"]),
        (&json!("orders"), &json!("client"))
    );
    assert_eq!(parent(&spans, call)["span_id"], placed["span_id"]);
    assert_eq!(order["customer"]["email"], "ada@example.com", "{order}");
    find(&spans, "shipping", "POST /shipments");
    // orders → notifications: the event hop, a child of the publish and linked to it.
    let email = spans
        .iter()
        .find(|s| s["service"] == "notifications" && s["name"] == "orders.order.confirmed process")
        .expect("consumed");
    let publish = parent(&spans, email);
    assert_eq!(publish["name"], "orders.order.confirmed publish");
    assert_eq!(publish["kind"], "producer");
    assert_eq!(email["kind"], "consumer");
    assert_eq!(
        email["links"],
        json!([{"trace_id": trace_id, "span_id": publish["span_id"]}])
    );
    // Everything starts after the request that caused it.
    for span in &spans {
        assert!(span["start_unix_nanos"].as_i64() >= edge["start_unix_nanos"].as_i64());
    }

    // A declined card: the trace shows the step that failed, and why.
    let declined = register_card(&running, &ada.token, CARD_DECLINED).await;
    let id = place(&running, &ada.token, &[("MUG-STONE", 1)], &declined).await;
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    let trace_id = order["checkout"]["trace_id"]
        .as_str()
        .expect("trace id")
        .to_owned();
    let spans = trace(&running, &trace_id, |spans| {
        spans.iter().any(|s| s["name"] == "checkout release_stock")
    })
    .await;
    let refused = find(&spans, "orders", "checkout charge");
    assert_eq!(refused["status"], "error", "{refused}");
    assert!(
        refused["status_message"]
            .as_str()
            .unwrap_or("")
            .contains("declined"),
        "{refused}"
    );
    let drawn = Command::new(BIN)
        .args(["trace", &trace_id, "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("bazaar trace runs");
    let text = String::from_utf8_lossy(&drawn.stdout);
    assert!(
        drawn.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    assert!(text.contains(&format!("trace {trace_id}")), "{text}");
    assert!(
        text.contains("checkout charge") && text.contains("! "),
        "{text}"
    );
    assert!(text.contains("declined"), "{text}");

    // An error answer names its trace; the lists find the failed one.
    let missing = running
        .get("/api/orders/no-such-order", Some(&ada.token))
        .await;
    assert_eq!(missing.status(), 404);
    let problem: Value = missing.json().await.expect("problem");
    let error_trace = problem["trace_id"].as_str().expect("a trace id").to_owned();
    trace(&running, &error_trace, |spans| {
        spans.iter().any(|s| s["service"] == "orders")
    })
    .await;
    // The log lines of exactly that request, from every service it reached.
    let logged = Command::new(BIN)
        .args(["logs", "--json", "--trace", &error_trace, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("bazaar logs runs");
    assert!(logged.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&logged.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let services: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l["service"].as_str()).collect();
    assert!(
        services.contains("gateway") && services.contains("orders"),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l["trace_id"] == error_trace.as_str()));
    let listed = Command::new(BIN)
        .args(["trace", "--errors", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("bazaar trace runs");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&trace_id),
        "the declined checkout is listed:\n{text}"
    );

    // Traces begin where work enters the system: the workers' polls of their tables (due
    // sagas, due emails, due shipments, ten a second together) and the services' seeding
    // start none, so every trace kept starts at the gateway. A trace can be listed under a
    // later span for a moment, until the gateway's batch of spans arrives (each process
    // exports its own, every second); polls would keep new ones coming.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let recent: Value = running
            .http
            .get(format!(
                "{}/v1/traces?order=recent&limit=500",
                running.url_of("telemetry")
            ))
            .send()
            .await
            .expect("telemetry answers")
            .json()
            .await
            .expect("json");
        let recent = recent.as_array().expect("a list of traces");
        assert!(recent.len() >= 3, "{recent:#?}");
        let elsewhere: Vec<&Value> = recent
            .iter()
            .filter(|t| t["root_service"] != "gateway")
            .collect();
        if elsewhere.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traces not begun by a request: {elsewhere:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The live table: every service, with its rate, errors and latency.
    let top = Command::new(BIN)
        .args(["top", "--once", "--every", "500ms", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("bazaar top runs");
    let table = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(
        table.starts_with("service") && table.contains("p99"),
        "{table}"
    );
    for service in ["gateway", "orders", "catalog", "payments", "telemetry"] {
        assert!(
            table.lines().any(|l| l.starts_with(service)),
            "no {service} row:\n{table}"
        );
    }

    // Metric names are stable and documented: every one the system exposes is in the
    // README's table, and so is every one the Grafana dashboard draws.
    let family = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name)
            .to_owned()
    };
    let names_in = |text: &str| -> std::collections::BTreeSet<String> {
        text.match_indices("bazaar_")
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                family(&rest[..end])
            })
            .collect()
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let table = &readme[readme.find("## Metrics").expect("a Metrics section")..];
    let table = &table[..table.find("\n## ").unwrap_or(table.len())];
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| `bazaar_"))
        .flat_map(|l| names_in(l.split(" | ").next().unwrap_or("")))
        .collect();
    let mut exposed = std::collections::BTreeSet::new();
    let state = running.run_state().expect("run.json");
    for instance in state["instances"].as_array().expect("instances") {
        let url = format!("{}/metrics", instance["url"].as_str().expect("url"));
        let text = running
            .http
            .get(&url)
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("text");
        for line in text.lines() {
            let Some(declared) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut parts = declared.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                exposed.insert(if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                });
            }
        }
    }
    for name in [
        "bazaar_http_server_requests_total",
        "bazaar_orders_sagas_finished_total",
        "bazaar_db_pool_connections_in_use",
    ] {
        assert!(
            exposed.contains(name),
            "{name} is not exposed: {exposed:#?}"
        );
    }
    for name in &exposed {
        assert!(
            documented.contains(name),
            "{name} is exposed but not in the README's Metrics table"
        );
    }
    let dashboard =
        std::fs::read_to_string(root.join("deploy/grafana-dashboard.json")).expect("the dashboard");
    let drawn = names_in(&dashboard);
    assert!(drawn.len() > 15, "{drawn:?}");
    for name in &drawn {
        assert!(
            documented.contains(name),
            "the dashboard draws {name}, which the README does not list"
        );
    }

    let bad = Command::new(BIN)
        .args(["trace", "not-a-trace", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("bazaar trace runs");
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"not-a-trace\""));

    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}
