//! `GET /api/dashboard` (backend for frontend): the caller's profile, recent orders and
//! recommendations, asked for at once. Each part has its own deadline; a part that is slow or
//! down is left out and named in `missing`, and the answer says it is `partial`, rather than
//! the whole page failing for one service.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use chassis::HttpError;
use chassis::client::CallError;
use chassis::error::ErrorChain;
use chassis::extract::Json;
use contracts::headers::{USER_ID, USER_ROLES};
use http::{HeaderMap, HeaderName, Method};
use serde::Serialize;
use serde_json::Value;

use crate::auth::Identity;
use crate::proxy::{Gateway, authenticate};
use crate::routes::{AuthMode, Route};

/// One part of the dashboard that did not make it.
#[derive(Debug, Serialize)]
pub struct Missing {
    /// Which part.
    pub part: &'static str,
    /// Why, for people.
    pub reason: String,
}

/// The dashboard.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    /// The caller's profile (`GET /users/me`).
    pub profile: Option<Value>,
    /// The caller's five newest orders (`GET /orders?page_size=5`).
    pub recent_orders: Option<Value>,
    /// Five recommendations for the caller (`GET /recommendations/for-me?limit=5`).
    pub recommendations: Option<Value>,
    /// Whether any part is missing.
    pub partial: bool,
    /// The parts that are missing, and why.
    pub missing: Vec<Missing>,
}

/// `GET /api/dashboard` (signed in).
pub async fn dashboard(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Dashboard>, HttpError> {
    const PREFIX: &str = "/api/dashboard";
    let route = Route {
        prefix: PREFIX.to_owned(),
        label: Route::label_for(PREFIX),
        service: String::new(),
        rewrite: String::new(),
        auth: AuthMode::Required,
        roles: Vec::new(),
        session_cookie: None,
        methods: vec![Method::GET],
        timeout: gateway.dashboard_part_timeout,
        rate_limit: None,
    };
    let identity = authenticate(&gateway, &route, &headers)
        .await?
        .ok_or_else(|| HttpError::unauthorized("sign in to see your dashboard"))?;
    let deadline = gateway.dashboard_part_timeout;
    let (profile, orders, recommendations) = tokio::join!(
        part(&gateway, &identity, "users", "/users/me", deadline),
        part(
            &gateway,
            &identity,
            "orders",
            "/orders?page_size=5",
            deadline
        ),
        part(
            &gateway,
            &identity,
            "recommendations",
            "/recommendations/for-me?limit=5",
            deadline
        ),
    );
    let mut missing = Vec::new();
    let mut keep = |name: &'static str, result: Result<Value, String>| match result {
        Ok(value) => Some(value),
        Err(reason) => {
            tracing::warn!(part = name, %reason, "dashboard part missing");
            missing.push(Missing { part: name, reason });
            None
        }
    };
    let dashboard = Dashboard {
        profile: keep("profile", profile),
        recent_orders: keep("recent_orders", orders),
        recommendations: keep("recommendations", recommendations),
        partial: false,
        missing: Vec::new(),
    };
    Ok(Json(Dashboard {
        partial: !missing.is_empty(),
        missing,
        ..dashboard
    }))
}

/// Asks `service` for `path` on behalf of `identity`, within `deadline`.
async fn part(
    gateway: &Gateway,
    identity: &Identity,
    service: &str,
    path: &str,
    deadline: Duration,
) -> Result<Value, String> {
    let call = gateway
        .client
        .get(service, path)
        .header(HeaderName::from_static(USER_ID), &identity.user_id)
        .header(
            HeaderName::from_static(USER_ROLES),
            &identity.roles.join(","),
        )
        .timeout(deadline);
    match call.send().await.and_then(|r| r.json::<Value>()) {
        Ok(value) => Ok(value),
        Err(CallError::Timeout { after, .. }) => {
            Err(format!("{service} did not answer within {after:?}"))
        }
        Err(error) => Err(ErrorChain(&error).to_string()),
    }
}
