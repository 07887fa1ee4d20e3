//! Discovery by DNS, as on Kubernetes: the addresses a name resolves to, each asked who it is.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::{ChassisConfig, DiscoveryConfig, DnsConfig};
use chassis::discovery::Discovery;
use chassis::{Server, ServiceInfo};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn instances_are_the_addresses_a_name_resolves_to_that_answer_as_the_service()
-> anyhow::Result<()> {
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    config.instance_id = Some("catalog-7f9c".into());
    let server = Server::bind(ServiceInfo::new("catalog", "2.4.0", &config), &config).await?;
    let port = server.local_addr().port();
    let stop_server = CancellationToken::new();
    let serving = tokio::spawn(server.serve(
        Router::new().route("/products", get(|| async { "[]" })),
        stop_server.clone(),
    ));

    // `localhost` stands for a headless Service: it may resolve to ::1 as well, where nothing
    // listens, and that address is no instance.
    let discovery_config = DiscoveryConfig {
        registry: None,
        dns: Some(DnsConfig {
            name: "localhost".into(),
            port,
            scheme: "http".into(),
            refresh: Duration::from_millis(100),
        }),
        ..DiscoveryConfig::default()
    };
    let stop = CancellationToken::new();
    let discovery = Discovery::new(&discovery_config, Transport::http(), &stop);
    let found = discovery.endpoints("catalog").await?;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, "catalog-7f9c");
    assert_eq!(
        found[0].version, "2.4.0",
        "the version traffic policies route by"
    );
    assert_eq!(found[0].address, format!("http://127.0.0.1:{port}"));
    // The same name for another service: what answers there is the catalog, not it.
    assert!(discovery.endpoints("users").await?.is_empty());

    // Gone from the network: gone from the list within a refresh or two.
    stop_server.cancel();
    serving.await??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !discovery.endpoints("catalog").await?.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a stopped instance stayed listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_name_that_does_not_resolve_has_no_instances() -> anyhow::Result<()> {
    let config = DiscoveryConfig {
        registry: None,
        dns: Some(DnsConfig {
            name: "{service}.invalid".into(),
            refresh: Duration::from_millis(100),
            ..DnsConfig::default()
        }),
        ..DiscoveryConfig::default()
    };
    let stop = CancellationToken::new();
    let discovery = Discovery::new(&config, Transport::http(), &stop);
    assert!(discovery.endpoints("orders").await?.is_empty());
    assert!(discovery.pick("orders").await.is_err());
    stop.cancel();
    Ok(())
}
