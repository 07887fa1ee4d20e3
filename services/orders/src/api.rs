//! The orders HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /orders` | signed in | place an order: 202, the checkout saga runs (`Idempotency-Key` makes it safe to retry) |
//! | `GET /orders` | signed in | own orders, newest first (admins: everyone's) |
//! | `GET /orders/{id}` | signed in | one order (404 for somebody else's); `?wait=10s` waits for the checkout to settle |
//! | `POST /orders/{id}/cancel` | signed in | cancel a confirmed order that has not shipped |
//! | `GET /orders/{id}/saga` | admin | the checkout saga: state, every attempt and its timing |
//! | `GET /sagas` | admin | sagas with work left; `?stuck=true` for those failing to compensate |

pub mod orders;
pub mod sagas;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chassis::HttpError;
use chassis::authz::{GATEWAY, OPERATOR, callers};

use crate::clients::{Carts, Catalog, Users};
use crate::runner::Runner;
use crate::store::{Store, StoreError};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Prices and stock.
    pub catalog: Catalog,
    /// Customers' carts, for checking out a cart.
    pub carts: Carts,
    /// Who customers are (over gRPC).
    pub users: Users,
    /// Runs checkout sagas.
    pub runner: Runner,
    /// How long a checkout may keep retrying.
    pub checkout_deadline: Duration,
}

/// The orders service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar orders",
        description = "Orders and the checkout sagas that confirm or cancel them."
    ),
    paths(
        orders::create,
        orders::list,
        orders::get,
        orders::cancel,
        sagas::of_order,
        sagas::list
    )
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/saga", get(sagas::of_order))
        .route("/sagas", get(sagas::list))
        .route_layer(callers(&[GATEWAY, OPERATOR]))
        .with_state(state)
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        HttpError::internal(error)
    }
}
