use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::db::Db;
use chassis::testing::{FeedProducer, TestDatabase};
use contracts::events::{
    OrderCancelled, OrderConfirmed, OrderLine, ShipmentFacts, ShipmentShipped, UserRegistered,
};
use contracts::money::Money;
use notifications::{Application, Config, Settings};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const ADA: &str = "0190b5d8-0000-7000-8000-00000000a11c";
const ADMIN: &str = "0190b5d8-0000-7000-8000-0000000ad000";

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

async fn spawn(db: TestDatabase, producers: &FeedProducer) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    chassis.events.feed_wait = Duration::from_millis(200);
    for service in ["users", "orders", "shipping"] {
        chassis
            .discovery
            .static_instances
            .insert(service.into(), vec![producers.url().to_owned()]);
    }
    let shutdown = CancellationToken::new();
    let app = Application::build(
        Config {
            chassis,
            settings: Settings::default(),
        },
        &shutdown,
    )
    .await
    .expect("notifications starts");
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
    async fn emails(&self, to: &str, as_user: &str, roles: &str) -> reqwest::Response {
        self.list(&format!("to={to}"), as_user, roles).await
    }

    async fn list(&self, query: &str, as_user: &str, roles: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/emails?{query}", self.url))
            .header("x-bazaar-user-id", as_user)
            .header("x-bazaar-user-roles", roles)
            .send()
            .await
            .expect("answers")
    }

    /// Waits (10 s at most) until `to` has `n` delivered emails; returns them, oldest first.
    async fn delivered(&self, to: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let page: Value = self
                .emails(to, ADMIN, "customer,admin")
                .await
                .json()
                .await
                .expect("json");
            let mut emails: Vec<Value> = page["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e["status"] == "delivered")
                .collect();
            if emails.len() >= n {
                emails.reverse();
                return emails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} emails to {to} expected");
    }

    /// Stops the service and hands its database back.
    async fn stop(mut self) -> TestDatabase {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.db.take().expect("a database")
    }
}

fn usd(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "USD".into(),
    }
}

fn facts() -> ShipmentFacts {
    ShipmentFacts {
        shipment_id: "s-1".into(),
        order_id: "o-1".into(),
        user_id: ADA.into(),
        carrier: "Royal Mail".into(),
        tracking_number: "RM123456785GB".into(),
    }
}

chassis::database_tests!(
    every_event_becomes_one_email,
    an_email_waits_for_its_address
);

async fn every_event_becomes_one_email(db: TestDatabase) {
    let producers = FeedProducer::start().await;
    producers
        .publish(&UserRegistered {
            user_id: ADA.into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        })
        .await;
    producers
        .publish(&OrderConfirmed {
            order_id: "o-1".into(),
            user_id: ADA.into(),
            lines: vec![OrderLine {
                sku: "MUG-STONE".into(),
                name: "Stoneware Mug".into(),
                quantity: 2,
                unit_price: usd(1800),
            }],
            total: usd(3600),
        })
        .await;
    producers.publish(&ShipmentShipped(facts())).await;
    producers
        .publish(&OrderCancelled {
            order_id: "o-2".into(),
            user_id: ADA.into(),
            reason: "the card was declined: card_declined".into(),
            total: usd(900),
        })
        .await;
    let app = spawn(db, &producers).await;
    let emails = app.delivered("ada@example.com", 4).await;
    // Different producers, so no order between them: find each by its subject.
    let body = |subject: &str| {
        emails
            .iter()
            .find(|e| e["subject"] == subject)
            .and_then(|e| e["body"].as_str())
            .unwrap_or_else(|| panic!("no email {subject:?} in {emails:?}"))
            .to_owned()
    };
    assert!(body("Welcome to Bazaar, Ada!").contains("(ada@example.com)"));
    let confirmed = body("Your Bazaar order is confirmed");
    assert!(
        confirmed.contains("2 x Stoneware Mug (MUG-STONE)  36.00 USD"),
        "{confirmed}"
    );
    assert!(confirmed.contains("Total: 36.00 USD"));
    assert!(body("Your Bazaar order is on its way").contains("RM123456785GB"));
    assert!(
        body("Your Bazaar order was cancelled").contains("the card was declined: card_declined")
    );
    // One order's emails: its confirmation and its shipment, not the other order's.
    let of_order: Value = app
        .list("order_id=o-1", ADMIN, "customer,admin")
        .await
        .json()
        .await
        .expect("json");
    let mut kinds: Vec<&str> = of_order["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["order_confirmed", "shipment_shipped"], "{of_order}");
    let both: Value = app
        .list("to=ada@example.com&order_id=o-2", ADMIN, "admin")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(both["items"].as_array().map(Vec::len), Some(1), "{both}");
    // A customer reads their own emails, and only theirs, whatever they ask for.
    let own: Value = app
        .emails("ada@example.com", ADA, "customer")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(own["items"].as_array().map(Vec::len), Some(4), "{own}");
    let someone_else: Value = app
        .emails("ada@example.com", ADMIN, "customer")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        someone_else["items"].as_array().map(Vec::len),
        Some(0),
        "another customer sees none of Ada's: {someone_else}"
    );

    // Delivered again from the start (as after a lost cursor): not one email more.
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
    let again = spawn(db, &producers).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all: Value = again
        .emails("ada@example.com", ADMIN, "customer,admin")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4), "{all}");
}

async fn an_email_waits_for_its_address(db: TestDatabase) {
    let producers = FeedProducer::start().await;
    // The shipment's event comes before the sign-up's (they come from different producers).
    producers.publish(&ShipmentShipped(facts())).await;
    let app = spawn(db, &producers).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    producers
        .publish(&UserRegistered {
            user_id: ADA.into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        })
        .await;
    let emails = app.delivered("ada@example.com", 2).await;
    assert!(
        emails
            .iter()
            .any(|e| e["subject"] == "Your Bazaar order is on its way"),
        "{emails:?}"
    );
}
