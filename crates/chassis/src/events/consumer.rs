//! The consuming side: handlers run in a transaction with the record of their consumption.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::events::Envelope;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::outbox::FeedPage;
use super::{EventMetrics, dead_letters};
use crate::client::ServiceClient;
use crate::config::{EventTransport, EventsConfig};
use crate::db::{Db, WriteTransaction, is_unique_violation, now_millis};
use crate::error::ErrorChain;

/// What a handler's failure is: anything, with its chain of causes.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Handles events of the types it subscribed to. Its writes go to `tx`, which also records
/// that the event was consumed: they commit together or not at all.
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// How the consumption of an event is recorded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Record<'a> {
    /// Move the feed cursor of `producer` from `from` to `to`; if it is no longer at `from`,
    /// another instance handled the event.
    Cursor {
        producer: &'a str,
        from: i64,
        to: i64,
    },
    /// Insert the event's id into the inbox; if it is there, this is a redelivery.
    Inbox,
}

/// What came of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Handled and recorded.
    Handled,
    /// Recorded before: no second effect.
    Duplicate,
    /// Failed `max_attempts` times; now in the dead letters.
    DeadLettered,
    /// The service is stopping; not recorded.
    Stopped,
}

/// The events a service consumes, and the handlers of each type.
#[derive(Clone)]
pub struct Consumer {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) name: String,
    pub(super) db: Db,
    client: ServiceClient,
    pub(super) config: EventsConfig,
    /// Producer → event type → handler.
    pub(super) handlers: BTreeMap<String, BTreeMap<String, Arc<dyn Handler>>>,
    pub(super) metrics: EventMetrics,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.inner.name)
            .field(
                "subscriptions",
                &self.inner.handlers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`Consumer`].
pub struct ConsumerBuilder {
    inner: Inner,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer named after the consuming service `name`, recording consumption in `db` and
    /// reaching producers through `client`.
    pub fn builder(
        name: &str,
        db: Db,
        client: ServiceClient,
        config: &EventsConfig,
        metrics: EventMetrics,
    ) -> ConsumerBuilder {
        ConsumerBuilder {
            inner: Inner {
                name: name.to_owned(),
                db,
                client,
                config: config.clone(),
                handlers: BTreeMap::new(),
                metrics,
            },
        }
    }

    /// Starts consuming, one task per producer, until `stop`.
    pub fn start(&self, stop: CancellationToken) -> Vec<JoinHandle<()>> {
        self.inner
            .handlers
            .keys()
            .map(|producer| {
                let consumer = self.clone();
                let producer = producer.clone();
                let stop = stop.clone();
                match self.inner.config.transport {
                    EventTransport::Feed => {
                        tokio::spawn(async move { consumer.follow_feed(&producer, stop).await })
                    }
                    EventTransport::Nats => {
                        tokio::spawn(super::nats::follow(consumer, producer, stop))
                    }
                }
            })
            .collect()
    }

    /// The handler for `event`, if this consumer subscribed to its type.
    pub(super) fn handler_for(&self, event: &Envelope) -> Option<Arc<dyn Handler>> {
        self.inner
            .handlers
            .get(&event.source)
            .and_then(|types| types.get(&event.kind))
            .cloned()
    }

    /// Long-polls `producer`'s feed and handles what comes, until `stop`.
    async fn follow_feed(&self, producer: &str, stop: CancellationToken) {
        let inner = &self.inner;
        let types: Vec<&str> = inner
            .handlers
            .get(producer)
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let types = types.join(",");
        let mut failures = 0u32;
        // The stored cursor, while this loop knows it: each page's deliveries move it, so it is
        // read again only at the start and after another instance moved it or a write failed,
        // not once a page (a write transaction and a read where the page is often one event).
        let mut known: Option<i64> = None;
        while !stop.is_cancelled() {
            let cursor = match known {
                Some(cursor) => cursor,
                None => match self.cursor(producer).await {
                    Ok(cursor) => cursor,
                    Err(error) => {
                        tracing::warn!(producer, error = %ErrorChain(&error), "could not read the event cursor");
                        pause(&stop, backoff(&mut failures)).await;
                        continue;
                    }
                },
            };
            known = Some(cursor);
            let wait = inner.config.feed_wait;
            let path = format!(
                "/internal/events?after={cursor}&types={types}&wait={}ms",
                wait.as_millis()
            );
            let call = inner
                .client
                .get(producer, &path)
                .timeout(wait + Duration::from_secs(5));
            let page: FeedPage = tokio::select! {
                () = stop.cancelled() => return,
                page = call.send() => match page.and_then(|r| r.json()) {
                    Ok(page) => page,
                    Err(error) => {
                        // The producer is down or unreachable: its events wait in its outbox.
                        tracing::debug!(producer, error = %ErrorChain(&error), "event feed unavailable");
                        pause(&stop, backoff(&mut failures)).await;
                        continue;
                    }
                },
            };
            failures = 0;
            let mut at = cursor;
            let mut complete = true;
            for event in &page.events {
                let to = event.position.unwrap_or(at);
                let record = Record::Cursor {
                    producer,
                    from: at,
                    to,
                };
                match self.deliver(event, record, &stop).await {
                    Ok(Delivery::Stopped) => return,
                    Ok(Delivery::Handled | Delivery::DeadLettered) => at = to,
                    // Another instance moved the cursor: read it again.
                    Ok(Delivery::Duplicate) => {
                        complete = false;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(producer, event = %event.id, error = %ErrorChain(&error), "could not record an event");
                        pause(&stop, backoff(&mut failures)).await;
                        complete = false;
                        break;
                    }
                }
            }
            known = complete.then_some(at);
            // Events of types nobody here handles were left out of the page: move past them.
            if complete && page.last_position > at {
                known = match self.skip(producer, at, page.last_position).await {
                    Ok(true) => Some(page.last_position),
                    Ok(false) => None,
                    Err(error) => {
                        tracing::warn!(producer, error = %ErrorChain(&error), "could not move the event cursor");
                        None
                    }
                };
            }
            inner.metrics.lag(
                &inner.name,
                producer,
                page.head.saturating_sub(page.last_position.max(at)),
            );
        }
    }

    /// The stored cursor for `producer`, created at 0 the first time.
    async fn cursor(&self, producer: &str) -> Result<i64, sqlx::Error> {
        let db = &self.inner.db;
        let mut tx = db.begin_write().await?;
        sqlx::query(
            "INSERT INTO event_cursors (consumer, producer, position, updated_at) VALUES ($1, $2, 0, $3)
             ON CONFLICT (consumer, producer) DO NOTHING",
        )
        .bind(&self.inner.name)
        .bind(producer)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("SELECT position FROM event_cursors WHERE consumer = $1 AND producer = $2")
            .bind(&self.inner.name)
            .bind(producer)
            .fetch_one(db.reader())
            .await
            .and_then(|row| sqlx::Row::try_get(&row, "position"))
    }

    /// Moves the cursor over events nobody here handles; `false` when it was no longer at
    /// `from` (another instance moved it).
    async fn skip(&self, producer: &str, from: i64, to: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.inner.db.begin_write().await?;
        let moved = move_cursor(&mut tx, &self.inner.name, producer, from, to).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Handles `event` until it succeeds, is found handled already, or has failed
    /// `max_attempts` times (then it goes to the dead letters). Errors are the database's only.
    ///
    /// The handling is a consumer span continuing the producer's trace, and runs as the
    /// request that published the event (its `x-request-id`), so the calls a handler makes
    /// carry both on.
    pub(super) async fn deliver(
        &self,
        event: &Envelope,
        record: Record<'_>,
        stop: &CancellationToken,
    ) -> Result<Delivery, sqlx::Error> {
        let span = tracing::info_span!(
            "event",
            consumer = %self.inner.name,
            event = %event.id,
            kind = %event.kind,
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            otel.name = %format_args!("{} process", event.kind),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            messaging.operation.type = "process",
            messaging.message.id = %event.id,
            messaging.message.type = %event.kind,
        );
        let request_id = event
            .request_id
            .clone()
            .filter(|id| crate::context::is_valid_request_id(id))
            .unwrap_or_else(crate::context::new_request_id);
        span.record("request_id", request_id.as_str());
        let context = crate::context::RequestContext {
            request_id,
            path: format!("event:{}", event.kind),
            trace: crate::trace::consuming(&span, event.traceparent.as_deref()),
        };
        let delivery = crate::context::scope(
            context,
            self.deliver_traced(event, record, stop)
                .instrument(span.clone()),
        )
        .await;
        if matches!(delivery, Ok(Delivery::DeadLettered) | Err(_)) {
            span.record("otel.status_code", "ERROR");
        }
        delivery
    }

    async fn deliver_traced(
        &self,
        event: &Envelope,
        record: Record<'_>,
        stop: &CancellationToken,
    ) -> Result<Delivery, sqlx::Error> {
        let inner = &self.inner;
        let Some(handler) = self.handler_for(event) else {
            // Not ours (a type nobody here subscribed to): record it, with no effect.
            let mut tx = inner.db.begin_write().await?;
            return Ok(
                if record_consumption(&mut tx, &inner.name, event, record).await? {
                    tx.commit().await?;
                    Delivery::Handled
                } else {
                    Delivery::Duplicate
                },
            );
        };
        let max_attempts = inner.config.max_attempts.max(1);
        let mut failures = 0u32;
        let mut last_error = String::new();
        for attempt in 1..=max_attempts {
            let mut tx = inner.db.begin_write().await?;
            if !record_consumption(&mut tx, &inner.name, event, record).await? {
                inner.metrics.handled(&inner.name, &event.kind, "duplicate");
                return Ok(Delivery::Duplicate);
            }
            match handler.handle(&mut tx, event).await {
                Ok(()) => {
                    tx.commit().await?;
                    inner.metrics.handled(&inner.name, &event.kind, "handled");
                    return Ok(Delivery::Handled);
                }
                Err(error) => {
                    tx.rollback().await?;
                    last_error = ErrorChain(error.as_ref()).to_string();
                    inner.metrics.handled(&inner.name, &event.kind, "failed");
                    tracing::warn!(consumer = %inner.name, event = %event.id, kind = %event.kind, attempt, error = %last_error, "event handler failed");
                    if attempt < max_attempts {
                        pause(stop, backoff(&mut failures)).await;
                        if stop.is_cancelled() {
                            return Ok(Delivery::Stopped);
                        }
                    }
                }
            }
        }
        let mut tx = inner.db.begin_write().await?;
        if !record_consumption(&mut tx, &inner.name, event, record).await? {
            return Ok(Delivery::Duplicate);
        }
        dead_letters::insert(&mut tx, &inner.name, event, &last_error, max_attempts).await?;
        tx.commit().await?;
        inner
            .metrics
            .handled(&inner.name, &event.kind, "dead_lettered");
        tracing::error!(consumer = %inner.name, event = %event.id, kind = %event.kind, error = %last_error, "event moved to the dead letters");
        Ok(Delivery::DeadLettered)
    }
}

impl ConsumerBuilder {
    /// Handles events of type `kind` from `producer` with `handler`.
    #[must_use]
    pub fn on(mut self, producer: &str, kind: &str, handler: Arc<dyn Handler>) -> Self {
        self.inner
            .handlers
            .entry(producer.to_owned())
            .or_default()
            .insert(kind.to_owned(), handler);
        self
    }

    /// The consumer.
    pub fn build(self) -> Consumer {
        Consumer {
            inner: Arc::new(self.inner),
        }
    }
}

/// Records the consumption of `event`; `false` when it was recorded before.
async fn record_consumption(
    tx: &mut WriteTransaction,
    consumer: &str,
    event: &Envelope,
    record: Record<'_>,
) -> Result<bool, sqlx::Error> {
    match record {
        Record::Cursor { producer, from, to } => {
            move_cursor(tx, consumer, producer, from, to).await
        }
        Record::Inbox => {
            let inserted = sqlx::query(
                "INSERT INTO event_inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3)",
            )
            .bind(consumer)
            .bind(&event.id)
            .bind(now_millis())
            .execute(&mut **tx)
            .await;
            match inserted {
                Ok(_) => Ok(true),
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Moves a cursor from `from` to `to`; `false` when it is no longer at `from`.
async fn move_cursor(
    tx: &mut WriteTransaction,
    consumer: &str,
    producer: &str,
    from: i64,
    to: i64,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE event_cursors SET position = $1, updated_at = $2 WHERE consumer = $3 AND producer = $4 AND position = $5",
    )
    .bind(to)
    .bind(now_millis())
    .bind(consumer)
    .bind(producer)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// 100 ms doubling to 5 s, jittered into the upper half; counts the failure.
fn backoff(failures: &mut u32) -> Duration {
    *failures = failures.saturating_add(1);
    let base = Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(5));
    base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

async fn pause(stop: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}
