//! The registry role's behaviour, once per backend: the built-in registry, and etcd in its
//! place. Each scenario runs through the chassis's [`RegistryClient`] (what registration,
//! discovery, traffic policies, fault rules and `bazaar status` build on) and, where it
//! resolves instances, through [`Discovery`] as a service would.
//!
//! The etcd runs need an etcd server (`BAZAAR_TEST_ETCD_URL`, default
//! `http://127.0.0.1:2379`); each test keeps its keys under a prefix of its own and deletes them.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::{DiscoveryConfig, EtcdConfig};
use chassis::discovery::etcd::EtcdClient;
use chassis::discovery::{Discovery, Heartbeat, RegistryClient};
use contracts::discovery::Registration;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestRegistry, fast_settings};

/// Which backend a run uses.
#[derive(Clone, Copy)]
enum Backend {
    Registry,
    Etcd,
}

/// Runs `scenario` against a fresh instance of `backend`: its client, and the discovery
/// settings that resolve through it.
async fn run<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(RegistryClient, DiscoveryConfig) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    match backend {
        Backend::Registry => {
            let registry = TestRegistry::spawn(fast_settings()).await;
            let client = RegistryClient::new(&format!("{}/", registry.url), Transport::http());
            let config = DiscoveryConfig {
                registry: Some(registry.url.clone()),
                ..DiscoveryConfig::default()
            };
            scenario(client, config).await;
            registry.stop().await;
        }
        Backend::Etcd => {
            static RUNS: AtomicUsize = AtomicUsize::new(0);
            let etcd = EtcdConfig {
                endpoints: vec![
                    std::env::var("BAZAAR_TEST_ETCD_URL")
                        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned()),
                ],
                prefix: format!(
                    "/bazaar-test-{}-{}/",
                    std::process::id(),
                    RUNS.fetch_add(1, Ordering::Relaxed)
                ),
            };
            let etcd_client = EtcdClient::new(&etcd, None).expect("a valid etcd config");
            let client = RegistryClient::etcd(etcd_client.clone());
            let config = DiscoveryConfig {
                registry: None,
                etcd: Some(etcd),
                ..DiscoveryConfig::default()
            };
            scenario(client, config).await;
            etcd_client
                .clear()
                .await
                .expect("the test's keys are deleted");
        }
    }
}

/// Each scenario once per backend: `<scenario>::on_the_registry` and `<scenario>::on_etcd`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn on_the_registry() {
                super::run(super::Backend::Registry, super::scenarios::$scenario).await;
            }

            #[tokio::test]
            #[ignore = "needs etcd at BAZAAR_TEST_ETCD_URL (default http://127.0.0.1:2379)"]
            async fn on_etcd() {
                super::run(super::Backend::Etcd, super::scenarios::$scenario).await;
            }
        }
    )*};
}

on_both_backends!(
    kv_reads_writes_and_check_and_sets,
    registration_heartbeats_and_listings,
    a_blocking_service_query_wakes_on_a_registration_and_a_deregistration,
    a_blocking_kv_list_wakes_only_on_its_own_prefix,
    an_instance_that_stops_heartbeating_is_no_longer_listed,
    discovery_resolves_through_the_backend,
    bad_keys_and_registrations_are_refused,
);

/// An instance that answers its health checks, so the registry's active checks keep it
/// passing (etcd has none); stops with the token.
async fn healthy_instance() -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let stop = CancellationToken::new();
    let app = Router::new().route("/health/ready", get(|| async { "ready" }));
    let stopped = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
    });
    (url, stop)
}

fn registration(service: &str, url: &str, ttl: Duration) -> Registration {
    Registration {
        service: service.into(),
        address: url.into(),
        version: "2.0.0".into(),
        health_url: format!("{url}/health/ready"),
        ttl_ms: u64::try_from(ttl.as_millis()).ok(),
        meta: Default::default(),
    }
}

/// Polls `check` until it holds, for at most `within`.
async fn eventually<Fut: Future<Output = bool>>(within: Duration, mut check: impl FnMut() -> Fut) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod scenarios {
    use super::*;

    pub(super) async fn kv_reads_writes_and_check_and_sets(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
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
            (entry.key.as_str(), entry.value.as_str(), entry.modify_index),
            ("traffic/users", r#"{"weight":10}"#, created)
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
            None,
            "a stale check-and-set loses"
        );
        let unconditional = client
            .kv_put("traffic/orders", "{}", None)
            .await
            .expect("answers")
            .expect("written");
        assert!(unconditional > updated);

        let list = client
            .kv_list("traffic/", None, Duration::ZERO)
            .await
            .expect("answers");
        let keys: Vec<&str> = list.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["traffic/orders", "traffic/users"]);

        assert!(client.kv_delete("traffic/users").await.expect("answers"));
        assert!(!client.kv_delete("traffic/users").await.expect("answers"));
        assert_eq!(client.kv_get("traffic/users").await.expect("answers"), None);
    }

    pub(super) async fn registration_heartbeats_and_listings(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
        let (url, _stop) = healthy_instance().await;
        let registration = registration("orders", &url, Duration::from_secs(60));
        assert_eq!(
            client.heartbeat("orders-1").await.expect("answers"),
            Heartbeat::Unknown,
            "an instance never registered is unknown"
        );
        client
            .register("orders-1", &registration)
            .await
            .expect("registers");
        assert_eq!(
            client.heartbeat("orders-1").await.expect("answers"),
            Heartbeat::Renewed
        );
        // Registering again (after a restart, say) keeps one instance.
        client
            .register("orders-1", &registration)
            .await
            .expect("registers again");

        let services = client.services().await.expect("answers");
        assert_eq!(services.services.len(), 1);
        assert_eq!(services.services[0].name, "orders");
        assert_eq!(services.services[0].versions, ["2.0.0"]);
        let instances = client.instances().await.expect("answers");
        assert_eq!(instances.instances.len(), 1);
        assert_eq!(instances.instances[0].id, "orders-1");
        assert_eq!(instances.instances[0].address, url);
        let passing = client
            .service("orders", None, Duration::ZERO)
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
        assert_eq!(
            client.heartbeat("orders-1").await.expect("answers"),
            Heartbeat::Unknown,
            "a deregistered instance must register again"
        );
    }

    pub(super) async fn a_blocking_service_query_wakes_on_a_registration_and_a_deregistration(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
        let (url, _stop) = healthy_instance().await;
        let first = client
            .service("payments", None, Duration::ZERO)
            .await
            .expect("answers");
        assert!(first.instances.is_empty());

        let waiting = {
            let client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = client
                    .service("payments", Some(first.index), Duration::from_secs(20))
                    .await;
                (answer, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .register(
                "payments-1",
                &registration("payments", &url, Duration::from_secs(60)),
            )
            .await
            .expect("registers");
        let (answer, waited) = waiting.await.expect("joins");
        let answer = answer.expect("answers");
        assert!(
            waited < Duration::from_secs(10),
            "woke on the change, not the wait"
        );
        assert_ne!(answer.index, first.index);
        let ids: Vec<&str> = answer.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["payments-1"]);

        let waiting = {
            let client = client.clone();
            let index = answer.index;
            tokio::spawn(async move {
                client
                    .service("payments", Some(index), Duration::from_secs(20))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.deregister("payments-1").await.expect("deregisters");
        let answer = waiting.await.expect("joins").expect("answers");
        assert!(answer.instances.is_empty());
    }

    pub(super) async fn a_blocking_kv_list_wakes_only_on_its_own_prefix(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
        let first = client
            .kv_list("faults/", None, Duration::ZERO)
            .await
            .expect("answers");
        // A write elsewhere: the query waits out its time, and says nothing changed.
        client
            .kv_put("traffic/users", "{}", None)
            .await
            .expect("written");
        let quiet = client
            .kv_list("faults/", Some(first.index), Duration::from_millis(500))
            .await
            .expect("answers");
        assert!(quiet.entries.is_empty());
        assert_eq!(
            quiet.index, first.index,
            "a change under another prefix is not a change"
        );

        let waiting = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .kv_list("faults/", Some(first.index), Duration::from_secs(20))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .kv_put("faults/payments", r#"{"abort":0.5}"#, None)
            .await
            .expect("written");
        let answer = waiting.await.expect("joins").expect("answers");
        assert_ne!(answer.index, first.index);
        let keys: Vec<&str> = answer.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["faults/payments"]);
    }

    pub(super) async fn an_instance_that_stops_heartbeating_is_no_longer_listed(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
        let (url, _stop) = healthy_instance().await;
        client
            .register(
                "cart-1",
                &registration("cart", &url, Duration::from_secs(1)),
            )
            .await
            .expect("registers");
        let listed = |client: RegistryClient| async move {
            client
                .service("cart", None, Duration::ZERO)
                .await
                .expect("answers")
                .instances
                .len()
        };
        assert_eq!(listed(client.clone()).await, 1);
        // Heartbeats keep it past its TTL.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                client.heartbeat("cart-1").await.expect("answers"),
                Heartbeat::Renewed
            );
        }
        assert_eq!(listed(client.clone()).await, 1);
        // Then none: gone within a few TTLs.
        eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move { listed(client).await == 0 }
        })
        .await;
    }

    pub(super) async fn discovery_resolves_through_the_backend(
        client: RegistryClient,
        config: DiscoveryConfig,
    ) {
        let (url, _stop) = healthy_instance().await;
        let stop = CancellationToken::new();
        let discovery = Discovery::new(&config, Transport::http(), &stop);
        assert!(
            discovery
                .endpoints("shipping")
                .await
                .expect("resolvable")
                .is_empty()
        );
        client
            .register(
                "shipping-1",
                &registration("shipping", &url, Duration::from_secs(60)),
            )
            .await
            .expect("registers");
        // The watch brings the new instance in without being asked again.
        eventually(Duration::from_secs(10), || {
            let discovery = discovery.clone();
            async move { discovery.pick("shipping").await.is_ok() }
        })
        .await;
        let lease = discovery.pick("shipping").await.expect("an instance");
        assert_eq!(lease.endpoint().address, url);
        assert_eq!(lease.endpoint().version, "2.0.0");
        drop(lease);

        client.deregister("shipping-1").await.expect("deregisters");
        eventually(Duration::from_secs(10), || {
            let discovery = discovery.clone();
            async move { discovery.pick("shipping").await.is_err() }
        })
        .await;
        stop.cancel();
    }

    pub(super) async fn bad_keys_and_registrations_are_refused(
        client: RegistryClient,
        _: DiscoveryConfig,
    ) {
        for key in ["bad//key", "", "spaces are not keys", "/leading"] {
            assert!(
                client.kv_put(key, "x", None).await.is_err(),
                "{key:?}: a refused key is an error, not a silent write"
            );
        }
        let (url, _stop) = healthy_instance().await;
        let mut invalid = registration("orders", &url, Duration::from_secs(60));
        invalid.service = "Not A Name".into();
        assert!(client.register("orders-2", &invalid).await.is_err());
        let mut invalid = registration("orders", &url, Duration::from_secs(60));
        invalid.address = "not a url".into();
        assert!(client.register("orders-2", &invalid).await.is_err());
        assert!(
            client
                .instances()
                .await
                .expect("answers")
                .instances
                .is_empty(),
            "nothing half-registered"
        );
    }
}
