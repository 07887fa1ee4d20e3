//! The users service: accounts, passwords, and the tokens that prove who is calling.
//!
//! Passwords are hashed with Argon2id. A login returns a short-lived EdDSA-signed access token
//! (a JWT the gateway verifies against this service's JWKS) and a single-use refresh token,
//! stored hashed; presenting a spent refresh token again revokes its whole login, which is how a
//! stolen token is noticed. Signing keys rotate and stay published until their tokens expire.
//!
//! # Layout
//! - [`domain`]: what an email, a password and a name must be (no I/O).
//! - [`passwords`], [`tokens`], [`keys`]: the cryptography.
//! - [`store`]: the SQL queries.
//! - [`api`]: the HTTP routes.
//! - [`demo`]: the demo accounts `bazaar up` seeds.

#![forbid(unsafe_code)]

pub mod api;
pub mod demo;
pub mod domain;
pub mod grpc;
pub mod keys;
pub mod passwords;
pub mod store;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chassis::config::ServiceConfig;
use chassis::db::Db;
use chassis::{Server, ServiceInfo, StartError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::keys::KeyRing;

/// The service name.
pub const SERVICE: &str = "users";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often the signing keys are re-read, rotated and pruned.
const KEY_MAINTENANCE: Duration = Duration::from_secs(30);

/// The service's configuration: the chassis keys and the `[users]` section.
pub type Config = ServiceConfig<Settings>;

/// The `[users]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `iss` of access tokens; the gateway checks it.
    pub issuer: String,
    /// `aud` of access tokens; the gateway checks it.
    pub audience: String,
    /// Lifetime of access tokens.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Age at which the signing key gets a successor.
    #[serde(with = "humantime_serde")]
    pub key_rotation: Duration,
    /// Folder of the signing keys; defaults to `<data_dir>/keys/users`.
    pub keys_dir: Option<PathBuf>,
    /// Emails that get the admin role when they sign up.
    pub admin_emails: Vec<String>,
    /// Create the demo accounts (see [`demo`]) if they do not exist. `bazaar up` turns it on.
    pub seed_demo: bool,
    /// Failed logins are counted over this window.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Failed logins of one account within the window before its logins are refused (429).
    pub login_failures_per_account: u32,
    /// Failed logins from one address within the window before its logins are refused (429).
    pub login_failures_per_address: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "bazaar-users".to_owned(),
            audience: "bazaar".to_owned(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            key_rotation: Duration::from_secs(30 * 24 * 3600),
            keys_dir: None,
            admin_emails: Vec::new(),
            seed_demo: false,
            login_window: Duration::from_secs(15 * 60),
            login_failures_per_account: 10,
            login_failures_per_address: 50,
        }
    }
}

/// A users service ready to serve.
#[derive(Debug)]
pub struct Application {
    server: Server,
    state: api::AppState,
}

impl Application {
    /// Opens the database and the signing keys, seeds the demo accounts if asked, and binds
    /// the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let info = ServiceInfo::new(SERVICE, env!("CARGO_PKG_VERSION"), &config.chassis);
        let db = Db::connect_with(
            &config.chassis.database_url(SERVICE),
            &config.chassis.database,
            &[&MIGRATOR, chassis::events::migrator()],
        )
        .await?;

        let settings = config.settings;
        let keys_dir = settings
            .keys_dir
            .clone()
            .unwrap_or_else(|| config.chassis.data_path("keys").join(SERVICE));
        // A retired key stays published while tokens it signed may live, plus clock skew and
        // the time other replicas take to notice its successor.
        let retention = settings.access_token_ttl + KEY_MAINTENANCE + Duration::from_secs(60);
        let rotation = settings.key_rotation;
        let keys =
            tokio::task::spawn_blocking(move || KeyRing::open(keys_dir, rotation, retention))
                .await
                .map_err(|e| StartError::other("opening the signing keys", e))?
                .map_err(|e| StartError::other("opening the signing keys", e))?;
        let dummy_hash = passwords::hash(tokens::new_refresh_token())
            .await
            .map_err(|e| StartError::other("preparing password hashing", e))?;

        let state = api::AppState {
            store: store::Store::new(db.clone()),
            keys: Arc::new(keys),
            settings: Arc::new(settings),
            dummy_hash: dummy_hash.into(),
        };
        if state.settings.seed_demo {
            demo::seed(&state)
                .await
                .map_err(|e| StartError::other("seeding the demo accounts", e))?;
        }
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

    /// Serves until `shutdown` is cancelled; maintains the signing keys meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let keys = Arc::clone(&self.state.keys);
        let maintenance = chassis::worker::every(
            KEY_MAINTENANCE,
            shutdown.child_token(),
            move || {
                let keys = Arc::clone(&keys);
                async move {
                    match tokio::task::spawn_blocking(move || keys.maintain(chrono::Utc::now()))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::error!(error = %chassis::error::ErrorChain(&error), "key maintenance failed");
                        }
                        Err(error) => tracing::error!(%error, "key maintenance task failed"),
                    }
                }
            },
        );
        let result = self
            .server
            .serve(
                api::router(self.state.clone()).merge(grpc::routes(self.state.store)),
                shutdown.clone(),
            )
            .await;
        shutdown.cancel();
        let _ = maintenance.await;
        result
    }
}
