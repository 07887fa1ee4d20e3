//! The microservice chassis: what every Bazaar process shares, so a service's own code is
//! only its business.
//!
//! A service's `Application::build` loads its [`config`], opens its [`db`], binds a
//! [`server::Server`], builds its router from [`extract`]ors and [`error::HttpError`]s, and
//! calls `serve` with a shutdown token. The server adds [`health`], [`metrics`], request ids and
//! logs ([`telemetry`]), registers with the registry and deregisters on the way out
//! ([`discovery`]). Calls to other services go through the [`client`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod authz;
pub mod client;
pub mod config;
pub mod context;
pub mod db;
pub mod discovery;
pub mod error;
pub mod events;
pub mod extract;
pub mod faults;
pub mod health;
pub mod idempotency;
pub mod inproc;
pub mod metrics;
pub mod mtls;
pub mod ports;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tls;
pub mod trace;
pub mod worker;

pub use error::HttpError;
pub use server::{Server, ServiceInfo, StartError};
