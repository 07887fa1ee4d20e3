//! The cart HTTP API. A signed-in customer's cart is found by their identity; an anonymous cart
//! by the `x-cart-id` header, whose value the first change hands out. A request that carries
//! both (the first after logging in) merges the anonymous cart into the customer's.
//!
//! | route | what |
//! |---|---|
//! | `GET /cart` | the cart, priced from the catalog, each line flagged if gone or short |
//! | `POST /cart/items` | add `{sku, quantity}` |
//! | `PUT /cart/items/{sku}` | set `{quantity}` (0 removes) |
//! | `DELETE /cart/items/{sku}` | remove a line |
//! | `DELETE /cart` | empty the cart |

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::authz::{GATEWAY, callers};
use chassis::client::ServiceClient;
use chassis::error::Validation;
use chassis::extract::{Json, Path};
use contracts::money::Money;
use contracts::page::Page;
use contracts::problem::Problem;
use contracts::sku::Sku;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::domain::{Cart, Change, LimitError, Limits};
use crate::store::{CartStore, StoreError};

/// The header that carries an anonymous cart's id.
pub const CART_ID: &str = "x-cart-id";
/// Prefix of anonymous cart ids.
const ANONYMOUS: &str = "anon-";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where carts live.
    pub store: Arc<dyn CartStore>,
    /// Bounds of a cart.
    pub limits: Limits,
    /// The catalog, for names, prices and stock.
    pub catalog: ServiceClient,
    /// The catalog's name in discovery.
    pub catalog_service: String,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar cart",
        description = "Carts of anonymous visitors and customers, priced by the catalog."
    ),
    paths(view, add, set, remove, clear)
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/cart", get(view).delete(clear))
        .route("/cart/items", axum::routing::post(add))
        .route("/cart/items/{sku}", put(set).delete(remove))
        // Shoppers through the gateway; orders reads and clears the cart at checkout.
        .route_layer(callers(&[GATEWAY, "orders"]))
        .with_state(state)
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Limit(limit) => {
                let field = match limit {
                    LimitError::TooManyLines(_) => "sku",
                    LimitError::TooManyUnits(_) => "quantity",
                };
                let mut v = Validation::new();
                v.add(field, limit.to_string());
                v.into_error()
            }
            StoreError::Backend(_) => {
                HttpError::unavailable("the cart store cannot be reached", 2).with_cause(error)
            }
        }
    }
}

/// Which cart a request is about.
#[derive(Debug, Clone)]
struct Owner {
    /// The cart's key in the store.
    id: String,
    /// The anonymous id to hand back to the client, for anonymous carts.
    anonymous: Option<String>,
}

/// Finds the request's cart, merging an anonymous cart into the customer's on the first request
/// after login. `create` hands out a new anonymous id when there is none.
async fn owner(
    state: &AppState,
    caller: Option<&Caller>,
    headers: &HeaderMap,
    create: bool,
) -> Result<Option<Owner>, HttpError> {
    let presented = match headers.get(CART_ID) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|v| {
                    v.strip_prefix(ANONYMOUS)
                        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
                })
                .ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "{CART_ID} is not a cart id this shop handed out"
                    ))
                })?
                .to_owned(),
        ),
    };
    match (caller, presented) {
        (Some(caller), anonymous) => {
            let id = format!("user-{}", caller.user_id);
            if let Some(anonymous) = anonymous {
                state.store.merge(&anonymous, &id, state.limits).await?;
                tracing::info!(user_id = %caller.user_id, "anonymous cart merged into the customer's");
            }
            Ok(Some(Owner {
                id,
                anonymous: None,
            }))
        }
        (None, Some(anonymous)) => Ok(Some(Owner {
            id: anonymous.clone(),
            anonymous: Some(anonymous),
        })),
        (None, None) if create => {
            let anonymous = format!("{ANONYMOUS}{}", uuid::Uuid::new_v4());
            Ok(Some(Owner {
                id: anonymous.clone(),
                anonymous: Some(anonymous),
            }))
        }
        (None, None) => Ok(None),
    }
}

/// A cart as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CartView {
    /// The anonymous cart's id, to send back as `x-cart-id`; `null` for a customer's cart.
    cart_id: Option<String>,
    lines: Vec<LineView>,
    /// Sum of the lines that can be bought, when the catalog could be asked.
    total: Option<Money>,
    /// Units in the cart.
    item_count: u64,
    /// Whether names and prices are current (false when the catalog could not be reached).
    priced: bool,
}

/// One line, priced.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineView {
    sku: String,
    quantity: u32,
    name: Option<String>,
    unit_price: Option<Money>,
    line_total: Option<Money>,
    /// `ok`, `out_of_stock`, `short` (fewer available than wanted), `gone` (no longer sold) or
    /// `unknown` (the catalog could not be asked).
    status: &'static str,
    /// Units the catalog has now.
    available: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Product {
    sku: String,
    name: String,
    price: Money,
    active: bool,
    available: i64,
}

/// Prices the cart from the catalog; a catalog outage shows the cart unpriced.
async fn render(state: &AppState, owner: Option<&Owner>, cart: Cart) -> Response {
    let skus: Vec<&str> = cart.lines.keys().map(String::as_str).collect();
    let products: Option<HashMap<String, Product>> = if skus.is_empty() {
        Some(HashMap::new())
    } else {
        let path = format!("/products?page_size=100&sku={}", skus.join(","));
        match state
            .catalog
            .get(&state.catalog_service, &path)
            .send()
            .await
            .and_then(|r| r.json::<Page<Product>>())
        {
            Ok(page) => Some(page.items.into_iter().map(|p| (p.sku.clone(), p)).collect()),
            Err(error) => {
                tracing::warn!(error = %chassis::error::ErrorChain(&error), "cart shown without prices");
                None
            }
        }
    };
    let mut total: Option<Money> = None;
    let mut lines = Vec::with_capacity(cart.lines.len());
    for (sku, quantity) in &cart.lines {
        let product = products.as_ref().and_then(|p| p.get(sku));
        let status = match (&products, product) {
            (None, _) => "unknown",
            (Some(_), None) => "gone",
            (Some(_), Some(p)) if !p.active => "gone",
            (Some(_), Some(p)) if p.available <= 0 => "out_of_stock",
            (Some(_), Some(p)) if p.available < i64::from(*quantity) => "short",
            _ => "ok",
        };
        let line_total = product.map(|p| Money {
            amount_minor: p.price.amount_minor.saturating_mul(i64::from(*quantity)),
            currency: p.price.currency.clone(),
        });
        if let (Some(line_total), "ok" | "short") = (&line_total, status) {
            let sum = total.get_or_insert(Money {
                amount_minor: 0,
                currency: line_total.currency.clone(),
            });
            sum.amount_minor = sum.amount_minor.saturating_add(line_total.amount_minor);
        }
        lines.push(LineView {
            sku: sku.clone(),
            quantity: *quantity,
            name: product.map(|p| p.name.clone()),
            unit_price: product.map(|p| p.price.clone()),
            line_total,
            status,
            available: product.map(|p| p.available),
        });
    }
    let view = CartView {
        cart_id: owner.and_then(|o| o.anonymous.clone()),
        item_count: cart.lines.values().map(|q| u64::from(*q)).sum(),
        lines,
        total: total.or_else(|| {
            products.is_some().then(|| Money {
                amount_minor: 0,
                currency: "USD".to_owned(),
            })
        }),
        priced: products.is_some(),
    };
    let mut response = Json(view).into_response();
    if let Some(anonymous) = owner.and_then(|o| o.anonymous.as_deref())
        && let Ok(value) = HeaderValue::from_str(anonymous)
    {
        response.headers_mut().insert(CART_ID, value);
    }
    response
}

/// `GET /cart`.
#[utoipa::path(get, path = "/cart", tag = "cart", params(("x-cart-id" = Option<String>, Header, description = "The anonymous cart, as the first change handed it out")),
    responses((status = 200, description = "The cart, priced by the catalog", body = CartView)))]
pub async fn view(
    State(state): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let owner = owner(&state, caller.as_ref(), &headers, false).await?;
    let cart = match &owner {
        Some(owner) => state.store.load(&owner.id).await?.unwrap_or_default(),
        None => Cart::default(),
    };
    Ok(render(&state, owner.as_ref(), cart).await)
}

/// Body of `POST /cart/items`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddItem {
    sku: String,
    quantity: u32,
}

/// Body of `PUT /cart/items/{sku}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetQuantity {
    quantity: u32,
}

fn checked_sku(raw: &str) -> Result<String, HttpError> {
    Sku::parse(raw)
        .map(|s| s.as_str().to_owned())
        .map_err(|message| {
            let mut v = Validation::new();
            v.add("sku", message);
            v.into_error()
        })
}

async fn change(
    state: &AppState,
    caller: Option<&Caller>,
    headers: &HeaderMap,
    change: Change,
) -> Result<Response, HttpError> {
    let owner = owner(state, caller, headers, true)
        .await?
        .ok_or_else(|| HttpError::internal("no cart owner"))?;
    let cart = state.store.update(&owner.id, &change, state.limits).await?;
    Ok(render(state, Some(&owner), cart).await)
}

/// `POST /cart/items`: adds units; a new anonymous cart's id comes back in `x-cart-id`.
#[utoipa::path(post, path = "/cart/items", tag = "cart", request_body = AddItem, params(("x-cart-id" = Option<String>, Header, description = "The anonymous cart, as the first change handed it out")),
    responses(
        (status = 200, description = "The cart with the units added", body = CartView),
        (status = 404, description = "The anonymous cart is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is full", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add(
    State(state): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    Json(body): Json<AddItem>,
) -> Result<Response, HttpError> {
    let sku = checked_sku(&body.sku)?;
    if body.quantity == 0 {
        let mut v = Validation::new();
        v.add("quantity", "must be at least 1");
        return Err(v.into_error());
    }
    change(
        &state,
        caller.as_ref(),
        &headers,
        Change::Add {
            sku,
            quantity: body.quantity,
        },
    )
    .await
}

/// `PUT /cart/items/{sku}`: sets the quantity; 0 removes the line.
#[utoipa::path(put, path = "/cart/items/{sku}", tag = "cart", request_body = SetQuantity, params(("sku" = String, Path, description = "The product's sku"), ("x-cart-id" = Option<String>, Header, description = "The anonymous cart, as the first change handed it out")),
    responses(
        (status = 200, description = "The cart with the line changed", body = CartView),
        (status = 404, description = "The anonymous cart is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is full", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set(
    State(state): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    Json(body): Json<SetQuantity>,
) -> Result<Response, HttpError> {
    let sku = checked_sku(&sku)?;
    change(
        &state,
        caller.as_ref(),
        &headers,
        Change::Set {
            sku,
            quantity: body.quantity,
        },
    )
    .await
}

/// `DELETE /cart/items/{sku}`.
#[utoipa::path(delete, path = "/cart/items/{sku}", tag = "cart", params(("sku" = String, Path, description = "The product's sku"), ("x-cart-id" = Option<String>, Header, description = "The anonymous cart, as the first change handed it out")),
    responses(
        (status = 200, description = "The cart without the line", body = CartView),
        (status = 404, description = "The anonymous cart is unknown", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    Path(sku): Path<String>,
) -> Result<Response, HttpError> {
    let sku = checked_sku(&sku)?;
    change(&state, caller.as_ref(), &headers, Change::Remove { sku }).await
}

/// `DELETE /cart`: empties the cart.
#[utoipa::path(delete, path = "/cart", tag = "cart", params(("x-cart-id" = Option<String>, Header, description = "The anonymous cart, as the first change handed it out")),
    responses(
        (status = 204, description = "Emptied"),
        (status = 404, description = "The anonymous cart is unknown", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn clear(
    State(state): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    if let Some(owner) = owner(&state, caller.as_ref(), &headers, false).await? {
        state.store.delete(&owner.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
