//! The chassis side of registration, against a real registry: a service registers when it
//! starts, becomes ready only then, is found by discovery, and deregisters when it stops.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chassis::client::{ServiceClient, Transport};
use chassis::config::ChassisConfig;
use chassis::discovery::Discovery;
use chassis::{Server, ServiceInfo};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestRegistry, fast_settings};

async fn start_echo(
    registry: &str,
    id: &str,
) -> (CancellationToken, tokio::task::JoinHandle<()>, String) {
    let mut config = ChassisConfig::with_port(0);
    config.instance_id = Some(id.to_owned());
    config.discovery.registry = Some(registry.to_owned());
    config.discovery.heartbeat = Duration::from_millis(100);
    let info = ServiceInfo::new("echo", "1.0.0", &config);
    let server = Server::bind(info, &config).await.expect("binds");
    let url = server.url().to_owned();
    let name = id.to_owned();
    let app = Router::new().route("/whoami", get(move || std::future::ready(name.clone())));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { server.serve(app, stop).await.expect("serves") });
    (shutdown, task, url)
}

#[tokio::test]
async fn services_register_are_discovered_and_deregister_on_shutdown() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let (stop_a, task_a, url_a) = start_echo(&registry.url, "echo-a").await;
    let (stop_b, task_b, _) = start_echo(&registry.url, "echo-b").await;
    chassis::testing::wait_ready(&url_a, Duration::from_secs(5)).await;
    registry
        .eventually_ids("echo", true, &["echo-a", "echo-b"])
        .await;

    // The client spreads calls over both instances.
    let mut config = ChassisConfig::with_port(0).discovery;
    config.registry = Some(registry.url.clone());
    let shutdown = CancellationToken::new();
    let discovery = Discovery::new(&config, Transport::http(), &shutdown);
    let client = ServiceClient::new(discovery, Transport::http(), &config, "test");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let response = client
            .get("echo", "/whoami")
            .send()
            .await
            .expect("call succeeds");
        seen.insert(String::from_utf8_lossy(&response.body).into_owned());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["echo-a", "echo-b"]);

    // Stopping one deregisters it; calls keep succeeding on the other.
    stop_a.cancel();
    task_a.await.expect("stops");
    registry.eventually_ids("echo", false, &["echo-b"]).await;
    for _ in 0..20 {
        let response = client
            .get("echo", "/whoami")
            .send()
            .await
            .expect("call succeeds");
        assert_eq!(response.body, "echo-b");
    }
    stop_b.cancel();
    task_b.await.expect("stops");
    shutdown.cancel();
}

#[tokio::test]
async fn an_instance_registers_again_after_the_registry_forgets_it() {
    let registry = TestRegistry::spawn(fast_settings()).await;
    let (stop, task, _) = start_echo(&registry.url, "echo-a").await;
    registry.eventually_ids("echo", true, &["echo-a"]).await;
    registry
        .http
        .delete(registry.at("/v1/instances/echo-a"))
        .send()
        .await
        .expect("answers");
    // The next heartbeat gets a 404 and registers again.
    registry.eventually_ids("echo", true, &["echo-a"]).await;
    stop.cancel();
    task.await.expect("stops");
}
