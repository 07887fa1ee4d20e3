//! The `nats` transport: a relay from the outbox to JetStream, and durable pull consumers.
//!
//! Each producer has a stream `<PREFIX>_<SOURCE>` holding the subjects `<prefix>.<source>.>`;
//! an event of type `orders.order.confirmed` is published on `<prefix>.orders.order.confirmed`
//! with `Nats-Msg-Id` = its id, so a relay that publishes it twice (it crashed before marking it)
//! is deduplicated by the broker. A consuming service has one durable pull consumer per
//! producer, named after itself, with one message in flight at a time (per-producer order);
//! each message is acknowledged after the handler's transaction, which also writes the inbox,
//! has committed.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use contracts::events::Envelope;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::consumer::{Consumer, Delivery, Record};
use super::{EventMetrics, outbox};
use crate::config::EventsConfig;
use crate::db::Db;
use crate::error::ErrorChain;

/// A stream name from a prefix and a service: upper-case, with no `.`, `*`, `>` or spaces.
pub(super) fn stream_name(prefix: &str, source: &str) -> String {
    format!("{prefix}_{source}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The subject of an event type.
fn subject(prefix: &str, kind: &str) -> String {
    format!("{prefix}.{kind}")
}

/// Connects to NATS, in the background if it is not up yet.
async fn connect(config: &EventsConfig) -> Result<jetstream::Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(config.nats_url.as_str())
        .await?;
    Ok(jetstream::new(client))
}

/// The stream of `source`'s events, created if missing.
async fn ensure_stream(
    js: &jetstream::Context,
    prefix: &str,
    source: &str,
) -> Result<stream::Stream, async_nats::Error> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: stream_name(prefix, source),
            subjects: vec![format!("{prefix}.{source}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?)
}

/// How long the relay rests when the outbox is empty or the broker unreachable.
const RELAY_IDLE: Duration = Duration::from_millis(20);

/// Publishes `source`'s outbox to JetStream, in order, until `stop`.
pub(super) async fn relay(
    db: Db,
    source: String,
    config: EventsConfig,
    metrics: EventMetrics,
    stop: CancellationToken,
) {
    let prefix = config.nats_prefix.clone();
    let js = loop {
        match connect(&config).await {
            Ok(js) => break js,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot reach NATS; events wait in the outbox");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let mut stream_ready = false;
    while !stop.is_cancelled() {
        if !stream_ready {
            match ensure_stream(&js, &prefix, &source).await {
                Ok(_) => stream_ready = true,
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(error.as_ref()), "cannot set up the event stream");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let batch = match outbox::unpublished(&db, 100).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot read the outbox");
                if pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        metrics
            .outbox_unpublished
            .set(i64::try_from(batch.len()).unwrap_or(i64::MAX));
        if batch.is_empty() {
            if pause(&stop, RELAY_IDLE).await {
                return;
            }
            continue;
        }
        let mut published = Vec::with_capacity(batch.len());
        for event in &batch {
            match publish_one(&js, &prefix, event).await {
                Ok(()) => published.extend(event.position),
                Err(error) => {
                    tracing::warn!(event = %event.id, error = %ErrorChain(error.as_ref()), "could not publish; will retry");
                    break;
                }
            }
        }
        if let Err(error) = outbox::mark_published(&db, &published).await {
            // They will be published again, and dropped by the broker as duplicates.
            tracing::warn!(error = %ErrorChain(&error), "could not mark events published");
        }
        if published.len() < batch.len() && pause(&stop, Duration::from_millis(500)).await {
            return;
        }
    }
}

async fn publish_one(
    js: &jetstream::Context,
    prefix: &str,
    event: &Envelope,
) -> Result<(), async_nats::Error> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.id.as_str());
    let payload = serde_json::to_vec(event)?;
    js.publish_with_headers(subject(prefix, &event.kind), headers, payload.into())
        .await?
        .await?;
    Ok(())
}

/// Pulls `producer`'s events of the consumer's types and handles them, until `stop`.
pub(super) async fn follow(consumer: Consumer, producer: String, stop: CancellationToken) {
    let inner = &consumer.inner;
    let config = &inner.config;
    let prefix = config.nats_prefix.clone();
    // One type: filter on it. Several: take all of the producer's (NATS 2.9 filters on one
    // subject only) and record the others as consumed, with no effect.
    let types: Vec<String> = inner
        .handlers
        .get(&producer)
        .map(|t| t.keys().map(|k| subject(&prefix, k)).collect())
        .unwrap_or_default();
    let filter = match types.as_slice() {
        [one] => one.clone(),
        _ => format!("{prefix}.{producer}.>"),
    };
    let durable = stream_name(&inner.name, "");
    let durable = durable.trim_end_matches('_').to_owned();
    while !stop.is_cancelled() {
        let pulled = async {
            let js = connect(config).await?;
            let stream = ensure_stream(&js, &prefix, &producer).await?;
            let pull: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &durable,
                    pull::Config {
                        durable_name: Some(durable.clone()),
                        filter_subject: filter.clone(),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: config.nats_ack_wait,
                        max_ack_pending: 1,
                        ..Default::default()
                    },
                )
                .await?;
            let messages = pull.messages().await?;
            Ok::<_, async_nats::Error>((pull, messages))
        };
        let (mut pull, mut messages) = tokio::select! {
            () = stop.cancelled() => return,
            pulled = pulled => match pulled {
                Ok(pulled) => pulled,
                Err(error) => {
                    tracing::warn!(producer = %producer, error = %ErrorChain(error.as_ref()), "cannot pull events from NATS");
                    if pause(&stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(producer = %producer, error = %ErrorChain(&error), "event pull failed");
                    break;
                }
                None => break,
            };
            let envelope: Envelope = match serde_json::from_slice(&message.payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Not an event at all: nothing can ever handle it.
                    tracing::error!(producer = %producer, error = %error, "dropping a message that is not an event");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            match consumer.deliver(&envelope, Record::Inbox, &stop).await {
                Ok(Delivery::Stopped) => return,
                Ok(_) => {
                    if let Err(error) = message.ack().await {
                        // Redelivered later, and dropped by the inbox then.
                        tracing::warn!(event = %envelope.id, error = %ErrorChain(error.as_ref()), "could not acknowledge an event");
                    }
                }
                Err(error) => {
                    tracing::warn!(event = %envelope.id, error = %ErrorChain(&error), "could not record an event; it comes back");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
            if let Ok(info) = pull.info().await {
                inner.metrics.lag(
                    &inner.name,
                    &producer,
                    i64::try_from(info.num_pending).unwrap_or(i64::MAX),
                );
            }
        }
        if pause(&stop, Duration::from_millis(200)).await {
            return;
        }
    }
}

/// Sleeps `wait`; `true` when `stop` came first.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_jetstream_accepts() {
        assert_eq!(stream_name("bazaar", "orders"), "BAZAAR_ORDERS");
        assert_eq!(stream_name("t.1 x", "a>b*"), "T_1_X_A_B_");
        assert_eq!(
            subject("bazaar", "orders.order.confirmed"),
            "bazaar.orders.order.confirmed"
        );
    }
}
