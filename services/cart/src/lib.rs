//! The cart service: shopping carts on a key-value store.
//!
//! A cart holds skus and quantities only; showing it asks the catalog for current names, prices
//! and stock. Anonymous carts are found by an id handed to the client; a customer's by their
//! identity, and an anonymous cart merges into it on the first request after login. Carts live
//! in an embedded redb file by default, or in Redis (`cart.store = "redis://…"`) when several
//! cart replicas must share them; idle carts expire.
//!
//! # Layout
//! - [`domain`]: what a cart is and how it changes (no I/O).
//! - [`store`]: the store trait, with an embedded (redb) and a Redis implementation.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis::client::ServiceClient;
use chassis::config::{ConfigError, ServiceConfig};
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::Limits;
use crate::store::CartStore;

/// The service name.
pub const SERVICE: &str = "cart";

/// How often expired carts are purged from the embedded store.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The service's configuration: the chassis keys and the `[cart]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[cart]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `embedded` (a redb file under the data directory) or a Redis URL (`redis://host:6379`).
    pub store: String,
    /// Prefix of cart keys in Redis.
    pub redis_prefix: String,
    /// Time after its last change at which a cart is forgotten.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// Most distinct products in one cart.
    pub max_lines: usize,
    /// Most units of one product in one cart.
    pub max_quantity: u32,
    /// The catalog's name in discovery.
    pub catalog_service: String,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            store: "embedded".to_owned(),
            redis_prefix: "bazaar:cart:".to_owned(),
            idle_ttl: Duration::from_secs(7 * 24 * 3600),
            max_lines: limits.max_lines,
            max_quantity: limits.max_quantity,
            catalog_service: "catalog".to_owned(),
        }
    }
}

/// A cart service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the cart store and binds the listener. `shutdown` also stops the discovery watches.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let settings = &config.settings;
        if settings.max_lines == 0 || settings.max_quantity == 0 {
            return Err(ConfigError::invalid(
                "cart.max_lines",
                settings.max_lines,
                "limits must be at least 1",
            )
            .into());
        }
        let store: Arc<dyn CartStore> = if settings.store == "embedded" {
            let path = config.chassis.data_path("cart.redb");
            Arc::new(
                store::embedded::EmbeddedStore::open(&path, settings.idle_ttl)
                    .map_err(|e| StartError::other("opening the cart store", e))?,
            )
        } else if settings.store.starts_with("redis://") || settings.store.starts_with("rediss://")
        {
            let redis = store::redis::RedisStore::connect(
                &settings.store,
                &settings.redis_prefix,
                settings.idle_ttl,
            )
            .await
            .map_err(|e| StartError::other("connecting to Redis", e))?;
            Arc::new(redis)
        } else {
            return Err(ConfigError::invalid(
                "cart.store",
                format!("{:?}", settings.store),
                "expected embedded or a redis:// URL",
            )
            .into());
        };
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let server = Server::bind(info, &config.chassis)
            .await?
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi());
        let catalog = ServiceClient::over_http(
            server.transport(),
            &config.chassis.discovery,
            SERVICE,
            shutdown,
        );
        let state = api::AppState {
            store,
            limits: Limits {
                max_lines: settings.max_lines,
                max_quantity: settings.max_quantity,
            },
            catalog,
            catalog_service: settings.catalog_service.clone(),
        };
        Ok(Self { server, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled, purging expired carts meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let store = Arc::clone(&self.state.store);
        let purger = chassis::worker::every(PURGE_EVERY, shutdown.child_token(), move || {
            let store = Arc::clone(&store);
            async move {
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "expired carts purged"),
                    Err(error) => {
                        tracing::warn!(error = %chassis::error::ErrorChain(&error), "purging carts failed")
                    }
                }
            }
        });
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = purger.await;
        result
    }
}
