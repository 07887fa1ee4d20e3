//! Fault injection: errors, latency and dropped connections an instance adds to its own
//! requests, as the fault rules in the registry's KV store (`faults/<name>`) say.
//!
//! Every instance registered with a registry watches the rules and keeps those for its service
//! and version; a change applies to the next request. The middleware runs inside the request
//! span and the RED metrics, so an injected error or delay shows up where a real one would,
//! and each injection is counted (`faults_injected{rule,kind}`) and logged at warn level with
//! the rule's name. Health probes and metric scrapes are never faulted: the point is to see how
//! the system copes with a failing instance, not to have the registry remove it.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use contracts::discovery::KvEntry;
use contracts::release::{FAULTS_PREFIX, FaultRule};
use futures_util::future::{BoxFuture, Either};
use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::ServiceInfo;
use crate::error::HttpError;

/// Labels of injected faults.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    rule: String,
    kind: &'static str,
}

/// The rules that apply to this instance, and what they injected.
#[derive(Debug)]
pub struct Faults {
    service: String,
    version: String,
    /// Named rules for this service and version; the route is checked per request.
    rules: RwLock<Arc<[(String, FaultRule)]>>,
    injected: Family<FaultLabels, Counter>,
}

/// What to do to one request.
#[derive(Debug, Clone, PartialEq)]
struct Injection {
    rule: String,
    delay: Option<Duration>,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Handle,
    Error(StatusCode),
    Drop,
}

impl Faults {
    /// No rules yet; registers `faults_injected` in `registry`.
    pub fn new(info: &ServiceInfo, registry: &mut Registry) -> Self {
        let injected = Family::default();
        registry.register(
            "faults_injected",
            "Faults injected into this instance's requests by fault rules, by rule and kind",
            injected.clone(),
        );
        Self {
            service: info.name.clone(),
            version: info.version.clone(),
            rules: RwLock::new(Arc::from(Vec::new())),
            injected,
        }
    }

    /// Replaces the rules with those stored under `faults/` that apply to this service and
    /// version. A rule that does not parse or validate is logged and skipped.
    pub fn replace(&self, entries: &[KvEntry]) {
        let mut rules = Vec::new();
        for entry in entries {
            let Some(name) = entry.key.strip_prefix(FAULTS_PREFIX) else {
                continue;
            };
            let rule = serde_json::from_str::<FaultRule>(&entry.value)
                .map_err(|e| e.to_string())
                .and_then(|rule| rule.validate().map(|()| rule));
            match rule {
                Ok(rule)
                    if rule.service == self.service
                        && rule.version.as_deref().is_none_or(|v| v == self.version) =>
                {
                    tracing::info!(rule = name, ?rule, "fault rule active");
                    rules.push((name.to_owned(), rule));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(key = %entry.key, %error, "ignoring an invalid fault rule");
                }
            }
        }
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::from(rules);
    }

    fn snapshot(&self) -> Arc<[(String, FaultRule)]> {
        Arc::clone(
            &self
                .rules
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// What the first rule matching `path` does to this request; `draw` gives numbers in
    /// `[0, 1)`, one per decision.
    fn decide(&self, path: &str, mut draw: impl FnMut() -> f64) -> Option<Injection> {
        if path.starts_with("/health/") || path == "/metrics" {
            return None;
        }
        let rules = self.snapshot();
        let (name, rule) = rules
            .iter()
            .find(|(_, rule)| rule.applies(&self.service, &self.version, path))?;
        let delay = (rule.delay_ms > 0 && draw() < rule.delay_rate)
            .then(|| Duration::from_millis(rule.delay_ms));
        let outcome = if rule.drop_rate > 0.0 && draw() < rule.drop_rate {
            Outcome::Drop
        } else if rule.error_rate > 0.0 && draw() < rule.error_rate {
            Outcome::Error(
                StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
        } else {
            Outcome::Handle
        };
        (delay.is_some() || outcome != Outcome::Handle).then(|| Injection {
            rule: name.clone(),
            delay,
            outcome,
        })
    }

    fn count(&self, rule: &str, kind: &'static str) {
        self.injected
            .get_or_create(&FaultLabels {
                rule: rule.to_owned(),
                kind,
            })
            .inc();
    }
}

/// The middleware applying [`Faults`]: a tower layer rather than an axum `from_fn`, so a
/// request no rule touches costs one rule lookup and no allocation (`from_fn` boxes a clone
/// of the inner service for every request).
#[derive(Debug, Clone)]
pub struct FaultLayer(pub Arc<Faults>);

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            faults: Arc::clone(&self.0),
            inner,
        }
    }
}

/// See [`FaultLayer`].
#[derive(Debug, Clone)]
pub struct FaultService<S> {
    faults: Arc<Faults>,
    inner: S,
}

impl<S> tower::Service<Request> for FaultService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(injection) = self
            .faults
            .decide(request.uri().path(), rand::random::<f64>)
        else {
            return Either::Left(self.inner.call(request));
        };
        // The service made ready is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let faults = Arc::clone(&self.faults);
        Either::Right(Box::pin(async move {
            Ok(inject(&faults, injection, inner, request).await)
        }))
    }
}

/// Delays, fails or drops one request as `injection` says, else passes it to `inner`.
async fn inject<S>(
    faults: &Faults,
    injection: Injection,
    mut inner: S,
    request: Request,
) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let rule = injection.rule.as_str();
    if let Some(delay) = injection.delay {
        faults.count(rule, "delay");
        tracing::warn!(rule, delay_ms = delay.as_millis(), "fault injected: delay");
        tokio::time::sleep(delay).await;
    }
    match injection.outcome {
        Outcome::Handle => match inner.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Outcome::Error(status) => {
            faults.count(rule, "error");
            tracing::warn!(rule, status = status.as_u16(), "fault injected: error");
            HttpError::new(status, "fault-injected", "Fault injected")
                .with_detail(format!("fault rule {rule} failed this request on purpose"))
                .into_response()
        }
        Outcome::Drop => {
            faults.count(rule, "drop");
            tracing::warn!(rule, "fault injected: dropped connection");
            dropped_connection()
        }
    }
}

/// A response whose body fails at once: the server closes the connection before the answer is
/// complete, as an instance that crashes mid-answer would. The head (502) may reach the client;
/// the body never does, so no client can take it for an answer.
fn dropped_connection() -> Response {
    let body = Body::from_stream(futures_util::stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::other("fault injected: connection dropped"))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    // Typed, so the chassis does not swap the failing body for a problem body.
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(contracts::headers::PROBLEM_JSON),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> Faults {
        let info = ServiceInfo {
            name: "payments".into(),
            version: "2.0".into(),
            instance_id: "payments-1".into(),
        };
        Faults::new(&info, &mut Registry::default())
    }

    fn entry(name: &str, value: &str) -> KvEntry {
        KvEntry {
            key: format!("faults/{name}"),
            value: value.into(),
            create_index: 1,
            modify_index: 1,
        }
    }

    #[test]
    fn only_rules_for_this_service_and_version_apply() {
        let faults = faults();
        faults.replace(&[
            entry("other-service", r#"{"service":"orders","error_rate":1}"#),
            entry(
                "other-version",
                r#"{"service":"payments","version":"1.0","error_rate":1}"#,
            ),
            entry("broken", r#"{"service":"payments","error_rate":7}"#),
            entry(
                "slow-charges",
                r#"{"service":"payments","route":"/charges","delay_ms":50}"#,
            ),
        ]);
        assert_eq!(faults.snapshot().len(), 1);
        let injection = faults.decide("/charges/1", || 0.0).expect("injects");
        assert_eq!(injection.rule, "slow-charges");
        assert_eq!(injection.delay, Some(Duration::from_millis(50)));
        assert_eq!(injection.outcome, Outcome::Handle);
        assert_eq!(faults.decide("/refunds", || 0.0), None);
        assert_eq!(faults.decide("/health/ready", || 0.0), None);
    }

    #[test]
    fn rates_decide_per_request() {
        let faults = faults();
        faults.replace(&[entry(
            "flaky",
            r#"{"service":"payments","error_rate":0.2,"status":503}"#,
        )]);
        assert_eq!(
            faults.decide("/charges", || 0.1).map(|i| i.outcome),
            Some(Outcome::Error(StatusCode::SERVICE_UNAVAILABLE))
        );
        assert_eq!(faults.decide("/charges", || 0.3), None);
        faults.replace(&[entry("gone", r#"{"service":"payments","drop_rate":1}"#)]);
        assert_eq!(
            faults.decide("/charges", || 0.5).map(|i| i.outcome),
            Some(Outcome::Drop)
        );
        faults.replace(&[]);
        assert_eq!(faults.decide("/charges", || 0.0), None);
    }
}
