//! The notifications HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /emails?to=<address>` | admin | the newest emails (to one address), with what they said |

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::authz::{GATEWAY, OPERATOR, callers};
use chassis::db::from_millis;
use chassis::extract::{Json, Query};
use chrono::{DateTime, Utc};
use contracts::page::Page;
use contracts::problem::Problem;
use serde::{Deserialize, Serialize};

use crate::store::{EmailFilter, EmailRecord, Store};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar notifications",
        description = "The emails customers get, from the other services' events."
    ),
    paths(list)
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/emails", get(list))
        .route_layer(callers(&[GATEWAY, OPERATOR]))
        .with_state(state)
}

/// An email as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailView {
    id: String,
    kind: String,
    to: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    event_id: String,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

impl From<EmailRecord> for EmailView {
    fn from(e: EmailRecord) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            to: e.to_address,
            subject: e.subject,
            body: e.body,
            status: e.status,
            attempts: e.attempts,
            last_error: e.last_error,
            event_id: e.event_id,
            created_at: from_millis(e.created_at),
            sent_at: e.sent_at.map(from_millis),
        }
    }
}

/// Query of `GET /emails`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only emails to this address.
    to: Option<String>,
    /// Only emails about this order.
    order_id: Option<String>,
}

/// `GET /emails?to=&order_id=` (`/api/emails` through the gateway): the newest 100 emails,
/// to one address or about one order when asked, newest first. An administrator sees
/// everyone's; a customer their own (the storefront's mailbox page).
#[utoipa::path(get, path = "/emails", tag = "emails", params(ListParams),
    responses(
        (status = 200, description = "The newest emails", body = Page<EmailView>),
        (status = 401, description = "No signed-in caller", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<EmailView>>, HttpError> {
    let user_id = (!caller.is_admin()).then(|| caller.user_id.to_string());
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (to, order_id) = (given(&params.to), given(&params.order_id));
    let filter = EmailFilter {
        to: to.as_deref(),
        order_id: order_id.as_deref(),
        user_id: user_id.as_deref(),
    };
    let emails = state
        .store
        .list(&filter, 100)
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(Page::complete(
        emails.into_iter().map(EmailView::from).collect(),
    )))
}
