//! Services of one process calling each other in place ([`chassis::inproc`]): the callee's
//! whole stack answers without a socket, learns the caller from its identity as mTLS would
//! tell it, and goes back to the wire once it stops.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chassis::authz::callers;
use chassis::client::Transport;
use chassis::config::ChassisConfig;
use chassis::inproc::Exchange;
use chassis::mtls::{CallerService, Identity};
use chassis::tls::DevCa;
use chassis::{Server, ServiceInfo};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

async fn send(
    transport: &Transport,
    request: Request<Body>,
) -> anyhow::Result<(StatusCode, String)> {
    let response = transport.send(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

#[tokio::test]
async fn a_service_of_the_same_process_is_called_in_place_as_itself() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = DevCa::open(dir.path())?;
    let exchange = Exchange::new();
    let config_of = |service: &str| -> anyhow::Result<ChassisConfig> {
        let (mtls, _) = ca.issue_workload(service, Duration::from_secs(3600))?;
        let mut config = ChassisConfig::with_port(0);
        config.discovery.registry = None;
        config.mtls = mtls;
        config.exchange = Some(exchange.clone());
        Ok(config)
    };
    // Payments: `POST /charges` for orders only; `/where` says how the request came.
    let config = config_of("payments")?;
    let server = Server::bind(ServiceInfo::new("payments", "1", &config), &config).await?;
    let url = server.url().to_owned();
    let app = Router::new()
        .route("/charges", post(|| async { "charged" }))
        .route_layer(callers(&["orders"]))
        .route(
            "/where",
            get(
                |caller: Option<Extension<CallerService>>,
                 peer: Option<Extension<ConnectInfo<SocketAddr>>>,
                 headers: HeaderMap| async move {
                    format!(
                        "{} via {} for {}",
                        caller.map_or("nobody".to_owned(), |c| c.name().to_owned()),
                        peer.map_or("no socket".to_owned(), |p| p.0.0.to_string()),
                        headers
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("no host")
                    )
                },
            ),
        );
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(app, stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exchange.origins().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "payments never filed itself"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exchange.origins(), std::slice::from_ref(&url));

    // Orders and cart, as their servers would call out: the transport of a server built with
    // the same exchange.
    let caller = |service: &str| -> anyhow::Result<Transport> {
        let config = config_of(service)?;
        let identity = Identity::load(&config.mtls)?;
        Ok(Transport::with_identity(identity).with_exchange(exchange.clone()))
    };
    let (orders, cart) = (caller("orders")?, caller("cart")?);
    let authority = url.trim_start_matches("https://");
    assert_eq!(
        send(
            &orders,
            Request::get(format!("{url}/where")).body(Body::empty())?
        )
        .await?,
        (
            StatusCode::OK,
            format!("orders via 127.0.0.1:0 for {authority}")
        )
    );
    let charge = || Request::post(format!("{url}/charges")).body(Body::empty());
    assert_eq!(
        send(&orders, charge()?).await?,
        (StatusCode::OK, "charged".into())
    );
    let (status, body) = send(&cart, charge()?).await?;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "routes still name their callers: {body}"
    );
    assert!(body.contains("cart may not call POST /charges"), "{body}");
    // The chassis's middleware is on the way: request ids, metrics.
    let response = orders
        .send(Request::get(format!("{url}/where")).body(Body::empty())?)
        .await?;
    assert!(response.headers().contains_key("x-request-id"));

    // Stopped, it is taken back: the next call goes to the wire, where nothing listens.
    stop.cancel();
    task.await??;
    assert!(exchange.origins().is_empty());
    let gone = orders
        .send(Request::get(format!("{url}/where")).body(Body::empty())?)
        .await;
    assert!(
        gone.is_err_and(|e| e.is_connect()),
        "called over the wire after it stopped"
    );
    Ok(())
}
