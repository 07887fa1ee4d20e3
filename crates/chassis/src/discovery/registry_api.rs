//! A typed client of the registry role, used by registration, discovery watches, traffic
//! policies, fault rules and `bazaar status`: the built-in registry's HTTP API
//! (`platform/registry`), or etcd in its place ([`super::etcd`]), chosen by configuration.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use contracts::discovery::{
    InstanceList, KvEntry, KvList, KvWrite, Registration, ServiceInstances, ServiceList,
};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::etcd::{EtcdClient, EtcdConfigError};
use crate::client::{Transport, TransportError};
use crate::config::DiscoveryConfig;

/// Time an ordinary registry call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached.
    #[error("registry unreachable")]
    Transport(#[from] TransportError),
    /// The registry took too long.
    #[error("registry did not answer within {0:?}")]
    Timeout(Duration),
    /// The registry refused the call.
    #[error("registry answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Body, for the log.
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("registry answer could not be decoded")]
    Decode(#[from] serde_json::Error),
    /// The request could not be built (a bad base URL or key).
    #[error("invalid registry request: {0}")]
    Invalid(#[from] http::Error),
    /// Reading the body failed.
    #[error("reading the registry answer")]
    Body(#[from] axum::Error),
    /// The request breaks the registry role's rules (a bad key, a malformed registration).
    #[error("refused: {0}")]
    Rejected(String),
    /// etcd, in the registry's place, failed the call.
    #[error("etcd answered {}: {}", .0.code(), .0.message())]
    Etcd(tonic::Status),
}

/// Result of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The TTL was renewed.
    Renewed,
    /// The registry does not know the instance (it restarted, or expired us): register again.
    Unknown,
}

/// Client of the registry role: the built-in registry, or etcd in its place. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Http(HttpRegistry),
    Etcd(EtcdClient),
}

/// Calls `$method` on whichever backend the client has.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match &$self.backend {
            Backend::Http(http) => http.$method($($arg),*).await,
            Backend::Etcd(etcd) => etcd.$method($($arg),*).await,
        }
    };
}

impl RegistryClient {
    /// A client of the registry at `base` (`http://127.0.0.1:7701`).
    pub fn new(base: &str, transport: Transport) -> Self {
        Self {
            backend: Backend::Http(HttpRegistry {
                base: base.trim_end_matches('/').to_owned(),
                transport,
            }),
        }
    }

    /// A client of etcd, in the registry's place.
    pub fn etcd(client: EtcdClient) -> Self {
        Self {
            backend: Backend::Etcd(client),
        }
    }

    /// The backend `config` selects: etcd when `discovery.etcd` is set (reached with
    /// `transport`'s identity), else what `discovery.registry` names ([`Self::connect`]);
    /// `None` for neither.
    pub fn from_config(
        config: &DiscoveryConfig,
        transport: &Transport,
    ) -> Result<Option<Self>, EtcdConfigError> {
        if let Some(etcd) = &config.etcd {
            let client = EtcdClient::new(etcd, transport.identity().cloned())?;
            return Ok(Some(Self::etcd(client)));
        }
        config
            .registry
            .as_deref()
            .map(|url| Ok(Self::connect(url, transport)))
            .transpose()
    }

    /// The registry at `url`, or etcd in its place for an `etcd+http://host:port/prefix/` URL
    /// ([`crate::config::EtcdConfig::from_url`], whose one endpoint is always a valid one).
    pub fn connect(url: &str, transport: &Transport) -> Self {
        let etcd = crate::config::EtcdConfig::from_url(url)
            .and_then(|etcd| EtcdClient::new(&etcd, transport.identity().cloned()).ok());
        match etcd {
            Some(client) => Self::etcd(client),
            None => Self::new(url, transport.clone()),
        }
    }

    /// What the client talks to, for logs and messages: the registry's base URL, or
    /// `etcd <endpoints>`.
    pub fn base(&self) -> &str {
        match &self.backend {
            Backend::Http(http) => &http.base,
            Backend::Etcd(etcd) => etcd.label(),
        }
    }

    /// Registers (or re-registers) an instance.
    pub async fn register(
        &self,
        id: &str,
        registration: &Registration,
    ) -> Result<(), RegistryError> {
        dispatch!(self.register(id, registration))
    }

    /// Renews an instance's TTL.
    pub async fn heartbeat(&self, id: &str) -> Result<Heartbeat, RegistryError> {
        dispatch!(self.heartbeat(id))
    }

    /// Removes an instance. Removing an unknown instance is not an error.
    pub async fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        dispatch!(self.deregister(id))
    }

    /// Passing instances of `service`. With `index`, a blocking query: returns when the service
    /// changes after `index`, or after `wait` with the same answer.
    pub async fn service(
        &self,
        service: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<ServiceInstances, RegistryError> {
        dispatch!(self.service(service, index, wait))
    }

    /// Every instance of every service, passing or not.
    pub async fn instances(&self) -> Result<InstanceList, RegistryError> {
        dispatch!(self.instances())
    }

    /// Every service with its instance counts.
    pub async fn services(&self) -> Result<ServiceList, RegistryError> {
        dispatch!(self.services())
    }

    /// A key of the KV store, or `None` if it does not exist.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, RegistryError> {
        dispatch!(self.kv_get(key))
    }

    /// Writes a key. With `cas`, only if the key's modify index is still `cas` (0: only if
    /// absent); returns `None` when that check failed.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &str,
        cas: Option<u64>,
    ) -> Result<Option<u64>, RegistryError> {
        dispatch!(self.kv_put(key, value, cas))
    }

    /// Deletes a key; `false` if it did not exist.
    pub async fn kv_delete(&self, key: &str) -> Result<bool, RegistryError> {
        dispatch!(self.kv_delete(key))
    }

    /// The keys under `prefix`. With `index`, a blocking query: returns when something under
    /// the prefix changes after `index`, or after `wait` with the same answer.
    pub async fn kv_list(
        &self,
        prefix: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<KvList, RegistryError> {
        dispatch!(self.kv_list(prefix, index, wait))
    }
}

/// The built-in registry's HTTP API.
#[derive(Debug, Clone)]
struct HttpRegistry {
    base: String,
    transport: Transport,
}

impl HttpRegistry {
    async fn register(&self, id: &str, registration: &Registration) -> Result<(), RegistryError> {
        let body = serde_json::to_vec(registration)?;
        let path = format!("/v1/instances/{}", encode(id));
        self.expect_ok(Method::PUT, &path, Some(body))
            .await
            .map(drop)
    }

    async fn heartbeat(&self, id: &str) -> Result<Heartbeat, RegistryError> {
        let path = format!("/v1/instances/{}/heartbeat", encode(id));
        match self.send(Method::PUT, &path, None, CALL_TIMEOUT).await? {
            (status, _) if status.is_success() => Ok(Heartbeat::Renewed),
            (StatusCode::NOT_FOUND, _) => Ok(Heartbeat::Unknown),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        let path = format!("/v1/instances/{}", encode(id));
        match self.send(Method::DELETE, &path, None, CALL_TIMEOUT).await? {
            (status, _) if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn service(
        &self,
        service: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<ServiceInstances, RegistryError> {
        let path = format!("/v1/services/{}?passing=true", encode(service));
        self.blocking_get(path, index, wait).await
    }

    async fn instances(&self) -> Result<InstanceList, RegistryError> {
        self.get_json("/v1/instances").await
    }

    async fn services(&self) -> Result<ServiceList, RegistryError> {
        self.get_json("/v1/services").await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, RegistryError> {
        let path = format!("/v1/kv/{}", encode_key(key));
        match self.send(Method::GET, &path, None, CALL_TIMEOUT).await? {
            (status, body) if status.is_success() => Ok(Some(serde_json::from_slice(&body)?)),
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        cas: Option<u64>,
    ) -> Result<Option<u64>, RegistryError> {
        let mut path = format!("/v1/kv/{}", encode_key(key));
        if let Some(cas) = cas {
            path.push_str(&format!("?cas={cas}"));
        }
        match self
            .send(
                Method::PUT,
                &path,
                Some(value.as_bytes().to_vec()),
                CALL_TIMEOUT,
            )
            .await?
        {
            (status, body) if status.is_success() => {
                Ok(Some(serde_json::from_slice::<KvWrite>(&body)?.index))
            }
            (StatusCode::CONFLICT, _) => Ok(None),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, RegistryError> {
        let path = format!("/v1/kv/{}", encode_key(key));
        match self.send(Method::DELETE, &path, None, CALL_TIMEOUT).await? {
            (status, _) if status.is_success() => Ok(true),
            (StatusCode::NOT_FOUND, _) => Ok(false),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn kv_list(
        &self,
        prefix: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<KvList, RegistryError> {
        let path = format!("/v1/kv?prefix={}", encode(prefix));
        self.blocking_get(path, index, wait).await
    }

    /// GET `path` (which has a query already); with `index`, as a blocking query that waits
    /// up to `wait` for a change after it.
    async fn blocking_get<T: DeserializeOwned>(
        &self,
        mut path: String,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<T, RegistryError> {
        let mut timeout = CALL_TIMEOUT;
        if let Some(index) = index {
            path.push_str(&format!("&index={index}&wait={}ms", wait.as_millis()));
            timeout += wait;
        }
        let (_, body) = self
            .expect_ok_within(Method::GET, &path, None, timeout)
            .await?;
        Ok(serde_json::from_slice(&body)?)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RegistryError> {
        let (_, body) = self.expect_ok(Method::GET, path, None).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), RegistryError> {
        self.expect_ok_within(method, path, body, CALL_TIMEOUT)
            .await
    }

    async fn expect_ok_within(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), RegistryError> {
        match self.send(method, path, body, timeout).await? {
            (status, body) if status.is_success() => Ok((status, body)),
            (status, body) => Err(status_error(status, &body)),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), RegistryError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty))?;
        let exchange = async {
            let response = self.transport.send(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, RegistryError>((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RegistryError::Timeout(timeout))?
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> RegistryError {
    let body = String::from_utf8_lossy(body).chars().take(512).collect();
    RegistryError::Status { status, body }
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a KV key, keeping its `/` separators.
fn encode_key(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_keys() {
        assert_eq!(encode("users-1"), "users-1");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_key("traffic/users policy"), "traffic/users%20policy");
    }
}
