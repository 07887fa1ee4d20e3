//! HTTPS beside HTTP: the same routes on a second port, HTTP/2 by ALPN, a certificate from the
//! development CA, and handshakes that cannot hold each other up.

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use chassis::config::ChassisConfig;
use chassis::tls::{DevCa, Secure};
use chassis::{Server, ServiceInfo};
use tokio_util::sync::CancellationToken;

fn https_client(ca: &DevCa) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca.ca_cert()).expect("ca.pem");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("certificate")])
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_the_same_routes_over_https_with_http2_and_marks_them() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::open(dir.path()).expect("dev CA");
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let tls = ca.issue_server(0, &[]).expect("certificate");
    let server = Server::bind(ServiceInfo::new("demo", "1", &config), &config)
        .await
        .expect("binds")
        .with_tls(&tls, "demo.tls")
        .await
        .expect("binds https");
    let plain = server.url().to_owned();
    let port = server.tls_addr().expect("https bound").port();
    let secure = format!("https://localhost:{port}");
    let app = Router::new().route(
        "/scheme",
        get(|marked: Option<Extension<Secure>>| async move {
            if marked.is_some() { "https" } else { "http" }
        }),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(app, shutdown.clone()));

    // A client that connects and never shakes hands holds up nobody.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");

    let client = https_client(&ca);
    let over_tls = client
        .get(format!("{secure}/scheme"))
        .send()
        .await
        .expect("https answers");
    assert_eq!(over_tls.version(), reqwest::Version::HTTP_2);
    assert_eq!(over_tls.text().await.expect("text"), "https");
    let ready = client
        .get(format!("{secure}/health/ready"))
        .send()
        .await
        .expect("https answers");
    assert_eq!(ready.status(), 200, "the chassis routes are there too");

    let over_http = reqwest::get(format!("{plain}/scheme"))
        .await
        .expect("http answers");
    assert_eq!(over_http.version(), reqwest::Version::HTTP_11);
    assert_eq!(over_http.text().await.expect("text"), "http");

    // A client that does not trust the CA is refused at the handshake.
    let stranger = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .expect("client");
    assert!(
        stranger
            .get(format!("{secure}/scheme"))
            .send()
            .await
            .is_err()
    );

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops in time")
        .expect("joins");
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn a_missing_certificate_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let tls = chassis::tls::TlsConfig {
        cert: dir.path().join("missing.pem"),
        key: dir.path().join("missing.key"),
        ..chassis::tls::TlsConfig::default()
    };
    let error = Server::bind(ServiceInfo::new("demo", "1", &config), &config)
        .await
        .expect("binds")
        .with_tls(&tls, "demo.tls")
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("demo.tls.cert") && text.contains("missing.pem"),
        "{text}"
    );
}
