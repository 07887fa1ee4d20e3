//! The gateway over HTTPS: HTTP/2 with a certificate from the development CA, the scheme passed
//! upstream, and plain HTTP redirected when configured.

use chassis::tls::DevCa;
use gateway::Settings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Stack, settings_with_echo, spawn_echo};

fn trusting(ca: &DevCa) -> reqwest::Client {
    let pem = std::fs::read(ca.ca_cert()).expect("ca.pem");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("certificate")])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_https_with_http2_and_redirects_plain_http_to_it() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::open(dir.path()).expect("dev CA");
    let echo = spawn_echo("echo-1").await;
    let settings = Settings {
        tls: Some(ca.issue_server(0, &[]).expect("certificate")),
        redirect_to_https: true,
        ..settings_with_echo()
    };
    let stack = Stack::serving(&[("echo", vec![echo])], settings).await;
    let https = stack.https.clone().expect("https bound");
    let client = trusting(&ca);

    let secure = client
        .get(format!("{https}/api/echo/items?page=2"))
        .send()
        .await
        .expect("answers");
    assert_eq!(secure.version(), reqwest::Version::HTTP_2);
    assert_eq!(secure.status(), 200);
    let seen: Value = secure.json().await.expect("json");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["uri"], "/echo/items?page=2");

    // Plain HTTP to a route: sent to the same URL over HTTPS, method and body kept.
    let port = https.rsplit(':').next().expect("port");
    let plain = client
        .post(stack.at("/api/echo/items?page=2"))
        .header("host", "shop.example:7700")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(plain.status(), 308);
    assert_eq!(
        plain.headers()["location"],
        format!("https://shop.example:{port}/api/echo/items?page=2").as_str()
    );
    // The platform's own checks stay on plain HTTP.
    let health = client
        .get(stack.at("/health/ready"))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn redirecting_without_a_certificate_is_refused_at_start() {
    let mut config = chassis::config::ChassisConfig::with_port(0);
    config.discovery.registry = None;
    let error = gateway::Application::build(
        gateway::Config {
            chassis: config,
            settings: Settings {
                redirect_to_https: true,
                ..Settings::default()
            },
        },
        &CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(
        error.to_string().contains("gateway.redirect_to_https"),
        "{error}"
    );
}
