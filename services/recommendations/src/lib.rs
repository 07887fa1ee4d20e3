//! The recommendations service: its own read model of products bought together, built from
//! `orders.order.confirmed` events (and undone by `orders.order.cancelled`), served as
//! "customers who bought this also bought" and "for you".
//!
//! # Layout
//! - [`handlers`]: events into the read model.
//! - [`store`]: the read model.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod handlers;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use chassis::client::ServiceClient;
use chassis::config::ServiceConfig;
use chassis::db::Db;
use chassis::events::{Consumer, Handler};
use chassis::{Server, ServiceInfo, StartError};
use contracts::events::{Event, OrderCancelled, OrderConfirmed};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "recommendations";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[recommendations]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[recommendations]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Name of the orders service in discovery (the producer of the events).
    pub orders_service: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            orders_service: "orders".to_owned(),
        }
    }
}

/// A recommendations service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the database, sets up the consumer and binds the listener. `shutdown` also stops
    /// the discovery watches.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR, chassis::events::migrator()],
        )
        .await?;
        let mut server = Server::bind(info, &config.chassis).await?;
        let client = ServiceClient::over_http(
            server.transport(),
            &config.chassis.discovery,
            SERVICE,
            shutdown,
        );
        let events = server.events(&db);
        let orders = &config.settings.orders_service;
        let consumer = Consumer::builder(
            SERVICE,
            db.clone(),
            client,
            events.config(),
            events.metrics(),
        )
        .on(
            orders,
            OrderConfirmed::TYPE,
            Arc::new(handlers::Confirmed) as Arc<dyn Handler>,
        )
        .on(
            orders,
            OrderCancelled::TYPE,
            Arc::new(handlers::Cancelled) as Arc<dyn Handler>,
        )
        .build();
        let events = events.consuming(consumer);
        let state = api::AppState {
            store: store::Store::new(db.clone()),
        };
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
