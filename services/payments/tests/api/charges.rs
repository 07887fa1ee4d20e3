use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use payments::card::{CARD_DECLINED, CARD_NO_FUNDS, CARD_OK, CARD_TRANSIENT};
use payments::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const USER: &str = "0190b5d8-0000-7000-8000-00000000a11c";

struct App {
    url: String,
    http: reqwest::Client,
    /// Token of each card registered so far, so the same card is the same payment method.
    tokens: Mutex<HashMap<String, String>>,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn(db: TestDatabase) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    let app = Application::build(Config {
        chassis,
        settings: Settings::default(),
    })
    .await
    .expect("payments starts");
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    App {
        url,
        http: reqwest::Client::new(),
        tokens: Mutex::default(),
        shutdown,
        _db: db,
    }
}

impl App {
    async fn register(&self, user: &str, card: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/payment-methods", self.url))
            .header("x-bazaar-user-id", user)
            .header("x-bazaar-user-roles", "customer")
            .json(&json!({"card_number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"}))
            .send()
            .await
            .expect("answers")
    }

    /// `USER`'s token for `card`, registered on first use.
    async fn token(&self, card: &str) -> String {
        if let Some(token) = self.tokens.lock().expect("lock").get(card) {
            return token.clone();
        }
        let registered = self.register(USER, card).await;
        assert_eq!(registered.status(), 201);
        let method: Value = registered.json().await.expect("json");
        let token = method["id"].as_str().expect("token").to_owned();
        self.tokens
            .lock()
            .expect("lock")
            .insert(card.to_owned(), token.clone());
        token
    }

    async fn charge(&self, key: &str, order: &str, amount: i64, card: &str) -> reqwest::Response {
        let token = self.token(card).await;
        self.charge_with(key, order, amount, &token).await
    }

    async fn charge_with(
        &self,
        key: &str,
        order: &str,
        amount: i64,
        token: &str,
    ) -> reqwest::Response {
        let body = json!({
            "order_id": order, "user_id": USER, "amount": {"amount_minor": amount, "currency": "USD"},
            "payment_method": token
        });
        self.http
            .post(format!("{}/charges", self.url))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .expect("answers")
    }

    async fn refund(&self, key: &str, charge: &str, amount: Option<i64>) -> reqwest::Response {
        let body = match amount {
            Some(amount) => json!({"amount": {"amount_minor": amount, "currency": "USD"}}),
            None => json!({}),
        };
        self.http
            .post(format!("{}/charges/{charge}/refunds", self.url))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .expect("answers")
    }

    async fn balance(&self, order: &str) -> Value {
        self.http
            .get(format!("{}/balances/{order}", self.url))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json")
    }
}

chassis::database_tests!(
    charges_are_idempotent_and_never_keep_the_card,
    refunds_never_exceed_the_charge
);

async fn charges_are_idempotent_and_never_keep_the_card(db: TestDatabase) {
    let app = spawn(db).await;
    let first = app.charge("saga-1:charge", "order-1", 7500, CARD_OK).await;
    assert_eq!(first.status(), 201);
    let text = first.text().await.expect("body");
    assert!(
        !text.contains(CARD_OK),
        "the card number never comes back: {text}"
    );
    let charge: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["card"], json!({"brand": "visa", "last4": "4242"}));

    let again = app.charge("saga-1:charge", "order-1", 7500, CARD_OK).await;
    assert_eq!(
        again.status(),
        200,
        "a retry is answered, not charged again"
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], charge["id"]);
    let other = app.charge("saga-1:charge", "order-1", 9999, CARD_OK).await;
    assert_eq!(other.status(), 422, "the same key for another amount");
    assert_eq!(
        app.balance("order-1").await["charged_minor"],
        7500,
        "charged once"
    );

    for (key, card, reason) in [
        ("d-1", CARD_DECLINED, "card_declined"),
        ("d-2", CARD_NO_FUNDS, "insufficient_funds"),
    ] {
        for _ in 0..2 {
            let declined = app.charge(key, "order-2", 100, card).await;
            assert_eq!(declined.status(), 402);
            let problem: Value = declined.json().await.expect("json");
            assert_eq!(problem["type"], "urn:bazaar:problem:payment-declined");
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(reason)),
                "{problem}"
            );
        }
    }
    let transient = app.charge("t-1", "order-3", 100, CARD_TRANSIENT).await;
    assert_eq!(transient.status(), 503);
    assert_eq!(
        app.balance("order-2").await["net_minor"],
        0,
        "declines move no money"
    );
    assert_eq!(app.balance("order-3").await["net_minor"], 0);

    let attempts: Value = app
        .http
        .get(format!("{}/charges?order_id=order-2", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        attempts["items"].as_array().map(Vec::len),
        Some(2),
        "each declined attempt is recorded once"
    );

    let bad = app.register(USER, "4242424242424241").await;
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "card_number", "{problem}");
    assert!(
        !problem.to_string().contains("4242424242424241"),
        "a refused number is not echoed: {problem}"
    );
    assert_eq!(
        app.charge_with("b-2", "order-4", 100, "pm_made_up")
            .await
            .status(),
        422,
        "an unknown token"
    );
    let strangers: Value = app
        .register("0190b5d8-0000-7000-8000-000000000b0b", CARD_OK)
        .await
        .json()
        .await
        .expect("json");
    let strangers = strangers["id"].as_str().expect("token");
    assert_eq!(
        app.charge_with("b-3", "order-4", 100, strangers)
            .await
            .status(),
        422,
        "somebody else's card"
    );
    assert_eq!(app.balance("order-4").await["net_minor"], 0);
    let token = app.token(CARD_OK).await;
    let body = json!({"order_id": "order-5", "user_id": USER, "amount": {"amount_minor": 100, "currency": "USD"},
                      "payment_method": token});
    let no_key = app
        .http
        .post(format!("{}/charges", app.url))
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(no_key.status(), 400, "charges need an Idempotency-Key");
}

async fn refunds_never_exceed_the_charge(db: TestDatabase) {
    let app = spawn(db).await;
    let charge: Value = app
        .charge("saga-9:charge", "order-9", 5000, CARD_OK)
        .await
        .json()
        .await
        .expect("json");
    let id = charge["id"].as_str().expect("id");
    assert_eq!(app.refund("r-1", id, Some(2000)).await.status(), 201);
    assert_eq!(
        app.refund("r-1", id, Some(2000)).await.status(),
        200,
        "a replay refunds nothing more"
    );
    assert_eq!(app.refund("r-2", id, Some(3001)).await.status(), 409);
    assert_eq!(
        app.refund("r-3", id, None).await.status(),
        201,
        "the rest: 3000"
    );
    assert_eq!(
        app.refund("r-4", id, None).await.status(),
        409,
        "nothing left"
    );
    let balance = app.balance("order-9").await;
    assert_eq!(
        (
            balance["charged_minor"].as_i64(),
            balance["refunded_minor"].as_i64(),
            balance["net_minor"].as_i64()
        ),
        (Some(5000), Some(5000), Some(0))
    );
    let charge: Value = app
        .http
        .get(format!("{}/charges/{id}", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(charge["refunded"]["amount_minor"], 5000);
    assert_eq!(
        app.refund("r-5", "no-such-charge", None).await.status(),
        404
    );
    let feed: Value = app
        .http
        .get(format!("{}/internal/events?after=0&wait=0s", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let moves: Vec<(String, i64)> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["data"]["amount"]["amount_minor"]
                    .as_i64()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("payments.payment.charged".to_owned(), 5000),
            ("payments.payment.refunded".to_owned(), 2000),
            ("payments.payment.refunded".to_owned(), 3000)
        ],
        "one event per movement of money, none for replays or refusals"
    );
}

#[tokio::test]
async fn customers_see_only_their_own_charges() {
    let app = spawn(TestDatabase::sqlite()).await;
    let charge: Value = app
        .charge("own-1", "order-7", 1200, CARD_OK)
        .await
        .json()
        .await
        .expect("json");
    let id = charge["id"].as_str().expect("id");
    let as_user = |user: &str, path: String| {
        app.http
            .get(format!("{}{path}", app.url))
            .header("x-bazaar-user-id", user)
            .header("x-bazaar-user-roles", "customer")
    };
    let stranger = "0190b5d8-0000-7000-8000-000000000b0b";
    let mine: Value = as_user(USER, "/charges?order_id=order-7".into())
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let theirs: Value = as_user(stranger, "/charges?order_id=order-7".into())
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        as_user(USER, format!("/charges/{id}"))
            .send()
            .await
            .expect("answers")
            .status(),
        200
    );
    assert_eq!(
        as_user(stranger, format!("/charges/{id}"))
            .send()
            .await
            .expect("answers")
            .status(),
        404
    );
}
