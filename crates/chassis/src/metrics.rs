//! Prometheus metrics: the registry every process exposes at `/metrics`, and the RED metrics
//! (rate, errors, duration) the chassis records for every HTTP request.
//!
//! Built on `prometheus-client`, whose registries are plain values: each service instance owns
//! one and passes it where metrics are registered, so tests (and several services in one
//! process) never share counters through a global.

pub mod red;

use foldhash::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ServiceInfo;

/// Latency buckets in seconds, from a fast in-memory answer to a request near its timeout.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram family constructor with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Labels of the per-route request metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route template (`/users/me`), never the raw path, to keep cardinality bounded.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// The counter and histogram of one method and status of a route.
type Series = (Method, u16, Counter, Histogram);

/// Request count and latency per route and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// Found once per route, method and status, not by label lookup on every request: a
    /// lookup by `&str` needs no owned labels, and a route has few methods and statuses.
    series: Arc<RwLock<HashMap<String, Vec<Series>>>>,
    requests: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
}

impl HttpMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            series: Arc::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        registry.register(
            "http_server_requests",
            "HTTP requests served, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_server_request_duration_seconds",
            "Time to produce the response head, by method, route and status",
            metrics.duration.clone(),
        );
        registry.register(
            "http_server_requests_in_flight",
            "Requests being served now",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// Counts a request as started; the guard counts it finished when dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records one finished request.
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let (requests, duration) = self
            .find(method, route, status)
            .unwrap_or_else(|| self.create(method, route, status));
        duration.observe(elapsed.as_secs_f64());
        requests.inc();
    }

    fn find(&self, method: &Method, route: &str, status: u16) -> Option<(Counter, Histogram)> {
        let series = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series
            .get(route)?
            .iter()
            .find(|(m, s, _, _)| m == method && *s == status)
            .map(|(_, _, requests, duration)| (requests.clone(), duration.clone()))
    }

    fn create(&self, method: &Method, route: &str, status: u16) -> (Counter, Histogram) {
        let labels = RouteLabels {
            method: method.to_string(),
            route: route.to_owned(),
            status,
        };
        let requests = self.requests.get_or_create(&labels).clone();
        let duration = self.duration.get_or_create(&labels).clone();
        let mut series = self
            .series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let of_route = series.entry(labels.route).or_default();
        // Another request may have created it between the read and the write.
        if !of_route
            .iter()
            .any(|(m, s, _, _)| m == method && *s == status)
        {
            of_route.push((method.clone(), status, requests.clone(), duration.clone()));
        }
        (requests, duration)
    }
}

/// Decrements the in-flight gauge when dropped, even if the request future is cancelled.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Labels of the build info metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    service: String,
    version: String,
    instance: String,
}

/// Registers `build_info{service,version,instance} 1` (`bazaar_build_info` with the prefix), so dashboards can join on it.
pub fn register_build_info(registry: &mut Registry, service: &ServiceInfo) {
    let info: Family<BuildLabels, Gauge> = Family::default();
    info.get_or_create(&BuildLabels {
        service: service.name.clone(),
        version: service.version.clone(),
        instance: service.instance_id.clone(),
    })
    .set(1);
    registry.register(
        "build_info",
        "Service, version and instance of this process",
        info,
    );
}

/// The database pool's connections, read at every scrape: `db_pool_connections` (open),
/// `db_pool_connections_in_use` and `db_pool_connections_max`.
#[derive(Debug)]
pub struct PoolMetrics(pub crate::db::Db);

impl prometheus_client::collector::Collector for PoolMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let pool = self.0.pool();
        let open = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        let max = i64::from(pool.options().get_max_connections());
        for (name, help, value) in [
            ("db_pool_connections", "Open database connections", open),
            (
                "db_pool_connections_in_use",
                "Database connections running a statement or transaction",
                (open - idle).max(0),
            ),
            (
                "db_pool_connections_max",
                "Most database connections the pool opens (database.max_connections)",
                max,
            ),
        ] {
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Renders a registry in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Arc<Registry>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_counts_and_histograms_per_route() {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        metrics.observe(&Method::GET, "/users/me", 200, Duration::from_millis(3));
        metrics.observe(&Method::GET, "/users/me", 200, Duration::from_millis(30));
        metrics.observe(&Method::POST, "/users/me", 201, Duration::from_millis(4));
        let response = render(&Arc::new(registry));
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(
            text.contains(
                r#"http_server_requests_total{method="GET",route="/users/me",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_request_duration_seconds_bucket{le="0.005",method="GET",route="/users/me",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_server_requests_total{method="POST",route="/users/me",status="201"} 1"#
            ),
            "{text}"
        );
    }
}
