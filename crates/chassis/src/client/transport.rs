//! The seam between Bazaar's callers and the wire.

use std::fmt;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made: the request was never sent, so repeating it is safe
    /// whatever its method.
    #[error("connecting to {authority} failed")]
    Connect {
        /// Host and port that refused or did not answer.
        authority: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request may have reached the peer; only idempotent requests may be repeated.
    #[error("request to {authority} failed")]
    Request {
        /// Host and port.
        authority: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TransportError {
    /// Whether the request certainly never left this process.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

type Inner = BoxCloneSyncService<Request<Body>, Response<Body>, TransportError>;

/// Sends a request to the absolute URI it carries and returns the response.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// hyper's pooled HTTP/1.1 client: keep-alive connections, `TCP_NODELAY`, a bounded
    /// connect time so a dead instance fails fast and the call moves to the next one.
    pub fn http() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self::from_service(service_fn(move |request: Request<Body>| {
            let client = client.clone();
            async move {
                let authority = request
                    .uri()
                    .authority()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                match client.request(request).await {
                    Ok(response) => Ok(response.map(Body::new)),
                    Err(error) if error.is_connect() => Err(TransportError::Connect {
                        authority,
                        source: Box::new(error),
                    }),
                    Err(error) => Err(TransportError::Request {
                        authority,
                        source: Box::new(error),
                    }),
                }
            }
        }))
    }

    /// Any `tower::Service` as a transport: in-process routers, fakes in tests.
    pub fn from_service<S>(service: S) -> Self
    where
        S: tower::Service<Request<Body>, Response = Response<Body>, Error = TransportError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self {
            inner: BoxCloneSyncService::new(service),
        }
    }

    /// Sends one request.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Body>, TransportError> {
        self.inner.clone().oneshot(request).await
    }
}
