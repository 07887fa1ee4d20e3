//! The verification can fail: a "catalog" whose answers have the wrong shape (a price as a
//! string, no reservation status) is caught, interaction by interaction.

use async_trait::async_trait;
use axum::Json;
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::support::{self, Ports, States, Values};

#[derive(Debug)]
struct Anything;

#[async_trait]
impl States for Anything {
    async fn set_up(&self, _name: &str) -> anyhow::Result<Values> {
        Ok([("reservationId".to_owned(), json!("res-1"))].into())
    }
}

#[tokio::test]
async fn a_provider_that_changes_its_answers_fails_verification() {
    async fn products() -> Json<Value> {
        // The price became a string and `active` went missing.
        Json(json!({"items": [{"sku": "MUG-STONE", "name": "Mug", "price": "18.00 USD"}]}))
    }
    async fn other() -> (http::StatusCode, Json<Value>) {
        (
            http::StatusCode::CREATED,
            Json(json!({"reservation": "res-1"})),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let app = axum::Router::new()
        .route("/products", get(products))
        .fallback(any(other));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ports = Ports {
        http: Some(port),
        messages: None,
    };
    let result = support::check("catalog", ports, Anything).await;
    assert!(!result.result, "a broken provider passed");
    let failed: Vec<&str> = result
        .errors
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    for expected in [
        "the prices of a mug",
        "holding stock for two mugs",
        "committing a held reservation",
    ] {
        assert!(
            failed.iter().any(|f| f.contains(expected)),
            "{expected:?} should fail: {failed:?}"
        );
    }
}
