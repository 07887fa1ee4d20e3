//! The checkout saga against mocked neighbours: every path to CONFIRMED or CANCELLED, retries,
//! compensation, customer cancellation, and resuming after a restart.

use std::time::Duration;

use chassis::testing::TestDatabase;
use orders::Settings;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{ADMIN, ALICE, BOB, Neighbours, TestApp, order_body, problem, problem_answer};

chassis::database_tests!(
    a_checkout_reserves_charges_ships_and_confirms,
    a_customer_cancels_a_confirmed_order,
    an_unfinished_saga_resumes_when_the_service_starts_again,
);

/// Places the standard order as Alice and returns its id.
async fn place(app: &TestApp) -> String {
    let placed = app.place(ALICE, None, &order_body()).await;
    assert_eq!(placed.status(), 202);
    let order: Value = placed.json().await.expect("json");
    order["id"].as_str().expect("id").to_owned()
}

/// Starts neighbours that answer `verb route` with `answer` (the first `times` times, or
/// always), an orders service on them, and places the standard order.
async fn checkout_where(
    verb: &str,
    route: &str,
    answer: ResponseTemplate,
    times: Option<u64>,
) -> (Neighbours, TestApp, String) {
    let neighbours = Neighbours::start().await;
    neighbours.answer(verb, route, answer, times).await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &neighbours.uri()).await;
    let id = place(&app).await;
    (neighbours, app, id)
}

fn key_of(request: &wiremock::Request) -> String {
    request
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn steps(saga: &Value) -> Vec<(String, String)> {
    saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn a_checkout_reserves_charges_ships_and_confirms(db: TestDatabase) {
    let neighbours = Neighbours::start().await;
    let app = TestApp::spawn(db, &neighbours.uri()).await;
    let id = place(&app).await;
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["checkout"]["status"], "confirmed");
    let history: Vec<&str> = order["status_history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history, ["PENDING", "CONFIRMED"]);

    let saga = app.saga(&id).await;
    let saga_id = saga["id"].as_str().expect("saga id");
    assert_eq!(
        steps(&saga),
        pairs(&[
            ("reserve", "done"),
            ("charge", "done"),
            ("ship", "done"),
            ("confirm", "done")
        ])
    );
    assert_eq!(
        (
            &saga["reservation_id"],
            &saga["charge_id"],
            &saga["shipment_id"]
        ),
        (&json!("res-1"), &json!("ch-1"), &json!("sh-1"))
    );
    assert!(saga["steps"][0]["duration_ms"].as_i64().is_some());
    let events = app.events().await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["orders.order.created", "orders.order.confirmed"]);
    assert_eq!(events[1].1["order_id"], json!(id));
    assert_eq!(
        events[1].1["total"],
        json!({"amount_minor": 7500, "currency": "USD"})
    );
    assert_eq!(events[1].1["lines"][0]["name"], "Stoneware Mug");

    let reserve = neighbours.calls("POST", "^/reservations$").await;
    assert_eq!(key_of(&reserve[0]), format!("{saga_id}:reserve"));
    let charges = neighbours.calls("POST", "^/charges$").await;
    assert_eq!(charges.len(), 1);
    assert_eq!(key_of(&charges[0]), format!("{saga_id}:charge"));
    let charge: Value = serde_json::from_slice(&charges[0].body).expect("json");
    assert_eq!(
        charge,
        json!({"order_id": id, "user_id": ALICE, "amount": {"amount_minor": 7500, "currency": "USD"},
               "payment_method": "pm_test_visa"})
    );
    let shipments = neighbours.calls("POST", "^/shipments$").await;
    assert_eq!(key_of(&shipments[0]), format!("{saga_id}:ship"));
    let shipment: Value = serde_json::from_slice(&shipments[0].body).expect("json");
    assert_eq!(shipment["address"]["country"], "GB");
    assert_eq!(
        shipment["items"],
        json!([{"sku": "MUG-STONE", "quantity": 2}, {"sku": "BOOK-RUST", "quantity": 1}])
    );
    assert_eq!(
        neighbours
            .calls("POST", "^/reservations/res-1/commit$")
            .await
            .len(),
        1
    );
    assert!(
        neighbours
            .calls("DELETE", "^/reservations/[^/]+$")
            .await
            .is_empty(),
        "nothing released"
    );
    assert_eq!(
        app.get(ALICE, &format!("/orders/{id}/saga")).await.status(),
        403,
        "sagas are for administrators"
    );
}

#[tokio::test]
async fn a_declined_card_releases_the_stock_and_cancels() {
    let (neighbours, app, id) = checkout_where(
        "POST",
        "^/charges$",
        problem_answer(
            402,
            "payment-declined",
            "the card was declined: insufficient_funds",
        ),
        None,
    )
    .await;
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancel_reason"],
        "the card was declined: insufficient_funds"
    );
    let events = app.events().await;
    assert_eq!(
        events.last().map(|(k, _)| k.as_str()),
        Some("orders.order.cancelled")
    );
    assert_eq!(
        events.last().map(|(_, d)| d["reason"].clone()),
        Some(json!("the card was declined: insufficient_funds"))
    );
    assert_eq!(events.len(), 2, "created, then cancelled: {events:?}");
    assert_eq!(order["status_history"][1]["status"], "CANCELLED");
    assert_eq!(
        neighbours
            .calls("DELETE", "^/reservations/res-1$")
            .await
            .len(),
        1,
        "the stock is released"
    );
    assert!(neighbours.calls("POST", "^/shipments$").await.is_empty());
    assert!(
        neighbours
            .calls("POST", "^/charges/[^/]+/refunds$")
            .await
            .is_empty(),
        "nothing to refund"
    );
    assert_eq!(
        steps(&app.saga(&id).await),
        pairs(&[
            ("reserve", "done"),
            ("charge", "refused"),
            ("release_stock", "done")
        ])
    );
}

#[tokio::test]
async fn out_of_stock_cancels_with_nothing_charged() {
    let (neighbours, app, id) = checkout_where(
        "POST",
        "^/reservations$",
        problem_answer(409, "insufficient-stock", "MUG-STONE: only 1 available"),
        None,
    )
    .await;
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancel_reason"],
        "out of stock: MUG-STONE: only 1 available"
    );
    assert!(neighbours.calls("POST", "^/charges$").await.is_empty());
    assert!(
        neighbours
            .calls("DELETE", "^/reservations/[^/]+$")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_payments_outage_is_retried_until_it_passes() {
    let (neighbours, app, id) = checkout_where(
        "POST",
        "^/charges$",
        problem_answer(503, "processor-unavailable", "down"),
        Some(3),
    )
    .await;
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    let saga = app.saga(&id).await;
    let charges: Vec<(String, String)> = steps(&saga)
        .into_iter()
        .filter(|(step, _)| step == "charge")
        .collect();
    // The chassis client retries a keyed 503 itself before the saga sees a failure, so the
    // saga's attempts are fewer than the neighbour's answers.
    assert_eq!(charges.last().map(|c| c.1.as_str()), Some("done"));
    assert!(
        charges.len() >= 2,
        "at least one failed attempt: {charges:?}"
    );
    let keys: Vec<String> = neighbours
        .calls("POST", "^/charges$")
        .await
        .iter()
        .map(key_of)
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every attempt carries the same key: {keys:?}"
    );
}

#[tokio::test]
async fn running_out_of_time_compensates_and_says_why() {
    let neighbours = Neighbours::start().await;
    neighbours
        .answer(
            "POST",
            "^/shipments$",
            problem_answer(503, "unavailable", "down"),
            None,
        )
        .await;
    let app = TestApp::spawn_with(
        TestDatabase::sqlite(),
        &neighbours.uri(),
        Settings {
            checkout_deadline: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .await;
    let id = place(&app).await;
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancel_reason"],
        "the shipment could not be arranged in time"
    );
    let refunds = neighbours.calls("POST", "^/charges/ch-1/refunds$").await;
    assert_eq!(refunds.len(), 1, "the charge is refunded");
    let saga = app.saga(&id).await;
    assert_eq!(
        key_of(&refunds[0]),
        format!("{}:refund", saga["id"].as_str().expect("id"))
    );
    assert_eq!(
        neighbours
            .calls("DELETE", "^/reservations/res-1$")
            .await
            .len(),
        1
    );
    let last: Vec<(String, String)> = steps(&saga).into_iter().rev().take(2).collect();
    assert_eq!(
        last,
        pairs(&[("release_stock", "done"), ("refund", "done")])
    );
}

#[tokio::test]
async fn a_failing_compensation_is_retried_shown_stuck_then_finished() {
    let neighbours = Neighbours::start().await;
    neighbours
        .answer(
            "POST",
            "^/charges$",
            problem_answer(
                402,
                "payment-declined",
                "the card was declined: card_declined",
            ),
            None,
        )
        .await;
    // Releasing fails with a 500 five times (the client does not retry a DELETE's 500).
    neighbours
        .answer(
            "DELETE",
            "^/reservations/[^/]+$",
            problem_answer(500, "internal", "boom"),
            Some(5),
        )
        .await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &neighbours.uri()).await;
    let id = place(&app).await;
    let mut seen_stuck = false;
    for _ in 0..200 {
        let stuck: Value = app
            .get(ADMIN, "/sagas?stuck=true")
            .await
            .json()
            .await
            .expect("json");
        if stuck["items"][0]["order_id"] == json!(id) {
            assert_eq!(stuck["items"][0]["step"], "release_stock");
            assert_eq!(stuck["items"][0]["stuck"], true);
            seen_stuck = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_stuck,
        "a saga failing to compensate is listed as stuck"
    );
    let metrics = app
        .http
        .get(app.at("/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .contains("bazaar_orders_saga_steps_total{step=\"release_stock\",outcome=\"failed\"}"),
        "{metrics}"
    );
    // The database pool, read at the scrape.
    for gauge in [
        "bazaar_db_pool_connections ",
        "bazaar_db_pool_connections_in_use ",
        "bazaar_db_pool_connections_max ",
    ] {
        assert!(metrics.contains(gauge), "no {gauge}in {metrics}");
    }
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CANCELLED", "compensation never gives up");
    let all: Value = app.get(ADMIN, "/sagas").await.json().await.expect("json");
    assert_eq!(all["items"], json!([]), "nothing left to do");
}

async fn a_customer_cancels_a_confirmed_order(db: TestDatabase) {
    let neighbours = Neighbours::start().await;
    let app = TestApp::spawn(db, &neighbours.uri()).await;
    let id = place(&app).await;
    assert_eq!(app.settled(ALICE, &id).await["status"], "CONFIRMED");
    let cancel = |user: &'static str| {
        app.as_user(app.http.post(app.at(&format!("/orders/{id}/cancel"))), user)
            .send()
    };
    assert_eq!(
        cancel(BOB).await.expect("answers").status(),
        404,
        "not Bob's order"
    );
    let accepted = cancel(ALICE).await.expect("answers");
    assert_eq!(accepted.status(), 202);
    let order = app.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancel_reason"],
        "cancelled at the customer's request"
    );
    assert_eq!(
        neighbours
            .calls("POST", "^/shipments/sh-1/cancel$")
            .await
            .len(),
        1
    );
    assert_eq!(
        neighbours
            .calls("POST", "^/charges/ch-1/refunds$")
            .await
            .len(),
        1
    );
    assert_eq!(
        neighbours
            .calls("POST", "^/reservations/res-1/return$")
            .await
            .len(),
        1,
        "sold units go back on hand"
    );
    let again = cancel(ALICE).await.expect("answers");
    assert_eq!(again.status(), 409);
    assert_eq!(
        problem(again).await["type"],
        "urn:bazaar:problem:order-not-cancellable"
    );
}

#[tokio::test]
async fn a_shipped_order_cannot_be_cancelled() {
    let (neighbours, app, id) = checkout_where(
        "POST",
        "^/shipments/[^/]+/cancel$",
        problem_answer(409, "already-shipped", "shipment sh-1 is in_transit"),
        None,
    )
    .await;
    assert_eq!(app.settled(ALICE, &id).await["status"], "CONFIRMED");
    let refused = app
        .as_user(
            app.http.post(app.at(&format!("/orders/{id}/cancel"))),
            ALICE,
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 409);
    let body = problem(refused).await;
    assert_eq!(body["type"], "urn:bazaar:problem:already-shipped");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("in_transit")),
        "{body}"
    );
    let order: Value = app
        .get(ALICE, &format!("/orders/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(order["status"], "CONFIRMED");
    assert!(
        neighbours
            .calls("POST", "^/charges/[^/]+/refunds$")
            .await
            .is_empty(),
        "nothing refunded"
    );
}

/// A checkout whose charge takes 1.5 s, so the order stays PENDING that long.
async fn checkout_charging_slowly() -> (Neighbours, TestApp, String) {
    checkout_where(
        "POST",
        "^/charges$",
        ResponseTemplate::new(201)
            .set_body_json(json!({"id": "ch-1"}))
            .set_delay(Duration::from_millis(1500)),
        None,
    )
    .await
}

#[tokio::test]
async fn a_pending_order_cannot_be_cancelled_yet() {
    let (_neighbours, app, id) = checkout_charging_slowly().await;
    let early = app
        .as_user(
            app.http.post(app.at(&format!("/orders/{id}/cancel"))),
            ALICE,
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(early.status(), 409);
    // Somebody else waiting on the moving checkout is refused at once, while it still moves.
    let theirs = app.get(BOB, &format!("/orders/{id}?wait=10s")).await;
    assert_eq!(theirs.status(), 404);
    let now: Value = app
        .get(ALICE, &format!("/orders/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now["status"], "PENDING", "refused before it settled");
    assert_eq!(app.settled(ALICE, &id).await["status"], "CONFIRMED");
}

#[tokio::test]
async fn a_long_poll_answers_before_its_callers_deadline() {
    let (_neighbours, app, id) = checkout_charging_slowly().await;
    // The gateway waits 500 ms for this answer: the poll ends in 450, the order still pending.
    let started = std::time::Instant::now();
    let polled = app
        .as_user(
            app.http
                .get(app.at(&format!("/orders/{id}?wait=10s")))
                .header("x-bazaar-timeout-ms", "500"),
            ALICE,
        )
        .send()
        .await
        .expect("answers");
    let took = started.elapsed();
    assert_eq!(polled.status(), 200);
    let order: Value = polled.json().await.expect("json");
    assert_eq!(order["status"], "PENDING");
    assert!(
        took >= Duration::from_millis(440) && took < Duration::from_millis(1400),
        "answered after {took:?}, not at the wait's 10 s nor at once"
    );
    assert_eq!(app.settled(ALICE, &id).await["status"], "CONFIRMED");
}

async fn an_unfinished_saga_resumes_when_the_service_starts_again(db: TestDatabase) {
    // The first run finds the catalog unable to reserve, and stops while retrying.
    let down = Neighbours::start().await;
    down.answer(
        "POST",
        "^/reservations$",
        problem_answer(503, "unavailable", "down"),
        None,
    )
    .await;
    let first = TestApp::spawn(db, &down.uri()).await;
    let id = place(&first).await;
    down.wait_for("POST", "^/reservations$", 1).await;
    let db = first.stop().await;

    // The second run, on the same database, with the neighbours back, finishes it.
    let up = Neighbours::start().await;
    let second = TestApp::spawn(db, &up.uri()).await;
    let order = second.settled(ALICE, &id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(up.calls("POST", "^/charges$").await.len(), 1);
    let saga = second.saga(&id).await;
    let reserve_keys: Vec<String> = down
        .calls("POST", "^/reservations$")
        .await
        .iter()
        .chain(up.calls("POST", "^/reservations$").await.iter())
        .map(key_of)
        .collect();
    let expected = format!("{}:reserve", saga["id"].as_str().expect("id"));
    assert!(
        reserve_keys.iter().all(|k| *k == expected),
        "both runs use the saga's key: {reserve_keys:?}"
    );
}
