//! Typed configuration, layered: defaults, an optional TOML file, `BAZAAR_*` environment
//! variables, then command-line overrides, each layer winning over the one before.
//!
//! Keys are dotted paths (`http.port`, `users.access_token_ttl`). In the environment a path is
//! upper-cased, prefixed with [`ENV_PREFIX`] and `.` becomes `__`: `BAZAAR_HTTP__PORT=7711`.
//! Each crate owns one typed section; a service composes them by extracting each section from
//! the same [`Loader`], so an error always names the full key, its bad value and where it came
//! from.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable Bazaar reads.
pub const ENV_PREFIX: &str = "BAZAAR_";
/// Separator between path segments in environment variable names.
pub const ENV_SEPARATOR: &str = "__";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".bazaar";

/// Where configuration comes from, beyond the defaults compiled in.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file; its keys are the same dotted paths, as tables.
    pub file: Option<PathBuf>,
    /// Environment variables, as `(name, value)`; only those starting with [`ENV_PREFIX`] count.
    /// Binaries pass `std::env::vars()`; tests pass what they need.
    pub env: Vec<(String, String)>,
    /// Overrides from the command line, as `(key path, raw value, flag that set it)`.
    pub overrides: Vec<Override>,
}

/// One command-line override of a config key.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted key path, such as `http.port`.
    pub key: String,
    /// The value as typed; parsed like an environment variable (numbers, booleans, strings).
    pub value: String,
    /// How the user wrote it, for error messages (`--port 80`, `--set http.port=80`).
    pub origin: String,
}

impl Sources {
    /// Sources for a binary: an optional file, the process environment and flag overrides.
    pub fn from_process(file: Option<PathBuf>, overrides: Vec<Override>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

/// Configuration that fails validation. Its `Display` is the one line a user sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value of the wrong type or shape.
    #[error("invalid config: {key} = {value} (from {origin}): {reason}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// The offending value, as written.
        value: String,
        /// Which layer supplied it.
        origin: String,
        /// What was expected.
        reason: String,
    },
    /// The configuration could not be read at all (unreadable file, malformed TOML).
    #[error("invalid config: {0}")]
    Unreadable(String),
}

impl ConfigError {
    /// A value that deserialized but breaks a rule checked after loading.
    pub fn invalid(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            value: value.to_string(),
            origin: "configuration".to_owned(),
            reason: reason.into(),
        }
    }
}

/// Extracts typed sections from the layered sources.
#[derive(Debug, Clone)]
pub struct Loader {
    file: Option<PathBuf>,
    env: Layer,
    overrides: Layer,
}

impl Loader {
    /// Prepares the layers; reads nothing from disk until a section is extracted.
    pub fn new(sources: Sources) -> Self {
        let env = Layer {
            name: "environment",
            entries: sources
                .env
                .iter()
                .filter_map(|(name, value)| {
                    let path = name.strip_prefix(ENV_PREFIX)?;
                    let key = path.to_ascii_lowercase().replace(ENV_SEPARATOR, ".");
                    Some((key, value.clone(), name.clone()))
                })
                .collect(),
        };
        let overrides = Layer {
            name: "command line",
            entries: sources
                .overrides
                .into_iter()
                .map(|o| (o.key, o.value, o.origin))
                .collect(),
        };
        Self {
            file: sources.file,
            env,
            overrides,
        }
    }

    /// Extracts the whole document as `T`, starting from `defaults`.
    pub fn extract<T: Serialize + DeserializeOwned>(&self, defaults: &T) -> Result<T, ConfigError> {
        let figment = self.figment(Serialized::defaults(defaults));
        figment
            .extract()
            .map_err(|e| self.explain(&figment, e, None))
    }

    /// Extracts the table at `section` (such as `users`) as `T`, starting from `defaults`.
    pub fn section<T: Serialize + DeserializeOwned>(
        &self,
        section: &str,
        defaults: &T,
    ) -> Result<T, ConfigError> {
        let figment = self.figment(Serialized::default(section, defaults));
        figment
            .focus(section)
            .extract()
            .map_err(|e| self.explain(&figment, e, Some(section)))
    }

    fn figment(&self, defaults: impl Provider) -> Figment {
        let mut figment = Figment::from(defaults);
        if let Some(file) = &self.file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(self.env.clone())
            .merge(self.overrides.clone())
    }

    /// Turns figment's error into one line naming the key, the value and its origin.
    fn explain(
        &self,
        figment: &Figment,
        error: figment::Error,
        section: Option<&str>,
    ) -> ConfigError {
        use figment::error::Kind;
        let key = section
            .into_iter()
            .map(str::to_owned)
            .chain(error.path.iter().cloned())
            .collect::<Vec<_>>()
            .join(".");
        if error.path.is_empty() {
            return ConfigError::Unreadable(error.to_string());
        }
        let value = figment
            .find_value(&key)
            .ok()
            .and_then(|v| serde_json::to_string(&v).ok())
            .unwrap_or_else(|| "(missing)".to_owned());
        let origin = self
            .overrides
            .origin_of(&key)
            .or_else(|| self.env.origin_of(&key))
            .map(str::to_owned)
            .or_else(|| {
                error.metadata.as_ref().map(|m| match &m.source {
                    Some(source) => format!("{} {source}", m.name),
                    None => m.name.to_string(),
                })
            })
            .unwrap_or_else(|| "defaults".to_owned());
        let reason = match &error.kind {
            Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                format!("expected {expected}")
            }
            Kind::Message(message) => message.clone(),
            other => other.to_string(),
        };
        ConfigError::Invalid {
            key,
            value,
            origin,
            reason,
        }
    }
}

/// A flat list of `key path = raw value` pairs that figment sees as nested tables.
#[derive(Debug, Clone)]
struct Layer {
    name: &'static str,
    /// `(key path, raw value, origin)`.
    entries: Vec<(String, String, String)>,
}

impl Layer {
    fn origin_of(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, origin)| origin.as_str())
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut figment = Figment::new();
        for (key, raw, _) in &self.entries {
            // Parsed like figment's own environment provider: "80" is a number, "true" a bool.
            let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
            figment = figment.merge(Serialized::default(key, value));
        }
        figment.data()
    }
}

// === chassis sections ===

/// A service's whole configuration: what every process has, plus the service's own section
/// (`[users]`, `[gateway]`, ...).
#[derive(Debug, Clone)]
pub struct ServiceConfig<S> {
    /// What every process has.
    pub chassis: ChassisConfig,
    /// The service's own section.
    pub settings: S,
}

impl<S: Serialize + DeserializeOwned + Default> ServiceConfig<S> {
    /// Loads the configuration of `service`: the chassis keys with the service's default port
    /// (see [`crate::ports`]), and the section named after the service.
    pub fn load(loader: &Loader, service: &str) -> Result<Self, ConfigError> {
        let port = crate::ports::offset(service).map_or(0, |offset| crate::ports::BASE + offset);
        Ok(Self {
            chassis: ChassisConfig::load(loader, port)?,
            settings: loader.section(service, &S::default())?,
        })
    }
}

/// What every service process needs, whatever its business.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChassisConfig {
    /// Unique id of this instance; defaults to `<service>-<random>`.
    pub instance_id: Option<String>,
    /// Version this instance reports; defaults to the crate version. Canary demos override it.
    pub version: Option<String>,
    /// Where the process keeps its state: the SQLite file, keys, certificates.
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The service's own database.
    pub database: DatabaseConfig,
    /// Registration and lookup of instances.
    pub discovery: DiscoveryConfig,
    /// Log output.
    pub log: LogConfig,
    /// How events are published and consumed.
    pub events: EventsConfig,
    /// Where spans are exported, and how many.
    pub trace: crate::trace::TraceConfig,
    /// Mutual TLS between services (off unless `mtls.ca` is set).
    pub mtls: crate::mtls::MtlsConfig,
    /// The services of this process, when several run in one ([`crate::inproc`]): calls to
    /// them are function calls. Not configuration a file can hold.
    #[serde(skip)]
    pub exchange: Option<crate::inproc::Exchange>,
}

impl ChassisConfig {
    /// Defaults for a service listening on `port`.
    pub fn with_port(port: u16) -> Self {
        Self {
            instance_id: None,
            version: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http: HttpConfig {
                port,
                ..HttpConfig::default()
            },
            database: DatabaseConfig::default(),
            discovery: DiscoveryConfig::default(),
            log: LogConfig::default(),
            events: EventsConfig::default(),
            trace: crate::trace::TraceConfig::default(),
            mtls: crate::mtls::MtlsConfig::default(),
            exchange: None,
        }
    }

    /// Loads the `[http]`, `[database]`, ... sections (and the top-level keys) from `loader`.
    pub fn load(loader: &Loader, port: u16) -> Result<Self, ConfigError> {
        loader.extract(&Self::with_port(port))
    }

    /// The database URL: the configured one, or a SQLite file named after the service.
    pub fn database_url(&self, service: &str) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => {
                let path = self.data_dir.join(format!("{service}.db"));
                SecretString::from(format!("sqlite://{}", path.display()))
            }
        }
    }

    /// Path of a file or folder under the data directory.
    pub fn data_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.data_dir.join(relative)
    }
}

/// The HTTP listener and the limits every request is held to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (tests, extra replicas).
    pub port: u16,
    /// Base URL other processes reach this one on; defaults to `http://<host>:<bound port>`.
    pub advertise_url: Option<String>,
    /// A second port, plain HTTP whatever `[mtls]` says, that serves only `/health/live`,
    /// `/health/ready` and `/metrics`: for probes and scrapers that cannot present a service
    /// certificate (a kubelet, a cluster's Prometheus). Unset: no such listener.
    pub admin_port: Option<u16>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Time a request may take before it is answered with 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Most request headers accepted (431 beyond).
    pub max_headers: usize,
    /// Largest total size of request header names and values, in bytes (431 beyond).
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            advertise_url: None,
            admin_port: None,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The service's own database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host:5432/db`. Unset: a SQLite file
    /// under the data directory named after the service.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// Whether a missing PostgreSQL database is created at start.
    pub create_if_missing: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            create_if_missing: true,
        }
    }
}

/// How instances find each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryConfig {
    /// Base URL of the registry. Unset: no registration, and only `static` instances resolve.
    pub registry: Option<String>,
    /// Fixed instances per service (`static.users = ["http://127.0.0.1:7711"]`), used instead
    /// of the registry for the services listed.
    #[serde(rename = "static")]
    pub static_instances: BTreeMap<String, Vec<String>>,
    /// Find instances by DNS instead of asking the registry (a Kubernetes headless Service per
    /// service). The registry, if set, still holds traffic policies and fault rules.
    pub dns: Option<DnsConfig>,
    /// etcd in the registry's place, for instances, traffic policies and fault rules (machines
    /// without Kubernetes). Set, `registry` is not used.
    pub etcd: Option<EtcdConfig>,
    /// How often a registered instance renews its TTL.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long the registry waits for a heartbeat before marking the instance critical.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Default deadline of an internal call, retries included.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Extra attempts of an internal call that is safe to repeat.
    pub retries: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            registry: Some(format!("http://127.0.0.1:{}", crate::ports::REGISTRY)),
            static_instances: BTreeMap::new(),
            dns: None,
            etcd: None,
            heartbeat: Duration::from_secs(2),
            ttl: Duration::from_secs(10),
            call_timeout: Duration::from_secs(5),
            retries: 2,
        }
    }
}

/// etcd as the discovery and KV backend ([`crate::discovery::etcd`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdConfig {
    /// The cluster's client URLs, tried in order: `http://127.0.0.1:2379`, or `https://` with
    /// the service's mTLS identity.
    pub endpoints: Vec<String>,
    /// The prefix of every key Bazaar writes, so one cluster can hold several systems.
    pub prefix: String,
}

impl EtcdConfig {
    /// The cluster an `etcd+http://host:port/prefix/` (or `etcd+https://`) URL names: one
    /// endpoint, and the prefix (`/bazaar/` when the URL has no path). `None` for any other URL.
    /// Where one URL names the registry (`discovery.registry`, `--registry`), this one names
    /// etcd in its place.
    pub fn from_url(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("etcd+")?;
        let uri: http::Uri = rest.parse().ok()?;
        let scheme = uri
            .scheme_str()
            .filter(|s| matches!(*s, "http" | "https"))?;
        let authority = uri.authority()?;
        let prefix = match uri.path().trim_end_matches('/') {
            "" => Self::default().prefix,
            path => format!("{path}/"),
        };
        Some(Self {
            endpoints: vec![format!("{scheme}://{authority}")],
            prefix,
        })
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/bazaar/".to_owned(),
        }
    }
}

/// Discovery by DNS: every address a service's name resolves to is an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    /// The name of a service's instances, `{service}` standing for the service:
    /// `{service}-pods.bazaar.svc.cluster.local` for a headless Service per service.
    pub name: String,
    /// The port every instance listens on.
    pub port: u16,
    /// `https` when services talk mTLS, else `http`.
    pub scheme: String,
    /// How often the names are resolved again.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            name: "{service}".to_owned(),
            port: 8080,
            scheme: "http".to_owned(),
            refresh: Duration::from_secs(5),
        }
    }
}

/// Which transport carries events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventTransport {
    /// No broker: consumers long-poll each producer's `/internal/events`.
    Feed,
    /// NATS JetStream, at `events.nats_url`.
    Nats,
}

/// How events are published and consumed (`[events]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// `feed` (default) or `nats`.
    pub transport: EventTransport,
    /// The NATS server, for the `nats` transport.
    pub nats_url: String,
    /// Prefix of stream names and subjects on NATS (a test uses its own).
    pub nats_prefix: String,
    /// Attempts at handling one event before it goes to the dead letters.
    pub max_attempts: u32,
    /// How long published events are kept in the outbox.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long a feed request waits for new events before answering empty.
    #[serde(with = "humantime_serde")]
    pub feed_wait: Duration,
    /// How long NATS waits for a consumer's acknowledgement before delivering an event again
    /// (to the next instance, after a crash).
    #[serde(with = "humantime_serde")]
    pub nats_ack_wait: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            transport: EventTransport::Feed,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            nats_prefix: "bazaar".to_owned(),
            max_attempts: 5,
            retention: Duration::from_secs(7 * 24 * 3600),
            feed_wait: Duration::from_secs(10),
            nats_ack_wait: Duration::from_secs(30),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `json` (one object per line, for machines and `bazaar up`) or `text` (for people).
    pub format: LogFormat,
    /// Filter directives, as in `RUST_LOG`: `info`, `users=debug,sqlx=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".to_owned(),
        }
    }
}

/// Shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Checks that a URL-valued key has one of the given schemes; names the key otherwise.
pub fn check_url_scheme(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if schemes.contains(&scheme) => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("{url:?}"),
            format!("expected a {} URL", schemes.join(" or ")),
        )),
    }
}

/// Same as [`check_url_scheme`] for a secret URL; the value is not echoed.
pub fn check_secret_url_scheme(
    key: &str,
    url: &SecretString,
    schemes: &[&str],
) -> Result<(), ConfigError> {
    check_url_scheme(key, url.expose_secret(), schemes).map_err(|_| {
        ConfigError::invalid(
            key,
            "(hidden)",
            format!("expected a {} URL", schemes.join(" or ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader(env: &[(&str, &str)], overrides: &[(&str, &str)]) -> Loader {
        Loader::new(Sources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            overrides: overrides
                .iter()
                .map(|(k, v)| Override {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                    origin: format!("--set {k}={v}"),
                })
                .collect(),
        })
    }

    #[test]
    fn layers_win_in_order_defaults_env_flags() {
        let config = ChassisConfig::load(
            &loader(
                &[
                    ("BAZAAR_HTTP__PORT", "8000"),
                    ("BAZAAR_LOG__FORMAT", "text"),
                    ("OTHER", "x"),
                ],
                &[("http.port", "9000")],
            ),
            7711,
        )
        .expect("valid");
        assert_eq!(config.http.port, 9000);
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.http.request_timeout, Duration::from_secs(15));
    }

    #[test]
    fn file_layer_sits_between_defaults_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bazaar.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/bazaar\"\n[http]\nport = 8100\nrequest_timeout = \"2s\"\n",
        )
        .expect("write");
        let loader = Loader::new(Sources {
            file: Some(file),
            env: vec![("BAZAAR_HTTP__PORT".into(), "8200".into())],
            overrides: vec![],
        });
        let config = ChassisConfig::load(&loader, 7711).expect("valid");
        assert_eq!(config.http.port, 8200);
        assert_eq!(config.http.request_timeout, Duration::from_secs(2));
        assert_eq!(config.data_dir, PathBuf::from("/srv/bazaar"));
    }

    #[test]
    fn bad_env_value_names_key_value_and_variable() {
        let error = ChassisConfig::load(&loader(&[("BAZAAR_HTTP__PORT", "eighty")], &[]), 7711)
            .expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid config: http.port = \"eighty\" (from BAZAAR_HTTP__PORT): expected u16"
        );
    }

    #[test]
    fn bad_flag_value_names_the_flag() {
        let error = ChassisConfig::load(&loader(&[], &[("http.request_timeout", "soon")]), 7711)
            .expect_err("invalid");
        let message = error.to_string();
        assert!(message.starts_with("invalid config: http.request_timeout = \"soon\" (from --set http.request_timeout=soon)"), "{message}");
    }

    #[test]
    fn unknown_enum_variant_is_explained() {
        let error = ChassisConfig::load(&loader(&[("BAZAAR_LOG__FORMAT", "xml")], &[]), 7711)
            .expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains("log.format = \"xml\""), "{message}");
        assert!(message.contains("json"), "{message}");
    }

    #[test]
    fn sections_are_extracted_with_their_prefix() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct Users {
            #[serde(with = "humantime_serde")]
            token_ttl: Duration,
        }
        let defaults = Users {
            token_ttl: Duration::from_secs(900),
        };
        let ok = loader(&[("BAZAAR_USERS__TOKEN_TTL", "5m")], &[]).section("users", &defaults);
        assert_eq!(ok.expect("valid").token_ttl, Duration::from_secs(300));
        let bad = loader(&[("BAZAAR_USERS__TOKEN_TTL", "5 parsecs")], &[])
            .section("users", &defaults)
            .expect_err("invalid");
        assert!(
            bad.to_string().starts_with(
                "invalid config: users.token_ttl = \"5 parsecs\" (from BAZAAR_USERS__TOKEN_TTL)"
            ),
            "{bad}"
        );
    }

    #[test]
    fn database_url_defaults_to_a_file_in_the_data_dir() {
        let mut config = ChassisConfig::with_port(1);
        config.data_dir = PathBuf::from("/tmp/shop");
        assert_eq!(
            config.database_url("users").expose_secret(),
            "sqlite:///tmp/shop/users.db"
        );
    }

    #[test]
    fn url_scheme_check_names_the_key() {
        let error =
            check_url_scheme("discovery.registry", "ftp://x", &["http", "https"]).expect_err("bad");
        assert_eq!(
            error.to_string(),
            "invalid config: discovery.registry = \"ftp://x\" (from configuration): expected a http or https URL"
        );
    }
}
