use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Stack, problem, settings_with_echo, spawn_echo, spawn_users};

async fn stack() -> (Stack, std::path::PathBuf) {
    let shutdown = CancellationToken::new();
    let (users, data, keep) = spawn_users(&shutdown).await;
    let echo = spawn_echo("echo").await;
    let stack = Stack::start(
        &[("users", vec![users]), ("echo", vec![echo])],
        settings_with_echo(),
        shutdown,
        keep,
    )
    .await;
    (stack, data)
}

async fn sign_in(stack: &Stack, email: &str) -> String {
    let body = json!({"email": email, "password": "correct horse battery", "name": "Tester"});
    let created = stack.post_json("/api/auth/signup", &body).await;
    assert_eq!(created.status(), 201);
    let tokens: Value = stack
        .post_json(
            "/api/auth/login",
            &json!({"email": email, "password": "correct horse battery"}),
        )
        .await
        .json()
        .await
        .expect("json");
    tokens["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn signup_login_and_profile_through_the_gateway() {
    let (stack, _) = stack().await;
    let token = sign_in(&stack, "edge@example.com").await;
    let me = stack.get("/api/users/me", Some(&token)).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["email"], "edge@example.com");

    let anonymous = stack.get("/api/users/me", None).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        problem(anonymous).await["type"],
        "urn:bazaar:problem:unauthorized"
    );

    let jwks = stack.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
}

#[tokio::test]
async fn the_verified_identity_replaces_whatever_the_client_sent() {
    let (stack, _) = stack().await;
    let token = sign_in(&stack, "who@example.com").await;

    let forged: Value = stack
        .http
        .get(stack.at("/api/echo/x"))
        .header("x-bazaar-user-id", "00000000-0000-0000-0000-000000000000")
        .header("x-bazaar-user-roles", "admin")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert!(
        forged["headers"].get("x-bazaar-user-id").is_none(),
        "{forged}"
    );
    assert!(
        forged["headers"].get("x-bazaar-user-roles").is_none(),
        "{forged}"
    );

    let real: Value = stack
        .http
        .get(stack.at("/api/echo/x"))
        .bearer_auth(&token)
        .header("x-bazaar-user-roles", "admin")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(real["headers"]["x-bazaar-user-roles"], "customer");
    assert!(
        real["headers"]["x-bazaar-user-id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert!(
        real["headers"].get("authorization").is_none(),
        "tokens stay at the edge"
    );
    assert!(real["headers"]["x-request-id"].is_string());

    let not_admin = stack.get("/api/admin-echo", Some(&token)).await;
    assert_eq!(not_admin.status(), 403);
    assert_eq!(
        problem(not_admin).await["detail"],
        "requires the admin role"
    );
}

#[tokio::test]
async fn a_page_route_reads_the_token_from_its_session_cookie() {
    let (stack, _) = stack().await;
    let token = sign_in(&stack, "cookie@example.com").await;
    let echo = |path: &'static str, cookie: String, authorization: Option<&'static str>| {
        let mut request = stack.http.get(stack.at(path)).header("cookie", cookie);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move { request.send().await.expect("answers") }
    };

    let signed_in: Value = echo("/echo-page/x", format!("theme=dark; sid={token}"), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(signed_in["headers"]["x-bazaar-user-roles"], "customer");
    assert!(signed_in["headers"]["x-bazaar-user-id"].is_string());

    // A cookie that does not verify is no error for a page: the caller is anonymous.
    let stale = echo("/echo-page/x", "sid=not.a.token".into(), None).await;
    assert_eq!(stale.status(), 200);
    let stale: Value = stale.json().await.expect("json");
    assert!(
        stale["headers"].get("x-bazaar-user-id").is_none(),
        "{stale}"
    );

    // An Authorization header is still checked as such, cookie or not.
    let bad_header = echo(
        "/echo-page/x",
        format!("sid={token}"),
        Some("Bearer garbage"),
    )
    .await;
    assert_eq!(bad_header.status(), 401);

    // A route without a session cookie ignores the cookie.
    let api: Value = echo("/api/echo/x", format!("sid={token}"), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(api["headers"].get("x-bazaar-user-id").is_none(), "{api}");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let (stack, data) = stack().await;
    let good = sign_in(&stack, "tokens@example.com").await;
    let refused = |token: String| {
        let request = stack.http.get(stack.at("/api/users/me")).bearer_auth(token);
        async move {
            let response = request.send().await.expect("answers");
            assert_eq!(response.status(), 401);
            problem(response).await["type"]
                .as_str()
                .expect("type")
                .to_owned()
        }
    };

    assert_eq!(
        refused("garbage".into()).await,
        "urn:bazaar:problem:invalid-token"
    );
    // Tampered claims: the signature no longer matches, even though the untampered token,
    // with the same signature, is in the gateway's cache of verified tokens.
    assert_eq!(stack.get("/api/users/me", Some(&good)).await.status(), 200);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(
        refused(parts.join(".")).await,
        "urn:bazaar:problem:invalid-token"
    );
    // `alg: none` is refused before any key is looked up.
    let none = format!(
        "{}.{}.",
        base64url(r#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap_or("")
    );
    assert_eq!(refused(none).await, "urn:bazaar:problem:invalid-token");

    // The real key, but expired.
    let ring = users::keys::KeyRing::open(
        data.join("keys").join("users"),
        Duration::from_secs(86_400),
        Duration::from_secs(960),
    )
    .expect("same keys");
    let key = ring.current().expect("key");
    let long_ago = jsonwebtoken::get_current_timestamp() - 3600;
    let user = uuid_v7();
    let expired = users::tokens::sign_access_token(
        &key,
        "bazaar-users",
        "bazaar",
        user,
        &[],
        long_ago,
        Duration::from_secs(900),
    )
    .expect("signs");
    assert_eq!(refused(expired).await, "urn:bazaar:problem:token-expired");
    // The real key, the wrong audience.
    let now = jsonwebtoken::get_current_timestamp();
    let elsewhere = users::tokens::sign_access_token(
        &key,
        "bazaar-users",
        "another-shop",
        user,
        &[],
        now,
        Duration::from_secs(900),
    )
    .expect("signs");
    assert_eq!(refused(elsewhere).await, "urn:bazaar:problem:invalid-token");
    // A key the shop never published.
    let stranger_dir = tempfile::tempdir().expect("tempdir");
    let stranger = users::keys::KeyRing::open(
        stranger_dir.path().to_path_buf(),
        Duration::from_secs(86_400),
        Duration::from_secs(960),
    )
    .expect("keys");
    let forged = users::tokens::sign_access_token(
        &stranger.current().expect("key"),
        "bazaar-users",
        "bazaar",
        user,
        &["admin".into()],
        now,
        Duration::from_secs(900),
    )
    .expect("signs");
    assert_eq!(refused(forged).await, "urn:bazaar:problem:invalid-token");
    // The real key, the wrong issuer.
    let impostor = users::tokens::sign_access_token(
        &key,
        "another-issuer",
        "bazaar",
        user,
        &[],
        now,
        Duration::from_secs(900),
    )
    .expect("signs");
    assert_eq!(refused(impostor).await, "urn:bazaar:problem:invalid-token");
    // The real key, not valid for another hour.
    let claims = |extra: serde_json::Value| {
        let mut claims = serde_json::json!({
            "iss": "bazaar-users", "aud": "bazaar", "sub": user.to_string(),
            "iat": now, "exp": now + 7200, "jti": uuid_v7().to_string(), "roles": ["admin"],
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        claims
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let early = jsonwebtoken::encode(
        &header,
        &claims(serde_json::json!({"nbf": now + 3600})),
        &key.encoding,
    )
    .expect("signs");
    assert_eq!(refused(early).await, "urn:bazaar:problem:invalid-token");
    // HS256, keyed with the published public key (the algorithm-confusion attack).
    use base64::Engine as _;
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&key.public_x)
        .expect("base64url");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    for secret in [public.as_slice(), key.public_x.as_bytes()] {
        let confused = jsonwebtoken::encode(
            &hs,
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("signs");
        assert_eq!(refused(confused).await, "urn:bazaar:problem:invalid-token");
    }

    let malformed_header = stack
        .http
        .get(stack.at("/api/users/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("answers");
    assert_eq!(malformed_header.status(), 401);

    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"bazaar_gateway_auth_failures_total{reason="invalid"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bazaar_gateway_auth_failures_total{reason="expired"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_first_sight() {
    let (stack, data) = stack().await;
    let token = sign_in(&stack, "rotation@example.com").await;
    assert_eq!(stack.get("/api/users/me", Some(&token)).await.status(), 200);

    // A new key appears in users' key folder (as rotation or another replica would make it).
    let ring = users::keys::KeyRing::open(
        data.join("keys").join("users"),
        Duration::from_secs(86_400),
        Duration::from_secs(960),
    )
    .expect("same keys");
    ring.maintain(chrono_in_days(31)).expect("rotates");
    let key = ring.current().expect("new key");
    let claims_user: Value = stack
        .get("/api/users/me", Some(&token))
        .await
        .json()
        .await
        .expect("json");
    let user = claims_user["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    // Wait out the refetch guard, then a token with the new kid verifies at once.
    tokio::time::sleep(gateway::auth::REFETCH_INTERVAL).await;
    let now = jsonwebtoken::get_current_timestamp();
    let rotated = users::tokens::sign_access_token(
        &key,
        "bazaar-users",
        "bazaar",
        user,
        &["customer".into()],
        now,
        Duration::from_secs(900),
    )
    .expect("signs");
    let me = stack.get("/api/users/me", Some(&rotated)).await;
    assert_eq!(me.status(), 200);
}

fn chrono_in_days(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(days)
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn the_dashboard_degrades_part_by_part() {
    let shutdown = CancellationToken::new();
    let (users, _data, keep) = spawn_users(&shutdown).await;
    let slow_orders = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({"items": [], "next_cursor": null}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&slow_orders)
        .await;
    let stack = Stack::start(
        &[
            ("users", vec![users]),
            ("orders", vec![slow_orders.uri()]),
            (
                "recommendations",
                vec![crate::helpers::dead_address().await],
            ),
        ],
        gateway::Settings {
            dashboard_part_timeout: Duration::from_millis(300),
            ..gateway::Settings::default()
        },
        shutdown,
        keep,
    )
    .await;
    assert_eq!(stack.get("/api/dashboard", None).await.status(), 401);
    let token = sign_in(&stack, "dash@example.com").await;
    let started = std::time::Instant::now();
    let answer = stack.get("/api/dashboard", Some(&token)).await;
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a slow part does not hold the page up"
    );
    let dashboard: Value = answer.json().await.expect("json");
    assert_eq!(dashboard["profile"]["email"], "dash@example.com");
    assert_eq!(dashboard["recent_orders"], Value::Null);
    assert_eq!(dashboard["recommendations"], Value::Null);
    assert_eq!(dashboard["partial"], true);
    let missing: Vec<&str> = dashboard["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .filter_map(|m| m["part"].as_str())
        .collect();
    assert_eq!(missing, ["recent_orders", "recommendations"]);
    assert!(
        dashboard["missing"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not answer within")),
        "{dashboard}"
    );
}
