//! Events: the transactional outbox on the producing side, effectively-once handlers on the
//! consuming side, and the transports in between.
//!
//! A producer calls [`publish`] inside the write transaction of the state change it announces,
//! so the event exists if and only if the change does. A consumer registers [`Handler`]s with a
//! [`Consumer`]; each event is handled in a write transaction that also records its
//! consumption (the feed cursor, or the inbox), so a redelivered event has no second effect.
//! A handler that fails [`EventsConfig::max_attempts`](crate::config::EventsConfig) times moves
//! the event to the dead letters, from where an operator can replay it.
//!
//! Transports ([`crate::config::EventTransport`]):
//! - `feed`: the producer serves its outbox at `GET /internal/events` ([`routes`]); consumers
//!   long-poll it through discovery and keep their cursor in their own database.
//! - `nats`: a relay publishes the outbox to JetStream; consumers pull from a durable consumer.
//!
//! Both deliver at least once, in order per producer.

#[cfg(test)]
mod conformance;
mod consumer;
mod dead_letters;
mod nats;
mod outbox;

use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::migrate::Migrator;

use crate::config::{EventTransport, EventsConfig};
use crate::db::Db;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use consumer::{Consumer, ConsumerBuilder, Handler, HandlerError};
pub use dead_letters::DeadLetter;
pub use outbox::{FeedPage, publish, read_feed};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/events");

/// The migrator of the event tables, for [`Db::connect_with`](crate::db::Db::connect_with)
/// after the service's own. They keep their own history (`_bazaar_events_migrations`), so
/// the two never mistake each other's versions.
pub fn migrator() -> &'static Migrator {
    static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
        let mut migrator = Migrator::with_migrations(MIGRATIONS.migrations.to_vec());
        migrator.dangerous_set_table_name("_bazaar_events_migrations");
        migrator
    });
    &MIGRATOR
}

/// The routes every producer and consumer serves, for other services and operators (not
/// routed by the gateway): the feed, and the dead letters.
///
/// | route | what |
/// |---|---|
/// | `GET /internal/events?after=&types=&wait=&limit=` | the outbox, in order |
/// | `GET /internal/dead-letters` | events a handler gave up on |
/// | `POST /internal/dead-letters/{id}/replay` | handle one again |
pub fn routes(db: Db, feed_wait: Duration, consumer: Option<Consumer>) -> Router {
    outbox::routes(db, feed_wait).merge(dead_letters::routes(consumer))
}

/// A service's events: its outbox (every service with events publishes through it) and,
/// when it consumes, its [`Consumer`]. Given to [`Server::with_events`](crate::Server::with_events),
/// which serves [`routes`] and runs the background work while the service runs.
#[derive(Debug, Clone)]
pub struct Events {
    db: Db,
    source: String,
    config: EventsConfig,
    metrics: EventMetrics,
    consumer: Option<Consumer>,
}

impl Events {
    /// The events of the service `source`, whose database is `db` (migrated with
    /// [`migrator`]); registers the event metrics in `registry`.
    pub fn new(db: Db, source: &str, config: &EventsConfig, registry: &mut Registry) -> Self {
        Self {
            db,
            source: source.to_owned(),
            config: config.clone(),
            metrics: EventMetrics::register(registry),
            consumer: None,
        }
    }

    /// The metrics, for a [`Consumer`] to report into.
    pub fn metrics(&self) -> EventMetrics {
        self.metrics.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// Consumes events with `consumer` too.
    #[must_use]
    pub fn consuming(mut self, consumer: Consumer) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// The feed and the dead letters.
    pub fn routes(&self) -> Router {
        routes(
            self.db.clone(),
            self.config.feed_wait,
            self.consumer.clone(),
        )
    }

    /// Starts the relay, the outbox cleaning and the consumer, until `stop`.
    pub fn start(&self, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = start_producer(
            self.db.clone(),
            &self.source,
            &self.config,
            self.metrics.clone(),
            stop.clone(),
        );
        if let Some(consumer) = &self.consumer {
            tasks.extend(consumer.start(stop.clone()));
        }
        tasks
    }
}

/// How often the outbox is cleaned of events older than the retention.
const CLEAN_EVERY: Duration = Duration::from_secs(600);

/// Starts a producer's background work, until `stop`: on the `nats` transport the relay that
/// publishes `source`'s outbox to JetStream, and always the removal of events older than
/// `config.retention` (on `nats`, only those already relayed).
pub fn start_producer(
    db: Db,
    source: &str,
    config: &EventsConfig,
    metrics: EventMetrics,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let relayed = config.transport == EventTransport::Nats;
    if relayed {
        tasks.push(tokio::spawn(nats::relay(
            db.clone(),
            source.to_owned(),
            config.clone(),
            metrics,
            stop.clone(),
        )));
    }
    let retention = config.retention;
    tasks.push(crate::worker::every(CLEAN_EVERY, stop, move || {
        let db = db.clone();
        async move {
            match outbox::clean(&db, retention, relayed).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old events removed from the outbox"),
                Err(error) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&error), "could not clean the outbox");
                }
            }
        }
    }));
    tasks
}

/// Labels of consumer metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// The consuming service.
    pub consumer: String,
    /// The producing service.
    pub producer: String,
}

/// Labels of handled events.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    /// The consuming service.
    pub consumer: String,
    /// The event type.
    pub kind: String,
    /// `handled`, `duplicate`, `failed` or `dead_lettered`.
    pub outcome: String,
}

/// Event metrics.
#[derive(Debug, Clone, Default)]
pub struct EventMetrics {
    lag: Family<FlowLabels, Gauge>,
    handled: Family<HandledLabels, Counter>,
    outbox_unpublished: Gauge,
}

impl EventMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "events_consumer_lag",
            "Events a consumer has yet to handle, by consumer and producer",
            metrics.lag.clone(),
        );
        registry.register(
            "events_handled",
            "Event deliveries, by consumer, type and outcome",
            metrics.handled.clone(),
        );
        registry.register(
            "events_outbox_unpublished",
            "Outbox events the relay has yet to hand to the broker",
            metrics.outbox_unpublished.clone(),
        );
        metrics
    }

    fn lag(&self, consumer: &str, producer: &str, lag: i64) {
        self.lag
            .get_or_create(&FlowLabels {
                consumer: consumer.to_owned(),
                producer: producer.to_owned(),
            })
            .set(lag);
    }

    fn handled(&self, consumer: &str, kind: &str, outcome: &str) {
        self.handled
            .get_or_create(&HandledLabels {
                consumer: consumer.to_owned(),
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
