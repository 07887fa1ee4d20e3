//! The shipping HTTP API, for the orders service.
//!
//! | route | what |
//! |---|---|
//! | `POST /shipments` | create a shipment (`Idempotency-Key` required) |
//! | `GET /shipments/{id}` | one shipment with its tracking history |
//! | `GET /shipments?order_id=` | shipments of an order |
//! | `POST /shipments/{id}/cancel` | cancel, until it has shipped |
//! | `POST /shipments/{id}/advance` | move it to its next status (admins; demos and tests) |

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::authz::{GATEWAY, OPERATOR, callers};
use chassis::db::{from_millis, now_millis};
use chassis::error::Validation;
use chassis::extract::{Json, Path, Query};
use chassis::idempotency;
use chrono::{DateTime, Utc};
use contracts::auth::ROLE_ADMIN;
use contracts::page::Page;
use contracts::problem::Problem;
use contracts::sku::Sku;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::domain::{self, CANCELLED, LABEL_CREATED};
use crate::store::{Shipment, Store};

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
        title = "Bazaar shipping",
        description = "Shipments with carriers and tracking, cancellable until shipped."
    ),
    paths(create, get_one, list, cancel, advance)
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    // Customers follow their parcels through the gateway.
    let reading = Router::new()
        .route("/shipments", get(list))
        .route("/shipments/{id}", get(get_one))
        .route_layer(callers(&[GATEWAY, "orders", OPERATOR]));
    // Only the checkout saga ships and cancels.
    let shipping = Router::new()
        .route("/shipments", post(create))
        .route("/shipments/{id}/cancel", post(cancel))
        .route_layer(callers(&["orders"]));
    // The carrier's progress, played by the operator.
    let carrier = Router::new()
        .route("/shipments/{id}/advance", post(advance))
        .route_layer(callers(&[OPERATOR]));
    reading.merge(shipping).merge(carrier).with_state(state)
}

/// Where a parcel goes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Address {
    name: String,
    line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: String,
}

/// What a parcel holds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    sku: String,
    quantity: i64,
}

/// Body of `POST /shipments`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewShipment {
    order_id: String,
    user_id: String,
    address: Address,
    items: Vec<Item>,
}

/// A shipment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShipmentView {
    id: String,
    order_id: String,
    user_id: String,
    status: String,
    carrier: String,
    tracking_number: String,
    address: serde_json::Value,
    items: serde_json::Value,
    tracking: Vec<TrackingView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TrackingView {
    status: String,
    at: DateTime<Utc>,
}

impl From<Shipment> for ShipmentView {
    fn from(s: Shipment) -> Self {
        Self {
            address: serde_json::from_str(&s.address).unwrap_or_default(),
            items: serde_json::from_str(&s.items).unwrap_or_default(),
            tracking: s
                .history
                .into_iter()
                .map(|(status, at)| TrackingView {
                    status,
                    at: from_millis(at),
                })
                .collect(),
            id: s.id,
            order_id: s.order_id,
            user_id: s.user_id,
            status: s.status,
            carrier: s.carrier,
            tracking_number: s.tracking_number,
            created_at: from_millis(s.created_at),
            updated_at: from_millis(s.updated_at),
        }
    }
}

/// `POST /shipments` → 201, 200 for a replay.
#[utoipa::path(post, path = "/shipments", tag = "shipments", request_body = NewShipment,
    params(("idempotency-key" = String, Header, description = "Makes the request safe to repeat")),
    responses(
        (status = 201, description = "The shipment", body = ShipmentView),
        (status = 200, description = "The key was used before with this request", body = ShipmentView),
        (status = 409, description = "The key was used with another request", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<NewShipment>,
) -> Result<Response, HttpError> {
    let key = idempotency::required_key(&headers)?;
    let mut v = Validation::new();
    if body.order_id.trim().is_empty() || body.order_id.len() > 100 {
        v.add("order_id", "is required");
    }
    if uuid::Uuid::parse_str(&body.user_id).is_err() {
        v.add("user_id", "must be a user id");
    }
    let country = body.address.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        v.add("address.country", "must be an ISO 3166-1 alpha-2 code");
    }
    for (field, value) in [
        ("address.name", &body.address.name),
        ("address.line1", &body.address.line1),
        ("address.city", &body.address.city),
        ("address.postal_code", &body.address.postal_code),
    ] {
        if value.trim().is_empty() || value.chars().count() > 200 {
            v.add(field, "must be 1 to 200 characters");
        }
    }
    if body.items.is_empty() || body.items.len() > 100 {
        v.add("items", "must hold 1 to 100 lines");
    }
    for (i, item) in body.items.iter().enumerate() {
        v.check(&format!("items[{i}].sku"), Sku::parse(&item.sku));
        if !(1..=1000).contains(&item.quantity) {
            v.add(
                &format!("items[{i}].quantity"),
                "must be between 1 and 1000",
            );
        }
    }
    v.finish()?;

    let address = serde_json::to_string(&body.address).map_err(HttpError::internal)?;
    let items = serde_json::to_string(&body.items).map_err(HttpError::internal)?;
    let request_hash = chassis::idempotency::fingerprint([format!(
        "{}\0{}\0{address}\0{items}",
        body.order_id, body.user_id
    )]);
    if let Some((existing, stored)) = state
        .store
        .by_key(&key)
        .await
        .map_err(HttpError::internal)?
    {
        return if stored == request_hash {
            Ok((StatusCode::OK, Json(ShipmentView::from(existing))).into_response())
        } else {
            Err(idempotency::key_reused("shipment"))
        };
    }
    let (carrier, prefix) = domain::carrier(&country);
    let id = uuid::Uuid::now_v7();
    let now = now_millis();
    let shipment = Shipment {
        id: id.to_string(),
        order_id: body.order_id,
        user_id: body.user_id,
        status: LABEL_CREATED.to_owned(),
        carrier: carrier.to_owned(),
        tracking_number: domain::tracking_number(prefix, uuid::Uuid::new_v4().as_u128()),
        address,
        items,
        created_at: now,
        updated_at: now,
        history: vec![(LABEL_CREATED.to_owned(), now)],
    };
    if !state
        .store
        .insert(&shipment, &key, &request_hash)
        .await
        .map_err(HttpError::internal)?
    {
        let (existing, stored) = state
            .store
            .by_key(&key)
            .await
            .map_err(HttpError::internal)?
            .ok_or_else(|| HttpError::internal("a shipment vanished"))?;
        return if stored == request_hash {
            Ok((StatusCode::OK, Json(ShipmentView::from(existing))).into_response())
        } else {
            Err(idempotency::key_reused("shipment"))
        };
    }
    tracing::info!(shipment_id = %shipment.id, order_id = %shipment.order_id, carrier, "shipment created");
    Ok((StatusCode::CREATED, Json(ShipmentView::from(shipment))).into_response())
}

async fn found(state: &AppState, id: &str) -> Result<Shipment, HttpError> {
    state
        .store
        .find(id)
        .await
        .map_err(HttpError::internal)?
        .ok_or_else(|| HttpError::not_found(format!("no shipment {id:?}")))
}

/// `GET /shipments/{id}`.
/// A customer sees only their own shipments (404 for others'), an administrator or a service any.
#[utoipa::path(get, path = "/shipments/{id}", tag = "shipments", params(("id" = String, Path, description = "The shipment's id")),
    responses(
        (status = 200, description = "The shipment", body = ShipmentView),
        (status = 404, description = "No such shipment of the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ShipmentView>, HttpError> {
    let shipment = found(&state, &id).await?;
    if caller
        .as_ref()
        .is_some_and(|caller| !caller.may_see(&shipment.user_id))
    {
        return Err(HttpError::not_found(format!("no shipment {id:?}")));
    }
    Ok(Json(shipment.into()))
}

/// Query of `GET /shipments`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    order_id: String,
}

/// `GET /shipments?order_id=` (also through the gateway): a customer sees only their own
/// shipments, an administrator or a service every one.
#[utoipa::path(get, path = "/shipments", tag = "shipments", params(ListQuery),
    responses((status = 200, description = "The shipments of an order", body = Page<ShipmentView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ShipmentView>>, HttpError> {
    let shipments = state
        .store
        .for_order(&query.order_id)
        .await
        .map_err(HttpError::internal)?;
    let visible = |s: &Shipment| chassis::auth::may_see(caller.as_ref(), &s.user_id);
    Ok(Json(Page::complete(
        shipments
            .into_iter()
            .filter(visible)
            .map(ShipmentView::from)
            .collect(),
    )))
}

/// `POST /shipments/{id}/cancel`: allowed until the parcel ships; cancelling a cancelled shipment
/// is a no-op.
#[utoipa::path(post, path = "/shipments/{id}/cancel", tag = "shipments", params(("id" = String, Path, description = "The shipment's id")),
    responses(
        (status = 200, description = "Cancelled (or already)", body = ShipmentView),
        (status = 404, description = "No such shipment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has shipped", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ShipmentView>, HttpError> {
    state
        .store
        .transition(&id, LABEL_CREATED, CANCELLED, now_millis())
        .await
        .map_err(HttpError::internal)?;
    let shipment = found(&state, &id).await?;
    if shipment.status != CANCELLED {
        return Err(HttpError::conflict(
            "already-shipped",
            format!(
                "shipment {id} is {}; it can no longer be cancelled",
                shipment.status
            ),
        ));
    }
    Ok(Json(shipment.into()))
}

/// `POST /shipments/{id}/advance` (admin): moves the shipment to its next status now.
#[utoipa::path(post, path = "/shipments/{id}/advance", tag = "shipments", params(("id" = String, Path, description = "The shipment's id")),
    responses(
        (status = 200, description = "Moved to its next status", body = ShipmentView),
        (status = 404, description = "No such shipment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It cannot move on", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn advance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ShipmentView>, HttpError> {
    caller.require_role(ROLE_ADMIN)?;
    let shipment = found(&state, &id).await?;
    let next = domain::next(&shipment.status).ok_or_else(|| {
        HttpError::conflict(
            "shipment-state",
            format!(
                "shipment {id} is {}; it has no next status",
                shipment.status
            ),
        )
    })?;
    state
        .store
        .transition(&id, &shipment.status, next, now_millis())
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(found(&state, &id).await?.into()))
}
