//! Which services may call a route.
//!
//! Over mTLS every request carries the calling service ([`CallerService`], from its client
//! certificate). A service's router declares, per group of routes, who may call them:
//!
//! ```ignore
//! Router::new()
//!     .route("/charges", post(charge))
//!     .route("/charges/{id}/refunds", post(refund))
//!     .route_layer(authz::callers(&["orders"]))
//! ```
//!
//! Any other service gets 403 (`forbidden-caller`; `PERMISSION_DENIED` over gRPC), logged with
//! who it was. A request with no
//! calling service came over a listener without mTLS (a test, a deployment that turned it off)
//! and is let through: there is no identity to check.
//!
//! End-user identity is a separate matter: the gateway passes the signed-in user on, and the
//! route checks it where the data belongs to a user ([`crate::auth`]).

use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::Request;

use crate::error::HttpError;
use crate::mtls::CallerService;

pub use crate::mtls::OPERATOR;

/// The public API's caller: the gateway, which forwards what clients send to `/api/…`.
pub const GATEWAY: &str = "gateway";

/// The operations console, drawn by the storefront's service (`web`) for an administrator the
/// gateway verified: it reads what operators read (traces, dead letters) and replays dead
/// letters, and is let through where [`OPERATOR`] is.
pub const CONSOLE: &str = "web";

/// Lets only `allowed` services call the routes it is applied to (with `route_layer`).
pub fn callers(allowed: &'static [&'static str]) -> Callers {
    Callers { allowed }
}

/// The layer [`callers`] makes.
#[derive(Debug, Clone, Copy)]
pub struct Callers {
    allowed: &'static [&'static str],
}

impl Callers {
    /// Whether a request from `caller` may pass.
    pub fn allows(&self, caller: Option<&CallerService>) -> bool {
        caller.is_none_or(|caller| self.allowed.contains(&caller.name()))
    }
}

impl<S> tower::Layer<S> for Callers {
    type Service = CallersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallersService {
            inner,
            callers: *self,
        }
    }
}

/// The service of [`Callers`].
#[derive(Debug, Clone)]
pub struct CallersService<S> {
    inner: S,
    callers: Callers,
}

impl<S, B> tower::Service<Request<B>> for CallersService<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let caller = request.extensions().get::<CallerService>();
        if self.callers.allows(caller) {
            return Either::Right(self.inner.call(request));
        }
        let caller = caller.map_or("", CallerService::name);
        tracing::warn!(
            caller,
            method = %request.method(),
            path = request.uri().path(),
            allowed = ?self.callers.allowed,
            "refused a call from a service this route does not accept"
        );
        let detail = format!(
            "{caller} may not call {} {}",
            request.method(),
            request.uri().path()
        );
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        let refusal = if grpc {
            // A gRPC client reads the status from the trailers, not a problem body.
            tonic::Status::permission_denied(detail)
                .into_http::<axum::body::Body>()
                .into_response()
        } else {
            HttpError::forbidden(detail)
                .with_slug("forbidden-caller")
                .into_response()
        };
        Either::Left(ready(Ok(refusal)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_services_pass_and_no_identity_is_no_check() {
        let callers = callers(&["orders", "operator"]);
        let caller = |name: &str| CallerService(name.into());
        assert!(callers.allows(Some(&caller("orders"))));
        assert!(callers.allows(Some(&caller("operator"))));
        assert!(!callers.allows(Some(&caller("cart"))));
        assert!(!callers.allows(Some(&caller("order"))));
        assert!(callers.allows(None));
    }
}
