//! The shipping service: shipments with a carrier and a tracking number, cancellable until the
//! parcel ships, moved along by a clock (label created, in transit, delivered).
//!
//! # Layout
//! - [`domain`]: states and carriers (no I/O).
//! - [`store`]: shipments and tracking history.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use chassis::config::ServiceConfig;
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "shipping";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[shipping]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[shipping]` section: the clock that moves parcels along.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Time from label to carrier pick-up; `0s` stops the clock (tests advance by hand).
    #[serde(with = "humantime_serde")]
    pub ship_after: Duration,
    /// Time from pick-up to delivery.
    #[serde(with = "humantime_serde")]
    pub deliver_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ship_after: Duration::from_secs(120),
            deliver_after: Duration::from_secs(300),
        }
    }
}

/// A shipping service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
    settings: Settings,
}

impl Application {
    /// Opens the database and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR, chassis::events::migrator()],
        )
        .await?;
        let state = api::AppState {
            store: store::Store::new(db.clone()),
        };
        let mut server = Server::bind(info, &config.chassis).await?;
        let events = server.events(&db);
        let server = server
            .with_database(db)
            .with_events(events)
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

    /// Serves until `shutdown` is cancelled, moving parcels along meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let store = self.state.store.clone();
        let settings = self.settings;
        let clock = (!settings.ship_after.is_zero()).then(|| {
            chassis::worker::every(Duration::from_secs(1), shutdown.child_token(), move || {
                let store = store.clone();
                let settings = settings.clone();
                async move {
                    if let Err(error) = tick(&store, &settings).await {
                        tracing::warn!(error = %chassis::error::ErrorChain(&error), "the shipping clock failed");
                    }
                }
            })
        });
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        if let Some(clock) = clock {
            let _ = clock.await;
        }
        result
    }
}

/// Moves every parcel whose time has come one status on.
async fn tick(store: &store::Store, settings: &Settings) -> Result<(), sqlx::Error> {
    let now = chassis::db::now_millis();
    let after = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    for (from, wait) in [
        (domain::LABEL_CREATED, settings.ship_after),
        (domain::IN_TRANSIT, settings.deliver_after),
    ] {
        for id in store.due(from, after(wait), 100).await? {
            if let Some(to) = domain::next(from) {
                store.transition(&id, from, to, now).await?;
            }
        }
    }
    Ok(())
}
