//! Distributed tracing through real servers: one request crossing two chassis servers is one
//! trace in the right parent/child order, exported over OTLP/HTTP to a collector on port 0.
//!
//! Its own test binary: tracing is process-wide, installed once.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::{ChassisConfig, LogConfig, LogFormat};
use chassis::trace::TraceConfig;
use chassis::{HttpError, Server, ServiceInfo};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use tokio_util::sync::CancellationToken;

fn config() -> ChassisConfig {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{:?}", v.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_across_two_services_is_one_trace() -> anyhow::Result<()> {
    let (collector, received) = common::collector().await?;
    let config = config();
    chassis::telemetry::init(
        &ServiceInfo::new("front", "1.0.0", &config),
        &LogConfig {
            format: LogFormat::Text,
            level: "warn".into(),
        },
        &TraceConfig {
            endpoint: Some(format!("http://{collector}/v1/traces")),
            sample_ratio: 1.0,
            max_new_per_second: 0,
            // As every service but the gateway under `bazaar up`: continue traces, start none.
            start_traces: false,
        },
        chassis::client::Transport::http(),
    )?;
    assert!(chassis::trace::enabled());

    // back: fails with a problem.
    let back = Server::bind(ServiceInfo::new("back", "1.0.0", &config), &config).await?;
    let back_url = back.url().to_owned();
    let stop = CancellationToken::new();
    tokio::spawn(back.serve(
        Router::new().route(
            "/leaf",
            get(|| async { HttpError::internal("the leaf broke") }),
        ),
        stop.clone(),
    ));
    // front: calls back and hands its answer on.
    let client = common::client_of_back(&config.discovery, back_url, &stop);
    let front = Server::bind(ServiceInfo::new("front", "1.0.0", &config), &config).await?;
    let front_url = front.url().to_owned();
    tokio::spawn(front.serve(
        Router::new().route(
            "/front",
            get(move || {
                let client = client.clone();
                async move {
                    match client.get("back", "/leaf").send().await {
                        Ok(answer) => (answer.status, answer.body),
                        Err(error) => (
                            http::StatusCode::BAD_GATEWAY,
                            Bytes::from(error.to_string()),
                        ),
                    }
                }
            }),
        ),
        stop.clone(),
    ));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let send = |traceparent: Option<String>| {
        let url = format!("{front_url}/front");
        async move {
            let mut request = http::Request::get(url);
            if let Some(traceparent) = traceparent {
                request = request.header("traceparent", traceparent);
            }
            let request = request.body(axum::body::Body::empty())?;
            let response = Transport::http().send(request).await?;
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&body)?)
        }
    };
    // The problem from two hops down names the caller's trace.
    let problem = send(Some(format!("00-{trace_id}-{caller_span}-01"))).await?;
    assert_eq!(problem["trace_id"], trace_id, "{problem}");
    assert_eq!(problem["status"], 500, "{problem}");
    // A caller that did not sample: the trace id travels on, nothing is recorded.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let problem = send(Some(format!("00-{unsampled}-b7ad6b7169203331-00"))).await?;
    assert_eq!(problem["trace_id"], unsampled, "{problem}");
    // No trace at all: this process does not start one.
    let problem = send(None).await?;
    assert!(problem.get("trace_id").is_none(), "{problem}");
    assert_eq!(problem["status"], 500, "{problem}");

    chassis::trace::shutdown().await;
    stop.cancel();
    let spans = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let of_trace: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| hex(&span.trace_id) == trace_id)
        .collect();
    assert!(
        spans
            .iter()
            .all(|(_, span)| hex(&span.trace_id) == trace_id),
        "spans outside the sampled trace were recorded: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let find = |kind: SpanKind, name: &str| {
        of_trace
            .iter()
            .copied()
            .find(|s| s.kind == kind as i32 && s.name == name)
            .ok_or_else(|| {
                let names: Vec<_> = of_trace.iter().map(|s| (&s.name, s.kind)).collect();
                anyhow::anyhow!("no {kind:?} span {name:?} among {names:?}")
            })
    };
    let front_server = find(SpanKind::Server, "GET /front")?;
    let call = of_trace
        .iter()
        .copied()
        .find(|s| s.kind == SpanKind::Client as i32)
        .ok_or_else(|| anyhow::anyhow!("no client span"))?;
    let back_server = find(SpanKind::Server, "GET /leaf")?;
    // Named after the service called, not the instance's address.
    assert_eq!(call.name, "GET back");
    assert_eq!(
        attribute(back_server, "http.route").as_deref(),
        Some("Some(StringValue(\"/leaf\"))")
    );
    assert_eq!(hex(&front_server.parent_span_id), caller_span);
    assert_eq!(call.parent_span_id, front_server.span_id);
    assert_eq!(back_server.parent_span_id, call.span_id);
    for span in [front_server, call, back_server] {
        let status = span.status.as_ref().map(|s| s.code);
        assert_eq!(
            status,
            Some(StatusCode::Error as i32),
            "{} is not an error",
            span.name
        );
        assert_eq!(
            attribute(span, "http.response.status_code").as_deref(),
            Some("Some(IntValue(500))"),
            "{}",
            span.name
        );
    }
    assert!(back_server.start_time_unix_nano >= call.start_time_unix_nano);
    assert!(back_server.end_time_unix_nano <= call.end_time_unix_nano);
    Ok(())
}
