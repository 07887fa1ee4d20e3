use std::time::Duration;

use catalog::{Application, Config, Settings};
use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use reqwest::Response;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A catalog running for one test.
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

/// Settings of a test catalog: seeded, with a fast expiry sweep.
pub(crate) fn settings() -> Settings {
    Settings {
        seed_demo: true,
        expiry_sweep: Duration::from_millis(50),
        ..Settings::default()
    }
}

impl TestApp {
    pub(crate) async fn spawn(db: TestDatabase) -> Self {
        Self::spawn_with(db, settings()).await
    }

    pub(crate) async fn spawn_with(db: TestDatabase, settings: Settings) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        let app = Application::build(Config { chassis, settings })
            .await
            .expect("catalog starts");
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
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

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.at(path))
            .send()
            .await
            .expect("catalog answers")
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }

    /// A request as the gateway sends it for an administrator.
    pub(crate) fn as_admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("x-bazaar-user-id", "0190b5d8-0000-7000-8000-000000000001")
            .header("x-bazaar-user-roles", "customer,admin")
    }

    /// `POST /reservations` with `key` and `items` as `[(sku, quantity)]`.
    pub(crate) async fn reserve(&self, key: &str, items: &[(&str, i64)]) -> Response {
        let items: Vec<Value> = items
            .iter()
            .map(|(sku, quantity)| serde_json::json!({"sku": sku, "quantity": quantity}))
            .collect();
        self.http
            .post(self.at("/reservations"))
            .header("idempotency-key", key)
            .json(&serde_json::json!({ "items": items }))
            .send()
            .await
            .expect("catalog answers")
    }

    /// `available` of a sku.
    pub(crate) async fn available(&self, sku: &str) -> i64 {
        self.get_json(&format!("/products/{sku}")).await["available"]
            .as_i64()
            .expect("available")
    }
}

/// Reads a problem body and checks its content type.
pub(crate) async fn problem(response: Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("problem json")
}
