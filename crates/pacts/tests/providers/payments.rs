//! Payments as a provider: charges and refunds, for orders.

use async_trait::async_trait;
use chassis::testing::TestDatabase;
use payments::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Ports, States, Values};

const ACCEPTED: &str = "4242424242424242";
const DECLINED: &str = "4000000000000002";

#[derive(Debug)]
struct Payments {
    url: String,
    http: reqwest::Client,
}

impl Payments {
    /// A new customer with the card `number`: `(user id, payment-method token)`.
    async fn customer_with(&self, number: &str) -> anyhow::Result<(String, String)> {
        let user = uuid::Uuid::now_v7().to_string();
        let method: Value = self
            .http
            .post(format!("{}/payment-methods", self.url))
            .header("x-bazaar-user-id", &user)
            .header("x-bazaar-user-roles", "customer")
            .json(&json!({"card_number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = method["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no token in {method}"))?;
        Ok((user, token.to_owned()))
    }

    async fn customer(&self, number: &str) -> anyhow::Result<Values> {
        let (user, token) = self.customer_with(number).await?;
        Ok([
            ("userId".to_owned(), json!(user)),
            ("paymentMethod".to_owned(), json!(token)),
        ]
        .into())
    }
}

#[async_trait]
impl States for Payments {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            "the customer has a card that is accepted" => self.customer(ACCEPTED).await,
            "the customer has a card that is declined" => self.customer(DECLINED).await,
            "a charge succeeded" => {
                let (user, token) = self.customer_with(ACCEPTED).await?;
                let charge: Value = self
                    .http
                    .post(format!("{}/charges", self.url))
                    .header("idempotency-key", uuid::Uuid::now_v7().to_string())
                    .json(&json!({
                        "order_id": uuid::Uuid::now_v7().to_string(),
                        "user_id": user,
                        "amount": {"amount_minor": 3600, "currency": "USD"},
                        "payment_method": token,
                    }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let id = charge["id"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("no charge id in {charge}"))?;
                Ok([("chargeId".to_owned(), json!(id))].into())
            }
            other => anyhow::bail!("payments knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn payments_keeps_its_contracts() {
    let db = TestDatabase::sqlite();
    let shutdown = CancellationToken::new();
    let app = Application::build(Config {
        chassis: support::chassis(&db),
        settings: Settings::default(),
    });
    let url = support::run!(app.await.expect("payments starts"), shutdown);
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: None,
    };
    let states = Payments {
        url,
        http: reqwest::Client::new(),
    };
    support::verify("payments", ports, states).await;
    shutdown.cancel();
}
