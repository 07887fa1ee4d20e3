//! HTTPS on a second listener of a service: rustls (ring) offering HTTP/2 and HTTP/1.1 by ALPN,
//! with a certificate and key read from PEM files. Handshakes run concurrently, each with a
//! deadline, so a slow or silent client never holds up the next connection.
//!
//! [`DevCa`] is the development certificate authority `bazaar up` keeps in its data
//! directory: made once, trusted by whoever adds its `ca.pem` to their client, and used to
//! issue a fresh `localhost` server certificate at every start.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{Datelike, NaiveDate, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::mtls::{CallerService, MtlsConfig};

/// A TLS section (such as `[gateway.tls]`): serve HTTPS too, on `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Port of the HTTPS listener (on `http.host`); 0 picks a free one.
    pub port: u16,
    /// PEM file with the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
    /// Time a client gets to complete the handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            port: 0,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why TLS could not be set up; each names the configuration key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key} = {path}: {reason}")]
    File {
        /// The configuration key.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key (for example, they do not match).
    #[error("the certificate {cert} and key {key} cannot be used together: {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The development CA could not be made, read or used.
    #[error("development CA in {dir}: {reason}")]
    DevCa {
        /// Its folder.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The server side of TLS for `config`, read from the section `section` (for error messages):
/// its certificate chain and key, HTTP/2 preferred.
pub fn server_config(
    config: &TlsConfig,
    section: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let file_error = |field: &str, path: &Path, reason: String| TlsError::File {
        key: format!("{section}.{field}"),
        path: path.to_path_buf(),
        reason,
    };
    if config.cert.as_os_str().is_empty() {
        return Err(file_error("cert", &config.cert, "is required".into()));
    }
    if config.key.as_os_str().is_empty() {
        return Err(file_error("key", &config.key, "is required".into()));
    }
    let chain = CertificateDer::pem_file_iter(&config.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error("cert", &config.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "cert",
            &config.cert,
            "holds no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| file_error("key", &config.key, e.to_string()))?;
    let rejected = |source| TlsError::Rejected {
        cert: config.cert.clone(),
        key: config.key.clone(),
        source,
    };
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(rejected)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(rejected)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// Marks a request that arrived over TLS (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure;

/// Who is at the other end of a TLS connection: the address, and the service its client
/// certificate names when the listener asks for one (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The calling service, on an mTLS listener.
    pub service: Option<CallerService>,
}

/// A listener whose connections have completed a TLS handshake.
#[derive(Debug)]
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local_addr: SocketAddr,
    _stop: DropGuard,
}

impl TlsListener {
    /// Accepts on `listener`, shaking hands per `config` concurrently in the background.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, handshaken) = mpsc::channel(64);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            TlsAcceptor::from(config),
            handshake_timeout,
            sender,
            stop.clone(),
        ));
        Ok(Self {
            handshaken,
            local_addr,
            _stop: stop.drop_guard(),
        })
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    sender: mpsc::Sender<(TlsStream<TcpStream>, TlsPeer)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accepting a TLS connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let (_, connection) = stream.get_ref();
                    // A client certificate was asked for, and verified against the CA: it
                    // must also name a service.
                    let service = match connection.peer_certificates().and_then(<[_]>::first) {
                        None => None,
                        Some(cert) => match crate::mtls::service_of_certificate(cert) {
                            Some(service) => Some(CallerService(service.into())),
                            None => {
                                tracing::warn!(%peer, "refused a client certificate that names no service");
                                return;
                            }
                        },
                    };
                    let peer = TlsPeer {
                        addr: peer,
                        service,
                    };
                    let _ = sender.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsPeer {
            addr: self.local_addr,
            service: None,
        })
    }
}

/// Makes the service of each connection of a [`TlsListener`]: `S`, with every request
/// carrying the client's address (axum's `ConnectInfo<SocketAddr>`) and, on an mTLS listener,
/// the calling service ([`CallerService`]).
#[derive(Debug, Clone)]
pub struct WithPeer<S>(pub S);

impl<'a, S: Clone> tower::Service<axum::serve::IncomingStream<'a, TlsListener>> for WithPeer<S> {
    type Response = PeerService<S>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<PeerService<S>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'a, TlsListener>) -> Self::Future {
        std::future::ready(Ok(PeerService {
            app: self.0.clone(),
            peer: incoming.remote_addr().clone(),
        }))
    }
}

/// The service of one connection made by [`WithPeer`].
#[derive(Debug, Clone)]
pub struct PeerService<S> {
    app: S,
    peer: TlsPeer,
}

impl<S> tower::Service<http::Request<axum::body::Body>> for PeerService<S>
where
    S: tower::Service<http::Request<axum::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<axum::body::Body>) -> Self::Future {
        let extensions = request.extensions_mut();
        extensions.insert(axum::extract::ConnectInfo(self.peer.addr));
        if let Some(service) = &self.peer.service {
            extensions.insert(service.clone());
        }
        self.app.call(request)
    }
}

/// The development certificate authority in a folder: `ca.pem` (what clients trust) and
/// `ca.key`, and the server certificate it issued last, `server.pem` and `server.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCa {
    /// The folder.
    pub dir: PathBuf,
}

/// Subject of the development CA; fixed, so a CA read back from its key signs exactly as the
/// one that was made.
const DEV_CA_NAME: &str = "Bazaar development CA";

impl DevCa {
    /// The CA in `dir`, made there on first use.
    pub fn open(dir: &Path) -> Result<Self, TlsError> {
        let ca = Self {
            dir: dir.to_path_buf(),
        };
        if !ca.ca_key().is_file() || !ca.ca_cert().is_file() {
            ca.create()?;
        }
        Ok(ca)
    }

    /// The certificate clients trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// Issues a server certificate for `localhost`, `127.0.0.1` and `::1` (plus `extra_names`),
    /// valid for 397 days from yesterday; returns its settings.
    pub fn issue_server(&self, port: u16, extra_names: &[String]) -> Result<TlsConfig, TlsError> {
        let fail = |reason: String| TlsError::DevCa {
            dir: self.dir.clone(),
            reason,
        };
        let issuer = self.issuer()?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(extra_names.iter().cloned());
        let mut params =
            rcgen::CertificateParams::new(names).map_err(|e| fail(format!("names: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let today = Utc::now().date_naive();
        valid_between(
            &mut params,
            today - chrono::Days::new(1),
            today + chrono::Days::new(397),
        );
        let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| fail(format!("signing the server certificate: {e}")))?;
        let config = TlsConfig {
            port,
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            ..TlsConfig::default()
        };
        write_private(&config.key, &pem("PRIVATE KEY", key.serialized_der()))
            .map_err(|e| fail(format!("writing server.key: {e}")))?;
        std::fs::write(&config.cert, pem("CERTIFICATE", cert.der()))
            .map_err(|e| fail(format!("writing server.pem: {e}")))?;
        Ok(config)
    }

    /// Issues the mTLS certificate of `service` (`spiffe://bazaar/<service>`, usable as both
    /// server and client, also valid for `localhost` so tools like curl can check it), valid
    /// from five minutes ago for `lifetime`, into `<service>.pem` and `<service>.key`. Returns
    /// its settings and its expiry.
    pub fn issue_workload(
        &self,
        service: &str,
        lifetime: Duration,
    ) -> Result<(MtlsConfig, SystemTime), TlsError> {
        let fail = |reason: String| TlsError::DevCa {
            dir: self.dir.clone(),
            reason,
        };
        if crate::mtls::service_of(&crate::mtls::spiffe_id(service)).is_none() {
            return Err(fail(format!("{service:?} is not a service name")));
        }
        let issuer = self.issuer()?;
        let mut params = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .map_err(|e| fail(format!("names: {e}")))?;
        let uri = rcgen::string::Ia5String::try_from(crate::mtls::spiffe_id(service))
            .map_err(|e| fail(format!("SPIFFE ID: {e}")))?;
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, service);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let not_after = now + lifetime;
        params.not_before = offset_date_time(now - Duration::from_secs(300))?;
        params.not_after = offset_date_time(not_after)?;
        let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| fail(format!("signing the certificate of {service}: {e}")))?;
        let config = MtlsConfig {
            ca: self.ca_cert(),
            cert: self.dir.join(format!("{service}.pem")),
            key: self.dir.join(format!("{service}.key")),
            ..MtlsConfig::default()
        };
        // The key first, each file replaced whole: a service that reads them between the two
        // renames finds a pair that does not match, and keeps its current one until the next look.
        replace_private(&config.key, &pem("PRIVATE KEY", key.serialized_der()))
            .and_then(|()| replace(&config.cert, &pem("CERTIFICATE", cert.der())))
            .map_err(|e| fail(format!("writing the certificate of {service}: {e}")))?;
        Ok((config, not_after))
    }

    fn issuer(&self) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, TlsError> {
        let fail = |reason: String| TlsError::DevCa {
            dir: self.dir.clone(),
            reason,
        };
        let ca_key = PrivateKeyDer::from_pem_file(self.ca_key())
            .map_err(|e| fail(format!("reading ca.key: {e}")))?;
        let ca_key = rcgen::KeyPair::try_from(&ca_key).map_err(|e| fail(format!("ca.key: {e}")))?;
        Ok(rcgen::Issuer::new(ca_params(), ca_key))
    }

    fn create(&self) -> Result<(), TlsError> {
        let fail = |reason: String| TlsError::DevCa {
            dir: self.dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| fail(e.to_string()))?;
        let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| fail(format!("signing the CA: {e}")))?;
        write_private(&self.ca_key(), &pem("PRIVATE KEY", key.serialized_der()))
            .map_err(|e| fail(format!("writing ca.key: {e}")))?;
        std::fs::write(self.ca_cert(), pem("CERTIFICATE", cert.der()))
            .map_err(|e| fail(format!("writing ca.pem: {e}")))?;
        Ok(())
    }
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEV_CA_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Bazaar");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    // Not valid for ever: ten years from the day the code was written down is plenty for a
    // development CA, and a fixed date keeps the subject and validity reproducible.
    valid_between(
        &mut params,
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
        NaiveDate::from_ymd_opt(2036, 1, 1).unwrap_or_default(),
    );
    params
}

/// Makes `params` valid from the start of `from` to the start of `to` (UTC).
#[allow(clippy::cast_possible_truncation)] // months and days fit in a u8
fn valid_between(params: &mut rcgen::CertificateParams, from: NaiveDate, to: NaiveDate) {
    // `NaiveDate` always holds a valid calendar date, which is all `date_time_ymd` needs.
    let start = |d: NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = start(from);
    params.not_after = start(to);
}

/// `der` as a PEM block (RFC 7468): base64 in lines of 64 between the labels.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `time` as rcgen takes it, to the second.
fn offset_date_time(time: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| TlsError::DevCa {
        dir: PathBuf::new(),
        reason: format!("certificate validity: {e}"),
    })
}

/// Replaces `path` whole: written beside it, then renamed over it.
fn replace(path: &Path, contents: &str) -> io::Result<()> {
    let partial = partial(path);
    std::fs::write(&partial, contents)?;
    std::fs::rename(&partial, path)
}

/// [`replace`] for a file only its owner can read.
fn replace_private(path: &Path, contents: &str) -> io::Result<()> {
    let partial = partial(path);
    write_private(&partial, contents)?;
    std::fs::rename(&partial, path)
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_ca_is_made_once_and_issues_certificates_rustls_accepts() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = DevCa::open(dir.path()).expect("made");
        let first = std::fs::read_to_string(ca.ca_cert()).expect("ca.pem");
        let again = DevCa::open(dir.path()).expect("opened");
        assert_eq!(
            std::fs::read_to_string(again.ca_cert()).expect("ca.pem"),
            first
        );

        let config = again.issue_server(0, &[]).expect("issued");
        server_config(&config, "gateway.tls").expect("usable");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&config.key).expect("key").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_files_are_named_with_their_key() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = TlsConfig {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
            ..TlsConfig::default()
        };
        let error = server_config(&missing, "gateway.tls")
            .expect_err("missing")
            .to_string();
        assert!(error.starts_with("gateway.tls.cert = "), "{error}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").expect("written");
        let error = server_config(
            &TlsConfig {
                cert: empty,
                ..missing.clone()
            },
            "gateway.tls",
        )
        .expect_err("empty")
        .to_string();
        assert!(error.contains("no CERTIFICATE"), "{error}");

        let unset = server_config(&TlsConfig::default(), "gateway.tls").expect_err("unset");
        assert!(unset.to_string().contains("gateway.tls.cert"), "{unset}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let one = tempfile::tempdir().expect("dir");
        let two = tempfile::tempdir().expect("dir");
        let first = DevCa::open(one.path())
            .and_then(|ca| ca.issue_server(0, &[]))
            .expect("first");
        let second = DevCa::open(two.path())
            .and_then(|ca| ca.issue_server(0, &[]))
            .expect("second");
        let mixed = TlsConfig {
            key: second.key,
            ..first
        };
        assert!(matches!(
            server_config(&mixed, "gateway.tls"),
            Err(TlsError::Rejected { .. })
        ));
    }
}
