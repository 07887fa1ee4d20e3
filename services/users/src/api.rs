//! The users HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /auth/signup` | anyone | create an account |
//! | `POST /auth/login` | anyone | access and refresh tokens |
//! | `POST /auth/refresh` | anyone | rotate a refresh token |
//! | `POST /auth/logout` | anyone | revoke a refresh token's login |
//! | `GET`, `PUT /users/me` | signed in | profile |
//! | `GET /.well-known/jwks.json` | anyone | public signing keys |

pub mod auth;
pub mod me;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chassis::HttpError;
use chassis::authz::{GATEWAY, callers};
use chassis::db::from_millis;
use chassis::extract::Json;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use crate::Settings;
use crate::keys::KeyRing;
use crate::store::{Store, StoreError, UserRecord};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Accounts and tokens.
    pub store: Store,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// The `[users]` section.
    pub settings: Arc<Settings>,
    /// A real hash of a random password, verified when an email is unknown so that a login's
    /// timing does not tell whether the account exists.
    pub dummy_hash: Arc<str>,
}

/// The users service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar users",
        description = "Accounts, passwords, tokens and signing keys."
    ),
    paths(
        auth::signup,
        auth::login,
        auth::refresh,
        auth::logout,
        me::get,
        me::put,
        jwks
    )
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/users/me", get(me::get).put(me::put))
        .route_layer(callers(&[GATEWAY]))
        // Public keys: for whoever checks tokens.
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

/// Errors of the users API.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Sign-up or profile change with an email that has an account.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Wrong email or password (deliberately not saying which).
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// Unknown, expired or revoked refresh token.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// A rotated refresh token was presented again.
    #[error("the refresh token was already used; every session of this login has been revoked")]
    RefreshReuse,
    /// The signed-in account no longer exists.
    #[error("the account no longer exists")]
    UnknownUser,
    /// A fault on our side.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl UsersError {
    /// Wraps a fault.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }
}

impl From<StoreError> for UsersError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => Self::EmailTaken,
            other => Self::internal(other),
        }
    }
}

impl From<UsersError> for HttpError {
    fn from(error: UsersError) -> Self {
        let detail = error.to_string();
        match error {
            UsersError::EmailTaken => HttpError::conflict("email-taken", detail),
            UsersError::InvalidCredentials => {
                HttpError::unauthorized(detail).with_slug("invalid-credentials")
            }
            UsersError::InvalidRefreshToken => {
                HttpError::unauthorized(detail).with_slug("invalid-refresh-token")
            }
            UsersError::RefreshReuse => {
                HttpError::unauthorized(detail).with_slug("refresh-token-reuse")
            }
            UsersError::UnknownUser => HttpError::unauthorized(detail).with_slug("unknown-user"),
            UsersError::Internal(source) => HttpError::internal(source),
        }
    }
}

impl IntoResponse for UsersError {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            roles: user.roles,
            created_at: from_millis(user.created_at),
            updated_at: from_millis(user.updated_at),
        }
    }
}

/// `GET /.well-known/jwks.json`: re-reads the key folder first (at most once a second), so keys
/// another replica made are published here too.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The public keys that sign access tokens (RFC 7517, 8037)",
        body = Object)))]
async fn jwks(State(state): State<AppState>) -> Result<Response, HttpError> {
    let keys = Arc::clone(&state.keys);
    tokio::task::spawn_blocking(move || keys.maintain_if_older(Duration::from_secs(1), Utc::now()))
        .await
        .map_err(HttpError::internal)?
        .map_err(HttpError::internal)?;
    let body = Json(serde_json::json!({ "keys": state.keys.jwks() }));
    Ok((
        StatusCode::OK,
        [(http::header::CACHE_CONTROL, "public, max-age=60")],
        body,
    )
        .into_response())
}
