//! gRPC calls to another service, held to the same rules as HTTP calls: the instance is found
//! through discovery and picked by power of two choices, the whole call (retries included) has
//! one deadline, which the callee also learns (`grpc-timeout`), a connection that cannot be made
//! moves the call to another instance, and an idempotent call is repeated elsewhere when the
//! callee answers `UNAVAILABLE`. The request id and the trace context travel in the metadata.
//!
//! Calls go over HTTP/2 on the chassis' own connections (mutual TLS with the service's
//! identity, or plain HTTP/2 without it), one multiplexed connection per instance, rather than
//! tonic's transport: the same dialing, identity checks and discovery as every other call.
//!
//! ```ignore
//! let user = grpc
//!     .call("users", Idempotent::Yes, |channel| async move {
//!         UsersClient::new(channel).get_user(GetUserRequest { id }).await
//!     })
//!     .await?;
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use contracts::headers::REQUEST_ID;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Status;
use tracing::Instrument;

use super::Peer;
use super::pool::dial;
use crate::config::DiscoveryConfig;
use crate::context;
use crate::discovery::{Discovery, EJECTION};
use crate::mtls::Identity;

/// Whether repeating a call cannot apply its effect twice (a read, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// Repeat it on another instance when the callee is unavailable.
    Yes,
    /// Repeat it only when it certainly never left (the connection could not be made).
    No,
}

/// Calls gRPC services by name. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    discovery: Discovery,
    identity: Option<Identity>,
    connections: Arc<Mutex<HashMap<String, SendRequest<tonic::body::Body>>>>,
    connect_timeout: Duration,
    timeout: Duration,
    retries: u32,
}

impl GrpcClient {
    /// A client that resolves through `discovery`, presents `identity` to `https://`
    /// instances, and takes its deadline and retries from `config`.
    pub fn new(discovery: Discovery, identity: Option<Identity>, config: &DiscoveryConfig) -> Self {
        Self {
            discovery,
            identity,
            connections: Arc::default(),
            connect_timeout: Duration::from_secs(2),
            timeout: config.call_timeout,
            retries: config.retries,
        }
    }

    /// Calls `service`: `call` gets a [`Channel`] to one instance and makes the call with a
    /// generated client. Within the deadline, the call moves to another instance when the
    /// connection cannot be made and, if `idempotent`, when the answer is `UNAVAILABLE`. A call
    /// out of time is `DEADLINE_EXCEEDED`.
    pub async fn call<T, F, Fut>(
        &self,
        service: &str,
        idempotent: Idempotent,
        mut call: F,
    ) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let request_id = context::request_id().unwrap_or_else(context::new_request_id);
        let attempts = async {
            let mut tried: Vec<String> = Vec::new();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let may_retry = attempt <= self.retries;
                let lease = match self.discovery.pick_excluding(service, &tried).await {
                    Ok(lease) => lease,
                    Err(_) if !tried.is_empty() => {
                        tried.clear();
                        self.discovery.pick(service).await.map_err(unavailable)?
                    }
                    Err(error) => return Err(unavailable(error)),
                };
                let endpoint = lease.endpoint();
                match self.connection(&endpoint.address, service).await {
                    Err(status) => {
                        endpoint.eject(EJECTION);
                        if !may_retry {
                            return Err(status);
                        }
                    }
                    Ok((sender, base)) => {
                        let channel = Channel {
                            sender,
                            base,
                            service: service.to_owned(),
                            request_id: request_id.clone(),
                            deadline,
                        };
                        match call(channel).await {
                            Ok(response) => return Ok(response.into_inner()),
                            Err(status)
                                if may_retry
                                    && idempotent == Idempotent::Yes
                                    && status.code() == tonic::Code::Unavailable => {}
                            Err(status) => return Err(status),
                        }
                    }
                }
                tracing::debug!(upstream_service = service, upstream = %endpoint.id, "retrying the gRPC call elsewhere");
                tried.push(endpoint.id.clone());
                drop(lease);
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
        };
        match tokio::time::timeout_at(deadline.into(), attempts).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{service} did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The HTTP/2 connection to the instance at `address` (made if there is none or it
    /// closed), and the instance's scheme and authority.
    async fn connection(
        &self,
        address: &str,
        service: &str,
    ) -> Result<(SendRequest<tonic::body::Body>, (Scheme, Authority)), Status> {
        let uri: Uri = address
            .parse()
            .map_err(|e| Status::internal(format!("instance address {address:?}: {e}")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(Status::internal(format!(
                "instance address {address:?} has no scheme and host"
            )));
        };
        let existing = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .filter(|sender| !sender.is_closed())
            .cloned();
        if let Some(sender) = existing {
            return Ok((sender, (scheme, authority)));
        }
        let sender = h2_connect(
            &scheme,
            &authority,
            self.identity.as_ref(),
            Some(service),
            self.connect_timeout,
        )
        .await
        .map_err(Status::unavailable)?;
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.to_owned(), sender.clone());
        Ok((sender, (scheme, authority)))
    }
}

fn unavailable(error: impl std::error::Error + 'static) -> Status {
    Status::unavailable(crate::error::ErrorChain(&error).to_string())
}

/// Points a generated client's request (which names only its path) at `scheme://authority`.
pub(crate) fn address<B>(request: &mut Request<B>, scheme: &Scheme, authority: &Authority) {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    if let Ok(uri) = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path)
        .build()
    {
        *request.uri_mut() = uri;
    }
}

/// One instance's HTTP/2 connection, as a generated gRPC client takes it: each request goes
/// out with the instance's address, the time left before the deadline, the request id and
/// the trace context.
#[derive(Debug, Clone)]
pub struct Channel {
    sender: SendRequest<tonic::body::Body>,
    base: (Scheme, Authority),
    service: String,
    request_id: String,
    deadline: Instant,
}

impl tower::Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        let (scheme, authority) = &self.base;
        address(&mut request, scheme, authority);
        let headers = request.headers_mut();
        let left = self.deadline.saturating_duration_since(Instant::now());
        // gRPC's timeout header: at most eight digits and a unit.
        if let Ok(value) = HeaderValue::from_str(&format!("{}m", left.as_millis().min(99_999_999)))
        {
            headers.insert("grpc-timeout", value);
        }
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert(REQUEST_ID, value);
        }
        request.extensions_mut().insert(Peer(self.service.clone()));
        let span = crate::trace::outgoing(&mut request);
        let sending = self.sender.send_request(request);
        match span {
            None => Box::pin(sending),
            Some(span) => Box::pin(
                async move {
                    let result = sending.await;
                    let span = tracing::Span::current();
                    match &result {
                        Ok(response) => {
                            crate::trace::record_status(&span, response.status().as_u16());
                        }
                        Err(error) => crate::trace::record_failure(&span, error),
                    }
                    result
                }
                .instrument(span),
            ),
        }
    }
}

/// An HTTP/2 connection to `authority`: over mutual TLS presenting `identity` for `https`
/// (expecting the peer to be `service` when named), in the clear for `http`; its driver runs
/// in a task of its own. What went wrong, said for a person, when it cannot be made.
pub(crate) async fn h2_connect(
    scheme: &Scheme,
    authority: &Authority,
    identity: Option<&Identity>,
    service: Option<&str>,
    timeout: Duration,
) -> Result<SendRequest<tonic::body::Body>, String> {
    let tls = match (*scheme == Scheme::HTTPS, identity) {
        (true, Some(identity)) => Some((identity, &[&b"h2"[..]][..])),
        (true, None) => {
            return Err(format!(
                "https://{authority} needs an mTLS identity (the [mtls] settings)"
            ));
        }
        (false, _) => None,
    };
    let (stream, _) = dial(authority, tls, service, timeout)
        .await
        .map_err(|error| crate::error::ErrorChain(&error).to_string())?;
    let (sender, driver) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|error| format!("{authority}: {error}"))?;
    let peer = authority.to_string();
    tokio::spawn(async move {
        if let Err(error) = driver.await {
            tracing::debug!(%peer, %error, "HTTP/2 connection ended");
        }
    });
    Ok(sender)
}
