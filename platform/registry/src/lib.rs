//! The registry: which instances of which services exist, and whether they are healthy.
//!
//! Instances register themselves (`PUT /v1/instances/{id}`) and heartbeat within their TTL; the
//! registry also polls each one's health URL. Queries return passing instances, and blocking
//! queries (`?index=N&wait=30s`) hold the request until the answer changes, which is how every
//! process's discovery cache stays current without polling. A small KV store, persisted in the
//! registry's own database, holds traffic policies and fault rules.
//!
//! Instances live in memory: after a restart the registry learns them again from their next
//! heartbeat (it answers 404, and they register again).
//!
//! # Layout
//! - [`catalog`]: instances and the rules that move their health (no I/O).
//! - [`checks`]: the sweep that runs HTTP checks and expires TTLs.
//! - [`kv`]: the KV store.
//! - [`index`]: the change counter blocking queries wait on.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod checks;
pub mod index;
pub mod kv;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis::config::{ConfigError, ServiceConfig};
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "registry";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[registry]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[registry]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How often each instance's health URL is polled.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long a health check may take before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
    /// Failed checks in a row that turn an instance critical; a refused connection (nothing
    /// listening) turns it critical at once.
    pub failures_before_critical: u32,
    /// How long an instance may stay critical before it is removed.
    #[serde(with = "humantime_serde")]
    pub deregister_after: Duration,
    /// Longest `wait` a blocking query may ask for.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(1),
            failures_before_critical: 3,
            deregister_after: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
        }
    }
}

/// A registry ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
    settings: Settings,
}

impl Application {
    /// Opens the database, loads the KV store and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if config.settings.failures_before_critical == 0 {
            return Err(ConfigError::invalid(
                "registry.failures_before_critical",
                0,
                "must be at least 1",
            )
            .into());
        }
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &MIGRATOR,
        )
        .await?;
        let kv = kv::KvStore::open(db.clone())
            .await
            .map_err(|e| StartError::other("loading the KV store", e))?;
        let catalog = catalog::Catalog::new(
            Arc::clone(kv.index()),
            config.settings.check_interval,
            config.settings.failures_before_critical,
            config.settings.deregister_after,
        );
        let state = api::AppState {
            catalog: Arc::new(catalog),
            kv: Arc::new(kv),
            max_wait: config.settings.max_wait,
        };
        let server = Server::bind(info, &config.chassis)
            .await?
            .with_database(db)
            .without_registration()
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi())
            // Every answer comes from memory at once, except blocking queries, which are held
            // up to `registry.max_wait` (longer than `http.request_timeout`) by design.
            .with_own_deadlines();
        Ok(Self {
            server,
            state,
            settings: config.settings,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves, and runs the health checks, until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let checks = checks::spawn(
            Arc::clone(&self.state.catalog),
            self.server.transport().clone(),
            self.settings.check_timeout,
            shutdown.child_token(),
        );
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = checks.await;
        result
    }
}
