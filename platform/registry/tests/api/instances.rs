use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestRegistry, fast_settings, registration};

/// Instance `id` in a listing of `/v1/services/…`.
fn instance(listing: &Value, id: &str) -> Option<Value> {
    listing["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == id).cloned())
}

async fn healthy_instance() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health/ready"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn registers_lists_and_deregisters() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let instance = healthy_instance().await;
    let health = format!("{}/health/ready", instance.uri());

    let response = registry
        .register("users-1", &registration("users", &health, None))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "passing");
    registry.eventually_ids("users", true, &["users-1"]).await;

    let services = registry.get_json("/v1/services").await;
    assert_eq!(services["services"][0]["name"], "users");
    assert_eq!(services["services"][0]["passing"], 1);
    let all = registry.get_json("/v1/instances").await;
    assert_eq!(all["instances"].as_array().map(Vec::len), Some(1));
    // The same instance as a Prometheus scrape target.
    let targets = registry.get_json("/v1/prometheus/targets").await;
    assert_eq!(
        targets,
        json!([{
            "targets": ["127.0.0.1:9"],
            "labels": {"__scheme__": "http", "service": "users", "version": "1.0.0", "instance_id": "users-1"},
        }])
    );

    let gone = registry.delete(registry.at("/v1/instances/users-1")).await;
    assert_eq!(gone.status(), 204);
    assert!(registry.ids("users", false).await.is_empty());
    let again = registry.delete(registry.at("/v1/instances/users-1")).await;
    assert_eq!(again.status(), 404);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn malformed_registrations_get_a_clear_4xx_and_change_nothing() {
    let registry = TestRegistry::spawn(fast_settings()).await;

    let invalid = registry
        .register("users-1", &json!({"service": "Users", "address": "nowhere", "version": "1", "health_url": "http://x/h"}))
        .await;
    assert_eq!(invalid.status(), 422);
    let problem: Value = invalid.json().await.expect("json");
    assert_eq!(problem["type"], "urn:bazaar:problem:validation");
    assert_eq!(problem["errors"][0]["field"], "service");
    assert_eq!(problem["errors"][1]["field"], "address");

    let missing = registry
        .register("users-1", &json!({"service": "users"}))
        .await;
    assert_eq!(missing.status(), 422);
    let problem: Value = missing.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("missing field")),
        "{problem}"
    );

    let not_json = registry
        .http
        .put(registry.at("/v1/instances/users-1"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answers");
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.headers()["content-type"],
        "application/problem+json"
    );

    let bad_wait = registry
        .get(registry.at("/v1/services/users?index=1&wait=forever"))
        .await;
    assert_eq!(bad_wait.status(), 400);

    assert!(
        registry.get_json("/v1/instances").await["instances"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[tokio::test]
async fn missed_ttl_turns_critical_then_the_instance_is_removed() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let instance = healthy_instance().await;
    let health = format!("{}/health/ready", instance.uri());
    registry
        .register("users-1", &registration("users", &health, Some(300)))
        .await;
    registry
        .register("users-2", &registration("users", &health, Some(300)))
        .await;

    // users-2 keeps heartbeating; users-1 goes silent.
    let started = Instant::now();
    let mut saw_critical = false;
    while started.elapsed() < Duration::from_secs(5) {
        let beat = registry
            .put(
                registry.at("/v1/instances/users-2/heartbeat"),
                Vec::<u8>::new(),
            )
            .await;
        assert_eq!(beat.status(), 200);
        let all = registry.ids("users", false).await;
        let passing = registry.ids("users", true).await;
        if all.contains(&"users-1".to_owned()) && !passing.contains(&"users-1".to_owned()) {
            saw_critical = true;
        }
        if !all.contains(&"users-1".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_critical,
        "users-1 should have been critical before removal"
    );
    assert_eq!(registry.ids("users", false).await, ["users-2"]);

    let unknown = registry
        .put(
            registry.at("/v1/instances/users-1/heartbeat"),
            Vec::<u8>::new(),
        )
        .await;
    assert_eq!(
        unknown.status(),
        404,
        "a removed instance must register again"
    );
}

#[tokio::test]
async fn failing_health_checks_remove_the_instance() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let good = healthy_instance().await;
    let bad = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&bad)
        .await;

    registry
        .register(
            "users-good",
            &registration("users", &format!("{}/health/ready", good.uri()), None),
        )
        .await;
    registry
        .register(
            "users-bad",
            &registration("users", &format!("{}/health/ready", bad.uri()), None),
        )
        .await;
    // First critical, with the check's output, while still listed...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = registry.get_json("/v1/services/users?passing=false").await;
        let entry = instance(&all, "users-bad")
            .expect("users-bad is listed until it has been critical for a while");
        if entry["status"] == "critical" {
            assert!(
                entry["output"].as_str().is_some_and(|o| o.contains("503")),
                "{entry}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "users-bad never turned critical");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registry.ids("users", true).await, ["users-good"]);
    // ...then removed.
    registry
        .eventually_ids("users", false, &["users-good"])
        .await;
}

#[tokio::test]
async fn a_bad_spell_does_not_pull_an_instance_but_a_dead_one_goes_at_once() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    // Two failed checks, then good ones: below `failures_before_critical` (3).
    let flaky = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&flaky)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&flaky)
        .await;
    // Nothing listens here.
    let dead_url = format!("http://{}/health/ready", chassis::testing::dead_address());
    registry
        .register(
            "users-flaky",
            &registration("users", &format!("{}/health/ready", flaky.uri()), None),
        )
        .await;
    registry
        .register("users-dead", &registration("users", &dead_url, None))
        .await;

    // The dead one turns critical at its first check (one interval: 100 ms)...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = registry.get_json("/v1/services/users?passing=false").await;
        let dead = instance(&all, "users-dead").unwrap_or(Value::Null);
        if dead["status"] == "critical" {
            assert!(
                dead["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("refused")),
                "{dead}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "users-dead never turned critical"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the flaky one stays passing through its two failures and after.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let all = registry.get_json("/v1/services/users?passing=false").await;
        let entry = instance(&all, "users-flaky").unwrap_or(Value::Null);
        assert_eq!(entry["status"], "passing", "{all}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checks = flaky.received_requests().await.map_or(0, |r| r.len());
    assert!(checks >= 3, "its failures were checked: {checks} checks");
}

#[tokio::test]
async fn blocking_query_returns_as_soon_as_the_service_changes() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let instance = healthy_instance().await;
    let health = format!("{}/health/ready", instance.uri());
    registry
        .register("users-1", &registration("users", &health, None))
        .await;
    let first = registry.get_json("/v1/services/users").await;
    let index = first["index"].as_u64().expect("index");

    // Nothing changes: the query is held for its wait, then answers with the same index.
    let started = Instant::now();
    let same = registry
        .get_json(&format!("/v1/services/users?index={index}&wait=300ms"))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(same["index"].as_u64(), Some(index));

    // Another service changing does not wake it; this one changing does, at once.
    let waiter = {
        let http = registry.http.clone();
        let url = registry.at(&format!("/v1/services/users?index={index}&wait=8s"));
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = http
                .get(url)
                .send()
                .await
                .expect("answers")
                .json()
                .await
                .expect("json");
            (started.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    registry
        .register("orders-1", &registration("orders", &health, None))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "a change to orders must not wake a users watch"
    );
    registry
        .register("users-2", &registration("users", &health, None))
        .await;
    let (elapsed, body) = waiter.await.expect("joins");
    assert!(
        elapsed < Duration::from_secs(4),
        "returned after {elapsed:?}"
    );
    assert!(body["index"].as_u64().is_some_and(|i| i > index));
    assert_eq!(body["instances"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_threshold_of_no_failures_is_refused_by_name() {
    let db = chassis::testing::TestDatabase::sqlite();
    let mut chassis = chassis::config::ChassisConfig::with_port(0);
    chassis.database.url = Some(db.url());
    chassis.discovery.registry = None;
    let settings = registry::Settings {
        failures_before_critical: 0,
        ..fast_settings()
    };
    let error = registry::Application::build(registry::Config { chassis, settings })
        .await
        .expect_err("refused");
    let text = chassis::error::ErrorChain(&error).to_string();
    assert!(
        text.contains("registry.failures_before_critical") && text.contains("at least 1"),
        "{text}"
    );
}
