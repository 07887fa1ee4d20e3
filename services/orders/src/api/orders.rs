//! Placing and reading orders.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::db::{from_millis, now_millis};
use chassis::error::Validation;
use chassis::extract::{Json, Path, Query};
use chassis::idempotency;
use chrono::{DateTime, Utc};
use contracts::money::Money;
use contracts::page::Page;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::clients::{CatalogUnavailable, Reservation};
use crate::domain::{self, Address, PENDING, PricingError};
use crate::store::{Inserted, OrderRecord, StatusChange};

/// Default and largest page sizes of `GET /orders`.
const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

/// Body of `POST /orders`. Prices are never taken from the client; unknown fields (a price, a
/// total) are ignored.
#[derive(Debug, Deserialize)]
pub struct PlaceOrder {
    /// What to buy; or `from_cart: true` to buy what is in the customer's cart.
    items: Option<Vec<Item>>,
    #[serde(default)]
    from_cart: bool,
    shipping_address: Address,
}

/// One requested line.
#[derive(Debug, Deserialize)]
pub struct Item {
    sku: String,
    quantity: i64,
}

/// An order as the API shows it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    id: String,
    user_id: String,
    status: String,
    lines: Vec<LineView>,
    total: Money,
    shipping_address: Address,
    status_history: Vec<StatusView>,
    cancel_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct LineView {
    sku: String,
    name: String,
    unit_price: Money,
    quantity: i64,
    line_total: Money,
}

#[derive(Debug, Serialize)]
struct StatusView {
    status: String,
    reason: String,
    at: DateTime<Utc>,
}

impl From<OrderRecord> for OrderView {
    fn from(order: OrderRecord) -> Self {
        let money = |amount_minor: i64| Money {
            amount_minor,
            currency: order.currency.clone(),
        };
        Self {
            lines: order
                .lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    unit_price: money(l.unit_price_minor),
                    quantity: l.quantity,
                    line_total: money(l.line_total_minor),
                })
                .collect(),
            total: money(order.total_minor),
            status_history: order
                .history
                .into_iter()
                .map(|h| StatusView {
                    status: h.status,
                    reason: h.reason,
                    at: from_millis(h.at),
                })
                .collect(),
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            shipping_address: order.address,
            cancel_reason: order.cancel_reason,
            created_at: from_millis(order.created_at),
            updated_at: from_millis(order.updated_at),
        }
    }
}

/// `POST /orders` → 201 with the order (PENDING, stock reserved); 200 with the same order when
/// the `Idempotency-Key` was used before with the same body; 422 when it was used with another.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<PlaceOrder>,
) -> Result<Response, HttpError> {
    let key = idempotency::optional_key(&headers)?;
    let mut v = Validation::new();
    let explicit = match (body.items, body.from_cart) {
        (Some(items), false) => {
            let raw: Vec<(String, i64)> = items.into_iter().map(|i| (i.sku, i.quantity)).collect();
            domain::check_items(&raw)
                .map_err(|errors| errors.into_iter().for_each(|(f, m)| v.add(&f, m)))
                .ok()
                .map(Some)
        }
        (None, true) => Some(None),
        _ => {
            v.add("items", "give either items or from_cart: true");
            None
        }
    };
    let address = body
        .shipping_address
        .check()
        .map_err(|errors| errors.into_iter().for_each(|(f, m)| v.add(&f, m)))
        .ok();
    let (Some(explicit), Some(address)) = (explicit, address) else {
        return Err(v.into_error());
    };

    let user_id = caller.user_id.to_string();
    let hash = request_hash(explicit.as_deref(), &address);
    if let Some(key) = &key
        && let Some((order, stored_hash)) = state.store.find_by_key(&user_id, key).await?
    {
        return replay(order, &stored_hash, &hash);
    }
    let from_cart = explicit.is_none();
    let items = match explicit {
        Some(items) => items,
        None => cart_items(&state, &caller).await?,
    };

    let skus: Vec<String> = items.iter().map(|i| i.sku.clone()).collect();
    let prices = state
        .catalog
        .prices(&skus)
        .await
        .map_err(catalog_unavailable)?;
    let priced =
        domain::price(&items, |sku| prices.get(sku).cloned()).map_err(|error| match error {
            PricingError::NotForSale { index, sku } => {
                let mut v = Validation::new();
                v.add(
                    &format!("items[{index}].sku"),
                    format!("{sku} is not for sale"),
                );
                v.into_error()
            }
            PricingError::MixedCurrencies => {
                HttpError::bad_request("the items are priced in different currencies")
            }
            PricingError::Overflow => {
                let mut v = Validation::new();
                v.add("items", "the total is too large");
                v.into_error()
            }
        })?;

    let order_id = uuid::Uuid::now_v7().to_string();
    // With a client key, a retried request reuses the reservation of the first attempt.
    let reservation_key = match &key {
        Some(key) => format!("orders:{user_id}:{key}:reserve"),
        None => format!("orders:{order_id}:reserve"),
    };
    let reservation_id = match state
        .catalog
        .reserve(&reservation_key, &items)
        .await
        .map_err(catalog_unavailable)?
    {
        Reservation::Held(id) => id,
        Reservation::Insufficient(detail) => {
            return Err(HttpError::conflict("insufficient-stock", detail));
        }
        Reservation::Refused(detail) => {
            let mut v = Validation::new();
            v.add("items", detail);
            return Err(v.into_error());
        }
        Reservation::Spent(status) => {
            return Err(HttpError::conflict(
                "reservation-state",
                format!(
                    "the stock reserved for this Idempotency-Key was {status}; place the order with a new key"
                ),
            ));
        }
    };

    let now = now_millis();
    let order = OrderRecord {
        id: order_id,
        user_id: user_id.clone(),
        status: PENDING.to_owned(),
        currency: priced.currency,
        total_minor: priced.total_minor,
        address,
        reservation_id: Some(reservation_id.clone()),
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        lines: priced.lines,
        history: vec![StatusChange {
            status: PENDING.to_owned(),
            reason: "order placed; stock reserved".to_owned(),
            at: now,
        }],
    };
    match state
        .store
        .insert(&order, key.as_deref(), Some(&hash))
        .await
    {
        Ok(Inserted::Created) => {
            // Until the checkout saga confirms orders, the cart is emptied once the order exists.
            if from_cart && let Err(error) = state.carts.clear(&caller).await {
                tracing::warn!(order_id = %order.id, error = %chassis::error::ErrorChain(&error), "the cart could not be emptied");
            }
            tracing::info!(order_id = %order.id, total_minor = order.total_minor, "order placed");
            Ok((
                StatusCode::CREATED,
                [(http::header::LOCATION, format!("/orders/{}", order.id))],
                Json(OrderView::from(order)),
            )
                .into_response())
        }
        Ok(Inserted::DuplicateKey) => {
            // A concurrent request with the same key stored first; it shares our reservation.
            let key = key.unwrap_or_default();
            let (existing, stored_hash) = state
                .store
                .find_by_key(&user_id, &key)
                .await?
                .ok_or_else(|| HttpError::internal("an order with this key vanished"))?;
            replay(existing, &stored_hash, &hash)
        }
        Err(error) => {
            // With a client key, a retry replays this reservation, so it stays held (and expires
            // if no retry comes). Without one, nothing will ever refer to it: give it back now.
            if key.is_none()
                && let Err(release) = state.catalog.release(&reservation_id).await
            {
                tracing::warn!(reservation = %reservation_id, error = %chassis::error::ErrorChain(&release), "could not release; it will expire");
            }
            Err(error.into())
        }
    }
}

fn replay(order: OrderRecord, stored_hash: &str, hash: &str) -> Result<Response, HttpError> {
    if stored_hash != hash {
        return Err(idempotency::key_reused("order"));
    }
    Ok((StatusCode::OK, Json(OrderView::from(order))).into_response())
}

fn catalog_unavailable(error: CatalogUnavailable) -> HttpError {
    HttpError::unavailable("the catalog cannot be reached; try again", 2).with_cause(error)
}

/// What identifies an order request for idempotency: its lines in sku order (or the fact that
/// it checks out the cart), and the address.
fn request_hash(items: Option<&[domain::Requested]>, address: &Address) -> String {
    let mut hasher = Sha256::new();
    match items {
        Some(items) => {
            let mut lines: Vec<(&str, i64)> =
                items.iter().map(|i| (i.sku.as_str(), i.quantity)).collect();
            lines.sort_unstable();
            for (sku, quantity) in lines {
                hasher.update(format!("{sku}:{quantity};").as_bytes());
            }
        }
        None => hasher.update(b"from_cart;"),
    }
    hasher.update(serde_json::to_vec(address).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The customer's cart as checked order lines.
async fn cart_items(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<domain::Requested>, HttpError> {
    let lines = state.carts.lines(caller).await.map_err(|e| {
        HttpError::unavailable("the cart cannot be reached; try again", 2).with_cause(e)
    })?;
    if lines.is_empty() {
        let mut v = Validation::new();
        v.add("from_cart", "the cart is empty");
        return Err(v.into_error());
    }
    domain::check_items(&lines).map_err(|errors| {
        let mut v = Validation::new();
        for (field, message) in errors {
            v.add(&format!("cart.{field}"), message);
        }
        v.into_error()
    })
}

/// `GET /orders/{id}`: the caller's own order, or any for an admin; 404 otherwise, so ids of
/// other people's orders cannot be probed.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, HttpError> {
    match state.store.find(&id).await? {
        Some(order) if caller.is_admin() || order.user_id == caller.user_id.to_string() => {
            Ok(Json(order.into()))
        }
        _ => Err(HttpError::not_found(format!("no order {id:?}"))),
    }
}

/// Query of `GET /orders`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    page_size: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    created_at: i64,
    id: String,
}

/// `GET /orders`: newest first; customers see their own, admins everyone's.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Response, HttpError> {
    let mut v = Validation::new();
    let limit = params.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        v.add(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        );
    }
    let after = params.cursor.as_deref().and_then(|raw| {
        let cursor = URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok());
        v.check("cursor", cursor.ok_or("is not a cursor this API gave out"))
    });
    v.finish()?;
    let user = (!caller.is_admin()).then(|| caller.user_id.to_string());
    let mut orders = state
        .store
        .list(user.as_deref(), after.map(|c| (c.created_at, c.id)), limit)
        .await?;
    let next_cursor = if orders.len() > limit as usize {
        orders.truncate(limit as usize);
        orders.last().map(|last| {
            let cursor = Cursor {
                created_at: last.created_at,
                id: last.id.clone(),
            };
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
        })
    } else {
        None
    };
    let items: Vec<OrderView> = orders.into_iter().map(OrderView::from).collect();
    Ok(Json(Page { items, next_cursor }).into_response())
}
