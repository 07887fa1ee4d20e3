//! SQL for checkout sagas: their state, their step log, and the leases that keep two instances
//! from running the same saga at once.

use chassis::db::{WriteTransaction, now_millis};
use contracts::events::{OrderCancelled, OrderConfirmed, OrderLine};
use contracts::money::Money;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{OrderRecord, Store, StoreError};
use crate::domain::{CANCELLED, CONFIRMED};
use crate::saga::{STUCK_AFTER, Saga, Status, Step};

/// A stored saga, with what the runner needs beyond the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRecord {
    /// The state machine's part.
    pub saga: Saga,
    /// The customer.
    pub user_id: String,
    /// The payment-method token to charge.
    pub payment_method: String,
    /// Whether the order checks out the customer's cart (emptied once confirmed).
    pub from_cart: bool,
    /// Bumped by every write.
    pub version: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
    /// When it reached CONFIRMED or CANCELLED, ms.
    pub finished_at: Option<i64>,
    /// The trace of the request that placed the order, which its steps continue.
    pub traceparent: Option<String>,
}

/// One attempt at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// The step.
    pub step: String,
    /// 1 for the first attempt at this step.
    pub attempt: i64,
    /// `started` (no answer stored yet), `done`, `refused` or `failed`.
    pub outcome: String,
    /// The id produced, or the refusal or failure.
    pub detail: Option<String>,
    /// When it was sent, ms.
    pub started_at: i64,
    /// When its answer was stored, ms.
    pub finished_at: Option<i64>,
}

/// How a step attempt ended, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The step log row of the attempt.
    pub position: i64,
    /// `done`, `refused` or `failed`.
    pub outcome: &'a str,
    /// The id produced, or the refusal or failure.
    pub detail: Option<&'a str>,
}

/// Counts of sagas that still have work, for the status endpoint and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SagaCounts {
    /// Moving forward.
    pub running: i64,
    /// Compensating.
    pub compensating: i64,
    /// Compensating and failing again and again.
    pub stuck: i64,
}

const SAGA_COLUMNS: &str = "id, order_id, user_id, payment_method, from_cart, status, step, reservation_id, committed, \
     charge_id, shipment_id, reason, by_customer, attempts, next_attempt_at, deadline_at, last_error, version, \
     created_at, updated_at, finished_at, traceparent";

const ACTIVE: &str = "status IN ('running', 'compensating')";

impl Store {
    /// The saga of an order.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.saga_of_order", otel.kind = "client", db.namespace = "orders", db.operation.name = "saga_of_order"))]
    pub async fn saga_of_order(&self, order_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE order_id = $1"
        )))
        .bind(order_id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(saga_from_row).transpose()
    }

    /// The saga with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.saga", otel.kind = "client", db.namespace = "orders", db.operation.name = "saga"))]
    pub async fn saga(&self, id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(saga_from_row).transpose()
    }

    /// Ids of active sagas whose next attempt is due by `due_by` and that nobody else holds,
    /// oldest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.due_sagas", otel.kind = "client", db.namespace = "orders", db.operation.name = "due_sagas"))]
    pub async fn due_sagas(
        &self,
        owner: &str,
        now: i64,
        due_by: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM sagas WHERE {ACTIVE} AND next_attempt_at <= $1
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $3)
             ORDER BY next_attempt_at LIMIT $4"
        )))
        .bind(due_by)
        .bind(owner)
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// Takes the lease of an active saga for `owner` until `until`, unless another instance
    /// holds it. `false` when it could not.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.claim", otel.kind = "client", db.namespace = "orders", db.operation.name = "claim"))]
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sagas SET lease_owner = $1, lease_until = $2
             WHERE id = $3 AND {ACTIVE} AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)"
        )))
        .bind(owner)
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Gives the lease up, so any instance may pick the saga up at its next attempt.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.release_lease", otel.kind = "client", db.namespace = "orders", db.operation.name = "release_lease"))]
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE sagas SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that an attempt at `step` is about to be sent; returns its log position.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.step_started", otel.kind = "client", db.namespace = "orders", db.operation.name = "step_started"))]
    pub async fn step_started(
        &self,
        saga_id: &str,
        step: Step,
        attempt: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let position = insert_started(&mut tx, saga_id, step, attempt, now).await?;
        tx.commit().await?;
        Ok(position)
    }

    /// Stores the saga's next state and the attempt's answer in one transaction, moving
    /// `order` (the saga's) to CONFIRMED or CANCELLED when the saga finishes. `lease` is the
    /// instance running the saga and until when it holds it; `None` writes as nobody's runner
    /// (a customer's cancellation) and leaves the saga for a runner to take at once. When the
    /// next step is due at once and the lease's owner runs it, its attempt is recorded as
    /// started in the same transaction, and its log position returned. The write only happens
    /// if the saga is still at `current.version` and leased to that owner; `None` otherwise
    /// (another instance took over, and this one must stop).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.save_saga", otel.kind = "client", db.namespace = "orders", db.operation.name = "save_saga"))]
    pub async fn save_saga(
        &self,
        current: &SagaRecord,
        order: &OrderRecord,
        next: &Saga,
        finished: Option<Finished<'_>>,
        lease: Option<(&str, i64)>,
        now: i64,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let (owner, lease_until) = (
            lease.map(|(owner, _)| owner),
            lease.map_or(0, |(_, until)| until),
        );
        let mut tx = self.db.begin_write().await?;
        // The answer came at `answered`; what this transaction writes happens when it holds
        // the write lock: the next attempt starts, and the order is confirmed or cancelled,
        // after any wait for the lock (which the saga's log then shows between the steps).
        let answered = now;
        let now = now_millis().max(now);
        let finished_at =
            (current.saga.status.is_active() && !next.status.is_active()).then_some(now);
        // A saga that has finished needs no lease: it is given up in the same write.
        let (lease_until, release) = if next.status.is_active() {
            (lease_until, 0_i64)
        } else {
            (0, 1)
        };
        let updated = sqlx::query(
            "UPDATE sagas SET status = $1, step = $2, reservation_id = $3, committed = $4, charge_id = $5,
                    shipment_id = $6, reason = $7, by_customer = $8, attempts = $9, next_attempt_at = $10,
                    last_error = $11, version = version + 1, lease_until = $12, updated_at = $13,
                    finished_at = COALESCE($14, finished_at),
                    lease_owner = CASE WHEN $18 = 1 THEN NULL ELSE lease_owner END
             WHERE id = $15 AND version = $16 AND (CAST($17 AS TEXT) IS NULL OR lease_owner = $17)",
        )
        .bind(next.status.as_str())
        .bind(next.step.map(Step::as_str))
        .bind(next.reservation_id.clone())
        .bind(i64::from(next.committed))
        .bind(next.charge_id.clone())
        .bind(next.shipment_id.clone())
        .bind(next.reason.clone())
        .bind(i64::from(next.by_customer))
        .bind(i64::from(next.attempts))
        .bind(next.next_attempt_at)
        .bind(next.last_error.clone())
        .bind(lease_until)
        .bind(now)
        .bind(finished_at)
        .bind(&current.saga.id)
        .bind(current.version)
        .bind(owner.map(str::to_owned))
        .bind(release)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        // The attempt's answer and, when the next step is due at once and this runner takes it,
        // that attempt as started: one statement when there are both.
        let next_start = match next.step {
            Some(step)
                if owner.is_some() && next.status.is_active() && next.next_attempt_at <= now =>
            {
                Some((step, i64::from(next.attempts) + 1))
            }
            _ => None,
        };
        let ran = current
            .saga
            .step
            .map(|step| (step, i64::from(current.saga.attempts) + 1));
        let started = match (finished, ran, next_start) {
            (Some(finished), Some(ran), Some(start)) => Some(
                finish_and_start(
                    &mut tx,
                    &current.saga.id,
                    finished,
                    ran,
                    answered,
                    start,
                    now,
                )
                .await?,
            ),
            (finished, _, start) => {
                if let Some(finished) = finished {
                    finish(&mut tx, &current.saga.id, finished, answered).await?;
                }
                match start {
                    Some((step, attempt)) => {
                        Some(insert_started(&mut tx, &next.id, step, attempt, now).await?)
                    }
                    None => None,
                }
            }
        };
        if next.reservation_id.is_some() && current.saga.reservation_id.is_none() {
            sqlx::query("UPDATE orders SET reservation_id = $1, updated_at = $2 WHERE id = $3")
                .bind(next.reservation_id.clone())
                .bind(now)
                .bind(&next.order_id)
                .execute(&mut *tx)
                .await?;
        }
        let order_status = match (current.saga.status, next.status) {
            (Status::Running, Status::Confirmed) => Some((
                CONFIRMED,
                "paid; stock committed; shipment created".to_owned(),
            )),
            (from, Status::Cancelled) if from != Status::Cancelled => Some((
                CANCELLED,
                next.reason
                    .clone()
                    .unwrap_or_else(|| "cancelled".to_owned()),
            )),
            _ => None,
        };
        if let Some((status, reason)) = order_status {
            sqlx::query(
                "UPDATE orders SET status = $1, cancel_reason = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(status)
            .bind((status == CANCELLED).then(|| reason.clone()))
            .bind(now)
            .bind(&next.order_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO order_status_history (order_id, position, status, reason, at)
                 SELECT $1, CAST(COALESCE(MAX(position) + 1, 0) AS BIGINT), $2, $3, $4
                 FROM order_status_history WHERE order_id = $1",
            )
            .bind(&next.order_id)
            .bind(status)
            .bind(&reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            publish_outcome(&mut tx, order, status, reason).await?;
        }
        tx.commit().await?;
        Ok(Some(started))
    }

    /// Every attempt of a saga, in order.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.saga_steps", otel.kind = "client", db.namespace = "orders", db.operation.name = "saga_steps"))]
    pub async fn saga_steps(&self, saga_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempt, outcome, detail, started_at, finished_at FROM saga_steps WHERE saga_id = $1 ORDER BY position",
        )
        .bind(saga_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StepRecord {
                    step: row.try_get("step")?,
                    attempt: row.try_get("attempt")?,
                    outcome: row.try_get("outcome")?,
                    detail: row.try_get("detail")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                })
            })
            .collect()
    }

    /// Active sagas, oldest first; only stuck ones when `stuck_only`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.active_sagas", otel.kind = "client", db.namespace = "orders", db.operation.name = "active_sagas"))]
    pub async fn active_sagas(
        &self,
        stuck_only: bool,
        limit: i64,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let filter = if stuck_only {
            format!("status = 'compensating' AND attempts >= {STUCK_AFTER}")
        } else {
            ACTIVE.to_owned()
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE {filter} ORDER BY created_at LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(saga_from_row).collect()
    }

    /// How many sagas are running, compensating, and stuck.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.saga_counts", otel.kind = "client", db.namespace = "orders", db.operation.name = "saga_counts"))]
    pub async fn saga_counts(&self) -> Result<SagaCounts, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS BIGINT) AS running,
                    CAST(COALESCE(SUM(CASE WHEN status = 'compensating' THEN 1 ELSE 0 END), 0) AS BIGINT) AS compensating,
                    CAST(COALESCE(SUM(CASE WHEN status = 'compensating' AND attempts >= {STUCK_AFTER} THEN 1 ELSE 0 END), 0) AS BIGINT) AS stuck
             FROM sagas WHERE {ACTIVE}"
        )))
        .fetch_one(self.db.pool())
        .await?;
        Ok(SagaCounts {
            running: row.try_get("running")?,
            compensating: row.try_get("compensating")?,
            stuck: row.try_get("stuck")?,
        })
    }
}

/// Publishes `orders.order.confirmed` or `orders.order.cancelled` for an order that just
/// reached `status`, in the transaction that moved it. Its customer, lines and total never
/// change once it is placed, so they come from the caller's copy, not from the database again.
async fn publish_outcome(
    tx: &mut WriteTransaction,
    order: &OrderRecord,
    status: &str,
    reason: String,
) -> Result<(), sqlx::Error> {
    let money = |amount_minor: i64| Money {
        amount_minor,
        currency: order.currency.clone(),
    };
    if status == CANCELLED {
        let cancelled = OrderCancelled {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            reason,
            total: money(order.total_minor),
        };
        chassis::events::publish(tx, crate::SERVICE, &cancelled).await?;
        return Ok(());
    }
    let confirmed = OrderConfirmed {
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        lines: order
            .lines
            .iter()
            .map(|line| OrderLine {
                sku: line.sku.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: money(line.unit_price_minor),
            })
            .collect(),
        total: money(order.total_minor),
    };
    chassis::events::publish(tx, crate::SERVICE, &confirmed).await?;
    Ok(())
}

/// Records the answer of the attempt at `finished.position`.
async fn finish(
    tx: &mut WriteTransaction,
    saga_id: &str,
    finished: Finished<'_>,
    answered: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE saga_steps SET outcome = $1, detail = $2, finished_at = $3 WHERE saga_id = $4 AND position = $5",
    )
    .bind(finished.outcome)
    .bind(finished.detail.map(str::to_owned))
    .bind(answered)
    .bind(saga_id)
    .bind(finished.position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records the answer of the attempt at `finished.position` (which was `ran`: its step and
/// attempt number) and the next attempt, `start`, as started right after it; returns the new
/// attempt's log position. One statement, an upsert of both rows: the finished attempt's row
/// exists, so only its outcome, detail and end are written, and the new one is inserted. The
/// finished attempt is the saga's last (its runner holds the lease, and wrote it), so the next
/// position is the one after it.
async fn finish_and_start(
    tx: &mut WriteTransaction,
    saga_id: &str,
    finished: Finished<'_>,
    ran: (Step, i64),
    answered: i64,
    start: (Step, i64),
    now: i64,
) -> Result<i64, sqlx::Error> {
    let position = finished.position + 1;
    sqlx::query(
        "INSERT INTO saga_steps (saga_id, position, step, attempt, outcome, detail, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7), ($1, $8, $9, $10, 'started', NULL, $11, NULL)
         ON CONFLICT (saga_id, position) DO UPDATE
           SET outcome = excluded.outcome, detail = excluded.detail, finished_at = excluded.finished_at",
    )
    .bind(saga_id)
    .bind(finished.position)
    .bind(ran.0.as_str())
    .bind(ran.1)
    .bind(finished.outcome)
    .bind(finished.detail.map(str::to_owned))
    .bind(answered)
    .bind(position)
    .bind(start.0.as_str())
    .bind(start.1)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(position)
}

/// Records an attempt at `step` as started; returns its log position.
async fn insert_started(
    tx: &mut WriteTransaction,
    saga_id: &str,
    step: Step,
    attempt: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    // One statement, one round trip to the database: the position is the next free one.
    sqlx::query(
        "INSERT INTO saga_steps (saga_id, position, step, attempt, outcome, started_at)
         SELECT $1, CAST(COALESCE(MAX(position) + 1, 0) AS BIGINT), $2, $3, 'started', $4
         FROM saga_steps WHERE saga_id = $1
         RETURNING position",
    )
    .bind(saga_id)
    .bind(step.as_str())
    .bind(attempt)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("position")
}

/// Inserts a new saga inside the order's transaction, leased to `lease.0` until `lease.1`, with
/// its first attempt recorded as started (log position 0).
pub(super) async fn insert_saga(
    tx: &mut WriteTransaction,
    record: &SagaRecord,
    lease: (&str, i64),
) -> Result<(), sqlx::Error> {
    let saga = &record.saga;
    sqlx::query(
        "INSERT INTO sagas (id, order_id, user_id, payment_method, from_cart, status, step, committed, by_customer,
                            attempts, next_attempt_at, deadline_at, version, lease_owner, lease_until, created_at, updated_at,
                            traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8, $9, 0, $11, $12, $10, $10, $13)",
    )
    .bind(&saga.id)
    .bind(&saga.order_id)
    .bind(&record.user_id)
    .bind(&record.payment_method)
    .bind(i64::from(record.from_cart))
    .bind(saga.status.as_str())
    .bind(saga.step.map(Step::as_str))
    .bind(saga.next_attempt_at)
    .bind(saga.deadline_at)
    .bind(record.created_at)
    .bind(lease.0)
    .bind(lease.1)
    .bind(record.traceparent.as_deref())
    .execute(&mut **tx)
    .await?;
    if let Some(step) = saga.step {
        // Started when written: the wait for the write lock shows as the gap after placing.
        insert_started(tx, &saga.id, step, 1, now_millis().max(record.created_at)).await?;
    }
    Ok(())
}

fn saga_from_row(row: &AnyRow) -> Result<SagaRecord, StoreError> {
    let bad = |e: String| StoreError::Corrupt(e);
    let status: String = row.try_get("status")?;
    let step: Option<String> = row.try_get("step")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(SagaRecord {
        saga: Saga {
            id: row.try_get("id")?,
            order_id: row.try_get("order_id")?,
            status: status.parse().map_err(bad)?,
            step: step.map(|s| s.parse()).transpose().map_err(bad)?,
            reservation_id: row.try_get("reservation_id")?,
            committed: row.try_get::<i64, _>("committed")? != 0,
            charge_id: row.try_get("charge_id")?,
            shipment_id: row.try_get("shipment_id")?,
            reason: row.try_get("reason")?,
            by_customer: row.try_get::<i64, _>("by_customer")? != 0,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt_at: row.try_get("next_attempt_at")?,
            deadline_at: row.try_get("deadline_at")?,
            last_error: row.try_get("last_error")?,
        },
        user_id: row.try_get("user_id")?,
        payment_method: row.try_get("payment_method")?,
        from_cart: row.try_get::<i64, _>("from_cart")? != 0,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        traceparent: row.try_get("traceparent")?,
    })
}
