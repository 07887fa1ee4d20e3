use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use orders::{Application, Config, Settings};
use reqwest::Response;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const ALICE: &str = "0190b5d8-0000-7000-8000-00000000a11c";
pub(crate) const BOB: &str = "0190b5d8-0000-7000-8000-000000000b0b";
pub(crate) const ADMIN: &str = "0190b5d8-0000-7000-8000-0000000ad000";

/// A catalog that knows two products and answers `GET /products?sku=…` like the real one.
struct Products;

impl Respond for Products {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let known = [
            json!({"sku": "MUG-STONE", "name": "Stoneware Mug", "price": {"amount_minor": 1800, "currency": "USD"}, "active": true}),
            json!({"sku": "BOOK-RUST", "name": "The Rust Programming Language", "price": {"amount_minor": 3900, "currency": "USD"}, "active": true}),
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

/// The fake catalog, with reservations answered by `reservations`.
pub(crate) async fn catalog(reservations: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(Products)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(reservations)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/reservations/"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "r-1", "status": "released"})),
        )
        .mount(&server)
        .await;
    server
}

/// A catalog that holds everything asked for.
pub(crate) async fn generous_catalog() -> MockServer {
    catalog(
        ResponseTemplate::new(201)
            .set_body_json(json!({"id": "res-1", "status": "held", "items": []})),
    )
    .await
}

/// An orders service running for one test.
pub(crate) struct TestApp {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub(crate) async fn spawn(db: TestDatabase, catalog_url: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        chassis.discovery.call_timeout = Duration::from_secs(2);
        chassis
            .discovery
            .static_instances
            .insert("catalog".into(), vec![catalog_url.to_owned()]);
        // The fake catalog's server also plays the cart service.
        chassis
            .discovery
            .static_instances
            .insert("cart".into(), vec![catalog_url.to_owned()]);
        let shutdown = CancellationToken::new();
        let app = Application::build(
            Config {
                chassis,
                settings: Settings::default(),
            },
            &shutdown,
        )
        .await
        .expect("orders starts");
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            _db: db,
        }
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A request as the gateway sends it for `user` (admins get the admin role).
    pub(crate) fn as_user(
        &self,
        request: reqwest::RequestBuilder,
        user: &str,
    ) -> reqwest::RequestBuilder {
        let roles = if user == ADMIN {
            "customer,admin"
        } else {
            "customer"
        };
        request
            .header("x-bazaar-user-id", user)
            .header("x-bazaar-user-roles", roles)
    }

    pub(crate) async fn place(&self, user: &str, key: Option<&str>, body: &Value) -> Response {
        let mut request = self
            .as_user(self.http.post(self.at("/orders")), user)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("orders answers")
    }

    pub(crate) async fn get(&self, user: &str, path: &str) -> Response {
        self.as_user(self.http.get(self.at(path)), user)
            .send()
            .await
            .expect("orders answers")
    }
}

/// An order of two mugs and a book, with a price the client has no say in.
pub(crate) fn order_body() -> Value {
    json!({
        "items": [
            {"sku": "mug-stone", "quantity": 2, "price": {"amount_minor": 1, "currency": "USD"}},
            {"sku": "BOOK-RUST", "quantity": 1}
        ],
        "total": {"amount_minor": 1, "currency": "USD"},
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical St", "city": "London",
                             "postal_code": "N1 9GU", "country": "gb"}
    })
}

/// Reads a problem body and checks its content type.
pub(crate) async fn problem(response: Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("problem json")
}
