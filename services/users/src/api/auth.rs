//! Sign-up, login, refresh and logout.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use chassis::HttpError;
use chassis::db::now_millis;
use chassis::error::Validation;
use chassis::extract::Json;
use chassis::mtls::CallerService;
use contracts::auth::{ROLE_ADMIN, ROLE_CUSTOMER};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AppState, UserView, UsersError};
use crate::domain::{DisplayName, Email, Password};
use crate::store::{NewRefresh, NewUser, UserRecord};
use crate::{passwords, tokens};
use contracts::problem::Problem;

/// Body of `POST /auth/signup`. Its `Debug` leaves the password out.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    email: String,
    password: String,
    name: String,
}

/// Body of `POST /auth/login`. Its `Debug` leaves the password out.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`. Its `Debug` leaves the token out.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest")
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// Answer to a login or refresh.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange it at `/auth/refresh` for a new pair; single use.
    pub refresh_token: String,
}

/// `POST /auth/signup` → 201 with the account.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, description = "The new account", body = UserView),
        (status = 409, description = "An account with this email exists", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupRequest>,
) -> Result<Response, HttpError> {
    let mut v = Validation::new();
    let email = v.check("email", Email::parse(&body.email));
    let password = v.check("password", Password::parse(&body.password, email.as_ref()));
    let name = v.check("name", DisplayName::parse(&body.name));
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(v.into_error());
    };

    let user = create_account(&state, &email, &password, &name, &[]).await?;
    tracing::info!(user_id = %user.id, "account created");
    Ok((
        StatusCode::CREATED,
        [(http::header::LOCATION, "/users/me")],
        Json(UserView::from(user)),
    )
        .into_response())
}

/// Creates an account with the customer role, plus `extra_roles`, plus admin if the email is in
/// `users.admin_emails`.
pub async fn create_account(
    state: &AppState,
    email: &Email,
    password: &Password,
    name: &DisplayName,
    extra_roles: &[&str],
) -> Result<UserRecord, UsersError> {
    let normalized = email.normalized();
    let mut roles = vec![ROLE_CUSTOMER.to_owned()];
    roles.extend(extra_roles.iter().map(|r| (*r).to_owned()));
    if state
        .settings
        .admin_emails
        .iter()
        .any(|a| a.to_lowercase() == normalized)
        && !roles.iter().any(|r| r == ROLE_ADMIN)
    {
        roles.push(ROLE_ADMIN.to_owned());
    }
    let password_hash = passwords::hash(password.expose().to_owned())
        .await
        .map_err(UsersError::internal)?;
    let now = now_millis();
    let id = Uuid::now_v7();
    state
        .store
        .insert_user(&NewUser {
            id,
            email: email.as_str(),
            email_normalized: &normalized,
            name: name.as_str(),
            password_hash: &password_hash,
            roles: &roles,
            now,
        })
        .await?;
    Ok(UserRecord {
        id,
        email: email.as_str().to_owned(),
        name: name.as_str().to_owned(),
        password_hash,
        roles,
        created_at: now,
        updated_at: now,
    })
}

/// `POST /auth/login` → tokens.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "An access token and a refresh token", body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for the account or from the address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<Extension<CallerService>>,
    headers: HeaderMap,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, HttpError> {
    let mut v = Validation::new();
    if body.email.trim().is_empty() {
        v.add("email", "is required");
    }
    if body.password.is_empty() {
        v.add("password", "is required");
    }
    v.finish()?;

    let email = body.email.trim().to_lowercase();
    let attempt = Attempt {
        account: chassis::idempotency::fingerprint([email.as_bytes()]),
        address: client_address(peer, caller.as_deref(), &headers),
    };
    attempt.check(&state).await?;
    let user = state
        .store
        .find_by_email(&email)
        .await
        .map_err(UsersError::from)?;
    // Unknown email: verify against a dummy hash anyway, so both cases take the same time.
    let hash = user
        .as_ref()
        .map_or_else(|| state.dummy_hash.to_string(), |u| u.password_hash.clone());
    let matches = passwords::verify(body.password, hash)
        .await
        .map_err(UsersError::internal)?;
    let Some(user) = user.filter(|_| matches) else {
        tracing::info!(address = %attempt.address, "login refused");
        attempt.failed(&state).await?;
        return Err(UsersError::InvalidCredentials.into());
    };
    attempt.succeeded(&state).await?;
    let family = Uuid::now_v7().to_string();
    let tokens = issue_tokens(&state, &user, &family, None).await?;
    tracing::info!(user_id = %user.id, "logged in");
    Ok(Json(tokens))
}

/// One login attempt, as throttling counts it: the account (a hash of its normalized email)
/// and the client's address.
struct Attempt {
    account: String,
    address: String,
}

impl Attempt {
    /// 429 with `Retry-After` when the account or the address failed too often within the
    /// window: checked before the password, so guessing costs no hashing either.
    async fn check(&self, state: &AppState) -> Result<(), HttpError> {
        let settings = &state.settings;
        let window = i64::try_from(settings.login_window.as_millis()).unwrap_or(i64::MAX);
        let now = now_millis();
        let [account, address] = state
            .store
            .login_failures(&self.account, &self.address, now.saturating_sub(window))
            .await
            .map_err(UsersError::from)?;
        let over = [
            (account, settings.login_failures_per_account, "this account"),
            (address, settings.login_failures_per_address, "this address"),
        ]
        .into_iter()
        .find(|((failures, _), limit, _)| *failures >= i64::from(*limit));
        let Some(((failures, oldest), _, whose)) = over else {
            return Ok(());
        };
        // Free again when the oldest failure in the window leaves it.
        let retry_after_ms = oldest.unwrap_or(now).saturating_add(window) - now;
        let retry_after = u64::try_from(retry_after_ms.max(1000) / 1000).unwrap_or(1);
        tracing::warn!(address = %self.address, failures, whose, "login throttled");
        Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-login-attempts",
            "Too many failed logins",
        )
        .with_detail(format!(
            "{failures} failed logins for {whose} in the last {}; try again in {retry_after} s",
            humantime::format_duration(settings.login_window)
        ))
        .with_header(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(retry_after),
        ))
    }

    async fn failed(&self, state: &AppState) -> Result<(), HttpError> {
        let window = i64::try_from(state.settings.login_window.as_millis()).unwrap_or(i64::MAX);
        let now = now_millis();
        state
            .store
            .record_login_failure(
                &self.account,
                &self.address,
                now,
                now.saturating_sub(window),
            )
            .await
            .map_err(|e| UsersError::from(e).into())
    }

    async fn succeeded(&self, state: &AppState) -> Result<(), HttpError> {
        state
            .store
            .clear_login_failures(&self.account)
            .await
            .map_err(|e| UsersError::from(e).into())
    }
}

/// The client's address: the last hop the gateway added to `x-forwarded-for` when the gateway
/// is the caller (or there is no mTLS to say who called), the connection's peer otherwise.
fn client_address(peer: SocketAddr, caller: Option<&CallerService>, headers: &HeaderMap) -> String {
    let trusted = caller.is_none_or(|c| c.name() == chassis::authz::GATEWAY);
    headers
        .get("x-forwarded-for")
        .filter(|_| trusted)
        .and_then(|v| v.to_str().ok())
        .and_then(|chain| chain.rsplit(',').next())
        .map(str::trim)
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map_or_else(|| peer.ip().to_string(), |ip| ip.to_string())
}

/// `POST /auth/refresh` → a new pair; the presented token is spent.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, HttpError> {
    let now = now_millis();
    let record = state
        .store
        .find_refresh(&tokens::hash_refresh_token(&body.refresh_token))
        .await
        .map_err(UsersError::from)?
        .ok_or(UsersError::InvalidRefreshToken)?;
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(UsersError::InvalidRefreshToken.into());
    }
    if record.rotated_at.is_some() {
        return Err(reuse_detected(&state, &record.family_id, now).await.into());
    }
    let user = state
        .store
        .find_by_id(record.user_id)
        .await
        .map_err(UsersError::from)?
        .ok_or(UsersError::UnknownUser)?;
    let tokens = issue_tokens(&state, &user, &record.family_id, Some(&record.id)).await?;
    Ok(Json(tokens))
}

/// `POST /auth/logout` → 204; the login's refresh tokens stop working. Unknown tokens are
/// ignored, so logging out twice is harmless.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The login is revoked")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, HttpError> {
    let record = state
        .store
        .find_refresh(&tokens::hash_refresh_token(&body.refresh_token))
        .await
        .map_err(UsersError::from)?;
    if let Some(record) = record {
        state
            .store
            .revoke_family(&record.family_id, now_millis())
            .await
            .map_err(UsersError::from)?;
        tracing::info!(user_id = %record.user_id, "logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A spent token came back: whoever holds it may have stolen it, so the whole login goes.
async fn reuse_detected(state: &AppState, family_id: &str, now: i64) -> UsersError {
    match state.store.revoke_family(family_id, now).await {
        Ok(revoked) => {
            tracing::warn!(family_id, revoked, "refresh token reuse; login revoked");
            UsersError::RefreshReuse
        }
        Err(error) => error.into(),
    }
}

/// Signs an access token and stores a new refresh token in `family`, rotating `previous`.
async fn issue_tokens(
    state: &AppState,
    user: &UserRecord,
    family: &str,
    previous: Option<&str>,
) -> Result<TokenResponse, UsersError> {
    let settings = &state.settings;
    let key = state
        .keys
        .current()
        .ok_or_else(|| UsersError::internal("no signing key"))?;
    let access_token = tokens::sign_access_token(
        &key,
        &settings.issuer,
        &settings.audience,
        user.id,
        &user.roles,
        jsonwebtoken::get_current_timestamp(),
        settings.access_token_ttl,
    )
    .map_err(UsersError::internal)?;
    let refresh_token = tokens::new_refresh_token();
    let now = now_millis();
    let ttl_ms = i64::try_from(settings.refresh_token_ttl.as_millis()).unwrap_or(i64::MAX);
    let token_hash = tokens::hash_refresh_token(&refresh_token);
    let new = NewRefresh {
        family_id: family,
        user_id: user.id,
        token_hash: &token_hash,
        now,
        expires_at: now.saturating_add(ttl_ms),
    };
    match previous {
        None => {
            state.store.insert_refresh(&new).await?;
        }
        Some(previous) => {
            if !state.store.rotate_refresh(previous, &new).await? {
                // Lost a race with another refresh of the same token: treat as reuse.
                return Err(reuse_detected(state, family, now).await);
            }
        }
    }
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: settings.access_token_ttl.as_secs(),
        refresh_token,
    })
}
