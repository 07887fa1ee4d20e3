//! SQL for orders, their lines and their status history; [`sagas`] for their checkout sagas.

pub mod sagas;

use std::collections::HashMap;

use chassis::db::{Backend, Db, is_unique_violation};
use sqlx::Row;
use sqlx::any::AnyRow;

use contracts::events::{OrderCreated, OrderLine};
use contracts::money::Money;

use crate::domain::{Address, PricedLine};
use sagas::SagaRecord;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// A stored value this code cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// One status an order went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The status.
    pub status: String,
    /// Why.
    pub reason: String,
    /// When, ms.
    pub at: i64,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// Id.
    pub id: String,
    /// Who placed it.
    pub user_id: String,
    /// Current status.
    pub status: String,
    /// Currency of every amount.
    pub currency: String,
    /// Sum of the lines.
    pub total_minor: i64,
    /// Where it goes.
    pub address: Address,
    /// The catalog reservation holding its stock.
    pub reservation_id: Option<String>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
    /// What was bought.
    pub lines: Vec<PricedLine>,
    /// Every status, oldest first.
    pub history: Vec<StatusChange>,
    /// Who it is for, as the users service knew them when it was placed.
    pub customer: Option<Customer>,
}

/// The customer of an order: name and email when it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// Result of storing a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    Created,
    /// The user already has an order with this idempotency key.
    DuplicateKey,
}

const ORDER_COLUMNS: &str = "id, user_id, status, currency, total_minor, ship_name, ship_line1, ship_line2, ship_city, \
     ship_postal_code, ship_country, reservation_id, cancel_reason, created_at, updated_at, customer_name, customer_email";

/// The orders database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores an order, its lines, its first status and its checkout saga (leased as `lease`,
    /// first step started) in one transaction.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.insert", otel.kind = "client", db.namespace = "orders", db.operation.name = "insert"))]
    pub async fn insert(
        &self,
        order: &OrderRecord,
        saga: &SagaRecord,
        lease: (&str, i64),
        key: Option<&str>,
        request_hash: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO orders (id, user_id, status, currency, total_minor, ship_name, ship_line1, ship_line2, ship_city,
                                 ship_postal_code, ship_country, reservation_id, cancel_reason, idempotency_key, request_hash,
                                 created_at, updated_at, customer_name, customer_email)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18)",
        )
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(&order.status)
        .bind(&order.currency)
        .bind(order.total_minor)
        .bind(&order.address.name)
        .bind(&order.address.line1)
        .bind(order.address.line2.clone())
        .bind(&order.address.city)
        .bind(&order.address.postal_code)
        .bind(&order.address.country)
        .bind(order.reservation_id.clone())
        .bind(order.cancel_reason.clone())
        .bind(key.map(str::to_owned))
        .bind(request_hash.map(str::to_owned))
        .bind(order.created_at)
        .bind(order.customer.as_ref().map(|c| c.name.clone()))
        .bind(order.customer.as_ref().map(|c| c.email.clone()))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Ok(Inserted::DuplicateKey);
            }
            Err(e) => return Err(e.into()),
        }
        // Every line in one statement: a round trip to the database per line cost more than
        // the inserts themselves.
        let mut lines = sqlx::query(sqlx::AssertSqlSafe(lines_insert(
            tx.backend(),
            order.lines.len(),
        )));
        for (position, line) in (0_i64..).zip(&order.lines) {
            lines = lines
                .bind(&order.id)
                .bind(position)
                .bind(&line.sku)
                .bind(&line.name)
                .bind(line.unit_price_minor)
                .bind(line.quantity)
                .bind(line.line_total_minor);
        }
        if !order.lines.is_empty() {
            lines.execute(&mut *tx).await?;
        }
        for (position, change) in (0_i64..).zip(&order.history) {
            sqlx::query("INSERT INTO order_status_history (order_id, position, status, reason, at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&order.id)
                .bind(position)
                .bind(&change.status)
                .bind(&change.reason)
                .bind(change.at)
                .execute(&mut *tx)
                .await?;
        }
        sagas::insert_saga(&mut tx, saga, lease).await?;
        let money = |amount_minor: i64| Money {
            amount_minor,
            currency: order.currency.clone(),
        };
        let created = OrderCreated {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| OrderLine {
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: money(l.unit_price_minor),
                })
                .collect(),
            total: money(order.total_minor),
        };
        chassis::events::publish(&mut tx, crate::SERVICE, &created).await?;
        tx.commit().await?;
        Ok(Inserted::Created)
    }

    /// The user's order made with this idempotency key, and the hash of the request that made it.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.find_by_key", otel.kind = "client", db.namespace = "orders", db.operation.name = "find_by_key"))]
    pub async fn find_by_key(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<(OrderRecord, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, request_hash FROM orders WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.db.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let hash: Option<String> = row.try_get("request_hash")?;
        Ok(self
            .find(&id)
            .await?
            .map(|order| (order, hash.unwrap_or_default())))
    }

    /// The order with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.find", otel.kind = "client", db.namespace = "orders", db.operation.name = "find"))]
    pub async fn find(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.complete(vec![order_from_row(&row)?]).await?.pop())
    }

    /// A page of orders, newest first: of `user_id`, or everyone's when `None`. Returns one more
    /// than `limit` when a next page exists.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "orders.list", otel.kind = "client", db.namespace = "orders", db.operation.name = "list"))]
    pub async fn list(
        &self,
        user_id: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if user_id.is_some() {
            sql.push_str(&format!(" AND user_id = {}", next()));
        }
        if after.is_some() {
            let (a, b) = (next(), next());
            sql.push_str(&format!(" AND (created_at, id) < ({a}, {b})"));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            next()
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(user_id) = user_id {
            query = query.bind(user_id.to_owned());
        }
        if let Some((created_at, id)) = after {
            query = query.bind(created_at).bind(id);
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(self.db.reader())
            .await?;
        let orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.complete(orders).await
    }

    /// Loads the lines and history of `orders` with two queries, whatever their number.
    async fn complete(&self, mut orders: Vec<OrderRecord>) -> Result<Vec<OrderRecord>, StoreError> {
        if orders.is_empty() {
            return Ok(orders);
        }
        let placeholders: Vec<String> = (1..=orders.len()).map(|i| format!("${i}")).collect();
        let in_list = placeholders.join(", ");
        let mut lines_query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT order_id, sku, name, unit_price_minor, quantity, line_total_minor FROM order_lines
             WHERE order_id IN ({in_list}) ORDER BY order_id, position"
        )));
        let mut history_query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT order_id, status, reason, at FROM order_status_history WHERE order_id IN ({in_list}) ORDER BY order_id, position"
        )));
        for order in &orders {
            lines_query = lines_query.bind(order.id.clone());
            history_query = history_query.bind(order.id.clone());
        }
        let mut lines: HashMap<String, Vec<PricedLine>> = HashMap::new();
        for row in lines_query.fetch_all(self.db.reader()).await? {
            lines
                .entry(row.try_get("order_id")?)
                .or_default()
                .push(PricedLine {
                    sku: row.try_get("sku")?,
                    name: row.try_get("name")?,
                    unit_price_minor: row.try_get("unit_price_minor")?,
                    quantity: row.try_get("quantity")?,
                    line_total_minor: row.try_get("line_total_minor")?,
                });
        }
        let mut history: HashMap<String, Vec<StatusChange>> = HashMap::new();
        for row in history_query.fetch_all(self.db.reader()).await? {
            history
                .entry(row.try_get("order_id")?)
                .or_default()
                .push(StatusChange {
                    status: row.try_get("status")?,
                    reason: row.try_get("reason")?,
                    at: row.try_get("at")?,
                });
        }
        for order in &mut orders {
            order.lines = lines.remove(&order.id).unwrap_or_default();
            order.history = history.remove(&order.id).unwrap_or_default();
        }
        Ok(orders)
    }
}

/// `INSERT INTO order_lines … VALUES ($1, …, $7), ($8, …, $14), …` for `count` lines (at most
/// [`crate::domain::MAX_LINES`], so 350 parameters, far below either engine's limit), with
/// `backend`'s placeholders. Only placeholders are generated; the values are bound.
fn lines_insert(backend: Backend, count: usize) -> String {
    format!(
        "INSERT INTO order_lines (order_id, position, sku, name, unit_price_minor, quantity, line_total_minor) VALUES {}",
        backend.values_placeholders(count, 7)
    )
}

fn order_from_row(row: &AnyRow) -> Result<OrderRecord, StoreError> {
    Ok(OrderRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        currency: row.try_get("currency")?,
        total_minor: row.try_get("total_minor")?,
        address: Address {
            name: row.try_get("ship_name")?,
            line1: row.try_get("ship_line1")?,
            line2: row.try_get("ship_line2")?,
            city: row.try_get("ship_city")?,
            postal_code: row.try_get("ship_postal_code")?,
            country: row.try_get("ship_country")?,
        },
        reservation_id: row.try_get("reservation_id")?,
        cancel_reason: row.try_get("cancel_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        lines: Vec::new(),
        history: Vec::new(),
        customer: match (
            row.try_get::<Option<String>, _>("customer_name")?,
            row.try_get::<Option<String>, _>("customer_email")?,
        ) {
            (Some(name), Some(email)) => Some(Customer { name, email }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::lines_insert;
    use chassis::db::Backend;

    #[test]
    fn lines_are_inserted_in_one_statement_with_seven_placeholders_each() {
        assert_eq!(
            lines_insert(Backend::Postgres, 2),
            "INSERT INTO order_lines (order_id, position, sku, name, unit_price_minor, quantity, line_total_minor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)"
        );
        let most = lines_insert(Backend::Postgres, crate::domain::MAX_LINES);
        assert!(most.ends_with("$344, $345, $346, $347, $348, $349, $350)"));
    }
}
