//! Orders as a provider: a customer's orders, for the gateway's dashboard; `order.confirmed`
//! and `order.cancelled`, for notifications and recommendations. Its own neighbours (catalog,
//! payments, shipping) are stubbed; a card token `pm_declined` is declined.

use std::time::Duration;

use async_trait::async_trait;
use chassis::testing::TestDatabase;
use contracts::events::{Event, OrderCancelled, OrderConfirmed};
use orders::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_partial_json, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{self, Ports, Published, States, Values};

/// The neighbours of orders, answering as they do when all goes well.
async fn neighbours() -> MockServer {
    let server = MockServer::start().await;
    let prices = |request: &Request| {
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
    };
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(prices)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/charges"))
        .and(body_partial_json(json!({"payment_method": "pm_declined"})))
        .respond_with(
            ResponseTemplate::new(402)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(json!({"type": "urn:bazaar:problem:card-declined", "title": "Card declined", "status": 402, "detail": "card_declined"})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    let created = |body: Value| ResponseTemplate::new(201).set_body_json(body);
    for (verb, route, answer) in [
        (
            "POST",
            "^/reservations$",
            created(json!({"id": "res-1", "status": "held"})),
        ),
        (
            "DELETE",
            "^/reservations/[^/]+$",
            ok(json!({"id": "res-1", "status": "released"})),
        ),
        (
            "POST",
            "^/reservations/[^/]+/commit$",
            ok(json!({"id": "res-1", "status": "committed"})),
        ),
        (
            "POST",
            "^/reservations/[^/]+/return$",
            ok(json!({"id": "res-1", "status": "returned"})),
        ),
        (
            "POST",
            "^/charges$",
            created(json!({"id": "ch-1", "status": "succeeded"})),
        ),
        (
            "POST",
            "^/charges/[^/]+/refunds$",
            created(json!({"id": "rf-1", "charge_id": "ch-1"})),
        ),
        (
            "POST",
            "^/shipments$",
            created(json!({"id": "sh-1", "status": "label_created"})),
        ),
        (
            "POST",
            "^/shipments/[^/]+/cancel$",
            ok(json!({"id": "sh-1", "status": "cancelled"})),
        ),
    ] {
        Mock::given(method(verb))
            .and(path_regex(route))
            .respond_with(answer)
            .with_priority(5)
            .mount(&server)
            .await;
    }
    server
}

#[derive(Debug)]
struct Orders {
    url: String,
    http: reqwest::Client,
}

impl Orders {
    /// A new customer's order of two mugs, paid with `card`, once settled; the customer's id.
    async fn order(&self, card: &str) -> anyhow::Result<String> {
        let user = uuid::Uuid::now_v7().to_string();
        let as_user = |request: reqwest::RequestBuilder| {
            request
                .header("x-bazaar-user-id", &user)
                .header("x-bazaar-user-roles", "customer")
        };
        let placed: Value = as_user(self.http.post(format!("{}/orders", self.url)))
            .json(&json!({
                "items": [{"sku": "MUG-STONE", "quantity": 2}],
                "shipping_address": {"name": "Ada", "line1": "12 Analytical St", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
                "payment_method": card,
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = placed["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no order id in {placed}"))?;
        for _ in 0..20 {
            let order: Value = as_user(self.http.get(format!("{}/orders/{id}?wait=5s", self.url)))
                .send()
                .await?
                .json()
                .await?;
            if matches!(
                order["checkout"]["status"].as_str(),
                Some("confirmed" | "cancelled")
            ) {
                return Ok(user);
            }
        }
        anyhow::bail!("order {id} did not settle")
    }
}

#[async_trait]
impl States for Orders {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            "a customer has placed an order" => {
                let user = self.order("pm_accepted").await?;
                Ok([("userId".to_owned(), json!(user))].into())
            }
            "an order is confirmed" => {
                self.order("pm_accepted").await?;
                Ok(Values::new())
            }
            "an order is cancelled because its card is declined" => {
                self.order("pm_declined").await?;
                Ok(Values::new())
            }
            other => anyhow::bail!("orders knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn orders_keeps_its_contracts() {
    let neighbours = neighbours().await;
    let db = TestDatabase::sqlite();
    let mut chassis = support::chassis(&db);
    chassis.discovery.call_timeout = Duration::from_secs(2);
    for service in ["catalog", "cart", "payments", "shipping"] {
        chassis
            .discovery
            .static_instances
            .insert(service.into(), vec![neighbours.uri()]);
    }
    let shutdown = CancellationToken::new();
    let app = Application::build(
        Config {
            chassis,
            settings: Settings::default(),
        },
        &shutdown,
    );
    let url = support::run!(app.await.expect("orders starts"), shutdown);
    let published = Published {
        url: url.clone(),
        kinds: &[
            ("an order was confirmed", OrderConfirmed::TYPE),
            ("an order was cancelled", OrderCancelled::TYPE),
        ],
    };
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: Some(published.serve().await),
    };
    let states = Orders {
        url,
        http: reqwest::Client::new(),
    };
    support::verify("orders", ports, states).await;
    shutdown.cancel();
}
