//! What the tracing test binaries share: an OTLP collector, and a client of the `back` service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chassis::client::{ServiceClient, Transport};
use chassis::config::DiscoveryConfig;
use chassis::discovery::Discovery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Spans received, with the `service.name` of their resource.
pub(crate) type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP collector that keeps what it receives.
pub(crate) async fn collector() -> anyhow::Result<(SocketAddr, Received)> {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|State(received): State<Received>, body: Bytes| async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return http::StatusCode::BAD_REQUEST;
                };
                let mut spans = received.lock().unwrap_or_else(|e| e.into_inner());
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                    }
                }
                http::StatusCode::OK
            }),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, received))
}

/// The `front` service's client, `back` found at `back_url`, without retries.
pub(crate) fn client_of_back(
    discovery: &DiscoveryConfig,
    back_url: String,
    stop: &CancellationToken,
) -> ServiceClient {
    let mut discovery = discovery.clone();
    discovery
        .static_instances
        .insert("back".into(), vec![back_url]);
    discovery.retries = 0;
    ServiceClient::new(
        Discovery::new(&discovery, Transport::http(), stop),
        Transport::http(),
        &discovery,
        "front",
    )
}
