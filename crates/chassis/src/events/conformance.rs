//! The transport conformance suite: the same guarantees, checked the same way, on every
//! transport. A producer publishes `Tick`s into its outbox; a consumer records each one it
//! handles in an `effects` table whose primary key is the event id, so a second effect of one
//! event would fail loudly.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use contracts::events::{Envelope, Event};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{
    Consumer, EventMetrics, Handler, HandlerError, migrator, publish, routes, start_producer,
};
use crate::client::{ServiceClient, Transport};
use crate::config::{ChassisConfig, EventTransport, EventsConfig};
use crate::db::{Db, WriteTransaction};
use crate::discovery::Discovery;
use crate::testing::TestDatabase;

const PRODUCER: &str = "producer";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tick {
    n: i64,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    slow: bool,
}

impl Event for Tick {
    const TYPE: &'static str = "producer.tick.happened";
    const VERSION: u32 = 1;
}

/// Another type, which the consumer does not subscribe to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tock {
    n: i64,
}

impl Event for Tock {
    const TYPE: &'static str = "producer.tock.happened";
    const VERSION: u32 = 1;
}

/// Records each tick in `effects`.
#[derive(Default)]
struct Recorder {
    /// Ticks marked `fail` fail while this is set.
    failing: AtomicBool,
    /// Ticks marked `slow` hang (once) while this is set; `entered` says one did.
    slow: AtomicBool,
    entered: tokio::sync::Notify,
    seen: Mutex<HashSet<String>>,
}

impl Handler for Recorder {
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let tick: Tick = event.decode()?;
            if tick.fail && self.failing.load(Ordering::SeqCst) {
                return Err(format!("tick {} refused", tick.n).into());
            }
            if tick.slow && self.slow.swap(false, Ordering::SeqCst) {
                self.entered.notify_one();
                // Hangs until the consumer is killed.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            let seq: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM effects")
                .fetch_one(&mut **tx)
                .await?
                .try_get("n")?;
            sqlx::query("INSERT INTO effects (event_id, n, seq) VALUES ($1, $2, $3)")
                .bind(&event.id)
                .bind(tick.n)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            self.seen
                .lock()
                .map_err(|_| "poisoned")?
                .insert(event.id.clone());
            Ok(())
        })
    }
}

/// The transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Feed,
    Nats,
}

/// A producer and a consumer database, joined by one transport.
struct Harness {
    kind: Kind,
    producer_db: Db,
    consumer_db: Db,
    producer_addr: SocketAddr,
    /// The running producer side: the feed's server, or the relay.
    producer_server: Option<(CancellationToken, Vec<JoinHandle<()>>)>,
    config: EventsConfig,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    _dbs: (TestDatabase, TestDatabase),
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some((stop, _)) = &self.producer_server {
            stop.cancel();
        }
        if self.kind == Kind::Nats {
            // The test's stream (and its consumers) go with it.
            let url = self.config.nats_url.clone();
            let stream = super::nats::stream_name(&self.config.nats_prefix, PRODUCER);
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async move {
                    let client = async_nats::connect(url).await.ok()?;
                    async_nats::jetstream::new(client)
                        .delete_stream(stream)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

impl Harness {
    async fn new(kind: Kind, producer: TestDatabase, consumer: TestDatabase) -> Self {
        let connect = |db: &TestDatabase| {
            let url = db.url();
            async move {
                Db::connect_with(&url, &Default::default(), &[migrator()])
                    .await
                    .expect("connects")
            }
        };
        let producer_db = connect(&producer).await;
        let consumer_db = connect(&consumer).await;
        sqlx::query("CREATE TABLE effects (event_id TEXT PRIMARY KEY, n BIGINT NOT NULL, seq BIGINT NOT NULL)")
            .execute(consumer_db.pool())
            .await
            .expect("effects table");
        // A free port, released for the producer's server to take.
        let producer_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        Self {
            kind,
            producer_db,
            consumer_db,
            producer_addr,
            producer_server: None,
            config: EventsConfig {
                transport: match kind {
                    Kind::Feed => EventTransport::Feed,
                    Kind::Nats => EventTransport::Nats,
                },
                // Streams and consumers of this test only.
                nats_prefix: format!("t{}", uuid::Uuid::new_v4().simple()),
                nats_ack_wait: Duration::from_secs(1),
                max_attempts: 3,
                feed_wait: Duration::from_millis(300),
                ..EventsConfig::default()
            },
            recorder: Arc::new(Recorder::default()),
            stop: CancellationToken::new(),
            _dbs: (producer, consumer),
        }
    }

    /// Starts the producer's side: serves its feed, or runs its relay.
    async fn start_producer(&mut self) {
        let stop = CancellationToken::new();
        let tasks = match self.kind {
            Kind::Feed => {
                let listener = tokio::net::TcpListener::bind(self.producer_addr)
                    .await
                    .expect("the producer's port is free");
                let app = routes(self.producer_db.clone(), Duration::from_millis(300), None);
                let until = stop.clone();
                vec![tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { until.cancelled().await })
                        .await;
                })]
            }
            Kind::Nats => start_producer(
                self.producer_db.clone(),
                PRODUCER,
                &self.config,
                EventMetrics::default(),
                stop.clone(),
            ),
        };
        self.producer_server = Some((stop, tasks));
    }

    /// A consumer of ticks (not tocks), not started.
    fn consumer(&self) -> Consumer {
        let mut chassis = ChassisConfig::with_port(0);
        chassis.discovery.registry = None;
        chassis.discovery.call_timeout = Duration::from_secs(2);
        chassis.discovery.static_instances.insert(
            PRODUCER.to_owned(),
            vec![format!("http://{}", self.producer_addr)],
        );
        let transport = Transport::http();
        let discovery = Discovery::new(&chassis.discovery, transport.clone(), &self.stop);
        let client = ServiceClient::new(discovery, transport, &chassis.discovery, "consumer");
        Consumer::builder(
            "consumer",
            self.consumer_db.clone(),
            client,
            &self.config,
            EventMetrics::default(),
        )
        .on(
            PRODUCER,
            Tick::TYPE,
            Arc::clone(&self.recorder) as Arc<dyn Handler>,
        )
        .build()
    }

    /// Starts a consumer; its tasks end with `stop`, or when aborted.
    fn start_consumer(&self, stop: &CancellationToken) -> (Consumer, Vec<JoinHandle<()>>) {
        let consumer = self.consumer();
        let tasks = consumer.start(stop.clone());
        (consumer, tasks)
    }

    async fn publish(&self, ticks: impl IntoIterator<Item = Tick>) {
        for tick in ticks {
            let mut tx = self.producer_db.begin_write().await.expect("begins");
            publish(&mut tx, PRODUCER, &tick).await.expect("publishes");
            tx.commit().await.expect("commits");
        }
    }

    async fn publish_tock(&self, n: i64) {
        let mut tx = self.producer_db.begin_write().await.expect("begins");
        publish(&mut tx, PRODUCER, &Tock { n })
            .await
            .expect("publishes");
        tx.commit().await.expect("commits");
    }

    /// `n` of every effect, in the order they were handled.
    async fn effects(&self) -> Vec<i64> {
        sqlx::query("SELECT n FROM effects ORDER BY seq")
            .fetch_all(self.consumer_db.pool())
            .await
            .expect("reads")
            .iter()
            .map(|r| r.try_get("n").expect("n"))
            .collect()
    }

    async fn dead_letters(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT id, error FROM event_dead_letters ORDER BY dead_at")
            .fetch_all(self.consumer_db.pool())
            .await
            .expect("reads")
            .iter()
            .map(|r| {
                (
                    r.try_get("id").expect("id"),
                    r.try_get("error").expect("error"),
                )
            })
            .collect()
    }

    /// Waits (10 s at most) until there are `n` effects.
    async fn wait_for_effects(&self, n: usize) -> Vec<i64> {
        for _ in 0..400 {
            let effects = self.effects().await;
            if effects.len() >= n {
                return effects;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} effects expected, got {:?}", self.effects().await);
    }
}

fn ticks(range: std::ops::Range<i64>) -> impl Iterator<Item = Tick> {
    range.map(|n| Tick {
        n,
        ..Tick::default()
    })
}

/// Each scenario on the feed over SQLite and PostgreSQL, and on NATS.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::{Kind, TestDatabase};

                #[tokio::test]
                async fn feed_sqlite() {
                    super::$name(Kind::Feed, TestDatabase::sqlite()).await;
                }

                #[tokio::test]
                #[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
                async fn feed_postgres() {
                    super::$name(Kind::Feed, TestDatabase::postgres().await).await;
                }

                #[tokio::test]
                #[ignore = "needs NATS JetStream at 127.0.0.1:4222"]
                async fn nats_sqlite() {
                    super::$name(Kind::Nats, TestDatabase::sqlite()).await;
                }
            }
        )*
    };
}

conformance!(
    events_arrive_once_and_in_order,
    a_crash_before_commit_redelivers_without_a_second_effect,
    two_replicas_handle_each_event_once,
    a_failing_event_is_dead_lettered_and_replayed,
    a_producer_that_is_down_delays_but_loses_nothing,
);

/// A harness with a consumer database of the same kind as `db`, its producer side started
/// when `running`.
async fn harness(kind: Kind, db: TestDatabase, running: bool) -> Harness {
    let other = if db.is_postgres() {
        TestDatabase::postgres().await
    } else {
        TestDatabase::sqlite()
    };
    let mut h = Harness::new(kind, db, other).await;
    if running {
        h.start_producer().await;
    }
    h
}

async fn events_arrive_once_and_in_order(kind: Kind, db: TestDatabase) {
    let h = harness(kind, db, true).await;
    h.publish(ticks(0..10)).await;
    h.publish_tock(99).await;
    h.publish(ticks(10..30)).await;
    let _consumer = h.start_consumer(&h.stop);
    let effects = h.wait_for_effects(30).await;
    assert_eq!(effects, (0..30).collect::<Vec<_>>(), "in order, once each");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.effects().await.len(), 30, "nothing more, and no tock");
    assert!(h.dead_letters().await.is_empty());
}

async fn a_crash_before_commit_redelivers_without_a_second_effect(kind: Kind, db: TestDatabase) {
    let h = harness(kind, db, true).await;
    h.recorder.slow.store(true, Ordering::SeqCst);
    h.publish(ticks(0..3)).await;
    h.publish([Tick {
        n: 3,
        slow: true,
        ..Tick::default()
    }])
    .await;
    h.publish(ticks(4..8)).await;
    let crashing = CancellationToken::new();
    let (_, tasks) = h.start_consumer(&crashing);
    tokio::time::timeout(Duration::from_secs(10), h.recorder.entered.notified())
        .await
        .expect("the slow tick is being handled");
    // Killed in the middle of handling tick 3: its transaction never commits.
    for task in tasks {
        task.abort();
    }
    assert_eq!(h.effects().await, vec![0, 1, 2]);
    let _restarted = h.start_consumer(&h.stop);
    let effects = h.wait_for_effects(8).await;
    assert_eq!(effects, (0..8).collect::<Vec<_>>());
}

async fn two_replicas_handle_each_event_once(kind: Kind, db: TestDatabase) {
    let h = harness(kind, db, true).await;
    let _one = h.start_consumer(&h.stop);
    let _two = h.start_consumer(&h.stop);
    h.publish(ticks(0..40)).await;
    let effects = h.wait_for_effects(40).await;
    assert_eq!(effects, (0..40).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.effects().await.len(), 40);
    assert!(
        h.dead_letters().await.is_empty(),
        "no effect was tried twice"
    );
}

async fn a_failing_event_is_dead_lettered_and_replayed(kind: Kind, db: TestDatabase) {
    let h = harness(kind, db, true).await;
    h.recorder.failing.store(true, Ordering::SeqCst);
    h.publish(ticks(0..2)).await;
    h.publish([Tick {
        n: 2,
        fail: true,
        ..Tick::default()
    }])
    .await;
    h.publish(ticks(3..5)).await;
    let (consumer, _tasks) = h.start_consumer(&h.stop);
    let effects = h.wait_for_effects(4).await;
    assert_eq!(
        effects,
        vec![0, 1, 3, 4],
        "the failing event does not block the rest"
    );
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1.contains("tick 2 refused"), "{dead:?}");

    let app = routes(h.consumer_db.clone(), Duration::ZERO, Some(consumer));
    let call = |method: &str, path: String| {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request)
    };
    let listed = call("GET", "/internal/dead-letters".into())
        .await
        .expect("answers");
    assert_eq!(listed.status(), 200);
    let again = call(
        "POST",
        format!("/internal/dead-letters/{}/replay", dead[0].0),
    )
    .await
    .expect("answers");
    assert_eq!(again.status(), 409, "still failing: it stays dead");
    h.recorder.failing.store(false, Ordering::SeqCst);
    let replayed = call(
        "POST",
        format!("/internal/dead-letters/{}/replay", dead[0].0),
    )
    .await
    .expect("answers");
    assert_eq!(replayed.status(), 200);
    assert_eq!(h.effects().await, vec![0, 1, 3, 4, 2]);
    let twice = call(
        "POST",
        format!("/internal/dead-letters/{}/replay", dead[0].0),
    )
    .await
    .expect("answers");
    assert_eq!(twice.status(), 409, "replayed once only");
    assert_eq!(h.effects().await.len(), 5);
}

async fn a_producer_that_is_down_delays_but_loses_nothing(kind: Kind, db: TestDatabase) {
    let mut h = harness(kind, db, false).await;
    let _consumer = h.start_consumer(&h.stop);
    h.publish(ticks(0..10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        h.effects().await.is_empty(),
        "nothing reaches a consumer while its producer is down"
    );
    h.start_producer().await;
    let effects = h.wait_for_effects(10).await;
    assert_eq!(effects, (0..10).collect::<Vec<_>>());
}
