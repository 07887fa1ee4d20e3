//! The gateway's own metrics: requests per upstream service, version and instance (what a
//! canary analysis compares), refused tokens by reason, rate limiting, retries, outlier
//! ejections and circuit breakers.

use foldhash::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chassis::discovery::Endpoint;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::resilience::BreakerState;

/// Labels of upstream metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Upstream service.
    pub service: String,
    /// Version of the instance that answered.
    pub version: String,
    /// Instance that answered.
    pub instance: String,
    /// Status it answered with, or 502/504 when it did not.
    pub status: u16,
}

/// Labels of auth failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// Why the token was refused.
    pub reason: String,
}

/// The counter and histogram of one instance and status.
type Series = (u16, Counter, Histogram);

/// The series of each upstream instance seen, keyed by the address of its `Endpoint` and
/// checked against a weak reference to it, so an address reused by another instance is not
/// mistaken for the old one.
type SeriesByInstance = HashMap<usize, (Weak<Endpoint>, Vec<Series>)>;

/// Most instances whose series are kept before those of departed instances are forgotten.
const MAX_INSTANCES: usize = 4096;

/// Upstream and auth metrics.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// Found once per instance and status, not by label lookup on every request.
    series: Arc<Mutex<SeriesByInstance>>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    auth_failures: Family<AuthLabels, Counter>,
    rate_limited: Family<RouteOnly, Counter>,
    rate_limit_store_errors: Counter,
    retries: Family<RetryLabels, Counter>,
    outlier_ejections: Family<InstanceLabels, Counter>,
    circuit_state: Family<ServiceOnly, Gauge>,
    circuit_rejected: Family<ServiceOnly, Counter>,
    candidate_weight: Family<ServiceOnly, Gauge>,
}

/// A service label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceOnly {
    /// Upstream service.
    pub service: String,
}

/// Labels of retries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Upstream service.
    pub service: String,
    /// `sent`, or `budget_exhausted` when the retry budget refused it.
    pub outcome: &'static str,
}

/// Labels of one instance.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Upstream service.
    pub service: String,
    /// Instance.
    pub instance: String,
}

/// A route label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// The route's prefix.
    pub route: String,
}

impl GatewayMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            series: Arc::default(),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(chassis::metrics::latency_histogram),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            rate_limit_store_errors: Counter::default(),
            retries: Family::default(),
            outlier_ejections: Family::default(),
            circuit_state: Family::default(),
            circuit_rejected: Family::default(),
            candidate_weight: Family::default(),
        };
        registry.register(
            "gateway_candidate_weight",
            "Percentage of requests the traffic policy sends to the candidate version, by service",
            metrics.candidate_weight.clone(),
        );
        registry.register(
            "gateway_retries",
            "Requests sent again to another instance, or refused by the retry budget, by service",
            metrics.retries.clone(),
        );
        registry.register(
            "gateway_outlier_ejections",
            "Instances ejected for failing repeatedly, by service and instance",
            metrics.outlier_ejections.clone(),
        );
        registry.register(
            "gateway_circuit_state",
            "Circuit breaker per upstream service: 0 closed, 1 open, 2 half-open",
            metrics.circuit_state.clone(),
        );
        registry.register(
            "gateway_circuit_rejected",
            "Requests failed fast by an open circuit breaker, by service",
            metrics.circuit_rejected.clone(),
        );
        registry.register(
            "gateway_rate_limit_store_errors",
            "Rate-limit checks the shared store could not answer",
            metrics.rate_limit_store_errors.clone(),
        );
        registry.register(
            "gateway_rate_limited",
            "Requests refused by a rate limit, by route",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "gateway_upstream_requests",
            "Requests forwarded, by upstream service, version, instance and status",
            metrics.upstream_requests.clone(),
        );
        registry.register(
            "gateway_upstream_request_duration_seconds",
            "Time until the upstream's response head, by service, version, instance and status",
            metrics.upstream_duration.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "Access tokens refused, by reason",
            metrics.auth_failures.clone(),
        );
        metrics
    }

    /// Records one exchange with `endpoint`, an instance of `service`.
    pub fn upstream(
        &self,
        service: &str,
        endpoint: &Arc<Endpoint>,
        status: u16,
        elapsed: Duration,
    ) {
        let (requests, duration) = {
            let mut series = self
                .series
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if series.len() >= MAX_INSTANCES {
                series.retain(|_, (instance, _)| instance.strong_count() > 0);
            }
            let entry = series
                .entry(Arc::as_ptr(endpoint).addr())
                .or_insert_with(|| (Arc::downgrade(endpoint), Vec::new()));
            if !std::ptr::eq(entry.0.as_ptr(), Arc::as_ptr(endpoint)) || entry.0.strong_count() == 0
            {
                *entry = (Arc::downgrade(endpoint), Vec::new());
            }
            match entry.1.iter().find(|(s, _, _)| *s == status) {
                Some((_, requests, duration)) => (requests.clone(), duration.clone()),
                None => {
                    let labels = UpstreamLabels {
                        service: service.to_owned(),
                        version: endpoint.version.clone(),
                        instance: endpoint.id.clone(),
                        status,
                    };
                    let requests = self.upstream_requests.get_or_create(&labels).clone();
                    let duration = self.upstream_duration.get_or_create(&labels).clone();
                    entry.1.push((status, requests.clone(), duration.clone()));
                    (requests, duration)
                }
            }
        };
        duration.observe(elapsed.as_secs_f64());
        requests.inc();
    }

    /// Records a request refused by a rate limit.
    pub fn rate_limited(&self, route: &str) {
        self.rate_limited
            .get_or_create(&RouteOnly {
                route: route.to_owned(),
            })
            .inc();
    }

    /// Records a failure of the shared rate-limit store.
    pub fn rate_limit_store_error(&self) {
        self.rate_limit_store_errors.inc();
    }

    /// Records a retry, or one the budget refused.
    pub fn retry(&self, service: &str, sent: bool) {
        self.retries
            .get_or_create(&RetryLabels {
                service: service.to_owned(),
                outcome: if sent { "sent" } else { "budget_exhausted" },
            })
            .inc();
    }

    /// Records an outlier ejection.
    pub fn outlier_ejected(&self, service: &str, instance: &str) {
        self.outlier_ejections
            .get_or_create(&InstanceLabels {
                service: service.to_owned(),
                instance: instance.to_owned(),
            })
            .inc();
    }

    /// Sets the candidate's share of a service's traffic (0 when it has no policy).
    pub fn candidate_weight(&self, service: &str, weight: u8) {
        self.candidate_weight
            .get_or_create(&ServiceOnly {
                service: service.to_owned(),
            })
            .set(i64::from(weight));
    }

    /// Sets the state of a service's breaker.
    pub fn circuit_state(&self, service: &str, state: BreakerState) {
        self.circuit_state
            .get_or_create(&ServiceOnly {
                service: service.to_owned(),
            })
            .set(state as i64);
    }

    /// Records a request failed fast by an open breaker.
    pub fn circuit_rejected(&self, service: &str) {
        self.circuit_rejected
            .get_or_create(&ServiceOnly {
                service: service.to_owned(),
            })
            .inc();
    }

    /// Records a refused token.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&AuthLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
