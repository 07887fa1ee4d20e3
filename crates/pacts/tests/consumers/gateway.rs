//! The gateway as a consumer: it checks tokens with the users service's published keys, and
//! gathers `GET /api/dashboard` from users, orders and recommendations. The real gateway runs
//! against Pact mock servers of the three.

use std::time::Duration;

use chassis::config::ChassisConfig;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use pact_consumer::prelude::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use users::keys::KeyRing;

use crate::pact;

const ADA: &str = "0190b5d8-0000-7000-8000-0000000000ad";
/// The signing key's id: a fixed key, so the pact file is the same on every run.
const KID: &str = "20261126T000000Z-00ad";

/// A key ring holding one fixed Ed25519 key, as the users service keeps its keys.
fn key_ring(dir: &std::path::Path) -> KeyRing {
    let pem = SigningKey::from_bytes(&[42; 32])
        .to_pkcs8_pem(LineEnding::LF)
        .expect("a PEM");
    std::fs::write(dir.join(format!("{KID}.pem")), pem.as_bytes()).expect("written");
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    KeyRing::open(dir.to_owned(), century, century).expect("the key ring opens")
}

/// The `x-bazaar-user-id` the gateway passes on: the token's subject, or, when the provider is
/// verified, the customer its state made.
fn on_behalf_of_ada(request: &mut pact_consumer::builders::RequestBuilder) {
    request
        .header_from_provider_state("x-bazaar-user-id", "${userId}", ADA)
        .header("x-bazaar-user-roles", "customer");
}

async fn users(jwk: &Value) -> Box<dyn ValidatingMockServer> {
    let (kid, x) = (
        jwk["kid"].as_str().unwrap_or_default().to_owned(),
        jwk["x"].as_str().unwrap_or_default().to_owned(),
    );
    pact("gateway", "users")
        .interaction("the keys tokens are signed with", "", |mut i| {
            i.given("the service has a signing key");
            i.request.get().path("/.well-known/jwks.json");
            i.response.ok().json_body(json_pattern!({
                "keys": each_like!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": like!(kid.clone()),
                    "x": like!(x.clone()),
                }),
            }));
            i
        })
        .interaction("the profile of a signed-in customer", "", |mut i| {
            i.given("a customer exists");
            i.request.get().path("/users/me");
            on_behalf_of_ada(&mut i.request);
            i.response.ok().json_body(json_pattern!({
                "id": like!(ADA),
                "email": like!("ada@example.com"),
                "name": like!("Ada"),
                "roles": each_like!("customer"),
            }));
            i
        })
        .start_mock_server(None, None)
}

async fn orders() -> Box<dyn ValidatingMockServer> {
    pact("gateway", "orders")
        .interaction("a customer's latest orders", "", |mut i| {
            i.given("a customer has placed an order");
            i.request
                .get()
                .path("/orders")
                .query_param("page_size", "5");
            on_behalf_of_ada(&mut i.request);
            i.response.ok().json_body(json_pattern!({
                "items": each_like!({
                    "id": like!("0190b5d8-1111-7000-8000-000000000001"),
                    "status": like!("CONFIRMED"),
                    "total": {"amount_minor": like!(3600), "currency": like!("USD")},
                    "lines": each_like!({"sku": like!("MUG-STONE"), "quantity": like!(2)}),
                }),
            }));
            i
        })
        .start_mock_server(None, None)
}

async fn recommendations() -> Box<dyn ValidatingMockServer> {
    pact("gateway", "recommendations")
        .interaction("recommendations for a customer", "", |mut i| {
            i.given("a customer has bought a mug with a book");
            i.request
                .get()
                .path("/recommendations/for-me")
                .query_param("limit", "5");
            on_behalf_of_ada(&mut i.request);
            i.response.ok().json_body(json_pattern!({
                "items": each_like!({
                    "sku": like!("BOOK-RUST"),
                    "name": like!("The Rust Programming Language"),
                    "score": like!(1),
                }),
            }));
            i
        })
        .start_mock_server(None, None)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_asks_users_orders_and_recommendations_as_agreed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = tempfile::tempdir().expect("tempdir");
    let ring = key_ring(keys.path());
    let jwks = serde_json::to_value(ring.jwks()).expect("json");
    let (users, orders, recommendations) = (
        users(&jwks[0]).await,
        orders().await,
        recommendations().await,
    );
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    for (service, mock) in [
        ("users", &users),
        ("orders", &orders),
        ("recommendations", &recommendations),
    ] {
        config.discovery.static_instances.insert(
            service.to_owned(),
            vec![mock.url().as_str().trim_end_matches('/').to_owned()],
        );
    }
    let shutdown = CancellationToken::new();
    let settings = gateway::Settings::default();
    let key = ring.current().expect("a key");
    let token = users::tokens::sign_access_token(
        &key,
        &settings.issuer,
        &settings.audience,
        ADA.parse().expect("a uuid"),
        &["customer".to_owned()],
        u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970"),
        Duration::from_secs(600),
    )
    .expect("signed");
    let app = gateway::Application::build(
        gateway::Config {
            chassis: config,
            settings,
        },
        &shutdown,
    )
    .await
    .expect("the gateway starts");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;

    let dashboard: Value = reqwest::Client::new()
        .get(format!("{url}/api/dashboard"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("json");
    shutdown.cancel();
    assert_eq!(dashboard["partial"], false, "{dashboard}");
    assert_eq!(dashboard["profile"]["email"], "ada@example.com");
    assert_eq!(
        dashboard["recent_orders"]["items"][0]["status"],
        "CONFIRMED"
    );
    assert_eq!(dashboard["recommendations"]["items"][0]["sku"], "BOOK-RUST");
}
