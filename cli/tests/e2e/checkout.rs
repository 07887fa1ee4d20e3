//! The checkout saga end to end: the whole system through the gateway, with the invariant
//! checked for every order.
//!
//! For each order: CONFIRMED ⇔ stock committed, net charge = total, one active shipment;
//! CANCELLED ⇔ nothing reserved, net charge 0, no active shipment.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::system::{PgPrefix, Running, WITH_DATABASES};

const CARD_OK: &str = "4242424242424242";
pub(crate) const CARD_DECLINED: &str = "4000000000000002";

/// A signed-in customer with a registered card.
pub(crate) struct Shopper {
    pub(crate) token: String,
    pub(crate) card: String,
}

pub(crate) async fn login(running: &Running, email: &str, password: &str) -> String {
    let response = running
        .post_json(
            "/api/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(response.status(), 200, "login as {email}");
    let tokens: Value = response.json().await.expect("json");
    tokens["access_token"].as_str().expect("token").to_owned()
}

/// Signs a new customer up and in, and registers `CARD_OK` for them.
pub(crate) async fn shopper(running: &Running, email: &str) -> Shopper {
    let signup = running
        .post_json(
            "/api/auth/signup",
            &json!({"email": email, "password": "correct horse battery", "name": "Shopper"}),
        )
        .await;
    assert_eq!(signup.status(), 201, "{}", running.output());
    let token = login(running, email, "correct horse battery").await;
    let card = register_card(running, &token, CARD_OK).await;
    Shopper { token, card }
}

/// Registers a card; returns its token.
pub(crate) async fn register_card(running: &Running, token: &str, number: &str) -> String {
    let response = running
        .http
        .post(running.at("/api/payment-methods"))
        .bearer_auth(token)
        .json(&json!({"card_number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 201, "{}", running.output());
    let method: Value = response.json().await.expect("json");
    assert_eq!(method["last4"], &number[number.len() - 4..]);
    method["id"].as_str().expect("token").to_owned()
}

/// Places an order for `items` paid with `card`; returns its id.
pub(crate) async fn place(
    running: &Running,
    token: &str,
    items: &[(&str, i64)],
    card: &str,
) -> String {
    let items: Vec<Value> = items
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    let body = json!({
        "items": items,
        "shipping_address": {"name": "Ada", "line1": "12 Analytical St", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
        "payment_method": card,
    });
    let placed = running
        .http
        .post(running.at("/api/orders"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(placed.status(), 202, "{}", running.output());
    assert!(placed.headers().contains_key("location"));
    let order: Value = placed.json().await.expect("json");
    assert_eq!(order["status"], "PENDING");
    order["id"].as_str().expect("id").to_owned()
}

/// The order once its checkout has settled, waiting with `?wait=`.
pub(crate) async fn settled(running: &Running, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let order: Value = running
            .get(&format!("/api/orders/{id}?wait=10s"), Some(token))
            .await
            .json()
            .await
            .expect("json");
        let checkout = order["checkout"]["status"].as_str().unwrap_or_default();
        if checkout == "confirmed" || checkout == "cancelled" {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} did not settle: {order}\n{}",
            running.output()
        );
    }
}

/// `(on_hand, reserved, sold)` of a product, as an administrator sees it.
pub(crate) async fn inventory(running: &Running, admin: &str, sku: &str) -> (i64, i64, i64) {
    let product: Value = running
        .get(&format!("/api/products/{sku}"), Some(admin))
        .await
        .json()
        .await
        .expect("json");
    let i = &product["inventory"];
    (
        i["on_hand"].as_i64().expect("on_hand"),
        i["reserved"].as_i64().expect("reserved"),
        i["sold"].as_i64().expect("sold"),
    )
}

/// GETs `path` through the gateway as `token`, retrying for a few seconds until it answers 200
/// (a neighbour that was just down may take a moment to be routed to again).
async fn read(running: &Running, token: &str, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = running.get(path, Some(token)).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "GET {path}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the neighbours hold for an order: its reservation's status, the net charged, and its
/// shipments that are not cancelled. Also returns how many charges succeeded.
async fn holdings(running: &Running, admin: &str, id: &str) -> (Option<String>, i64, usize, usize) {
    let saga = read(running, admin, &format!("/api/orders/{id}/saga")).await;
    let reservation = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "reserve" && s["outcome"] == "done")
        .and_then(|s| s["detail"].as_str())
        .map(str::to_owned);
    let reservation_status = match reservation {
        Some(reservation) => {
            let catalog = running.url_of("catalog");
            let body: Value = running
                .http
                .get(format!("{catalog}/reservations/{reservation}"))
                .send()
                .await
                .expect("answers")
                .json()
                .await
                .expect("json");
            body["status"].as_str().map(str::to_owned)
        }
        None => None,
    };
    let charges = read(running, admin, &format!("/api/payments?order_id={id}")).await;
    let succeeded: Vec<&Value> = charges["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|c| c["status"] == "succeeded")
        .collect();
    let net: i64 = succeeded
        .iter()
        .map(|c| {
            c["amount"]["amount_minor"].as_i64().unwrap_or(0)
                - c["refunded"]["amount_minor"].as_i64().unwrap_or(0)
        })
        .sum();
    let shipments = read(running, admin, &format!("/api/shipments?order_id={id}")).await;
    let active = shipments["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|s| s["status"] != "cancelled")
        .count();
    (reservation_status, net, active, succeeded.len())
}

/// Checks the invariant for a settled order.
pub(crate) async fn assert_invariant(running: &Running, admin: &str, order: &Value) {
    let id = order["id"].as_str().expect("id");
    let (reservation, net, active, _) = holdings(running, admin, id).await;
    match order["status"].as_str() {
        Some("CONFIRMED") => {
            assert_eq!(reservation.as_deref(), Some("committed"), "{order}");
            assert_eq!(
                Some(net),
                order["total"]["amount_minor"].as_i64(),
                "{order}"
            );
            assert_eq!(active, 1, "one active shipment: {order}");
        }
        Some("CANCELLED") => {
            assert!(
                reservation
                    .as_deref()
                    .is_none_or(|s| ["released", "expired", "returned"].contains(&s)),
                "nothing reserved: {reservation:?} {order}"
            );
            assert_eq!(net, 0, "no money held: {order}");
            assert_eq!(active, 0, "no active shipment: {order}");
        }
        other => panic!("not settled: {other:?} {order}"),
    }
}

#[tokio::test]
async fn checkouts_confirm_cancel_and_keep_the_invariant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    let admin = login(&running, "admin@bazaar.example", "keys-to-the-shop").await;
    let ada = shopper(&running, "ada@example.com").await;
    let before = inventory(&running, &admin, "MUG-STONE").await;

    // Happy path: a charge, a shipment, and two mugs sold.
    let id = place(&running, &ada.token, &[("MUG-STONE", 2)], &ada.card).await;
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_invariant(&running, &admin, &order).await;
    let after = inventory(&running, &admin, "MUG-STONE").await;
    assert_eq!(after, (before.0 - 2, 0, before.2 + 2));
    let shipments: Value = running
        .get(&format!("/api/shipments?order_id={id}"), Some(&ada.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shipments["items"][0]["carrier"], "Royal Mail");

    // A declined card: cancelled, the stock released, no money held.
    let declined = register_card(&running, &ada.token, CARD_DECLINED).await;
    let id = place(&running, &ada.token, &[("MUG-STONE", 3)], &declined).await;
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(
        order["cancel_reason"],
        "the card was declined: card_declined"
    );
    assert_invariant(&running, &admin, &order).await;
    assert_eq!(inventory(&running, &admin, "MUG-STONE").await, after);

    // Out of stock: cancelled, nothing charged.
    let id = place(&running, &ada.token, &[("BOOK-RUST", 31)], &ada.card).await;
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert!(
        order["cancel_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("out of stock: BOOK-RUST")),
        "{order}"
    );
    let (_, _, _, charges) = holdings(&running, &admin, &id).await;
    assert_eq!(charges, 0, "nothing charged");
    assert_invariant(&running, &admin, &order).await;

    // The customer cancels a confirmed order before it ships: refunded, restocked.
    let id = place(&running, &ada.token, &[("MUG-STONE", 1)], &ada.card).await;
    assert_eq!(
        settled(&running, &ada.token, &id).await["status"],
        "CONFIRMED"
    );
    let cancel = running
        .http
        .post(running.at(&format!("/api/orders/{id}/cancel")))
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(cancel.status(), 202, "{}", running.output());
    let order = settled(&running, &ada.token, &id).await;
    assert_eq!(order["status"], "CANCELLED");
    assert_invariant(&running, &admin, &order).await;
    assert_eq!(inventory(&running, &admin, "MUG-STONE").await, after);

    // The dashboard gathers profile, orders and recommendations in one answer.
    let dashboard = read(&running, &ada.token, "/api/dashboard").await;
    assert_eq!(dashboard["partial"], false, "{dashboard}");
    assert_eq!(dashboard["profile"]["email"], "ada@example.com");
    assert_eq!(
        dashboard["recent_orders"]["items"].as_array().map(Vec::len),
        Some(4),
        "{dashboard}"
    );
    assert!(dashboard["recommendations"]["items"].is_array());

    let stuck: Value = running
        .get("/api/sagas?stuck=true", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stuck["items"], json!([]));
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
async fn a_payments_outage_delays_the_checkout_but_it_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Calls give up after a second, so a frozen payments service fails the charge attempts.
    let running =
        Running::start_with_env(dir.path(), &[], &[("BAZAAR_DISCOVERY__CALL_TIMEOUT", "1s")]);
    let admin = login(&running, "admin@bazaar.example", "keys-to-the-shop").await;
    let bo = shopper(&running, "bo@example.com").await;

    // Payments freezes: its port still accepts connections, but nothing answers.
    let payments = running.pids("payments");
    for pid in &payments {
        kill(Pid::from_raw(*pid), Signal::SIGSTOP).expect("stopped");
    }
    let id = place(&running, &bo.token, &[("MUG-STONE", 1)], &bo.card).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during: Value = running
        .get(&format!("/api/orders/{id}"), Some(&bo.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(during["status"], "PENDING", "{during}");
    assert_eq!(during["checkout"]["step"], "charge", "{during}");
    for pid in &payments {
        kill(Pid::from_raw(*pid), Signal::SIGCONT).expect("continued");
    }
    let order = settled(&running, &bo.token, &id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_invariant(&running, &admin, &order).await;
    let saga: Value = running
        .get(&format!("/api/orders/{id}/saga"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let failed = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "charge" && s["outcome"] == "failed")
        .count();
    assert!(failed >= 1, "the charge was retried: {saga}");
    let (_, _, _, charges) = holdings(&running, &admin, &id).await;
    assert_eq!(charges, 1, "charged once");
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
async fn orders_killed_mid_saga_finishes_it_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    kill_orders_mid_saga(Running::start_with_env(dir.path(), &[], SLOW_CHARGES)).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
async fn orders_killed_mid_saga_finishes_it_exactly_once_on_postgresql() {
    let pg = PgPrefix::new("kill");
    let dir = tempfile::tempdir().expect("tempdir");
    kill_orders_mid_saga(Running::start_with_env(
        dir.path(),
        &["--db", &pg.url()],
        SLOW_CHARGES,
    ))
    .await;
    pg.drop_all(&WITH_DATABASES).await;
}

/// Every charge takes two seconds: time to kill orders while one is in flight.
const SLOW_CHARGES: &[(&str, &str)] = &[("BAZAAR_PAYMENTS__PROCESSOR_LATENCY", "2s")];

async fn kill_orders_mid_saga(running: Running) {
    let admin = login(&running, "admin@bazaar.example", "keys-to-the-shop").await;
    let cy = shopper(&running, "cy@example.com").await;
    let before = inventory(&running, &admin, "BOOK-RUST").await;
    let id = place(&running, &cy.token, &[("BOOK-RUST", 2)], &cy.card).await;

    // Wait until the charge is under way, then kill orders outright.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let order: Value = running
            .get(&format!("/api/orders/{id}"), Some(&cy.token))
            .await
            .json()
            .await
            .expect("json");
        if order["checkout"]["step"] == "charge" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the saga never reached the charge: {order}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every instance (the production rehearsal runs two): the one running the saga among them.
    let instances = running.instances("orders");
    for (_, pid) in &instances {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).expect("killed");
    }

    // `up` restarts them; a restarted instance resumes the saga from its stored state.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (instance, _) in &instances {
        let restart = format!("{instance} restarted on");
        while !running.output().contains(&restart) {
            assert!(
                Instant::now() < deadline,
                "{instance} was not restarted:\n{}",
                running.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let order = settled(&running, &cy.token, &id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_invariant(&running, &admin, &order).await;
    let (_, _, shipments, charges) = holdings(&running, &admin, &id).await;
    assert_eq!((charges, shipments), (1, 1), "one charge, one shipment");
    let saga = read(&running, &admin, &format!("/api/orders/{id}/saga")).await;
    let charge_attempts: Vec<&str> = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "charge")
        .filter_map(|s| s["outcome"].as_str())
        .collect();
    assert_eq!(
        charge_attempts,
        ["started", "done"],
        "the killed instance's attempt never got its answer stored; the restarted one's did"
    );
    let after = inventory(&running, &admin, "BOOK-RUST").await;
    assert_eq!(after, (before.0 - 2, 0, before.2 + 2), "stock moved once");

    // The producer was killed too: its events still arrive, once. One confirmation email.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = read(&running, &admin, "/api/emails?to=cy@example.com").await;
        let confirmations = page["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|e| e["subject"] == "Your Bazaar order is confirmed")
            .count();
        if confirmations > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let page = read(&running, &admin, "/api/emails?to=cy@example.com").await;
            let all = page["items"].as_array().map(Vec::len).unwrap_or_default();
            assert_eq!(all, 2, "a welcome and one confirmation: {page}");
            break;
        }
        assert!(Instant::now() < deadline, "no confirmation email: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}
