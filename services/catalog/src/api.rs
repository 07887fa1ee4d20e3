//! The catalog HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /products` | anyone | list: `category`, `q`, `min_price`, `max_price`, `sku`, `sort`, `page_size`, `cursor` |
//! | `GET /products/{id-or-sku}` | anyone | one product |
//! | `GET /categories` | anyone | categories with product counts |
//! | `POST /products`, `PATCH /products/{id}` | admin | create, update, deactivate |
//! | `POST /products/{id}/restock` | admin | add stock |
//! | `POST /reservations` | services (orders) | hold stock, all lines or none; `Idempotency-Key` required |
//! | `GET /reservations/{id}` | services | a reservation |
//! | `DELETE /reservations/{id}` | services | release |
//! | `POST /reservations/{id}/commit` | services | turn held units into sales |
//! | `POST /reservations/{id}/return` | services | put committed units back on hand (order cancelled) |

pub mod products;
pub mod reservations;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use chassis::HttpError;
use chassis::authz::{GATEWAY, OPERATOR, callers};
use contracts::problem::Problem;

use crate::Settings;
use crate::store::{Store, StoreError};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The `[catalog]` section.
    pub settings: Arc<Settings>,
}

/// The catalog's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar catalog",
        description = "Products, categories, stock and reservations."
    ),
    paths(
        products::list,
        products::get,
        products::categories,
        products::create,
        products::update,
        products::restock,
        reservations::create,
        reservations::get,
        reservations::release,
        reservations::commit,
        reservations::give_back,
    ),
    components(schemas(Problem))
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    // Shoppers browse through the gateway; orders prices and reserves, the cart prices.
    let browsing = Router::new()
        .route("/products", get(products::list))
        .route("/products/{id}", get(products::get))
        .route("/categories", get(products::categories))
        .route_layer(callers(&[GATEWAY, "orders", "cart"]));
    // Administrators, through the gateway (the handlers check the role).
    let administration = Router::new()
        .route("/products", post(products::create))
        .route("/products/{id}", patch(products::update))
        .route("/products/{id}/restock", post(products::restock))
        .route_layer(callers(&[GATEWAY]));
    // Only the checkout saga holds stock; the operator may look (audits, chaos checks).
    let reservations = Router::new()
        .route("/reservations", post(reservations::create))
        .route("/reservations/{id}", delete(reservations::release))
        .route("/reservations/{id}/commit", post(reservations::commit))
        .route("/reservations/{id}/return", post(reservations::give_back))
        .route_layer(callers(&["orders"]));
    let looking = Router::new()
        .route("/reservations/{id}", get(reservations::get))
        .route_layer(callers(&["orders", OPERATOR]));
    browsing
        .merge(administration)
        .merge(reservations)
        .merge(looking)
        .with_state(state)
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SkuTaken => HttpError::conflict("sku-taken", error.to_string()),
            StoreError::UnknownCategory => {
                let mut v = chassis::error::Validation::new();
                v.add("category", "no such category");
                v.into_error()
            }
            StoreError::Db(source) => HttpError::internal(source),
        }
    }
}
