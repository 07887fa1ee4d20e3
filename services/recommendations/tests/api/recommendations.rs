use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::db::Db;
use chassis::testing::{FeedProducer, TestDatabase};
use contracts::events::{OrderCancelled, OrderConfirmed, OrderLine};
use contracts::money::Money;
use recommendations::{Application, Config, Settings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADA: &str = "0190b5d8-0000-7000-8000-00000000a11c";
const BOB: &str = "0190b5d8-0000-7000-8000-000000000b0b";
const CY: &str = "0190b5d8-0000-7000-8000-0000000000c1";
const NEW: &str = "0190b5d8-0000-7000-8000-000000000e11";

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    db: Option<TestDatabase>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn(db: TestDatabase, orders: &FeedProducer) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    chassis.events.feed_wait = Duration::from_millis(200);
    chassis
        .discovery
        .static_instances
        .insert("orders".into(), vec![orders.url().to_owned()]);
    let shutdown = CancellationToken::new();
    let app = Application::build(
        Config {
            chassis,
            settings: Settings::default(),
        },
        &shutdown,
    )
    .await
    .expect("recommendations starts");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    App {
        url,
        http: reqwest::Client::new(),
        shutdown,
        db: Some(db),
    }
}

impl App {
    async fn get(&self, path: &str, user: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(user) = user {
            request = request
                .header("x-bazaar-user-id", user)
                .header("x-bazaar-user-roles", "customer");
        }
        request.send().await.expect("answers")
    }

    /// `(sku, score)` of the recommendations at `path`.
    async fn scores(&self, path: &str, user: Option<&str>) -> Vec<(String, i64)> {
        let page: Value = self.get(path, user).await.json().await.expect("json");
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| {
                (
                    r["sku"].as_str().unwrap_or_default().to_owned(),
                    r["score"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits (10 s at most) until `path` answers `expected`.
    async fn wait_for(&self, path: &str, user: Option<&str>, expected: &[(&str, i64)]) {
        let expected: Vec<(String, i64)> = expected
            .iter()
            .map(|(s, n)| ((*s).to_owned(), *n))
            .collect();
        for _ in 0..200 {
            if self.scores(path, user).await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{path}: expected {expected:?}, got {:?}",
            self.scores(path, user).await
        );
    }

    async fn stop(mut self) -> TestDatabase {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.db.take().expect("a database")
    }
}

fn confirmed(order_id: &str, user_id: &str, skus: &[&str]) -> OrderConfirmed {
    OrderConfirmed {
        order_id: order_id.into(),
        user_id: user_id.into(),
        lines: skus
            .iter()
            .map(|sku| OrderLine {
                sku: (*sku).into(),
                name: format!("The {sku}"),
                quantity: 1,
                unit_price: Money {
                    amount_minor: 100,
                    currency: "USD".into(),
                },
            })
            .collect(),
        total: Money {
            amount_minor: 100,
            currency: "USD".into(),
        },
    }
}

chassis::database_tests!(bought_together_from_confirmed_orders_once);

async fn bought_together_from_confirmed_orders_once(db: TestDatabase) {
    let orders = FeedProducer::start().await;
    orders
        .publish(&confirmed("o-1", ADA, &["MUG-STONE", "BOOK-RUST"]))
        .await;
    orders
        .publish(&confirmed(
            "o-2",
            BOB,
            &["MUG-STONE", "BOOK-RUST", "TEE-ORG-M"],
        ))
        .await;
    orders
        .publish(&confirmed("o-3", CY, &["MUG-STONE", "CAP-NAVY"]))
        .await;
    let app = spawn(db, &orders).await;
    app.wait_for(
        "/recommendations?product=mug-stone",
        None,
        &[("BOOK-RUST", 2), ("CAP-NAVY", 1), ("TEE-ORG-M", 1)],
    )
    .await;
    let page: Value = app
        .get("/recommendations?product=MUG-STONE&limit=1", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        page["items"],
        json!([{"sku": "BOOK-RUST", "name": "The BOOK-RUST", "score": 2}])
    );
    // Ada bought a mug and a book: the tee went with both (2), the cap with the mug (1).
    app.wait_for(
        "/recommendations/for-me",
        Some(ADA),
        &[("TEE-ORG-M", 2), ("CAP-NAVY", 1)],
    )
    .await;
    // Somebody new gets what sells most.
    app.wait_for(
        "/recommendations/for-me?limit=2",
        Some(NEW),
        &[("MUG-STONE", 3), ("BOOK-RUST", 2)],
    )
    .await;

    // Cy cancels: the cap goes.
    orders
        .publish(&OrderCancelled {
            order_id: "o-3".into(),
            user_id: CY.into(),
            reason: "cancelled at the customer's request".into(),
            total: Money {
                amount_minor: 100,
                currency: "USD".into(),
            },
        })
        .await;
    app.wait_for(
        "/recommendations?product=MUG-STONE",
        None,
        &[("BOOK-RUST", 2), ("TEE-ORG-M", 1)],
    )
    .await;

    // Every event delivered again: nothing counts twice.
    let db = app.stop().await;
    let raw = Db::connect_with(
        &db.url(),
        &Default::default(),
        &[chassis::events::migrator()],
    )
    .await
    .expect("connects");
    sqlx::query("UPDATE event_cursors SET position = 0")
        .execute(raw.pool())
        .await
        .expect("rewinds");
    let again = spawn(db, &orders).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        again
            .scores("/recommendations?product=MUG-STONE", None)
            .await,
        [("BOOK-RUST".to_owned(), 2), ("TEE-ORG-M".to_owned(), 1)]
    );
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let orders = FeedProducer::start().await;
    let app = spawn(TestDatabase::sqlite(), &orders).await;
    assert_eq!(app.get("/recommendations", None).await.status(), 422);
    assert_eq!(
        app.get("/recommendations?product=MUG-STONE&limit=0", None)
            .await
            .status(),
        422
    );
    assert_eq!(
        app.get("/recommendations?product=%3Cscript%3E", None)
            .await
            .status(),
        422
    );
    assert_eq!(
        app.get("/recommendations/for-me", None).await.status(),
        401,
        "for-me needs a signed-in caller"
    );
    let unknown: Value = app
        .get("/recommendations?product=NEVER-SOLD", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(unknown["items"], json!([]));
}
