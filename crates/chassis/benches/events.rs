//! Events end to end, publish → handled, on each transport: `cargo bench -p chassis --features
//! test-util --bench events`. A producer publishes N events, one transaction each, while a
//! consumer handles them (a handler that writes one row); prints events per second and the
//! publish-to-handled latency. The NATS run needs a server at 127.0.0.1:4222 and is skipped
//! without one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis::client::{ServiceClient, Transport};
use chassis::config::{ChassisConfig, EventTransport, EventsConfig};
use chassis::db::{Db, WriteTransaction};
use chassis::discovery::Discovery;
use chassis::events::{Consumer, EventMetrics, Handler, HandlerError};
use chassis::testing::TestDatabase;
use contracts::events::{Envelope, Event};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 3000;

#[derive(Serialize, Deserialize)]
struct Ping {
    n: usize,
}

impl Event for Ping {
    const TYPE: &'static str = "bench.ping.sent";
    const VERSION: u32 = 1;
}

/// Records how long each event took from publish to handling.
#[derive(Default)]
struct Timer {
    latencies: Mutex<Vec<Duration>>,
}

impl Handler for Timer {
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO handled (event_id) VALUES ($1)")
                .bind(&event.id)
                .execute(&mut **tx)
                .await?;
            let waited = (chrono::Utc::now() - event.occurred_at)
                .to_std()
                .unwrap_or_default();
            self.latencies.lock().map_err(|_| "poisoned")?.push(waited);
            Ok(())
        })
    }
}

async fn run(transport: EventTransport) -> Option<String> {
    let (producer_db, consumer_db) = (TestDatabase::sqlite(), TestDatabase::sqlite());
    let connect = |db: &TestDatabase| {
        let url = db.url();
        async move {
            Db::connect_with(&url, &Default::default(), &[chassis::events::migrator()])
                .await
                .expect("connects")
        }
    };
    let producer = connect(&producer_db).await;
    let consumer_store = connect(&consumer_db).await;
    sqlx::query("CREATE TABLE handled (event_id TEXT PRIMARY KEY)")
        .execute(consumer_store.pool())
        .await
        .expect("table");
    let config = EventsConfig {
        transport,
        nats_prefix: format!("bench{}", uuid::Uuid::new_v4().simple()),
        feed_wait: Duration::from_secs(1),
        ..EventsConfig::default()
    };
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let url = format!("http://{}", listener.local_addr().ok()?);
    let app = chassis::events::routes(producer.clone(), Duration::from_secs(1), None);
    let until = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
    });
    let metrics = EventMetrics::default();
    let _relay = chassis::events::start_producer(
        producer.clone(),
        "bench",
        &config,
        metrics.clone(),
        stop.clone(),
    );
    let mut chassis = ChassisConfig::with_port(0);
    chassis.discovery.registry = None;
    chassis
        .discovery
        .static_instances
        .insert("bench".into(), vec![url]);
    let transport_http = Transport::http();
    let discovery = Discovery::new(&chassis.discovery, transport_http.clone(), &stop);
    let client = ServiceClient::new(discovery, transport_http, &chassis.discovery, "bench");
    let timer = Arc::new(Timer::default());
    let consumer = Consumer::builder("consumer", consumer_store.clone(), client, &config, metrics)
        .on("bench", Ping::TYPE, Arc::clone(&timer) as Arc<dyn Handler>)
        .build();
    let _tasks = consumer.start(stop.clone());

    let started = Instant::now();
    for n in 0..EVENTS {
        let mut tx = producer.begin_write().await.expect("begins");
        chassis::events::publish(&mut tx, "bench", &Ping { n })
            .await
            .expect("publishes");
        tx.commit().await.expect("commits");
    }
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let handled = timer.latencies.lock().map(|l| l.len()).unwrap_or(0);
        if handled >= EVENTS {
            break;
        }
        if Instant::now() > deadline {
            stop.cancel();
            return Some(format!(
                "{transport:?}: only {handled} of {EVENTS} handled in 120 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut latencies = timer
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort();
    let pct = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    if transport == EventTransport::Nats
        && let Ok(client) = async_nats::connect("127.0.0.1:4222").await
    {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("{}_BENCH", config.nats_prefix.to_uppercase()))
            .await;
    }
    Some(format!(
        "{transport:?}: {EVENTS} events published in {:.2} s ({:.0}/s); all handled after {:.2} s: \
         {:.0} events/s end to end; publish → handled p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        published.as_secs_f64(),
        EVENTS as f64 / published.as_secs_f64(),
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        pct(1.0).as_secs_f64() * 1000.0,
    ))
}

#[tokio::main]
async fn main() {
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    if let Some(line) = run(EventTransport::Feed).await {
        println!("{line}");
    }
    let nats_up = tokio::net::TcpStream::connect("127.0.0.1:4222")
        .await
        .is_ok();
    if nats_up {
        if let Some(line) = run(EventTransport::Nats).await {
            println!("{line}");
        }
    } else {
        println!("Nats: skipped, no server at 127.0.0.1:4222");
    }
}
