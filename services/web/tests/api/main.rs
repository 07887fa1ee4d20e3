//! Integration tests of the storefront: the service on port 0, its gateway a mock of the
//! public API, a browser played by reqwest without redirects (so each test sees the cookies
//! and redirects the pages send).

use std::time::Duration;

use base64::Engine;
use chassis::config::ChassisConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use web::{Application, Config, Settings};
use wiremock::matchers::{body_json, header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct App {
    url: String,
    http: reqwest::Client,
    api: MockServer,
    shutdown: CancellationToken,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

mod console;

/// The storefront, in front of a mock API that has the categories and two products.
async fn spawn() -> App {
    spawn_with_registry(None).await
}

/// [`spawn`], registered in (and reading) the registry at `registry`.
async fn spawn_with_registry(registry: Option<String>) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = MockServer::start().await;
    let mut chassis = ChassisConfig::with_port(0);
    chassis.discovery.registry = registry;
    chassis
        .discovery
        .static_instances
        .insert("gateway".into(), vec![api.uri()]);
    let shutdown = CancellationToken::new();
    let app = Application::build(
        Config {
            chassis,
            settings: Settings::default(),
        },
        &shutdown,
    )
    .await
    .expect("the storefront starts");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    let app = App {
        url,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        api,
        shutdown,
    };
    app.mock_get("/api/categories", json!({"items": [
        {"slug": "kitchen", "name": "Kitchen", "description": "Mugs and pans.", "product_count": 2}
    ]}))
    .await;
    app.mock_get("/api/products/MUG-STONE", mug()).await;
    app
}

fn mug() -> Value {
    json!({
        "id": "p1", "sku": "MUG-STONE", "name": "Stoneware Mug", "description": "Holds tea.",
        "price": {"amount_minor": 1800, "currency": "USD"}, "category": "kitchen",
        "active": true, "available": 12,
        "created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"
    })
}

/// An access token the gateway would have signed: the storefront only reads it.
fn token(roles: &[&str]) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 900)
        .unwrap_or(0);
    let claims = json!({"iss": "bazaar", "aud": "bazaar", "sub": "u-ada", "exp": exp, "iat": exp - 900,
        "jti": "j1", "roles": roles});
    format!(
        "{}.{}.sig",
        encode(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        encode(claims.to_string().as_bytes())
    )
}

impl App {
    async fn mock_get(&self, at: &str, body: Value) {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.api)
            .await;
    }

    async fn get(&self, at: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{at}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("answers")
    }

    async fn post_form(
        &self,
        at: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .http
            .post(format!("{}{at}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("answers")
    }
}

/// The `Set-Cookie` values of `response`.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_home_page_shows_each_category_with_its_products_and_stays_small() {
    let app = spawn().await;
    Mock::given(method("GET"))
        .and(path("/api/products"))
        .and(query_param("category", "kitchen"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": [mug()]})))
        .mount(&app.api)
        .await;
    let response = app.get("/", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.expect("html");
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(
        html.contains(r#"<a href="/c/kitchen">Kitchen</a>"#),
        "{html}"
    );
    assert!(html.contains(r#"<a href="/p/MUG-STONE">"#));
    assert!(html.contains("$18.00"));
    assert!(
        html.contains(r#"<a href="/login">Log in</a>"#),
        "signed out"
    );
    assert!(html.len() < 50 * 1024, "{} bytes", html.len());
}

#[tokio::test]
async fn a_product_page_has_its_price_picture_and_a_form_to_buy_it() {
    let app = spawn().await;
    Mock::given(method("GET"))
        .and(path("/api/recommendations"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.api)
        .await;
    let html = app
        .get("/p/MUG-STONE", None)
        .await
        .text()
        .await
        .expect("html");
    assert!(html.contains("<h1>Stoneware Mug</h1>"), "{html}");
    assert!(html.contains(r#"<img src="/images/MUG-STONE.svg" alt="Stoneware Mug""#));
    assert!(html.contains(r#"<form action="/cart/items" method="post""#));
    assert!(html.contains(r#"<label for="quantity">Quantity</label>"#));
    assert!(html.contains("12 in stock"));
    assert!(
        !html.contains("also bought"),
        "recommendations down: the page stands without them"
    );

    let picture = app.get("/images/MUG-STONE.svg", None).await;
    assert_eq!(picture.status(), 200);
    assert_eq!(picture.headers()["content-type"], "image/svg+xml");
    let svg = picture.text().await.expect("svg");
    assert!(svg.contains(r#"aria-label="Stoneware Mug""#));

    Mock::given(method("GET"))
        .and(path("/api/products/NOPE"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "type": "urn:bazaar:problem:not-found", "title": "Not found", "status": 404,
            "detail": "no product NOPE"})))
        .mount(&app.api)
        .await;
    let missing = app.get("/p/NOPE", None).await;
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .expect("html")
            .contains("no product NOPE")
    );
}

#[tokio::test]
async fn an_anonymous_cart_lives_in_a_cookie() {
    let app = spawn().await;
    Mock::given(method("POST"))
        .and(path("/api/cart/items"))
        .and(body_json(json!({"sku": "MUG-STONE", "quantity": 2})))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-cart-id", "cart-123")
                .set_body_json(
                    json!({"cart_id": "cart-123", "lines": [], "item_count": 2, "priced": false}),
                ),
        )
        .expect(1)
        .mount(&app.api)
        .await;
    let added = app
        .post_form(
            "/cart/items",
            &[("sku", "MUG-STONE"), ("quantity", "2")],
            None,
        )
        .await;
    assert_eq!(added.status(), 303);
    assert_eq!(location(&added), "/cart?added=MUG-STONE");
    let cookies = set_cookies(&added);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("bazaar_cart=cart-123;") && c.contains("HttpOnly")),
        "{cookies:?}"
    );

    Mock::given(method("GET"))
        .and(path("/api/cart"))
        .and(header("x-cart-id", "cart-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "cart_id": "cart-123", "item_count": 2, "priced": true,
            "total": {"amount_minor": 3600, "currency": "USD"},
            "lines": [{"sku": "MUG-STONE", "name": "Stoneware Mug", "quantity": 2, "status": "ok",
                "unit_price": {"amount_minor": 1800, "currency": "USD"},
                "line_total": {"amount_minor": 3600, "currency": "USD"}}]})))
        .mount(&app.api)
        .await;
    let html = app
        .get("/cart?added=MUG-STONE", Some("bazaar_cart=cart-123"))
        .await
        .text()
        .await
        .expect("html");
    assert!(html.contains("Added MUG-STONE to your cart."), "{html}");
    assert!(html.contains("Stoneware Mug") && html.contains("$36.00"));
    assert!(html.contains(r#"<a class="button" href="/checkout">Check out</a>"#));
}

#[tokio::test]
async fn logging_in_sets_the_tokens_merges_the_cart_and_goes_on() {
    let app = spawn().await;
    Mock::given(method("POST"))
        .and(path("/api/auth/login"))
        .and(body_json(
            json!({"email": "ada@example.com", "password": "wrong"}),
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "type": "urn:bazaar:problem:unauthorized", "title": "Unauthorized", "status": 401})))
        .mount(&app.api)
        .await;
    let refused = app
        .post_form(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", "wrong"),
                ("next", "/checkout"),
            ],
            None,
        )
        .await;
    assert_eq!(refused.status(), 401);
    assert!(set_cookies(&refused).is_empty());
    let html = refused.text().await.expect("html");
    assert!(html.contains("do not match an account"), "{html}");
    assert!(
        html.contains(r#"value="ada@example.com""#),
        "the email is kept"
    );

    let access = token(&["customer"]);
    Mock::given(method("POST"))
        .and(path("/api/auth/login"))
        .and(body_json(json!({"email": "ada@example.com", "password": "right"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": access, "refresh_token": "r-1", "token_type": "Bearer", "expires_in": 900})))
        .mount(&app.api)
        .await;
    // The first call with the token and the anonymous cart merges them.
    Mock::given(method("GET"))
        .and(path("/api/cart"))
        .and(header("x-cart-id", "cart-123"))
        .and(header("authorization", format!("Bearer {access}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"lines": [], "item_count": 0, "priced": true})),
        )
        .expect(1)
        .mount(&app.api)
        .await;
    let signed_in = app
        .post_form(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", "right"),
                ("next", "/checkout"),
            ],
            Some("bazaar_cart=cart-123"),
        )
        .await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(location(&signed_in), "/checkout");
    let cookies = set_cookies(&signed_in);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("bazaar_access={access};")))
    );
    assert!(cookies.iter().any(|c| c.starts_with("bazaar_refresh=r-1;")));
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("bazaar_cart=;") && c.contains("Max-Age=0")),
        "the merged cart's cookie goes: {cookies:?}"
    );

    // Somewhere else after signing in: only this site.
    let away = app
        .post_form(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", "right"),
                ("next", "https://evil.example/"),
            ],
            None,
        )
        .await;
    assert_eq!(location(&away), "/");
}

#[tokio::test]
async fn checkout_needs_an_account_then_places_one_order_per_form() {
    let app = spawn().await;
    let to_login = app.get("/checkout", None).await;
    assert_eq!(to_login.status(), 303);
    assert_eq!(location(&to_login), "/login?next=%2Fcheckout");

    let access = token(&["customer"]);
    let cookie = format!("bazaar_access={access}; bazaar_refresh=r-1");
    Mock::given(method("GET"))
        .and(path("/api/cart"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "item_count": 1, "priced": true, "total": {"amount_minor": 1800, "currency": "USD"},
            "lines": [{"sku": "MUG-STONE", "name": "Stoneware Mug", "quantity": 1, "status": "ok"}]})))
        .mount(&app.api)
        .await;
    app.mock_get("/api/payment-methods", json!({"items": []}))
        .await;
    let form = app.get("/checkout", Some(&cookie)).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.expect("html");
    assert!(html.contains(r#"<legend>Ship to</legend>"#), "{html}");
    assert!(
        html.contains(r#"name="country" autocomplete="country" required pattern="[A-Za-z]{2}" maxlength="2" value="US""#),
        "the country starts filled in, or the browser refuses the form: {html}"
    );
    let key = html
        .split(r#"name="key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an idempotency key in the form")
        .to_owned();
    assert_eq!(key.len(), 36, "{key}");

    Mock::given(method("POST"))
        .and(path("/api/payment-methods"))
        .and(body_json(json!({"card_number": "4242424242424242", "exp_month": 12,
            "exp_year": 2030, "cvc": "123"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "pm-1", "brand": "visa",
            "last4": "4242", "exp_month": 12, "exp_year": 2030, "created_at": "2026-11-27T00:00:00Z"})))
        .expect(1)
        .mount(&app.api)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .and(header("idempotency-key", key.as_str()))
        .and(header_exists("authorization"))
        .and(body_json(
            json!({"from_cart": true, "payment_method": "pm-1", "shipping_address": {
            "name": "Ada", "line1": "1 Analytical Way", "city": "London",
            "postal_code": "N1", "country": "GB"}}),
        ))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(json!({"id": "o-42", "status": "PENDING"})),
        )
        .expect(1)
        .mount(&app.api)
        .await;
    let placed = app
        .post_form(
            "/checkout",
            &[
                ("name", "Ada"),
                ("line1", "1 Analytical Way"),
                ("city", "London"),
                ("postal_code", "N1"),
                ("country", "gb"),
                ("payment_method", "new"),
                ("card_number", "4242 4242 4242 4242"),
                ("exp", "12/2030"),
                ("cvc", "123"),
                ("key", &key),
            ],
            Some(&cookie),
        )
        .await;
    assert_eq!(placed.status(), 303);
    assert_eq!(location(&placed), "/orders/o-42");

    // A bad expiry is said back on the form, what was typed kept (but not the CVC).
    let refused = app
        .post_form(
            "/checkout",
            &[
                ("name", "Ada"),
                ("line1", "1 Analytical Way"),
                ("city", "London"),
                ("postal_code", "N1"),
                ("country", "GB"),
                ("payment_method", "new"),
                ("card_number", "4242424242424242"),
                ("exp", "2030"),
                ("cvc", "999"),
                ("key", &key),
            ],
            Some(&cookie),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.expect("html");
    assert!(html.contains("is not a month and year"), "{html}");
    assert!(html.contains(r#"value="1 Analytical Way""#));
    assert!(!html.contains("999"), "the CVC is never echoed");
}

#[tokio::test]
async fn an_order_page_follows_its_checkout_and_says_why_it_was_cancelled() {
    let app = spawn().await;
    let access = token(&["customer"]);
    let cookie = format!("bazaar_access={access}");
    let order = |status: &str, reason: Option<&str>| {
        json!({"id": "o-42", "user_id": "u-ada", "status": status, "cancel_reason": reason,
            "total": {"amount_minor": 1800, "currency": "USD"},
            "lines": [{"sku": "MUG-STONE", "name": "Stoneware Mug", "quantity": 1}],
            "shipping_address": {"name": "Ada", "line1": "1 Analytical Way", "city": "London",
                "postal_code": "N1", "country": "GB"},
            "status_history": [{"status": status, "reason": "placed", "at": "2026-11-27T09:00:01Z"}],
            "created_at": "2026-11-27T09:00:00Z", "updated_at": "2026-11-27T09:00:01Z"})
    };
    Mock::given(method("GET"))
        .and(path("/api/orders/o-42"))
        .and(query_param("wait", "10s"))
        .respond_with(ResponseTemplate::new(200).set_body_json(order(
            "CANCELLED",
            Some("the card was declined: card_declined"),
        )))
        .mount(&app.api)
        .await;
    app.mock_get("/api/orders/o-42", order("PENDING", None))
        .await;
    let pending = app
        .get("/orders/o-42", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(pending.contains(r#"data-settled="false""#), "{pending}");
    assert!(pending.contains("This page updates by itself."));
    assert!(
        pending.contains(r#"<meta http-equiv="refresh" content="3">"#),
        "works without JavaScript"
    );

    let status: Value = app
        .get("/orders/o-42/status", Some(&cookie))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(status, json!({"status": "CANCELLED", "settled": true}));
}

#[tokio::test]
async fn a_shop_that_cannot_answer_is_a_clear_page_not_a_crash() {
    let app = spawn().await;
    Mock::given(method("GET"))
        .and(path("/api/products"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.api)
        .await;
    let response = app.get("/search?q=mug", None).await;
    assert_eq!(response.status(), 503);
    let html = response.text().await.expect("html");
    assert!(html.contains("The shop is busy"), "{html}");
    assert!(html.contains("Please try again"));
}

#[tokio::test]
async fn a_customer_reads_their_own_emails() {
    let app = spawn().await;
    let signed_out = app.get("/emails", None).await;
    assert_eq!(location(&signed_out), "/login?next=%2Femails");
    let access = token(&["customer"]);
    let cookie = format!("bazaar_access={access}");
    app.mock_get(
        "/api/users/me",
        json!({"id": "u-ada", "email": "ada@example.com", "name": "Ada"}),
    )
    .await;
    app.mock_get("/api/emails", json!({"items": [{"id": "e1", "kind": "order_confirmed",
        "to": "ada@example.com", "subject": "Your order is confirmed", "body": "Thank you, Ada.",
        "status": "sent", "attempts": 1, "event_id": "ev1", "created_at": "2026-11-27T09:00:00Z"}]}))
        .await;
    let html = app
        .get("/emails", Some(&cookie))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("<h1>Emails to ada@example.com</h1>"),
        "{html}"
    );
    assert!(html.contains("Your order is confirmed") && html.contains("Thank you, Ada."));
}

#[tokio::test]
async fn listings_page_on_with_the_api_cursor() {
    let app = spawn().await;
    Mock::given(method("GET"))
        .and(path("/api/products"))
        .and(query_param("category", "kitchen"))
        .and(query_param("cursor", "c/2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": [mug()]})))
        .mount(&app.api)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/products"))
        .and(query_param("category", "kitchen"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [mug()], "next_cursor": "c/2"})),
        )
        .mount(&app.api)
        .await;
    // Links as a browser reads them (minijinja escapes `/` in attributes).
    let unescape = |html: String| html.replace("&#x2f;", "/").replace("&amp;", "&");
    let first = unescape(
        app.get("/c/kitchen", None)
            .await
            .text()
            .await
            .expect("html"),
    );
    assert!(first.contains("<h1>Kitchen</h1>"), "{first}");
    assert!(
        first.contains(r#"<a href="/c/kitchen?cursor=c%2F2" rel="next">More</a>"#),
        "{first}"
    );
    let second = app
        .get("/c/kitchen?cursor=c%2F2", None)
        .await
        .text()
        .await
        .expect("html");
    assert!(second.contains("Stoneware Mug") && !second.contains(r#"rel="next""#));
    assert_eq!(app.get("/c/garden", None).await.status(), 404);

    Mock::given(method("GET"))
        .and(path("/api/products"))
        .and(query_param("q", "blue mug"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [mug()], "next_cursor": "s2"})),
        )
        .mount(&app.api)
        .await;
    let found = unescape(
        app.get("/search?q=blue+mug", None)
            .await
            .text()
            .await
            .expect("html"),
    );
    assert!(
        found.contains(r#"value="blue mug""#),
        "the search box keeps the words"
    );
    assert!(
        found.contains(r#"href="/search?q=blue+mug&cursor=s2""#),
        "{found}"
    );
}
