//! The storefront: the shop's web pages, drawn on the server from the public API.
//!
//! The gateway sends it every path outside `/api`. It keeps no data: each page is made from
//! the API's answers, asked for through the gateway with the shopper's token, exactly as any
//! client of `/api` would (a backend for the browser, with no privilege of its own). The
//! shopper's tokens and anonymous cart live in `HttpOnly` cookies. Pages work without
//! JavaScript; one small script updates an order's page while its checkout runs, and the
//! console's figures every few seconds.
//!
//! The operations console is the exception to "no privilege": for an administrator the
//! gateway verified, it reads the registry, every instance's metrics, the traces and the dead
//! letters with the storefront's own identity, which those routes accept.
//!
//! # Layout
//! - [`pages`]: the routes, one function per page or form.
//! - [`shop`]: the public API as the pages call it.
//! - [`session`]: the cookies.
//! - [`views`]: the templates (`templates/`) and how they are filled.
//! - [`images`]: the products' pictures.
//! - [`console`]: the operations console at `/console`, for administrators.
//! - [`ops`]: what the console reads (registry, metrics, traces, dead letters).

#![forbid(unsafe_code)]

pub mod console;
pub mod images;
pub mod ops;
pub mod pages;
pub mod session;
pub mod shop;
pub mod views;

use std::net::SocketAddr;

use chassis::client::ServiceClient;
use chassis::config::ServiceConfig;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The service name.
pub const SERVICE: &str = "web";

/// The service's configuration: the chassis keys and the `[web]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[web]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Name of the gateway in discovery: the pages call the public API through it.
    pub gateway_service: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            gateway_service: "gateway".to_owned(),
        }
    }
}

/// A storefront ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: pages::AppState,
}

impl Application {
    /// Binds the listener. `shutdown` also stops the discovery watches.
    pub async fn build(config: Config, shutdown: &CancellationToken) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let server = Server::bind(info, &config.chassis).await?;
        let client = ServiceClient::over_http(
            server.transport(),
            &config.chassis.discovery,
            SERVICE,
            shutdown,
        );
        let ops = ops::Ops::new(client.clone());
        let shop = shop::Shop::new(client, config.settings.gateway_service.clone());
        Ok(Self {
            server,
            state: pages::AppState::new(shop, ops),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        self.server.serve(pages::router(self.state), shutdown).await
    }
}
