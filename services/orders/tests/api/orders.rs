use chassis::testing::TestDatabase;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{ADMIN, ALICE, BOB, Neighbours, TestApp, fake_users, order_body, problem};

chassis::database_tests!(
    orders_are_priced_by_the_catalog_and_checked_out,
    an_idempotency_key_makes_placing_safe_to_retry,
    customers_see_only_their_own_orders,
    the_order_names_its_customer_as_the_users_service_knows_them,
);

async fn the_order_names_its_customer_as_the_users_service_knows_them(db: TestDatabase) {
    let catalog = Neighbours::start().await;
    let users = fake_users(&[(ALICE, "Alice Liddell", "alice@example.com")]).await;
    let app = TestApp::spawn_with_users(db, &catalog.uri(), &users).await;
    let placed = app.place(ALICE, None, &order_body()).await;
    assert_eq!(placed.status(), 202);
    let order: Value = placed.json().await.expect("json");
    assert_eq!(
        order["customer"],
        json!({"name": "Alice Liddell", "email": "alice@example.com"})
    );
    let id = order["id"].as_str().expect("id");
    let read: Value = app
        .get(ALICE, &format!("/orders/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["customer"]["email"], "alice@example.com", "stored");

    // An account the users service does not know (deleted since the token was issued).
    let refused = app.place(BOB, None, &order_body()).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        problem(refused).await["type"],
        "urn:bazaar:problem:unknown-user"
    );
}

async fn orders_are_priced_by_the_catalog_and_checked_out(db: TestDatabase) {
    let catalog = Neighbours::start().await;
    let app = TestApp::spawn(db, &catalog.uri()).await;
    let placed = app.place(ALICE, None, &order_body()).await;
    assert_eq!(placed.status(), 202);
    let location = placed.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let order: Value = placed.json().await.expect("json");
    assert_eq!(
        location,
        format!("/orders/{}", order["id"].as_str().expect("id"))
    );
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["checkout"]["status"], "running");
    assert_eq!(order["user_id"], ALICE);
    assert_eq!(order["lines"][0]["sku"], "MUG-STONE");
    assert_eq!(order["lines"][0]["name"], "Stoneware Mug");
    assert_eq!(
        order["lines"][0]["unit_price"],
        json!({"amount_minor": 1800, "currency": "USD"})
    );
    assert_eq!(order["lines"][0]["line_total"]["amount_minor"], 3600);
    assert_eq!(
        order["total"],
        json!({"amount_minor": 7500, "currency": "USD"}),
        "the client's price and total are ignored"
    );
    assert_eq!(order["shipping_address"]["country"], "GB");
    assert_eq!(order["status_history"][0]["status"], "PENDING");
    let id = order["id"].as_str().expect("id");
    let settled = app.settled(ALICE, id).await;
    assert_eq!(settled["status"], "CONFIRMED");

    let reservations = catalog.calls("POST", "^/reservations$").await;
    assert_eq!(reservations.len(), 1);
    let asked: Value = serde_json::from_slice(&reservations[0].body).expect("json");
    assert_eq!(
        asked,
        json!({"items": [{"sku": "MUG-STONE", "quantity": 2}, {"sku": "BOOK-RUST", "quantity": 1}]})
    );
    assert!(
        reservations[0].headers.get("idempotency-key").is_some(),
        "reservations are always keyed"
    );

    let read: Value = app
        .get(ALICE, &format!("/orders/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["total"], order["total"]);
    assert_eq!(read["lines"], order["lines"]);
}

async fn an_idempotency_key_makes_placing_safe_to_retry(db: TestDatabase) {
    let catalog = Neighbours::start().await;
    let app = TestApp::spawn(db, &catalog.uri()).await;
    let first = app.place(ALICE, Some("checkout-42"), &order_body()).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    let again = app.place(ALICE, Some("checkout-42"), &order_body()).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);

    let mut different = order_body();
    different["items"][0]["quantity"] = json!(5);
    let reused = app.place(ALICE, Some("checkout-42"), &different).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        problem(reused).await["type"],
        "urn:bazaar:problem:idempotency-key-reused"
    );

    // Keys belong to one customer: Bob's "checkout-42" is another order.
    let bobs = app.place(BOB, Some("checkout-42"), &order_body()).await;
    assert_eq!(bobs.status(), 202);
    let bobs: Value = bobs.json().await.expect("json");
    app.settled(ALICE, first["id"].as_str().expect("id")).await;
    app.settled(BOB, bobs["id"].as_str().expect("id")).await;
    assert_eq!(
        catalog.calls("POST", "^/charges$").await.len(),
        2,
        "one charge per order, however many retries of placing it"
    );

    let alices: Value = app.get(ALICE, "/orders").await.json().await.expect("json");
    assert_eq!(
        alices["items"].as_array().map(Vec::len),
        Some(1),
        "one order, however many retries"
    );
}

async fn customers_see_only_their_own_orders(db: TestDatabase) {
    let catalog = Neighbours::start().await;
    let app = TestApp::spawn(db, &catalog.uri()).await;
    let mut alices = Vec::new();
    for _ in 0..5 {
        let order: Value = app
            .place(ALICE, None, &order_body())
            .await
            .json()
            .await
            .expect("json");
        alices.push(order["id"].as_str().expect("id").to_owned());
    }
    let bobs: Value = app
        .place(BOB, None, &order_body())
        .await
        .json()
        .await
        .expect("json");
    let bobs_id = bobs["id"].as_str().expect("id");

    assert_eq!(
        app.get(ALICE, &format!("/orders/{bobs_id}")).await.status(),
        404,
        "not yours: not found"
    );
    assert_eq!(
        app.get(ADMIN, &format!("/orders/{bobs_id}")).await.status(),
        200,
        "admins see every order"
    );

    // Newest first, two to a page, across three pages.
    let mut seen = Vec::new();
    let mut path = "/orders?page_size=2".to_owned();
    loop {
        let page: Value = app.get(ALICE, &path).await.json().await.expect("json");
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/orders?page_size=2&cursor={cursor}"),
            None => break,
        }
    }
    alices.reverse();
    assert_eq!(seen, alices);
    let everyone: Value = app
        .get(ADMIN, "/orders?page_size=100")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(everyone["items"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn unknown_products_store_nothing() {
    let catalog = Neighbours::start().await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &catalog.uri()).await;
    let mut unknown = order_body();
    unknown["items"][1]["sku"] = json!("NOT-SOLD-HERE");
    let refused = app.place(ALICE, None, &unknown).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(problem(refused).await["errors"][0]["field"], "items[1].sku");

    let listed: Value = app.get(ALICE, "/orders").await.json().await.expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn hostile_requests_are_refused() {
    let catalog = Neighbours::start().await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &catalog.uri()).await;
    let anonymous = app
        .http
        .post(app.at("/orders"))
        .json(&order_body())
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);

    let mut bad = order_body();
    bad["items"][0]["quantity"] = json!(0);
    bad["items"][1]["quantity"] = json!(-4);
    bad["shipping_address"]["country"] = json!("Atlantis");
    bad["payment_method"] = json!("4242424242424242");
    let refused = app.place(ALICE, None, &bad).await;
    assert_eq!(refused.status(), 422);
    let fields: Vec<String> = problem(refused).await["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        fields,
        [
            "items[0].quantity",
            "items[1].quantity",
            "shipping_address.country",
            "payment_method"
        ]
    );

    let empty = app
        .place(
            ALICE,
            None,
            &json!({"items": [], "shipping_address": order_body()["shipping_address"], "payment_method": "pm_x"}),
        )
        .await;
    assert_eq!(empty.status(), 422);
    let huge = app.place(ALICE, None, &json!({"items": [{"sku": "MUG-STONE", "quantity": 1_000_000}], "shipping_address": order_body()["shipping_address"], "payment_method": "pm_x"})).await;
    assert_eq!(huge.status(), 422);
    assert_eq!(app.get(ALICE, "/orders?page_size=0").await.status(), 422);
    assert_eq!(app.get(ALICE, "/orders?cursor=forged").await.status(), 422);

    assert!(
        catalog.calls("POST", "^/reservations$").await.is_empty(),
        "nothing refused reached the catalog"
    );
    let wait = app.get(ALICE, "/orders/anything?wait=forever").await;
    assert_eq!(wait.status(), 422, "a wait that is not a duration");
    let wait = app.get(ALICE, "/orders/anything?wait=10m").await;
    assert_eq!(wait.status(), 422, "a wait longer than 30 s");
}

#[tokio::test]
async fn a_catalog_outage_is_a_503_that_stores_nothing() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let app = TestApp::spawn(TestDatabase::sqlite(), &dead).await;
    let response = app.place(ALICE, None, &order_body()).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let listed: Value = app.get(ALICE, "/orders").await.json().await.expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn checking_out_the_cart_orders_its_lines_and_empties_it_once_confirmed() {
    let catalog = Neighbours::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/cart"))
        .and(wiremock::matchers::header("x-bazaar-user-id", ALICE))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "cart_id": null, "item_count": 3, "priced": true, "total": null,
            "lines": [{"sku": "BOOK-RUST", "quantity": 1}, {"sku": "MUG-STONE", "quantity": 2}]
        })))
        .mount(&catalog.server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("DELETE"))
        .and(wiremock::matchers::path("/cart"))
        .and(wiremock::matchers::header("x-bazaar-user-id", ALICE))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&catalog.server)
        .await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &catalog.uri()).await;
    let body = json!({"from_cart": true, "shipping_address": order_body()["shipping_address"], "payment_method": "pm_test_visa"});
    let placed = app.place(ALICE, Some("cart-checkout"), &body).await;
    assert_eq!(placed.status(), 202);
    let order: Value = placed.json().await.expect("json");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 7500, "currency": "USD"})
    );
    assert_eq!(order["lines"].as_array().map(Vec::len), Some(2));
    let settled = app.settled(ALICE, order["id"].as_str().expect("id")).await;
    assert_eq!(settled["status"], "CONFIRMED");
    // A retry with the same key replays the order, even though the cart is now empty.
    let again = app.place(ALICE, Some("cart-checkout"), &body).await;
    assert_eq!(again.status(), 200);
    catalog.wait_for("DELETE", "^/cart$", 1).await;
    catalog.server.verify().await;

    let both = json!({"from_cart": true, "items": [{"sku": "MUG-STONE", "quantity": 1}], "shipping_address": order_body()["shipping_address"], "payment_method": "pm_x"});
    assert_eq!(app.place(ALICE, None, &both).await.status(), 422);
    let neither =
        json!({"shipping_address": order_body()["shipping_address"], "payment_method": "pm_x"});
    assert_eq!(app.place(ALICE, None, &neither).await.status(), 422);
}

#[tokio::test]
async fn an_empty_cart_cannot_be_checked_out() {
    let catalog = Neighbours::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/cart"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"cart_id": null, "item_count": 0, "priced": true, "total": null, "lines": []}),
        ))
        .mount(&catalog.server)
        .await;
    let app = TestApp::spawn(TestDatabase::sqlite(), &catalog.uri()).await;
    let body = json!({"from_cart": true, "shipping_address": order_body()["shipping_address"], "payment_method": "pm_x"});
    let refused = app.place(ALICE, None, &body).await;
    let status = refused.status();
    let body = problem(refused).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "from_cart");
}
