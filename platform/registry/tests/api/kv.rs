use std::time::{Duration, Instant};

use chassis::testing::TestDatabase;
use serde_json::Value;

use crate::helpers::{TestRegistry, fast_settings};

chassis::database_tests!(writes_reads_and_check_and_sets, keys_survive_a_restart);

async fn writes_reads_and_check_and_sets(db: TestDatabase) {
    let registry = TestRegistry::spawn_on(db, fast_settings()).await;
    let key = registry.at("/v1/kv/traffic/users");

    let absent = registry.get(&key).await;
    assert_eq!(absent.status(), 404);

    let created: Value = registry
        .put(format!("{key}?cas=0"), r#"{"stable":"1.0.0"}"#)
        .await
        .json()
        .await
        .expect("json");
    let first = created["index"].as_u64().expect("index");

    let again = registry.put(format!("{key}?cas=0"), "x").await;
    assert_eq!(again.status(), 409, "cas=0 only creates");
    let problem: Value = again.json().await.expect("json");
    assert_eq!(problem["type"], "urn:bazaar:problem:cas-mismatch");

    let entry: Value = registry.get(&key).await.json().await.expect("json");
    assert_eq!(entry["value"], r#"{"stable":"1.0.0"}"#);
    assert_eq!(entry["modify_index"].as_u64(), Some(first));

    let stale = registry
        .put(format!("{key}?cas={}", first + 100), "y")
        .await;
    assert_eq!(stale.status(), 409);
    let updated: Value = registry
        .put(format!("{key}?cas={first}"), "v2")
        .await
        .json()
        .await
        .expect("json");
    assert!(updated["index"].as_u64().is_some_and(|i| i > first));

    let listed = registry.get_json("/v1/kv?prefix=traffic/").await;
    assert_eq!(listed["entries"][0]["value"], "v2");

    let bad_key = registry.put(registry.at("/v1/kv/bad//key"), "x").await;
    assert_eq!(bad_key.status(), 400);
    let not_utf8 = registry
        .put(registry.at("/v1/kv/k"), vec![0xff, 0xfe])
        .await;
    assert_eq!(not_utf8.status(), 400);
    assert_eq!(
        registry.get(registry.at("/v1/kv/k")).await.status(),
        404,
        "a refused write stores nothing"
    );

    assert_eq!(registry.delete(&key).await.status(), 204);
    assert_eq!(registry.delete(&key).await.status(), 404);
    registry.stop().await;
}

async fn keys_survive_a_restart(db: TestDatabase) {
    let registry = TestRegistry::spawn_on(db, fast_settings()).await;
    let written: Value = registry
        .put(registry.at("/v1/kv/faults/payments"), "error_rate=0.5")
        .await
        .json()
        .await
        .expect("json");
    let index = written["index"].as_u64().expect("index");
    let db = registry.stop().await;

    let registry = TestRegistry::spawn_on(db, fast_settings()).await;
    let entry = registry.get_json("/v1/kv/faults/payments").await;
    assert_eq!(entry["value"], "error_rate=0.5");
    let next: Value = registry
        .put(registry.at("/v1/kv/other"), "x")
        .await
        .json()
        .await
        .expect("json");
    assert!(
        next["index"].as_u64().is_some_and(|i| i > index),
        "the index never goes back for keys"
    );
    registry.stop().await;
}

#[tokio::test]
async fn a_blocking_query_is_held_past_the_request_timeout_up_to_its_wait() {
    // Watches wait up to 30 s; the chassis' request timeout (15 s by default) must not cut them.
    let registry = TestRegistry::spawn_configured(TestDatabase::sqlite(), fast_settings(), |c| {
        c.http.request_timeout = Duration::from_millis(200);
    })
    .await;
    let key = registry.at("/v1/kv/traffic/orders");
    let written: Value = registry.put(&key, "v1").await.json().await.expect("json");
    let index = written["index"].as_u64().expect("index");
    let started = Instant::now();
    let answer = registry
        .http
        .get(format!("{key}?index={index}&wait=1s"))
        .send()
        .await
        .expect("answers");
    let elapsed = started.elapsed();
    assert_eq!(answer.status(), 200, "cut short after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["value"], "v1", "nothing changed, so the same value");
}

#[tokio::test]
async fn blocking_get_wakes_on_a_write() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let key = registry.at("/v1/kv/traffic/orders");
    let written: Value = registry.put(&key, "v1").await.json().await.expect("json");
    let index = written["index"].as_u64().expect("index");

    let waiter = {
        let http = registry.http.clone();
        let url = format!("{key}?index={index}&wait=8s");
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
    tokio::time::sleep(Duration::from_millis(150)).await;
    registry.put(registry.at("/v1/kv/unrelated"), "x").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "another key must not wake it");
    registry.put(&key, "v2").await;
    let (elapsed, body) = waiter.await.expect("joins");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(body["value"], "v2");
}

#[tokio::test]
async fn blocking_prefix_list_wakes_on_writes_and_deletes_under_it_only() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    registry.put(registry.at("/v1/kv/faults/a"), "1").await;
    let listed = registry.get_json("/v1/kv?prefix=faults/").await;
    let index = listed["index"].as_u64().expect("index");
    assert_eq!(listed["entries"].as_array().map(Vec::len), Some(1));

    let wait_for_change = |index: u64| {
        let http = registry.http.clone();
        let url = registry.at(&format!("/v1/kv?prefix=faults/&index={index}&wait=8s"));
        tokio::spawn(async move {
            let body: Value = http
                .get(url)
                .send()
                .await
                .expect("answers")
                .json()
                .await
                .expect("json");
            body
        })
    };

    let waiter = wait_for_change(index);
    tokio::time::sleep(Duration::from_millis(150)).await;
    registry.put(registry.at("/v1/kv/traffic/x"), "x").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiter.is_finished(), "a key elsewhere must not wake it");
    registry.put(registry.at("/v1/kv/faults/b"), "2").await;
    let body = tokio::time::timeout(Duration::from_secs(4), waiter)
        .await
        .expect("wakes on a write")
        .expect("joins");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(2));
    let index = body["index"].as_u64().expect("index");

    let waiter = wait_for_change(index);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        registry
            .delete(&registry.at("/v1/kv/faults/a"))
            .await
            .status(),
        204
    );
    let body = tokio::time::timeout(Duration::from_secs(4), waiter)
        .await
        .expect("wakes on a deletion")
        .expect("joins");
    assert_eq!(body["entries"][0]["key"], "faults/b");
    assert!(body["index"].as_u64().is_some_and(|i| i > index));
}
