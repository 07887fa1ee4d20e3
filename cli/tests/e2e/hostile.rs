//! Hostile input through the gateway, against the whole system: every request gets a clear
//! 4xx problem (never a 5xx), and nothing is changed by a refused request.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checkout::shopper;
use crate::system::{Running, json_of};

/// Sends `request`; asserts a 4xx problem+json (`status` when given) and returns its type.
async fn refused(
    request: reqwest::RequestBuilder,
    status: Option<StatusCode>,
    what: &str,
) -> String {
    let response = request.send().await.expect("answers");
    let got = response.status();
    assert!(got.is_client_error(), "{what}: {got}");
    if let Some(status) = status {
        assert_eq!(got, status, "{what}");
    }
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "{what}");
    let body: Value = response.json().await.expect("problem json");
    body["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(dir.path(), &[]);
    let http = &running.http;
    let ada = shopper(&running, "hostile@example.com").await;
    let products_before = json_of(http.get(running.at("/api/products?page_size=100"))).await;
    let keys = AtomicUsize::new(0);
    let order = |body: Vec<u8>| {
        http.post(running.at("/api/orders"))
            .bearer_auth(&ada.token)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                format!("hostile-{}", keys.fetch_add(1, Ordering::Relaxed)),
            )
            .body(body)
    };
    let address = json!({"name": "Ada", "line1": "1 St", "city": "London", "postal_code": "N1", "country": "GB"});
    let order_of = |items: Value| {
        serde_json::to_vec(
            &json!({"items": items, "shipping_address": address, "payment_method": ada.card}),
        )
        .expect("json")
    };

    // Oversized body: refused from its announced length, before a byte of it is read. (A
    // client that keeps writing a body the server has refused may see its connection reset
    // before it reads the 413, so the request goes out by hand, head only.)
    let head = oversized_head(&running, &ada.token, 3 << 20).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    // JSON nested past any reason.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let kind = refused(order(deep.into_bytes()), None, "deep JSON").await;
    assert!(kind.ends_with("-body"), "{kind}");
    // Invalid UTF-8 inside a JSON string.
    let mut broken = br#"{"items":[{"sku":"MUG-"#.to_vec();
    broken.extend([0xff, 0xfe]);
    broken.extend(br#"","quantity":1}]}"#);
    refused(
        order(broken),
        Some(StatusCode::BAD_REQUEST),
        "invalid UTF-8 in the body",
    )
    .await;
    // Not JSON at all, and not saying it is.
    refused(
        http.post(running.at("/api/orders"))
            .bearer_auth(&ada.token)
            .header("content-type", "text/plain")
            .body("items=MUG-STONE"),
        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "a form body",
    )
    .await;
    // Quantities: negative, zero, huge, fractional, beyond any integer.
    for quantity in [
        json!(-5),
        json!(0),
        json!(1_000_000_000_000_i64),
        json!(1.5),
        json!(1e300),
    ] {
        let body = order_of(json!([{"sku": "MUG-STONE", "quantity": quantity}]));
        refused(order(body), None, &format!("quantity {quantity}")).await;
    }
    let beyond = br#"{"items":[{"sku":"MUG-STONE","quantity":184467440737095516160000}]}"#;
    refused(order(beyond.to_vec()), None, "a quantity beyond u64").await;
    // SQL metacharacters are data: a sku that does not exist, a search that finds nothing.
    let injected = order_of(json!([{"sku": "MUG-STONE' OR '1'='1", "quantity": 1}]));
    refused(
        order(injected),
        Some(StatusCode::UNPROCESSABLE_ENTITY),
        "a sku with SQL in it",
    )
    .await;
    let search =
        json_of(http.get(running.at("/api/products?q=%27%3B%20DROP%20TABLE%20products%3B%20--")))
            .await;
    assert_eq!(search["items"], json!([]), "{search}");
    refused(
        http.post(running.at("/api/auth/signup")).json(&json!({
            "email": "x'); DROP TABLE users; --@example.com", "password": "correct horse battery", "name": "Bobby"
        })),
        Some(StatusCode::UNPROCESSABLE_ENTITY),
        "an email with SQL in it",
    )
    .await;
    // Invalid UTF-8 and nonsense in the query string and the path.
    refused(
        http.get(format!("{}/api/products?min_price=%ff%fe", running.gateway)),
        Some(StatusCode::BAD_REQUEST),
        "invalid UTF-8 in the query",
    )
    .await;
    refused(
        http.get(running.at("/api/products?min_price=99999999999999999999999")),
        Some(StatusCode::BAD_REQUEST),
        "a price beyond i64",
    )
    .await;
    refused(
        http.get(running.at("/api/products?page_size=-1")),
        None,
        "a negative page size",
    )
    .await;
    refused(
        http.get(running.at("/api/orders/..%2F..%2Fetc%2Fpasswd"))
            .bearer_auth(&ada.token),
        None,
        "a path that climbs",
    )
    .await;
    refused(
        http.post(running.at("/api/cart/items"))
            .bearer_auth(&ada.token)
            .json(&json!({"sku": "MUG-STONE", "quantity": -1})),
        Some(StatusCode::UNPROCESSABLE_ENTITY),
        "a negative cart quantity",
    )
    .await;

    // Nothing changed: the catalog is as it was, and Ada has no orders.
    let products_after = json_of(http.get(running.at("/api/products?page_size=100"))).await;
    assert_eq!(products_after, products_before);
    let orders = json_of(http.get(running.at("/api/orders")).bearer_auth(&ada.token)).await;
    assert_eq!(orders["items"], json!([]), "{orders}");
    // And nobody answered with a 5xx along the way.
    let metrics = http
        .get(format!("{}/metrics", running.gateway))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("bazaar_http_server_requests_total{") && l.contains("status=\"5"))
        // Readiness answers 503 until the gateway has registered: that is its job.
        .filter(|l| !l.contains("route=\"/health/"))
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_publishes_the_public_api_from_the_services_documents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(dir.path(), &[]);
    let document = json_of(running.http.get(running.at("/api/openapi.json"))).await;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/products", "get"),
        ("/api/products", "post"),
        ("/api/products/{id}", "get"),
        ("/api/products/{id}/restock", "post"),
        ("/api/categories", "get"),
        ("/api/dashboard", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "no {method} {path} in {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        paths
            .keys()
            .all(|p| p.starts_with("/api/") || p.starts_with("/.well-known/")),
        "internal routes leaked: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(
        document["components"]["schemas"]
            .get("ProductView")
            .is_some()
    );
    assert!(
        document.get("x-bazaar-missing").is_none(),
        "every service behind the gateway publishes its document: {}",
        document["x-bazaar-missing"]
    );
    for (service, path) in [
        ("users", "/api/auth/login"),
        ("orders", "/api/orders/{id}"),
        ("cart", "/api/cart/items/{sku}"),
        ("payments", "/api/payment-methods"),
        ("shipping", "/api/shipments"),
        ("notifications", "/api/emails"),
        ("recommendations", "/api/recommendations/for-me"),
    ] {
        assert!(paths.contains_key(path), "{service}: no {path}");
    }
    // Each service's own document, as the operator reads it over mTLS.
    let catalog = json_of(
        running
            .http
            .get(format!("{}/openapi.json", running.url_of("catalog"))),
    )
    .await;
    assert!(catalog["paths"].get("/reservations").is_some(), "{catalog}");
    assert_eq!(catalog["info"]["version"], env!("CARGO_PKG_VERSION"));
    for service in ["registry", "telemetry", "orders", "payments"] {
        let own = json_of(
            running
                .http
                .get(format!("{}/openapi.json", running.url_of(service))),
        )
        .await;
        assert!(
            own["paths"].as_object().is_some_and(|p| !p.is_empty()),
            "{service}: {own}"
        );
    }
}

/// Sends the head of a `POST /api/orders` announcing a body of `length` bytes, and none of the
/// body; returns the head of the answer.
async fn oversized_head(running: &Running, token: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = running.gateway.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connects");
    let request = format!(
        "POST /api/orders HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("head sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("answered without waiting for the body")
                .expect("readable");
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}
