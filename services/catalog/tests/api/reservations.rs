use std::time::Duration;

use chassis::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, settings};

chassis::database_tests!(
    concurrent_reservations_never_oversell,
    all_lines_or_none,
    repeats_are_safe_and_answer_the_same,
    release_commit_and_expiry_move_stock_once,
    crossing_the_low_stock_threshold_publishes_once,
);

async fn crossing_the_low_stock_threshold_publishes_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // LAMP-HEAD starts with 30 units; the threshold is 5.
    assert_eq!(
        app.reserve("low-1", &[("LAMP-HEAD", 20)]).await.status(),
        201
    );
    assert_eq!(
        app.reserve("low-2", &[("LAMP-HEAD", 6)]).await.status(),
        201
    );
    assert_eq!(
        app.reserve("low-3", &[("LAMP-HEAD", 1)]).await.status(),
        201
    );
    assert_eq!(
        app.reserve("low-9", &[("LAMP-HEAD", 50)]).await.status(),
        409,
        "a refused reservation publishes nothing"
    );
    let feed: Value = app
        .http
        .get(app.at("/internal/events?after=0&wait=0s"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let events = feed["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "only the crossing: {feed}");
    assert_eq!(events[0]["type"], "catalog.stock.low");
    assert_eq!(
        events[0]["data"],
        json!({"sku": "LAMP-HEAD", "available": 4, "threshold": 5})
    );
}

async fn concurrent_reservations_never_oversell(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    // TENT-2P starts with 6 units; 40 buyers race for 1 each, and 10 more for 2 each.
    let mut racers = Vec::new();
    for i in 0..50 {
        let http = app.http.clone();
        let url = app.at("/reservations");
        let quantity = if i < 40 { 1 } else { 2 };
        racers.push(tokio::spawn(async move {
            http.post(url)
                .header("idempotency-key", format!("race-{i}"))
                .json(&json!({"items": [{"sku": "TENT-2P", "quantity": quantity}]}))
                .send()
                .await
                .expect("answers")
        }));
    }
    let mut held = 0;
    for racer in racers {
        let response = racer.await.expect("joins");
        match response.status().as_u16() {
            201 => {
                let reservation: Value = response.json().await.expect("json");
                held += reservation["items"][0]["quantity"]
                    .as_i64()
                    .expect("quantity");
            }
            409 => assert_eq!(
                problem(response).await["type"],
                "urn:bazaar:problem:insufficient-stock"
            ),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(held, 6, "exactly the stock there was, and no more");
    assert_eq!(app.available("TENT-2P").await, 0);
}

async fn all_lines_or_none(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let before = (
        app.available("MUG-STONE").await,
        app.available("KNIFE-CHEF-20").await,
    );
    let short = app
        .reserve("order-1", &[("MUG-STONE", 2), ("KNIFE-CHEF-20", 11)])
        .await;
    assert_eq!(short.status(), 409);
    assert_eq!(
        problem(short).await["detail"],
        "KNIFE-CHEF-20: only 10 available"
    );
    assert_eq!(
        (
            app.available("MUG-STONE").await,
            app.available("KNIFE-CHEF-20").await
        ),
        before,
        "nothing held"
    );

    let unknown = app
        .reserve("order-2", &[("MUG-STONE", 1), ("NOT-A-THING", 1)])
        .await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(app.available("MUG-STONE").await, before.0);

    for (key, items) in [
        ("q0", vec![("MUG-STONE", 0)]),
        ("q-", vec![("MUG-STONE", -1)]),
        ("dup", vec![("MUG-STONE", 1), ("mug-stone", 1)]),
    ] {
        let response = app.reserve(key, &items).await;
        assert_eq!(response.status(), 422, "{key}");
    }
    let no_key = app
        .http
        .post(app.at("/reservations"))
        .json(&json!({"items": [{"sku": "MUG-STONE", "quantity": 1}]}))
        .send()
        .await
        .expect("answers");
    assert_eq!(no_key.status(), 400);
    assert_eq!(
        app.available("MUG-STONE").await,
        before.0,
        "refused requests hold nothing"
    );
}

async fn repeats_are_safe_and_answer_the_same(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let first = app
        .reserve("saga-1:reserve", &[("BOOK-RUST", 2), ("MUG-STONE", 1)])
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = app
        .reserve("saga-1:reserve", &[("mug-stone", 1), ("BOOK-RUST", 2)])
        .await;
    assert_eq!(again.status(), 200, "same key, same request: a replay");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.available("BOOK-RUST").await, 28, "held once");

    let different = app.reserve("saga-1:reserve", &[("BOOK-RUST", 3)]).await;
    assert_eq!(different.status(), 422);
    assert_eq!(
        problem(different).await["type"],
        "urn:bazaar:problem:idempotency-key-reused"
    );

    let id = first["id"].as_str().expect("id");
    let commit = |n: u8| {
        let request = app.http.post(app.at(&format!("/reservations/{id}/commit")));
        async move { (n, request.send().await.expect("answers")) }
    };
    let (_, committed) = commit(1).await;
    let (_, again) = commit(2).await;
    assert_eq!(
        (committed.status(), again.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["status"], "committed");
    let release = app
        .http
        .delete(app.at(&format!("/reservations/{id}")))
        .send()
        .await
        .expect("answers");
    assert_eq!(release.status(), 409, "a sale cannot be released");
    assert_eq!(app.available("BOOK-RUST").await, 28, "sold units stay sold");
    let stock: serde_json::Value = app
        .as_admin(app.http.get(app.at("/products/BOOK-RUST")))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stock["inventory"],
        json!({"on_hand": 28, "reserved": 0, "sold": 2}),
        "committed units left on_hand for sold"
    );
    let replay_after_commit: Value = app
        .reserve("saga-1:reserve", &[("BOOK-RUST", 2), ("MUG-STONE", 1)])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        replay_after_commit["status"], "committed",
        "a replay shows the reservation as it is now"
    );
    for _ in 0..2 {
        let returned = app
            .http
            .post(app.at(&format!("/reservations/{id}/return")))
            .send()
            .await
            .expect("answers");
        assert_eq!(returned.status(), 200, "returning twice returns once");
        let returned: Value = returned.json().await.expect("json");
        assert_eq!(returned["status"], "returned");
    }
    let stock: Value = app
        .as_admin(app.http.get(app.at("/products/BOOK-RUST")))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stock["inventory"],
        json!({"on_hand": 30, "reserved": 0, "sold": 0}),
        "returned units are on hand again"
    );
    let commit_returned = app
        .http
        .post(app.at(&format!("/reservations/{id}/commit")))
        .send()
        .await
        .expect("answers");
    assert_eq!(commit_returned.status(), 409, "a returned sale is over");
}

async fn release_commit_and_expiry_move_stock_once(db: TestDatabase) {
    let app = TestApp::spawn_with(
        db,
        catalog::Settings {
            reservation_ttl: Duration::from_millis(300),
            ..settings()
        },
    )
    .await;
    let held: Value = app
        .reserve("r-1", &[("LAMP-HEAD", 5)])
        .await
        .json()
        .await
        .expect("json");
    let id = held["id"].as_str().expect("id");
    assert_eq!(app.available("LAMP-HEAD").await, 25);
    for _ in 0..2 {
        let released = app
            .http
            .delete(app.at(&format!("/reservations/{id}")))
            .send()
            .await
            .expect("answers");
        assert_eq!(released.status(), 200);
        assert_eq!(
            app.available("LAMP-HEAD").await,
            30,
            "released once, however often asked"
        );
    }
    let commit = app
        .http
        .post(app.at(&format!("/reservations/{id}/commit")))
        .send()
        .await
        .expect("answers");
    assert_eq!(commit.status(), 409);
    assert_eq!(
        app.http
            .delete(app.at("/reservations/nope"))
            .send()
            .await
            .expect("answers")
            .status(),
        404
    );

    // Not committed in time: the sweep gives the units back.
    let forgotten: Value = app
        .reserve("r-2", &[("LAMP-HEAD", 4)])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(app.available("LAMP-HEAD").await, 26);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.available("LAMP-HEAD").await != 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reservation never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expired = app
        .get_json(&format!(
            "/reservations/{}",
            forgotten["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(expired["status"], "expired");
}
