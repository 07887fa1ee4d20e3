//! The telemetry service: an embedded trace store for machines without a collector.
//!
//! Services export spans to it over OTLP/HTTP (`POST /v1/traces`); it keeps recent traces in
//! its own database, within a count and an age, and serves them as JSON to `bazaar trace`.
//! It records no spans of its own: tracing the trace store would feed it its own exports.
//!
//! # Layout
//! - [`otlp`]: OTLP requests into spans.
//! - [`store`]: traces in SQL, and their bounds.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod otlp;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use chassis::config::{ConfigError, ServiceConfig};
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "telemetry";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[telemetry]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[telemetry]` section: how much is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Most traces kept; the oldest go first.
    pub max_traces: u32,
    /// Traces older than this go.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the bounds are enforced.
    #[serde(with = "humantime_serde")]
    pub prune_every: Duration,
    /// Largest export request, bytes.
    pub max_export_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_traces: 10_000,
            max_age: Duration::from_secs(3600),
            prune_every: Duration::from_secs(5),
            max_export_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_traces == 0 {
            return Err(ConfigError::invalid(
                "telemetry.max_traces",
                "0",
                "keep at least one trace",
            ));
        }
        if self.prune_every.is_zero() {
            return Err(ConfigError::invalid(
                "telemetry.prune_every",
                "0s",
                "expected a duration such as 5s",
            ));
        }
        Ok(())
    }
}

/// A telemetry service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
    settings: Settings,
}

impl Application {
    /// Opens the database and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.settings.validate()?;
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR],
        )
        .await?;
        let state = api::AppState {
            store: store::Store::new(db.clone()),
            max_export_bytes: config.settings.max_export_bytes,
        };
        let server = Server::bind(info, &config.chassis)
            .await?
            .with_database(db)
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi());
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

    /// Serves until `shutdown` is cancelled, pruning to the bounds meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let store = self.state.store.clone();
        let settings = self.settings.clone();
        let pruner = chassis::worker::every(
            settings.prune_every,
            shutdown.child_token(),
            move || {
                let store = store.clone();
                let settings = settings.clone();
                async move {
                    let max_age = i64::try_from(settings.max_age.as_millis()).unwrap_or(i64::MAX);
                    let oldest = chassis::db::now_millis().saturating_sub(max_age);
                    match store.prune(oldest, settings.max_traces).await {
                        Ok(0) => {}
                        Ok(pruned) => tracing::debug!(pruned, "old traces pruned"),
                        Err(error) => {
                            tracing::warn!(error = %chassis::error::ErrorChain(&error), "pruning traces failed");
                        }
                    }
                }
            },
        );
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = pruner.await;
        result
    }
}
