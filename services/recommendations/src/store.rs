//! SQL for the read model: purchases, products bought together, and names.

use std::collections::BTreeSet;

use chassis::db::{Db, WriteTransaction};
use sqlx::Row;

/// A recommended product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// The product.
    pub sku: String,
    /// Its name, as orders knew it.
    pub name: String,
    /// How many orders back it.
    pub score: i64,
}

/// The recommendations database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

/// Records a confirmed order's products, in the event's transaction. An order recorded before
/// changes nothing.
pub async fn record_order(
    tx: &mut WriteTransaction,
    order_id: &str,
    user_id: &str,
    products: &[(String, String)],
) -> Result<(), sqlx::Error> {
    let known: i64 =
        sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM purchases WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
    if known > 0 {
        return Ok(());
    }
    let skus: BTreeSet<&str> = products.iter().map(|(sku, _)| sku.as_str()).collect();
    for (sku, name) in products {
        sqlx::query("INSERT INTO products (sku, name) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET name = $2")
            .bind(sku)
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    for sku in &skus {
        sqlx::query("INSERT INTO purchases (order_id, sku, user_id) VALUES ($1, $2, $3)")
            .bind(order_id)
            .bind(sku)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    }
    pair_up(tx, &skus, 1).await
}

/// Takes back what a cancelled order added, if it had been recorded.
pub async fn forget_order(tx: &mut WriteTransaction, order_id: &str) -> Result<(), sqlx::Error> {
    let skus: Vec<String> = sqlx::query("SELECT sku FROM purchases WHERE order_id = $1")
        .bind(order_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get("sku"))
        .collect::<Result<_, _>>()?;
    if skus.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM purchases WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
    let skus: BTreeSet<&str> = skus.iter().map(String::as_str).collect();
    pair_up(tx, &skus, -1).await?;
    sqlx::query("DELETE FROM bought_together WHERE orders <= 0")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Adds `delta` to every ordered pair of different `skus`.
async fn pair_up(
    tx: &mut WriteTransaction,
    skus: &BTreeSet<&str>,
    delta: i64,
) -> Result<(), sqlx::Error> {
    for a in skus {
        for b in skus.iter().filter(|b| *b != a) {
            sqlx::query(
                "INSERT INTO bought_together (sku, other, orders) VALUES ($1, $2, $3)
                 ON CONFLICT (sku, other) DO UPDATE SET orders = bought_together.orders + $3",
            )
            .bind(*a)
            .bind(*b)
            .bind(delta)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Products most often bought with `sku`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "recommendations.bought_with", otel.kind = "client", db.namespace = "recommendations", db.operation.name = "bought_with"))]
    pub async fn bought_with(
        &self,
        sku: &str,
        limit: i64,
    ) -> Result<Vec<Recommendation>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT t.other AS sku, COALESCE(p.name, t.other) AS name, t.orders AS score
             FROM bought_together t LEFT JOIN products p ON p.sku = t.other
             WHERE t.sku = $1 AND t.orders > 0
             ORDER BY t.orders DESC, t.other LIMIT $2",
        )
        .bind(sku)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(recommendation).collect()
    }

    /// Products bought together with what `user_id` bought, that they have not bought; when
    /// there are none, the most bought products they have not bought.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "recommendations.for_user", otel.kind = "client", db.namespace = "recommendations", db.operation.name = "for_user"))]
    pub async fn for_user(
        &self,
        user_id: &str,
        limit: i64,
    ) -> Result<Vec<Recommendation>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT t.other AS sku, COALESCE(p.name, t.other) AS name, CAST(SUM(t.orders) AS BIGINT) AS score
             FROM bought_together t LEFT JOIN products p ON p.sku = t.other
             WHERE t.sku IN (SELECT sku FROM purchases WHERE user_id = $1)
               AND t.other NOT IN (SELECT sku FROM purchases WHERE user_id = $1)
               AND t.orders > 0
             GROUP BY t.other, p.name
             ORDER BY score DESC, sku LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        if !rows.is_empty() {
            return rows.iter().map(recommendation).collect();
        }
        let rows = sqlx::query(
            "SELECT u.sku AS sku, COALESCE(p.name, u.sku) AS name, CAST(COUNT(*) AS BIGINT) AS score
             FROM purchases u LEFT JOIN products p ON p.sku = u.sku
             WHERE u.sku NOT IN (SELECT sku FROM purchases WHERE user_id = $1)
             GROUP BY u.sku, p.name
             ORDER BY score DESC, sku LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(recommendation).collect()
    }
}

fn recommendation(row: &sqlx::any::AnyRow) -> Result<Recommendation, sqlx::Error> {
    Ok(Recommendation {
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        score: row.try_get("score")?,
    })
}
