//! Keep-alive HTTP/1.1 connections to upstream instances, reused request after request.
//!
//! Per host and port, a stack of idle connections: a request takes the most recently used one
//! that is ready, or opens a new one; the connection goes back on the stack when the response
//! body has been read to its end. A response whose body is dropped half-read takes its
//! connection with it (hyper closes it: the rest of that body would be read as the next
//! answer). Each connection is driven by its own task, as in hyper's own client.
//!
//! `https://` URLs get mutual TLS with the transport's [`Identity`]; such a connection
//! remembers which service answered, and serves only requests for that service.
//!
//! hyper-util's pooled client does the same and more, but on every request it races a new
//! connection against the checkout and spawns a task to watch the connection come back: on the
//! gateway's path that was about a fifth of the instructions of a proxied request
//! (docs/decisions.md, 2026-11-26).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use foldhash::HashMap;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::Peer;
use super::transport::TransportError;
use crate::mtls::Identity;

/// How a [`Pool`] keeps its connections.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    /// Longest wait for a TCP connection: a dead instance fails fast and the call moves on.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed rather than reused.
    pub idle_timeout: Duration,
    /// Most idle connections kept per host and port.
    pub max_idle: usize,
    /// Presented on `https://` connections; without one, only `http://` URLs are sent.
    pub identity: Option<Identity>,
}

/// Connections by host and port; cheap to clone, clones share the connections.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    idle: Mutex<Stacks>,
    settings: PoolSettings,
}

/// Idle connections, keyed by `host:port` as written: `Authority`'s own hash folds case byte by
/// byte, which cost more than the rest of the lookup.
#[derive(Debug, Default)]
struct Stacks {
    plain: HashMap<Box<str>, VecDeque<Idle>>,
    secure: HashMap<Box<str>, VecDeque<Idle>>,
}

impl Stacks {
    fn of(&mut self, target: &Target) -> &mut HashMap<Box<str>, VecDeque<Idle>> {
        if target.secure {
            &mut self.secure
        } else {
            &mut self.plain
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
struct Target {
    authority: Authority,
    secure: bool,
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// One connection's sending half, and who answers on it (over mTLS).
#[derive(Debug)]
struct Connection {
    sender: SendRequest<Body>,
    service: Option<Box<str>>,
}

impl Pool {
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(Stacks::default()),
                settings,
            }),
        }
    }

    /// The identity it presents to `https://` peers.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.shared.settings.identity.as_ref()
    }

    /// Sends a request with an absolute `http://` (or, with an identity, `https://`) URI on a
    /// pooled connection.
    pub(crate) async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Body>, TransportError> {
        let (mut parts, body) = request.into_parts();
        let target = target(&mut parts, self.shared.settings.identity.is_some())?;
        // Taken, not copied: nothing after the pool reads it, and this is every proxied request.
        let expected = parts.extensions.remove::<Peer>().map(|peer| peer.0);
        let mut request = Request::from_parts(parts, body);
        loop {
            let (mut connection, reused) = match self.checkout(&target, expected.as_deref()).await {
                Some(connection) => (connection, true),
                // Boxed: dialling (TLS included) is a large future, and rare; inline, it would
                // make every request's future as large, and moved as often.
                None => (
                    Box::pin(self.connect(&target, expected.as_deref())).await?,
                    false,
                ),
            };
            let authority = &target.authority;
            match connection.sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| self.lease(body, target, connection)));
                }
                Err(mut error) => match error.take_message() {
                    // A kept connection the peer closed while it sat idle: the request was
                    // never written, so it goes out on another.
                    Some(unsent) if reused => request = unsent,
                    // A new connection that closed at once: nothing was sent either.
                    Some(_) => {
                        return Err(TransportError::Connect {
                            authority: authority.to_string(),
                            source: Box::new(error.into_error()),
                        });
                    }
                    None => {
                        return Err(TransportError::Request {
                            authority: authority.to_string(),
                            source: Box::new(error.into_error()),
                        });
                    }
                },
            }
        }
    }

    /// The most recently used idle connection to `target` that can take a request (for the
    /// `expected` service, when the caller names one).
    async fn checkout(&self, target: &Target, expected: Option<&str>) -> Option<Connection> {
        loop {
            let idle = self
                .shared
                .lock()
                .of(target)
                .get_mut(target.authority.as_str())
                .and_then(VecDeque::pop_back)?;
            let mut connection = idle.connection;
            if connection.sender.is_closed()
                || idle.since.elapsed() > self.shared.settings.idle_timeout
                || !answers_for(connection.service.as_deref(), expected)
            {
                continue;
            }
            // Just back from a response, the connection's task may not have said it is ready
            // yet; it will in a moment, or the connection is closed.
            if connection.sender.is_ready() || connection.sender.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    async fn connect(
        &self,
        target: &Target,
        expected: Option<&str>,
    ) -> Result<Connection, TransportError> {
        let settings = &self.shared.settings;
        let identity = settings.identity.as_ref().filter(|_| target.secure);
        let (stream, service) = dial(
            &target.authority,
            identity.map(|identity| (identity, &[][..])),
            expected,
            settings.connect_timeout,
        )
        .await?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|error| TransportError::Connect {
                    authority: target.authority.to_string(),
                    source: Box::new(error),
                })?;
        drive(connection, target.authority.clone());
        Ok(Connection {
            sender,
            service: service.map(String::into_boxed_str),
        })
    }

    /// The response body, which gives the connection back once it has been read to its end.
    fn lease(&self, body: Incoming, target: Target, connection: Connection) -> Body {
        if body.is_end_stream() {
            self.shared.release(target, connection);
            return Body::new(body);
        }
        Body::new(Leased {
            body,
            lease: Some(Lease {
                shared: Arc::clone(&self.shared),
                target,
                connection,
            }),
        })
    }
}

/// A connection to an instance: plain TCP, or mutual TLS.
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Connects to `authority` with `TCP_NODELAY`, then, given an identity, shakes hands over mutual
/// TLS offering `alpn` (HTTP/1.1 when empty) and checks the peer is the `expected` service.
/// Returns the stream and, over TLS, the service that answered. Every failure is a
/// [`TransportError::Connect`]: nothing was sent.
pub(crate) async fn dial(
    authority: &Authority,
    tls: Option<(&Identity, &[&[u8]])>,
    expected: Option<&str>,
    connect_timeout: Duration,
) -> Result<(Stream, Option<String>), TransportError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| TransportError::Connect {
        authority: authority.to_string(),
        source,
    };
    // An IPv6 literal keeps its brackets in the authority.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|elapsed| failed(Box::new(elapsed)))?
        .map_err(|error| failed(Box::new(error)))?;
    // Small requests and answers go out at once; Nagle's algorithm would hold them for the
    // peer's delayed acknowledgement.
    stream
        .set_nodelay(true)
        .map_err(|error| failed(Box::new(error)))?;
    let Some((identity, alpn)) = tls else {
        return Ok((Either::Left(stream), None));
    };
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned()).map_err(|e| failed(Box::new(e)))?,
    };
    let stream = tokio::time::timeout(
        connect_timeout,
        tokio_rustls::TlsConnector::from(identity.client_config_for(authority.as_str(), alpn))
            .connect(name, stream),
    )
    .await
    .map_err(|elapsed| failed(Box::new(elapsed)))?
    .map_err(|error| failed(Box::new(error)))?;
    // The verifier accepted a certificate from the CA that names a service: is it the one this
    // request is for? (An instance's port taken over by another service, say.)
    let service = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(crate::mtls::service_of_certificate);
    if !answers_for(service.as_deref(), expected) {
        return Err(failed(
            format!(
                "the instance is {}, not {}",
                service
                    .as_deref()
                    .map_or_else(|| "unnamed".to_owned(), crate::mtls::spiffe_id),
                crate::mtls::spiffe_id(expected.unwrap_or_default())
            )
            .into(),
        ));
    }
    Ok((Either::Right(stream), service))
}

/// Runs one connection in its own task until it closes.
fn drive<T>(connection: http1::Connection<T, Body>, peer: Authority)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%peer, error = %crate::error::ErrorChain(&error), "upstream connection ended");
        }
    });
}

/// Whether a connection to `service` may carry a request for `expected`.
fn answers_for(service: Option<&str>, expected: Option<&str>) -> bool {
    match (service, expected) {
        (Some(service), Some(expected)) => service == expected,
        // A plain connection proves nothing; an unnamed request takes any verified service.
        _ => true,
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stacks> {
        // The map holds no invariant a panicking holder could break halfway.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, target: Target, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut stacks = self.lock();
        let idle = stacks.of(&target);
        let authority = target.authority.as_str();
        let stack = match idle.get_mut(authority) {
            Some(stack) => stack,
            None => idle.entry(authority.into()).or_default(),
        };
        // The oldest are at the front: close those that waited too long, and make room.
        while stack.front().is_some_and(|oldest| {
            now.duration_since(oldest.since) > self.settings.idle_timeout
                || stack.len() >= self.settings.max_idle
        }) {
            stack.pop_front();
        }
        stack.push_back(Idle {
            connection,
            since: now,
        });
    }
}

/// Checks the URI is `http://host[:port]/…` (or `https://` when `tls`), makes it origin-form
/// as HTTP/1.1 sends it, and sets `Host` when the caller did not.
fn target(parts: &mut http::request::Parts, tls: bool) -> Result<Target, TransportError> {
    let secure = parts.uri.scheme() == Some(&Scheme::HTTPS);
    let Some(authority) = parts
        .uri
        .authority()
        .filter(|_| parts.uri.scheme() == Some(&Scheme::HTTP) || (secure && tls))
        .cloned()
    else {
        let reason = if secure {
            format!(
                "{}: https:// needs an mTLS identity (the [mtls] settings)",
                parts.uri
            )
        } else {
            format!("not an http:// URL with a host: {}", parts.uri)
        };
        return Err(TransportError::Connect {
            authority: String::new(),
            source: reason.into(),
        });
    };
    let uri_parts = std::mem::take(&mut parts.uri).into_parts();
    parts.uri = Uri::from(
        uri_parts
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    if !parts.headers.contains_key(header::HOST) {
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|error| TransportError::Connect {
                authority: authority.to_string(),
                source: Box::new(error),
            })?;
        parts.headers.insert(header::HOST, host);
    }
    Ok(Target { authority, secure })
}

/// A connection lent to one response.
struct Lease {
    shared: Arc<Shared>,
    target: Target,
    connection: Connection,
}

/// A response body that returns its connection to the pool when it ends.
struct Leased {
    body: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    fn give_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.shared.release(lease.target, lease.connection);
        }
    }
}

impl hyper::body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.give_back(),
            Some(Ok(_)) if this.body.is_end_stream() => this.give_back(),
            // A broken body breaks its connection.
            Some(Err(_)) => this.lease = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // Read to its end but never polled past the last frame (servers stop at the length).
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn pool(idle_timeout: Duration) -> Pool {
        Pool::new(PoolSettings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout,
            max_idle: 4,
            identity: None,
        })
    }

    /// Answers `/peer` with the caller's port (one port, one connection), `/host` with the
    /// `Host` it got, and `/big` with a megabyte.
    async fn upstream() -> anyhow::Result<SocketAddr> {
        let app =
            Router::new()
                .route(
                    "/peer",
                    get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                        peer.port().to_string()
                    }),
                )
                .route(
                    "/host",
                    get(|headers: http::HeaderMap| async move {
                        format!("{:?}", headers.get(header::HOST))
                    }),
                )
                .route("/big", get(|| async { vec![b'x'; 1 << 20] }));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Ok(address)
    }

    async fn get_text(pool: &Pool, url: &str) -> anyhow::Result<String> {
        let response = pool.send(Request::get(url).body(Body::empty())?).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(body.to_vec())?)
    }

    #[tokio::test]
    async fn one_connection_serves_request_after_request() -> anyhow::Result<()> {
        let address = upstream().await?;
        let pool = pool(Duration::from_secs(30));
        let url = format!("http://{address}/peer");
        let first = get_text(&pool, &url).await?;
        for _ in 0..20 {
            assert_eq!(get_text(&pool, &url).await?, first);
        }
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_them() -> anyhow::Result<()> {
        let address = upstream().await?;
        let pool = pool(Duration::from_secs(30));
        let url = format!("http://{address}/peer");
        let mut ports = std::collections::HashSet::new();
        for _ in 0..5 {
            let (a, b, c) = tokio::try_join!(
                get_text(&pool, &url),
                get_text(&pool, &url),
                get_text(&pool, &url)
            )?;
            assert!(
                a != b && b != c && a != c,
                "one connection served two requests at once"
            );
            ports.extend([a, b, c]);
        }
        // Three at a time need three connections; kept, they serve the next three.
        assert!(ports.len() <= 6, "connections were not reused: {ports:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_takes_its_connection_along() -> anyhow::Result<()> {
        let address = upstream().await?;
        let pool = pool(Duration::from_secs(30));
        let before = get_text(&pool, &format!("http://{address}/peer")).await?;
        let mut big = pool
            .send(Request::get(format!("http://{address}/big")).body(Body::empty())?)
            .await?
            .into_body();
        let frame = big.frame().await.transpose()?;
        assert!(frame.is_some_and(|f| f.data_ref().is_some_and(|d| d.len() < 1 << 20)));
        drop(big);
        let after = get_text(&pool, &format!("http://{address}/peer")).await?;
        assert_ne!(before, after, "the half-read connection was reused");
        // And a body read to its end gives it back.
        assert_eq!(
            get_text(&pool, &format!("http://{address}/big"))
                .await?
                .len(),
            1 << 20
        );
        assert_eq!(
            get_text(&pool, &format!("http://{address}/peer")).await?,
            after
        );
        Ok(())
    }

    #[tokio::test]
    async fn idle_connections_expire() -> anyhow::Result<()> {
        let address = upstream().await?;
        let pool = pool(Duration::ZERO);
        let url = format!("http://{address}/peer");
        let first = get_text(&pool, &url).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_ne!(get_text(&pool, &url).await?, first);
        Ok(())
    }

    #[tokio::test]
    async fn requests_go_out_in_origin_form_with_a_host() -> anyhow::Result<()> {
        let address = upstream().await?;
        let pool = pool(Duration::from_secs(30));
        let host = get_text(&pool, &format!("http://{address}/host?x=1")).await?;
        assert_eq!(host, format!("Some({:?})", address.to_string()));
        let response = pool
            .send(
                Request::get(format!("http://{address}/host"))
                    .header(header::HOST, "shop.example")
                    .body(Body::empty())?,
            )
            .await?;
        let body = response.into_body().collect().await?.to_bytes();
        assert_eq!(body, "Some(\"shop.example\")");
        Ok(())
    }

    /// A peer that answers one request per connection and then closes it without saying so
    /// (no `Connection: close`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_the_peer_closed_is_replaced() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    if socket.read(&mut buffer).await.is_ok() {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        let pool = pool(Duration::from_secs(30));
        let url = format!("http://{address}/");
        for _ in 0..5 {
            assert_eq!(get_text(&pool, &url).await?, "ok");
            // The close reaches the idle connection before the next request. (A close that
            // crosses a request on the wire fails that request, in any HTTP/1.1 client: the
            // request may have been read.)
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
        Ok(())
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() -> anyhow::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        drop(listener);
        let error = pool(Duration::from_secs(30))
            .send(Request::get(format!("http://{address}/")).body(Body::empty())?)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a closed port answered"))?;
        assert!(error.is_connect(), "{error:?}");
        assert!(error.to_string().contains(&address.to_string()), "{error}");
        Ok(())
    }

    /// An mTLS listener of `service` that shakes hands, says one byte (so the client reads the
    /// session tickets sent after the handshake) and holds the connection open.
    async fn mtls_peer(ca: &crate::tls::DevCa, service: &str) -> anyhow::Result<Authority> {
        let (config, _) = ca.issue_workload(service, Duration::from_secs(3600))?;
        let identity = Identity::load(&config)?.ok_or_else(|| anyhow::anyhow!("mTLS is off"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let authority: Authority = listener.local_addr()?.to_string().parse()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await
                        && tls.write_all(b"!").await.is_ok()
                    {
                        let _ = tls.read(&mut [0; 1]).await;
                    }
                });
            }
        });
        Ok(authority)
    }

    /// Services on one machine share its address; a new connection to each still resumes a
    /// session with that service, not a full handshake, however the dials interleave.
    #[tokio::test]
    async fn new_mtls_connections_resume_a_session_with_their_own_peer() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let ca = crate::tls::DevCa::open(dir.path())?;
        let (config, _) = ca.issue_workload("orders", Duration::from_secs(3600))?;
        let client = Identity::load(&config)?.ok_or_else(|| anyhow::anyhow!("mTLS is off"))?;
        let peers = [
            (mtls_peer(&ca, "catalog").await?, "catalog"),
            (mtls_peer(&ca, "payments").await?, "payments"),
        ];
        let mut kinds = Vec::new();
        for round in 0..3 {
            for (authority, service) in &peers {
                let (stream, answered) = dial(
                    authority,
                    Some((&client, &[])),
                    Some(service),
                    Duration::from_secs(2),
                )
                .await?;
                assert_eq!(answered.as_deref(), Some(*service), "round {round}");
                let Either::Right(mut tls) = stream else {
                    anyhow::bail!("a plain connection to an mTLS peer");
                };
                // The tickets come after the handshake, with the peer's first byte.
                assert_eq!(tls.read_u8().await?, b'!');
                kinds.push(tls.get_ref().1.handshake_kind());
            }
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(
            kinds,
            [Full, Full, Resumed, Resumed, Resumed, Resumed].map(Some),
            "catalog, payments, catalog, payments, ..."
        );
        Ok(())
    }

    #[tokio::test]
    async fn only_http_urls_are_sent() -> anyhow::Result<()> {
        let pool = pool(Duration::from_secs(30));
        for url in ["https://127.0.0.1:1/", "/relative"] {
            let error = pool
                .send(Request::get(url).body(Body::empty())?)
                .await
                .err()
                .ok_or_else(|| anyhow::anyhow!("{url} was sent"))?;
            let chain = crate::error::ErrorChain(&error).to_string();
            assert!(chain.contains(url), "{url}: {chain}");
        }
        Ok(())
    }
}
