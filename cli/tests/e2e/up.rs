use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::checkout::{assert_invariant, login, place, register_card, settled};
use crate::system::{BIN, PgPrefix, Running, WITH_DATABASES, alive, production};

/// Orders two products and reads the order back: catalog prices, right totals, checked out to
/// CONFIRMED with the invariant holding, and hidden from another customer.
async fn order_two_products(running: &Running, token: &str) {
    let card = register_card(running, token, "4242424242424242").await;
    let mug_before: Value = running
        .get("/api/products/MUG-STONE", None)
        .await
        .json()
        .await
        .expect("json");
    let id = place(running, token, &[("MUG-STONE", 2), ("BOOK-RUST", 1)], &card).await;
    let id = id.as_str();
    let path = format!("/api/orders/{id}");
    let read = settled(running, token, id).await;
    assert_eq!(read["status"], "CONFIRMED", "{read}");
    let admin = login(running, "admin@bazaar.example", "keys-to-the-shop").await;
    assert_invariant(running, &admin, &read).await;
    assert_eq!(
        read["total"],
        json!({"amount_minor": 2 * 1800 + 3900, "currency": "USD"})
    );
    assert_eq!(read["lines"][1]["line_total"]["amount_minor"], 3900);
    let mug_after: Value = running
        .get("/api/products/MUG-STONE", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        mug_after["available"].as_i64(),
        mug_before["available"].as_i64().map(|n| n - 2),
        "two mugs sold"
    );
    let someone_else = login(running, "demo@bazaar.example", "shop-till-you-drop").await;
    assert_eq!(running.get(&path, Some(&someone_else)).await.status(), 404);
}

#[tokio::test]
async fn up_serves_the_tour_and_survives_losing_a_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &["--replicas", "users=2"]);
    let output = running.output();
    // The production rehearsal runs two of every service but the registry and trace store.
    let instances = if production() { 22 } else { 13 };
    assert!(
        output.contains(&format!("Bazaar is up. {instances} instances ready")),
        "{output}"
    );
    assert!(
        output.contains("demo@bazaar.example / shop-till-you-drop"),
        "{output}"
    );

    // The README's tour: sign up, log in, read the profile.
    let signup = running.post_json("/api/auth/signup", &json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"})).await;
    assert_eq!(signup.status(), 201);
    let token = login(&running, "ada@example.com", "correct horse battery").await;
    let me: Value = running
        .get("/api/users/me", Some(&token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], "ada@example.com");
    // The seeded demo account works too.
    login(&running, "demo@bazaar.example", "shop-till-you-drop").await;

    // HTTPS with HTTP/2, trusting the development CA `up` made in the data directory.
    let https = running.run_state().expect("run.json")["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["service"] == "gateway")
        .and_then(|i| i["https"].as_str())
        .expect("the gateway serves HTTPS")
        .to_owned();
    assert!(
        output.contains(&format!("HTTPS       {https}/api/")),
        "{output}"
    );
    let ca = std::fs::read(dir.path().join("pki").join("ca.pem")).expect("ca.pem");
    let secure = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("certificate")])
        .build()
        .expect("client");
    let over_tls = secure
        .get(format!("{https}/api/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("https answers");
    assert_eq!(over_tls.version(), reqwest::Version::HTTP_2);
    assert_eq!(over_tls.status(), 200);

    // The seeded catalog is public; changing it takes an administrator.
    let products: Value = running
        .get("/api/products?page_size=100", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(products["items"].as_array().map(Vec::len), Some(50));
    let categories: Value = running
        .get("/api/categories", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(categories["items"].as_array().map(Vec::len), Some(5));
    let poster = json!({"sku": "POSTER-1", "name": "Poster", "price": {"amount_minor": 900, "currency": "USD"}, "category": "books"});
    let as_customer = running
        .http
        .post(running.at("/api/products"))
        .bearer_auth(&token)
        .json(&poster)
        .send()
        .await
        .expect("answers");
    assert_eq!(as_customer.status(), 403);
    let admin = login(&running, "admin@bazaar.example", "keys-to-the-shop").await;
    let as_admin = running
        .http
        .post(running.at("/api/products"))
        .bearer_auth(&admin)
        .json(&poster)
        .send()
        .await
        .expect("answers");
    assert_eq!(as_admin.status(), 201);

    order_two_products(&running, &token).await;

    // `bazaar status` sees every instance.
    let status = Command::new(BIN)
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{table}");
    assert!(
        table.contains("users-1") && table.contains("users-2") && table.contains("gateway-1"),
        "{table}"
    );
    // Every instance but the registry, which does not list itself.
    let listed = instances - 1;
    assert!(
        table.contains(&format!("{listed} of {listed} instances passing")),
        "{table}"
    );

    // Kill one users replica outright: every request still succeeds, reads and writes alike.
    let users = running.instances("users");
    assert_eq!(users.len(), 2);
    let (killed, pid) = users[0].clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("killed");
    for _ in 0..30 {
        let response = running.get("/api/users/me", Some(&token)).await;
        assert_eq!(
            response.status(),
            200,
            "after losing a replica:\n{}",
            running.output()
        );
    }
    login(&running, "ada@example.com", "correct horse battery").await;

    // `up` notices the crash of that instance and restarts it.
    let crash = format!("{killed} exited unexpectedly (signal: 9 (SIGKILL))");
    let restart = format!("{killed} restarted on");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = running.output();
        if output.contains(&crash) && output.contains(&restart) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no crash and restart of {killed} reported:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C stops everything, gracefully, and leaves no process behind.
    let pids = running.all_pids();
    let (status, output) = running.interrupt();
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("Stopped."), "{output}");
    assert!(output.contains("deregistered"), "{output}");
    for pid in pids {
        assert!(!alive(pid), "instance {pid} outlived up");
    }
    assert!(!dir.path().join("run.json").exists());
    assert!(dir.path().join("logs").join("users-2.log").exists());
}

#[tokio::test]
async fn a_second_up_reuses_the_data_and_reset_wipes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("shop");
    let first = Running::start(&data, &[]);
    let signup = first.post_json("/api/auth/signup", &json!({"email": "grace@example.com", "password": "correct horse battery", "name": "Grace"})).await;
    assert_eq!(signup.status(), 201);

    // A second `up` on a running data directory is refused.
    let twice = Command::new(BIN)
        .args(["up", "--base-port", "0", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("is already running"));
    let reset = Command::new(BIN)
        .args(["reset", "--yes", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    assert_eq!(reset.status.code(), Some(1), "no reset while running");
    let (status, _) = first.interrupt_keeping_data();
    assert!(status.success());
    let ca = std::fs::read(data.join("pki").join("ca.pem")).expect("ca.pem");

    let second = Running::start(&data, &[]);
    assert_eq!(
        std::fs::read(data.join("pki").join("ca.pem")).expect("ca.pem"),
        ca,
        "the development CA is made once, so trusting it lasts"
    );
    login(&second, "grace@example.com", "correct horse battery").await;
    login(&second, "demo@bazaar.example", "shop-till-you-drop").await;
    let (status, _) = second.interrupt();
    assert!(status.success());

    // Without a terminal to ask, reset wants --yes; with it, the data is gone.
    let unconfirmed = Command::new(BIN)
        .args(["reset", "--data-dir"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(unconfirmed.status.code(), Some(64));
    assert!(data.exists());
    let confirmed = Command::new(BIN)
        .args(["reset", "--yes", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    assert!(confirmed.status.success());
    assert!(!data.exists());
}

#[tokio::test]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
async fn up_runs_on_postgresql() {
    let pg = PgPrefix::new("up");
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &["--db", &pg.url()]);
    let signup = running
        .post_json(
            "/api/auth/signup",
            &json!({"email": "pg@example.com", "password": "correct horse battery", "name": "Pg"}),
        )
        .await;
    assert_eq!(signup.status(), 201);
    let token = login(&running, "pg@example.com", "correct horse battery").await;
    order_two_products(&running, &token).await;
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
    assert!(
        !dir.path().join("users.db").exists(),
        "no SQLite file when PostgreSQL is used"
    );
    pg.drop_all(&WITH_DATABASES).await;
}

/// Fills a cart anonymously, signs up and logs in, and checks out the merged cart.
async fn anonymous_cart_to_order(running: &Running, email: &str) {
    let first = running
        .post_json(
            "/api/cart/items",
            &json!({"sku": "MUG-STONE", "quantity": 2}),
        )
        .await;
    assert_eq!(first.status(), 200, "{}", running.output());
    let cart_id = first.headers()["x-cart-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let second = running
        .http
        .post(running.at("/api/cart/items"))
        .header("x-cart-id", &cart_id)
        .json(&json!({"sku": "BOOK-RUST", "quantity": 1}))
        .send()
        .await
        .expect("answers");
    assert_eq!(second.status(), 200);

    let signup = running
        .post_json(
            "/api/auth/signup",
            &json!({"email": email, "password": "correct horse battery", "name": "Shopper"}),
        )
        .await;
    assert_eq!(signup.status(), 201);
    let token = login(running, email, "correct horse battery").await;
    let merged: Value = running
        .http
        .get(running.at("/api/cart"))
        .bearer_auth(&token)
        .header("x-cart-id", &cart_id)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        merged["item_count"], 3,
        "the anonymous cart joined the customer's: {merged}"
    );
    assert_eq!(
        merged["total"],
        json!({"amount_minor": 7500, "currency": "USD"})
    );

    let card = register_card(running, &token, "4242424242424242").await;
    let order = json!({"from_cart": true, "shipping_address": {"name": "Shopper", "line1": "1 Main St", "city": "Leeds", "postal_code": "LS1", "country": "GB"}, "payment_method": card});
    let placed = running
        .http
        .post(running.at("/api/orders"))
        .bearer_auth(&token)
        .json(&order)
        .send()
        .await
        .expect("answers");
    assert_eq!(placed.status(), 202, "{}", running.output());
    let placed: Value = placed.json().await.expect("json");
    assert_eq!(
        placed["total"],
        json!({"amount_minor": 7500, "currency": "USD"})
    );
    let skus: Vec<&str> = placed["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["sku"].as_str())
        .collect();
    assert_eq!(skus, ["BOOK-RUST", "MUG-STONE"]);
    let confirmed = settled(running, &token, placed["id"].as_str().expect("id")).await;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    let emptied: Value = running
        .get("/api/cart", Some(&token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        emptied["item_count"], 0,
        "the cart is emptied once the order is confirmed"
    );
}

#[tokio::test]
async fn an_anonymous_cart_is_checked_out_after_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    anonymous_cart_to_order(&running, "cart@example.com").await;
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
#[ignore = "needs Redis at 127.0.0.1:6379"]
async fn carts_on_redis_are_shared_by_cart_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(
        dir.path(),
        &[
            "--cart-store",
            "redis://127.0.0.1:6379",
            "--replicas",
            "cart=2",
        ],
    );
    assert_eq!(running.pids("cart").len(), 2);
    let email = format!("redis-{}@example.com", std::process::id());
    anonymous_cart_to_order(&running, &email).await;
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
#[ignore = "needs etcd at 127.0.0.1:2379 (or BAZAAR_TEST_ETCD_URL)"]
async fn up_runs_on_etcd_in_the_registrys_place() {
    let etcd = std::env::var("BAZAAR_TEST_ETCD_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let prefix = format!("/e2e-{}-etcd/", std::process::id());
    let url = format!("{}{prefix}", etcd.trim_end_matches('/'));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let running = Running::start(dir.path(), &["--etcd", &url]);
    assert!(
        running.instances("registry").is_empty(),
        "no registry runs beside etcd"
    );

    // Every service found every other through etcd: a checkout goes through.
    let signup = running
        .post_json(
            "/api/auth/signup",
            &json!({"email": "etcd@example.com", "password": "correct horse battery", "name": "Etcd"}),
        )
        .await;
    assert_eq!(signup.status(), 201);
    let token = login(&running, "etcd@example.com", "correct horse battery").await;
    order_two_products(&running, &token).await;

    // The operator's commands read and write etcd too.
    let status = Command::new(BIN)
        .args(["status", "--data-dir", &data])
        .output()
        .expect("runs");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{table}");
    for service in ["gateway", "users", "catalog", "orders", "payments"] {
        assert!(table.contains(service), "{service} listed: {table}");
    }
    // A fault rule written to etcd reaches the catalog's instance, and its removal too.
    let faults = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("faults")
            .args(args)
            .args(["--data-dir", &data])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
    };
    let catalog_answers = |wanted: fn(reqwest::StatusCode) -> bool| {
        let running = &running;
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let answered = running.get("/api/products/MUG-STONE", None).await.status();
                if wanted(answered) {
                    return;
                }
                assert!(Instant::now() < deadline, "still {answered}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    faults(&[
        "set",
        "etcd-e2e",
        "--service",
        "catalog",
        "--error-rate",
        "1",
        "--status",
        "500",
    ]);
    catalog_answers(|status| status.is_server_error()).await;
    faults(&["clear", "etcd-e2e"]);
    catalog_answers(|status| status.is_success()).await;

    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
    // Every instance revoked its lease on the way out.
    let client = chassis::discovery::etcd::EtcdClient::new(
        &chassis::config::EtcdConfig {
            endpoints: vec![etcd],
            prefix,
        },
        None,
    )
    .expect("an etcd client");
    let left = client.instances().await.expect("etcd answers");
    client.clear().await.expect("the test's keys are deleted");
    assert!(
        left.instances.is_empty(),
        "instances left registered: {:?}",
        left.instances
    );
}
