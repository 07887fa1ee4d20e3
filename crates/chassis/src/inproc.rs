//! Several services in one process, calling each other as function calls: what a monolith
//! built from the same services does.
//!
//! An [`Exchange`] is shared by the services of one process ([`crate::config::ChassisConfig::exchange`]).
//! Each server files its whole stack (middleware, front and routes) under its URL's origin when
//! it starts serving, and takes it back when it stops; a transport built with the exchange
//! hands a request for a filed origin straight to that stack: no socket, no TLS, no HTTP
//! framing, the same handlers, middleware and checks. The callee sees the caller's service
//! name as mTLS would have told it ([`crate::mtls::CallerService`]), so each route still
//! admits only the callers it names. Anything else (another process, a database, the
//! registry when it runs apart) goes over the wire as before.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::Request;
use axum::response::Response;
use http::Uri;
use tower::util::BoxCloneSyncService;

/// A service's whole stack, as the exchange holds it.
pub(crate) type Local = BoxCloneSyncService<Request, Response, Infallible>;

/// The services of one process, by origin (`https://127.0.0.1:7712`).
#[derive(Clone, Default)]
pub struct Exchange {
    services: Arc<RwLock<HashMap<String, Local>>>,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<String> = self
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        f.debug_struct("Exchange")
            .field("origins", &origins)
            .finish()
    }
}

impl PartialEq for Exchange {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.services, &other.services)
    }
}

impl Exchange {
    /// An exchange with no service yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files `service` under the origin of `url`.
    pub(crate) fn file(&self, url: &str, service: Local) {
        if let Some(origin) = url.parse::<Uri>().ok().as_ref().and_then(origin) {
            self.services
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(origin, service);
        }
    }

    /// Takes back what was filed under the origin of `url`.
    pub(crate) fn withdraw(&self, url: &str) {
        if let Some(origin) = url.parse::<Uri>().ok().as_ref().and_then(origin) {
            self.services
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&origin);
        }
    }

    /// The service filed under the origin `uri` points at, if any.
    pub(crate) fn find(&self, uri: &Uri) -> Option<Local> {
        let origin = origin(uri)?;
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&origin)
            .cloned()
    }

    /// Origins filed, for logs and tests.
    pub fn origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        origins.sort();
        origins
    }
}

/// `scheme://authority` of an absolute URI, lowercased.
fn origin(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The peer address an in-process request carries: this host, port 0 (no socket).
pub const PEER: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// `request` as a server would have received it from the wire: origin-form target, the
/// authority as `Host`, [`PEER`] as the peer's address (handlers that read it, such as a
/// throttle per address, work as they do over a socket).
pub(crate) fn as_received(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(axum::extract::ConnectInfo(PEER));
    if let Some(authority) = parts.uri.authority()
        && !parts.headers.contains_key(http::header::HOST)
        && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(http::header::HOST, host);
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority() {
        let uri: Uri = "HTTPS://127.0.0.1:7712/products?x=1"
            .parse()
            .expect("a uri");
        assert_eq!(origin(&uri).as_deref(), Some("https://127.0.0.1:7712"));
        assert_eq!(origin(&Uri::from_static("/products")), None);
    }

    #[test]
    fn a_request_arrives_in_origin_form_with_its_host() {
        let request = Request::builder()
            .uri("https://127.0.0.1:7712/products?page_size=5")
            .body(axum::body::Body::empty())
            .expect("a request");
        let received = as_received(request);
        assert_eq!(received.uri(), "/products?page_size=5");
        assert_eq!(received.headers()[http::header::HOST], "127.0.0.1:7712");
        assert_eq!(
            received
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
            Some(PEER)
        );
    }
}
