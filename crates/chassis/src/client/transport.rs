//! The seam between Bazaar's callers and the wire.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tracing::Instrument;

use super::pool::{Pool, PoolSettings};
use crate::inproc::Exchange;
use crate::mtls::{CallerService, Identity};

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

/// Sends a request to the absolute URI it carries and returns the response.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
    /// Services of this process, called in place ([`crate::inproc`]), and who calls them.
    local: Option<Local>,
}

#[derive(Clone)]
struct Local {
    exchange: Exchange,
    caller: Option<Arc<str>>,
}

#[derive(Clone)]
enum Inner {
    /// The wire, called directly: no boxed future on every request.
    Http(Pool),
    /// Anything else.
    Service(BoxCloneSyncService<Request<Body>, Response<Body>, TransportError>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    /// Pooled HTTP/1.1 keep-alive connections (the chassis' own pool) with `TCP_NODELAY` and a
    /// bounded connect time, so a dead instance fails fast and the call moves to the next one.
    /// Only `http://` URLs; see [`Transport::with_identity`] for `https://`.
    pub fn http() -> Self {
        Self::with_identity(None)
    }

    /// [`Transport::http`], and `https://` with mutual TLS presenting `identity`: the peer
    /// must present a certificate from the same CA, naming the service the request is for
    /// (its [`super::Peer`]) when the caller says.
    pub fn with_identity(identity: Option<Identity>) -> Self {
        Self {
            local: None,
            inner: Inner::Http(Pool::new(PoolSettings {
                connect_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(30),
                // As many as a burst may have opened: each one closed for want of room is a
                // TLS handshake, with its signatures, that the next burst pays again at both
                // ends. Under an overload that churn took an eighth of orders' CPU when only 64
                // were kept (docs/decisions.md, 2026-12-07). Unused ones still go after 30 s.
                max_idle: 1024,
                identity,
            })),
        }
    }

    /// The mTLS identity this transport presents, if it has one.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.inner {
            Inner::Http(pool) => pool.identity(),
            Inner::Service(_) => None,
        }
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
            inner: Inner::Service(BoxCloneSyncService::new(service)),
            local: None,
        }
    }

    /// This transport, calling the services filed in `exchange` in place, as the service its
    /// identity names (as mTLS would tell them).
    pub fn with_exchange(mut self, exchange: Exchange) -> Self {
        let caller = self
            .identity()
            .map(|identity| Arc::from(identity.service()));
        self.local = Some(Local { exchange, caller });
        self
    }

    /// Sends one request, as a client span of the current request's trace (its context goes
    /// out as `traceparent`; see [`crate::trace`]).
    pub async fn send(&self, mut request: Request<Body>) -> Result<Response<Body>, TransportError> {
        let Some(span) = crate::trace::outgoing(&mut request) else {
            return self.send_untraced(request).await;
        };
        let result = self.send_untraced(request).instrument(span.clone()).await;
        match &result {
            Ok(response) => crate::trace::record_status(&span, response.status().as_u16()),
            Err(error) => crate::trace::record_failure(&span, error),
        }
        result
    }

    async fn send_untraced(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Body>, TransportError> {
        if let Some(local) = &self.local
            && let Some(service) = local.exchange.find(request.uri())
        {
            let mut request = crate::inproc::as_received(request);
            if let Some(caller) = &local.caller {
                request
                    .extensions_mut()
                    .insert(CallerService(Arc::clone(caller)));
            }
            return match service.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(never) => match never {},
            };
        }
        match &self.inner {
            Inner::Http(pool) => pool.send(request).await,
            Inner::Service(service) => service.clone().oneshot(request).await,
        }
    }
}
