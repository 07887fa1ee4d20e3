use std::collections::BTreeSet;

use chassis::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

chassis::database_tests!(
    pages_through_the_whole_catalog_in_every_order,
    filters_and_searches,
    admins_manage_products
);

async fn pages_through_the_whole_catalog_in_every_order(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    for sort in ["name", "price", "-price", "newest"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("/products?sort={sort}&page_size=7"),
                Some(c) => format!("/products?sort={sort}&page_size=7&cursor={c}"),
            };
            let page = app.get_json(&path).await;
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= 7);
            seen.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 50, "{sort}: every product once");
        let ids: BTreeSet<&str> = seen.iter().filter_map(|p| p["id"].as_str()).collect();
        assert_eq!(ids.len(), 50, "{sort}: no duplicates across pages");
        let prices: Vec<i64> = seen
            .iter()
            .filter_map(|p| p["price"]["amount_minor"].as_i64())
            .collect();
        match sort {
            "price" => assert!(prices.windows(2).all(|w| w[0] <= w[1]), "ascending"),
            "-price" => assert!(prices.windows(2).all(|w| w[0] >= w[1]), "descending"),
            "name" => {
                let names: Vec<String> = seen
                    .iter()
                    .filter_map(|p| p["name"].as_str())
                    .map(str::to_lowercase)
                    .collect();
                assert!(names.windows(2).all(|w| w[0] <= w[1]), "by name");
            }
            _ => {}
        }
    }
}

async fn filters_and_searches(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let books = app.get_json("/products?category=books&page_size=100").await;
    assert_eq!(books["items"].as_array().map(Vec::len), Some(10));
    let cheap = app
        .get_json("/products?min_price=1000&max_price=1600&page_size=100")
        .await;
    assert!(cheap["items"].as_array().expect("items").iter().all(|p| {
        p["price"]["amount_minor"]
            .as_i64()
            .is_some_and(|price| (1000..=1600).contains(&price))
    }));
    let search = app.get_json("/products?q=RUST").await;
    let names: Vec<&str> = search["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "The Rust Programming Language",
            "Zero to Production in Rust"
        ]
    );
    let wildcard = app.get_json("/products?q=%25").await;
    assert_eq!(
        wildcard["items"].as_array().map(Vec::len),
        Some(0),
        "% is a character, not a wildcard"
    );
    let by_sku = app.get_json("/products?sku=mug-stone,BOOK-RUST").await;
    assert_eq!(by_sku["items"].as_array().map(Vec::len), Some(2));

    let categories = app.get_json("/categories").await;
    let first = &categories["items"][0];
    assert_eq!(
        (first["slug"].as_str(), first["product_count"].as_i64()),
        (Some("apparel"), Some(10))
    );

    let one = app.get_json("/products/tee-org-m").await;
    assert_eq!(one["sku"], "TEE-ORG-M");
    assert_eq!(
        one["price"],
        json!({"amount_minor": 2400, "currency": "USD"})
    );
    let by_id = app
        .get_json(&format!("/products/{}", one["id"].as_str().expect("id")))
        .await;
    assert_eq!(by_id["sku"], "TEE-ORG-M");
    assert_eq!(app.get("/products/NOPE-404").await.status(), 404);
}

async fn admins_manage_products(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let body = json!({"sku": "poster-a2", "name": "Poster A2", "description": "Risograph print",
                      "price": {"amount_minor": 2500, "currency": "USD"}, "category": "books", "stock": 3});
    let anonymous = app
        .http
        .post(app.at("/products"))
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);
    let customer = app
        .http
        .post(app.at("/products"))
        .header("x-bazaar-user-id", "0190b5d8-0000-7000-8000-000000000002")
        .header("x-bazaar-user-roles", "customer")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(customer.status(), 403);

    let created = app
        .as_admin(app.http.post(app.at("/products")))
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status(), 201);
    let product: Value = created.json().await.expect("json");
    assert_eq!(
        (product["sku"].as_str(), product["available"].as_i64()),
        (Some("POSTER-A2"), Some(3))
    );
    let id = product["id"].as_str().expect("id").to_owned();

    let again = app
        .as_admin(app.http.post(app.at("/products")))
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status(), 409);
    let mut bad = body.clone();
    bad["sku"] = json!("x");
    bad["price"] = json!({"amount_minor": -5, "currency": "usd"});
    bad["category"] = json!("nope");
    let invalid = app
        .as_admin(app.http.post(app.at("/products")))
        .json(&bad)
        .send()
        .await
        .expect("answers");
    assert_eq!(invalid.status(), 422);
    let fields: Vec<String> = problem(invalid).await["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(fields, ["sku", "price"]);
    let mut unknown_category = body.clone();
    unknown_category["sku"] = json!("POSTER-B1");
    unknown_category["category"] = json!("garden");
    let refused = app
        .as_admin(app.http.post(app.at("/products")))
        .json(&unknown_category)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 422);
    assert_eq!(
        app.get("/products/POSTER-B1").await.status(),
        404,
        "a refused create stores nothing"
    );

    let patched: Value = app
        .as_admin(app.http.patch(app.at(&format!("/products/{id}"))))
        .json(&json!({"price": {"amount_minor": 2000, "currency": "USD"}, "name": "Poster A2 (signed)"}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(patched["price"]["amount_minor"], 2000);
    assert_eq!(patched["name"], "Poster A2 (signed)");

    let restocked: Value = app
        .as_admin(app.http.post(app.at(&format!("/products/{id}/restock"))))
        .json(&json!({"quantity": 7}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(restocked["available"], 10);
    assert_eq!(
        restocked["inventory"],
        json!({"on_hand": 10, "reserved": 0, "sold": 0}),
        "admins see the stock"
    );
    assert!(
        app.get_json("/products/POSTER-A2")
            .await
            .get("inventory")
            .is_none(),
        "the public does not"
    );
    let zero = app
        .as_admin(app.http.post(app.at(&format!("/products/{id}/restock"))))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .expect("answers");
    assert_eq!(zero.status(), 422);

    let deactivated = app
        .as_admin(app.http.patch(app.at(&format!("/products/{id}"))))
        .json(&json!({"active": false}))
        .send()
        .await
        .expect("answers");
    assert_eq!(deactivated.status(), 200);
    assert_eq!(
        app.get(&format!("/products/{id}")).await.status(),
        404,
        "hidden from the public"
    );
    let listing = app.get_json("/products?sku=POSTER-A2").await;
    assert_eq!(listing["items"].as_array().map(Vec::len), Some(0));
    let admin_view = app
        .as_admin(app.http.get(app.at(&format!("/products/{id}"))))
        .send()
        .await
        .expect("answers");
    assert_eq!(admin_view.status(), 200);
    assert_eq!(
        app.reserve("deactivated-1", &[("POSTER-A2", 1)])
            .await
            .status(),
        422,
        "not for sale"
    );
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let response = app
        .get("/products?sort=random&page_size=1000&min_price=5&max_price=1")
        .await;
    assert_eq!(response.status(), 422);
    let body = problem(response).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["sort", "page_size", "min_price"]);
    assert_eq!(app.get("/products?cursor=forged").await.status(), 422);
    assert_eq!(app.get("/products?page_size=abc").await.status(), 400);
    assert_eq!(
        app.get("/products?include_inactive=true").await.status(),
        422,
        "admins only"
    );
}
