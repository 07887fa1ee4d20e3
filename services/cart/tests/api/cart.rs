//! The cart API over HTTP, with the catalog faked.

use std::time::Duration;

use cart::{Application, Config, Settings};
use chassis::config::ChassisConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ALICE: &str = "0190b5d8-0000-7000-8000-00000000a11c";

/// A catalog with a mug in stock, a tent sold out and a deactivated poster.
struct Products;

impl Respond for Products {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let known = [
            json!({"sku": "MUG-STONE", "name": "Stoneware Mug", "price": {"amount_minor": 1800, "currency": "USD"}, "active": true, "available": 3}),
            json!({"sku": "TENT-2P", "name": "Two-Person Tent", "price": {"amount_minor": 24900, "currency": "USD"}, "active": true, "available": 0}),
            json!({"sku": "POSTER-1", "name": "Poster", "price": {"amount_minor": 900, "currency": "USD"}, "active": false, "available": 5}),
        ];
        let wanted: Vec<String> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k == "sku")
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let items: Vec<Value> = known
            .into_iter()
            .filter(|p| wanted.iter().any(|w| p["sku"] == w.as_str()))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"items": items, "next_cursor": null}))
    }
}

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _data: tempfile::TempDir,
    _catalog: MockServer,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn() -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let catalog = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(Products)
        .mount(&catalog)
        .await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut chassis = ChassisConfig::with_port(0);
    chassis.data_dir = data.path().to_path_buf();
    chassis.discovery.registry = None;
    chassis
        .discovery
        .static_instances
        .insert("catalog".into(), vec![catalog.uri()]);
    let settings = Settings {
        max_lines: 3,
        max_quantity: 5,
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let app = Application::build(Config { chassis, settings }, &shutdown)
        .await
        .expect("cart starts");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    App {
        url,
        http: reqwest::Client::new(),
        shutdown,
        _data: data,
        _catalog: catalog,
    }
}

impl App {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        cart: Option<&str>,
        user: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(cart) = cart {
            request = request.header("x-cart-id", cart);
        }
        if let Some(user) = user {
            request = request
                .header("x-bazaar-user-id", user)
                .header("x-bazaar-user-roles", "customer");
        }
        request
    }

    async fn add(
        &self,
        cart: Option<&str>,
        user: Option<&str>,
        sku: &str,
        quantity: u32,
    ) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/cart/items", cart, user)
            .json(&json!({"sku": sku, "quantity": quantity}))
            .send()
            .await
            .expect("answers")
    }

    async fn view(&self, cart: Option<&str>, user: Option<&str>) -> Value {
        self.request(reqwest::Method::GET, "/cart", cart, user)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json")
    }
}

#[tokio::test]
async fn an_anonymous_cart_merges_into_the_customers_at_login() {
    let app = spawn().await;
    let first = app.add(None, None, "mug-stone", 2).await;
    assert_eq!(first.status(), 200);
    let cart_id = first.headers()["x-cart-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cart_id.starts_with("anon-"));
    app.add(Some(&cart_id), None, "TENT-2P", 1).await;
    let anonymous = app.view(Some(&cart_id), None).await;
    assert_eq!(anonymous["item_count"], 3);

    // Alice already had a mug in her cart; logging in brings the anonymous cart over.
    app.add(None, Some(ALICE), "MUG-STONE", 2).await;
    let merged = app.view(Some(&cart_id), Some(ALICE)).await;
    assert_eq!(
        merged["cart_id"],
        Value::Null,
        "a customer's cart has no id to keep"
    );
    let lines = merged["lines"].as_array().expect("lines");
    assert_eq!(lines[0]["sku"], "MUG-STONE");
    assert_eq!(lines[0]["quantity"], 4, "2 + 2");
    assert_eq!(
        app.view(Some(&cart_id), None).await["item_count"],
        0,
        "the anonymous cart is gone"
    );
}

#[tokio::test]
async fn the_view_prices_lines_and_flags_what_cannot_be_bought() {
    let app = spawn().await;
    for (sku, quantity) in [("MUG-STONE", 5), ("TENT-2P", 1), ("POSTER-1", 1)] {
        assert_eq!(
            app.add(None, Some(ALICE), sku, quantity).await.status(),
            200
        );
    }
    let view = app.view(None, Some(ALICE)).await;
    let status: Vec<(&str, &str)> = view["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| Some((l["sku"].as_str()?, l["status"].as_str()?)))
        .collect();
    assert_eq!(
        status,
        [
            ("MUG-STONE", "short"),
            ("POSTER-1", "gone"),
            ("TENT-2P", "out_of_stock")
        ]
    );
    assert_eq!(
        view["lines"][0]["line_total"],
        json!({"amount_minor": 9000, "currency": "USD"})
    );
    assert_eq!(
        view["total"],
        json!({"amount_minor": 9000, "currency": "USD"}),
        "only what can be bought counts"
    );
    assert_eq!(view["priced"], true);
}

#[tokio::test]
async fn limits_and_bad_input_are_clear_4xx() {
    let app = spawn().await;
    assert_eq!(
        app.add(None, Some(ALICE), "MUG-STONE", 6).await.status(),
        422,
        "at most 5 of one product"
    );
    assert_eq!(
        app.add(None, Some(ALICE), "MUG-STONE", 0).await.status(),
        422
    );
    assert_eq!(
        app.add(None, Some(ALICE), "not a sku", 1).await.status(),
        422
    );
    for sku in ["AAA-1", "BBB-1", "CCC-1"] {
        assert_eq!(app.add(None, Some(ALICE), sku, 1).await.status(), 200);
    }
    let fourth = app.add(None, Some(ALICE), "DDD-1", 1).await;
    assert_eq!(fourth.status(), 422, "at most 3 products");
    let problem: Value = fourth.json().await.expect("json");
    assert_eq!(
        problem["errors"][0]["message"],
        "a cart holds at most 3 different products"
    );
    let forged = app
        .request(reqwest::Method::GET, "/cart", Some("somebody-elses"), None)
        .send()
        .await
        .expect("answers");
    assert_eq!(forged.status(), 400);

    let set = app
        .request(reqwest::Method::PUT, "/cart/items/aaa-1", None, Some(ALICE))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .expect("answers");
    assert_eq!(set.status(), 200);
    let removed = app
        .request(
            reqwest::Method::DELETE,
            "/cart/items/BBB-1",
            None,
            Some(ALICE),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(removed.status(), 200);
    assert_eq!(app.view(None, Some(ALICE)).await["item_count"], 1);
    let cleared = app
        .request(reqwest::Method::DELETE, "/cart", None, Some(ALICE))
        .send()
        .await
        .expect("answers");
    assert_eq!(cleared.status(), 204);
    assert_eq!(app.view(None, Some(ALICE)).await["item_count"], 0);
}
