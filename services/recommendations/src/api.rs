//! The recommendations HTTP API.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /recommendations?product=<sku>&limit=` | anyone | products bought together with `sku` |
//! | `GET /recommendations/for-me?limit=` | signed in | from the caller's past orders |

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::authz::{GATEWAY, callers};
use chassis::error::Validation;
use chassis::extract::{Json, Query};
use contracts::page::Page;
use contracts::problem::Problem;
use contracts::sku::Sku;
use serde::{Deserialize, Serialize};

use crate::store::{Recommendation, Store};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The read model.
    pub store: Store,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar recommendations",
        description = "Products bought together: a read model built from events."
    ),
    paths(for_product, for_me)
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/recommendations", get(for_product))
        .route("/recommendations/for-me", get(for_me))
        .route_layer(callers(&[GATEWAY]))
        .with_state(state)
}

/// A recommendation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecommendationView {
    sku: String,
    name: String,
    /// Orders that back it.
    score: i64,
}

impl From<Recommendation> for RecommendationView {
    fn from(r: Recommendation) -> Self {
        Self {
            sku: r.sku,
            name: r.name,
            score: r.score,
        }
    }
}

/// Query of the recommendation routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    product: Option<String>,
    limit: Option<i64>,
}

const DEFAULT_LIMIT: i64 = 5;
const MAX_LIMIT: i64 = 50;

fn limit(v: &mut Validation, limit: Option<i64>) -> i64 {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        v.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    limit
}

fn page(items: Vec<Recommendation>) -> Json<Page<RecommendationView>> {
    Json(Page::complete(
        items.into_iter().map(RecommendationView::from).collect(),
    ))
}

/// `GET /recommendations?product=<sku>`: what other customers bought with it, most first.
#[utoipa::path(get, path = "/recommendations", tag = "recommendations", params(Params),
    responses((status = 200, description = "Bought together with the product, most first", body = Page<RecommendationView>)))]
pub async fn for_product(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Page<RecommendationView>>, HttpError> {
    let mut v = Validation::new();
    let limit = limit(&mut v, params.limit);
    let sku = v.check(
        "product",
        params
            .product
            .as_deref()
            .ok_or_else(|| "is required: the sku to recommend for".to_owned())
            .and_then(Sku::parse),
    );
    v.finish()?;
    let Some(sku) = sku else {
        return Err(HttpError::bad_request("product is required"));
    };
    let items = state
        .store
        .bought_with(sku.as_str(), limit)
        .await
        .map_err(HttpError::internal)?;
    Ok(page(items))
}

/// `GET /recommendations/for-me`: bought together with what the caller bought before (or, for a
/// new customer, what sells most).
#[utoipa::path(get, path = "/recommendations/for-me", tag = "recommendations", params(Params),
    responses(
        (status = 200, description = "Bought together with what the caller bought", body = Page<RecommendationView>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn for_me(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<Params>,
) -> Result<Json<Page<RecommendationView>>, HttpError> {
    let mut v = Validation::new();
    let limit = limit(&mut v, params.limit);
    v.finish()?;
    let items = state
        .store
        .for_user(&caller.user_id.to_string(), limit)
        .await
        .map_err(HttpError::internal)?;
    Ok(page(items))
}
