//! One conformance suite for every cart store: the embedded store always, Redis when a server
//! is there (`#[ignore]`d otherwise; `.ci/run` runs them).

use std::sync::Arc;
use std::time::Duration;

use cart::domain::{Change, LimitError, Limits};
use cart::store::embedded::EmbeddedStore;
use cart::store::redis::RedisStore;
use cart::store::{CartStore, StoreError};

const LIMITS: Limits = Limits {
    max_lines: 3,
    max_quantity: 1000,
};

/// A store for one test, and what keeps it alive.
struct Fixture {
    store: Arc<dyn CartStore>,
    _dir: Option<tempfile::TempDir>,
}

fn embedded(ttl: Duration) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("cart.redb"), ttl).expect("opens");
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn redis(ttl: Duration) -> Fixture {
    let url = std::env::var("BAZAAR_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bazaar-test:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(&url, &prefix, ttl)
        .await
        .expect("connects to Redis");
    Fixture {
        store: Arc::new(store),
        _dir: None,
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::$name(super::embedded(std::time::Duration::from_secs(60))).await;
                }

                #[tokio::test]
                #[ignore = "needs Redis at 127.0.0.1:6379 (or BAZAAR_TEST_REDIS_URL)"]
                async fn redis() {
                    super::$name(super::redis(std::time::Duration::from_secs(60)).await).await;
                }
            }
        )*
    };
}

conformance!(
    changes_follow_the_rules,
    merging_adds_and_caps,
    concurrent_adds_lose_nothing
);

fn add(sku: &str, quantity: u32) -> Change {
    Change::Add {
        sku: sku.into(),
        quantity,
    }
}

async fn changes_follow_the_rules(fixture: Fixture) {
    let store = fixture.store;
    assert_eq!(store.load("c1").await.expect("loads"), None);
    store
        .update("c1", &add("MUG-1", 2), LIMITS)
        .await
        .expect("adds");
    let cart = store
        .update("c1", &add("MUG-1", 3), LIMITS)
        .await
        .expect("adds");
    assert_eq!(cart.lines["MUG-1"], 5);
    store
        .update("c1", &add("TEE-1", 1), LIMITS)
        .await
        .expect("adds");
    store
        .update("c1", &add("CAP-1", 1), LIMITS)
        .await
        .expect("adds");
    let refused = store.update("c1", &add("HAT-1", 1), LIMITS).await;
    assert!(
        matches!(refused, Err(StoreError::Limit(LimitError::TooManyLines(3)))),
        "{refused:?}"
    );
    let refused = store
        .update(
            "c1",
            &Change::Set {
                sku: "MUG-1".into(),
                quantity: 1001,
            },
            LIMITS,
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Limit(LimitError::TooManyUnits(1000)))
        ),
        "{refused:?}"
    );
    let cart = store.load("c1").await.expect("loads").expect("exists");
    assert_eq!(cart.lines.len(), 3, "refused changes change nothing");
    assert_eq!(cart.lines["MUG-1"], 5);

    store
        .update(
            "c1",
            &Change::Set {
                sku: "MUG-1".into(),
                quantity: 0,
            },
            LIMITS,
        )
        .await
        .expect("removes");
    let cart = store
        .update(
            "c1",
            &Change::Remove {
                sku: "TEE-1".into(),
            },
            LIMITS,
        )
        .await
        .expect("removes");
    assert_eq!(cart.lines.keys().collect::<Vec<_>>(), ["CAP-1"]);
    store.delete("c1").await.expect("deletes");
    assert_eq!(store.load("c1").await.expect("loads"), None);
    assert_eq!(
        store.load("other").await.expect("loads"),
        None,
        "carts are separate"
    );
}

async fn merging_adds_and_caps(fixture: Fixture) {
    let store = fixture.store;
    let limits = Limits {
        max_lines: 3,
        max_quantity: 5,
    };
    store
        .update("customer", &add("MUG-1", 4), limits)
        .await
        .expect("adds");
    store
        .update("customer", &add("TEE-1", 1), limits)
        .await
        .expect("adds");
    for (sku, quantity) in [("MUG-1", 3), ("AAA-1", 1), ("ZZZ-1", 2)] {
        store
            .update("anonymous", &add(sku, quantity), limits)
            .await
            .expect("adds");
    }
    let merged = store
        .merge("anonymous", "customer", limits)
        .await
        .expect("merges");
    assert_eq!(merged.lines["MUG-1"], 5, "4 + 3, capped at 5");
    assert_eq!(
        merged.lines.get("AAA-1"),
        Some(&1),
        "new lines join in sku order"
    );
    assert_eq!(merged.lines.get("ZZZ-1"), None, "no room for a fourth line");
    assert_eq!(
        store.load("anonymous").await.expect("loads"),
        None,
        "the anonymous cart is gone"
    );
    let again = store
        .merge("anonymous", "customer", limits)
        .await
        .expect("merges");
    assert_eq!(again, merged, "merging an empty cart changes nothing");
}

async fn concurrent_adds_lose_nothing(fixture: Fixture) {
    let store = fixture.store;
    let mut adders = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        adders.push(tokio::spawn(async move {
            store
                .update("busy", &add("MUG-1", 1), LIMITS)
                .await
                .map(drop)
        }));
    }
    for adder in adders {
        adder.await.expect("joins").expect("adds");
    }
    let cart = store.load("busy").await.expect("loads").expect("exists");
    assert_eq!(cart.lines["MUG-1"], 50);
}

#[tokio::test]
async fn idle_carts_expire_in_the_embedded_store() {
    let fixture = embedded(Duration::from_millis(200));
    fixture
        .store
        .update("old", &add("MUG-1", 1), LIMITS)
        .await
        .expect("adds");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fixture.store.load("old").await.expect("loads"),
        None,
        "expired carts are not shown"
    );
    assert_eq!(fixture.store.purge_expired().await.expect("purges"), 1);
    assert_eq!(fixture.store.purge_expired().await.expect("purges"), 0);
}

#[tokio::test]
#[ignore = "needs Redis at 127.0.0.1:6379 (or BAZAAR_TEST_REDIS_URL)"]
async fn idle_carts_expire_in_redis() {
    let fixture = redis(Duration::from_millis(200)).await;
    fixture
        .store
        .update("old", &add("MUG-1", 1), LIMITS)
        .await
        .expect("adds");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fixture.store.load("old").await.expect("loads"), None);
}
