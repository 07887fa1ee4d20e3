//! Failed logins are throttled per account and per client address, before any password is
//! checked, across every instance (the counts live in the database).

use std::time::Duration;

use chassis::testing::TestDatabase;
use serde_json::json;
use users::Settings;

use crate::helpers::{TestApp, problem};

chassis::database_tests!(logins_are_throttled_per_account_and_per_address);

const PASSWORD: &str = "correct horse battery";

async fn logins_are_throttled_per_account_and_per_address(db: TestDatabase) {
    let app = TestApp::spawn_with(
        db,
        Settings {
            login_window: Duration::from_secs(3600),
            login_failures_per_account: 3,
            login_failures_per_address: 5,
            ..Settings::default()
        },
    )
    .await;
    for email in [
        "ada@example.com",
        "bob@example.com",
        "cy@example.com",
        "di@example.com",
    ] {
        assert_eq!(app.signup(email, PASSWORD, "Someone").await.status(), 201);
    }
    // From one address, as the gateway says: the last hop of x-forwarded-for.
    let login = |email: &'static str, password: &'static str, address: &'static str| {
        let request = app
            .http
            .post(app.at("/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.9, {address}"))
            .json(&json!({"email": email, "password": password}));
        async move { request.send().await.expect("answers") }
    };

    // A success clears the account's failures.
    for _ in 0..2 {
        assert_eq!(
            login("di@example.com", "wrong", "198.51.100.1")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login("di@example.com", PASSWORD, "198.51.100.1")
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        assert_eq!(
            login("di@example.com", "wrong", "198.51.100.1")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login("di@example.com", PASSWORD, "198.51.100.1")
            .await
            .status(),
        200
    );

    // Three failures lock the account, even for the right password and from anywhere.
    for _ in 0..3 {
        assert_eq!(
            login("ADA@example.com ", "wrong", "192.0.2.1")
                .await
                .status(),
            401
        );
    }
    let locked = login("ada@example.com", PASSWORD, "192.0.2.77").await;
    assert_eq!(locked.status(), 429);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((3000..=3600).contains(&retry_after), "{retry_after}");
    let body = problem(locked).await;
    assert_eq!(body["type"], "urn:bazaar:problem:too-many-login-attempts");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("this account")),
        "{body}"
    );

    // Five failures from one address (across accounts) lock the address, not the accounts.
    for _ in 0..2 {
        assert_eq!(
            login("bob@example.com", "wrong", "192.0.2.1")
                .await
                .status(),
            401
        );
    }
    let stuffing = login("cy@example.com", PASSWORD, "192.0.2.1").await;
    assert_eq!(stuffing.status(), 429);
    assert!(
        problem(stuffing).await["detail"]
            .as_str()
            .is_some_and(|d| d.contains("this address"))
    );
    assert_eq!(
        login("cy@example.com", PASSWORD, "192.0.2.2")
            .await
            .status(),
        200
    );
    assert_eq!(
        login("bob@example.com", PASSWORD, "192.0.2.2")
            .await
            .status(),
        200
    );
}
