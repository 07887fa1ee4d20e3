//! Finding instances of a service, and picking one for each request.
//!
//! Each service a process calls gets a watch: a task that holds a blocking query open against
//! the registry (`?index=N&wait=30s`), so the cached list of passing instances changes within
//! moments of a registration, a failed health check or a deregistration, without polling.
//! Lookups read the cache and never wait on the network once it is filled.
//!
//! Picking uses the power of two choices: two random instances, the one with fewer requests in
//! flight wins. It needs no coordination, avoids the herd that "least loaded" causes, and adapts
//! to a slow instance as fast as its queue grows. An instance a call could not connect to is
//! ejected locally for a few seconds, so traffic moves on before the registry notices.
//!
//! Services listed under `discovery.static` resolve to fixed addresses instead, which is how a
//! process runs without a registry (tests).
//!
//! With `discovery.dns` set, instances are found by DNS instead, as on Kubernetes (a headless
//! Service per service lists its ready pods): every address the service's name resolves to is
//! asked once for `/health/live`, which names the instance and its version, so the balancer and
//! traffic policies work as with the registry. Names are resolved again every `refresh`; an
//! address that stops answering its probe is dropped, and the kubelet's readiness decides who
//! is listed in the first place.
//!
//! With `discovery.etcd` set, etcd takes the registry's place: instances register as leased
//! keys, and the watches above are etcd watches ([`etcd`]).
//!
//! # Layout
//! - [`registry_api`]: typed client of the registry role (the registry's HTTP API, or etcd).
//! - [`etcd`]: etcd as the discovery and KV backend.
//! - [`registration`]: register, heartbeat, deregister.

pub mod etcd;
pub mod registration;
pub mod registry_api;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use contracts::discovery::{Instance, KvEntry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use registration::Registrar;
pub use registry_api::{Heartbeat, RegistryClient, RegistryError};

use crate::client::Transport;
use crate::config::{DiscoveryConfig, DnsConfig};

/// How long a blocking query waits for a change before the registry answers anyway.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// How long the first lookup of a service waits for the registry's answer.
const FIRST_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an instance that refused a connection is avoided.
pub const EJECTION: Duration = Duration::from_secs(5);

/// Why no instance could be picked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The service has no passing instance (or is unknown).
    #[error("no healthy instance of {0}")]
    NoInstances(String),
    /// Neither a registry nor a static entry can resolve the service.
    #[error("{0} is not in discovery.static and no registry is configured")]
    Unresolvable(String),
}

/// One instance of a service, with the state the balancer keeps about it.
#[derive(Debug)]
pub struct Endpoint {
    /// Instance id (`users-1`).
    pub id: String,
    /// Base URL (`http://127.0.0.1:7711`).
    pub address: String,
    /// Version the instance runs.
    pub version: String,
    /// `address` parsed once, for callers that build many requests to it.
    origin: Option<Origin>,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` until which this endpoint is avoided; 0 when it is not.
    ejected_until: AtomicU64,
    /// Failed requests in a row (passive outlier detection).
    failures: AtomicU32,
    /// Times ejected as an outlier since its last success; lengthens the next ejection.
    ejections: AtomicU32,
    epoch: Instant,
}

/// Passive outlier detection: an instance whose requests fail `consecutive_failures` times in
/// a row is avoided for `base_ejection`, longer each time it is ejected again without a
/// success in between (up to `max_ejection`), while at most `max_ejected_percent` of a
/// service's instances are avoided at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OutlierPolicy {
    /// Failures in a row that make an instance an outlier.
    pub consecutive_failures: u32,
    /// How long an outlier is avoided the first time.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Most of a service's instances avoided at once, in percent (rounded down, so a lone
    /// instance is never ejected: it is the circuit breaker's business then).
    pub max_ejected_percent: u8,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(120),
            max_ejected_percent: 50,
        }
    }
}

/// An instance's base URL taken apart: what a request to it needs, checked once rather than
/// parsed again for every request.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `127.0.0.1:7711`.
    pub authority: http::uri::Authority,
    /// The authority as a `Host` header.
    pub host: http::HeaderValue,
}

impl Origin {
    /// `None` when `address` is not a base URL (`scheme://authority`, nothing after it but an
    /// optional `/`).
    pub fn parse(address: &str) -> Option<Self> {
        let uri: http::Uri = address.parse().ok()?;
        let parts = uri.into_parts();
        if parts
            .path_and_query
            .as_ref()
            .is_some_and(|p| p.as_str() != "/")
        {
            return None;
        }
        let authority = parts.authority?;
        let host = http::HeaderValue::from_str(authority.as_str()).ok()?;
        Some(Self {
            scheme: parts.scheme?,
            authority,
            host,
        })
    }

    /// The URI of `path_and_query` at this origin.
    pub fn uri(&self, path_and_query: http::uri::PathAndQuery) -> http::Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        // Scheme, authority and path are each valid, and together they make an absolute URI.
        http::Uri::from_parts(parts).unwrap_or_else(|_| unreachable!("a complete URI"))
    }
}

impl Endpoint {
    /// An endpoint nobody has sent requests to; `epoch` is the start of its ejection clock.
    pub fn new(id: String, address: String, version: String, epoch: Instant) -> Self {
        Self {
            id,
            origin: Origin::parse(&address),
            address,
            version,
            in_flight: AtomicUsize::new(0),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            epoch,
        }
    }

    /// The address taken apart; `None` when it is not a base URL (calls to it then fail).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Requests sent to this instance that have not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Avoids this instance for `duration` (it refused a connection).
    pub fn eject(&self, duration: Duration) {
        let until = self
            .now()
            .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    /// Whether the instance is being avoided.
    pub fn is_ejected(&self) -> bool {
        // Most instances were never ejected: no need to read the clock for them.
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > self.now()
    }

    /// Records the outcome of one request to this instance, one of `peers` (all instances of
    /// its service). Returns the ejection when this failure made it an outlier.
    pub fn record_outcome(
        &self,
        success: bool,
        policy: &OutlierPolicy,
        peers: &[Arc<Endpoint>],
    ) -> Option<Duration> {
        if success {
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            return None;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.consecutive_failures || self.is_ejected() {
            return None;
        }
        let ejected = peers
            .iter()
            .filter(|p| p.is_ejected() && p.id != self.id)
            .count();
        let allowed = peers.len() * usize::from(policy.max_ejected_percent) / 100;
        if ejected + 1 > allowed {
            return None;
        }
        let times = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = policy
            .base_ejection
            .saturating_mul(times)
            .min(policy.max_ejection);
        self.failures.store(0, Ordering::Relaxed);
        self.eject(duration);
        Some(duration)
    }
}

/// An instance picked for one request; counts as in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    endpoint: Arc<Endpoint>,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { endpoint }
    }

    /// The picked instance.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks by power of two choices among `endpoints`, skipping `exclude` and ejected instances
/// while any other remains. Pure apart from the random draw, so it is tested directly.
pub fn pick(endpoints: &[Arc<Endpoint>], exclude: &[String]) -> Option<Arc<Endpoint>> {
    // Counted, then the n-th found again: a pick on every request allocates no list.
    let allowed = |e: &&Arc<Endpoint>| !exclude.contains(&e.id);
    let healthy = |e: &&Arc<Endpoint>| allowed(e) && !e.is_ejected();
    let mut count = endpoints.iter().filter(healthy).count();
    // All ejected: trying one beats failing outright; the ejection may be stale.
    let all_ejected = count == 0;
    if all_ejected {
        count = endpoints.iter().filter(allowed).count();
    }
    let nth = |n: usize| {
        if all_ejected {
            endpoints.iter().filter(allowed).nth(n)
        } else {
            endpoints.iter().filter(healthy).nth(n)
        }
    };
    let chosen = match count {
        0 => return None,
        1 => nth(0),
        n => {
            let a = rand::random_range(0..n);
            let b = (a + rand::random_range(1..n)) % n;
            match (nth(a), nth(b)) {
                (Some(first), Some(second)) if second.in_flight() < first.in_flight() => {
                    Some(second)
                }
                (first, second) => first.or(second),
            }
        }
    };
    // Another thread may have ejected one since the count: any allowed instance will do.
    chosen
        .or_else(|| endpoints.iter().find(allowed))
        .map(Arc::clone)
}

/// The cached instances of one service.
#[derive(Debug)]
struct ServiceCache {
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    /// Becomes `true` once the first answer arrived.
    loaded: watch::Sender<bool>,
}

impl ServiceCache {
    fn new(endpoints: Vec<Arc<Endpoint>>, loaded: bool) -> Self {
        Self {
            endpoints: RwLock::new(endpoints.into()),
            loaded: watch::Sender::new(loaded),
        }
    }

    fn snapshot(&self) -> Arc<[Arc<Endpoint>]> {
        match self.endpoints.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the list, keeping the balancer state of instances that stay.
    fn replace(&self, instances: &[Instance], epoch: Instant) {
        let current = self.snapshot();
        let next: Vec<Arc<Endpoint>> = instances
            .iter()
            .map(|instance| {
                current
                    .iter()
                    .find(|e| e.id == instance.id && e.address == instance.address)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint::new(
                            instance.id.clone(),
                            instance.address.clone(),
                            instance.version.clone(),
                            epoch,
                        ))
                    })
            })
            .collect();
        match self.endpoints.write() {
            Ok(mut guard) => *guard = next.into(),
            Err(poisoned) => *poisoned.into_inner() = next.into(),
        }
        self.loaded.send_replace(true);
    }
}

#[derive(Debug)]
struct Inner {
    registry: Option<RegistryClient>,
    /// Finds instances by DNS instead of the registry.
    dns: Option<DnsConfig>,
    /// Asks instances found by DNS who they are.
    transport: Transport,
    services: Mutex<foldhash::HashMap<String, Arc<ServiceCache>>>,
    epoch: Instant,
    /// Stops the watches when the last handle is dropped or the process shuts down.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Resolves service names to instances. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

impl Discovery {
    /// Discovery per `config`, whose watches stop when `shutdown` is cancelled.
    pub fn new(
        config: &DiscoveryConfig,
        transport: Transport,
        shutdown: &CancellationToken,
    ) -> Self {
        let epoch = Instant::now();
        let services = config
            .static_instances
            .iter()
            .map(|(service, addresses)| {
                let endpoints = addresses
                    .iter()
                    .enumerate()
                    .map(|(i, address)| {
                        let address = address.trim_end_matches('/').to_owned();
                        Arc::new(Endpoint::new(
                            format!("{service}-static-{i}"),
                            address,
                            "static".into(),
                            epoch,
                        ))
                    })
                    .collect();
                (
                    service.clone(),
                    Arc::new(ServiceCache::new(endpoints, true)),
                )
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                registry: RegistryClient::from_config(config, &transport).unwrap_or_else(
                    |error| {
                        // `bazaar serve` refuses such a configuration before it gets here.
                        tracing::error!(%error, "discovery.etcd is invalid; nothing resolves through it");
                        None
                    },
                ),
                dns: config.dns.clone(),
                transport,
                services: Mutex::new(services),
                epoch,
                stop: shutdown.child_token(),
            }),
        }
    }

    /// The registry client, when a registry is configured.
    pub fn registry(&self) -> Option<&RegistryClient> {
        self.inner.registry.as_ref()
    }

    /// Picks an instance of `service` for one request.
    pub async fn pick(&self, service: &str) -> Result<Lease, DiscoveryError> {
        self.pick_excluding(service, &[]).await
    }

    /// Picks an instance of `service` other than those in `exclude` (already tried).
    pub async fn pick_excluding(
        &self,
        service: &str,
        exclude: &[String],
    ) -> Result<Lease, DiscoveryError> {
        let endpoints = self.endpoints(service).await?;
        Self::pick_among(&endpoints, exclude)
            .ok_or_else(|| DiscoveryError::NoInstances(service.to_owned()))
    }

    /// Picks among `endpoints` (from [`Self::endpoints`]) other than those in `exclude`.
    pub fn pick_among(endpoints: &[Arc<Endpoint>], exclude: &[String]) -> Option<Lease> {
        pick(endpoints, exclude).map(Lease::new)
    }

    /// The current instances of `service`, starting its watch on first use.
    pub async fn endpoints(&self, service: &str) -> Result<Arc<[Arc<Endpoint>]>, DiscoveryError> {
        let cache = self.cache(service)?;
        if *cache.loaded.borrow() {
            return Ok(cache.snapshot());
        }
        let mut loaded = cache.loaded.subscribe();
        // Only the first lookup waits, and only until the first answer (or a bounded time).
        // Boxed: once per service, and every caller's future would carry it otherwise.
        let _ = Box::pin(tokio::time::timeout(
            FIRST_LOOKUP_TIMEOUT,
            loaded.wait_for(|l| *l),
        ))
        .await;
        Ok(cache.snapshot())
    }

    fn cache(&self, service: &str) -> Result<Arc<ServiceCache>, DiscoveryError> {
        let mut services = match self.inner.services.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(cache) = services.get(service) {
            return Ok(Arc::clone(cache));
        }
        if let Some(dns) = &self.inner.dns {
            let cache = Arc::new(ServiceCache::new(Vec::new(), false));
            services.insert(service.to_owned(), Arc::clone(&cache));
            tokio::spawn(watch_dns(
                dns.clone(),
                self.inner.transport.clone(),
                service.to_owned(),
                Arc::clone(&cache),
                self.inner.epoch,
                self.inner.stop.clone(),
            ));
            return Ok(cache);
        }
        let registry = self
            .inner
            .registry
            .clone()
            .ok_or_else(|| DiscoveryError::Unresolvable(service.to_owned()))?;
        let cache = Arc::new(ServiceCache::new(Vec::new(), false));
        services.insert(service.to_owned(), Arc::clone(&cache));
        tokio::spawn(watch_service(
            registry,
            service.to_owned(),
            Arc::clone(&cache),
            self.inner.epoch,
            self.inner.stop.clone(),
        ));
        Ok(cache)
    }
}

/// Keeps `cache` equal to the registry's passing instances of `service`.
async fn watch_service(
    registry: RegistryClient,
    service: String,
    cache: Arc<ServiceCache>,
    epoch: Instant,
    stop: CancellationToken,
) {
    let query = |index| {
        let (registry, service) = (registry.clone(), service.clone());
        async move {
            let answer = registry.service(&service, index, WATCH_WAIT).await?;
            Ok((answer.index, answer.instances))
        }
    };
    watch_loop(&service, stop, query, |instances: Vec<Instance>| {
        cache.replace(&instances, epoch);
    })
    .await;
}

/// Keeps `cache` filled with the instances `service`'s DNS name resolves to, until `stop`.
async fn watch_dns(
    dns: DnsConfig,
    transport: Transport,
    service: String,
    cache: Arc<ServiceCache>,
    epoch: Instant,
    stop: CancellationToken,
) {
    let name = dns.name.replace("{service}", &service);
    // Who answers at each address: asked once, while the address stays listed.
    let mut known: HashMap<std::net::SocketAddr, Instance> = HashMap::new();
    loop {
        match tokio::net::lookup_host((name.as_str(), dns.port)).await {
            Ok(addresses) => {
                let addresses: Vec<std::net::SocketAddr> = addresses.collect();
                known.retain(|address, _| addresses.contains(address));
                for address in addresses {
                    if known.contains_key(&address) {
                        continue;
                    }
                    match identify(&transport, &dns.scheme, address, &service).await {
                        Some(instance) => {
                            known.insert(address, instance);
                        }
                        None => {
                            tracing::debug!(%address, %service, "no instance of the service answers there yet")
                        }
                    }
                }
                let mut instances: Vec<Instance> = known.values().cloned().collect();
                instances.sort_by(|a, b| a.id.cmp(&b.id));
                cache.replace(&instances, epoch);
            }
            Err(error) => {
                tracing::warn!(%name, %error, "the service's name does not resolve; keeping its last instances");
                // The first lookup need not wait for a name that may never resolve.
                if !*cache.loaded.borrow() {
                    cache.replace(&[], epoch);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(dns.refresh) => {}
            () = stop.cancelled() => return,
        }
        // An instance that stopped answering is asked again next time, as a new one.
        let mut gone = Vec::new();
        for address in known.keys() {
            if identify(&transport, &dns.scheme, *address, &service)
                .await
                .is_none()
            {
                gone.push(*address);
            }
        }
        for address in gone {
            known.remove(&address);
        }
    }
}

/// The instance of `service` at `address`, from its `/health/live`; `None` if nothing answers
/// there, or something else does.
async fn identify(
    transport: &Transport,
    scheme: &str,
    address: std::net::SocketAddr,
    service: &str,
) -> Option<Instance> {
    #[derive(serde::Deserialize)]
    struct Live {
        service: String,
        version: String,
        instance: String,
    }
    let base = format!("{scheme}://{address}");
    let request = http::Request::get(format!("{base}/health/live"))
        .body(axum::body::Body::empty())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(2), transport.send(request))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .ok()?
        .to_bytes();
    let live: Live = serde_json::from_slice(&body).ok()?;
    (live.service == service).then(|| Instance {
        id: live.instance,
        service: live.service,
        health_url: format!("{base}/health/ready"),
        address: base,
        version: live.version,
        meta: std::collections::BTreeMap::new(),
        status: contracts::discovery::HealthStatus::Passing,
        output: None,
        registered_at: chrono::Utc::now(),
    })
}

/// Calls `apply` with the keys under `prefix` now and after every change, until `stop`. A
/// failed query keeps the last answer (nothing is applied) and is retried with backoff.
pub async fn watch_prefix(
    registry: RegistryClient,
    prefix: String,
    stop: CancellationToken,
    apply: impl FnMut(Vec<KvEntry>) + Send,
) {
    let query = |index| {
        let (registry, prefix) = (registry.clone(), prefix.clone());
        async move {
            let answer = registry.kv_list(&prefix, index, WATCH_WAIT).await?;
            Ok((answer.index, answer.entries))
        }
    };
    watch_loop(&prefix, stop, query, apply).await;
}

/// The loop of a blocking-query watch: asks `query` for what changed after the last index it
/// answered and gives each new answer to `apply`. A failure keeps the last answer and retries
/// with backoff from scratch; a registry restart resets its index, so any different index
/// counts as a change.
async fn watch_loop<T, Q, F>(
    what: &str,
    stop: CancellationToken,
    mut query: Q,
    mut apply: impl FnMut(T),
) where
    Q: FnMut(Option<u64>) -> F,
    F: Future<Output = Result<(u64, T), RegistryError>>,
{
    let mut index: Option<u64> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = query(index) => answer,
        };
        match answer {
            Ok((next, value)) => {
                backoff = Duration::from_millis(200);
                if index.is_none_or(|i| next != i) {
                    tracing::debug!(what, index = next, "changed");
                    apply(value);
                }
                index = Some(next);
            }
            Err(error) => {
                tracing::debug!(what, error = %crate::error::ErrorChain(&error), "watch failed; keeping the last answer");
                index = None;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
        let epoch = Instant::now();
        (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("svc-{i}"),
                    format!("http://127.0.0.1:{}", 9000 + i),
                    "1".into(),
                    epoch,
                ))
            })
            .collect()
    }

    #[test]
    fn an_origin_is_a_base_url_and_nothing_more() {
        let origin = Origin::parse("https://[::1]:7711/").expect("a base URL");
        assert_eq!(origin.scheme, http::uri::Scheme::HTTPS);
        assert_eq!(origin.authority.as_str(), "[::1]:7711");
        assert_eq!(origin.host, "[::1]:7711");
        let uri = origin.uri("/orders?limit=2".parse().expect("a path"));
        assert_eq!(uri.to_string(), "https://[::1]:7711/orders?limit=2");
        for address in [
            "127.0.0.1:7711",
            "http://127.0.0.1:7711/base",
            "/orders",
            "",
        ] {
            assert!(
                Origin::parse(address).is_none(),
                "{address:?} is not a base URL"
            );
        }
        assert!(endpoints(1)[0].origin().is_some());
    }

    #[test]
    fn picks_the_less_loaded_of_two() {
        let all = endpoints(2);
        let _busy: Vec<Lease> = (0..5).map(|_| Lease::new(Arc::clone(&all[0]))).collect();
        for _ in 0..50 {
            assert_eq!(
                pick(&all, &[]).map(|e| e.id.clone()),
                Some("svc-1".to_owned())
            );
        }
    }

    #[test]
    fn spreads_load_across_instances() {
        let all = endpoints(4);
        let mut leases = Vec::new();
        for _ in 0..400 {
            let endpoint = pick(&all, &[]).expect("one");
            leases.push(Lease::new(endpoint));
        }
        // With the power of two choices the spread stays tight: never more than a few apart.
        let loads: Vec<usize> = all.iter().map(|e| e.in_flight()).collect();
        let (min, max) = (loads.iter().min().copied(), loads.iter().max().copied());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 4),
            "{loads:?}"
        );
        drop(leases);
        assert!(all.iter().all(|e| e.in_flight() == 0));
    }

    #[test]
    fn skips_excluded_and_ejected_instances() {
        let all = endpoints(3);
        all[0].eject(Duration::from_secs(60));
        for _ in 0..50 {
            let picked = pick(&all, &["svc-1".to_owned()]).expect("one left");
            assert_eq!(picked.id, "svc-2");
        }
        // Everything ejected: still try one rather than fail.
        all[2].eject(Duration::from_secs(60));
        assert!(pick(&all, &["svc-1".to_owned()]).is_some());
        assert!(pick(&all, &["svc-0".into(), "svc-1".into(), "svc-2".into()]).is_none());
    }

    #[test]
    fn consecutive_failures_eject_an_outlier_for_longer_each_time() {
        let all = endpoints(2);
        let policy = OutlierPolicy::default();
        for _ in 0..4 {
            assert_eq!(all[0].record_outcome(false, &policy, &all), None);
        }
        // A success in between starts the count again.
        assert_eq!(all[0].record_outcome(true, &policy, &all), None);
        for _ in 0..4 {
            assert_eq!(all[0].record_outcome(false, &policy, &all), None);
        }
        assert_eq!(
            all[0].record_outcome(false, &policy, &all),
            Some(policy.base_ejection)
        );
        assert!(all[0].is_ejected());
        // Back from ejection and failing again: twice as long.
        all[0].eject(Duration::ZERO);
        for _ in 0..4 {
            assert_eq!(all[0].record_outcome(false, &policy, &all), None);
        }
        assert_eq!(
            all[0].record_outcome(false, &policy, &all),
            Some(policy.base_ejection * 2)
        );
    }

    #[test]
    fn never_ejects_more_than_the_allowed_share() {
        let policy = OutlierPolicy::default();
        let lone = endpoints(1);
        for _ in 0..20 {
            assert_eq!(lone[0].record_outcome(false, &policy, &lone), None);
        }
        assert!(!lone[0].is_ejected(), "a lone instance stays");

        let pair = endpoints(2);
        for _ in 0..5 {
            pair[0].record_outcome(false, &policy, &pair);
        }
        assert!(pair[0].is_ejected());
        for _ in 0..20 {
            assert_eq!(pair[1].record_outcome(false, &policy, &pair), None);
        }
        assert!(!pair[1].is_ejected(), "half of two is one");
    }

    #[tokio::test]
    async fn static_instances_resolve_without_a_registry() {
        let mut config = DiscoveryConfig {
            registry: None,
            ..DiscoveryConfig::default()
        };
        config
            .static_instances
            .insert("users".into(), vec!["http://127.0.0.1:1/".into()]);
        let discovery = Discovery::new(&config, Transport::http(), &CancellationToken::new());
        let lease = discovery.pick("users").await.expect("static");
        assert_eq!(lease.endpoint().address, "http://127.0.0.1:1");
        assert_eq!(
            discovery.pick("orders").await.expect_err("unknown"),
            DiscoveryError::Unresolvable("orders".into())
        );
    }
}
