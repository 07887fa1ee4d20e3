use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use gateway::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Processes started for one test; all stop when it is dropped.
pub(crate) struct Stack {
    pub(crate) gateway: String,
    /// `https://localhost:<port>` when `gateway.tls` is set.
    pub(crate) https: Option<String>,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    _keep: Vec<Box<dyn Send>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A real users service; returns its URL and data folder (for its signing keys).
pub(crate) async fn spawn_users(
    shutdown: &CancellationToken,
) -> (String, PathBuf, Vec<Box<dyn Send>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDatabase::sqlite();
    let data = tempfile::tempdir().expect("data dir");
    let mut config = ChassisConfig::with_port(0);
    config.data_dir = data.path().to_path_buf();
    config.database.url = Some(db.url());
    config.discovery.registry = None;
    let app = users::Application::build(users::Config {
        chassis: config,
        settings: users::Settings::default(),
    })
    .await
    .expect("users starts");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    let path = data.path().to_path_buf();
    (url, path, vec![Box::new(db), Box::new(data)])
}

/// An upstream that answers every request with what it received, and its own name.
pub(crate) async fn spawn_echo(name: &'static str) -> String {
    let echo = move |method: axum::http::Method,
                     uri: axum::http::Uri,
                     headers: HeaderMap,
                     body: String| async move {
        let headers: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        axum::Json(
            json!({"name": name, "method": method.as_str(), "uri": uri.to_string(), "headers": headers, "body": body}),
        )
    };
    let app = Router::new()
        .route("/", any(echo))
        .route("/{*path}", any(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// An address nothing listens on.
pub(crate) async fn dead_address() -> String {
    format!("http://{}", chassis::testing::dead_address())
}

impl Stack {
    /// A gateway with `settings`, resolving each service to the given addresses.
    pub(crate) async fn start(
        upstreams: &[(&str, Vec<String>)],
        settings: Settings,
        shutdown: CancellationToken,
        keep: Vec<Box<dyn Send>>,
    ) -> Self {
        Self::start_configured(upstreams, settings, |_| {}, shutdown, keep).await
    }

    /// As [`Stack::start`], with the chassis configuration changed by `configure`.
    pub(crate) async fn start_configured(
        upstreams: &[(&str, Vec<String>)],
        settings: Settings,
        configure: impl FnOnce(&mut ChassisConfig),
        shutdown: CancellationToken,
        keep: Vec<Box<dyn Send>>,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = ChassisConfig::with_port(0);
        configure(&mut config);
        config.discovery.registry = None;
        config.discovery.static_instances = upstreams
            .iter()
            .map(|(service, urls)| ((*service).to_owned(), urls.clone()))
            .collect();
        let app = gateway::Application::build(
            gateway::Config {
                chassis: config,
                settings,
            },
            &shutdown,
        )
        .await
        .expect("gateway starts");
        let gateway = format!("http://{}", app.local_addr());
        let https = app
            .tls_addr()
            .map(|addr| format!("https://localhost:{}", addr.port()));
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&gateway, Duration::from_secs(10)).await;
        Self {
            gateway,
            https,
            http: reqwest::Client::new(),
            shutdown,
            _keep: keep,
        }
    }

    /// A gateway with `settings` in front of `upstreams`, stopped when the stack is dropped.
    pub(crate) async fn serving(upstreams: &[(&str, Vec<String>)], settings: Settings) -> Self {
        Self::start(upstreams, settings, CancellationToken::new(), vec![]).await
    }

    /// The gateway's metrics, as text.
    pub(crate) async fn metrics(&self) -> String {
        self.get("/metrics", None)
            .await
            .text()
            .await
            .expect("metrics text")
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// GET `path` through the gateway, with a bearer token if given.
    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.at(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("gateway answers")
    }

    /// POST `body` as JSON to `path` through the gateway.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.at(path))
            .json(body)
            .send()
            .await
            .expect("gateway answers")
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.at(path))
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("json")
    }
}

/// Settings with an extra public route to `echo` and an admin-only one.
pub(crate) fn settings_with_echo() -> Settings {
    Settings {
        extra_routes: toml_routes(
            r#"
        [[routes]]
        prefix = "/api/echo"
        service = "echo"
        auth = "optional"

        [[routes]]
        prefix = "/api/admin-echo"
        service = "echo"
        roles = ["admin"]

        [[routes]]
        prefix = "/echo-page"
        service = "echo"
        rewrite = "/echo"
        auth = "optional"
        session_cookie = "sid"
        "#,
        ),
        ..Settings::default()
    }
}

pub(crate) fn toml_routes(text: &str) -> Vec<gateway::routes::RouteConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        routes: Vec<gateway::routes::RouteConfig>,
    }
    toml::from_str::<File>(text).expect("valid routes").routes
}

/// Reads a problem body and checks its content type.
pub(crate) async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("problem json")
}
