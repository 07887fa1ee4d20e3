//! The orders HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /orders` | signed in | place an order (`Idempotency-Key` makes it safe to retry) |
//! | `GET /orders` | signed in | own orders, newest first (admins: everyone's) |
//! | `GET /orders/{id}` | signed in | one order (404 for somebody else's) |

pub mod orders;

use axum::Router;
use axum::routing::get;
use chassis::HttpError;

use crate::clients::{Carts, Catalog};
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
}

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .with_state(state)
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        HttpError::internal(error)
    }
}
