//! Placing, reading and cancelling orders.

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
use contracts::problem::Problem;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::AppState;
use crate::clients::{CatalogUnavailable, CustomerLookup};
use crate::domain::{self, Address, PENDING, PricingError};
use crate::saga::{self, Saga};
use crate::store::sagas::SagaRecord;
use crate::store::{Inserted, OrderRecord, StatusChange};

/// Default and largest page sizes of `GET /orders`.
const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

/// Body of `POST /orders`. Prices are never taken from the client; unknown fields (a price, a
/// total) are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PlaceOrder {
    /// What to buy; or `from_cart: true` to buy what is in the customer's cart.
    items: Option<Vec<Item>>,
    #[serde(default)]
    from_cart: bool,
    shipping_address: Address,
    /// A payment-method token (`pm_…`) from `POST /api/payment-methods`; never a card.
    payment_method: String,
}

/// One requested line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Item {
    sku: String,
    quantity: i64,
}

/// An order as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    id: String,
    user_id: String,
    status: String,
    lines: Vec<LineView>,
    total: Money,
    shipping_address: Address,
    status_history: Vec<StatusView>,
    cancel_reason: Option<String>,
    /// Who it is for, as the users service knew them when it was placed (absent for orders
    /// placed while it could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<CustomerView>,
    /// Where the checkout saga is, when the view is of one order.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout: Option<CheckoutView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The customer of an order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CustomerView {
    name: String,
    email: String,
}

/// The checkout saga as a customer sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CheckoutView {
    /// `running`, `compensating`, `confirmed` or `cancelled`.
    status: String,
    /// The step under way, while there is one.
    step: Option<String>,
    /// Failed attempts at that step so far.
    attempts: u32,
    /// The trace the checkout runs in (`bazaar trace <id>` draws every step), when the order
    /// was placed in a recorded trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

impl OrderView {
    fn with_checkout(mut self, saga: Option<&SagaRecord>) -> Self {
        self.checkout = saga.map(|r| CheckoutView {
            status: r.saga.status.to_string(),
            step: r.saga.step.map(|s| s.as_str().to_owned()),
            attempts: r.saga.attempts,
            trace_id: r
                .traceparent
                .as_deref()
                .and_then(chassis::trace::recorded_trace_id),
        });
        self
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LineView {
    sku: String,
    name: String,
    unit_price: Money,
    quantity: i64,
    line_total: Money,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
            customer: order.customer.map(|c| CustomerView {
                name: c.name,
                email: c.email,
            }),
            checkout: None,
            created_at: from_millis(order.created_at),
            updated_at: from_millis(order.updated_at),
        }
    }
}

/// `POST /orders` → 202 with the order (PENDING) and a `Location`; its checkout saga runs in
/// the background. 200 with the order as it is now when the `Idempotency-Key` was used before
/// with the same body; 422 when it was used with another.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = PlaceOrder,
    params(("idempotency-key" = Option<String>, Header, description = "Makes placing safe to repeat")),
    responses(
        (status = 202, description = "Placed; the checkout runs", body = OrderView),
        (status = 200, description = "The key was used before with this body: the order as it is now", body = OrderView),
        (status = 401, description = "Not signed in, or the account is gone", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog or the cart could not be asked", body = Problem, content_type = "application/problem+json"),
    ))]
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
    let payment_method = body.payment_method.trim().to_owned();
    if !domain::is_payment_token(&payment_method) {
        v.add(
            "payment_method",
            "must be a payment-method token (pm_…) from POST /api/payment-methods",
        );
    }
    let (Some(explicit), Some(address)) = (explicit, address) else {
        return Err(v.into_error());
    };
    v.finish()?;

    let user_id = caller.user_id.to_string();
    let hash = request_hash(explicit.as_deref(), &address, &payment_method);
    if let Some(key) = &key
        && let Some((order, stored_hash)) = state.store.find_by_key(&user_id, key).await?
    {
        return replay(&state, order, &stored_hash, &hash).await;
    }
    let from_cart = explicit.is_none();
    let items = match explicit {
        Some(items) => items,
        None => cart_items(&state, &caller).await?,
    };

    let skus: Vec<String> = items.iter().map(|i| i.sku.clone()).collect();
    // The prices and who the customer is are two independent calls: asked at once, the order
    // waits for the slower one only.
    let (prices, customer) =
        tokio::join!(state.catalog.prices(&skus), state.users.customer(&caller));
    let prices = prices.map_err(catalog_unavailable)?;
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

    // Who the order is for: an account deleted since the token was issued cannot order.
    let customer = match customer {
        CustomerLookup::Found(customer) => Some(customer),
        CustomerLookup::Gone => {
            return Err(
                HttpError::unauthorized("the signed-in account no longer exists")
                    .with_slug("unknown-user"),
            );
        }
        // The order does not wait on a profile: it goes ahead without the snapshot.
        CustomerLookup::Unknown(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "placing the order without the customer's details: the users service could not be asked");
            None
        }
    };
    let now = now_millis();
    let order = OrderRecord {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.clone(),
        status: PENDING.to_owned(),
        currency: priced.currency,
        total_minor: priced.total_minor,
        address,
        reservation_id: None,
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        lines: priced.lines,
        history: vec![StatusChange {
            status: PENDING.to_owned(),
            reason: "order placed; checking out".to_owned(),
            at: now,
        }],
        customer,
    };
    let deadline = i64::try_from(state.checkout_deadline.as_millis()).unwrap_or(i64::MAX);
    let saga = SagaRecord {
        saga: Saga::new(
            uuid::Uuid::now_v7().to_string(),
            order.id.clone(),
            now,
            now.saturating_add(deadline),
        ),
        user_id: user_id.clone(),
        payment_method,
        from_cart,
        version: 0,
        created_at: now,
        updated_at: now,
        finished_at: None,
        traceparent: chassis::trace::current()
            .and_then(|position| chassis::trace::traceparent(&position)),
    };
    let lease = state.runner.new_lease(now);
    match state
        .store
        .insert(&order, &saga, lease, key.as_deref(), Some(&hash))
        .await?
    {
        Inserted::Created => {
            tracing::info!(order_id = %order.id, saga = %saga.saga.id, total_minor = order.total_minor, "order placed");
            let view = OrderView::from(order.clone()).with_checkout(Some(&saga));
            state.runner.run_placed(saga, order);
            Ok((
                StatusCode::ACCEPTED,
                [(http::header::LOCATION, format!("/orders/{}", view.id))],
                Json(view),
            )
                .into_response())
        }
        Inserted::DuplicateKey => {
            // A concurrent request with the same key stored first.
            let key = key.unwrap_or_default();
            let (existing, stored_hash) = state
                .store
                .find_by_key(&user_id, &key)
                .await?
                .ok_or_else(|| HttpError::internal("an order with this key vanished"))?;
            replay(&state, existing, &stored_hash, &hash).await
        }
    }
}

async fn replay(
    state: &AppState,
    order: OrderRecord,
    stored_hash: &str,
    hash: &str,
) -> Result<Response, HttpError> {
    if stored_hash != hash {
        return Err(idempotency::key_reused("order"));
    }
    let saga = state.store.saga_of_order(&order.id).await?;
    Ok((
        StatusCode::OK,
        [(http::header::LOCATION, format!("/orders/{}", order.id))],
        Json(OrderView::from(order).with_checkout(saga.as_ref())),
    )
        .into_response())
}

fn catalog_unavailable(error: CatalogUnavailable) -> HttpError {
    HttpError::unavailable("the catalog cannot be reached; try again", 2).with_cause(error)
}

/// What identifies an order request for idempotency: its lines in sku order (or the fact that
/// it checks out the cart), the address and the payment method.
fn request_hash(
    items: Option<&[domain::Requested]>,
    address: &Address,
    payment_method: &str,
) -> String {
    let mut chunks: Vec<Vec<u8>> = match items {
        Some(items) => {
            let mut lines: Vec<(&str, i64)> =
                items.iter().map(|i| (i.sku.as_str(), i.quantity)).collect();
            lines.sort_unstable();
            lines
                .into_iter()
                .map(|(sku, quantity)| format!("{sku}:{quantity};").into_bytes())
                .collect()
        }
        None => vec![b"from_cart;".to_vec()],
    };
    chunks.push(serde_json::to_vec(address).unwrap_or_default());
    chunks.push(payment_method.as_bytes().to_vec());
    chassis::idempotency::fingerprint(chunks)
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

/// Query of `GET /orders/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Wait up to this long (`10s`, at most 30 s) for the checkout to settle; the wait ends
    /// before the caller's deadline (through the gateway, after 9 s at most).
    wait: Option<String>,
}

/// Longest `?wait=`.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long a request may wait on purpose: `wanted`, but no longer than nine tenths of what
/// its caller waits for the answer (`x-bazaar-timeout-ms`, which the gateway sends from the
/// route's deadline). The last tenth is for reading the order and sending it: a wait as long
/// as the gateway's deadline would be answered, under load, just after the gateway gave up
/// with a 504.
fn wait_within(wanted: Duration, headers: &HeaderMap) -> Duration {
    let caller = headers
        .get(contracts::headers::TIMEOUT_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    match caller {
        Some(caller) => wanted.min(caller - caller / 10),
        None => wanted,
    }
}

/// `GET /orders/{id}`: the caller's own order, or any for an admin; 404 otherwise, so ids of
/// other people's orders cannot be probed. With `?wait=10s`, answers once the checkout saga has
/// settled (the order is CONFIRMED or CANCELLED and nothing is being undone) or the wait is over,
/// whichever comes first. The wait ends early enough for the caller's deadline (see
/// `wait_within`): through the gateway, after 9 s at most; look again if still pending.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = String, Path, description = "The order's id"), GetParams),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order of the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<GetParams>,
    headers: HeaderMap,
) -> Result<Json<OrderView>, HttpError> {
    let wait = match params.wait.as_deref() {
        None => Duration::ZERO,
        Some(raw) => humantime::parse_duration(raw)
            .ok()
            .filter(|d| *d <= MAX_WAIT)
            .ok_or_else(|| {
                let mut v = Validation::new();
                v.add(
                    "wait",
                    format!("{raw:?} is not a duration of at most 30s, such as 10s"),
                );
                v.into_error()
            })?,
    };
    let until = tokio::time::Instant::now() + wait_within(wait, &headers);
    let mut moves = state.runner.watch(&id);
    loop {
        // While the checkout moves, only its saga is read (it names the customer, so the caller
        // is checked on it); the order, with its lines and history, is read once, to answer.
        let saga = state.store.saga_of_order(&id).await?;
        let settled = saga.as_ref().is_none_or(|r| !r.saga.status.is_active());
        if settled || tokio::time::Instant::now() >= until {
            let order = order_of(&state, &caller, &id).await?;
            return Ok(Json(OrderView::from(order).with_checkout(saga.as_ref())));
        }
        if saga.as_ref().is_some_and(|r| !caller.may_see(&r.user_id)) {
            return Err(no_order(&id));
        }
        tokio::select! {
            () = moves.next(|m| !m.status.is_active()) => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// The order `id` with its saga, if the caller may see it.
async fn own_order(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(OrderRecord, Option<SagaRecord>), HttpError> {
    // The saga first: the order's status changes in the same transaction as the saga's, so an
    // order read after a settled saga is settled too.
    let saga = state.store.saga_of_order(id).await?;
    Ok((order_of(state, caller, id).await?, saga))
}

/// The order `id`, if the caller may see it.
async fn order_of(state: &AppState, caller: &Caller, id: &str) -> Result<OrderRecord, HttpError> {
    match state.store.find(id).await? {
        Some(order) if caller.may_see(&order.user_id) => Ok(order),
        _ => Err(no_order(id)),
    }
}

/// The 404 for an order that does not exist or is somebody else's: the two look the same.
fn no_order(id: &str) -> HttpError {
    HttpError::not_found(format!("no order {id:?}"))
}

/// How long `POST /orders/{id}/cancel` waits to hear whether the shipment could be stopped.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// `POST /orders/{id}/cancel`: cancels a CONFIRMED order that has not shipped. The shipment is
/// cancelled first; once it is, the answer is 202 and the refund and the return of the stock
/// follow (the order turns CANCELLED; `GET /orders/{id}?wait=10s` waits for it). 409 when the
/// order has shipped, is still being placed, or is already cancelled.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Cancelled, or being cancelled", body = OrderView),
        (status = 404, description = "No such order of the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its state does not allow it (shipped, say)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (order, saga) = own_order(&state, &caller, &id).await?;
    let Some(record) = saga else {
        return Err(HttpError::conflict(
            "order-not-cancellable",
            "this order has no checkout to undo",
        ));
    };
    let mut moves = state.runner.watch(&id);
    let already = record.saga.status == saga::Status::Compensating && record.saga.by_customer;
    if !already {
        let next = record
            .saga
            .cancelled_by_customer(now_millis())
            .map_err(|why| HttpError::conflict("order-not-cancellable", why))?;
        let now = now_millis();
        if state
            .store
            .save_saga(&record, &order, &next, None, None, now)
            .await?
            .is_none()
        {
            return Err(HttpError::conflict(
                "order-changed",
                "the order changed while cancelling; look at it again",
            ));
        }
        tracing::info!(order_id = %order.id, saga = %next.id, "the customer asked to cancel");
        state.runner.notify(&next);
        state.runner.run(next.id.clone());
    }
    // The shipment decides: wait until the saga is past cancelling it.
    let until = tokio::time::Instant::now() + wait_within(CANCEL_WAIT, &headers);
    loop {
        let (order, saga) = own_order(&state, &caller, &id).await?;
        let at_shipment = saga.as_ref().is_some_and(|r| {
            r.saga.status == saga::Status::Compensating
                && r.saga.step == Some(saga::Step::CancelShipment)
        });
        if let Some(r) = saga
            .as_ref()
            .filter(|r| r.saga.status == saga::Status::Confirmed)
        {
            let why = r
                .saga
                .last_error
                .clone()
                .unwrap_or_else(|| "the order has shipped".to_owned());
            return Err(HttpError::conflict("already-shipped", why));
        }
        if !at_shipment || tokio::time::Instant::now() >= until {
            return Ok((
                StatusCode::ACCEPTED,
                [(http::header::LOCATION, format!("/orders/{}", order.id))],
                Json(OrderView::from(order).with_checkout(saga.as_ref())),
            )
                .into_response());
        }
        tokio::select! {
            () = moves.next(|m| m.step != Some(saga::Step::CancelShipment)) => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Query of `GET /orders`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListParams),
    responses((status = 200, description = "Newest first", body = Page<OrderView>)))]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            contracts::headers::TIMEOUT_MS,
            http::HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_wait_ends_a_tenth_before_the_callers_deadline() {
        let ten = Duration::from_secs(10);
        assert_eq!(wait_within(ten, &HeaderMap::new()), ten, "no deadline sent");
        assert_eq!(
            wait_within(ten, &with_timeout("10000")),
            Duration::from_secs(9)
        );
        assert_eq!(
            wait_within(Duration::from_secs(2), &with_timeout("10000")),
            Duration::from_secs(2),
            "a shorter wait is kept"
        );
        assert_eq!(wait_within(ten, &with_timeout("0")), Duration::ZERO);
        assert_eq!(
            wait_within(ten, &with_timeout("soon")),
            ten,
            "a value that is not milliseconds is ignored"
        );
    }
}
