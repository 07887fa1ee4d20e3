use chassis::testing::TestDatabase;
use contracts::auth::AccessClaims;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

chassis::database_tests!(
    refresh_rotates_and_reuse_revokes_the_login,
    logout_revokes_the_login
);

async fn refresh_rotates_and_reuse_revokes_the_login(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (_, first) = app.signed_in("rotate@example.com").await;
    let first_refresh = first["refresh_token"].as_str().expect("refresh");

    let second: Value = app
        .post("/auth/refresh", &json!({"refresh_token": first_refresh}))
        .await
        .json()
        .await
        .expect("json");
    let second_refresh = second["refresh_token"].as_str().expect("refresh");
    assert_ne!(first_refresh, second_refresh);
    assert!(second["access_token"].is_string());

    // Replaying the spent token revokes the whole login, including the token it was swapped for.
    let replay = app
        .post("/auth/refresh", &json!({"refresh_token": first_refresh}))
        .await;
    assert_eq!(replay.status(), 401);
    assert_eq!(
        problem(replay).await["type"],
        "urn:bazaar:problem:refresh-token-reuse"
    );
    let after = app
        .post("/auth/refresh", &json!({"refresh_token": second_refresh}))
        .await;
    assert_eq!(after.status(), 401);
    assert_eq!(
        problem(after).await["type"],
        "urn:bazaar:problem:invalid-refresh-token"
    );

    // Another login is unaffected.
    let (_, other) = app.signed_in("rotate2@example.com").await;
    let ok = app
        .post(
            "/auth/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(ok.status(), 200);
}

async fn logout_revokes_the_login(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (_, tokens) = app.signed_in("bye@example.com").await;
    let refresh = tokens["refresh_token"].clone();
    assert_eq!(
        app.post("/auth/logout", &json!({"refresh_token": refresh}))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.post("/auth/logout", &json!({"refresh_token": refresh}))
            .await
            .status(),
        204,
        "idempotent"
    );
    assert_eq!(
        app.post("/auth/refresh", &json!({"refresh_token": refresh}))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post("/auth/refresh", &json!({"refresh_token": "bzr_rt_forged"}))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn access_tokens_verify_against_the_jwks() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let (id, tokens) = app.signed_in("jwks@example.com").await;
    let token = tokens["access_token"].as_str().expect("token");

    let response = app
        .http
        .get(app.at("/.well-known/jwks.json"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    let jwks: jsonwebtoken::jwk::JwkSet = response.json().await.expect("jwks");
    let kid = jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let key = DecodingKey::from_jwk(jwk).expect("usable key");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["bazaar-users"]);
    validation.set_audience(&["bazaar"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .expect("verifies")
        .claims;
    assert_eq!(claims.sub, id);
    assert_eq!(claims.roles, ["customer"]);
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(!claims.jti.is_empty());
}
