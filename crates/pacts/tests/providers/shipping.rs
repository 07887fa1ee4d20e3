//! Shipping as a provider: shipments, for orders; `shipment.shipped`, for notifications.

use async_trait::async_trait;
use chassis::testing::TestDatabase;
use contracts::events::{Event, ShipmentShipped};
use serde_json::{Value, json};
use shipping::{Application, Config, Settings};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Ports, Published, States, Values};

#[derive(Debug)]
struct Shipping {
    url: String,
    http: reqwest::Client,
}

impl Shipping {
    async fn create(&self) -> anyhow::Result<String> {
        let shipment: Value = self
            .http
            .post(format!("{}/shipments", self.url))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({
                "order_id": uuid::Uuid::now_v7().to_string(),
                "user_id": uuid::Uuid::now_v7().to_string(),
                "address": {"name": "Ada", "line1": "12 Analytical St", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
                "items": [{"sku": "MUG-STONE", "quantity": 2}],
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        shipment["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no shipment id in {shipment}"))
    }
}

#[async_trait]
impl States for Shipping {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            "shipping is open" => Ok(Values::new()),
            "a shipment was created" => {
                let id = self.create().await?;
                Ok([("shipmentId".to_owned(), json!(id))].into())
            }
            "a shipment is shipped" => {
                // Handed to the carrier: the operator moves it on (label created → in transit),
                // which publishes shipment.shipped.
                let id = self.create().await?;
                self.http
                    .post(format!("{}/shipments/{id}/advance", self.url))
                    .header("x-bazaar-user-id", uuid::Uuid::now_v7().to_string())
                    .header("x-bazaar-user-roles", "admin")
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(Values::new())
            }
            other => anyhow::bail!("shipping knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn shipping_keeps_its_contracts() {
    let db = TestDatabase::sqlite();
    let shutdown = CancellationToken::new();
    let app = Application::build(Config {
        chassis: support::chassis(&db),
        settings: Settings::default(),
    });
    let url = support::run!(app.await.expect("shipping starts"), shutdown);
    let published = Published {
        url: url.clone(),
        kinds: &[("a shipment was shipped", ShipmentShipped::TYPE)],
    };
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: Some(published.serve().await),
    };
    let states = Shipping {
        url,
        http: reqwest::Client::new(),
    };
    support::verify("shipping", ports, states).await;
    shutdown.cancel();
}
