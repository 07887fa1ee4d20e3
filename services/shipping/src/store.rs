//! SQL for shipments and their tracking history. Status moves are conditional updates on the
//! current status, so repeats and races move a shipment once.

use chassis::db::{Db, is_unique_violation};
use contracts::events::{ShipmentCreated, ShipmentDelivered, ShipmentFacts, ShipmentShipped};

use crate::domain::{DELIVERED, IN_TRANSIT};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// Id.
    pub id: String,
    /// The order it carries.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// Current status.
    pub status: String,
    /// Carrier name.
    pub carrier: String,
    /// Carrier's tracking number.
    pub tracking_number: String,
    /// Destination, JSON.
    pub address: String,
    /// Items, JSON.
    pub items: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
    /// `(status, at)`, oldest first.
    pub history: Vec<(String, i64)>,
}

/// The shipping database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

const COLUMNS: &str = "id, order_id, user_id, status, carrier, tracking_number, address, items, created_at, updated_at";

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The shipment made under `key`, and its request hash.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.by_key", otel.kind = "client", db.namespace = "shipping", db.operation.name = "by_key"))]
    pub async fn by_key(&self, key: &str) -> Result<Option<(Shipment, String)>, sqlx::Error> {
        let row = sqlx::query("SELECT id, request_hash FROM shipments WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let hash: String = row.try_get("request_hash")?;
        Ok(self.find(&id).await?.map(|s| (s, hash)))
    }

    /// Stores a new shipment; `false` if another request with the same key stored first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.insert", otel.kind = "client", db.namespace = "shipping", db.operation.name = "insert"))]
    pub async fn insert(
        &self,
        shipment: &Shipment,
        key: &str,
        request_hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO shipments (id, order_id, user_id, status, carrier, tracking_number, address, items,
                                    idempotency_key, request_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(&shipment.id)
        .bind(&shipment.order_id)
        .bind(&shipment.user_id)
        .bind(&shipment.status)
        .bind(&shipment.carrier)
        .bind(&shipment.tracking_number)
        .bind(&shipment.address)
        .bind(&shipment.items)
        .bind(key)
        .bind(request_hash)
        .bind(shipment.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        sqlx::query("INSERT INTO tracking_events (shipment_id, position, status, at) VALUES ($1, 0, $2, $3)")
            .bind(&shipment.id)
            .bind(&shipment.status)
            .bind(shipment.created_at)
            .execute(&mut *tx)
            .await?;
        let created = ShipmentCreated(facts(shipment));
        chassis::events::publish(&mut tx, crate::SERVICE, &created).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The shipment with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.find", otel.kind = "client", db.namespace = "shipping", db.operation.name = "find"))]
    pub async fn find(&self, id: &str) -> Result<Option<Shipment>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shipments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut shipment = from_row(&row)?;
        shipment.history = sqlx::query(
            "SELECT status, at FROM tracking_events WHERE shipment_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("at")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        Ok(Some(shipment))
    }

    /// Shipments of an order, oldest first (without history).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.for_order", otel.kind = "client", db.namespace = "shipping", db.operation.name = "for_order"))]
    pub async fn for_order(&self, order_id: &str) -> Result<Vec<Shipment>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM shipments WHERE order_id = $1 ORDER BY created_at, id"
        )))
        .bind(order_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Moves shipment `id` from `from` to `to`, recording the event; `false` if it was not in `from`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.transition", otel.kind = "client", db.namespace = "shipping", db.operation.name = "transition"))]
    pub async fn transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE shipments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(to)
        .bind(now)
        .bind(id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO tracking_events (shipment_id, position, status, at)
             SELECT $1, COALESCE(MAX(position), -1) + 1, $2, $3 FROM tracking_events WHERE shipment_id = $1",
        )
        .bind(id)
        .bind(to)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if to == IN_TRANSIT || to == DELIVERED {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM shipments WHERE id = $1"
            )))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let facts = facts(&from_row(&row)?);
            if to == IN_TRANSIT {
                chassis::events::publish(&mut tx, crate::SERVICE, &ShipmentShipped(facts)).await?;
            } else {
                chassis::events::publish(&mut tx, crate::SERVICE, &ShipmentDelivered(facts))
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ids of shipments in `status` unchanged since `before` (ms), oldest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "shipping.due", otel.kind = "client", db.namespace = "shipping", db.operation.name = "due"))]
    pub async fn due(
        &self,
        status: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query("SELECT id FROM shipments WHERE status = $1 AND updated_at <= $2 ORDER BY updated_at LIMIT $3")
            .bind(status)
            .bind(before)
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect()
    }
}

fn from_row(row: &AnyRow) -> Result<Shipment, sqlx::Error> {
    Ok(Shipment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        address: row.try_get("address")?,
        items: row.try_get("items")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        history: Vec::new(),
    })
}

/// What events about `shipment` carry.
fn facts(shipment: &Shipment) -> ShipmentFacts {
    ShipmentFacts {
        shipment_id: shipment.id.clone(),
        order_id: shipment.order_id.clone(),
        user_id: shipment.user_id.clone(),
        carrier: shipment.carrier.clone(),
        tracking_number: shipment.tracking_number.clone(),
    }
}
