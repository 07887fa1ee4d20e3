//! The storefront's pages: what each path shows and what each form does. Every page is
//! drawn on the server from the public API's answers; forms post back here and redirect, so
//! a reload never repeats an order.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use futures_util::future::join_all;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::console;
use crate::images;
use crate::ops::Ops;
use crate::session::{Session, now_seconds, set_cookies};
use crate::shop::{Caller, Page, Shop, ShopError, Tokens, encode};
use crate::views::page;

/// Products a home-page section shows.
const SECTION_SIZE: u32 = 4;
/// Products a listing page shows.
const LISTING_SIZE: u32 = 24;
/// How long an order page's status request waits for the checkout to settle.
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// How long the categories (on every page) are kept before they are asked for again.
const CATEGORIES_TTL: Duration = Duration::from_secs(30);

/// What the pages share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The public API.
    pub shop: Shop,
    /// What the operations console reads.
    pub ops: Ops,
    /// The categories, as last asked for.
    categories: Arc<Mutex<Option<Cached>>>,
}

/// The categories, and when they were asked for.
type Cached = (Instant, Vec<Json>);

impl AppState {
    /// Pages over the API `shop` reaches; the console over `ops`.
    pub fn new(shop: Shop, ops: Ops) -> Self {
        Self {
            shop,
            ops,
            categories: Arc::default(),
        }
    }

    /// The categories: the API's answer of the last 30 seconds, else a fresh one.
    async fn categories(&self) -> Result<Vec<Json>, ShopError> {
        let cached = self
            .categories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CATEGORIES_TTL)
            .map(|(_, categories)| categories.clone());
        if let Some(categories) = cached {
            return Ok(categories);
        }
        let page: Page<Json> = self.shop.get("/api/categories", &Caller::default()).await?;
        *self
            .categories
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), page.items.clone()));
        Ok(page.items)
    }
}

/// The storefront's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/c/{slug}", get(category))
        .route("/search", get(search))
        .route("/p/{sku}", get(product))
        .route("/images/{file}", get(image))
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
        .route("/cart", get(cart))
        .route("/cart/items", post(add_to_cart))
        .route("/cart/items/{sku}", post(set_quantity))
        .route("/login", get(login_form).post(login))
        .route("/signup", get(signup_form).post(signup))
        .route("/logout", post(logout))
        .route("/checkout", get(checkout_form).post(checkout))
        .route("/orders", get(orders))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/status", get(order_status))
        .route("/emails", get(emails))
        .merge(console::routes())
        // A mistyped address is a page for people, not an API problem.
        .route("/{*rest}", get(not_found_page))
        // Shoppers reach it through the gateway, which is the only service that calls it.
        .route_layer(chassis::authz::callers(&[chassis::authz::GATEWAY]))
        .with_state(state)
}

/// A page that could not be drawn, as the page that says so.
#[derive(Debug)]
pub struct PageError(ShopError);

impl From<ShopError> for PageError {
    fn from(error: ShopError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading) = match self.0.status() {
            Some(StatusCode::NOT_FOUND) => (StatusCode::NOT_FOUND, "Not found"),
            Some(status) => (status, "That did not work"),
            None => (StatusCode::SERVICE_UNAVAILABLE, "The shop is busy"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %chassis::error::ErrorChain(&self.0), "a page could not be drawn");
        }
        page(
            status,
            "error.html",
            context! { heading, message => self.0.message() },
        )
    }
}

type PageResult = Result<Response, PageError>;

/// The session, its access token refreshed if due; the cookies that carry a new one.
async fn fresh(shop: &Shop, mut session: Session) -> (Session, Vec<HeaderValue>) {
    let cookies = session.refresh_if_due(shop, now_seconds()).await;
    (session, cookies)
}

/// `response` with `cookies` set.
fn with_cookies(mut response: Response, cookies: Vec<HeaderValue>) -> Response {
    set_cookies(response.headers_mut(), cookies);
    response
}

/// What every page's layout shows: the categories, and who is signed in.
async fn layout(state: &AppState, session: &Session) -> Value {
    let categories = state.categories().await.unwrap_or_default();
    context! {
        categories,
        signed_in => session.access.is_some(),
        admin => session.is_admin(),
    }
}

/// The link from the log-in form to the sign-up form (`to` = "/signup"), or back, keeping
/// where the shopper was going.
fn other_form(to: &str, next: &str) -> String {
    if next == "/" {
        to.to_owned()
    } else {
        format!("{to}?next={}", encode(next))
    }
}

/// A local path to go to after signing in; anything else is the home page.
fn local(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\"))
        .unwrap_or("/")
        .to_owned()
}

async fn home(State(state): State<AppState>, session: Session) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    let caller = session.caller();
    let categories = state.categories().await?;
    let sections = join_all(categories.iter().map(|category| {
        let slug = category["slug"].as_str().unwrap_or_default();
        let path = format!(
            "/api/products?category={}&page_size={SECTION_SIZE}",
            encode(slug)
        );
        let caller = caller.clone();
        async move { shop.get::<Page<Json>>(&path, &caller).await }
    }))
    .await;
    let sections: Vec<Json> = categories
        .iter()
        .zip(sections)
        .filter_map(|(category, products)| {
            let products = products.ok()?.items;
            (!products.is_empty()).then(|| {
                json!({
                    "slug": category["slug"],
                    "name": category["name"],
                    "description": category["description"],
                    "products": products,
                })
            })
        })
        .collect();
    let layout = layout(&state, &session).await;
    Ok(with_cookies(
        page(StatusCode::OK, "home.html", context! { sections, ..layout }),
        cookies,
    ))
}

#[derive(Debug, Deserialize)]
struct ListingQuery {
    cursor: Option<String>,
    q: Option<String>,
}

/// One page of the products whose `filter` (a query parameter and its value) matches, from
/// the query's cursor; the products, and the link to the next page (`here` + `cursor=…`).
async fn listing(
    state: &AppState,
    session: &Session,
    (parameter, value): (&str, &str),
    query: &ListingQuery,
    here: &str,
) -> Result<(Vec<Json>, Option<String>), ShopError> {
    let mut path = format!(
        "/api/products?{parameter}={}&page_size={LISTING_SIZE}",
        encode(value)
    );
    if let Some(cursor) = &query.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let products: Page<Json> = state.shop.get(&path, &session.caller()).await?;
    let next = products
        .next_cursor
        .map(|cursor| format!("{here}cursor={}", encode(&cursor)));
    Ok((products.items, next))
}

async fn category(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<ListingQuery>,
) -> PageResult {
    let categories = state.categories().await?;
    let Some(found) = categories.iter().find(|c| c["slug"] == slug.as_str()) else {
        return Err(PageError(not_found("No such category.")));
    };
    let here = format!("/c/{}?", encode(&slug));
    let (items, next) = listing(&state, &session, ("category", &slug), &query, &here).await?;
    let layout = layout(&state, &session).await;
    Ok(page(
        StatusCode::OK,
        "listing.html",
        context! {
            heading => found["name"].clone(),
            lede => found["description"].clone(),
            items,
            next,
            current_category => slug,
            ..layout
        },
    ))
}

async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListingQuery>,
) -> PageResult {
    let text = query
        .q
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let here = format!("/search?q={}&", encode(&text));
    let (items, next) = listing(&state, &session, ("q", &text), &query, &here).await?;
    let layout = layout(&state, &session).await;
    Ok(page(
        StatusCode::OK,
        "listing.html",
        context! {
            heading => format!("Search: {text}"),
            items,
            next,
            query => text,
            ..layout
        },
    ))
}

async fn product(
    State(state): State<AppState>,
    session: Session,
    Path(sku): Path<String>,
) -> PageResult {
    let shop = &state.shop;
    let caller = session.caller();
    let product_path = format!("/api/products/{}", encode(&sku));
    let recommendations_path = format!("/api/recommendations?product={}", encode(&sku));
    let (product, recommendations) = tokio::join!(
        shop.get::<Json>(&product_path, &caller),
        shop.get::<Page<Json>>(&recommendations_path, &caller),
    );
    let product = product?;
    // Recommendations are a bonus: the page stands without them. Each is shown as a card,
    // so it needs its product.
    let skus: Vec<String> = recommendations
        .map(|page| page.items)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["sku"].as_str().map(encode))
        .take(4)
        .collect();
    let recommendations = if skus.is_empty() {
        Vec::new()
    } else {
        shop.get::<Page<Json>>(&format!("/api/products?sku={}", skus.join(",")), &caller)
            .await
            .map(|page| page.items)
            .unwrap_or_default()
    };
    let layout = layout(&state, &session).await;
    Ok(page(
        StatusCode::OK,
        "product.html",
        context! { product, recommendations, current_category => product["category"].clone(), ..layout },
    ))
}

/// `/images/<sku>.svg`: the product's picture ([`images`]).
async fn image(State(state): State<AppState>, Path(file): Path<String>) -> PageResult {
    let Some(sku) = file.strip_suffix(".svg") else {
        return Err(PageError(not_found("No such picture.")));
    };
    let product: Json = state
        .shop
        .get(
            &format!("/api/products/{}", encode(sku)),
            &Caller::default(),
        )
        .await?;
    let svg = images::product_svg(
        sku,
        product["category"].as_str().unwrap_or_default(),
        product["name"].as_str().unwrap_or(sku),
    );
    Ok((
        [
            (CONTENT_TYPE, "image/svg+xml"),
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        svg,
    )
        .into_response())
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../static/app.css"))
}

async fn script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    )
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

fn not_found(detail: &str) -> ShopError {
    ShopError::Refused {
        status: StatusCode::NOT_FOUND,
        problem: Box::new(contracts::problem::Problem {
            kind: "urn:bazaar:problem:not-found".to_owned(),
            title: "Not found".to_owned(),
            status: 404,
            detail: Some(detail.to_owned()),
            instance: None,
            request_id: None,
            trace_id: None,
            errors: Vec::new(),
        }),
    }
}

async fn not_found_page(State(state): State<AppState>, session: Session) -> Response {
    let layout = layout(&state, &session).await;
    page(
        StatusCode::NOT_FOUND,
        "error.html",
        context! {
            heading => "Not found",
            message => "There is no page at this address.",
            ..layout
        },
    )
}

#[derive(Debug, Deserialize)]
struct CartNotice {
    added: Option<String>,
}

async fn cart(
    State(state): State<AppState>,
    session: Session,
    Query(notice): Query<CartNotice>,
) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    let cart: Json = shop.get("/api/cart", &session.caller()).await?;
    let layout = layout(&state, &session).await;
    let notice = notice.added.map(|sku| format!("Added {sku} to your cart."));
    Ok(with_cookies(
        page(
            StatusCode::OK,
            "cart.html",
            context! { cart, notice, cart_count => 0, ..layout },
        ),
        cookies,
    ))
}

#[derive(Debug, Deserialize)]
struct AddToCart {
    sku: String,
    quantity: i64,
}

async fn add_to_cart(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<AddToCart>,
) -> PageResult {
    let shop = &state.shop;
    let (session, mut cookies) = fresh(shop, session).await;
    let body = json!({ "sku": form.sku, "quantity": form.quantity });
    let (_, cart_id) = shop
        .change_cart(
            Method::POST,
            "/api/cart/items",
            &session.caller(),
            Some(&body),
        )
        .await?;
    if let Some(id) = cart_id.filter(|id| session.cart.as_deref() != Some(id)) {
        cookies.extend(session.cart_cookie(Some(&id)));
    }
    let to = format!("/cart?added={}", encode(&form.sku));
    Ok(with_cookies(Redirect::to(&to).into_response(), cookies))
}

#[derive(Debug, Deserialize)]
struct SetQuantity {
    quantity: i64,
}

async fn set_quantity(
    State(state): State<AppState>,
    session: Session,
    Path(sku): Path<String>,
    Form(form): Form<SetQuantity>,
) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    let path = format!("/api/cart/items/{}", encode(&sku));
    let body = json!({ "quantity": form.quantity });
    shop.change_cart(Method::PUT, &path, &session.caller(), Some(&body))
        .await?;
    Ok(with_cookies(Redirect::to("/cart").into_response(), cookies))
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_form(
    State(state): State<AppState>,
    session: Session,
    Query(next): Query<Next>,
) -> Response {
    let layout = layout(&state, &session).await;
    let next = local(next.next.as_deref());
    page(
        StatusCode::OK,
        "login.html",
        context! { other => other_form("/signup", &next), next, ..layout },
    )
}

async fn signup_form(
    State(state): State<AppState>,
    session: Session,
    Query(next): Query<Next>,
) -> Response {
    let layout = layout(&state, &session).await;
    let next = local(next.next.as_deref());
    page(
        StatusCode::OK,
        "login.html",
        context! { signup => true, other => other_form("/login", &next), next, ..layout },
    )
}

#[derive(Debug, Deserialize)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    name: String,
    next: Option<String>,
}

/// Signs in with `form`'s credentials: the tokens' cookies, the anonymous cart merged into
/// the customer's (and its cookie dropped), and a redirect to where the shopper was going.
async fn sign_in(
    shop: &Shop,
    mut session: Session,
    form: &Credentials,
) -> Result<Response, ShopError> {
    let tokens: Tokens = shop
        .post(
            "/api/auth/login",
            &Caller::default(),
            &json!({ "email": form.email, "password": form.password }),
        )
        .await?;
    let mut cookies = session.sign_in(tokens);
    if session.cart.is_some() {
        // The first call with both the token and the anonymous cart merges them.
        if shop
            .get::<Json>("/api/cart", &session.caller())
            .await
            .is_ok()
        {
            cookies.extend(session.cart_cookie(None));
        }
    }
    Ok(with_cookies(
        Redirect::to(&local(form.next.as_deref())).into_response(),
        cookies,
    ))
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<Credentials>,
) -> PageResult {
    let shop = &state.shop;
    match sign_in(shop, session.clone(), &form).await {
        Ok(response) => Ok(response),
        Err(error) if error.status().is_some() => {
            let layout = layout(&state, &session).await;
            Ok(page(
                StatusCode::UNAUTHORIZED,
                "login.html",
                context! {
                    error => "That email and password do not match an account.",
                    email => form.email,
                    other => other_form("/signup", &local(form.next.as_deref())),
                    next => local(form.next.as_deref()),
                    ..layout
                },
            ))
        }
        Err(error) => Err(error.into()),
    }
}

async fn signup(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<Credentials>,
) -> PageResult {
    let shop = &state.shop;
    let created: Result<Json, _> = shop
        .post(
            "/api/auth/signup",
            &Caller::default(),
            &json!({ "email": form.email, "password": form.password, "name": form.name }),
        )
        .await;
    match created {
        Ok(_) => Ok(sign_in(shop, session, &form).await?),
        Err(error) if error.status().is_some() => {
            let layout = layout(&state, &session).await;
            Ok(page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "login.html",
                context! {
                    signup => true,
                    error => error.message(),
                    email => form.email,
                    name => form.name,
                    other => other_form("/login", &local(form.next.as_deref())),
                    next => local(form.next.as_deref()),
                    ..layout
                },
            ))
        }
        Err(error) => Err(error.into()),
    }
}

async fn logout(State(state): State<AppState>, session: Session) -> Response {
    if let Some(refresh) = &session.refresh {
        // Revoke the login; signed out here whatever the API says.
        let revoked: Result<Json, _> = state
            .shop
            .post(
                "/api/auth/logout",
                &Caller::default(),
                &json!({ "refresh_token": refresh }),
            )
            .await;
        if let Err(error) = revoked {
            tracing::debug!(%error, "the refresh token could not be revoked");
        }
    }
    with_cookies(
        Redirect::to("/").into_response(),
        session.sign_out_cookies(),
    )
}

/// Where a signed-out shopper is sent from a page that needs an account.
fn to_login(next: &str) -> Response {
    Redirect::to(&format!("/login?next={}", encode(next))).into_response()
}

/// The checkout form's fields, as posted (and shown again when something is wrong).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct CheckoutForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    line1: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    payment_method: String,
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp: String,
    #[serde(default, skip_serializing)]
    cvc: String,
    #[serde(default)]
    key: String,
}

async fn checkout_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    form: &CheckoutForm,
    error: Option<String>,
) -> PageResult {
    let (shop, caller) = (&state.shop, session.caller());
    let (cart, cards) = tokio::join!(
        shop.get::<Json>("/api/cart", &caller),
        shop.get::<Page<Json>>("/api/payment-methods", &caller),
    );
    let cart = cart?;
    if cart["lines"].as_array().is_none_or(Vec::is_empty) {
        return Ok(Redirect::to("/cart").into_response());
    }
    let layout = layout(state, session).await;
    // One key per form: posting it twice (a double click, a reload) places one order.
    let key = if form.key.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        form.key.clone()
    };
    Ok(page(
        status,
        "checkout.html",
        context! {
            cart,
            cards => cards?.items,
            form => Value::from_serialize(form),
            key,
            error,
            ..layout
        },
    ))
}

async fn checkout_form(State(state): State<AppState>, session: Session) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    if session.access.is_none() {
        return Ok(to_login("/checkout"));
    }
    let response = checkout_page(
        &state,
        &session,
        StatusCode::OK,
        &CheckoutForm::default(),
        None,
    )
    .await?;
    Ok(with_cookies(response, cookies))
}

/// `MM/YYYY` (or `MM/YY`) as month and year.
fn expiry(text: &str) -> Option<(u32, u32)> {
    let (month, year) = text.trim().split_once('/')?;
    let month: u32 = month.trim().parse().ok()?;
    let year: u32 = year.trim().parse().ok()?;
    let year = if year < 100 { 2000 + year } else { year };
    (1..=12).contains(&month).then_some((month, year))
}

async fn checkout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CheckoutForm>,
) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    if session.access.is_none() {
        return Ok(to_login("/checkout"));
    }
    let caller = session.caller();
    let placed: Result<Json, ShopError> = async {
        let payment_method = if form.payment_method == "new" || form.payment_method.is_empty() {
            let Some((exp_month, exp_year)) = expiry(&form.exp) else {
                return Err(ShopError::Refused {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    problem: Box::new(contracts::problem::Problem {
                        kind: "urn:bazaar:problem:validation".to_owned(),
                        title: "Check the card".to_owned(),
                        status: 422,
                        detail: Some(format!(
                            "The expiry date {:?} is not a month and year such as 12/2030.",
                            form.exp
                        )),
                        instance: None,
                        request_id: None,
                        trace_id: None,
                        errors: Vec::new(),
                    }),
                });
            };
            let card: Json = shop
                .post(
                    "/api/payment-methods",
                    &caller,
                    &json!({
                        "card_number": form.card_number.replace([' ', '-'], ""),
                        "exp_month": exp_month,
                        "exp_year": exp_year,
                        "cvc": form.cvc,
                    }),
                )
                .await?;
            card["id"].as_str().unwrap_or_default().to_owned()
        } else {
            form.payment_method.clone()
        };
        shop.place_order(
            &caller,
            &form.key,
            &json!({
                "from_cart": true,
                "payment_method": payment_method,
                "shipping_address": {
                    "name": form.name,
                    "line1": form.line1,
                    "city": form.city,
                    "postal_code": form.postal_code,
                    "country": form.country.to_ascii_uppercase(),
                },
            }),
        )
        .await
    }
    .await;
    match placed {
        Ok(order) => {
            let id = order["id"].as_str().unwrap_or_default();
            Ok(with_cookies(
                Redirect::to(&format!("/orders/{}", encode(id))).into_response(),
                cookies,
            ))
        }
        Err(error) if error.status().is_some() => {
            let response = checkout_page(
                &state,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                Some(error.message()),
            )
            .await?;
            Ok(with_cookies(response, cookies))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Deserialize)]
struct Cursor {
    cursor: Option<String>,
}

async fn orders(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<Cursor>,
) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    if session.access.is_none() {
        return Ok(to_login("/orders"));
    }
    let mut path = "/api/orders?page_size=20".to_owned();
    if let Some(cursor) = &query.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let orders: Page<Json> = shop.get(&path, &session.caller()).await?;
    let next = orders
        .next_cursor
        .map(|cursor| format!("/orders?cursor={}", encode(&cursor)));
    let layout = layout(&state, &session).await;
    Ok(with_cookies(
        page(
            StatusCode::OK,
            "orders.html",
            context! { orders => orders.items, next, ..layout },
        ),
        cookies,
    ))
}

/// Whether an order's checkout has settled (confirmed or cancelled).
fn settled(order: &Json) -> bool {
    order["status"] != "PENDING"
}

async fn order(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    if session.access.is_none() {
        return Ok(to_login(&format!("/orders/{}", encode(&id))));
    }
    let order: Json = shop
        .get(&format!("/api/orders/{}", encode(&id)), &session.caller())
        .await?;
    let layout = layout(&state, &session).await;
    Ok(with_cookies(
        page(
            StatusCode::OK,
            "order.html",
            context! { settled => settled(&order), order, ..layout },
        ),
        cookies,
    ))
}

/// `GET /orders/{id}/status`: `{"status": …, "settled": …}` once the checkout settles, or
/// after ten seconds; the order page's script asks until it is settled.
async fn order_status(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let path = format!(
        "/api/orders/{}?wait={}s",
        encode(&id),
        STATUS_WAIT.as_secs()
    );
    match state.shop.get::<Json>(&path, &session.caller()).await {
        Ok(order) => axum::Json(json!({
            "status": order["status"],
            "settled": settled(&order),
        }))
        .into_response(),
        Err(error) => (
            error.status().unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            axum::Json(json!({ "error": error.message() })),
        )
            .into_response(),
    }
}

async fn emails(State(state): State<AppState>, session: Session) -> PageResult {
    let shop = &state.shop;
    let (session, cookies) = fresh(shop, session).await;
    if session.access.is_none() {
        return Ok(to_login("/emails"));
    }
    let caller = session.caller();
    let (me, emails) = tokio::join!(
        shop.get::<Json>("/api/users/me", &caller),
        shop.get::<Page<Json>>("/api/emails", &caller),
    );
    let (me, emails) = (me?, emails?);
    let layout = layout(&state, &session).await;
    Ok(with_cookies(
        page(
            StatusCode::OK,
            "emails.html",
            context! { to => me["email"].clone(), emails => emails.items, ..layout },
        ),
        cookies,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(local(Some("/checkout")), "/checkout");
        for away in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "checkout",
        ] {
            assert_eq!(local(Some(away)), "/", "{away}");
        }
        assert_eq!(local(None), "/");
    }

    #[test]
    fn switching_forms_keeps_where_the_shopper_was_going() {
        assert_eq!(other_form("/signup", "/"), "/signup");
        assert_eq!(
            other_form("/signup", "/checkout"),
            "/signup?next=%2Fcheckout"
        );
    }

    #[test]
    fn an_expiry_is_a_month_and_a_year() {
        assert_eq!(expiry("12/2030"), Some((12, 2030)));
        assert_eq!(expiry(" 3 / 31 "), Some((3, 2031)));
        assert_eq!(expiry("13/2030"), None);
        assert_eq!(expiry("2030"), None);
        assert_eq!(expiry("ab/cd"), None);
    }
}
