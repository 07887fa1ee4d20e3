use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::mtls::MtlsConfig;
use chassis::testing::TestDatabase;
use reqwest::Response;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use users::{Application, Config, Settings};

/// A users service running for one test.
pub(crate) struct TestApp {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    _data: tempfile::TempDir,
    _db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub(crate) async fn spawn(db: TestDatabase) -> Self {
        Self::spawn_with(db, Settings::default()).await
    }

    pub(crate) async fn spawn_with(db: TestDatabase, settings: Settings) -> Self {
        Self::spawn_full(db, settings, MtlsConfig::default()).await
    }

    /// A users service behind mutual TLS (`url` is `https://`; `http` cannot reach it).
    pub(crate) async fn spawn_with_mtls(db: TestDatabase, mtls: MtlsConfig) -> Self {
        Self::spawn_full(db, Settings::default(), mtls).await
    }

    async fn spawn_full(db: TestDatabase, settings: Settings, mtls: MtlsConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let data = tempfile::tempdir().expect("data dir");
        let mut chassis = ChassisConfig::with_port(0);
        chassis.data_dir = data.path().to_path_buf();
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        let secure = mtls.enabled();
        chassis.mtls = mtls;
        let app = Application::build(Config { chassis, settings })
            .await
            .expect("users starts");
        let scheme = if secure { "https" } else { "http" };
        let url = format!("{scheme}://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        if !secure {
            chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        }
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            _data: data,
            _db: db,
        }
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.at(path))
            .json(body)
            .send()
            .await
            .expect("users answers")
    }

    pub(crate) async fn signup(&self, email: &str, password: &str, name: &str) -> Response {
        self.post(
            "/auth/signup",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    pub(crate) async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Signs up and logs in; returns the user id and the token response.
    pub(crate) async fn signed_in(&self, email: &str) -> (String, Value) {
        let created: Value = self
            .signup(email, "correct horse battery", "Test User")
            .await
            .json()
            .await
            .expect("json");
        let tokens: Value = self
            .login(email, "correct horse battery")
            .await
            .json()
            .await
            .expect("json");
        (created["id"].as_str().expect("id").to_owned(), tokens)
    }

    /// `GET /users/me` as the gateway would send it for `user_id`.
    pub(crate) async fn me(&self, user_id: &str) -> Response {
        self.http
            .get(self.at("/users/me"))
            .header("x-bazaar-user-id", user_id)
            .header("x-bazaar-user-roles", "customer")
            .send()
            .await
            .expect("users answers")
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
