//! Products and categories.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::db::{from_millis, now_millis};
use chassis::error::Validation;
use chassis::extract::{Json, Path, Query};
use chrono::{DateTime, Utc};
use contracts::auth::ROLE_ADMIN;
use contracts::money::Money;
use contracts::page::Page;
use contracts::problem::Problem;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::domain::{self, Cursor, CursorKey, MAX_PAGE_SIZE, MAX_RESTOCK, Sku, Sort};
use crate::store::{ListQuery, ProductRecord};

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    id: String,
    sku: String,
    name: String,
    description: String,
    price: Money,
    category: String,
    image_url: Option<String>,
    active: bool,
    /// Units a new order can take now.
    available: i64,
    /// The stock behind `available`; shown to administrators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<InventoryView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Stock of one sku.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InventoryView {
    /// Units in the warehouse.
    on_hand: i64,
    /// Units held by reservations.
    reserved: i64,
    /// Units sold through committed reservations.
    sold: i64,
}

impl ProductView {
    /// The view for `caller`: administrators also see the inventory.
    fn for_caller(product: ProductRecord, caller: Option<&Caller>) -> Self {
        let inventory = caller
            .is_some_and(Caller::is_admin)
            .then_some(InventoryView {
                on_hand: product.on_hand,
                reserved: product.reserved,
                sold: product.sold,
            });
        Self {
            inventory,
            ..Self::from(product)
        }
    }
}

impl From<ProductRecord> for ProductView {
    fn from(p: ProductRecord) -> Self {
        let available = p.available();
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: Money {
                amount_minor: p.price_minor,
                currency: p.currency,
            },
            category: p.category,
            image_url: p.image_url,
            active: p.active,
            available,
            inventory: None,
            created_at: from_millis(p.created_at),
            updated_at: from_millis(p.updated_at),
        }
    }
}

/// A category as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CategoryView {
    slug: String,
    name: String,
    description: String,
    /// Active products in it.
    product_count: i64,
}

/// Query of `GET /products`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    category: Option<String>,
    q: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// Comma-separated skus.
    sku: Option<String>,
    sort: Option<String>,
    page_size: Option<u32>,
    cursor: Option<String>,
    /// Admins only: include deactivated products.
    #[serde(default)]
    include_inactive: bool,
}

/// `GET /products`.
#[utoipa::path(get, path = "/products", tag = "products", params(ListParams),
    responses(
        (status = 200, description = "One page of products", body = Page<ProductView>),
        (status = 422, description = "A filter is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(params): Query<ListParams>,
) -> Result<Response, HttpError> {
    let mut v = Validation::new();
    let sort = v.check(
        "sort",
        params
            .sort
            .as_deref()
            .map_or(Ok(Sort::default()), Sort::parse),
    );
    let limit = params.page_size.unwrap_or(domain::DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        v.add(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        );
    }
    if let (Some(min), Some(max)) = (params.min_price, params.max_price)
        && min > max
    {
        v.add("min_price", "must not be above max_price");
    }
    if params.min_price.is_some_and(|p| p < 0) {
        v.add("min_price", "must not be negative");
    }
    let skus: Vec<String> = match &params.sku {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| v.check("sku", Sku::parse(s)).map(|s| s.as_str().to_owned()))
            .collect(),
    };
    if skus.len() > MAX_PAGE_SIZE as usize {
        v.add("sku", format!("at most {MAX_PAGE_SIZE} skus"));
    }
    if params.include_inactive && !caller.as_ref().is_some_and(Caller::is_admin) {
        v.add(
            "include_inactive",
            "only administrators see deactivated products",
        );
    }
    let Some(sort) = sort else {
        return Err(v.into_error());
    };
    let after = params
        .cursor
        .as_deref()
        .and_then(|c| v.check("cursor", Cursor::decode(c, sort)));
    v.finish()?;

    let query = ListQuery {
        category: params.category.filter(|c| !c.is_empty()),
        min_price: params.min_price,
        max_price: params.max_price,
        text: params
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        skus,
        include_inactive: params.include_inactive,
        sort,
        after,
        limit,
    };
    let mut rows = state.store.list(&query).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            let key = match sort {
                Sort::Name => CursorKey::Text(last.name.to_lowercase()),
                Sort::PriceAscending | Sort::PriceDescending => CursorKey::Number(last.price_minor),
                Sort::Newest => CursorKey::Number(last.created_at),
            };
            Cursor {
                sort,
                key,
                id: last.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    let items: Vec<ProductView> = rows
        .into_iter()
        .map(|p| ProductView::for_caller(p, caller.as_ref()))
        .collect();
    Ok(Json(Page { items, next_cursor }).into_response())
}

/// `GET /products/{id-or-sku}`: deactivated products are visible to admins only.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = String, Path, description = "The product's id or sku")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, HttpError> {
    let product = state.store.find(&id).await?;
    match product {
        Some(p) if p.active || caller.as_ref().is_some_and(Caller::is_admin) => {
            Ok(Json(ProductView::for_caller(p, caller.as_ref())))
        }
        _ => Err(HttpError::not_found(format!("no product {id:?}"))),
    }
}

/// `GET /categories`.
#[utoipa::path(get, path = "/categories", tag = "products",
    responses((status = 200, description = "Every category", body = Page<CategoryView>)))]
pub async fn categories(State(state): State<AppState>) -> Result<Response, HttpError> {
    let items: Vec<CategoryView> = state
        .store
        .categories()
        .await?
        .into_iter()
        .map(|c| CategoryView {
            slug: c.slug,
            name: c.name,
            description: c.description,
            product_count: c.product_count,
        })
        .collect();
    Ok(Json(Page::complete(items)).into_response())
}

/// Body of `POST /products`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewProduct {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    price: Money,
    category: String,
    image_url: Option<String>,
    /// Units in stock to start with.
    #[serde(default)]
    stock: i64,
}

/// `POST /products` (admin) → 201.
#[utoipa::path(post, path = "/products", tag = "administration", request_body = NewProduct,
    responses(
        (status = 201, description = "The new product", body = ProductView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sku is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewProduct>,
) -> Result<Response, HttpError> {
    caller.require_role(ROLE_ADMIN)?;
    let mut v = Validation::new();
    let sku = v.check("sku", Sku::parse(&body.sku));
    v.check("name", domain::check_name(&body.name));
    v.check("description", domain::check_description(&body.description));
    v.check("price", domain::check_price(&body.price));
    v.check("category", domain::check_slug(&body.category));
    if let Some(url) = &body.image_url {
        v.check("image_url", domain::check_image_url(url));
    }
    if !(0..=MAX_RESTOCK).contains(&body.stock) {
        v.add("stock", format!("must be between 0 and {MAX_RESTOCK}"));
    }
    let Some(sku) = sku else {
        return Err(v.into_error());
    };
    v.finish()?;
    let now = now_millis();
    let product = ProductRecord {
        id: uuid::Uuid::now_v7().to_string(),
        sku: sku.as_str().to_owned(),
        name: body.name.trim().to_owned(),
        description: body.description.trim().to_owned(),
        price_minor: body.price.amount_minor,
        currency: body.price.currency,
        category: body.category,
        image_url: body.image_url,
        active: true,
        on_hand: body.stock,
        reserved: 0,
        sold: 0,
        created_at: now,
        updated_at: now,
    };
    state.store.insert(&product).await?;
    tracing::info!(sku = %product.sku, "product created");
    let location = format!("/products/{}", product.id);
    Ok((
        StatusCode::CREATED,
        [(http::header::LOCATION, location)],
        Json(ProductView::for_caller(product, Some(&caller))),
    )
        .into_response())
}

/// Body of `PATCH /products/{id}`: any subset of the fields; `active: false` deactivates.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProductPatch {
    name: Option<String>,
    description: Option<String>,
    price: Option<Money>,
    category: Option<String>,
    image_url: Option<String>,
    active: Option<bool>,
}

/// `PATCH /products/{id}` (admin).
#[utoipa::path(patch, path = "/products/{id}", tag = "administration", request_body = ProductPatch,
    params(("id" = String, Path, description = "The product's id or sku")),
    responses(
        (status = 200, description = "The product as changed", body = ProductView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<ProductPatch>,
) -> Result<Json<ProductView>, HttpError> {
    caller.require_role(ROLE_ADMIN)?;
    let mut v = Validation::new();
    if let Some(name) = &patch.name {
        v.check("name", domain::check_name(name));
    }
    if let Some(description) = &patch.description {
        v.check("description", domain::check_description(description));
    }
    if let Some(price) = &patch.price {
        v.check("price", domain::check_price(price));
    }
    if let Some(category) = &patch.category {
        v.check("category", domain::check_slug(category));
    }
    if let Some(url) = &patch.image_url {
        v.check("image_url", domain::check_image_url(url));
    }
    v.finish()?;
    let mut product = state
        .store
        .find(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no product {id:?}")))?;
    if let Some(name) = patch.name {
        product.name = name.trim().to_owned();
    }
    if let Some(description) = patch.description {
        product.description = description.trim().to_owned();
    }
    if let Some(price) = patch.price {
        product.price_minor = price.amount_minor;
        product.currency = price.currency;
    }
    if let Some(category) = patch.category {
        product.category = category;
    }
    if let Some(url) = patch.image_url {
        product.image_url = Some(url);
    }
    if let Some(active) = patch.active {
        product.active = active;
    }
    if !state.store.update(&product, now_millis()).await? {
        let mut v = Validation::new();
        v.add("category", "no such category");
        return Err(v.into_error());
    }
    let product = state
        .store
        .find(&product.id)
        .await?
        .ok_or_else(|| HttpError::not_found("the product vanished"))?;
    tracing::info!(sku = %product.sku, active = product.active, "product updated");
    Ok(Json(ProductView::for_caller(product, Some(&caller))))
}

/// Body of `POST /products/{id}/restock`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Restock {
    quantity: i64,
}

/// `POST /products/{id}/restock` (admin): adds units to the stock.
#[utoipa::path(post, path = "/products/{id}/restock", tag = "administration", request_body = Restock,
    params(("id" = String, Path, description = "The product's id or sku")),
    responses(
        (status = 200, description = "The product with its new stock", body = ProductView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The quantity is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restock(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Restock>,
) -> Result<Json<ProductView>, HttpError> {
    caller.require_role(ROLE_ADMIN)?;
    if !(1..=MAX_RESTOCK).contains(&body.quantity) {
        let mut v = Validation::new();
        v.add("quantity", format!("must be between 1 and {MAX_RESTOCK}"));
        return Err(v.into_error());
    }
    let product = state
        .store
        .find(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no product {id:?}")))?;
    state.store.restock(&product.sku, body.quantity).await?;
    let product = state
        .store
        .find(&product.id)
        .await?
        .ok_or_else(|| HttpError::not_found("the product vanished"))?;
    tracing::info!(sku = %product.sku, quantity = body.quantity, "restocked");
    Ok(Json(ProductView::for_caller(product, Some(&caller))))
}
