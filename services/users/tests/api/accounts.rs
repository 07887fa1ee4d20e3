use chassis::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

chassis::database_tests!(
    signup_then_login_then_read_the_profile,
    emails_are_unique_case_insensitively,
    profile_updates_are_validated_and_atomic,
    a_signup_publishes_user_registered_once,
);

async fn a_signup_publishes_user_registered_once(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    assert_eq!(
        app.signup("ada@example.com", "correct horse battery", "Ada")
            .await
            .status(),
        201
    );
    assert_eq!(
        app.signup("ADA@example.com", "correct horse battery", "Ada again")
            .await
            .status(),
        409,
        "a refused signup publishes nothing"
    );
    let feed: Value = app
        .http
        .get(format!("{}/internal/events?after=0&wait=0s", app.url))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let events = feed["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{feed}");
    assert_eq!(events[0]["type"], "users.user.registered");
    assert_eq!(events[0]["source"], "users");
    assert_eq!(events[0]["data"]["email"], "ada@example.com");
    assert_eq!(events[0]["data"]["name"], "Ada");
    assert_eq!(feed["head"], 1);
}

async fn signup_then_login_then_read_the_profile(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let created = app
        .signup("ada@example.com", "correct horse battery", "Ada Lovelace")
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/users/me");
    let user: Value = created.json().await.expect("json");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["roles"], json!(["customer"]));
    assert!(user.get("password_hash").is_none());

    let tokens: Value = app
        .login("ADA@example.com", "correct horse battery")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);

    let me: Value = app
        .me(user["id"].as_str().expect("id"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "Ada Lovelace");
}

async fn emails_are_unique_case_insensitively(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    assert_eq!(
        app.signup("grace@example.com", "correct horse battery", "Grace")
            .await
            .status(),
        201
    );
    let taken = app
        .signup(
            "  GRACE@Example.com ",
            "another good password",
            "Grace Again",
        )
        .await;
    assert_eq!(taken.status(), 409);
    assert_eq!(
        problem(taken).await["type"],
        "urn:bazaar:problem:email-taken"
    );
}

async fn profile_updates_are_validated_and_atomic(db: TestDatabase) {
    let app = TestApp::spawn(db).await;
    let (id, _) = app.signed_in("alan@example.com").await;
    app.signup("taken@example.com", "correct horse battery", "Someone")
        .await;

    let put = |body: Value| {
        let request = app
            .http
            .put(app.at("/users/me"))
            .header("x-bazaar-user-id", &id)
            .json(&body);
        async move { request.send().await.expect("answers") }
    };
    let updated: Value = put(json!({"name": "Alan Turing", "email": "alan.turing@example.com"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(updated["name"], "Alan Turing");
    assert_eq!(updated["email"], "alan.turing@example.com");

    let taken = put(json!({"name": "X", "email": "TAKEN@example.com"})).await;
    assert_eq!(taken.status(), 409);
    let invalid = put(json!({"name": "", "email": "nope"})).await;
    assert_eq!(invalid.status(), 422);
    assert_eq!(
        problem(invalid).await["errors"].as_array().map(Vec::len),
        Some(2)
    );

    let me: Value = app.me(&id).await.json().await.expect("json");
    assert_eq!(me["name"], "Alan Turing", "refused updates change nothing");
    // The new email logs in; the old one does not.
    assert_eq!(
        app.login("alan.turing@example.com", "correct horse battery")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.login("alan@example.com", "correct horse battery")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn signup_names_every_invalid_field() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let response = app.signup("not-an-email", "short", "").await;
    assert_eq!(response.status(), 422);
    let body = problem(response).await;
    assert_eq!(body["type"], "urn:bazaar:problem:validation");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(body["instance"], "/auth/signup");
}

#[tokio::test]
async fn malformed_bodies_get_problem_json() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let not_json = app
        .http
        .post(app.at("/auth/signup"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("answers");
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        problem(not_json).await["type"],
        "urn:bazaar:problem:malformed-body"
    );

    let wrong_type = app
        .http
        .post(app.at("/auth/signup"))
        .body("email=a")
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong_type.status(), 415);
    problem(wrong_type).await;

    let missing = app
        .post("/auth/signup", &json!({"email": "a@example.com"}))
        .await;
    assert_eq!(missing.status(), 422);
    assert!(
        problem(missing).await["detail"]
            .as_str()
            .is_some_and(|d| d.contains("password"))
    );

    let huge = app.post("/auth/signup", &json!({"email": "a@example.com", "password": "x".repeat(2 * 1024 * 1024), "name": "A"})).await;
    assert_eq!(huge.status(), 413);
    problem(huge).await;

    let unknown = app.http.get(app.at("/nope")).send().await.expect("answers");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        problem(unknown).await["type"],
        "urn:bazaar:problem:not-found"
    );
    let wrong_method = app
        .http
        .delete(app.at("/auth/login"))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong_method.status(), 405);
    problem(wrong_method).await;
}

#[tokio::test]
async fn login_refuses_wrong_passwords_and_unknown_emails_alike() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    app.signup("linus@example.com", "correct horse battery", "Linus")
        .await;
    let wrong = problem(app.login("linus@example.com", "wrong horse battery").await).await;
    let unknown = problem(
        app.login("nobody@example.com", "correct horse battery")
            .await,
    )
    .await;
    assert_eq!(wrong["type"], "urn:bazaar:problem:invalid-credentials");
    assert_eq!(wrong["type"], unknown["type"]);
    assert_eq!(wrong["detail"], unknown["detail"]);
    let empty = app.login("", "").await;
    assert_eq!(empty.status(), 422);
}

#[tokio::test]
async fn profile_needs_a_caller() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let anonymous = app
        .http
        .get(app.at("/users/me"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let forged = app.me("not-a-uuid").await;
    assert_eq!(forged.status(), 401);
    let ghost = app.me("0190b5d8-0000-7000-8000-000000000000").await;
    assert_eq!(ghost.status(), 401);
    assert_eq!(
        problem(ghost).await["type"],
        "urn:bazaar:problem:unknown-user"
    );
}

#[tokio::test]
async fn demo_accounts_are_seeded_and_admin_emails_get_the_role() {
    let db = TestDatabase::sqlite();
    let settings = users::Settings {
        seed_demo: true,
        admin_emails: vec!["Boss@Example.com".into()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(db, settings).await;
    let admin: Value = app
        .login(users::demo::ADMIN.email, users::demo::ADMIN.password)
        .await
        .json()
        .await
        .expect("json");
    assert!(admin["access_token"].is_string());
    let customer = app
        .login(users::demo::CUSTOMER.email, users::demo::CUSTOMER.password)
        .await;
    assert_eq!(customer.status(), 200);
    let boss: Value = app
        .signup("boss@example.com", "correct horse battery", "Boss")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(boss["roles"], json!(["customer", "admin"]));
}
