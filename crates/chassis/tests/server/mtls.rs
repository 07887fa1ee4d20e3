//! Mutual TLS between services: only certificates from the CA get through, each route names
//! the services that may call it, the client checks who answered, and renewed certificates are
//! used without a restart.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chassis::authz::callers;
use chassis::client::{Peer, Transport};
use chassis::config::ChassisConfig;
use chassis::mtls::{CallerService, Identity, MtlsConfig};
use chassis::tls::DevCa;
use chassis::{Server, ServiceInfo};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;

fn identity(ca: &DevCa, service: &str) -> anyhow::Result<(MtlsConfig, Identity)> {
    let (config, _) = ca.issue_workload(service, Duration::from_secs(3600))?;
    let identity = Identity::load(&config)?.ok_or_else(|| anyhow::anyhow!("mTLS is off"))?;
    Ok((config, identity))
}

/// A payments service whose `POST /charges` only orders may call, and whose `/whoami` says who
/// called; its URL and a stop token.
async fn payments(mtls: MtlsConfig) -> anyhow::Result<(String, CancellationToken)> {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config.mtls = mtls;
    let server = Server::bind(ServiceInfo::new("payments", "1", &config), &config).await?;
    let url = server.url().to_owned();
    let app = Router::new()
        .route("/charges", post(|| async { "charged" }))
        .route_layer(callers(&["orders"]))
        .route(
            "/whoami",
            get(|caller: Option<Extension<CallerService>>| async move {
                caller.map_or_else(|| "nobody".to_owned(), |c| c.name().to_owned())
            }),
        );
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(app, stop.clone()));
    Ok((url, stop))
}

async fn send(
    transport: &Transport,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, String)> {
    let response = transport.send(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

#[tokio::test]
async fn only_services_of_the_ca_get_in_and_each_route_names_its_callers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::open(dir.path())?;
    let (mtls, _) = identity(&ca, "payments")?;
    let (url, stop) = payments(mtls).await?;
    assert!(url.starts_with("https://"), "{url}");
    let (_, orders) = identity(&ca, "orders")?;
    let (_, cart) = identity(&ca, "cart")?;
    let orders = Transport::with_identity(Some(orders));
    let cart = Transport::with_identity(Some(cart));

    let charge = || Request::post(format!("{url}/charges")).body(Body::empty());
    assert_eq!(
        send(&orders, charge()?).await?,
        (StatusCode::OK, "charged".into())
    );
    let whoami = Request::get(format!("{url}/whoami")).body(Body::empty())?;
    assert_eq!(send(&orders, whoami).await?.1, "orders");

    // Another service of the CA gets in, but not onto a route that does not name it.
    let (status, body) = send(&cart, charge()?).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("urn:bazaar:problem:forbidden-caller"),
        "{body}"
    );
    assert!(body.contains("cart may not call POST /charges"), "{body}");
    let whoami = Request::get(format!("{url}/whoami")).body(Body::empty())?;
    assert_eq!(send(&cart, whoami).await?, (StatusCode::OK, "cart".into()));

    // No certificate: no handshake, so no request at all.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(
            ca.ca_cert(),
        )?)?])
        .build()?;
    let refused = anonymous.get(format!("{url}/whoami")).send().await;
    assert!(refused.is_err(), "answered without a client certificate");

    // A certificate naming orders, from another CA.
    let elsewhere = tempfile::tempdir()?;
    let (_, impostor) = identity(&DevCa::open(elsewhere.path())?, "orders")?;
    let impostor = Transport::with_identity(Some(impostor));
    let error = send(&impostor, charge()?)
        .await
        .expect_err("a certificate from another CA was taken");
    assert!(
        error
            .downcast_ref::<chassis::client::TransportError>()
            .is_some_and(chassis::client::TransportError::is_connect),
        "{error:?}"
    );

    // Without an identity, no https at all.
    assert!(send(&Transport::http(), charge()?).await.is_err());
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn the_client_refuses_an_instance_that_is_not_the_service_it_meant() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::open(dir.path())?;
    let (mtls, _) = identity(&ca, "payments")?;
    let (url, stop) = payments(mtls).await?;
    let (_, orders) = identity(&ca, "orders")?;
    let orders = Transport::with_identity(Some(orders));

    let mut meant = Request::post(format!("{url}/charges")).body(Body::empty())?;
    meant.extensions_mut().insert(Peer("payments".into()));
    assert_eq!(send(&orders, meant).await?.0, StatusCode::OK);

    // The same instance, now taken for catalog (its port reused, the registry behind): the
    // kept connection is not used for it, and a new one finds payments and stops there.
    let mut mistaken = Request::post(format!("{url}/charges")).body(Body::empty())?;
    mistaken.extensions_mut().insert(Peer("catalog".into()));
    let error = send(&orders, mistaken)
        .await
        .expect_err("sent to the wrong service");
    let chain = format!("{error:?}");
    assert!(
        chain.contains("the instance is spiffe://bazaar/payments, not spiffe://bazaar/catalog"),
        "{chain}"
    );
    stop.cancel();
    Ok(())
}

/// The certificate a server presents to a new connection, in DER.
async fn presented(url: &str, client: &Identity) -> anyhow::Result<Vec<u8>> {
    let authority = url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(authority).await?;
    let ip = authority
        .rsplit_once(':')
        .map(|(host, _)| host)
        .unwrap_or(authority)
        .parse::<std::net::IpAddr>()?;
    let tls = tokio_rustls::TlsConnector::from(client.client_config(&[]))
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await?;
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .ok_or_else(|| anyhow::anyhow!("no certificate"))?;
    Ok(certificate.to_vec())
}

fn files_of(config: &MtlsConfig) -> Vec<&Path> {
    vec![&config.cert, &config.key]
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_without_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::open(dir.path())?;
    let (mtls, _) = identity(&ca, "payments")?;
    let (url, stop) = payments(MtlsConfig {
        reload_every: Duration::ZERO,
        ..mtls.clone()
    })
    .await?;
    let (_, orders) = identity(&ca, "orders")?;
    let first = presented(&url, &orders).await?;
    assert_eq!(presented(&url, &orders).await?, first);

    // `up` (or cert-manager) writes the next certificate over the files.
    let (renewed, _) = ca.issue_workload("payments", Duration::from_secs(3600))?;
    assert_eq!(files_of(&renewed), files_of(&mtls));
    let second = presented(&url, &orders).await?;
    assert_ne!(second, first, "the renewed certificate was not picked up");

    // A certificate for another service in its place is not taken.
    let (other, _) = ca.issue_workload("cart", Duration::from_secs(3600))?;
    std::fs::copy(&other.cert, &mtls.cert)?;
    std::fs::copy(&other.key, &mtls.key)?;
    assert_eq!(presented(&url, &orders).await?, second);
    stop.cancel();
    Ok(())
}

#[test]
fn a_certificate_that_names_no_service_or_is_not_from_the_ca_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::open(dir.path()).expect("CA");
    // The HTTPS certificate for browsers names no service.
    let server = ca.issue_server(0, &[]).expect("issued");
    let config = MtlsConfig {
        ca: ca.ca_cert(),
        cert: server.cert,
        key: server.key,
        ..MtlsConfig::default()
    };
    let error = Identity::configured(&config)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("mtls.cert"), "{error}");
    assert!(error.contains("spiffe://bazaar/<service>"), "{error}");

    let elsewhere = tempfile::tempdir().expect("dir");
    let (foreign, _) = DevCa::open(elsewhere.path())
        .and_then(|other| other.issue_workload("orders", Duration::from_secs(60)))
        .expect("issued");
    let error = Identity::configured(&MtlsConfig {
        ca: ca.ca_cert(),
        ..foreign
    })
    .expect_err("refused")
    .to_string();
    assert!(error.contains("is not a valid certificate from"), "{error}");

    assert!(
        Identity::configured(&MtlsConfig::default())
            .expect("off")
            .is_none()
    );
}

/// A kubelet or a cluster's Prometheus presents no service certificate: with mTLS on, the admin
/// port answers their plain requests for health and metrics, and for nothing else.
#[tokio::test]
async fn the_admin_port_serves_health_and_metrics_without_a_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::open(dir.path())?;
    let (mtls, _) = identity(&ca, "payments")?;
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config.mtls = mtls;
    config.http.admin_port = Some(0);
    let server = Server::bind(ServiceInfo::new("payments", "1", &config), &config).await?;
    let url = server.url().to_owned();
    let admin = format!(
        "http://{}",
        server
            .admin_addr()
            .ok_or_else(|| anyhow::anyhow!("no admin listener"))?
    );
    let stop = CancellationToken::new();
    let app = Router::new().route("/whoami", get(|| async { "payments" }));
    let serving = tokio::spawn(server.serve(app, stop.clone()));

    let plain = Transport::http();
    let get = |url: String| Request::get(url).body(Body::empty());
    assert_eq!(
        send(&plain, get(format!("{admin}/health/live"))?).await?.0,
        StatusCode::OK
    );
    let (status, ready) = send(&plain, get(format!("{admin}/health/ready"))?).await?;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let (status, problem) = send(&plain, get(format!("{admin}/whoami"))?).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    // The main port still takes no plain client.
    assert!(
        send(
            &plain,
            get(format!("{}/health/live", url.replace("https", "http")))?
        )
        .await
        .map_or(true, |(status, _)| status != StatusCode::OK)
    );
    let (status, metrics) = send(&plain, get(format!("{admin}/metrics"))?).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("bazaar_build_info"), "{metrics}");
    assert!(
        !metrics.contains("route=\"/health/live\""),
        "probes are not counted as the service's traffic:\n{metrics}"
    );

    stop.cancel();
    serving.await??;
    assert!(
        send(&plain, get(format!("{admin}/health/live"))?)
            .await
            .is_err(),
        "the admin port closes with the service"
    );
    Ok(())
}
