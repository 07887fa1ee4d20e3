//! The notifications service: the emails customers get, from the events of the other services.
//!
//! It consumes `users.user.registered` (a welcome, and the address to write to),
//! `orders.order.confirmed` (the lines and the total), `orders.order.cancelled` (the reason) and
//! `shipping.shipment.shipped` (carrier and tracking number). Each event queues one email in the
//! event's own transaction, so a redelivered event sends nothing twice; a sender renders the
//! queue from templates and hands it to an SMTP server, or, by default, to the built-in mailbox
//! that `GET /emails` shows.
//!
//! # Layout
//! - [`render`]: templates (no I/O).
//! - [`handlers`]: events to queued emails.
//! - [`mailer`]: SMTP or the built-in mailbox, and the sender.
//! - [`store`]: customers and emails.
//! - [`api`]: the HTTP routes.

#![forbid(unsafe_code)]

pub mod api;
pub mod handlers;
pub mod mailer;
pub mod render;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use chassis::client::ServiceClient;
use chassis::config::{ConfigError, ServiceConfig};
use chassis::db::Db;
use chassis::events::{Consumer, Handler};
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "notifications";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's configuration: the chassis keys and the `[notifications]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[notifications]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// An SMTP server (`smtp://user:pass@host:587`, `smtps://…`); unset, emails go to the
    /// built-in mailbox.
    pub smtp_url: Option<String>,
    /// The sender of every email.
    pub from: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Bazaar <shop@bazaar.example>".to_owned(),
        }
    }
}

/// A notifications service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
    mailer: Arc<dyn mailer::Mailer>,
}

impl Application {
    /// Opens the database, sets up the mailer and the consumer, and binds the listener.
    /// `shutdown` also stops the discovery watches.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let settings = &config.settings;
        let mailer: Arc<dyn mailer::Mailer> = match &settings.smtp_url {
            None => Arc::new(mailer::BuiltInMailbox),
            Some(url) => Arc::new(mailer::Smtp::new(url, &settings.from).map_err(|e| {
                ConfigError::invalid(
                    "notifications.smtp_url or notifications.from",
                    url,
                    e.to_string(),
                )
            })?),
        };
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
        let mut consumer = Consumer::builder(
            SERVICE,
            db.clone(),
            client,
            events.config(),
            events.metrics(),
        );
        for (kind, template) in render::KINDS {
            let producer = kind.split('.').next().unwrap_or_default();
            let handler: Arc<dyn Handler> = Arc::new(handlers::QueueEmail { kind: template });
            consumer = consumer.on(producer, kind, handler);
        }
        let events = events.consuming(consumer.build());
        let state = api::AppState {
            store: store::Store::new(db.clone()),
        };
        let server = server
            .with_database(db)
            .with_events(events)
            .with_openapi(<api::ApiDoc as utoipa::OpenApi>::openapi());
        Ok(Self {
            server,
            state,
            mailer,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled, sending queued emails meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let sender = mailer::start_sender(
            self.state.store.clone(),
            self.mailer,
            shutdown.child_token(),
        );
        let result = self
            .server
            .serve(api::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = sender.await;
        result
    }
}
