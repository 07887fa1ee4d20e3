//! orders as a consumer of the catalog, payments and shipping: the real orders service,
//! started on port 0, runs three checkouts against Pact mock servers of its neighbours: one
//! confirmed and then cancelled by its customer, one whose card is declined, one for more
//! than is in stock.

use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use orders::{Application, Config, Settings};
use pact_consumer::builders::RequestBuilder;
use pact_consumer::prelude::*;
use pact_models::generators::{Generator, GeneratorCategory};
use pact_models::path_exp::DocPath;
use pact_models::prelude::DataType;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::pact;

const ALICE: &str = "0190b5d8-0000-7000-8000-00000000a11c";
/// Payment-method tokens as the consumer sends them; the provider's test replaces them with
/// tokens it registered for the state (`${paymentMethod}`).
const CARD_ACCEPTED: &str = "pm_accepted";
const CARD_DECLINED: &str = "pm_declined";

/// Any idempotency key (orders sends one per saga step).
macro_rules! idempotency_key {
    () => {
        term!("^[A-Za-z0-9:._-]{1,200}$", "saga-0190b5d8:reserve")
    };
}

/// The idempotency key of a request: any key when orders calls the mock; a fresh UUID each time
/// the provider is verified (one key for two different requests would rightly be refused).
fn fresh_key(request: &mut RequestBuilder) {
    request.header("idempotency-key", idempotency_key!());
    if let Ok(header) = DocPath::new("idempotency-key") {
        request.generators().add_generator_with_subcategory(
            &GeneratorCategory::HEADER,
            header,
            Generator::Uuid(None),
        );
    }
}

/// Marks `path` of a JSON request body to be filled from the provider state's `expression`.
fn body_from_state(request: &mut RequestBuilder, path: &str, expression: &str) {
    if let Ok(path) = DocPath::new(path) {
        request.generators().add_generator_with_subcategory(
            &GeneratorCategory::BODY,
            path,
            Generator::ProviderStateGenerator(expression.to_owned(), Some(DataType::STRING)),
        );
    }
}

/// A problem+json body with `slug`.
fn problem(slug: &str, status: u16, detail: &str) -> JsonPattern {
    json_pattern!({
        // orders tells a refusal (4xx) from a failure (5xx, no answer) by status, and shows
        // the detail; the problem's type is not part of what it relies on.
        "type": term!("^urn:bazaar:problem:[a-z-]+$", format!("urn:bazaar:problem:{slug}")),
        "title": like!("A title"),
        "status": status,
        "detail": like!(detail),
    })
}

async fn catalog() -> Box<dyn ValidatingMockServer> {
    pact("orders", "catalog")
        .interaction("the prices of a mug", "", |mut i| {
            i.given("MUG-STONE is for sale");
            i.request
                .get()
                .path("/products")
                .query_param("page_size", "100")
                .query_param("sku", "MUG-STONE");
            i.response.ok().json_body(json_pattern!({
                "items": each_like!({
                    "sku": "MUG-STONE",
                    "name": like!("Stoneware Mug"),
                    "price": {"amount_minor": like!(1800), "currency": like!("USD")},
                    "active": like!(true),
                }),
            }));
            i
        })
        .interaction("the prices of a book", "", |mut i| {
            i.given("BOOK-RUST is for sale");
            i.request
                .get()
                .path("/products")
                .query_param("page_size", "100")
                .query_param("sku", "BOOK-RUST");
            i.response.ok().json_body(json_pattern!({
                "items": each_like!({
                    "sku": "BOOK-RUST",
                    "name": like!("The Rust Programming Language"),
                    "price": {"amount_minor": like!(3900), "currency": like!("USD")},
                    "active": like!(true),
                }),
            }));
            i
        })
        .interaction("the prices of a tee", "", |mut i| {
            i.given("TEE-ORG-S is for sale");
            i.request
                .get()
                .path("/products")
                .query_param("page_size", "100")
                .query_param("sku", "TEE-ORG-S");
            i.response.ok().json_body(json_pattern!({
                "items": each_like!({
                    "sku": "TEE-ORG-S",
                    "name": like!("Organic Tee, small"),
                    "price": {"amount_minor": like!(2400), "currency": like!("USD")},
                    "active": like!(true),
                }),
            }));
            i
        })
        .interaction("holding stock for two mugs", "", |mut i| {
            i.given("MUG-STONE is in stock");
            i.request
                .post()
                .path("/reservations")
                .content_type("application/json")
                .json_body(json!({"items": [{"sku": "MUG-STONE", "quantity": 2}]}));
            fresh_key(&mut i.request);
            i.response
                .created()
                .json_body(json_pattern!({"id": like!("res-mug"), "status": "held"}));
            i
        })
        .interaction("holding stock for a book", "", |mut i| {
            i.given("BOOK-RUST is in stock");
            i.request
                .post()
                .path("/reservations")
                .content_type("application/json")
                .json_body(json!({"items": [{"sku": "BOOK-RUST", "quantity": 1}]}));
            fresh_key(&mut i.request);
            i.response
                .created()
                .json_body(json_pattern!({"id": like!("res-book"), "status": "held"}));
            i
        })
        .interaction("holding more tees than are in stock", "", |mut i| {
            i.given("TEE-ORG-S has fewer than 100 units in stock");
            i.request
                .post()
                .path("/reservations")
                .content_type("application/json")
                .json_body(json!({"items": [{"sku": "TEE-ORG-S", "quantity": 100}]}));
            fresh_key(&mut i.request);
            i.response
                .status(409)
                .content_type("application/problem+json")
                .json_body(problem(
                    "insufficient-stock",
                    409,
                    "only 40 of TEE-ORG-S left",
                ));
            i
        })
        .interaction("committing a held reservation", "", |mut i| {
            i.given("a reservation is held");
            i.request.post().path_from_provider_state(
                "/reservations/${reservationId}/commit",
                term!(
                    "^/reservations/[^/]+/commit$",
                    "/reservations/res-mug/commit"
                ),
            );
            i.response
                .ok()
                .json_body(json_pattern!({"id": like!("res-mug"), "status": "committed"}));
            i
        })
        .interaction(
            "returning the stock of a committed reservation",
            "",
            |mut i| {
                i.given("a reservation was committed");
                i.request.post().path_from_provider_state(
                    "/reservations/${reservationId}/return",
                    term!(
                        "^/reservations/[^/]+/return$",
                        "/reservations/res-mug/return"
                    ),
                );
                i.response
                    .ok()
                    .json_body(json_pattern!({"id": like!("res-mug"), "status": "returned"}));
                i
            },
        )
        .interaction("releasing a held reservation", "", |mut i| {
            i.given("a reservation is held");
            i.request.delete().path_from_provider_state(
                "/reservations/${reservationId}",
                term!("^/reservations/[^/]+$", "/reservations/res-book"),
            );
            i.response
                .ok()
                .json_body(json_pattern!({"id": like!("res-book"), "status": "released"}));
            i
        })
        .start_mock_server(None, None)
}

async fn payments() -> Box<dyn ValidatingMockServer> {
    pact("orders", "payments")
        .interaction("charging an accepted card", "", |mut i| {
            i.given("the customer has a card that is accepted");
            i.request
                .post()
                .path("/charges")
                .content_type("application/json")
                .json_body(json_pattern!({
                    "order_id": like!("0190b5d8-1111-7000-8000-000000000001"),
                    "user_id": like!(ALICE),
                    "amount": {"amount_minor": like!(3600), "currency": like!("USD")},
                    "payment_method": CARD_ACCEPTED,
                }));
            fresh_key(&mut i.request);
            body_from_state(&mut i.request, "$.payment_method", "${paymentMethod}");
            body_from_state(&mut i.request, "$.user_id", "${userId}");
            i.response
                .created()
                .json_body(json_pattern!({"id": like!("ch-1"), "status": "succeeded"}));
            i
        })
        .interaction("charging a card that is declined", "", |mut i| {
            i.given("the customer has a card that is declined");
            i.request
                .post()
                .path("/charges")
                .content_type("application/json")
                .json_body(json_pattern!({
                    "order_id": like!("0190b5d8-1111-7000-8000-000000000002"),
                    "user_id": like!(ALICE),
                    "amount": {"amount_minor": like!(3900), "currency": like!("USD")},
                    "payment_method": CARD_DECLINED,
                }));
            fresh_key(&mut i.request);
            body_from_state(&mut i.request, "$.payment_method", "${paymentMethod}");
            body_from_state(&mut i.request, "$.user_id", "${userId}");
            i.response
                .status(402)
                .content_type("application/problem+json")
                .json_body(problem("card-declined", 402, "the card was declined"));
            i
        })
        .interaction("refunding a charge", "", |mut i| {
            i.given("a charge succeeded");
            i.request
                .post()
                .path_from_provider_state(
                    "/charges/${chargeId}/refunds",
                    term!("^/charges/[^/]+/refunds$", "/charges/ch-1/refunds"),
                )
                .content_type("application/json")
                .json_body(json!({}));
            fresh_key(&mut i.request);
            i.response
                .created()
                .json_body(json_pattern!({"id": like!("rf-1"), "charge_id": like!("ch-1")}));
            i
        })
        .start_mock_server(None, None)
}

async fn shipping() -> Box<dyn ValidatingMockServer> {
    pact("orders", "shipping")
        .interaction("creating a shipment", "", |mut i| {
            i.given("shipping is open");
            i.request
                .post()
                .path("/shipments")
                .content_type("application/json")
                .json_body(json_pattern!({
                    "order_id": like!("0190b5d8-1111-7000-8000-000000000001"),
                    "user_id": like!(ALICE),
                    "address": {
                        "name": like!("Alice"),
                        "line1": like!("1 Wonder Way"),
                        "city": like!("Oxford"),
                        "postal_code": like!("OX1 1AA"),
                        "country": like!("GB"),
                    },
                    "items": each_like!({"sku": like!("MUG-STONE"), "quantity": like!(2)}),
                }));
            fresh_key(&mut i.request);
            i.response
                .created()
                .json_body(json_pattern!({"id": like!("sh-1"), "status": like!("label_created")}));
            i
        })
        .interaction("cancelling a shipment that has not shipped", "", |mut i| {
            i.given("a shipment was created");
            i.request.post().path_from_provider_state(
                "/shipments/${shipmentId}/cancel",
                term!("^/shipments/[^/]+/cancel$", "/shipments/sh-1/cancel"),
            );
            i.response
                .ok()
                .json_body(json_pattern!({"id": like!("sh-1"), "status": "cancelled"}));
            i
        })
        .start_mock_server(None, None)
}

/// An orders service whose neighbours are the mock servers.
struct Orders {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

impl Drop for Orders {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Orders {
    async fn start(catalog: &str, payments: &str, shipping: &str) -> Self {
        let db = TestDatabase::sqlite();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        chassis.discovery.call_timeout = Duration::from_secs(2);
        for (service, url) in [
            ("catalog", catalog),
            ("payments", payments),
            ("shipping", shipping),
            // Never called without `from_cart`.
            ("cart", "http://127.0.0.1:9"),
        ] {
            chassis
                .discovery
                .static_instances
                .insert(service.into(), vec![url.trim_end_matches('/').to_owned()]);
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
        .expect("orders starts");
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            _db: db,
        }
    }

    fn as_alice(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("x-bazaar-user-id", ALICE)
            .header("x-bazaar-user-roles", "customer")
    }

    async fn place(&self, sku: &str, quantity: i64, card: &str) -> String {
        let body = json!({
            "items": [{"sku": sku, "quantity": quantity}],
            "shipping_address": {"name": "Alice", "line1": "1 Wonder Way", "city": "Oxford", "postal_code": "OX1 1AA", "country": "GB"},
            "payment_method": card,
        });
        let placed = self
            .as_alice(self.http.post(format!("{}/orders", self.url)))
            .json(&body)
            .send()
            .await
            .expect("orders answers");
        assert_eq!(placed.status(), 202, "{:?}", placed.text().await);
        let order: Value = placed.json().await.expect("json");
        order["id"].as_str().expect("id").to_owned()
    }

    /// The order once its saga has nothing left to do.
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..20 {
            let order: Value = self
                .as_alice(self.http.get(format!("{}/orders/{id}?wait=5s", self.url)))
                .send()
                .await
                .expect("orders answers")
                .json()
                .await
                .expect("json");
            if matches!(
                order["checkout"]["status"].as_str(),
                Some("confirmed" | "cancelled")
            ) {
                return order;
            }
        }
        panic!("order {id} did not settle");
    }

    async fn cancel(&self, id: &str) {
        let cancelled = self
            .as_alice(self.http.post(format!("{}/orders/{id}/cancel", self.url)))
            .json(&json!({}))
            .send()
            .await
            .expect("orders answers");
        assert_eq!(cancelled.status(), 202, "{:?}", cancelled.text().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkouts_ask_the_catalog_payments_and_shipping_as_agreed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (catalog, payments, shipping) = (catalog().await, payments().await, shipping().await);
    let orders = Orders::start(
        catalog.url().as_str(),
        payments.url().as_str(),
        shipping.url().as_str(),
    )
    .await;

    // Confirmed (priced, held, charged, shipped, committed), then cancelled by the customer
    // (shipment cancelled, refunded, stock returned).
    let mugs = orders.place("MUG-STONE", 2, CARD_ACCEPTED).await;
    let order = orders.settled(&mugs).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    orders.cancel(&mugs).await;
    let order = orders.settled(&mugs).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");

    // Declined: the stock is released.
    let book = orders.place("BOOK-RUST", 1, CARD_DECLINED).await;
    let order = orders.settled(&book).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert!(
        order["cancel_reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "{order}"
    );

    // Not enough stock: nothing is charged.
    let tees = orders.place("TEE-ORG-S", 100, CARD_ACCEPTED).await;
    let order = orders.settled(&tees).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert!(
        order["cancel_reason"]
            .as_str()
            .is_some_and(|r| r.contains("stock")),
        "{order}"
    );
    drop(orders);
    // Dropping the mock servers checks that every interaction happened, and writes the pacts.
}
