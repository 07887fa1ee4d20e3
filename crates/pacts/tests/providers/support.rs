//! What every provider's verification shares: running the verifier against the pact files,
//! provider states set up through the provider's own API, and a message endpoint that hands
//! the verifier the events the provider really published.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use pact_models::provider_states::ProviderState;
use pact_verifier::callback_executors::ProviderStateExecutor;
use pact_verifier::verification_result::VerificationExecutionResult;
use pact_verifier::{
    FilterInfo, NullRequestFilterExecutor, PactSource, ProviderInfo, ProviderTransport,
    VerificationOptions, verify_provider_async,
};
use serde_json::Value;

/// Values a state hands the verifier (`${name}` in a request takes them).
pub(crate) type Values = HashMap<String, Value>;

/// A provider's states: each sets the provider up through its own API.
#[async_trait]
pub(crate) trait States: Debug + Send + Sync + 'static {
    /// Sets up the state named `name`; an unknown name is an error, so a consumer's new
    /// expectation fails here until the provider knows how to meet it.
    async fn set_up(&self, name: &str) -> anyhow::Result<Values>;
}

#[derive(Debug)]
struct Executor<S>(S);

#[async_trait]
impl<S: States> ProviderStateExecutor for Executor<S> {
    async fn call(
        self: Arc<Self>,
        _interaction_id: Option<String>,
        provider_state: &ProviderState,
        setup: bool,
        _client: Option<&reqwest::Client>,
    ) -> anyhow::Result<HashMap<String, Value>> {
        if setup {
            self.0.set_up(&provider_state.name).await
        } else {
            Ok(HashMap::new())
        }
    }

    fn teardown(&self) -> bool {
        false
    }
}

/// Where the provider answers: its HTTP API, and (for event producers) the message endpoint.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    pub(crate) http: Option<u16>,
    pub(crate) messages: Option<u16>,
}

/// Verifies every pact in `contracts/pacts/` whose provider is `provider`; fails the test with
/// the verifier's report when the provider breaks one.
pub(crate) async fn verify<S: States>(provider: &str, ports: Ports, states: S) {
    let result = check(provider, ports, states).await;
    let failures: Vec<String> = result
        .errors
        .iter()
        .map(|(interaction, mismatch)| format!("{interaction}: {mismatch:?}"))
        .collect();
    assert!(
        result.result && failures.is_empty(),
        "{provider} breaks its consumers' contracts:\n{}\n\n{}",
        failures.join("\n"),
        result.output.join("\n")
    );
    assert!(
        !result.interaction_results.is_empty(),
        "no interaction of {provider} was verified"
    );
}

/// Runs the verifier for `provider`; its findings.
pub(crate) async fn check<S: States>(
    provider: &str,
    ports: Ports,
    states: S,
) -> VerificationExecutionResult {
    let transport = |name: &str, port: u16| ProviderTransport {
        transport: name.to_owned(),
        port: Some(port),
        path: None,
        scheme: Some("http".to_owned()),
    };
    let mut transports = Vec::new();
    if let Some(port) = ports.http {
        transports.push(transport("http", port));
    }
    if let Some(port) = ports.messages {
        transports.push(transport("message", port));
    }
    let info = ProviderInfo {
        name: provider.to_owned(),
        host: "127.0.0.1".to_owned(),
        transports,
        ..ProviderInfo::default()
    };
    let options = VerificationOptions::<NullRequestFilterExecutor> {
        request_timeout: 15_000,
        coloured_output: false,
        no_pacts_is_error: true,
        ..VerificationOptions::default()
    };
    let source = PactSource::Dir(pacts::dir().to_string_lossy().into_owned());
    verify_provider_async(
        info,
        vec![source],
        FilterInfo::None,
        vec![],
        &options,
        None,
        &Arc::new(Executor(states)),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("the verifier could not run for {provider}: {e}"))
}

/// The events a producer published, from its outbox feed: the newest of each type is the
/// message for it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The producer's base URL.
    pub(crate) url: String,
    /// Message description → event type.
    pub(crate) kinds: &'static [(&'static str, &'static str)],
}

impl Published {
    /// The newest event of `kind` in the feed, waiting a few seconds for it.
    pub(crate) async fn newest(&self, kind: &str) -> anyhow::Result<Value> {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            let (mut after, mut newest) = (0, None);
            loop {
                let page: Value = http
                    .get(format!(
                        "{}/internal/events?after={after}&types={kind}&wait=0s&limit=500",
                        self.url
                    ))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                match page["events"].as_array().and_then(|e| e.last()) {
                    Some(last) => newest = Some(last.clone()),
                    None => break,
                }
                after = page["last_position"].as_i64().unwrap_or(after);
            }
            if let Some(event) = newest {
                return Ok(event);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{} published no {kind}", self.url)
    }

    /// Serves the message endpoint the verifier asks (`POST` with the description); returns
    /// its port.
    pub(crate) async fn serve(self) -> u16 {
        async fn message(
            State(published): State<Published>,
            Json(asked): Json<Value>,
        ) -> Result<Json<Value>, (http::StatusCode, String)> {
            let description = asked["description"].as_str().unwrap_or_default();
            let kind = published
                .kinds
                .iter()
                .find(|(d, _)| *d == description)
                .map(|(_, kind)| *kind)
                .ok_or_else(|| {
                    (
                        http::StatusCode::NOT_FOUND,
                        format!("no message is described as {description:?}"),
                    )
                })?;
            published
                .newest(kind)
                .await
                .map(Json)
                .map_err(|e| (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let app = axum::Router::new()
            .route("/", post(message))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }
}

/// The port of a `http://host:port` URL.
pub(crate) fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a URL with a port")
}

/// Chassis settings of a provider under test: any free port, the database `db`, no registry.
pub(crate) fn chassis(db: &TestDatabase) -> ChassisConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    chassis
}

/// Runs a built service application until `$shutdown` is cancelled; its base URL, once ready.
macro_rules! run {
    ($app:expr, $shutdown:expr) => {{
        let app = $app;
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped($shutdown.clone()));
        chassis::testing::wait_ready(&url, std::time::Duration::from_secs(10)).await;
        url
    }};
}
pub(crate) use run;
