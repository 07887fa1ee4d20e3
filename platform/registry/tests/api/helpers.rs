use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use registry::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A registry running for one test.
pub(crate) struct TestRegistry {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), chassis::StartError>>,
    pub(crate) db: TestDatabase,
}

/// Settings that make health changes fast enough to watch in a test.
pub(crate) fn fast_settings() -> Settings {
    Settings {
        check_interval: Duration::from_millis(100),
        check_timeout: Duration::from_millis(500),
        failures_before_critical: 3,
        deregister_after: Duration::from_millis(600),
        max_wait: Duration::from_secs(10),
    }
}

impl TestRegistry {
    pub(crate) async fn spawn(settings: Settings) -> Self {
        Self::spawn_on(TestDatabase::sqlite(), settings).await
    }

    pub(crate) async fn spawn_on(db: TestDatabase, settings: Settings) -> Self {
        Self::spawn_configured(db, settings, |_| {}).await
    }

    /// With the chassis settings changed by `configure` first.
    pub(crate) async fn spawn_configured(
        db: TestDatabase,
        settings: Settings,
        configure: impl FnOnce(&mut ChassisConfig),
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        configure(&mut chassis);
        let app = Application::build(Config { chassis, settings })
            .await
            .expect("registry starts");
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            task,
            db,
        }
    }

    /// Stops the registry and hands back its database, to start another on it.
    pub(crate) async fn stop(self) -> TestDatabase {
        self.shutdown.cancel();
        self.task.await.expect("joins").expect("stops cleanly");
        self.db
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// PUT `body` to `url`.
    pub(crate) async fn put(
        &self,
        url: impl reqwest::IntoUrl,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .put(url)
            .body(body)
            .send()
            .await
            .expect("registry answers")
    }

    /// DELETE `url`.
    pub(crate) async fn delete(&self, url: impl reqwest::IntoUrl) -> reqwest::Response {
        self.http
            .delete(url)
            .send()
            .await
            .expect("registry answers")
    }

    /// GET `url`.
    pub(crate) async fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::Response {
        self.http.get(url).send().await.expect("registry answers")
    }

    pub(crate) async fn register(&self, id: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.at(&format!("/v1/instances/{id}")))
            .json(body)
            .send()
            .await
            .expect("registry answers")
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.at(path))
            .send()
            .await
            .expect("registry answers");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }

    /// Ids of the instances of `service`, passing only or all.
    pub(crate) async fn ids(&self, service: &str, passing: bool) -> Vec<String> {
        let body = self
            .get_json(&format!("/v1/services/{service}?passing={passing}"))
            .await;
        body["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// Polls until `ids(service, passing)` equals `expected`, failing after five seconds.
    pub(crate) async fn eventually_ids(&self, service: &str, passing: bool, expected: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ids = self.ids(service, passing).await;
            if ids == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service}: {ids:?}, wanted {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A registration body whose health URL is `health`.
pub(crate) fn registration(service: &str, health: &str, ttl_ms: Option<u64>) -> Value {
    let mut body = json!({
        "service": service,
        "address": "http://127.0.0.1:9",
        "version": "1.0.0",
        "health_url": health,
    });
    if let Some(ttl) = ttl_ms {
        body["ttl_ms"] = json!(ttl);
    }
    body
}
