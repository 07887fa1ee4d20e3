//! Calls to another service: resolve, pick, send, retry what is safe, all within one deadline.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use contracts::headers::{IDEMPOTENCY_KEY, REQUEST_ID};
use contracts::problem::Problem;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::transport::{Transport, TransportError};
use crate::config::DiscoveryConfig;
use crate::context;
use crate::discovery::{Discovery, DiscoveryError, EJECTION};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing to send it to.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// No attempt produced an answer before the deadline.
    #[error("{service} did not answer within {after:?}")]
    Timeout {
        /// Callee.
        service: String,
        /// The deadline.
        after: Duration,
    },
    /// Every attempt failed on the wire.
    #[error("{service} unreachable")]
    Unreachable {
        /// Callee.
        service: String,
        /// The last attempt's error.
        #[source]
        source: TransportError,
    },
    /// The callee answered with an error status.
    #[error("{service} answered {status}")]
    Status {
        /// Callee.
        service: String,
        /// The status.
        status: StatusCode,
        /// The problem body, when the callee sent one.
        problem: Option<Box<Problem>>,
    },
    /// The answer could not be read or decoded.
    #[error("{service} sent an unreadable answer")]
    Decode {
        /// Callee.
        service: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request itself was invalid (a header value, a body that does not serialize).
    #[error("invalid request to {service}: {reason}")]
    Invalid {
        /// Callee.
        service: String,
        /// Why.
        reason: String,
    },
}

/// Calls other services by name. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    discovery: Discovery,
    transport: Transport,
    timeout: Duration,
    retries: u32,
    user_agent: HeaderValue,
}

impl ServiceClient {
    /// The usual client of a service: HTTP over the network through `transport` (the server's,
    /// [`crate::Server::transport`], presenting the service's certificate), resolved through
    /// the discovery of `config` (whose watches stop with `shutdown`), named `caller`.
    pub fn over_http(
        transport: &Transport,
        config: &DiscoveryConfig,
        caller: &str,
        shutdown: &CancellationToken,
    ) -> Self {
        let transport = transport.clone();
        let discovery = Discovery::new(config, transport.clone(), shutdown);
        Self::new(discovery, transport, config, caller)
    }

    /// A client that resolves through `discovery` and sends through `transport`; `caller` names
    /// this service in the `user-agent` of every call.
    pub fn new(
        discovery: Discovery,
        transport: Transport,
        config: &DiscoveryConfig,
        caller: &str,
    ) -> Self {
        let user_agent = HeaderValue::from_str(&format!("bazaar-{caller}"))
            .unwrap_or_else(|_| HeaderValue::from_static("bazaar"));
        Self {
            discovery,
            transport,
            timeout: config.call_timeout,
            retries: config.retries,
            user_agent,
        }
    }

    /// The discovery this client resolves through.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// The transport this client sends through.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Starts a call of `method` on `path` of `service`.
    pub fn call(&self, method: Method, service: &str, path: &str) -> Call<'_> {
        Call {
            client: self,
            method,
            service: service.to_owned(),
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: self.timeout,
            error: None,
        }
    }

    /// Starts a GET.
    pub fn get(&self, service: &str, path: &str) -> Call<'_> {
        self.call(Method::GET, service, path)
    }

    /// Starts a POST.
    pub fn post(&self, service: &str, path: &str) -> Call<'_> {
        self.call(Method::POST, service, path)
    }
}

/// A call being built; [`Call::send`] performs it.
#[derive(Debug)]
#[must_use = "a call does nothing until it is sent"]
pub struct Call<'a> {
    client: &'a ServiceClient,
    method: Method,
    service: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    error: Option<String>,
}

impl Call<'_> {
    /// Sends `value` as a JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body.into();
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(error) => self.error = Some(error.to_string()),
        }
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                self.headers.insert(name, value);
            }
            Err(_) => self.error = Some(format!("header {name} has an invalid value")),
        }
        self
    }

    /// Marks the call safe to repeat whatever its method: the callee deduplicates by this key.
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header(HeaderName::from_static(IDEMPOTENCY_KEY), key)
    }

    /// Overrides the deadline of the whole call, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether repeating the call cannot apply its effect twice.
    fn is_repeatable(&self) -> bool {
        self.method.is_idempotent() || self.headers.contains_key(IDEMPOTENCY_KEY)
    }

    /// Performs the call. Retries, with another instance each time, when the connection failed
    /// (the request never left) or, for repeatable calls, on 502/503/504 and broken exchanges.
    pub async fn send(self) -> Result<CallResponse, CallError> {
        if let Some(reason) = self.error.clone() {
            return Err(CallError::Invalid {
                service: self.service.clone(),
                reason,
            });
        }
        let deadline = Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline.into(), self.attempts()).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                service: self.service.clone(),
                after: self.timeout,
            }),
        }
    }

    async fn attempts(&self) -> Result<CallResponse, CallError> {
        let request_id = context::request_id().unwrap_or_else(context::new_request_id);
        let repeatable = self.is_repeatable();
        let mut tried: Vec<String> = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lease = match self
                .client
                .discovery
                .pick_excluding(&self.service, &tried)
                .await
            {
                Ok(lease) => lease,
                // Every instance tried once: start over rather than give up early.
                Err(_) if !tried.is_empty() => {
                    tried.clear();
                    self.client.discovery.pick(&self.service).await?
                }
                Err(error) => return Err(error.into()),
            };
            let endpoint = lease.endpoint();
            let request = self.build(&endpoint.address, &request_id)?;
            let outcome = self.client.transport.send(request).await;
            let may_retry = attempt <= self.client.retries;
            match outcome {
                Ok(response) => {
                    let status = response.status();
                    let retryable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if retryable && repeatable && may_retry {
                        tracing::debug!(service = %self.service, instance = %endpoint.id, %status, "retrying");
                    } else {
                        let headers = response.headers().clone();
                        let body = response.into_body().collect().await.map_err(|e| {
                            CallError::Decode {
                                service: self.service.clone(),
                                source: Box::new(e),
                            }
                        })?;
                        return Ok(CallResponse {
                            service: self.service.clone(),
                            instance: endpoint.id.clone(),
                            status,
                            headers,
                            body: body.to_bytes(),
                        });
                    }
                }
                Err(error) => {
                    if error.is_connect() {
                        endpoint.eject(EJECTION);
                    }
                    if !(may_retry && (error.is_connect() || repeatable)) {
                        return Err(CallError::Unreachable {
                            service: self.service.clone(),
                            source: error,
                        });
                    }
                    tracing::debug!(service = %self.service, instance = %endpoint.id, error = %crate::error::ErrorChain(&error), "retrying");
                }
            }
            tried.push(endpoint.id.clone());
            drop(lease);
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn build(&self, address: &str, request_id: &str) -> Result<Request<Body>, CallError> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(format!("{address}{}", self.path))
            .body(Body::from(self.body.clone()))
            .map_err(|e| CallError::Invalid {
                service: self.service.clone(),
                reason: e.to_string(),
            })?;
        if crate::trace::enabled() {
            request
                .extensions_mut()
                .insert(crate::client::Peer(self.service.clone()));
        }
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        headers.insert(USER_AGENT, self.client.user_agent.clone());
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID, value);
        }
        Ok(request)
    }
}

/// Pause before attempt `attempt + 1`: 20 ms doubling, with jitter so retries of many callers
/// do not arrive together.
fn backoff(attempt: u32) -> Duration {
    let base = 20u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
}

/// The answer to a call, body read.
#[derive(Debug, Clone)]
pub struct CallResponse {
    service: String,
    /// Instance that answered.
    pub instance: String,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl CallResponse {
    /// `Err(CallError::Status)` unless the status is 2xx, with the callee's problem body.
    pub fn error_for_status(self) -> Result<Self, CallError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let problem = serde_json::from_slice::<Problem>(&self.body)
            .ok()
            .map(Box::new);
        Err(CallError::Status {
            service: self.service,
            status: self.status,
            problem,
        })
    }

    /// Decodes a 2xx JSON body; any other status is an error.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, CallError> {
        let response = self.error_for_status()?;
        serde_json::from_slice(&response.body).map_err(|e| CallError::Decode {
            service: response.service,
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..20 {
            let pause = backoff(attempt);
            let base = 20u64 * (1 << attempt.min(6));
            assert!(
                pause >= Duration::from_millis(base / 2) && pause <= Duration::from_millis(base),
                "{attempt}: {pause:?}"
            );
        }
    }
}
