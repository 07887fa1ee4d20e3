//! The producing side: events written with the state change, and the feed that serves them.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use contracts::events::{Envelope, Event};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::HttpError;
use crate::db::{Db, WriteTransaction, from_millis, now_millis};
use crate::error::Validation;
use crate::extract::{Json, Query};
use crate::server::middleware::Quiet;

/// Writes `event` to the outbox of the transaction's database, as published by `source`. It
/// becomes visible, to the feed or the relay, when the transaction commits, and never if it
/// rolls back.
pub async fn publish<E: Event>(
    tx: &mut WriteTransaction,
    source: &str,
    event: &E,
) -> Result<Envelope, sqlx::Error> {
    let data = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // Taking the next position locks the head row until commit, so positions become visible
    // in order: a reader past position n never meets a later commit below n.
    let position: i64 = sqlx::query(
        "UPDATE event_outbox_head SET position = position + 1 WHERE singleton = 1 RETURNING position",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("position")?;
    let now = now_millis();
    let envelope = Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        kind: E::TYPE.to_owned(),
        version: E::VERSION,
        occurred_at: from_millis(now),
        source: source.to_owned(),
        traceparent: crate::trace::publishing(E::TYPE),
        request_id: crate::context::request_id(),
        position: Some(position),
        data,
    };
    sqlx::query(
        "INSERT INTO event_outbox (position, id, kind, version, occurred_at, source, traceparent, request_id, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(position)
    .bind(&envelope.id)
    .bind(&envelope.kind)
    .bind(i64::from(envelope.version))
    .bind(now)
    .bind(&envelope.source)
    .bind(envelope.traceparent.clone())
    .bind(envelope.request_id.clone())
    .bind(envelope.data.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(envelope)
}

/// A page of a producer's feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedPage {
    /// Events after the requested position, of the requested types, in order.
    pub events: Vec<Envelope>,
    /// The last position this page covers, matching or not: the consumer's next `after`.
    pub last_position: i64,
    /// The producer's newest position, for lag.
    pub head: i64,
}

/// Reads up to `limit` outbox rows after `after` and keeps those of `types` (all when empty).
pub async fn read_feed(
    db: &Db,
    after: i64,
    types: &[String],
    limit: i64,
) -> Result<FeedPage, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, id, kind, version, occurred_at, source, traceparent, request_id, data
         FROM event_outbox WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    let head: i64 = sqlx::query("SELECT position FROM event_outbox_head WHERE singleton = 1")
        .fetch_one(db.reader())
        .await?
        .try_get("position")?;
    let mut last_position = after;
    let mut events = Vec::new();
    for row in &rows {
        let envelope = envelope_from_row(row)?;
        last_position = envelope.position.unwrap_or(last_position);
        if types.is_empty() || types.contains(&envelope.kind) {
            events.push(envelope);
        }
    }
    Ok(FeedPage {
        events,
        last_position,
        head,
    })
}

/// Up to `limit` events the relay has not handed to the broker yet, in order.
pub(super) async fn unpublished(db: &Db, limit: i64) -> Result<Vec<Envelope>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, id, kind, version, occurred_at, source, traceparent, request_id, data
         FROM event_outbox WHERE published_at IS NULL ORDER BY position LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(envelope_from_row).collect()
}

/// Marks events as handed to the broker.
pub(super) async fn mark_published(db: &Db, positions: &[i64]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let now = now_millis();
    for position in positions {
        sqlx::query("UPDATE event_outbox SET published_at = $1 WHERE position = $2")
            .bind(now)
            .bind(position)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Deletes events older than `retention` (those already with the broker, when `relayed`);
/// returns how many.
pub(super) async fn clean(db: &Db, retention: Duration, relayed: bool) -> Result<u64, sqlx::Error> {
    let cutoff =
        now_millis().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut tx = db.begin_write().await?;
    let sql = if relayed {
        "DELETE FROM event_outbox WHERE occurred_at < $1 AND published_at IS NOT NULL"
    } else {
        "DELETE FROM event_outbox WHERE occurred_at < $1"
    };
    let deleted = sqlx::query(sql).bind(cutoff).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(deleted.rows_affected())
}

fn envelope_from_row(row: &AnyRow) -> Result<Envelope, sqlx::Error> {
    let data: String = row.try_get("data")?;
    let version: i64 = row.try_get("version")?;
    Ok(Envelope {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        version: u32::try_from(version).unwrap_or(u32::MAX),
        occurred_at: from_millis(row.try_get("occurred_at")?),
        source: row.try_get("source")?,
        traceparent: row.try_get("traceparent")?,
        request_id: row.try_get("request_id")?,
        position: Some(row.try_get("position")?),
        data: serde_json::from_str(&data).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Longest `wait` a feed request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most events in one feed page.
const MAX_LIMIT: i64 = 500;
/// How often a waiting feed request looks at the outbox again.
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
struct FeedState {
    db: Db,
    default_wait: Duration,
}

/// Query of `GET /internal/events`.
#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    types: Option<String>,
    wait: Option<String>,
    limit: Option<i64>,
}

pub(super) fn routes(db: Db, default_wait: Duration) -> Router {
    Router::new()
        .route("/internal/events", get(feed))
        .with_state(FeedState { db, default_wait })
}

/// `GET /internal/events?after=<position>&types=a,b&wait=10s&limit=100`: the events after
/// `after`, in order. When there are none yet, waits up to `wait` for some (long poll). Its
/// consumers ask again as soon as they have an answer, so a page served is routine chatter in
/// the log ([`Quiet`]); each event consumed is logged where it is handled.
async fn feed(
    State(state): State<FeedState>,
    Query(query): Query<FeedQuery>,
) -> Result<(Extension<Quiet>, Json<FeedPage>), HttpError> {
    let mut v = Validation::new();
    let after = query.after.unwrap_or(0);
    if after < 0 {
        v.add("after", "must be a position, 0 or more");
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        v.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    let wait = match query.wait.as_deref() {
        None => state.default_wait.min(MAX_WAIT),
        Some(raw) => v
            .check(
                "wait",
                humantime::parse_duration(raw)
                    .ok()
                    .filter(|d| *d <= MAX_WAIT)
                    .ok_or_else(|| format!("{raw:?} is not a duration of at most 30s")),
            )
            .unwrap_or_default(),
    };
    v.finish()?;
    let types: Vec<String> = query
        .types
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let until = tokio::time::Instant::now() + wait;
    loop {
        let page = read_feed(&state.db, after, &types, limit)
            .await
            .map_err(HttpError::internal)?;
        if page.last_position > after || tokio::time::Instant::now() >= until {
            return Ok((Extension(Quiet), Json(page)));
        }
        tokio::time::sleep(POLL.min(until - tokio::time::Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_page_is_what_consumers_read() {
        let page = FeedPage {
            events: Vec::new(),
            last_position: 3,
            head: 9,
        };
        let wire = serde_json::to_value(&page).expect("serializes");
        assert_eq!(
            wire,
            serde_json::json!({"events": [], "last_position": 3, "head": 9})
        );
    }
}
