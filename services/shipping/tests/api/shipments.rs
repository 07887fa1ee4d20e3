use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use serde_json::{Value, json};
use shipping::{Application, Config, Settings};
use tokio_util::sync::CancellationToken;

const USER: &str = "0190b5d8-0000-7000-8000-00000000a11c";

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn(db: TestDatabase, settings: Settings) -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut chassis = ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    let app = Application::build(Config { chassis, settings })
        .await
        .expect("shipping starts");
    let url = format!("http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
    App {
        url,
        http: reqwest::Client::new(),
        shutdown,
        _db: db,
    }
}

fn stopped_clock() -> Settings {
    Settings {
        ship_after: Duration::ZERO,
        ..Settings::default()
    }
}

fn body(order: &str) -> Value {
    json!({
        "order_id": order, "user_id": USER,
        "address": {"name": "Ada", "line1": "12 Analytical St", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
        "items": [{"sku": "MUG-STONE", "quantity": 2}]
    })
}

impl App {
    async fn create(&self, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/shipments", self.url))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("answers")
    }

    async fn post(&self, path: &str, admin: bool) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.url));
        if admin {
            request = request
                .header("x-bazaar-user-id", USER)
                .header("x-bazaar-user-roles", "customer,admin");
        }
        request.send().await.expect("answers")
    }
}

chassis::database_tests!(shipments_are_idempotent_and_cancellable_until_shipped);

async fn shipments_are_idempotent_and_cancellable_until_shipped(db: TestDatabase) {
    let app = spawn(db, stopped_clock()).await;
    let created = app.create("saga-1:ship", &body("order-1")).await;
    assert_eq!(created.status(), 201);
    let shipment: Value = created.json().await.expect("json");
    assert_eq!(shipment["status"], "label_created");
    assert_eq!(shipment["carrier"], "Royal Mail");
    assert!(
        shipment["tracking_number"]
            .as_str()
            .is_some_and(|t| t.starts_with("RM") && t.len() == 14)
    );
    let again: Value = app
        .create("saga-1:ship", &body("order-1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["id"], shipment["id"],
        "a retry returns the same shipment"
    );
    assert_eq!(
        app.create("saga-1:ship", &body("order-2")).await.status(),
        422
    );

    let id = shipment["id"].as_str().expect("id");
    for _ in 0..2 {
        let cancelled = app.post(&format!("/shipments/{id}/cancel"), false).await;
        assert_eq!(cancelled.status(), 200);
        assert_eq!(
            cancelled.json::<Value>().await.expect("json")["status"],
            "cancelled"
        );
    }

    let second: Value = app
        .create("saga-2:ship", &body("order-2"))
        .await
        .json()
        .await
        .expect("json");
    let id = second["id"].as_str().expect("id");
    assert_eq!(
        app.post(&format!("/shipments/{id}/advance"), false)
            .await
            .status(),
        401,
        "admins only"
    );
    let shipped: Value = app
        .post(&format!("/shipments/{id}/advance"), true)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shipped["status"], "in_transit");
    assert_eq!(
        app.post(&format!("/shipments/{id}/cancel"), false)
            .await
            .status(),
        409,
        "shipped: too late to cancel"
    );
    let delivered: Value = app
        .post(&format!("/shipments/{id}/advance"), true)
        .await
        .json()
        .await
        .expect("json");
    let history: Vec<&str> = delivered["tracking"]
        .as_array()
        .expect("tracking")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(history, ["label_created", "in_transit", "delivered"]);
    assert_eq!(
        app.post(&format!("/shipments/{id}/advance"), true)
            .await
            .status(),
        409
    );

    let listed: Value = app
        .http
        .get(format!("{}/shipments?order_id=order-2", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    let feed: Value = app
        .http
        .get(format!("{}/internal/events?after=0&wait=0s", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let events: Vec<(&str, &str)> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["data"]["shipment_id"] == id)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["data"]["tracking_number"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            "shipping.shipment.created",
            "shipping.shipment.shipped",
            "shipping.shipment.delivered"
        ],
        "one event per move, none for the refused ones"
    );
    assert!(events.iter().all(|(_, t)| !t.is_empty()));
}

#[tokio::test]
async fn the_clock_moves_parcels_to_delivery() {
    let settings = Settings {
        ship_after: Duration::from_millis(100),
        deliver_after: Duration::from_millis(100),
    };
    let app = spawn(TestDatabase::sqlite(), settings).await;
    let shipment: Value = app
        .create("saga-3:ship", &body("order-3"))
        .await
        .json()
        .await
        .expect("json");
    let id = shipment["id"].as_str().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now: Value = app
            .http
            .get(format!("{}/shipments/{id}", app.url))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        if now["status"] == "delivered" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_shipments_are_refused() {
    let app = spawn(TestDatabase::sqlite(), stopped_clock()).await;
    let mut bad = body("order-4");
    bad["address"]["country"] = json!("Narnia");
    bad["items"][0]["quantity"] = json!(0);
    let refused = app.create("bad-1", &bad).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.expect("json");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["address.country", "items[0].quantity"]);
    let no_key = app
        .http
        .post(format!("{}/shipments", app.url))
        .json(&body("order-5"))
        .send()
        .await
        .expect("answers");
    assert_eq!(no_key.status(), 400);
    assert_eq!(
        app.post("/shipments/nope/cancel", false).await.status(),
        404
    );
}

#[tokio::test]
async fn customers_see_only_their_own_shipments() {
    let app = spawn(TestDatabase::sqlite(), stopped_clock()).await;
    let shipment: Value = app
        .create("own-1", &body("order-8"))
        .await
        .json()
        .await
        .expect("json");
    let id = shipment["id"].as_str().expect("id");
    let as_user = |user: &str, path: String| {
        app.http
            .get(format!("{}{path}", app.url))
            .header("x-bazaar-user-id", user)
            .header("x-bazaar-user-roles", "customer")
    };
    let stranger = "0190b5d8-0000-7000-8000-000000000b0b";
    let mine: Value = as_user(USER, "/shipments?order_id=order-8".into())
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let theirs: Value = as_user(stranger, "/shipments?order_id=order-8".into())
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        as_user(USER, format!("/shipments/{id}"))
            .send()
            .await
            .expect("answers")
            .status(),
        200
    );
    assert_eq!(
        as_user(stranger, format!("/shipments/{id}"))
            .send()
            .await
            .expect("answers")
            .status(),
        404
    );
}
