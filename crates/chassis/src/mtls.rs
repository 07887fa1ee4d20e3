//! Service identity: mutual TLS between services, each known by a SPIFFE ID.
//!
//! A service's certificate names it with the URI SAN `spiffe://bazaar/<service>`, and is signed
//! by a CA every service trusts (the development CA `bazaar up` makes, or a production one,
//! configured in `[mtls]`). With mTLS on:
//! - a service's listener completes a handshake only with a client that presents a certificate
//!   from that CA, and every request carries the caller's service name ([`CallerService`]),
//!   which [`crate::authz`] checks route by route;
//! - the chassis client presents the service's own certificate on `https://` connections and
//!   accepts a server only if its certificate is from the CA and names a service, the one it
//!   meant to call when it knows which (see [`crate::client::Peer`]).
//!
//! Certificates are short-lived: whoever issues them (`bazaar up`, cert-manager) writes new
//! files before the old ones expire, and the [`Identity`] picks them up on its next handshake
//! after `mtls.reload_every`, with no restart. Connections already open keep the certificate
//! they were made with, and so does a new connection that resumes a TLS session with the same
//! peer ([`Identity::client_config_for`]): it rests on the full handshake that made the session,
//! no more than a day before (rustls's lifetime for the sessions a server keeps).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::tls::TlsError;

/// The trust domain of every Bazaar identity.
pub const TRUST_DOMAIN: &str = "bazaar";

/// The identity of whoever operates the system from the command line (`bazaar deploy`,
/// `bazaar events replay`, `bazaar top`…): a client certificate like a service's, named
/// `spiffe://bazaar/operator`.
pub const OPERATOR: &str = "operator";

/// The SPIFFE ID of `service`.
pub fn spiffe_id(service: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{service}")
}

/// The service a SPIFFE ID of this trust domain names (`spiffe://bazaar/orders` → `orders`).
pub fn service_of(spiffe_id: &str) -> Option<&str> {
    let service = spiffe_id
        .strip_prefix("spiffe://")?
        .strip_prefix(TRUST_DOMAIN)?
        .strip_prefix('/')?;
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    valid.then_some(service)
}

/// The service the certificate `der` names in a URI SAN, if it names one in this trust domain.
pub fn service_of_certificate(der: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    cert.valid_uri_names()
        .find_map(service_of)
        .map(str::to_owned)
}

/// The `[mtls]` section: the CA to trust and this service's certificate. mTLS is on when `ca`
/// is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MtlsConfig {
    /// PEM file of the CA that signs every service's certificate.
    pub ca: PathBuf,
    /// PEM file of this service's certificate (then any intermediates).
    pub cert: PathBuf,
    /// PEM file of its private key.
    pub key: PathBuf,
    /// How often the certificate files are looked at for a renewed certificate.
    #[serde(with = "humantime_serde")]
    pub reload_every: Duration,
}

impl Default for MtlsConfig {
    fn default() -> Self {
        Self {
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            reload_every: Duration::from_secs(10),
        }
    }
}

impl MtlsConfig {
    /// Whether mTLS is configured.
    pub fn enabled(&self) -> bool {
        !self.ca.as_os_str().is_empty()
    }
}

/// A service's identity: its certificate and key (renewed from their files), the CA it trusts,
/// and the TLS settings made from them. Cheap to clone; clones share the certificate.
#[derive(Clone)]
pub struct Identity {
    shared: Arc<Shared>,
}

struct Shared {
    service: String,
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    /// Client configurations by peer ([`Identity::client_config_for`]).
    by_peer: Mutex<foldhash::HashMap<Box<str>, Arc<rustls::ClientConfig>>>,
}

/// Peers whose client configurations (and TLS sessions) are kept; past this many the map
/// starts over, so instances that come and go on new ports do not grow it for ever.
const PEERS_KEPT: usize = 256;

/// TLS sessions kept per peer, to resume: a server hands out two tickets per connection, and
/// each is used once.
const SESSIONS_PER_PEER: usize = 32;

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("service", &self.shared.service)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity `config` describes, or `None` when mTLS is off. Errors name the key and the
    /// file.
    pub fn load(config: &MtlsConfig) -> Result<Option<Self>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(read_roots(&config.ca)?);
        let keys = Arc::new(Keys::read(config, &provider, &roots)?);
        let service = keys.service.clone();
        let rejected = |source: rustls::Error| TlsError::Rejected {
            cert: config.cert.clone(),
            key: config.key.clone(),
            source,
        };

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| file_error("mtls.ca", &config.ca, e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(Arc::clone(&keys) as Arc<dyn rustls::server::ResolvesServerCert>);
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let server_verifier = Arc::new(SpiffeServerVerifier {
            roots,
            algorithms: provider.signature_verification_algorithms,
        });
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_cert_resolver(
                Arc::clone(&keys) as Arc<dyn rustls::client::ResolvesClientCert>
            );

        Ok(Some(Self {
            shared: Arc::new(Shared {
                service,
                client: Arc::new(client),
                server: Arc::new(server),
                by_peer: Mutex::default(),
            }),
        }))
    }

    /// [`Identity::load`], its errors as configuration errors naming the key and the file.
    pub fn configured(config: &MtlsConfig) -> Result<Option<Self>, ConfigError> {
        Self::load(config).map_err(|error| match &error {
            TlsError::File { key, path, reason } => {
                ConfigError::invalid(key, path.display(), reason.clone())
            }
            other => ConfigError::invalid("mtls.cert", config.cert.display(), other.to_string()),
        })
    }

    /// The service this identity names.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The client side: presents this identity, and trusts servers with a certificate from the
    /// CA that names a service. HTTP/1.1 is offered, or what `alpn` lists.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        if alpn.is_empty() {
            return Arc::clone(&self.shared.client);
        }
        let mut config = (*self.shared.client).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// [`Identity::client_config`] for connections to `peer` (`host:port`), with a cache of
    /// TLS sessions of its own, so that a new connection to the peer resumes a session (no
    /// certificates sent, signed or checked again) instead of a full handshake.
    ///
    /// rustls keys its session cache by server name alone, and services on one machine share
    /// `127.0.0.1`: with one cache, a new connection offered the ticket of whichever service
    /// was dialled last, and every other service refused it (a full handshake: two signatures
    /// and four verifications between the two ends).
    pub fn client_config_for(&self, peer: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut key = String::from(peer);
        for protocol in alpn {
            key.push(' ');
            key.push_str(&String::from_utf8_lossy(protocol));
        }
        let mut by_peer = self
            .shared
            .by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = by_peer.get(key.as_str()) {
            return Arc::clone(config);
        }
        if by_peer.len() >= PEERS_KEPT {
            by_peer.clear();
        }
        let mut config = (*self.client_config(alpn)).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_PER_PEER);
        let config = Arc::new(config);
        by_peer.insert(key.into(), Arc::clone(&config));
        config
    }

    /// The server side: presents this identity and completes a handshake only with clients
    /// that present a certificate from the CA. HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.shared.server)
    }
}

/// The calling service, as its client certificate names it: a request extension on every
/// request that came over an mTLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerService(pub Arc<str>);

impl CallerService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// This service's certificate and key, read again from their files when they change.
struct Keys {
    config: MtlsConfig,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    service: String,
    state: Mutex<KeysState>,
}

struct KeysState {
    key: Arc<CertifiedKey>,
    /// The certificate file as last read: a renewal is a file that reads differently. (Not its
    /// modification time, which two writes within one clock tick share.)
    seen: Vec<u8>,
    checked: Instant,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Keys {
    fn read(
        config: &MtlsConfig,
        provider: &Arc<CryptoProvider>,
        roots: &Arc<RootCertStore>,
    ) -> Result<Self, TlsError> {
        let (key, service) = read_certified_key(config, provider, roots)?;
        Ok(Self {
            config: config.clone(),
            provider: Arc::clone(provider),
            roots: Arc::clone(roots),
            service,
            state: Mutex::new(KeysState {
                key,
                seen: std::fs::read(&config.cert).unwrap_or_default(),
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to present, read again first if its file changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= self.config.reload_every {
            state.checked = Instant::now();
            if let Ok(now) = std::fs::read(&self.config.cert)
                && now != state.seen
            {
                state.seen = now;
                self.renew(&mut state);
            }
        }
        Arc::clone(&state.key)
    }

    fn renew(&self, state: &mut KeysState) {
        match read_certified_key(&self.config, &self.provider, &self.roots) {
            Ok((key, service)) if service == self.service => {
                tracing::info!(service, "renewed certificate in use");
                state.key = key;
            }
            Ok((_, other)) => tracing::error!(
                cert = %self.config.cert.display(),
                expected = %self.service,
                found = %other,
                "the renewed certificate names another service; keeping the current one"
            ),
            // Half-written files are the usual cause; the next check reads them again.
            Err(error) => {
                state.seen.clear();
                tracing::warn!(%error, "renewed certificate unusable; keeping the current one");
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for Keys {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for Keys {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts a server whose certificate chains to the CA and names a service of the trust
/// domain. Host names play no part: instances are found by address, and who answers is
/// checked by name after the handshake (the pool compares it with the service it meant to
/// call).
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if service_of_certificate(end_entity).is_none() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn file_error(key: &str, path: &Path, reason: String) -> TlsError {
    TlsError::File {
        key: key.to_owned(),
        path: path.to_path_buf(),
        reason,
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error("mtls.ca", path, e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(file_error(
            "mtls.ca",
            path,
            "holds no usable CA certificate".into(),
        ));
    }
    Ok(roots)
}

/// Reads the certificate and key, checks they belong together, that the certificate is from
/// the CA and names a service; returns them with the service.
fn read_certified_key(
    config: &MtlsConfig,
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
) -> Result<(Arc<CertifiedKey>, String), TlsError> {
    if config.cert.as_os_str().is_empty() {
        return Err(file_error("mtls.cert", &config.cert, "is required".into()));
    }
    if config.key.as_os_str().is_empty() {
        return Err(file_error("mtls.key", &config.key, "is required".into()));
    }
    let chain = CertificateDer::pem_file_iter(&config.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error("mtls.cert", &config.cert, e.to_string()))?;
    let Some(end_entity) = chain.first() else {
        return Err(file_error(
            "mtls.cert",
            &config.cert,
            "holds no CERTIFICATE block".into(),
        ));
    };
    let service = service_of_certificate(end_entity).ok_or_else(|| {
        file_error(
            "mtls.cert",
            &config.cert,
            format!("names no service: it needs a URI SAN spiffe://{TRUST_DOMAIN}/<service>"),
        )
    })?;
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)
        .map_err(|e| file_error("mtls.cert", &config.cert, e.to_string()))?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| {
        file_error(
            "mtls.cert",
            &config.cert,
            format!(
                "is not a valid certificate from {}: {e}",
                config.ca.display()
            ),
        )
    })?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| file_error("mtls.key", &config.key, e.to_string()))?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Rejected {
            cert: config.cert.clone(),
            key: config.key.clone(),
            source,
        })?;
    Ok((Arc::new(certified), service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_name_services_of_the_trust_domain_only() {
        assert_eq!(spiffe_id("orders"), "spiffe://bazaar/orders");
        assert_eq!(service_of("spiffe://bazaar/orders"), Some("orders"));
        assert_eq!(service_of("spiffe://bazaar/operator"), Some("operator"));
        for other in [
            "spiffe://evil/orders",
            "spiffe://bazaarx/orders",
            "spiffe://bazaar/",
            "spiffe://bazaar/orders/admin",
            "spiffe://bazaar/Orders",
            "https://bazaar/orders",
            "",
        ] {
            assert_eq!(service_of(other), None, "{other}");
        }
    }
}
