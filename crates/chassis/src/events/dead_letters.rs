//! Events a handler gave up on: kept whole, listed for operators, and replayable.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use contracts::events::Envelope;
use contracts::page::Page;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::consumer::Consumer;
use crate::HttpError;
use crate::db::{WriteTransaction, from_millis, now_millis};
use crate::error::ErrorChain;
use crate::extract::{Json, Path};

/// A dead-lettered event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Id of the dead letter.
    pub id: String,
    /// The consumer that gave up.
    pub consumer: String,
    /// The event, whole.
    pub event: Envelope,
    /// The handler's last error.
    pub error: String,
    /// Attempts made.
    pub attempts: i64,
    /// When it was given up on.
    pub dead_at: DateTime<Utc>,
    /// When an operator replayed it successfully.
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Stores `event` as dead for `consumer`.
pub(super) async fn insert(
    tx: &mut WriteTransaction,
    consumer: &str,
    event: &Envelope,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    let envelope = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO event_dead_letters (id, consumer, event_id, kind, source, envelope, error, attempts, dead_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(consumer)
    .bind(&event.id)
    .bind(&event.kind)
    .bind(&event.source)
    .bind(envelope)
    .bind(error)
    .bind(i64::from(attempts))
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const COLUMNS: &str = "id, consumer, envelope, error, attempts, dead_at, replayed_at";

fn from_row(row: &AnyRow) -> Result<DeadLetter, sqlx::Error> {
    let envelope: String = row.try_get("envelope")?;
    Ok(DeadLetter {
        id: row.try_get("id")?,
        consumer: row.try_get("consumer")?,
        event: serde_json::from_str(&envelope).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        dead_at: from_millis(row.try_get("dead_at")?),
        replayed_at: row
            .try_get::<Option<i64>, _>("replayed_at")?
            .map(from_millis),
    })
}

/// Routes for operators; without a consumer, the list is empty and nothing can be replayed.
pub(super) fn routes(consumer: Option<Consumer>) -> Router {
    Router::new()
        .route("/internal/dead-letters", get(list))
        .route("/internal/dead-letters/{id}/replay", post(replay))
        .route_layer(crate::authz::callers(&[
            crate::authz::OPERATOR,
            crate::authz::CONSOLE,
        ]))
        .with_state(consumer)
}

/// `GET /internal/dead-letters`: the newest 500, newest first.
async fn list(
    State(consumer): State<Option<Consumer>>,
) -> Result<Json<Page<DeadLetter>>, HttpError> {
    let Some(consumer) = consumer else {
        return Ok(Json(Page::complete(Vec::new())));
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM event_dead_letters WHERE consumer = $1 ORDER BY dead_at DESC, id DESC LIMIT 500"
    )))
    .bind(&consumer.inner.name)
    .fetch_all(consumer.inner.db.pool())
    .await
    .map_err(HttpError::internal)?;
    let letters = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(HttpError::internal)?;
    Ok(Json(Page::complete(letters)))
}

/// `POST /internal/dead-letters/{id}/replay`: runs the handler on the event again, once. On
/// success the dead letter is marked replayed in the handler's transaction (200); on failure
/// it stays dead and the answer (409 `replay-failed`) says why. A replayed one is not run twice.
async fn replay(
    State(consumer): State<Option<Consumer>>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, HttpError> {
    let not_found = || HttpError::not_found(format!("no dead letter {id:?}"));
    let consumer = consumer.ok_or_else(not_found)?;
    let db = &consumer.inner.db;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM event_dead_letters WHERE id = $1 AND consumer = $2"
    )))
    .bind(&id)
    .bind(&consumer.inner.name)
    .fetch_optional(db.reader())
    .await
    .map_err(HttpError::internal)?
    .ok_or_else(not_found)?;
    let letter = from_row(&row).map_err(HttpError::internal)?;
    if letter.replayed_at.is_some() {
        return Err(HttpError::conflict(
            "already-replayed",
            format!("dead letter {id} was replayed already"),
        ));
    }
    let handler = consumer.handler_for(&letter.event).ok_or_else(|| {
        HttpError::conflict(
            "no-handler",
            format!("this service no longer handles {}", letter.event.kind),
        )
    })?;
    let mut tx = db.begin_write().await.map_err(HttpError::internal)?;
    let marked = sqlx::query(
        "UPDATE event_dead_letters SET replayed_at = $1 WHERE id = $2 AND replayed_at IS NULL",
    )
    .bind(now_millis())
    .bind(&id)
    .execute(&mut *tx)
    .await
    .map_err(HttpError::internal)?;
    if marked.rows_affected() != 1 {
        return Err(HttpError::conflict(
            "already-replayed",
            format!("dead letter {id} was replayed already"),
        ));
    }
    if let Err(error) = handler.handle(&mut tx, &letter.event).await {
        tx.rollback().await.map_err(HttpError::internal)?;
        return Err(HttpError::conflict(
            "replay-failed",
            format!("the handler failed again: {}", ErrorChain(error.as_ref())),
        ));
    }
    tx.commit().await.map_err(HttpError::internal)?;
    tracing::info!(consumer = %consumer.inner.name, event = %letter.event.id, "dead letter replayed");
    Ok(Json(DeadLetter {
        replayed_at: Some(from_millis(now_millis())),
        ..letter
    }))
}
