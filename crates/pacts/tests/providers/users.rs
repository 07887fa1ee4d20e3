//! Users as a provider: its signing keys and a customer's profile, for the gateway;
//! `user.registered`, for notifications.

use async_trait::async_trait;
use chassis::testing::TestDatabase;
use contracts::events::{Event, UserRegistered};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use users::{Application, Config, Settings};

use crate::support::{self, Ports, Published, States, Values};

#[derive(Debug)]
struct Users {
    url: String,
    http: reqwest::Client,
}

impl Users {
    /// Signs a new customer up; their id.
    async fn sign_up(&self) -> anyhow::Result<String> {
        let email = format!("{}@example.com", uuid::Uuid::now_v7());
        let user: Value = self
            .http
            .post(format!("{}/auth/signup", self.url))
            .json(&json!({"email": email, "password": "correct horse battery", "name": "Ada"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        user["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no user id in {user}"))
    }
}

#[async_trait]
impl States for Users {
    async fn set_up(&self, name: &str) -> anyhow::Result<Values> {
        match name {
            // The service makes its first key when it starts.
            "the service has a signing key" => Ok(Values::new()),
            "a customer exists" => {
                let id = self.sign_up().await?;
                Ok([("userId".to_owned(), json!(id))].into())
            }
            "a customer signs up" => {
                self.sign_up().await?;
                Ok(Values::new())
            }
            other => anyhow::bail!("users knows no provider state {other:?}"),
        }
    }
}

#[tokio::test]
async fn users_keeps_its_contracts() {
    let db = TestDatabase::sqlite();
    // Its signing keys live in the data folder.
    let data = tempfile::tempdir().expect("tempdir");
    let mut chassis = support::chassis(&db);
    chassis.data_dir = data.path().to_owned();
    let shutdown = CancellationToken::new();
    let app = Application::build(Config {
        chassis,
        settings: Settings::default(),
    });
    let url = support::run!(app.await.expect("users starts"), shutdown);
    let published = Published {
        url: url.clone(),
        kinds: &[("a customer signed up", UserRegistered::TYPE)],
    };
    let ports = Ports {
        http: Some(support::port_of(&url)),
        messages: Some(published.serve().await),
    };
    let states = Users {
        url,
        http: reqwest::Client::new(),
    };
    support::verify("users", ports, states).await;
    shutdown.cancel();
}
