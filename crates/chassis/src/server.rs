//! Start-up, serving and graceful shutdown of a service's HTTP listener.
//!
//! Every Bazaar process starts the same way: [`Server::bind`] binds the listener (port 0 is
//! fine) and logs `listening on http://…`, the one stable line tools read to learn the address;
//! the service builds its router and state; [`Server::serve`] adds the health and metrics
//! routes and the request middleware, registers with the registry and serves until `shutdown`
//! is cancelled. Shutdown then runs in this order: stop reporting ready, deregister (so gateways
//! stop sending), stop accepting, let in-flight requests finish within `http.shutdown_grace`,
//! return.
//!
//! A service may serve the same routes over HTTPS (HTTP/2 and HTTP/1.1) on a second port too
//! ([`Server::with_tls`], [`crate::tls`]), announced by a `serving HTTPS on https://…` line.
//!
//! # Layout
//! - [`middleware`]: request id, request span, metrics, access log, timeout, problem bodies.
//! - [`front`]: a service's own hot path ahead of the router (the gateway's proxying).

pub mod front;
mod linger;
pub mod middleware;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::serve::ListenerExt;
use contracts::discovery::Registration;
use contracts::release::FAULTS_PREFIX;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::client::Transport;
use crate::config::{ChassisConfig, ConfigError, DiscoveryConfig, EventsConfig, HttpConfig};
use crate::db::{Db, DbError};
use crate::discovery::{Registrar, RegistryClient};
use crate::events::Events;
use crate::faults::Faults;
use crate::health::{self, Readiness};
use crate::metrics::{self, HttpMetrics};
use crate::mtls::Identity;
use crate::tls::{self, TlsConfig, TlsListener};

/// The wording of the line that announces the listener; `bazaar up` matches on it.
pub const LISTENING_PREFIX: &str = "listening on ";

/// The wording of the line that announces the HTTPS listener, when there is one.
pub const TLS_LISTENING_PREFIX: &str = "serving HTTPS on ";

/// Log target of the start and stop lines, which are written whatever `log.level` says: tools
/// (`bazaar up`) read them, and there are only a few per process lifetime.
pub const LIFECYCLE: &str = "lifecycle";

/// Who this process is: logged on every line, registered, exported as a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service name (`users`).
    pub name: String,
    /// Version of the code, or the configured override.
    pub version: String,
    /// Unique id of this instance (`users-1`).
    pub instance_id: String,
}

impl ServiceInfo {
    /// The identity of an instance of `name` built from code at `version`, with the overrides
    /// of `config`.
    pub fn new(name: &str, version: &str, config: &ChassisConfig) -> Self {
        let instance_id = config.instance_id.clone().unwrap_or_else(|| {
            let suffix: u32 = rand::random_range(0..0x100_0000);
            format!("{name}-{suffix:06x}")
        });
        Self {
            name: name.to_owned(),
            version: config.version.clone().unwrap_or_else(|| version.to_owned()),
            instance_id,
        }
    }
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (exit code 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("opening the database")]
    Database(#[from] DbError),
    /// The listener could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    /// A service-specific start-up step failed.
    #[error("{context}")]
    Other {
        /// The step.
        context: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StartError {
    /// Wraps a service-specific failure.
    pub fn other(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Other {
            context,
            source: source.into(),
        }
    }
}

/// A bound listener with everything the chassis adds around a service's routes.
#[derive(Debug)]
pub struct Server {
    info: ServiceInfo,
    http: HttpConfig,
    discovery: DiscoveryConfig,
    listener: Listener,
    local_addr: SocketAddr,
    tls: Option<TlsListener>,
    /// Plain HTTP for probes and scrapers: health and metrics only (`http.admin_port`).
    admin: Option<TcpListener>,
    /// Who this service is to others, with mTLS.
    identity: Option<Identity>,
    /// The services of this process, which call this one in place once it serves.
    exchange: Option<crate::inproc::Exchange>,
    /// How it calls others (and the registry): one pool of connections for the process.
    transport: Transport,
    url: String,
    metrics: Registry,
    database: Option<Db>,
    events_config: EventsConfig,
    events: Option<Events>,
    registers: bool,
    /// Where it registers, and fault rules come from: the registry, or etcd.
    registry: Option<RegistryClient>,
    /// Requests the service answers ahead of its router.
    front: Option<front::Front>,
    /// The app keeps its own deadlines; no `http.request_timeout` around it.
    own_deadlines: bool,
    /// The service's OpenAPI document, served at `/openapi.json`.
    openapi: Option<Arc<str>>,
}

/// The main listener: plain HTTP, or HTTPS that only services of the CA may call (mTLS).
#[derive(Debug)]
enum Listener {
    Plain(TcpListener),
    Mutual(TlsListener),
}

impl Server {
    /// Binds the listener of `config.http` and logs its address. With `[mtls]` configured it
    /// is an mTLS listener: only clients with a certificate from the CA get through, and
    /// each request carries the calling service ([`crate::mtls::CallerService`]).
    pub async fn bind(info: ServiceInfo, config: &ChassisConfig) -> Result<Self, StartError> {
        Self::bind_listener(info, config, true).await
    }

    /// Binds a listener for anyone, without client certificates, whatever `[mtls]` says: the
    /// gateway's, at the edge. Its calls to services still present the service's certificate.
    pub async fn bind_public(
        info: ServiceInfo,
        config: &ChassisConfig,
    ) -> Result<Self, StartError> {
        Self::bind_listener(info, config, false).await
    }

    async fn bind_listener(
        info: ServiceInfo,
        config: &ChassisConfig,
        mutual: bool,
    ) -> Result<Self, StartError> {
        let identity = Identity::configured(&config.mtls)?;
        let mut transport = Transport::with_identity(identity.clone());
        if let Some(exchange) = &config.exchange {
            transport = transport.with_exchange(exchange.clone());
        }
        let registry =
            RegistryClient::from_config(&config.discovery, &transport).map_err(|error| {
                let endpoints = config
                    .discovery
                    .etcd
                    .as_ref()
                    .map(|etcd| etcd.endpoints.join(","))
                    .unwrap_or_default();
                ConfigError::invalid("discovery.etcd.endpoints", endpoints, error.to_string())
            })?;
        let addr = SocketAddr::new(config.http.host, config.http.port);
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = tcp
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (listener, scheme) = match identity.as_ref().filter(|_| mutual) {
            Some(identity) => (
                Listener::Mutual(
                    TlsListener::new(
                        tcp,
                        identity.server_config(),
                        TlsConfig::default().handshake_timeout,
                    )
                    .map_err(|source| StartError::Bind { addr, source })?,
                ),
                "https",
            ),
            None => (Listener::Plain(tcp), "http"),
        };
        let url = match &config.http.advertise_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if local_addr.ip().is_unspecified() => {
                // Bound to every interface (a container): others reach it on the address it
                // reaches the registry from, or on loopback when the registry is local.
                let reached = match &config.discovery.etcd {
                    Some(etcd) => etcd.endpoints.first().map(String::as_str),
                    None => config.discovery.registry.as_deref(),
                };
                let ip = match reached {
                    Some(url) => outbound_ip(url).await,
                    None => None,
                };
                let ip = ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
                format!("{scheme}://{}", SocketAddr::new(ip, local_addr.port()))
            }
            None => format!("{scheme}://{local_addr}"),
        };
        tracing::info!(target: LIFECYCLE, "{LISTENING_PREFIX}{url}");
        let admin = match config.http.admin_port {
            Some(port) => {
                let addr = SocketAddr::new(config.http.host, port);
                let admin = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                if let Ok(addr) = admin.local_addr() {
                    tracing::info!(target: LIFECYCLE, "health and metrics also on http://{addr}");
                }
                Some(admin)
            }
            None => None,
        };
        let mut metrics = Registry::with_prefix("bazaar");
        metrics::register_build_info(&mut metrics, &info);
        Ok(Self {
            info,
            http: config.http.clone(),
            discovery: config.discovery.clone(),
            listener,
            local_addr,
            tls: None,
            admin,
            identity,
            transport,
            url,
            metrics,
            database: None,
            events_config: config.events.clone(),
            events: None,
            registers: registry.is_some(),
            registry,
            front: None,
            own_deadlines: false,
            openapi: None,
            exchange: config.exchange.clone(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves HTTPS too, per `tls` (read from the configuration section `section`): binds its
    /// listener on `http.host` and logs its address.
    pub async fn with_tls(mut self, tls: &TlsConfig, section: &str) -> Result<Self, StartError> {
        self.tls = Some(bind_tls(self.local_addr.ip(), tls, section).await?);
        Ok(self)
    }

    /// The bound address of the health and metrics listener (`http.admin_port`), when there
    /// is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|admin| admin.local_addr().ok())
    }

    /// The bound address of the HTTPS listener, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
            .as_ref()
            .and_then(|tls| axum::serve::Listener::local_addr(tls).ok())
            .map(|peer| peer.addr)
    }

    /// How this service calls others: presenting its certificate when mTLS is on. Build the
    /// service's clients on it, so they share its connections.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The service's mTLS identity, when mTLS is on.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The base URL other processes reach this one on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Who this process is.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// The metrics registry, for the service to register its own metrics before serving.
    pub fn metrics_registry(&mut self) -> &mut Registry {
        &mut self.metrics
    }

    /// Makes readiness depend on `db` answering, and reports its pool in the metrics.
    #[must_use]
    pub fn with_database(mut self, db: Db) -> Self {
        self.metrics
            .register_collector(Box::new(metrics::PoolMetrics(db.clone())));
        self.database = Some(db);
        self
    }

    /// This service's events in `db` (migrated with [`crate::events::migrator`]), with their
    /// metrics registered here; hand them back (with a consumer, if any) to
    /// [`Server::with_events`].
    pub fn events(&mut self, db: &Db) -> Events {
        Events::new(
            db.clone(),
            &self.info.name,
            &self.events_config,
            &mut self.metrics,
        )
    }

    /// Serves the events' feed and dead letters, and runs their relay, cleaning and consumer
    /// while the server runs (stopped once requests have drained).
    #[must_use]
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// Serves without registering (the registry itself).
    #[must_use]
    pub fn without_registration(mut self) -> Self {
        self.registers = false;
        self
    }

    /// Leaves deadlines to the app: the chassis does not hold requests to `http.request_timeout`.
    /// For the gateway, which gives each route its own upstream deadline and bounds the rest
    /// (body reads, token key fetches, rate-limit store calls) itself; a second timer around
    /// every proxied request would only cost time.
    #[must_use]
    pub fn with_own_deadlines(mut self) -> Self {
        self.own_deadlines = true;
        self
    }

    /// Serves `document` at `/openapi.json`, with the service's version; any caller may read it
    /// (the gateway merges them into `/api/openapi.json`).
    #[must_use]
    ///
    /// The answers the chassis gives on any route are added where the document leaves them out
    /// ([`crate::error::document_common_problems`]).
    pub fn with_openapi(mut self, mut document: utoipa::openapi::OpenApi) -> Self {
        document.info.version.clone_from(&self.info.version);
        match serde_json::to_value(&document) {
            Ok(mut json) => {
                crate::error::document_common_problems(&mut json);
                self.openapi = Some(json.to_string().into());
            }
            Err(error) => tracing::error!(%error, "the OpenAPI document does not serialize"),
        }
        self
    }

    /// Sends the requests `front` takes to its service instead of the router: a proxy's hot
    /// path, which matches its own routes ([`front`]). They keep the chassis's middleware.
    #[must_use]
    pub fn with_front(mut self, front: front::Front) -> Self {
        self.front = Some(front);
        self
    }

    /// Serves `app` until `shutdown` is cancelled, then shuts down gracefully.
    ///
    /// `app` must not set a fallback: the chassis answers unknown routes with a problem body.
    pub async fn serve(self, app: Router, shutdown: CancellationToken) -> Result<(), StartError> {
        let registrar = if self.registers {
            self.registrar()
        } else {
            None
        };
        let readiness = Arc::new(Readiness::new(self.database, self.registers));
        let mut metrics_registry = self.metrics;
        let http_metrics = HttpMetrics::register(&mut metrics_registry);
        // Fault rules come from the registry; an instance without one has none to apply.
        let faults_stop = CancellationToken::new();
        let faults = self.registry.clone().map(|registry| {
            let faults = Arc::new(Faults::new(&self.info, &mut metrics_registry));
            let apply = Arc::clone(&faults);
            tokio::spawn(crate::discovery::watch_prefix(
                registry,
                FAULTS_PREFIX.to_owned(),
                faults_stop.clone(),
                move |entries| apply.replace(&entries),
            ));
            faults
        });
        let metrics_registry = Arc::new(metrics_registry);
        let observer = Arc::new(middleware::Observer::new(
            http_metrics,
            &self.http,
            self.own_deadlines,
        ));

        let events_stop = CancellationToken::new();
        // The admin port answers until the very end: a probe during the drain sees `draining`.
        let stop_admin = CancellationToken::new();
        let (app, event_tasks) = match &self.events {
            Some(events) => (app.merge(events.routes()), events.start(&events_stop)),
            None => (app, Vec::new()),
        };
        let app = match self.openapi {
            Some(document) => app.route(
                "/openapi.json",
                get(move || {
                    std::future::ready(axum::response::IntoResponse::into_response((
                        [(http::header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )))
                }),
            ),
            None => app,
        };
        let render_metrics = move || std::future::ready(metrics::render(&metrics_registry));
        // Probes and scrapes are not the service's traffic: the admin port counts none of them.
        let admin = self.admin.map(|listener| {
            let routes = health::routes(Arc::clone(&readiness), &self.info)
                .route("/metrics", get(render_metrics.clone()))
                .fallback(middleware::not_found);
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop_admin.clone().cancelled_owned())
                .into_future()
        });
        let mut app = app
            .merge(health::routes(Arc::clone(&readiness), &self.info))
            .route("/metrics", get(render_metrics));
        app = app.fallback(middleware::not_found);
        // The middleware around both the router and the front.
        let observed = tower::ServiceBuilder::new()
            .layer(middleware::ObserveLayer(observer))
            .option_layer(faults.map(crate::faults::FaultLayer))
            .map_response(axum::response::IntoResponse::into_response)
            .layer(CatchPanicLayer::custom(middleware::panic_response));
        // One stack, one `layer` call: axum boxes the service of every route once per `layer`,
        // so five calls cost five boxed futures per request.
        let stack = observed
            .clone()
            .layer(RequestBodyLimitLayer::new(self.http.body_limit))
            .layer(DefaultBodyLimit::max(self.http.body_limit));
        let app = app
            .method_not_allowed_fallback(middleware::method_not_allowed)
            .layer(stack);
        // The front gets the same middleware, without the router and its body limits.
        let front = self.front.map(|front| front::Front {
            takes: front.takes,
            service: BoxCloneSyncService::new(observed.service(front.service)),
        });
        let split = |secure| front::Split {
            app: app.clone(),
            front: front.clone(),
            secure,
        };

        // Filed before it registers: by the time others find it, they can call it in place.
        if let Some(exchange) = &self.exchange {
            exchange.file(&self.url, BoxCloneSyncService::new(split(false)));
        }
        let registration_stop = CancellationToken::new();
        if let Some(registrar) = registrar.clone() {
            tokio::spawn(registrar.run(Arc::clone(&readiness), registration_stop.clone()));
        }

        let stop_accepting = CancellationToken::new();
        let secure = self.tls.map(|listener| {
            // Requests over TLS carry a mark, so the service can tell (and redirect the rest).
            axum::serve(listener, tls::WithPeer(split(true)))
                .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
                .into_future()
        });
        let main = match self.listener {
            Listener::Plain(listener) => {
                // Responses go out as soon as they are written, not when the previous segment
                // is acknowledged (Nagle's algorithm would add up to a delayed-ACK timeout).
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, front::WithAddr(split(false)))
                    .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
                    .into_future()
            }
            Listener::Mutual(listener) => axum::serve(listener, tls::WithPeer(split(false)))
                .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
                .into_future(),
        };
        let serving = async move {
            match secure {
                Some(secure) => tokio::try_join!(main, secure).map(|((), ())| ()),
                None => main.await,
            }
        };
        let admin_task = admin.map(tokio::spawn);
        let mut serving = std::pin::pin!(serving);
        tokio::select! {
            result = &mut serving => {
                if let Some(exchange) = &self.exchange {
                    exchange.withdraw(&self.url);
                }
                events_stop.cancel();
                faults_stop.cancel();
                stop_admin.cancel();
                return result.map_err(StartError::Serve);
            }
            () = shutdown.cancelled() => {}
        }

        tracing::info!(target: LIFECYCLE, "shutting down: deregistering, then draining in-flight requests");
        readiness.set_draining();
        if let Some(exchange) = &self.exchange {
            exchange.withdraw(&self.url);
        }
        registration_stop.cancel();
        faults_stop.cancel();
        if let Some(registrar) = registrar {
            registrar.deregister(Duration::from_secs(2)).await;
        }
        stop_accepting.cancel();
        let grace = self.http.shutdown_grace;
        match tokio::time::timeout(grace, serving).await {
            Ok(result) => result.map_err(StartError::Serve)?,
            Err(_) => tracing::warn!(
                ?grace,
                "in-flight requests outlived the shutdown grace period; closing them"
            ),
        }
        // An event being handled is abandoned if it takes too long: its transaction rolls
        // back and it is delivered again later.
        events_stop.cancel();
        for task in event_tasks {
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!("an event task outlived the shutdown; abandoned");
            }
        }
        stop_admin.cancel();
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        tracing::info!(target: LIFECYCLE, "stopped");
        Ok(())
    }

    fn registrar(&self) -> Option<Registrar> {
        let client = self.registry.clone()?;
        let registration = Registration {
            service: self.info.name.clone(),
            address: self.url.clone(),
            version: self.info.version.clone(),
            health_url: format!("{}/health/ready", self.url),
            ttl_ms: u64::try_from(self.discovery.ttl.as_millis()).ok(),
            meta: BTreeMap::from([("pid".to_owned(), std::process::id().to_string())]),
        };
        Some(Registrar::new(
            client,
            self.info.instance_id.clone(),
            registration,
            self.discovery.heartbeat,
        ))
    }
}

/// The local address this host sends from to reach the host of `url`; `None` when that host is
/// a loopback address (or cannot be resolved or routed to). Connecting a UDP socket only picks
/// the route: nothing is sent.
async fn outbound_ip(url: &str) -> Option<std::net::IpAddr> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let target = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    if target.ip().is_loopback() {
        return None;
    }
    let any: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(any).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// Binds the HTTPS listener of `tls` on `host` and logs its address.
async fn bind_tls(
    host: std::net::IpAddr,
    tls: &TlsConfig,
    section: &str,
) -> Result<TlsListener, StartError> {
    let server_config = tls::server_config(tls, section).map_err(|error| match &error {
        tls::TlsError::File { key, path, reason } => {
            ConfigError::invalid(key, path.display(), reason.clone())
        }
        other => ConfigError::invalid(section, tls.cert.display(), other.to_string()),
    })?;
    let addr = SocketAddr::new(host, tls.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let listener = TlsListener::new(listener, server_config, tls.handshake_timeout)
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = axum::serve::Listener::local_addr(&listener)
        .map_err(|source| StartError::Bind { addr, source })?
        .addr;
    let shown = if bound.ip().is_unspecified() || bound.ip().is_loopback() {
        format!("https://localhost:{}", bound.port())
    } else {
        format!("https://{bound}")
    };
    tracing::info!(target: LIFECYCLE, "{TLS_LISTENING_PREFIX}{shown}");
    Ok(listener)
}

/// A token cancelled on SIGINT or SIGTERM, for binaries.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        }
        _ => {
            // Without signal handlers (should not happen on Unix), fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_registry_is_reached_on_loopback() {
        for url in [
            "http://127.0.0.1:7701",
            "https://localhost:7701",
            "http://[::1]:7701",
        ] {
            assert_eq!(outbound_ip(url).await, None, "{url}");
        }
        for unusable in ["", "not a url", "http://host.invalid:7701"] {
            assert_eq!(outbound_ip(unusable).await, None, "{unusable:?}");
        }
    }
}
