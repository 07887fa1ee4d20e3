//! The payments service: charges and refunds, and a ledger of every movement.
//!
//! Orders charges a card for an order and refunds it when a checkout is compensated. Every call
//! carries an idempotency key, so retries never charge twice. Cards go through a [`card::Processor`]:
//! a simulated one with test card numbers, configurable latency and random transient failures.
//! Card numbers are never stored or logged whole.
//!
//! # Layout
//! - [`card`]: cards, the processor trait and the simulation.
//! - [`store`]: charges, refunds and the ledger.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod card;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis::config::{ConfigError, ServiceConfig};
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "payments";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[payments]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[payments]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Time the simulated processor takes per charge.
    #[serde(with = "humantime_serde")]
    pub processor_latency: Duration,
    /// Share of charges (0.0 to 1.0) the simulated processor fails transiently.
    pub transient_failure_rate: f64,
}

/// A payments service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the database and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let settings = &config.settings;
        if !(0.0..=1.0).contains(&settings.transient_failure_rate) {
            return Err(ConfigError::invalid(
                "payments.transient_failure_rate",
                settings.transient_failure_rate,
                "must be between 0 and 1",
            )
            .into());
        }
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR, chassis::events::migrator()],
        )
        .await?;
        let processor = card::Simulated {
            latency: settings.processor_latency,
            transient_failure_rate: settings.transient_failure_rate,
        };
        let state = api::AppState {
            store: store::Store::new(db.clone()),
            processor: Arc::new(processor),
        };
        let mut server = Server::bind(info, &config.chassis).await?;
        let events = server.events(&db);
        let server = server
            .with_database(db)
            .with_events(events)
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi());
        Ok(Self { server, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        self.server.serve(api::router(self.state), shutdown).await
    }
}
