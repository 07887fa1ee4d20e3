//! The catalog as a provider: prices and reservations, for orders.

use async_trait::async_trait;
use catalog::{Application, Config, Settings};
use chassis::testing::TestDatabase;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Ports, States, Values};

#[derive(Debug)]
struct Catalog {
    url: String,
    http: reqwest::Client,
}

impl Catalog {
    /// Holds one mug; the reservation's id.
    async fn hold(&self) -> anyhow::Result<String> {
        let held: Value = self
            .http
            .post(format!("{}/reservations", self.url))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({"items": [{"sku": "MUG-STONE", "quantity": 1}]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        held["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no reservation id in {held}"))
    }
}

#[async_trait]
impl States for Catalog {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            // The demo catalog holds these, with 100 mugs, 30 books and 40 small tees.
            "MUG-STONE is for sale"
            | "BOOK-RUST is for sale"
            | "TEE-ORG-S is for sale"
            | "MUG-STONE is in stock"
            | "BOOK-RUST is in stock"
            | "TEE-ORG-S has fewer than 100 units in stock" => Ok(Values::new()),
            "a reservation is held" => {
                let id = self.hold().await?;
                Ok([("reservationId".to_owned(), json!(id))].into())
            }
            "a reservation was committed" => {
                let id = self.hold().await?;
                self.http
                    .post(format!("{}/reservations/{id}/commit", self.url))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok([("reservationId".to_owned(), json!(id))].into())
            }
            other => anyhow::bail!("the catalog knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_catalog_keeps_its_contracts() {
    let db = TestDatabase::sqlite();
    let settings = Settings {
        seed_demo: true,
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let app = Application::build(Config {
        chassis: support::chassis(&db),
        settings,
    });
    let url = support::run!(app.await.expect("the catalog starts"), shutdown);
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: None,
    };
    let states = Catalog {
        url,
        http: reqwest::Client::new(),
    };
    support::verify("catalog", ports, states).await;
    shutdown.cancel();
}
