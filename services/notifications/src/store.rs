//! SQL for customers (as emails know them) and emails.

use chassis::db::{Db, WriteTransaction};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Queued until sent.
pub const QUEUED: &str = "queued";
/// Handed to the SMTP server.
pub const SENT: &str = "sent";
/// Kept in the built-in mailbox (no SMTP server configured).
pub const DELIVERED: &str = "delivered";
/// Can never be sent (its template failed); kept for inspection.
pub const FAILED: &str = "failed";

/// A customer's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Email address.
    pub email: String,
    /// Name.
    pub name: String,
}

/// An email, queued or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecord {
    /// Id.
    pub id: String,
    /// The event that asked for it.
    pub event_id: String,
    /// Template.
    pub kind: String,
    /// Recipient's account.
    pub user_id: String,
    /// The event's payload.
    pub data: String,
    /// `queued`, `sent`, `delivered` or `failed`.
    pub status: String,
    /// Recipient's address, once sent.
    pub to_address: Option<String>,
    /// Subject, once rendered.
    pub subject: Option<String>,
    /// Body, once rendered.
    pub body: Option<String>,
    /// Failed attempts.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Queued at, ms.
    pub created_at: i64,
    /// Sent at, ms.
    pub sent_at: Option<i64>,
}

const COLUMNS: &str = "id, event_id, kind, user_id, data, status, to_address, subject, body, attempts, last_error, created_at, sent_at";

/// Which emails a list shows; every condition given must hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmailFilter<'a> {
    /// Sent to this address.
    pub to: Option<&'a str>,
    /// About this order.
    pub order_id: Option<&'a str>,
    /// To this customer.
    pub user_id: Option<&'a str>,
}

/// The notifications database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

/// Stores or updates a customer's address, in the handler's transaction.
pub async fn upsert_customer(
    tx: &mut WriteTransaction,
    user_id: &str,
    customer: &Customer,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (user_id, email, name, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET email = $2, name = $3, updated_at = $4",
    )
    .bind(user_id)
    .bind(&customer.email)
    .bind(&customer.name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues the email an event asks for, in the handler's transaction; a second one for the same
/// event is ignored.
pub async fn queue(
    tx: &mut WriteTransaction,
    event_id: &str,
    kind: &str,
    user_id: &str,
    order_id: Option<&str>,
    data: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO emails (id, event_id, kind, user_id, order_id, data, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(event_id)
    .bind(kind)
    .bind(user_id)
    .bind(order_id)
    .bind(data)
    .bind(QUEUED)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Queued emails due by `now`, oldest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications.due", otel.kind = "client", db.namespace = "notifications", db.operation.name = "due"))]
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<EmailRecord>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM emails WHERE status = $1 AND next_attempt_at <= $2 ORDER BY next_attempt_at, id LIMIT $3"
        )))
        .bind(QUEUED)
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The customer's address, if known yet.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications.customer", otel.kind = "client", db.namespace = "notifications", db.operation.name = "customer"))]
    pub async fn customer(&self, user_id: &str) -> Result<Option<Customer>, sqlx::Error> {
        let row = sqlx::query("SELECT email, name FROM customers WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|r| {
            Ok(Customer {
                email: r.try_get("email")?,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }

    /// Records a sent (or delivered, or failed for good) email with what it said.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications.finish", otel.kind = "client", db.namespace = "notifications", db.operation.name = "finish"))]
    pub async fn finish(
        &self,
        id: &str,
        status: &str,
        to: Option<&str>,
        rendered: Option<(&str, &str)>,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE emails SET status = $1, to_address = $2, subject = $3, body = $4, last_error = $5, sent_at = $6
             WHERE id = $7 AND status = $8",
        )
        .bind(status)
        .bind(to.map(str::to_owned))
        .bind(rendered.map(|r| r.0.to_owned()))
        .bind(rendered.map(|r| r.1.to_owned()))
        .bind(error.map(str::to_owned))
        .bind(now)
        .bind(id)
        .bind(QUEUED)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Puts an email back in the queue until `next_attempt_at`, counting the failure.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications.retry_later", otel.kind = "client", db.namespace = "notifications", db.operation.name = "retry_later"))]
    pub async fn retry_later(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE emails SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .bind(QUEUED)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The newest `limit` emails matching `filter`, newest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications.list", otel.kind = "client", db.namespace = "notifications", db.operation.name = "list"))]
    pub async fn list(
        &self,
        filter: &EmailFilter<'_>,
        limit: i64,
    ) -> Result<Vec<EmailRecord>, sqlx::Error> {
        // Each condition is on when its parameter is given: `$1 IS NULL OR …` keeps one
        // statement (and one prepared plan) for every combination.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM emails
             WHERE ($1 IS NULL OR to_address = $1) AND ($2 IS NULL OR order_id = $2)
               AND ($3 IS NULL OR user_id = $3)
             ORDER BY created_at DESC, id DESC LIMIT $4"
        )))
        .bind(filter.to)
        .bind(filter.order_id)
        .bind(filter.user_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

fn from_row(row: &AnyRow) -> Result<EmailRecord, sqlx::Error> {
    Ok(EmailRecord {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        kind: row.try_get("kind")?,
        user_id: row.try_get("user_id")?,
        data: row.try_get("data")?,
        status: row.try_get("status")?,
        to_address: row.try_get("to_address")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}
