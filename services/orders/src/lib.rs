//! The orders service: what customers bought, and the checkout saga that makes it happen.
//!
//! Placing an order checks the request, prices every line at the catalog's current price (the
//! client never sets prices), and stores the order (PENDING, with its own copy of names and
//! prices) together with its checkout saga, in one transaction; it answers 202 at once. The
//! saga then reserves the stock, charges the payment method, creates the shipment and
//! confirms; a refusal or running out of time undoes what was done, in reverse, and cancels
//! the order with a reason. An `Idempotency-Key` makes placing safe to retry.
//!
//! # Layout
//! - [`domain`]: request rules and pricing (no I/O).
//! - [`saga`]: the checkout saga's state machine (no I/O).
//! - [`runner`]: runs sagas against the neighbours, durably.
//! - [`waiters`]: requests waiting on a saga, woken by its moves.
//! - [`clients`]: the catalog and the cart, over HTTP.
//! - [`store`]: the SQL.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod clients;
pub mod domain;
pub mod runner;
pub mod saga;
pub mod store;
pub mod waiters;

use std::net::SocketAddr;
use std::time::Duration;

use chassis::client::{GrpcClient, ServiceClient};
use chassis::config::{ConfigError, ServiceConfig};
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "orders";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The orders database's migrations (with [`chassis::events::migrator`] for its outbox), for
/// tools that open the store without the service: benchmarks.
pub fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

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
    /// Name of the users service in discovery (asked over gRPC who a customer is).
    pub users_service: String,
    /// Name of the payments service in discovery.
    pub payments_service: String,
    /// Name of the shipping service in discovery.
    pub shipping_service: String,
    /// How long a checkout may keep retrying before it gives up and is cancelled.
    #[serde(with = "humantime_serde")]
    pub checkout_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            catalog_service: "catalog".to_owned(),
            cart_service: "cart".to_owned(),
            users_service: "users".to_owned(),
            payments_service: "payments".to_owned(),
            shipping_service: "shipping".to_owned(),
            checkout_deadline: Duration::from_secs(60),
        }
    }
}

/// An orders service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
    stop: CancellationToken,
}

impl Application {
    /// Opens the database and binds the listener. `shutdown` also stops the discovery watches
    /// and the saga runner.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let settings = &config.settings;
        if settings.checkout_deadline < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "orders.checkout_deadline",
                humantime::format_duration(settings.checkout_deadline),
                "must be at least 1s",
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
        let owner = info.instance_id.clone();
        let mut server = Server::bind(info, &config.chassis).await?;
        let client = ServiceClient::over_http(
            server.transport(),
            &config.chassis.discovery,
            SERVICE,
            shutdown,
        );
        let store = store::Store::new(db.clone());
        let catalog = clients::Catalog::new(client.clone(), &settings.catalog_service);
        let carts = clients::Carts::new(client.clone(), &settings.cart_service);
        let users = clients::Users::new(
            GrpcClient::new(
                client.discovery().clone(),
                server.identity().cloned(),
                &config.chassis.discovery,
            ),
            &settings.users_service,
        );
        let events = server.events(&db);
        let metrics = runner::SagaMetrics::register(server.metrics_registry());
        let server = server
            .with_database(db)
            .with_events(events)
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi());
        // The runner stops with its own token, cancelled once the server has drained, so
        // requests in flight can still start sagas.
        let stop = CancellationToken::new();
        let runner = runner::Runner::new(
            store.clone(),
            client,
            catalog.clone(),
            carts.clone(),
            runner::Neighbours {
                catalog: settings.catalog_service.clone(),
                payments: settings.payments_service.clone(),
                shipping: settings.shipping_service.clone(),
            },
            saga::RetryPolicy::default(),
            owner,
            metrics,
            stop.clone(),
        );
        let state = api::AppState {
            store,
            catalog,
            carts,
            users,
            runner,
            checkout_deadline: settings.checkout_deadline,
        };
        Ok(Self {
            server,
            state,
            stop,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let runner = self.state.runner.clone();
        let sweep = runner.start();
        let served = self.server.serve(api::router(self.state), shutdown).await;
        self.stop.cancel();
        let _ = sweep.await;
        runner.stopped().await;
        served
    }
}
