//! A request that queries PostgreSQL stays in its trace: calls made after the query are
//! client spans of it, and carry its context on.
//!
//! Its own test binary: tracing is process-wide, installed once.

mod common;

use axum::Router;
use axum::routing::get;
use chassis::client::Transport;
use chassis::config::{ChassisConfig, DatabaseConfig, LogConfig, LogFormat};
use chassis::db::Db;
use chassis::trace::TraceConfig;
use chassis::{Server, ServiceInfo};
use tokio_util::sync::CancellationToken;

/// A write as a service's store makes one: a span of its own around a transaction.
#[tracing::instrument(name = "db", skip_all, fields(otel.name = "front.write", otel.kind = "client"))]
async fn write(db: &Db) -> Result<(i32,), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let one: (i32,) = sqlx::query_as("SELECT 1").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(one)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
async fn a_call_after_a_postgresql_query_stays_in_the_trace() -> anyhow::Result<()> {
    let (collector, received) = common::collector().await?;
    let mut config = ChassisConfig::with_port(0);
    config.discovery.registry = None;
    chassis::telemetry::init(
        &ServiceInfo::new("front", "1.0.0", &config),
        &LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        },
        &TraceConfig {
            endpoint: Some(format!("http://{collector}/v1/traces")),
            sample_ratio: 1.0,
            max_new_per_second: 0,
            start_traces: false,
        },
        Transport::http(),
    )?;
    let server = std::env::var("BAZAAR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = Db::connect_with(&server.into(), &DatabaseConfig::default(), &[]).await?;

    let stop = CancellationToken::new();
    let back = Server::bind(ServiceInfo::new("back", "1.0.0", &config), &config).await?;
    let back_url = back.url().to_owned();
    tokio::spawn(back.serve(
        Router::new().route("/leaf", get(|| async { "leaf" })),
        stop.clone(),
    ));
    let client = common::client_of_back(&config.discovery, back_url, &stop);
    let front = Server::bind(ServiceInfo::new("front", "1.0.0", &config), &config).await?;
    let front_url = front.url().to_owned();
    tokio::spawn(front.serve(
        Router::new().route(
            "/front",
            get(move || {
                let (client, db) = (client.clone(), db.clone());
                async move {
                    let one = write(&db)
                        .await
                        .map_err(|e| chassis::HttpError::internal(e.to_string()))?;
                    let answer = client
                        .get("back", "/leaf")
                        .send()
                        .await
                        .map_err(|e| chassis::HttpError::internal(e.to_string()))?;
                    Ok::<_, chassis::HttpError>(format!("{} {:?}", one.0, answer.body))
                }
            }),
        ),
        stop.clone(),
    ));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let request = http::Request::get(format!("{front_url}/front"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(axum::body::Body::empty())?;
    let response = Transport::http().send(request).await?;
    assert_eq!(response.status(), 200);
    chassis::trace::shutdown().await;
    stop.cancel();
    let spans = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert!(
        names.contains(&"GET back"),
        "the call after the query has no client span: {names:?}"
    );
    assert!(names.contains(&"GET /leaf"), "{names:?}");
    Ok(())
}
