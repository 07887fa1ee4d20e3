//! What the operations console reads, from where an operator's tools read it: the registry
//! (instances, traffic policies, fault rules), each instance's `/metrics`, the telemetry
//! service (traces) and each service's dead letters. These calls go out with the storefront's
//! own identity (`web`), which those routes let through as [`chassis::authz::CONSOLE`], to an
//! instance the registry lists (no discovery watch is kept for a page seen now and then); the
//! console asks only after the gateway has verified an administrator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use chassis::client::ServiceClient;
use chassis::discovery::{RegistryClient, RegistryError};
use chassis::metrics::red::{RedStats, SERVER_BUCKETS, SERVER_REQUESTS, samples};
use contracts::discovery::{HealthStatus, Instance};
use contracts::page::Page;
use contracts::problem::Problem;
use contracts::release::{FAULTS_PREFIX, FaultRule, TRAFFIC_PREFIX, TrafficPolicy};
use contracts::traces::{Trace, TraceSummary};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::shop::encode;

/// Longest a scrape of one instance may take; one that is slower is left out.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapes are compared with the oldest one kept that is at most this old: RED is over the
/// last half minute or so.
const WINDOW: Duration = Duration::from_secs(30);
/// The shortest interval a rate is worth computing over; with nothing older, the console
/// scrapes twice this far apart.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Scrapes older than this are forgotten.
const KEEP: Duration = Duration::from_secs(90);

/// Longest any other call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The telemetry service's name in discovery.
const TELEMETRY: &str = "telemetry";
/// The registry's.
const REGISTRY: &str = "registry";

/// Why the console could not read something.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The storefront runs without a registry (static instances): nothing to list.
    #[error("this storefront runs without a registry")]
    NoRegistry,
    /// The registry failed.
    #[error("the registry: {0}")]
    Registry(#[from] RegistryError),
    /// No instance of the service is passing its checks.
    #[error("no instance of {0} is passing")]
    NoInstance(String),
    /// The service did not answer in time, or the connection failed.
    #[error("{service} did not answer: {reason}")]
    Unreachable {
        /// The service asked.
        service: String,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an error.
    #[error("{service} answered {status}: {detail}")]
    Refused {
        /// The service asked.
        service: String,
        /// Its status.
        status: StatusCode,
        /// Its problem's detail (or title, or body).
        detail: String,
    },
    /// The answer was not what the service documents.
    #[error("{service} answered something unreadable: {source}")]
    Unreadable {
        /// The service asked.
        service: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl OpsError {
    /// The status the service refused with, if it did.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Rate, errors and duration over an interval.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Red {
    /// Requests per second.
    pub rate: f64,
    /// Server errors per second.
    pub errors: f64,
    /// Share of requests that were server errors, in percent.
    pub error_percent: f64,
    /// Median latency in milliseconds (a bucket's upper bound), if there were requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, if there were requests.
    pub p99_ms: Option<f64>,
}

impl Red {
    /// `stats` counted over `interval`.
    pub fn over(stats: &RedStats, interval: Duration) -> Self {
        let seconds = interval.as_secs_f64().max(1e-3);
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        Self {
            rate: stats.requests / seconds,
            errors: stats.errors / seconds,
            error_percent: stats.error_rate() * 100.0,
            p50_ms: ms(stats.quantile(0.5)),
            p99_ms: ms(stats.p99()),
        }
    }
}

/// RED by service and by (service, version), over `interval`.
#[derive(Debug, Clone, Default)]
pub struct RedTable {
    /// The interval the counts are over.
    pub interval: Duration,
    /// By service.
    pub services: BTreeMap<String, Red>,
    /// By service, then version.
    pub versions: BTreeMap<String, BTreeMap<String, Red>>,
}

/// One scrape: each instance's counts, with its service and version.
#[derive(Debug, Clone)]
struct Scrape {
    at: Instant,
    instances: HashMap<String, (String, String, RedStats)>,
}

/// The console's window on the running system.
#[derive(Debug, Clone)]
pub struct Ops {
    client: ServiceClient,
    /// Recent scrapes, oldest first.
    scrapes: Arc<Mutex<VecDeque<Scrape>>>,
}

impl Ops {
    /// Reads through `client`'s discovery and transport.
    pub fn new(client: ServiceClient) -> Self {
        Self {
            client,
            scrapes: Arc::default(),
        }
    }

    fn registry(&self) -> Result<&RegistryClient, OpsError> {
        self.client
            .discovery()
            .registry()
            .ok_or(OpsError::NoRegistry)
    }

    /// Every registered instance, by service then id, and the registry itself (which does
    /// not register in itself), as its `/health/live` names it.
    pub async fn instances(&self) -> Result<Vec<Instance>, OpsError> {
        let registry = self.registry()?;
        let mut instances = registry.instances().await?.instances;
        let base = registry.base();
        if base.starts_with("http") && !instances.iter().any(|i| i.service == REGISTRY) {
            instances.push(self.registry_itself(base).await);
        }
        instances.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        Ok(instances)
    }

    /// The registry at `base` as an instance: passing, since it just answered.
    async fn registry_itself(&self, base: &str) -> Instance {
        let mut instance = Instance {
            id: REGISTRY.to_owned(),
            service: REGISTRY.to_owned(),
            address: base.trim_end_matches('/').to_owned(),
            version: String::new(),
            health_url: format!("{}/health/ready", base.trim_end_matches('/')),
            meta: BTreeMap::new(),
            status: HealthStatus::Passing,
            output: None,
            registered_at: chrono::Utc::now(),
        };
        let live = self
            .exchange(&instance, Method::GET, "/health/live", CALL_TIMEOUT)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
            .unwrap_or_default();
        if let Some(id) = live["instance"].as_str() {
            instance.id = id.to_owned();
        }
        if let Some(version) = live["version"].as_str() {
            instance.version = version.to_owned();
        }
        instance
    }

    /// The traffic policies, by service. One that does not parse is left out (and logged):
    /// the gateways ignore it too.
    pub async fn policies(&self) -> Result<Vec<(String, TrafficPolicy)>, OpsError> {
        self.documents(TRAFFIC_PREFIX).await
    }

    /// The fault rules in force, by name.
    pub async fn faults(&self) -> Result<Vec<(String, FaultRule)>, OpsError> {
        self.documents(FAULTS_PREFIX).await
    }

    async fn documents<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, OpsError> {
        let list = self
            .registry()?
            .kv_list(prefix, None, Duration::ZERO)
            .await?;
        Ok(list
            .entries
            .into_iter()
            .filter_map(|entry| {
                let name = entry.key.strip_prefix(prefix)?.to_owned();
                match serde_json::from_str(&entry.value) {
                    Ok(document) => Some((name, document)),
                    Err(error) => {
                        tracing::warn!(key = entry.key, %error, "a registry document does not parse");
                        None
                    }
                }
            })
            .collect())
    }

    /// RED of every service and version, from the passing `instances`' own counts over the
    /// last half minute (or, on a first look, over the next second).
    pub async fn red(&self, instances: &[Instance]) -> RedTable {
        let now = self.scrape(instances).await;
        let earlier = self.baseline(now.at);
        let earlier = match earlier {
            Some(earlier) => earlier,
            None => {
                tokio::time::sleep(MIN_INTERVAL).await;
                let later = self.scrape(instances).await;
                self.remember(now.clone());
                self.remember(later.clone());
                return table(&now, &later);
            }
        };
        self.remember(now.clone());
        table(&earlier, &now)
    }

    /// The oldest scrape in the window that is old enough to compare with one taken `at`.
    fn baseline(&self, at: Instant) -> Option<Scrape> {
        let scrapes = self.scrapes.lock().unwrap_or_else(PoisonError::into_inner);
        scrapes
            .iter()
            .find(|s| {
                let age = at.saturating_duration_since(s.at);
                age <= WINDOW && age >= MIN_INTERVAL
            })
            .cloned()
    }

    fn remember(&self, scrape: Scrape) {
        let mut scrapes = self.scrapes.lock().unwrap_or_else(PoisonError::into_inner);
        let at = scrape.at;
        // Keep one scrape a second at most: a console open in several tabs does not grow it.
        if scrapes
            .back()
            .is_some_and(|last| at.saturating_duration_since(last.at) < MIN_INTERVAL)
        {
            return;
        }
        scrapes.push_back(scrape);
        while scrapes
            .front()
            .is_some_and(|first| at.saturating_duration_since(first.at) > KEEP)
        {
            scrapes.pop_front();
        }
    }

    /// Every passing instance's counts, now; one that does not answer in time is left out.
    async fn scrape(&self, instances: &[Instance]) -> Scrape {
        let at = Instant::now();
        let scrapes = instances
            .iter()
            .filter(|i| i.status == HealthStatus::Passing)
            .map(|instance| async move {
                let text = self.metrics_of(instance).await;
                (instance, text)
            });
        let mut scraped = HashMap::new();
        for (instance, text) in futures_util::future::join_all(scrapes).await {
            let Some(text) = text else { continue };
            // Probes, scrapes and the console's own reads are not the service's traffic.
            let stats = RedStats::collect(&samples(&text), SERVER_REQUESTS, SERVER_BUCKETS, |s| {
                s.labels.get("route").is_none_or(|r| {
                    !r.starts_with("/health/") && r != "/metrics" && r != "/internal/dead-letters"
                })
            });
            scraped.insert(
                instance.id.clone(),
                (instance.service.clone(), instance.version.clone(), stats),
            );
        }
        Scrape {
            at,
            instances: scraped,
        }
    }

    async fn metrics_of(&self, instance: &Instance) -> Option<String> {
        let body = self
            .exchange(instance, Method::GET, "/metrics", SCRAPE_TIMEOUT)
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends `method path` to a passing instance of `service` among `instances`; the body
    /// of a 2xx answer.
    async fn ask(
        &self,
        instances: &[Instance],
        service: &str,
        method: Method,
        path: &str,
    ) -> Result<Bytes, OpsError> {
        let instance = instances
            .iter()
            .find(|i| i.service == service && i.status == HealthStatus::Passing)
            .ok_or_else(|| OpsError::NoInstance(service.to_owned()))?;
        self.exchange(instance, method, path, CALL_TIMEOUT).await
    }

    /// Sends `method path` to `instance`; the body of a 2xx answer within `timeout`.
    async fn exchange(
        &self,
        instance: &Instance,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Bytes, OpsError> {
        let service = instance.service.as_str();
        let unreachable = |reason: String| OpsError::Unreachable {
            service: service.to_owned(),
            reason,
        };
        let url = format!("{}{path}", instance.address.trim_end_matches('/'));
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .body(Body::empty())
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .transport()
                .send(request)
                .await
                .map_err(|e| unreachable(chassis::error::ErrorChain(&e).to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            if status.is_success() {
                return Ok(body);
            }
            let detail = serde_json::from_slice::<Problem>(&body).map_or_else(
                |_| String::from_utf8_lossy(&body).into_owned(),
                |problem| problem.detail.unwrap_or(problem.title),
            );
            Err(OpsError::Refused {
                service: service.to_owned(),
                status,
                detail,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(unreachable(format!("no answer within {timeout:?}"))))
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        instances: &[Instance],
        service: &str,
        path: &str,
    ) -> Result<T, OpsError> {
        let body = self.ask(instances, service, Method::GET, path).await?;
        serde_json::from_slice(&body).map_err(|source| OpsError::Unreadable {
            service: service.to_owned(),
            source,
        })
    }

    /// Summaries of the traces the telemetry service keeps: the recent ones, or the slowest.
    pub async fn traces(
        &self,
        instances: &[Instance],
        slowest: bool,
        limit: u32,
    ) -> Result<Vec<TraceSummary>, OpsError> {
        let order = if slowest { "slowest" } else { "recent" };
        let path = format!("/v1/traces?order={order}&limit={limit}");
        self.read(instances, TELEMETRY, &path).await
    }

    /// One trace, its spans by start time.
    pub async fn trace(&self, instances: &[Instance], id: &str) -> Result<Trace, OpsError> {
        self.read(instances, TELEMETRY, &format!("/v1/traces/{id}"))
            .await
    }

    /// The dead letters of every service among `instances` (newest first); the services that
    /// could not be asked, with why, in the second list.
    pub async fn dead_letters(&self, instances: &[Instance]) -> (Vec<Value>, Vec<String>) {
        // The storefront itself handles no events.
        let mut services: Vec<&str> = instances
            .iter()
            .map(|i| i.service.as_str())
            .filter(|s| *s != crate::SERVICE)
            .collect();
        services.sort_unstable();
        services.dedup();
        let asks = services.into_iter().map(|service| async move {
            let answer = self
                .read::<Page<Value>>(instances, service, "/internal/dead-letters")
                .await;
            (service, answer)
        });
        let mut letters = Vec::new();
        let mut failed = Vec::new();
        for (service, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(page) => {
                    for mut letter in page.items {
                        letter["service"] = Value::from(service);
                        letters.push(letter);
                    }
                }
                // A service that handles no events has no dead letters to list, nor does one
                // with no instance up to ask (the map shows that).
                Err(OpsError::NoInstance(_)) => {}
                Err(error) if error.status() == Some(StatusCode::NOT_FOUND) => {}
                Err(error) => {
                    tracing::warn!(service, %error, "dead letters could not be listed");
                    failed.push(error.to_string());
                }
            }
        }
        letters.sort_by(|a, b| b["dead_at"].as_str().cmp(&a["dead_at"].as_str()));
        (letters, failed)
    }

    /// Runs `service`'s handler on dead letter `id` again.
    pub async fn replay(
        &self,
        instances: &[Instance],
        service: &str,
        id: &str,
    ) -> Result<(), OpsError> {
        let path = format!("/internal/dead-letters/{}/replay", encode(id));
        self.ask(instances, service, Method::POST, &path)
            .await
            .map(drop)
    }
}

/// RED between two scrapes, each instance against itself (an instance that restarted in
/// between counts from zero; one not in the earlier scrape is left out until it is).
fn table(earlier: &Scrape, now: &Scrape) -> RedTable {
    let interval = now.at.saturating_duration_since(earlier.at);
    let mut services: BTreeMap<String, RedStats> = BTreeMap::new();
    let mut versions: BTreeMap<String, BTreeMap<String, RedStats>> = BTreeMap::new();
    for (id, (service, version, stats)) in &now.instances {
        let Some((_, _, before)) = earlier.instances.get(id) else {
            continue;
        };
        let delta = if stats.requests < before.requests {
            stats.clone()
        } else {
            stats.since(before)
        };
        services.entry(service.clone()).or_default().add(&delta);
        versions
            .entry(service.clone())
            .or_default()
            .entry(version.clone())
            .or_default()
            .add(&delta);
    }
    RedTable {
        interval,
        services: services
            .iter()
            .map(|(service, stats)| (service.clone(), Red::over(stats, interval)))
            .collect(),
        versions: versions
            .iter()
            .map(|(service, by_version)| {
                let by_version = by_version
                    .iter()
                    .map(|(version, stats)| (version.clone(), Red::over(stats, interval)))
                    .collect();
                (service.clone(), by_version)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use chassis::metrics::red::SERVER_REQUESTS;

    use super::*;

    fn stats(ok: u32, failed: u32) -> RedStats {
        let text = format!(
            "{SERVER_REQUESTS}{{route=\"/a\",status=\"200\"}} {ok}\n\
             {SERVER_REQUESTS}{{route=\"/a\",status=\"503\"}} {failed}\n\
             {SERVER_BUCKETS}{{route=\"/a\",le=\"0.01\"}} {}\n\
             {SERVER_BUCKETS}{{route=\"/a\",le=\"+Inf\"}} {}\n",
            ok + failed,
            ok + failed
        );
        RedStats::collect(&samples(&text), SERVER_REQUESTS, SERVER_BUCKETS, |_| true)
    }

    fn scrape(at: Instant, instances: &[(&str, &str, &str, RedStats)]) -> Scrape {
        Scrape {
            at,
            instances: instances
                .iter()
                .map(|(id, service, version, s)| {
                    (
                        (*id).to_owned(),
                        ((*service).to_owned(), (*version).to_owned(), s.clone()),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn rates_are_per_version_and_summed_per_service() {
        let start = Instant::now();
        let earlier = scrape(
            start,
            &[
                ("catalog-1", "catalog", "1.0", stats(100, 0)),
                ("catalog-2.0-1", "catalog", "2.0", stats(10, 0)),
                ("users-1", "users", "1.0", stats(500, 0)),
            ],
        );
        let now = scrape(
            start + Duration::from_secs(10),
            &[
                ("catalog-1", "catalog", "1.0", stats(400, 0)),
                ("catalog-2.0-1", "catalog", "2.0", stats(80, 20)),
                // Restarted: counts from zero.
                ("users-1", "users", "1.0", stats(50, 0)),
                // New: no rate until the next look.
                ("users-2", "users", "1.0", stats(1000, 0)),
            ],
        );
        let table = table(&earlier, &now);
        assert_eq!(table.interval, Duration::from_secs(10));
        let catalog = &table.services["catalog"];
        assert!((catalog.rate - 39.0).abs() < 1e-9, "{catalog:?}");
        let candidate = &table.versions["catalog"]["2.0"];
        assert!((candidate.rate - 9.0).abs() < 1e-9, "{candidate:?}");
        assert!((candidate.errors - 2.0).abs() < 1e-9);
        assert!((candidate.error_percent - 100.0 * 20.0 / 90.0).abs() < 1e-9);
        assert_eq!(candidate.p99_ms, Some(10.0));
        assert!((table.versions["catalog"]["1.0"].error_percent).abs() < 1e-9);
        assert!((table.services["users"].rate - 5.0).abs() < 1e-9);
    }
}
