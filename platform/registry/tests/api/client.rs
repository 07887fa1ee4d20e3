//! The chassis's typed registry client against a real registry: what `bazaar status`, traffic
//! policies and fault rules build on.

use chassis::client::Transport;
use chassis::discovery::{Heartbeat, RegistryClient};
use contracts::discovery::Registration;

use crate::helpers::{TestRegistry, fast_settings};

#[tokio::test]
async fn kv_reads_writes_and_check_and_sets() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let client = RegistryClient::new(&format!("{}/", registry.url), Transport::http());

    assert_eq!(client.kv_get("traffic/users").await.expect("answers"), None);
    let created = client
        .kv_put("traffic/users", r#"{"weight":10}"#, Some(0))
        .await
        .expect("answers")
        .expect("created");
    assert_eq!(
        client
            .kv_put("traffic/users", "again", Some(0))
            .await
            .expect("answers"),
        None,
        "cas=0 only creates"
    );
    let entry = client
        .kv_get("traffic/users")
        .await
        .expect("answers")
        .expect("present");
    assert_eq!(
        (entry.value.as_str(), entry.modify_index),
        (r#"{"weight":10}"#, created)
    );
    let updated = client
        .kv_put("traffic/users", r#"{"weight":50}"#, Some(created))
        .await
        .expect("answers")
        .expect("updated");
    assert!(updated > created);
    assert_eq!(
        client
            .kv_put("traffic/users", "stale", Some(created))
            .await
            .expect("answers"),
        None
    );
    assert!(
        client.kv_put("bad//key", "x", None).await.is_err(),
        "a refused key is an error, not a silent miss"
    );
}

#[tokio::test]
async fn registration_heartbeats_and_listings() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let client = RegistryClient::new(&registry.url, Transport::http());
    let registration = Registration {
        service: "orders".into(),
        address: "http://127.0.0.1:9".into(),
        version: "2.0.0".into(),
        health_url: "http://127.0.0.1:9/health/ready".into(),
        ttl_ms: Some(60_000),
        meta: Default::default(),
    };
    assert_eq!(
        client.heartbeat("orders-1").await.expect("answers"),
        Heartbeat::Unknown
    );
    client
        .register("orders-1", &registration)
        .await
        .expect("registers");
    assert_eq!(
        client.heartbeat("orders-1").await.expect("answers"),
        Heartbeat::Renewed
    );

    let services = client.services().await.expect("answers");
    assert_eq!(services.services.len(), 1);
    assert_eq!(services.services[0].versions, ["2.0.0"]);
    let instances = client.instances().await.expect("answers");
    assert_eq!(instances.instances[0].id, "orders-1");
    let passing = client
        .service("orders", None, std::time::Duration::ZERO)
        .await
        .expect("answers");
    assert_eq!(passing.instances.len(), 1);

    client.deregister("orders-1").await.expect("deregisters");
    client
        .deregister("orders-1")
        .await
        .expect("deregistering twice is fine");
    assert!(
        client
            .instances()
            .await
            .expect("answers")
            .instances
            .is_empty()
    );

    let mut invalid = registration.clone();
    invalid.service = "Not A Name".into();
    assert!(client.register("orders-2", &invalid).await.is_err());
}
