//! The request middleware every Bazaar process runs, in one place so its order is plain:
//!
//! 1. take the incoming `x-request-id` if it is well-formed, or make one (the edge is wherever a
//!    request first enters Bazaar), and echo it on the response;
//! 2. open the request span (`request_id`, `method`, `route`; a server span of the caller's
//!    trace, [`crate::trace`]) and the request context;
//! 3. refuse requests with more headers than `http.max_headers`, or more header bytes than
//!    `http.max_header_bytes` (431);
//! 4. hold the handler to `http.request_timeout` (503 when it overruns), unless the app keeps
//!    deadlines of its own ([`crate::server::Server::with_own_deadlines`]);
//! 5. give any bare error response from a lower layer (404, 405, 413) a problem body (a page
//!    a service drew, in HTML, stays);
//! 6. record RED metrics and write the access log line (with the trace id).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use contracts::headers::{PROBLEM_JSON, REQUEST_ID};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::HeaderName;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use tracing::Instrument;

use crate::config::HttpConfig;
use crate::context::{self, RequestContext};
use crate::error::HttpError;
use crate::metrics::HttpMetrics;

/// `x-request-id` as a header name: parsed once, not on every request.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Overrides the `route` label of a response's metrics and log line. The gateway sets it to the
/// route table entry a request matched, since its own router has a single catch-all route.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub Arc<str>);

/// Marks a response as routine chatter (heartbeats, watch polls, event feed pages): its access
/// log line is written at debug level instead of info. Health probes and scrapes are always
/// quiet.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

/// Shared state of the middleware.
#[derive(Debug)]
pub struct Observer {
    metrics: HttpMetrics,
    timeout: Option<Duration>,
    max_headers: usize,
    max_header_bytes: usize,
}

impl Observer {
    /// Middleware state recording into `metrics`, holding requests to the limits of `http`;
    /// to `http.request_timeout` too unless `own_deadlines`.
    pub fn new(metrics: HttpMetrics, http: &HttpConfig, own_deadlines: bool) -> Self {
        Self {
            metrics,
            timeout: (!own_deadlines).then_some(http.request_timeout),
            max_headers: http.max_headers,
            max_header_bytes: http.max_header_bytes,
        }
    }

    /// A 431 problem when `headers` break the limits.
    fn check_headers(&self, headers: &http::HeaderMap) -> Option<Response> {
        let count = headers.len();
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        let detail = if count > self.max_headers {
            format!(
                "the request has {count} headers; at most {} are accepted",
                self.max_headers
            )
        } else if bytes > self.max_header_bytes {
            format!(
                "the request's headers take {bytes} bytes; at most {} are accepted",
                self.max_header_bytes
            )
        } else {
            return None;
        };
        Some(
            HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request headers too large",
            )
            .with_detail(detail)
            .into_response(),
        )
    }
}

/// The middleware as a tower layer; see the module docs. (Not an axum `from_fn`, which boxes a
/// clone of the inner service for every request.)
#[derive(Debug, Clone)]
pub struct ObserveLayer(pub Arc<Observer>);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            observer: Arc::clone(&self.0),
            inner,
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct ObserveService<S> {
    observer: Arc<Observer>,
    inner: S,
}

impl<S> tower::Service<Request> for ObserveService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service made ready is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(observe(Arc::clone(&self.observer), request, inner).map(Ok))
    }
}

/// The middleware function; see the module docs.
///
/// What can be done before the handler runs is done at once, and the future returned holds
/// only what it needs afterwards: an `async fn` would keep the request and the inner service
/// twice (as its arguments and as locals), and this future is moved whole as it is boxed.
fn observe<S>(
    observer: Arc<Observer>,
    mut request: Request,
    mut inner: S,
) -> impl Future<Output = Response> + Send + 'static
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let started = Instant::now();
    let _in_flight = observer.metrics.start();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| context::is_valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(context::new_request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    let matched = request.extensions().get::<MatchedPath>().map(|m| {
        // A gRPC route is one per service; its path names the method, from a fixed set.
        if grpc {
            path.clone()
        } else {
            m.as_str().to_owned()
        }
    });
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        // Unknown until the answer when no route of the router matched: a proxy names the
        // route table entry it matched (`RouteLabel`), recorded at the end.
        route = matched.as_deref(),
        // Filled by proxies (the gateway) with the instance that served the request.
        upstream = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        http.route = tracing::field::Empty,
    );
    // Probes and scrapes arrive every few seconds from outside any request: they join a trace
    // whose caller sent one, and never start their own.
    let routine = path.starts_with("/health/") || path == "/metrics";
    let trace = crate::trace::adopt(&span, crate::trace::extract(request.headers()), !routine);
    let context = RequestContext {
        request_id: request_id.clone(),
        path: path.clone(),
        trace,
    };
    let timeout = observer.timeout;
    let refused = observer.check_headers(request.headers());
    let handle = async move {
        if let Some(refused) = refused {
            return refused;
        }
        let response = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, call(&mut inner, request))
                .await
                .unwrap_or_else(|_| timed_out(timeout)),
            None => call(&mut inner, request).await,
        };
        with_problem_body(response)
    };
    let handled = context::scope(context, handle.instrument(span.clone()));
    async move {
        let mut response = handled.await;

        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let route = response
            .extensions()
            .get::<RouteLabel>()
            .map(|label| &*label.0)
            .or(matched.as_deref())
            .unwrap_or("unmatched");
        let status = response.status();
        let elapsed = started.elapsed();
        observer
            .metrics
            .observe(&method, route, status.as_u16(), elapsed);
        if crate::trace::enabled() {
            // Named once the route is known: a proxy matches its own routes inside the span.
            crate::trace::rename(&span, format!("{method} {route}"));
            span.record("http.route", route);
            crate::trace::record_status(&span, status.as_u16());
        }
        if matched.is_none() {
            span.record("route", route);
        }
        span.in_scope(|| {
            let latency_ms = elapsed.as_secs_f64() * 1000.0;
            // Probes, scrapes and heartbeats arrive every few seconds; keep them out of the default log.
            let quiet = routine || response.extensions().get::<Quiet>().is_some();
            if quiet {
                tracing::debug!(status = status.as_u16(), latency_ms, %path, "request finished");
            } else if status.is_server_error() {
                tracing::warn!(status = status.as_u16(), latency_ms, %path, "request finished");
            } else {
                tracing::info!(status = status.as_u16(), latency_ms, %path, "request finished");
            }
        });
        response
    }
}

/// Calls a service that cannot fail.
async fn call<S>(inner: &mut S, request: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn timed_out(timeout: Duration) -> Response {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "Request timed out",
    )
    .with_detail(format!(
        "the request took longer than {}",
        humantime::format_duration(timeout)
    ))
    .into_response()
}

/// Replaces the body of an error response that is neither JSON nor a page (one made by axum
/// or a tower layer, in plain text) with a problem body, so every error an API client sees has
/// the same shape. A page a service drew for people (the storefront's "not found") stays.
fn with_problem_body(response: Response) -> Response {
    let status = response.status();
    let deliberate = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with(PROBLEM_JSON)
                || ct.starts_with("application/json")
                || ct.starts_with("text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || deliberate {
        return response;
    }
    let (slug, title) = match status {
        StatusCode::NOT_FOUND => ("not-found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Payload too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "Request timed out"),
        s if s.is_server_error() => ("internal", "Internal error"),
        _ => ("bad-request", "Bad request"),
    };
    let (parts, _) = response.into_parts();
    let mut fresh = HttpError::new(status, slug, title).into_response();
    // Keep headers such as Allow or Retry-After, but not the old body's length or type.
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// Fallback for unknown routes.
pub async fn not_found(request: Request) -> HttpError {
    HttpError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Fallback for a known route with the wrong method.
pub async fn method_not_allowed(request: Request) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .with_detail(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}

/// Turns a handler panic into a 500 problem; the panic message is logged, never sent.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    HttpError::internal(format!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;
    use tower::{Layer, ServiceExt};

    use super::*;

    #[test]
    fn a_proxy_s_access_line_names_its_route_once() {
        let (subscriber, captured) = crate::telemetry::capture::subscriber("info");
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let observer = Observer::new(
            HttpMetrics::register(&mut Registry::default()),
            &HttpConfig::default(),
            true,
        );
        // Answers as a proxy does: no router matched the request, the answer names the route.
        let proxy = tower::service_fn(|_request: Request| async {
            let mut response = Response::new(Body::from("ok"));
            response
                .extensions_mut()
                .insert(RouteLabel(Arc::from("/api/orders")));
            Ok::<_, Infallible>(response)
        });
        let request = Request::get("/api/orders/7")
            .body(Body::empty())
            .expect("a request");
        let response = runtime
            .block_on(
                ObserveLayer(Arc::new(observer))
                    .layer(proxy)
                    .oneshot(request),
            )
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let lines = captured.lines();
        let (text, line) = lines
            .iter()
            .find(|(_, line)| line["message"] == "request finished")
            .expect("an access line");
        assert_eq!(text.matches("\"route\":").count(), 1, "{text}");
        assert_eq!(line["route"], "/api/orders");
        assert_eq!(line["path"], "/api/orders/7");
        assert_eq!(line["status"], 200);
    }
}
