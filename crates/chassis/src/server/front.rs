//! A service that answers requests ahead of the router: a proxy's hot path.
//!
//! A proxy matches its own route table, so the router's path matching, its per-route boxing and
//! its body-limit layers are work done twice on every request. [`Front`] lets a service take
//! requests before the router sees them. They still get everything the chassis promises: the
//! request id, span, metrics and access log of [`super::middleware`], the fault rules, and a
//! panic turned into a 500. Paths the chassis serves itself (health, metrics, OpenAPI,
//! `/internal/…`) never reach a front.
//!
//! The front enforces its own body limit: the router's body-limit layers are not around it.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::serve::{IncomingStream, Listener};
use futures_util::future::{BoxFuture, Either};
use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::tls::Secure;

/// Which requests a front takes.
pub type Takes = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// Requests a service answers itself, ahead of its router ([`crate::Server::with_front`]).
#[derive(Clone)]
pub struct Front {
    /// Whether a request is the front's; it is not asked about the chassis's own paths.
    pub takes: Takes,
    /// What answers the requests it takes.
    pub service: BoxCloneSyncService<Request, Response, Infallible>,
}

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Front").finish_non_exhaustive()
    }
}

/// Paths the chassis answers in every process, whatever a front would take.
pub fn is_chassis_path(path: &str) -> bool {
    path.starts_with("/health/")
        || path.starts_with("/internal/")
        || path == "/metrics"
        || path == "/openapi.json"
}

/// The service of every connection: the front, when it takes the request, else the router.
#[derive(Clone)]
pub(crate) struct Split {
    pub(crate) app: Router,
    /// The front with the chassis's middleware around it.
    pub(crate) front: Option<Front>,
    /// Requests arrive over TLS on the public HTTPS port ([`Secure`]).
    pub(crate) secure: bool,
}

impl Service<Request> for Split {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both sides are always ready: the router is, and the front's middleware asks its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Answered before its body was read, a request still gets its answer (`super::linger`).
        let mut request = super::linger::wrap(request);
        if self.secure {
            request.extensions_mut().insert(Secure);
        }
        match &mut self.front {
            Some(front) if !is_chassis_path(request.uri().path()) && (front.takes)(&request) => {
                Either::Left(front.service.call(request))
            }
            _ => Either::Right(self.app.call(request)),
        }
    }
}

/// Makes the service of each plain-HTTP connection: `S`, with the peer's address in every
/// request ([`ConnectInfo`]).
#[derive(Clone)]
pub(crate) struct WithAddr<S>(pub(crate) S);

impl<'a, L, S> Service<IncomingStream<'a, L>> for WithAddr<S>
where
    L: Listener<Addr = SocketAddr>,
    S: Clone,
{
    type Response = PeerAddr<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<PeerAddr<S>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(PeerAddr {
            inner: self.0.clone(),
            peer: *incoming.remote_addr(),
        }))
    }
}

/// The service of one connection made by [`WithAddr`].
#[derive(Clone)]
pub(crate) struct PeerAddr<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S> Service<Request> for PeerAddr<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chassis_keeps_its_own_paths() {
        for path in [
            "/health/live",
            "/health/ready",
            "/metrics",
            "/openapi.json",
            "/internal/events",
            "/internal/dead-letters/7/replay",
        ] {
            assert!(is_chassis_path(path), "{path}");
        }
        for path in [
            "/",
            "/api/metrics",
            "/healthy",
            "/metrics/x",
            "/api/openapi.json",
        ] {
            assert!(!is_chassis_path(path), "{path}");
        }
    }
}
