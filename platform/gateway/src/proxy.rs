//! The one handler of the gateway: match the route, check the caller, forward to an instance,
//! fail over to another when one is down.
//!
//! Retries: a request whose connection was refused never reached the upstream, so it moves to
//! another instance whatever its method, and the refusing instance is ejected locally for a few
//! seconds. A request that reached an instance and failed (no answer, or 502, 503, 504) moves
//! on only if sending it twice is safe: its method is idempotent or it carries an
//! `Idempotency-Key`. Every retry draws on the service's retry budget, and every attempt
//! informs the service's circuit breaker and the instance's outlier detection
//! ([`crate::resilience`]). A 500 is passed on as it is: it may be the application's answer.
//! Bodies are buffered (they are bounded by `http.body_limit`) so they can be sent again.

use foldhash::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chassis::HttpError;
use chassis::client::{ServiceClient, Transport};
use chassis::discovery::{Discovery, EJECTION, Endpoint, OutlierPolicy};
use chassis::server::middleware::RouteLabel;
use chassis::tls::Secure;
use contracts::headers::{IDENTITY_PREFIX, USER_ID, USER_ROLES};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;

use crate::auth::{AuthError, Identity, Verifier};
use crate::metrics::GatewayMetrics;
use crate::ratelimit::{Decision, Limiter, OnStoreError};
use crate::resilience::{Admission, Breaker, BreakerState, ResilienceSettings, RetryBudget};
use crate::routes::{AuthMode, Match, Route, RouteTable};
use crate::traffic::{self, Policies};

/// Whether `name` describes one connection, never forwarded (RFC 9110, section 7.6.1). A
/// match on the name: cheaper than comparing `HeaderName`s, on every header of every request
/// and response.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const USER_ID_HEADER: HeaderName = HeaderName::from_static(USER_ID);
const TIMEOUT_HEADER: HeaderName = HeaderName::from_static(contracts::headers::TIMEOUT_MS);
const USER_ROLES_HEADER: HeaderName = HeaderName::from_static(USER_ROLES);
const CANARY: HeaderName = HeaderName::from_static(contracts::release::CANARY_HEADER);
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What the handler needs.
#[derive(Debug)]
pub struct Gateway {
    /// Routes.
    pub table: RouteTable,
    /// Instances.
    pub discovery: Discovery,
    /// The wire.
    pub transport: Transport,
    /// Token checks.
    pub verifier: Arc<Verifier>,
    /// Upstream and auth metrics.
    pub metrics: GatewayMetrics,
    /// Most instances one request is tried on.
    pub max_attempts: usize,
    /// Largest body buffered.
    pub body_limit: usize,
    /// Longest wait for a request body to arrive (`http.request_timeout`).
    pub body_timeout: Duration,
    /// Rate-limit buckets.
    pub limiter: Limiter,
    /// Calls of the gateway's own (the dashboard's parts).
    pub client: ServiceClient,
    /// Deadline of each part of the dashboard.
    pub dashboard_part_timeout: Duration,
    /// When an instance counts as an outlier.
    pub outliers: OutlierPolicy,
    /// Breaker and retry budget of each upstream service of the route table.
    pub upstreams: HashMap<String, Upstream>,
    /// Which version of each service takes which requests.
    pub policies: Policies,
}

impl Gateway {
    fn upstream(&self, service: &str) -> &Upstream {
        // Built for every service of the table at start; routes cannot name another.
        self.upstreams
            .get(service)
            .unwrap_or_else(|| unreachable!("no upstream state for {service}"))
    }
}

/// What the gateway keeps about one upstream service.
#[derive(Debug)]
pub struct Upstream {
    breaker: Breaker,
    budget: RetryBudget,
}

impl Upstream {
    /// A closed breaker and a fresh budget.
    pub fn new(settings: &ResilienceSettings) -> Self {
        let now = Instant::now();
        Self {
            breaker: Breaker::new(settings, now),
            budget: RetryBudget::new(settings, now),
        }
    }

    fn admit(&self, now: Instant) -> Result<Admitted<'_>, Duration> {
        match self.breaker.admit(now) {
            Admission::Rejected(wait) => Err(wait),
            admission => Ok(Admitted {
                breaker: &self.breaker,
                admission,
                settled: false,
            }),
        }
    }
}

/// A request the breaker let through; a probe whose request is dropped unanswered is given
/// back, so the breaker cannot stay half-open forever.
struct Admitted<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    settled: bool,
}

impl Admitted<'_> {
    fn settle(mut self, success: bool, now: Instant) -> Option<BreakerState> {
        self.settled = true;
        self.breaker.record(self.admission, success, now)
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled && self.admission == Admission::Probe {
            self.breaker.abandon_probe();
        }
    }
}

/// The proxying as a service: every request that is not one of the gateway's own routes.
pub fn service(
    gateway: Arc<Gateway>,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |request| {
        // Boxed here, so the layers around it move a pointer, not a large future.
        let handled: BoxFuture<'static, Result<Response, Infallible>> =
            Box::pin(handle(Arc::clone(&gateway), request).map(Ok));
        handled
    })
}

/// Handles one proxied request.
///
/// `handle` and `forward` return their futures rather than being `async fn`s, which keep each
/// argument twice (as the argument and as a local): the request's future is moved whole as
/// it is boxed and wrapped, so every byte of it is paid on every request.
pub fn handle(
    gateway: Arc<Gateway>,
    request: Request,
) -> impl Future<Output = Response> + Send + 'static {
    // Set by the chassis on every connection; a request made in-process has no peer.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
    let (parts, body) = request.into_parts();
    async move {
        let gateway = &*gateway;
        let (label, result) = match gateway.table.find(&parts.method, parts.uri.path()) {
            Match::Found(route) => (
                Arc::clone(&route.label),
                forward(gateway, route, parts, body, peer).await,
            ),
            Match::MethodNotAllowed => (
                Arc::from("unmatched"),
                Err(HttpError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "Method not allowed",
                )
                .with_detail(format!(
                    "{} is not allowed on {}",
                    parts.method,
                    parts.uri.path()
                ))),
            ),
            Match::NotFound => (
                Arc::from("unmatched"),
                Err(HttpError::not_found(format!(
                    "no route for {}",
                    parts.uri.path()
                ))),
            ),
        };
        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        response.extensions_mut().insert(RouteLabel(label));
        response
    }
}

#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its future (see `handle`)"
)]
fn forward<'a>(
    gateway: &'a Gateway,
    route: &'a Route,
    mut parts: http::request::Parts,
    body: Body,
    peer: SocketAddr,
) -> impl Future<Output = Result<Response, HttpError>> + Send + 'a {
    async move {
        let identity = authenticate(gateway, route, &parts.headers).await?;
        let decision = match route.rate_limit {
            None => None,
            Some(limit) => {
                // `<route>|user:<id>` or `<route>|addr:<ip>`, built without the formatter.
                let mut key = String::with_capacity(route.label().len() + 48);
                key.push_str(route.label());
                match &identity {
                    Some(identity) => {
                        key.push_str("|user:");
                        key.push_str(&identity.user_id);
                    }
                    None => {
                        key.push_str("|addr:");
                        push_ip(&mut key, peer.ip());
                    }
                }
                let now = chassis::db::now_millis();
                match gateway.limiter.take(&key, &limit, now).await {
                    Ok(decision) => Some(decision),
                    Err(failure) => {
                        gateway.metrics.rate_limit_store_error();
                        let error = chassis::error::ErrorChain(&failure).to_string();
                        match gateway.limiter.on_error() {
                            OnStoreError::Local => {
                                tracing::warn!(%error, "deciding with this gateway's own buckets");
                                Some(failure.own)
                            }
                            OnStoreError::Open => {
                                tracing::warn!(%error, "letting the request through");
                                None
                            }
                            OnStoreError::Closed => {
                                tracing::error!(%error, "refusing the request");
                                return Err(HttpError::unavailable(
                                    "rate limiting is unavailable; try again shortly",
                                    1,
                                ));
                            }
                        }
                    }
                }
            }
        };
        if let Some(decision) = decision.filter(|d| !d.allowed) {
            gateway.metrics.rate_limited(route.label());
            let retry_after = u64::try_from(decision.retry_after.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1);
            let mut refused = HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .with_detail(format!(
                "this route allows {} requests at once; try again in {retry_after} s",
                decision.limit
            ))
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
            for (name, value) in rate_limit_headers(&decision) {
                refused = refused.with_header(name, value);
            }
            return Err(refused);
        }
        let body = read_body(gateway, body).await?;
        let path = PathAndQuery::from_maybe_shared(Bytes::from(
            route.upstream_path(parts.uri.path(), parts.uri.query()),
        ))
        .map_err(|e| HttpError::bad_request(format!("the path cannot be forwarded: {e}")))?;
        let secure = parts.extensions.get::<Secure>().is_some();
        // A request that reached an upstream is sent again only when that cannot do something
        // twice: its method is idempotent, or it carries a key the upstream deduplicates on.
        let repeatable = parts.method.is_idempotent()
            || parts
                .headers
                .contains_key(contracts::headers::IDEMPOTENCY_KEY);
        let mut headers = upstream_headers(
            std::mem::take(&mut parts.headers),
            identity.as_ref(),
            peer,
            secure,
        );
        // Each attempt waits this long: an upstream that may wait on purpose answers first.
        headers.insert(
            TIMEOUT_HEADER,
            HeaderValue::from(u64::try_from(route.timeout.as_millis()).unwrap_or(u64::MAX)),
        );
        let upstream = gateway.upstream(&route.service);
        // One reading of the clock serves the budget, the breaker and the first attempt's timing;
        // each attempt's end serves the next.
        let mut now = Instant::now();
        upstream.budget.deposit(now);

        // One snapshot of the instances serves the whole request: picks, retries and outlier checks.
        let mut peers = gateway
            .discovery
            .endpoints(&route.service)
            .await
            .unwrap_or_else(|_| Arc::from(Vec::new()));
        if let Some(policy) = gateway.policies.get(&route.service) {
            let side = traffic::choose(
                &policy,
                identity.as_ref().map(|i| i.user_id.as_str()),
                headers.get(CANARY),
                rand::random_range(0..100),
            );
            peers = traffic::instances(&peers, &policy, side).into();
        }
        let mut tried: Vec<String> = Vec::new();
        let mut last_failure = String::new();
        let mut last_response: Option<Response> = None;
        while tried.len() < gateway.max_attempts {
            let retry = !tried.is_empty();
            let admitted = match upstream.admit(now) {
                Ok(admitted) => admitted,
                Err(wait) if !retry => {
                    gateway.metrics.circuit_rejected(&route.service);
                    let seconds = wait.as_millis().div_ceil(1000).max(1);
                    return Err(HttpError::unavailable(
                        format!(
                            "{} is failing; the gateway is not sending it requests for now",
                            route.service
                        ),
                        u64::try_from(seconds).unwrap_or(u64::MAX),
                    )
                    .with_slug("circuit-open"));
                }
                Err(_) => break,
            };
            let Some(lease) = Discovery::pick_among(&peers, &tried) else {
                if !retry {
                    return Err(HttpError::unavailable(
                        format!("no healthy instance of {}", route.service),
                        1,
                    )
                    .with_slug("no-upstream"));
                }
                break;
            };
            if retry {
                let allowed = upstream.budget.withdraw(now);
                gateway.metrics.retry(&route.service, allowed);
                if !allowed {
                    tracing::warn!(upstream_service = %route.service, "retry budget spent; not retrying");
                    break;
                }
            }
            let endpoint = Arc::clone(lease.endpoint());
            // The last attempt there can be takes the headers; earlier ones send a copy, kept for
            // the next. With one instance (or one attempt allowed) no copy is ever made.
            let attempts_left = gateway
                .max_attempts
                .min(peers.len())
                .saturating_sub(tried.len() + 1);
            let headers = if attempts_left == 0 {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            let request = build_request(
                &route.service,
                &parts.method,
                &endpoint,
                &path,
                headers,
                body.clone(),
            )?;
            let started = now;
            let outcome =
                tokio::time::timeout(route.timeout, gateway.transport.send(request)).await;
            now = Instant::now();
            let elapsed = now.saturating_duration_since(started);
            let status = match &outcome {
                Ok(Ok(response)) => response.status(),
                Ok(Err(_)) => StatusCode::BAD_GATEWAY,
                Err(_) => StatusCode::GATEWAY_TIMEOUT,
            };
            record(gateway, route, &endpoint, status, elapsed);
            settle(
                gateway,
                route,
                &endpoint,
                &peers,
                admitted,
                !status.is_server_error(),
                now,
            );
            match outcome {
                Ok(Ok(response)) => {
                    tracing::Span::current().record("upstream", endpoint.id.as_str());
                    let mut response = downstream_response(response);
                    if let Some(decision) = &decision {
                        response.headers_mut().extend(rate_limit_headers(decision));
                    }
                    let unavailable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if !(unavailable && repeatable) {
                        return Ok(response);
                    }
                    tracing::warn!(upstream = %endpoint.id, %status, "upstream unavailable; trying another");
                    last_response = Some(response);
                    tried.push(endpoint.id.clone());
                }
                Ok(Err(error)) => {
                    last_failure =
                        format!("{}: {}", endpoint.id, chassis::error::ErrorChain(&error));
                    let retry = error.is_connect() || repeatable;
                    if error.is_connect() {
                        endpoint.eject(EJECTION);
                    }
                    tracing::warn!(upstream = %endpoint.id, error = %last_failure, retry, "upstream failed");
                    if !retry {
                        break;
                    }
                    last_response = None;
                    tried.push(endpoint.id.clone());
                }
                Err(_) => {
                    tracing::warn!(upstream = %endpoint.id, timeout = ?route.timeout, "upstream timed out");
                    return Err(HttpError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream-timeout",
                        "Upstream timed out",
                    )
                    .with_detail(format!(
                        "{} did not answer within {}",
                        route.service,
                        humantime::format_duration(route.timeout)
                    )));
                }
            }
        }
        if let Some(response) = last_response {
            return Ok(response);
        }
        Err(
            HttpError::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                .with_detail(format!("{} could not be reached", route.service))
                .with_cause(last_failure),
        )
    }
}

/// Buffers the request body, at most `body_limit` bytes within `body_timeout` (the chassis
/// leaves the gateway its own deadlines). A request without a body sets no timer.
async fn read_body(gateway: &Gateway, body: Body) -> Result<Bytes, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
        )
        .with_detail(format!(
            "request bodies are at most {} bytes",
            gateway.body_limit
        ))
    };
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    // A body announced larger than the limit is refused at once, not after waiting for it.
    let announced = axum::body::HttpBody::size_hint(&body).lower();
    if usize::try_from(announced).map_or(true, |announced| announced > gateway.body_limit) {
        return Err(too_large());
    }
    tokio::time::timeout(
        gateway.body_timeout,
        axum::body::to_bytes(body, gateway.body_limit),
    )
    .await
    .map_err(|_| {
        HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
        )
        .with_detail(format!(
            "the request body did not arrive within {}",
            humantime::format_duration(gateway.body_timeout)
        ))
    })?
    .map_err(|_| too_large())
}

/// Feeds one attempt's outcome to the instance's outlier detection and the service's breaker.
fn settle(
    gateway: &Gateway,
    route: &Route,
    endpoint: &Endpoint,
    peers: &[Arc<Endpoint>],
    admitted: Admitted<'_>,
    success: bool,
    now: Instant,
) {
    if let Some(state) = admitted.settle(success, now) {
        gateway.metrics.circuit_state(&route.service, state);
        tracing::warn!(upstream_service = %route.service, state = state.as_str(), "circuit breaker changed");
    }
    if let Some(ejection) = endpoint.record_outcome(success, &gateway.outliers, peers) {
        gateway
            .metrics
            .outlier_ejected(&route.service, &endpoint.id);
        tracing::warn!(
            upstream = %endpoint.id,
            ejection = %humantime::format_duration(ejection),
            "instance failed repeatedly; ejected"
        );
    }
}

/// Sends a plain-HTTP request to the same URL over HTTPS on `port` (308 keeps the method and
/// the body); lets requests that came over TLS through.
pub async fn redirect_to_https(port: u16, request: Request, next: Next) -> Response {
    if request.extensions().get::<Secure>().is_some() {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map_or_else(|| "localhost".to_owned(), |a| a.host().to_owned());
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => HttpError::bad_request("the Host header cannot be redirected to").into_response(),
    }
}

/// Checks the caller as the route requires; `None` is an anonymous caller.
pub(crate) async fn authenticate(
    gateway: &Gateway,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Option<Identity>, HttpError> {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let (token, from_cookie) = match headers.get(header::AUTHORIZATION) {
        None => (
            route
                .session_cookie
                .as_deref()
                .and_then(|name| cookie(headers, name)),
            true,
        ),
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty());
            match token {
                Some(token) => (Some(token), false),
                None => {
                    gateway.metrics.auth_failure("malformed_header");
                    return Err(HttpError::unauthorized(
                        "the Authorization header must be `Bearer <access token>`",
                    )
                    .with_slug("invalid-token"));
                }
            }
        }
    };
    let identity = match token {
        None if route.auth == AuthMode::Required => {
            return Err(HttpError::unauthorized("sign in to use this route"));
        }
        None => return Ok(None),
        Some(token) => match gateway.verifier.verify(token).await {
            Ok(identity) => identity,
            Err(error) => {
                gateway.metrics.auth_failure(error.reason());
                return match error {
                    AuthError::KeysUnavailable(_) => Err(HttpError::unavailable(
                        "tokens cannot be verified right now",
                        2,
                    )
                    .with_cause(error)),
                    // A browser keeps sending a cookie after its token expires: the page is
                    // asked for anonymously, and can refresh the token or offer to sign in.
                    AuthError::Expired | AuthError::Invalid(_)
                        if from_cookie && route.auth == AuthMode::Optional =>
                    {
                        Ok(None)
                    }
                    AuthError::Expired => {
                        Err(HttpError::unauthorized(error.to_string()).with_slug("token-expired"))
                    }
                    AuthError::Invalid(_) => {
                        Err(HttpError::unauthorized(error.to_string()).with_slug("invalid-token"))
                    }
                };
            }
        },
    };
    if let Some(missing) = route
        .roles
        .iter()
        .find(|role| !identity.roles.contains(role))
    {
        return Err(HttpError::forbidden(format!("requires the {missing} role")));
    }
    Ok(Some(identity))
}

/// The value of the cookie `name` among the request's `Cookie` headers, if not empty.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// The headers sent upstream: the client's, minus hop-by-hop headers, credentials and any
/// identity headers the client tried to set, plus the verified identity and forwarding info.
/// Edits the client's map in place: most requests keep most of their headers.
fn upstream_headers(
    mut headers: HeaderMap,
    identity: Option<&Identity>,
    peer: SocketAddr,
    secure: bool,
) -> HeaderMap {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110, section 7.6.1).
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok())
        .collect();
    // One pass over the (few) headers present, rather than a lookup per name that could be.
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            is_hop_by_hop(name)
                || listed.contains(name)
                || *name == header::AUTHORIZATION
                || name.as_str().starts_with(IDENTITY_PREFIX)
        })
        .cloned()
        .collect();
    for name in &dropped {
        headers.remove(name);
    }
    let host = headers.remove(header::HOST);
    if let Some(identity) = identity {
        if let Ok(id) = HeaderValue::from_str(&identity.user_id) {
            headers.insert(USER_ID_HEADER, id);
        }
        if let Ok(roles) = HeaderValue::from_str(&identity.roles.join(",")) {
            headers.insert(USER_ROLES_HEADER, roles);
        }
    }
    let mut forwarded_for = String::with_capacity(64);
    if let Some(chain) = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        forwarded_for.push_str(chain);
        forwarded_for.push_str(", ");
    }
    push_ip(&mut forwarded_for, peer.ip());
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if secure { "https" } else { "http" }),
    );
    headers
}

/// Appends `ip` to `out`. IPv4 addresses, nearly every client, are written digit by digit:
/// the standard formatter costs more than the rest of the forwarding headers together.
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The request one attempt sends: the method, the rewritten path at the instance's origin,
/// the forwarded headers with the instance as `Host`. Built field by field from parts checked
/// once (the origin when the instance was discovered, the path once per request), not parsed
/// again from a string for every attempt.
fn build_request(
    service: &str,
    method: &http::Method,
    endpoint: &Endpoint,
    path: &PathAndQuery,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<http::Request<Body>, HttpError> {
    let origin = endpoint.origin().ok_or_else(|| {
        HttpError::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
            .with_detail(format!(
                "{service} has an instance without a usable address"
            ))
            .with_cause(format!(
                "{}: {:?} is not a base URL",
                endpoint.id, endpoint.address
            ))
    })?;
    headers.insert(header::HOST, origin.host.clone());
    let mut request = http::Request::new(Body::from(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = origin.uri(path.clone());
    *request.headers_mut() = headers;
    if chassis::trace::enabled() {
        request
            .extensions_mut()
            .insert(chassis::client::Peer(service.to_owned()));
    }
    Ok(request)
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until full).
fn rate_limit_headers(decision: &Decision) -> [(HeaderName, HeaderValue); 3] {
    let reset = decision.reset.as_millis().div_ceil(1000);
    [
        (RATELIMIT_LIMIT, HeaderValue::from(decision.limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(decision.remaining)),
        (
            RATELIMIT_RESET,
            HeaderValue::from(u64::try_from(reset).unwrap_or(u64::MAX)),
        ),
    ]
}

/// The upstream's response without its hop-by-hop headers. One pass over the (few) headers
/// present: most responses have none to remove, and a lookup per name would hash each of them.
fn downstream_response(response: http::Response<Body>) -> Response {
    let (mut parts, body) = response.into_parts();
    if parts.headers.keys().any(is_hop_by_hop) {
        let listed: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| is_hop_by_hop(name))
            .cloned()
            .collect();
        for name in &listed {
            parts.headers.remove(name);
        }
    }
    Response::from_parts(parts, body)
}

fn record(
    gateway: &Gateway,
    route: &Route,
    endpoint: &Arc<Endpoint>,
    status: StatusCode,
    elapsed: Duration,
) {
    gateway
        .metrics
        .upstream(&route.service, endpoint, status.as_u16(), elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; bazaar_cart=c-9"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("bazaar_access=\"tok.en\"; x=; y"),
        );
        assert_eq!(cookie(&headers, "bazaar_cart"), Some("c-9"));
        assert_eq!(cookie(&headers, "bazaar_access"), Some("tok.en"));
        assert_eq!(cookie(&headers, "x"), None, "an empty cookie is no token");
        assert_eq!(cookie(&headers, "bazaar"), None, "names match whole");
    }

    #[test]
    fn a_response_loses_its_hop_by_hop_headers_and_keeps_the_rest() {
        let upstream = http::Response::builder()
            .header(header::CONNECTION, "keep-alive")
            .header("keep-alive", "timeout=5")
            .header(header::TRANSFER_ENCODING, "chunked")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", "abc")
            .body(Body::empty())
            .expect("a response");
        let response = downstream_response(upstream);
        let mut names: Vec<&str> = response.headers().keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-request-id"]);

        let plain = http::Response::builder()
            .header(header::CONTENT_LENGTH, "2")
            .body(Body::empty())
            .expect("a response");
        assert_eq!(downstream_response(plain).headers().len(), 1);

        for name in [
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "x-connection", "tea", "upgrades"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn strips_credentials_forged_identity_and_hop_by_hop_headers() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        incoming.insert("x-bazaar-user-id", HeaderValue::from_static("forged"));
        incoming.insert("X-Bazaar-User-Roles", HeaderValue::from_static("admin"));
        incoming.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        incoming.insert("x-private", HeaderValue::from_static("1"));
        incoming.insert(header::HOST, HeaderValue::from_static("shop.example"));
        incoming.insert("x-request-id", HeaderValue::from_static("abc"));
        incoming.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let peer: SocketAddr = "192.0.2.7:5555".parse().expect("addr");

        let anonymous = upstream_headers(incoming.clone(), None, peer, false);
        assert!(anonymous.get(header::AUTHORIZATION).is_none());
        assert!(anonymous.get(USER_ID).is_none());
        assert!(anonymous.get(USER_ROLES).is_none());
        assert!(anonymous.get("x-private").is_none());
        assert!(anonymous.get(header::CONNECTION).is_none());
        assert_eq!(anonymous["x-request-id"], "abc");
        assert_eq!(anonymous["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(anonymous["x-forwarded-host"], "shop.example");

        let identity = Identity {
            user_id: "u-1".into(),
            roles: vec!["customer".into(), "admin".into()],
        };
        let signed_in = upstream_headers(incoming, Some(&identity), peer, true);
        assert_eq!(signed_in[USER_ID], "u-1");
        assert_eq!(signed_in[USER_ROLES], "customer,admin");
        assert_eq!(anonymous["x-forwarded-proto"], "http");
        for ip in [
            "0.0.0.0",
            "10.20.3.255",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let mut out = String::new();
            push_ip(&mut out, ip.parse().expect("an address"));
            assert_eq!(out, ip);
        }
        assert_eq!(signed_in["x-forwarded-proto"], "https");
    }
}
