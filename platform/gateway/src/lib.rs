//! The API gateway: the one door into Bazaar.
//!
//! Every request under the route table (`routes.toml`, extended by configuration) is matched
//! to an upstream service, its caller checked as the route requires (access tokens verified
//! against the users JWKS), and forwarded to an instance found through discovery, with the
//! verified identity in headers the client cannot forge. A dead instance costs a retry, not an
//! error. The gateway's metrics count requests per route and per upstream version and instance.
//!
//! # Layout
//! - [`routes`]: the route table and its matching (no I/O).
//! - [`auth`]: token verification and the JWKS cache.
//! - [`proxy`]: the handler.
//! - [`resilience`]: retry budgets and circuit breakers per upstream service.
//! - [`ratelimit`]: token buckets, in process or in Redis.
//! - [`cors`]: which web origins may call the API.
//! - [`dashboard`]: `GET /api/dashboard`, gathered from several services.
//! - [`metrics`]: upstream, auth, rate-limit and resilience metrics.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cors;
pub mod dashboard;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod ratelimit;
pub mod resilience;
pub mod routes;
pub mod traffic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use chassis::client::ServiceClient;
use chassis::config::{ConfigError, ServiceConfig};
use chassis::discovery::Discovery;
use chassis::server::front::Front;
use chassis::tls::TlsConfig;
use chassis::{Server, ServiceInfo, StartError};
use contracts::release::TRAFFIC_PREFIX;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use crate::routes::{RouteConfig, RouteTable};

/// The service name.
pub const SERVICE: &str = "gateway";

/// The gateway's own routes; every other path is looked up in the route table.
const DASHBOARD: &str = "/api/dashboard";
const OPENAPI: &str = "/api/openapi.json";

/// The service's configuration: the chassis keys and the `[gateway]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[gateway]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The route table; defaults to the shipped `routes.toml`.
    pub routes: Vec<RouteConfig>,
    /// Routes added to `routes`, for deployments that extend rather than replace the table.
    pub extra_routes: Vec<RouteConfig>,
    /// Upstream deadline of routes that set none.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Most instances one request is tried on.
    pub max_attempts: usize,
    /// Service that issues access tokens and serves the JWKS.
    pub token_service: String,
    /// Expected `iss` of access tokens.
    pub issuer: String,
    /// Expected `aud` of access tokens.
    pub audience: String,
    /// How often the JWKS is fetched even when no unknown key appears.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Where rate-limit buckets live: `local` (this process) or a Redis URL, shared by every
    /// gateway replica (`up --ratelimit redis://…`).
    pub ratelimit_store: String,
    /// Deadline of each part of `GET /api/dashboard`.
    #[serde(with = "humantime_serde")]
    pub dashboard_part_timeout: Duration,
    /// Prefix of rate-limit keys in Redis.
    pub ratelimit_prefix: String,
    /// When Redis cannot be asked: `local` (decide with this gateway's own buckets), `open`
    /// (let requests through) or `closed` (503).
    pub ratelimit_on_error: ratelimit::OnStoreError,
    /// Retry budget, circuit breakers and outlier ejection.
    pub resilience: resilience::ResilienceSettings,
    /// HTTPS (HTTP/2 and HTTP/1.1) on a second port, with this certificate and key; `bazaar up`
    /// sets it to a certificate from its development CA unless it is configured.
    pub tls: Option<TlsConfig>,
    /// Answer plain-HTTP requests to routes with `308 Permanent Redirect` to the same URL over
    /// HTTPS (health and metrics stay on plain HTTP for the platform's own checks).
    pub redirect_to_https: bool,
    /// Which web origins may call the API from a browser.
    pub cors: cors::CorsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            routes: routes::default_routes(),
            extra_routes: Vec::new(),
            upstream_timeout: Duration::from_secs(10),
            max_attempts: 3,
            token_service: "users".to_owned(),
            issuer: "bazaar-users".to_owned(),
            audience: "bazaar".to_owned(),
            jwks_refresh: Duration::from_secs(300),
            ratelimit_store: "local".to_owned(),
            ratelimit_prefix: "bazaar:ratelimit:".to_owned(),
            dashboard_part_timeout: Duration::from_millis(500),
            ratelimit_on_error: ratelimit::OnStoreError::Local,
            resilience: resilience::ResilienceSettings::default(),
            tls: None,
            redirect_to_https: false,
            cors: cors::CorsSettings::default(),
        }
    }
}

/// A gateway ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    /// The HTTPS port plain-HTTP requests are redirected to, when they are.
    redirect: Option<u16>,
    /// Cross-origin policy, when CORS is on.
    cors: Option<tower_http::cors::CorsLayer>,
    gateway: Arc<proxy::Gateway>,
    jwks_refresh: Duration,
    shutdown: CancellationToken,
}

impl Application {
    /// Checks the route table and binds the listener. `shutdown` also stops the discovery
    /// watches, so pass the token that [`Self::run_until_stopped`] gets.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let settings = &config.settings;
        let table = RouteTable::new(
            &[
                ("gateway.routes", &settings.routes),
                ("gateway.extra_routes", &settings.extra_routes),
            ],
            settings.upstream_timeout,
        )?;
        if settings.max_attempts == 0 {
            return Err(
                ConfigError::invalid("gateway.max_attempts", 0, "must be at least 1").into(),
            );
        }
        if let Some((key, value, why)) = settings.resilience.invalid() {
            return Err(ConfigError::invalid(key, value, why).into());
        }
        let limiter = match settings.ratelimit_store.as_str() {
            "local" => ratelimit::Limiter::Local(ratelimit::LocalStore::default()),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let store =
                    ratelimit::RedisStore::new(url, &settings.ratelimit_prefix).map_err(|e| {
                        ConfigError::invalid("gateway.ratelimit_store", url, e.to_string())
                    })?;
                ratelimit::Limiter::Redis(Box::new(store), settings.ratelimit_on_error)
            }
            other => {
                return Err(ConfigError::invalid(
                    "gateway.ratelimit_store",
                    format!("{other:?}"),
                    "expected local or a redis:// URL",
                )
                .into());
            }
        };
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let cors = settings.cors.layer()?;
        if settings.redirect_to_https && settings.tls.is_none() {
            return Err(ConfigError::invalid(
                "gateway.redirect_to_https",
                true,
                "needs gateway.tls (a certificate to serve HTTPS with)",
            )
            .into());
        }
        // The edge: anyone may connect; calls to services present the gateway's certificate.
        let mut server = Server::bind_public(info, &config.chassis)
            .await?
            .with_own_deadlines();
        let transport = server.transport().clone();
        let discovery = Discovery::new(&config.chassis.discovery, transport.clone(), shutdown);
        let client = ServiceClient::new(
            discovery.clone(),
            transport.clone(),
            &config.chassis.discovery,
            SERVICE,
        );
        let verifier = auth::Verifier::new(
            client.clone(),
            &settings.token_service,
            &settings.issuer,
            &settings.audience,
        );

        if let Some(tls) = &settings.tls {
            server = server.with_tls(tls, "gateway.tls").await?;
        }
        let redirect = match server.tls_addr() {
            Some(addr) if settings.redirect_to_https => Some(addr.port()),
            _ => None,
        };
        let metrics = metrics::GatewayMetrics::register(server.metrics_registry());
        let upstreams = table
            .routes()
            .iter()
            .map(|route| {
                metrics.circuit_state(&route.service, resilience::BreakerState::Closed);
                (
                    route.service.clone(),
                    proxy::Upstream::new(&settings.resilience),
                )
            })
            .collect();
        let gateway = proxy::Gateway {
            table,
            discovery,
            transport,
            verifier: Arc::new(verifier),
            metrics,
            max_attempts: settings.max_attempts,
            body_limit: config.chassis.http.body_limit,
            body_timeout: config.chassis.http.request_timeout,
            limiter,
            client,
            dashboard_part_timeout: settings.dashboard_part_timeout,
            outliers: settings.resilience.outliers.clone(),
            upstreams,
            policies: traffic::Policies::default(),
        };
        Ok(Self {
            server,
            redirect,
            cors,
            gateway: Arc::new(gateway),
            jwks_refresh: settings.jwks_refresh,
            shutdown: shutdown.clone(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The bound address of the HTTPS listener, when `gateway.tls` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.server.tls_addr()
    }

    /// Serves until `shutdown` is cancelled, refreshing the token keys meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        // The first fetch happens at start, so the first signed-in request is fast.
        let verifier = Arc::clone(&self.gateway.verifier);
        let refresher =
            chassis::worker::every(self.jwks_refresh, shutdown.child_token(), move || {
                let verifier = Arc::clone(&verifier);
                async move {
                    if let Err(error) = verifier.refetch().await {
                        tracing::debug!(%error, "token keys not fetched yet");
                    }
                }
            });
        let connecting = {
            let gateway = Arc::clone(&self.gateway);
            tokio::spawn(async move { gateway.limiter.connect().await })
        };
        let policies = self.gateway.discovery.registry().cloned().map(|registry| {
            let gateway = Arc::clone(&self.gateway);
            let mut weighted: Vec<String> = Vec::new();
            tokio::spawn(chassis::discovery::watch_prefix(
                registry,
                TRAFFIC_PREFIX.to_owned(),
                shutdown.child_token(),
                move |entries| {
                    let applied = gateway.policies.replace(&entries);
                    for service in weighted.drain(..) {
                        gateway.metrics.candidate_weight(&service, 0);
                    }
                    for (service, policy) in applied {
                        gateway.metrics.candidate_weight(&service, policy.weight);
                        weighted.push(service);
                    }
                },
            ))
        });
        let redirect = self.redirect.map(|port| {
            axum::middleware::from_fn(move |request, next| {
                proxy::redirect_to_https(port, request, next)
            })
        });
        // Every path but the gateway's own two is proxied, ahead of the router (cheaper than
        // matching it twice); both sides get the same CORS and HTTPS redirect.
        let front = Front {
            takes: Arc::new(|request: &Request| {
                !matches!(request.uri().path(), DASHBOARD | OPENAPI)
            }),
            service: BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .option_layer(redirect.clone())
                    .option_layer(self.cors.clone())
                    .service(proxy::service(Arc::clone(&self.gateway))),
            ),
        };
        let mut router = Router::new()
            .route(DASHBOARD, get(dashboard::dashboard))
            .route(OPENAPI, get(openapi::document))
            .with_state(self.gateway);
        if let Some(cors) = self.cors {
            router = router.layer(cors);
        }
        if let Some(redirect) = redirect {
            router = router.layer(redirect);
        }
        let result = self
            .server
            .with_front(front)
            .serve(router, shutdown.clone())
            .await;
        shutdown.cancel();
        self.shutdown.cancel();
        connecting.abort();
        let _ = refresher.await;
        if let Some(policies) = policies {
            let _ = policies.await;
        }
        result
    }
}
