//! Stock reservations: all lines or none, never overselling.
//!
//! Holding stock is one conditional update per line, `reserved = reserved + n WHERE on_hand -
//! reserved >= n`, inside one write transaction: the database checks and takes the units in
//! the same step, so concurrent reservations can never take more than there is. Lines are
//! applied in sku order so two reservations never lock rows in opposite orders.
//!
//! A reservation moves `held` → `committed` (units sold), `released` (units back) or `expired`
//! (released by the sweep). Each move is a conditional update on the status, so a repeated or
//! racing request finds the reservation already moved and answers with its current state.

use chassis::db::is_unique_violation;
use contracts::events::StockLow;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::domain::Line;

/// States of a reservation.
pub const HELD: &str = "held";
/// Units became sales.
pub const COMMITTED: &str = "committed";
/// Units went back to stock on request.
pub const RELEASED: &str = "released";
/// Units went back to stock because the reservation was not committed in time.
pub const EXPIRED: &str = "expired";
/// Committed, then given back (an order cancelled after confirmation): the units are on hand
/// again.
pub const RETURNED: &str = "returned";

/// A stored reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Id.
    pub id: String,
    /// The key it was made with.
    pub idempotency_key: String,
    /// `held`, `committed`, `released` or `expired`.
    pub status: String,
    /// Lines, by sku.
    pub lines: Vec<(String, i64)>,
    /// Creation time, ms.
    pub created_at: i64,
    /// When a held reservation expires, ms.
    pub expires_at: i64,
}

/// What a reservation request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Stock is now held.
    Created(Reservation),
    /// The key was used before with the same request: its reservation, as it is now.
    Replayed(Reservation),
    /// The key was used before with a different request.
    KeyReused,
    /// A sku does not exist or is not for sale.
    UnknownSku(String),
    /// Not enough of a sku.
    Insufficient {
        /// Which.
        sku: String,
        /// How many are available.
        available: i64,
    },
}

/// What a release or commit led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The reservation is (now, or already) in the asked state.
    Done(Reservation),
    /// It is in a state the move cannot come from (committing a released one, say).
    Conflict(Reservation),
    /// No such reservation.
    NotFound,
}

impl Store {
    /// Holds stock for `lines` (checked and sorted) under `key`, expiring at `expires_at`.
    /// A sku whose available stock falls to `low_stock` or below with it gets a
    /// `catalog.stock.low` event, in the same transaction.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.reserve", otel.kind = "client", db.namespace = "catalog", db.operation.name = "reserve"))]
    pub async fn reserve(
        &self,
        key: &str,
        request_hash: &str,
        lines: &[Line],
        now: i64,
        expires_at: i64,
        low_stock: i64,
    ) -> Result<Reserved, StoreError> {
        if let Some(existing) = self.replay(key, request_hash).await? {
            return Ok(existing);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO reservations (id, idempotency_key, request_hash, status, created_at, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(&id)
        .bind(key)
        .bind(request_hash)
        .bind(HELD)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            tx.rollback().await?;
            // Another request with the same key won the race: answer as a replay.
            if is_unique_violation(&error)
                && let Some(existing) = self.replay(key, request_hash).await?
            {
                return Ok(existing);
            }
            return Err(error.into());
        }
        for line in lines {
            // What is left to sell comes back with the hold: one statement, not a second read.
            let held = sqlx::query(
                "UPDATE inventory SET reserved = reserved + $1
                 WHERE sku = $2 AND on_hand - reserved >= $1
                   AND sku IN (SELECT sku FROM products WHERE deactivated_at IS NULL)
                 RETURNING on_hand - reserved AS available",
            )
            .bind(line.quantity)
            .bind(line.sku.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(held) = held else {
                let available = sqlx::query(
                    "SELECT i.on_hand - i.reserved AS available FROM inventory i JOIN products p ON p.sku = i.sku
                     WHERE i.sku = $1 AND p.deactivated_at IS NULL",
                )
                .bind(line.sku.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                let sku = line.sku.as_str().to_owned();
                return Ok(match available {
                    None => Reserved::UnknownSku(sku),
                    Some(row) => Reserved::Insufficient {
                        sku,
                        available: row.try_get::<i64, _>("available")?.max(0),
                    },
                });
            };
            let available: i64 = held.try_get("available")?;
            sqlx::query(
                "INSERT INTO reservation_lines (reservation_id, sku, quantity) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(line.sku.as_str())
            .bind(line.quantity)
            .execute(&mut *tx)
            .await?;
            if available <= low_stock && available + line.quantity > low_stock {
                let low = StockLow {
                    sku: line.sku.as_str().to_owned(),
                    available,
                    threshold: low_stock,
                };
                chassis::events::publish(&mut tx, crate::SERVICE, &low).await?;
            }
        }
        tx.commit().await?;
        Ok(Reserved::Created(Reservation {
            id,
            idempotency_key: key.to_owned(),
            status: HELD.to_owned(),
            lines: lines
                .iter()
                .map(|l| (l.sku.as_str().to_owned(), l.quantity))
                .collect(),
            created_at: now,
            expires_at,
        }))
    }

    async fn replay(&self, key: &str, request_hash: &str) -> Result<Option<Reserved>, StoreError> {
        let row =
            sqlx::query("SELECT id, request_hash FROM reservations WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(self.db.reader())
                .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<String, _>("request_hash")? != request_hash {
            return Ok(Some(Reserved::KeyReused));
        }
        let id: String = row.try_get("id")?;
        Ok(self.reservation(&id).await?.map(Reserved::Replayed))
    }

    /// The reservation with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.reservation", otel.kind = "client", db.namespace = "catalog", db.operation.name = "reservation"))]
    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        let row = sqlx::query("SELECT id, idempotency_key, status, created_at, expires_at FROM reservations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let lines = sqlx::query(
            "SELECT sku, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY sku",
        )
        .bind(id)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(|l| Ok((l.try_get("sku")?, l.try_get("quantity")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(reservation_from(&row, lines)?))
    }

    /// Gives the units back (`to` is `released` or `expired`). Releasing a released or expired
    /// reservation is a no-op; releasing a committed one is a conflict.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.release", otel.kind = "client", db.namespace = "catalog", db.operation.name = "release"))]
    pub async fn release(&self, id: &str, to: &str, now: i64) -> Result<Moved, StoreError> {
        self.settle(
            id,
            HELD,
            to,
            now,
            "UPDATE inventory SET reserved = reserved - $1 WHERE sku = $2",
            &[RELEASED, EXPIRED],
        )
        .await
    }

    /// Turns the units into sales. Committing a committed reservation is a no-op; committing a
    /// released or expired one is a conflict.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.commit", otel.kind = "client", db.namespace = "catalog", db.operation.name = "commit"))]
    pub async fn commit(&self, id: &str, now: i64) -> Result<Moved, StoreError> {
        self.settle(
            id,
            HELD,
            COMMITTED,
            now,
            "UPDATE inventory SET reserved = reserved - $1, on_hand = on_hand - $1, sold = sold + $1 WHERE sku = $2",
            &[COMMITTED],
        )
        .await
    }

    /// Puts the units of a committed reservation back on hand (its order was cancelled after
    /// confirmation). Returning a returned reservation is a no-op; any other state is a
    /// conflict.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.give_back", otel.kind = "client", db.namespace = "catalog", db.operation.name = "give_back"))]
    pub async fn give_back(&self, id: &str, now: i64) -> Result<Moved, StoreError> {
        self.settle(
            id,
            COMMITTED,
            RETURNED,
            now,
            "UPDATE inventory SET on_hand = on_hand + $1, sold = sold - $1 WHERE sku = $2",
            &[RETURNED],
        )
        .await
    }

    /// Moves a reservation from `from` to `to`, applying `per_line` to the inventory in the same
    /// transaction. `done_states` are the states that count as already done.
    async fn settle(
        &self,
        id: &str,
        from: &str,
        to: &str,
        now: i64,
        per_line: &'static str,
        done_states: &[&str],
    ) -> Result<Moved, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE reservations SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4
             RETURNING id, idempotency_key, status, created_at, expires_at",
        )
        .bind(to)
        .bind(now)
        .bind(id)
        .bind(from)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(moved) = moved {
            let mut lines = Vec::new();
            for line in sqlx::query("SELECT sku, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY sku")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
            {
                let (sku, quantity): (String, i64) = (line.try_get("sku")?, line.try_get("quantity")?);
                sqlx::query(per_line)
                    .bind(quantity)
                    .bind(sku.as_str())
                    .execute(&mut *tx)
                    .await?;
                lines.push((sku, quantity));
            }
            tx.commit().await?;
            // The move answers for itself: what it wrote is what a read would find.
            return Ok(Moved::Done(reservation_from(&moved, lines)?));
        }
        tx.rollback().await?;
        // Nothing moved: it is missing, done already, or in a state that conflicts.
        Ok(match self.reservation(id).await? {
            None => Moved::NotFound,
            Some(reservation)
                if reservation.status == to
                    || done_states.contains(&reservation.status.as_str()) =>
            {
                Moved::Done(reservation)
            }
            Some(reservation) => Moved::Conflict(reservation),
        })
    }

    /// Expires up to `limit` held reservations past their time; returns how many.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.expire_due", otel.kind = "client", db.namespace = "catalog", db.operation.name = "expire_due"))]
    pub async fn expire_due(&self, now: i64, limit: i64) -> Result<usize, StoreError> {
        let due = sqlx::query("SELECT id FROM reservations WHERE status = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3")
            .bind(HELD)
            .bind(now)
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?;
        let mut expired = 0;
        for row in due {
            let id: String = row.try_get("id")?;
            if matches!(self.release(&id, EXPIRED, now).await?, Moved::Done(r) if r.status == EXPIRED)
            {
                tracing::info!(reservation = %id, "reservation expired; stock released");
                expired += 1;
            }
        }
        Ok(expired)
    }
}

/// A reservation from its row (`id, idempotency_key, status, created_at, expires_at`) and its
/// lines.
fn reservation_from(row: &AnyRow, lines: Vec<(String, i64)>) -> Result<Reservation, sqlx::Error> {
    Ok(Reservation {
        id: row.try_get("id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: row.try_get("status")?,
        lines,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
