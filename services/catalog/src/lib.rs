//! The catalog: products, categories, and the stock behind them.
//!
//! Reading is public; changing products is for administrators. Stock is held by reservations,
//! which the orders service makes with an idempotency key: all lines or none, never more than
//! there is, released or committed exactly once, and expired when nobody commits them in time.
//!
//! # Layout
//! - [`domain`]: skus, prices, reservation lines, sorting and cursors (no I/O).
//! - [`store`]: the SQL, with [`store::reservations`] holding the stock rules.
//! - [`api`]: the HTTP routes.
//! - [`seed`]: the demo catalog.

#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod seed;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis::config::ServiceConfig;
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "catalog";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[catalog]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[catalog]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How long a reservation holds stock before it expires.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    #[serde(with = "humantime_serde")]
    pub expiry_sweep: Duration,
    /// Load the demo catalog into an empty database. `bazaar up` turns it on.
    pub seed_demo: bool,
    /// A reservation that leaves this many units available, or fewer, publishes
    /// `catalog.stock.low`.
    pub low_stock_threshold: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(15 * 60),
            expiry_sweep: Duration::from_secs(5),
            seed_demo: false,
            low_stock_threshold: 5,
        }
    }
}

/// A catalog ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the database, seeds the demo catalog if asked, and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR, chassis::events::migrator()],
        )
        .await?;
        let store = store::Store::new(db.clone());
        if config.settings.seed_demo {
            let loaded = seed::seed(&store)
                .await
                .map_err(|e| StartError::other("seeding the demo catalog", e))?;
            if loaded > 0 {
                tracing::info!(products = loaded, "seeded the demo catalog");
            }
        }
        let state = api::AppState {
            store,
            settings: Arc::new(config.settings),
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

    /// Serves until `shutdown` is cancelled, expiring reservations meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let store = self.state.store.clone();
        let sweeper = chassis::worker::every(
            self.state.settings.expiry_sweep,
            shutdown.child_token(),
            move || {
                let store = store.clone();
                async move {
                    if let Err(error) = store.expire_due(chassis::db::now_millis(), 100).await {
                        tracing::error!(error = %chassis::error::ErrorChain(&error), "expiring reservations failed");
                    }
                }
            },
        );
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = sweeper.await;
        result
    }
}
