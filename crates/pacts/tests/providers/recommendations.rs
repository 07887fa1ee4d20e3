//! Recommendations as a provider: a customer's recommendations, for the gateway's dashboard.
//! It learns from the orders feed, played here by a fake producer.

use std::time::Duration;

use async_trait::async_trait;
use chassis::testing::{FeedProducer, TestDatabase};
use contracts::events::{OrderConfirmed, OrderLine};
use contracts::money::Money;
use recommendations::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Ports, States, Values};

#[derive(Debug)]
struct Recommendations {
    url: String,
    http: reqwest::Client,
    orders: FeedProducer,
}

fn line(sku: &str, name: &str) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        name: name.into(),
        quantity: 1,
        unit_price: Money {
            amount_minor: 1000,
            currency: "USD".into(),
        },
    }
}

impl Recommendations {
    async fn confirmed(&self, user: &str, lines: Vec<OrderLine>) {
        self.orders
            .publish(&OrderConfirmed {
                order_id: uuid::Uuid::now_v7().to_string(),
                user_id: user.to_owned(),
                lines,
                total: Money {
                    amount_minor: 2000,
                    currency: "USD".into(),
                },
            })
            .await;
    }
}

#[async_trait]
impl States for Recommendations {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            "a customer has bought a mug with a book" => {
                // Another customer bought a tee with the mug: that is what she is shown.
                let (ada, other) = (
                    uuid::Uuid::now_v7().to_string(),
                    uuid::Uuid::now_v7().to_string(),
                );
                let mug = || line("MUG-STONE", "Stoneware Mug");
                let book = || line("BOOK-RUST", "The Rust Programming Language");
                self.confirmed(&ada, vec![mug(), book()]).await;
                self.confirmed(&other, vec![mug(), line("TEE-ORG-S", "Organic Tee, small")])
                    .await;
                for _ in 0..100 {
                    let page: Value = self
                        .http
                        .get(format!("{}/recommendations/for-me?limit=5", self.url))
                        .header("x-bazaar-user-id", &ada)
                        .header("x-bazaar-user-roles", "customer")
                        .send()
                        .await?
                        .json()
                        .await?;
                    if page["items"].as_array().is_some_and(|i| !i.is_empty()) {
                        return Ok([("userId".to_owned(), json!(ada))].into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                anyhow::bail!("recommendations did not learn from the orders")
            }
            other => anyhow::bail!("recommendations knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn recommendations_keeps_its_contracts() {
    let orders = FeedProducer::start().await;
    let db = TestDatabase::sqlite();
    let mut chassis = support::chassis(&db);
    chassis.events.feed_wait = Duration::from_millis(200);
    chassis
        .discovery
        .static_instances
        .insert("orders".into(), vec![orders.url().to_owned()]);
    let shutdown = CancellationToken::new();
    let app = Application::build(
        Config {
            chassis,
            settings: Settings::default(),
        },
        &shutdown,
    );
    let url = support::run!(app.await.expect("recommendations starts"), shutdown);
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: None,
    };
    let states = Recommendations {
        url,
        http: reqwest::Client::new(),
        orders,
    };
    support::verify("recommendations", ports, states).await;
    shutdown.cancel();
}
