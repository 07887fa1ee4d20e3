//! SQL for charges, refunds and the ledger. Every money movement writes its ledger row in the
//! same transaction as the charge or refund, so the ledger is always the truth.

use chassis::db::{Db, is_unique_violation};
use contracts::events::{PaymentCharged, PaymentRefunded};
use contracts::money::Money;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A charge attempt that got an answer from the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    /// Id.
    pub id: String,
    /// The order it pays for.
    pub order_id: String,
    /// Who pays.
    pub user_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Card brand.
    pub card_brand: String,
    /// Last four digits of the card.
    pub card_last4: String,
    /// `succeeded` or `declined`.
    pub status: String,
    /// Why it was declined.
    pub decline_reason: Option<String>,
    /// Sum of its refunds, minor units.
    pub refunded_minor: i64,
    /// When, ms.
    pub created_at: i64,
}

/// A refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// Id.
    pub id: String,
    /// The charge it returns money from.
    pub charge_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// When, ms.
    pub created_at: i64,
}

/// What a refund request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunded {
    /// Money returned.
    Created(RefundRecord),
    /// The key was used before with the same request.
    Replayed(RefundRecord),
    /// The key was used before with another request.
    KeyReused,
    /// No such charge.
    NoCharge,
    /// A declined charge moved no money.
    NothingCharged,
    /// More than what is left to refund.
    Exceeds {
        /// What is left.
        remaining: i64,
    },
}

/// A card registered with the processor: what may be shown, and the processor's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    /// Token (`pm_…`), what orders and clients pass around.
    pub id: String,
    /// Whose card it is.
    pub user_id: String,
    /// Card brand.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
    /// The processor's reference to the card; never shown.
    pub processor_ref: String,
    /// When, ms.
    pub created_at: i64,
}

/// Charged and refunded totals of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Sum of succeeded charges.
    pub charged: i64,
    /// Sum of refunds.
    pub refunded: i64,
}

const CHARGE_COLUMNS: &str = "c.id, c.order_id, c.user_id, c.amount_minor, c.currency, c.card_brand, c.card_last4, \
     c.status, c.decline_reason, c.created_at, \
     CAST((SELECT COALESCE(SUM(r.amount_minor), 0) FROM refunds r WHERE r.charge_id = c.id) AS BIGINT) AS refunded_minor";

const METHOD_COLUMNS: &str =
    "id, user_id, brand, last4, exp_month, exp_year, processor_ref, created_at";

/// The payments database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores a registered card.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.insert_payment_method", otel.kind = "client", db.namespace = "payments", db.operation.name = "insert_payment_method"))]
    pub async fn insert_payment_method(&self, method: &PaymentMethod) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO payment_methods (id, user_id, brand, last4, exp_month, exp_year, processor_ref, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&method.id)
        .bind(&method.user_id)
        .bind(&method.brand)
        .bind(&method.last4)
        .bind(method.exp_month)
        .bind(method.exp_year)
        .bind(&method.processor_ref)
        .bind(method.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The payment method with this token.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.payment_method", otel.kind = "client", db.namespace = "payments", db.operation.name = "payment_method"))]
    pub async fn payment_method(&self, id: &str) -> Result<Option<PaymentMethod>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METHOD_COLUMNS} FROM payment_methods WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(method_from_row).transpose()
    }

    /// A user's payment methods, newest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.payment_methods", otel.kind = "client", db.namespace = "payments", db.operation.name = "payment_methods"))]
    pub async fn payment_methods(&self, user_id: &str) -> Result<Vec<PaymentMethod>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METHOD_COLUMNS} FROM payment_methods WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100"
        )))
        .bind(user_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(method_from_row).collect()
    }

    /// The charge made under `key`, and the hash of the request that made it.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.charge_by_key", otel.kind = "client", db.namespace = "payments", db.operation.name = "charge_by_key"))]
    pub async fn charge_by_key(
        &self,
        key: &str,
    ) -> Result<Option<(ChargeRecord, String)>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS}, c.request_hash FROM charges c WHERE c.idempotency_key = $1"
        )))
        .bind(key)
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| Ok((charge_from_row(&r)?, r.try_get("request_hash")?)))
            .transpose()
    }

    /// Stores a charge (and, if it succeeded, its ledger row). `false` when another request with
    /// the same key stored first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.insert_charge", otel.kind = "client", db.namespace = "payments", db.operation.name = "insert_charge"))]
    pub async fn insert_charge(
        &self,
        charge: &ChargeRecord,
        key: &str,
        request_hash: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO charges (id, order_id, user_id, amount_minor, currency, card_brand, card_last4, status,
                                  decline_reason, idempotency_key, request_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&charge.id)
        .bind(&charge.order_id)
        .bind(&charge.user_id)
        .bind(charge.amount_minor)
        .bind(&charge.currency)
        .bind(&charge.card_brand)
        .bind(&charge.card_last4)
        .bind(&charge.status)
        .bind(charge.decline_reason.clone())
        .bind(key)
        .bind(request_hash)
        .bind(charge.created_at)
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
        if charge.status == "succeeded" {
            ledger(
                &mut tx,
                &charge.order_id,
                &charge.id,
                "charge",
                charge.amount_minor,
                &charge.currency,
                charge.created_at,
            )
            .await?;
            let charged = PaymentCharged {
                charge_id: charge.id.clone(),
                order_id: charge.order_id.clone(),
                user_id: charge.user_id.clone(),
                amount: Money {
                    amount_minor: charge.amount_minor,
                    currency: charge.currency.clone(),
                },
            };
            chassis::events::publish(&mut tx, crate::SERVICE, &charged).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The charge with this id.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.charge", otel.kind = "client", db.namespace = "payments", db.operation.name = "charge"))]
    pub async fn charge(&self, id: &str) -> Result<Option<ChargeRecord>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(charge_from_row).transpose()
    }

    /// Every charge attempt for an order, oldest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.charges_for_order", otel.kind = "client", db.namespace = "payments", db.operation.name = "charges_for_order"))]
    pub async fn charges_for_order(
        &self,
        order_id: &str,
    ) -> Result<Vec<ChargeRecord>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.order_id = $1 ORDER BY c.created_at, c.id"
        )))
        .bind(order_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(charge_from_row).collect()
    }

    /// Refunds `amount` of a charge under `key`, never more than is left.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.refund", otel.kind = "client", db.namespace = "payments", db.operation.name = "refund"))]
    pub async fn refund(
        &self,
        charge_id: &str,
        amount: Option<i64>,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<Refunded, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let existing = sqlx::query("SELECT id, charge_id, amount_minor, created_at, request_hash FROM refunds WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            tx.rollback().await?;
            if row.try_get::<String, _>("request_hash")? != request_hash {
                return Ok(Refunded::KeyReused);
            }
            return Ok(Refunded::Replayed(refund_from_row(&row)?));
        }
        let charge = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.id = $1"
        )))
        .bind(charge_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(charge) = charge.as_ref().map(charge_from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(Refunded::NoCharge);
        };
        if charge.status != "succeeded" {
            tx.rollback().await?;
            return Ok(Refunded::NothingCharged);
        }
        let remaining = charge.amount_minor - charge.refunded_minor;
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            tx.rollback().await?;
            return Ok(Refunded::Exceeds { remaining });
        }
        let refund = RefundRecord {
            id: uuid::Uuid::now_v7().to_string(),
            charge_id: charge.id.clone(),
            amount_minor: amount,
            created_at: now,
        };
        sqlx::query("INSERT INTO refunds (id, charge_id, amount_minor, idempotency_key, request_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&refund.id)
            .bind(&refund.charge_id)
            .bind(amount)
            .bind(key)
            .bind(request_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        ledger(
            &mut tx,
            &charge.order_id,
            &charge.id,
            "refund",
            -amount,
            &charge.currency,
            now,
        )
        .await?;
        let refunded = PaymentRefunded {
            refund_id: refund.id.clone(),
            charge_id: charge.id.clone(),
            order_id: charge.order_id.clone(),
            amount: Money {
                amount_minor: amount,
                currency: charge.currency.clone(),
            },
        };
        chassis::events::publish(&mut tx, crate::SERVICE, &refunded).await?;
        tx.commit().await?;
        Ok(Refunded::Created(refund))
    }

    /// What an order was charged and refunded, from the ledger.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "payments.balance", otel.kind = "client", db.namespace = "payments", db.operation.name = "balance"))]
    pub async fn balance(&self, order_id: &str) -> Result<Balance, sqlx::Error> {
        let row = sqlx::query(
            // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both engines return BIGINT.
            "SELECT CAST(COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS charged,
                    CAST(COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END), 0) AS BIGINT) AS refunded
             FROM ledger WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_one(self.db.reader())
        .await?;
        Ok(Balance {
            charged: row.try_get("charged")?,
            refunded: row.try_get("refunded")?,
        })
    }
}

async fn ledger(
    tx: &mut chassis::db::WriteTransaction,
    order_id: &str,
    charge_id: &str,
    kind: &str,
    amount_minor: i64,
    currency: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ledger (id, order_id, charge_id, kind, amount_minor, currency, at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(order_id)
        .bind(charge_id)
        .bind(kind)
        .bind(amount_minor)
        .bind(currency)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn charge_from_row(row: &AnyRow) -> Result<ChargeRecord, sqlx::Error> {
    Ok(ChargeRecord {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        card_brand: row.try_get("card_brand")?,
        card_last4: row.try_get("card_last4")?,
        status: row.try_get("status")?,
        decline_reason: row.try_get("decline_reason")?,
        refunded_minor: row.try_get("refunded_minor")?,
        created_at: row.try_get("created_at")?,
    })
}

fn refund_from_row(row: &AnyRow) -> Result<RefundRecord, sqlx::Error> {
    Ok(RefundRecord {
        id: row.try_get("id")?,
        charge_id: row.try_get("charge_id")?,
        amount_minor: row.try_get("amount_minor")?,
        created_at: row.try_get("created_at")?,
    })
}

fn method_from_row(row: &AnyRow) -> Result<PaymentMethod, sqlx::Error> {
    Ok(PaymentMethod {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        brand: row.try_get("brand")?,
        last4: row.try_get("last4")?,
        exp_month: row.try_get("exp_month")?,
        exp_year: row.try_get("exp_year")?,
        processor_ref: row.try_get("processor_ref")?,
        created_at: row.try_get("created_at")?,
    })
}
