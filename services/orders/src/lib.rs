//! The orders service: what customers bought, priced by the catalog and backed by reserved stock.
//!
//! Placing an order checks the request, prices every line at the catalog's current price (the
//! client never sets prices), reserves the stock (all lines or none), and stores the order with
//! its own copy of names and prices, as PENDING. An `Idempotency-Key` makes placing safe to
//! retry. The checkout saga (payments, shipping, confirmation) builds on this.
//!
//! # Layout
//! - [`domain`]: request rules and pricing (no I/O).
//! - [`clients`]: the catalog, over HTTP.
//! - [`store`]: the SQL.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod clients;
pub mod domain;
pub mod saga;
pub mod store;

use std::net::SocketAddr;

use chassis::client::{ServiceClient, Transport};
use chassis::config::ServiceConfig;
use chassis::db::Db;
use chassis::discovery::Discovery;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "orders";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[orders]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[orders]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Name of the catalog service in discovery.
    pub catalog_service: String,
    /// Name of the cart service in discovery.
    pub cart_service: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            catalog_service: "catalog".to_owned(),
            cart_service: "cart".to_owned(),
        }
    }
}

/// An orders service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the database and binds the listener. `shutdown` also stops the discovery watches.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &MIGRATOR,
        )
        .await?;
        let transport = Transport::http();
        let discovery = Discovery::new(&config.chassis.discovery, transport.clone(), shutdown);
        let client = ServiceClient::new(discovery, transport, &config.chassis.discovery, SERVICE);
        let state = api::AppState {
            store: store::Store::new(db.clone()),
            catalog: clients::Catalog::new(client.clone(), &config.settings.catalog_service),
            carts: clients::Carts::new(client, &config.settings.cart_service),
        };
        let server = Server::bind(info, &config.chassis).await?.with_database(db);
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
