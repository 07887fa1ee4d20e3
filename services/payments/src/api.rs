//! The payments HTTP API, for the orders service.
//!
//! | route | what |
//! |---|---|
//! | `POST /payment-methods` | register the caller's card: 201 with a token (`pm_…`) |
//! | `GET /payment-methods` | the caller's cards (brand, last four digits, expiry) |
//! | `POST /charges` | charge a payment method (`Idempotency-Key` required): 201, or 402 when declined |
//! | `GET /charges/{id}` | one charge |
//! | `GET /charges?order_id=` | every charge attempt of an order |
//! | `POST /charges/{id}/refunds` | refund all or part (`Idempotency-Key` required) |
//! | `GET /balances/{order_id}` | charged, refunded and net, from the ledger |

use std::sync::Arc;

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
use chrono::{DateTime, Datelike, Utc};
use contracts::money::Money;
use contracts::page::Page;
use contracts::problem::Problem;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::card::{Card, Outcome, Processor};
use crate::store::{ChargeRecord, PaymentMethod, Refunded, Store};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The card processor.
    pub processor: Arc<dyn Processor>,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar payments",
        description = "Cards, charges, refunds and a ledger, through a simulated processor."
    ),
    paths(
        register_payment_method,
        payment_methods,
        charge,
        get_charge,
        list,
        refund,
        balance
    )
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    // Customers register cards and read their payments through the gateway.
    let customers = Router::new()
        .route(
            "/payment-methods",
            get(payment_methods).post(register_payment_method),
        )
        .route("/charges", get(list))
        .route("/charges/{id}", get(get_charge))
        .route_layer(callers(&[GATEWAY, "orders", OPERATOR]));
    // Only the checkout saga moves money.
    let money = Router::new()
        .route("/charges", post(charge))
        .route("/charges/{id}/refunds", post(refund))
        .route_layer(callers(&["orders"]));
    let balances = Router::new()
        .route("/balances/{order_id}", get(balance))
        .route_layer(callers(&["orders", OPERATOR]));
    customers.merge(money).merge(balances).with_state(state)
}

fn hash(parts: &[&str]) -> String {
    chassis::idempotency::fingerprint(parts.iter().flat_map(|part| [part.as_bytes(), b"\0"]))
}

/// A charge as the API shows it: never the card number, only brand and last four digits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChargeView {
    id: String,
    order_id: String,
    user_id: String,
    amount: Money,
    refunded: Money,
    status: String,
    decline_reason: Option<String>,
    card: CardView,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CardView {
    brand: String,
    last4: String,
}

impl From<ChargeRecord> for ChargeView {
    fn from(c: ChargeRecord) -> Self {
        Self {
            amount: Money {
                amount_minor: c.amount_minor,
                currency: c.currency.clone(),
            },
            refunded: Money {
                amount_minor: c.refunded_minor,
                currency: c.currency,
            },
            id: c.id,
            order_id: c.order_id,
            user_id: c.user_id,
            status: c.status,
            decline_reason: c.decline_reason,
            card: CardView {
                brand: c.card_brand,
                last4: c.card_last4,
            },
            created_at: from_millis(c.created_at),
        }
    }
}

/// Body of `POST /payment-methods`: card details, which pass through to the processor and are
/// never stored, logged or shown whole.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CardDetails {
    card_number: String,
    exp_month: u32,
    exp_year: u32,
    cvc: String,
}

impl std::fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardDetails(***)")
    }
}

/// A payment method as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentMethodView {
    id: String,
    brand: String,
    last4: String,
    exp_month: i64,
    exp_year: i64,
    created_at: DateTime<Utc>,
}

impl From<PaymentMethod> for PaymentMethodView {
    fn from(m: PaymentMethod) -> Self {
        Self {
            id: m.id,
            brand: m.brand,
            last4: m.last4,
            exp_month: m.exp_month,
            exp_year: m.exp_year,
            created_at: from_millis(m.created_at),
        }
    }
}

fn this_month_i64() -> (i64, i64) {
    let (year, month) = this_month();
    (i64::from(year), i64::from(month))
}

/// Today as `(year, month)`, for card expiry.
fn this_month() -> (u32, u32) {
    let today = Utc::now();
    (u32::try_from(today.year()).unwrap_or(0), today.month())
}

/// `POST /payment-methods` (`/api/payment-methods` through the gateway): registers the caller's
/// card with the processor and answers 201 with its token. Orders are paid with the token.
#[utoipa::path(post, path = "/payment-methods", tag = "payment methods", request_body = CardDetails,
    responses(
        (status = 201, description = "The card, as a token to pay with", body = PaymentMethodView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register_payment_method(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CardDetails>,
) -> Result<Response, HttpError> {
    let card = Card::parse(
        &body.card_number,
        body.exp_month,
        body.exp_year,
        &body.cvc,
        this_month(),
    )
    .map_err(|errors| {
        let mut v = Validation::new();
        errors.into_iter().for_each(|(f, m)| v.add(f, m));
        v.into_error()
    })?;
    let method = PaymentMethod {
        id: format!("pm_{}", uuid::Uuid::new_v4().simple()),
        user_id: caller.user_id.to_string(),
        brand: card.brand().to_owned(),
        last4: card.last4().to_owned(),
        exp_month: i64::from(card.exp_month),
        exp_year: i64::from(card.exp_year),
        processor_ref: state.processor.register(&card),
        created_at: now_millis(),
    };
    state
        .store
        .insert_payment_method(&method)
        .await
        .map_err(HttpError::internal)?;
    tracing::info!(payment_method = %method.id, last4 = %method.last4, "card registered");
    Ok((StatusCode::CREATED, Json(PaymentMethodView::from(method))).into_response())
}

/// `GET /payment-methods`: the caller's cards, newest first.
#[utoipa::path(get, path = "/payment-methods", tag = "payment methods",
    responses(
        (status = 200, description = "The caller's cards, newest first", body = Page<PaymentMethodView>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn payment_methods(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Page<PaymentMethodView>>, HttpError> {
    let methods = state
        .store
        .payment_methods(&caller.user_id.to_string())
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(Page::complete(
        methods.into_iter().map(PaymentMethodView::from).collect(),
    )))
}

/// Body of `POST /charges`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChargeRequest {
    order_id: String,
    user_id: String,
    amount: Money,
    /// A token from `POST /payment-methods`, registered by `user_id`.
    payment_method: String,
}

/// The answer for a stored charge: 201 or 402, and 200 for a replay of a success.
fn answer(charge: ChargeRecord, replay: bool) -> Response {
    if charge.status == "declined" {
        let reason = charge
            .decline_reason
            .clone()
            .unwrap_or_else(|| "card_declined".into());
        return HttpError::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment-declined",
            "Payment declined",
        )
        .with_detail(format!("the card was declined: {reason}"))
        .into_response();
    }
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(ChargeView::from(charge))).into_response()
}

/// `POST /charges`. A declined charge is stored too, so repeating the request with its key gets
/// the same 402; a transient processor failure stores nothing (503) and may be retried.
#[utoipa::path(post, path = "/charges", tag = "charges", request_body = ChargeRequest,
    params(("idempotency-key" = String, Header, description = "Makes the charge safe to repeat")),
    responses(
        (status = 201, description = "Charged", body = ChargeView),
        (status = 200, description = "The key was used before with this request", body = ChargeView),
        (status = 402, description = "Declined", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key was used with another request", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn charge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<ChargeRequest>,
) -> Result<Response, HttpError> {
    let key = idempotency::required_key(&headers)?;
    let mut v = Validation::new();
    if body.order_id.trim().is_empty() || body.order_id.len() > 100 {
        v.add("order_id", "is required");
    }
    if uuid::Uuid::parse_str(&body.user_id).is_err() {
        v.add("user_id", "must be a user id");
    }
    if !Money::is_currency_code(&body.amount.currency) || body.amount.amount_minor <= 0 {
        v.add(
            "amount",
            "must be a positive amount in an ISO 4217 currency",
        );
    }
    v.finish()?;
    // Somebody else's token is as unknown as a made-up one.
    let method = state
        .store
        .payment_method(&body.payment_method)
        .await
        .map_err(HttpError::internal)?
        .filter(|m| m.user_id == body.user_id)
        .ok_or_else(|| {
            let mut v = Validation::new();
            v.add(
                "payment_method",
                format!(
                    "{:?} is not a payment method of this user",
                    body.payment_method
                ),
            );
            v.into_error()
        })?;

    let amount = body.amount.amount_minor.to_string();
    let request_hash = hash(&[
        &body.order_id,
        &body.user_id,
        &amount,
        &body.amount.currency,
        &method.id,
    ]);
    if let Some((existing, stored_hash)) = state
        .store
        .charge_by_key(&key)
        .await
        .map_err(HttpError::internal)?
    {
        return if stored_hash == request_hash {
            Ok(answer(existing, true))
        } else {
            Err(idempotency::key_reused("request"))
        };
    }
    let expired = (method.exp_year, method.exp_month) < this_month_i64();
    let outcome = if expired {
        Outcome::Declined("expired_card")
    } else {
        state
            .processor
            .charge(&method.processor_ref, body.amount.amount_minor)
            .await
            .map_err(|e| {
                tracing::warn!(order_id = %body.order_id, error = %e, "charge failed transiently");
                HttpError::unavailable(
                    "the card processor is unavailable; retry with the same Idempotency-Key",
                    1,
                )
                .with_slug("processor-unavailable")
            })?
    };
    let (status, decline_reason) = match outcome {
        Outcome::Approved => ("succeeded", None),
        Outcome::Declined(reason) => ("declined", Some(reason.to_owned())),
    };
    let charge = ChargeRecord {
        id: uuid::Uuid::now_v7().to_string(),
        order_id: body.order_id,
        user_id: body.user_id,
        amount_minor: body.amount.amount_minor,
        currency: body.amount.currency,
        card_brand: method.brand,
        card_last4: method.last4,
        status: status.to_owned(),
        decline_reason,
        refunded_minor: 0,
        created_at: now_millis(),
    };
    if !state
        .store
        .insert_charge(&charge, &key, &request_hash)
        .await
        .map_err(HttpError::internal)?
    {
        // A concurrent request with the same key stored first: answer as it did.
        let (existing, stored_hash) = state
            .store
            .charge_by_key(&key)
            .await
            .map_err(HttpError::internal)?
            .ok_or_else(|| HttpError::internal("a charge vanished"))?;
        return if stored_hash == request_hash {
            Ok(answer(existing, true))
        } else {
            Err(idempotency::key_reused("request"))
        };
    }
    tracing::info!(charge_id = %charge.id, order_id = %charge.order_id, status = %charge.status, "charge decided");
    Ok(answer(charge, false))
}

/// `GET /charges/{id}`.
/// A customer sees only their own charges (404 for others'), an administrator or a service any.
#[utoipa::path(get, path = "/charges/{id}", tag = "charges", params(("id" = String, Path, description = "The charge's id")),
    responses(
        (status = 200, description = "The charge", body = ChargeView),
        (status = 404, description = "No such charge of the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_charge(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ChargeView>, HttpError> {
    match state.store.charge(&id).await.map_err(HttpError::internal)? {
        Some(c) if chassis::auth::may_see(caller.as_ref(), &c.user_id) => Ok(Json(c.into())),
        _ => Err(HttpError::not_found(format!("no charge {id:?}"))),
    }
}

/// Query of `GET /charges`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    order_id: String,
}

/// `GET /charges?order_id=` (`GET /api/payments?order_id=` through the gateway): a customer
/// sees only their own charges, an administrator or a service every one.
#[utoipa::path(get, path = "/charges", tag = "charges", params(ListQuery),
    responses((status = 200, description = "The charges of an order", body = Page<ChargeView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ChargeView>>, HttpError> {
    let charges = state
        .store
        .charges_for_order(&query.order_id)
        .await
        .map_err(HttpError::internal)?;
    let visible = |c: &ChargeRecord| chassis::auth::may_see(caller.as_ref(), &c.user_id);
    Ok(Json(Page::complete(
        charges
            .into_iter()
            .filter(visible)
            .map(ChargeView::from)
            .collect(),
    )))
}

/// Body of `POST /charges/{id}/refunds`; no amount refunds what is left.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RefundRequest {
    amount: Option<Money>,
}

/// A refund as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    id: String,
    charge_id: String,
    amount_minor: i64,
    created_at: DateTime<Utc>,
}

/// `POST /charges/{id}/refunds`: 201, 200 for a replay, 409 beyond what was charged.
#[utoipa::path(post, path = "/charges/{id}/refunds", tag = "charges", request_body = RefundRequest,
    params(("id" = String, Path, description = "The charge's id"), ("idempotency-key" = String, Header, description = "Makes the refund safe to repeat")),
    responses(
        (status = 201, description = "Refunded", body = RefundView),
        (status = 200, description = "The key was used before with this request", body = RefundView),
        (status = 404, description = "No such charge", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Beyond what was charged", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<RefundRequest>,
) -> Result<Response, HttpError> {
    let key = idempotency::required_key(&headers)?;
    if body.amount.as_ref().is_some_and(|a| a.amount_minor <= 0) {
        let mut v = Validation::new();
        v.add("amount", "must be positive");
        return Err(v.into_error());
    }
    let amount = body.amount.as_ref().map(|a| a.amount_minor);
    let request_hash = hash(&[
        &id,
        &amount.map_or_else(|| "rest".to_owned(), |a| a.to_string()),
    ]);
    let view = |r: crate::store::RefundRecord| RefundView {
        id: r.id,
        charge_id: r.charge_id,
        amount_minor: r.amount_minor,
        created_at: from_millis(r.created_at),
    };
    match state
        .store
        .refund(&id, amount, &key, &request_hash, now_millis())
        .await
        .map_err(HttpError::internal)?
    {
        Refunded::Created(refund) => {
            tracing::info!(charge_id = %id, amount_minor = refund.amount_minor, "refunded");
            Ok((StatusCode::CREATED, Json(view(refund))).into_response())
        }
        Refunded::Replayed(refund) => Ok((StatusCode::OK, Json(view(refund))).into_response()),
        Refunded::KeyReused => Err(idempotency::key_reused("request")),
        Refunded::NoCharge => Err(HttpError::not_found(format!("no charge {id:?}"))),
        Refunded::NothingCharged => Err(HttpError::conflict(
            "nothing-charged",
            "a declined charge moved no money",
        )),
        Refunded::Exceeds { remaining } => Err(HttpError::conflict(
            "refund-exceeds-charge",
            format!("at most {remaining} is left to refund"),
        )),
    }
}

/// `GET /balances/{order_id}`.
#[utoipa::path(get, path = "/balances/{order_id}", tag = "charges",
    params(("order_id" = String, Path, description = "The order")),
    responses((status = 200, description = "Charged, refunded and net, in minor units", body = Object)))]
pub async fn balance(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Response, HttpError> {
    let balance = state
        .store
        .balance(&order_id)
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(serde_json::json!({
        "order_id": order_id,
        "charged_minor": balance.charged,
        "refunded_minor": balance.refunded,
        "net_minor": balance.charged - balance.refunded,
    }))
    .into_response())
}
