//! Service identity in the running system: every service listener takes only certificates
//! from the CA `up` made, and each route only the services it names.

use serde_json::{Value, json};

use crate::system::{Running, client_as, json_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_accept_only_the_callers_their_routes_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(dir.path(), &[]);
    let payments = running.url_of("payments");
    let registry = running.run_state().expect("run.json")["registry"]
        .as_str()
        .expect("registry")
        .to_owned();
    assert!(payments.starts_with("https://"), "{payments}");
    let as_cart = client_as(&running.data_dir, "cart");
    let as_orders = client_as(&running.data_dir, "orders");

    // Only orders may charge: cart gets 403, orders gets as far as validating the body.
    let charge = json!({"order_id": "nope"});
    let refused = as_cart
        .post(format!("{payments}/charges"))
        .json(&charge)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:bazaar:problem:forbidden-caller");
    assert_eq!(problem["detail"], "cart may not call POST /charges");
    let validated = as_orders
        .post(format!("{payments}/charges"))
        .json(&charge)
        .send()
        .await
        .expect("answers");
    assert!(
        validated.status().is_client_error() && validated.status() != 403,
        "orders was refused: {}",
        validated.status()
    );

    // Without a certificate there is no connection at all, health checks included.
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(running.data_dir.join("pki").join("ca.pem")).expect("ca.pem"),
        )
        .expect("certificate")])
        .build()
        .expect("client");
    for url in [
        format!("{payments}/health/ready"),
        format!("{registry}/v1/services"),
    ] {
        assert!(
            anonymous.get(&url).send().await.is_err(),
            "{url} answered a client without a certificate"
        );
    }

    // The registry: a service registers only itself, and only the operator sets policies.
    let impostor = json!({
        "service": "payments",
        "address": "https://127.0.0.1:1",
        "version": "9.9.9",
        "health_url": "https://127.0.0.1:1/health/ready",
    });
    let refused = as_cart
        .put(format!("{registry}/v1/instances/payments-evil"))
        .json(&impostor)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
    let refused = as_cart
        .put(format!("{registry}/v1/kv/traffic/payments"))
        .json(&json!({"stable": "9.9.9"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
    let instances = json_of(as_cart.get(format!("{registry}/v1/services/payments"))).await;
    assert!(
        !instances.to_string().contains("payments-evil"),
        "{instances}"
    );

    // Passwords and tokens never reach a log: sign up, fail and succeed at logging in, refresh,
    // call with the token, then read every line every instance wrote.
    let password = "a secret nobody logs 7d1f";
    let gateway = &running.gateway;
    let http = &running.http;
    let signed_up = http
        .post(format!("{gateway}/api/auth/signup"))
        .json(&json!({"email": "quiet@example.com", "password": password, "name": "Quiet"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(signed_up.status(), 201);
    let wrong = http
        .post(format!("{gateway}/api/auth/login"))
        .json(&json!({"email": "quiet@example.com", "password": format!("{password}!")}))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 401);
    let tokens = json_of(
        http.post(format!("{gateway}/api/auth/login"))
            .json(&json!({"email": "quiet@example.com", "password": password})),
    )
    .await;
    let refreshed = json_of(
        http.post(format!("{gateway}/api/auth/refresh"))
            .json(&json!({"refresh_token": tokens["refresh_token"]})),
    )
    .await;
    let access = refreshed["access_token"].as_str().expect("access token");
    let me = http
        .get(format!("{gateway}/api/users/me?token={access}"))
        .bearer_auth(access)
        .send()
        .await
        .expect("answers");
    assert_eq!(me.status(), 200);
    let secrets = [
        password,
        tokens["access_token"].as_str().expect("access"),
        tokens["refresh_token"].as_str().expect("refresh"),
        access,
        refreshed["refresh_token"].as_str().expect("refresh"),
    ];
    // Give the access log lines a moment to be written.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for entry in std::fs::read_dir(running.data_dir.join("logs")).expect("logs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("log");
        for secret in secrets {
            // The signature part of a token is enough to replay it.
            let tail = secret.rsplit('.').next().unwrap_or(secret);
            assert!(
                !text.contains(tail),
                "{} holds a secret ({}…)",
                path.display(),
                &tail[..tail.len().min(8)]
            );
        }
    }

    // And the refusal is in the log, naming the caller.
    let log = std::fs::read_to_string(running.data_dir.join("logs").join("payments-1.log"))
        .expect("payments log");
    assert!(
        log.lines().any(|line| line
            .contains("refused a call from a service this route does not accept")
            && line.contains("\"caller\":\"cart\"")),
        "no refusal logged"
    );
}
