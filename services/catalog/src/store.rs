//! SQL for categories, products and inventory. One code path for SQLite and PostgreSQL.
//!
//! # Layout
//! - [`reservations`]: holding, releasing, committing and expiring stock.

pub mod reservations;

use chassis::db::{Db, is_unique_violation};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{Cursor, CursorKey, Sort};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A product with this sku exists.
    #[error("a product with this sku already exists")]
    SkuTaken,
    /// The category does not exist.
    #[error("no such category")]
    UnknownCategory,
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

/// A category with its number of active products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRecord {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Active products in it.
    pub product_count: i64,
}

/// A product with its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// Id (UUIDv7).
    pub id: String,
    /// Sku.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price, minor units.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Category slug.
    pub category: String,
    /// Picture.
    pub image_url: Option<String>,
    /// Whether it is for sale.
    pub active: bool,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held by reservations.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub updated_at: i64,
}

impl ProductRecord {
    /// Units a new reservation can take.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved).max(0)
    }
}

/// Filters of a product list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this category.
    pub category: Option<String>,
    /// Only prices at least this.
    pub min_price: Option<i64>,
    /// Only prices at most this.
    pub max_price: Option<i64>,
    /// Name or description containing this, case-insensitively.
    pub text: Option<String>,
    /// Only these skus.
    pub skus: Vec<String>,
    /// Deactivated products too (admins).
    pub include_inactive: bool,
    /// Order.
    pub sort: Sort,
    /// Continue after this item.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: u32,
}

/// A bound value of a dynamically built query.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.price_minor, p.currency, p.category, \
     p.image_url, p.deactivated_at, p.created_at, p.updated_at, i.on_hand, i.reserved, i.sold";

/// The catalog database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Every category, in display order, with its count of active products.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.categories", otel.kind = "client", db.namespace = "catalog", db.operation.name = "categories"))]
    pub async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.slug, c.name, c.description,
                    (SELECT COUNT(*) FROM products p WHERE p.category = c.slug AND p.deactivated_at IS NULL) AS product_count
             FROM categories c ORDER BY c.position, c.slug",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CategoryRecord {
                    slug: r.try_get("slug")?,
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    product_count: r.try_get("product_count")?,
                })
            })
            .collect()
    }

    /// Creates a category if its slug is new.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.ensure_category", otel.kind = "client", db.namespace = "catalog", db.operation.name = "ensure_category"))]
    pub async fn ensure_category(
        &self,
        slug: &str,
        name: &str,
        description: &str,
        position: i64,
    ) -> Result<(), StoreError> {
        self.db.execute(sqlx::query(
            "INSERT INTO categories (slug, name, description, position) VALUES ($1, $2, $3, $4)
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(slug)
        .bind(name)
        .bind(description)
        .bind(position)
        )
        .await?;
        Ok(())
    }

    /// One page of products; returns one more than `limit` when a next page exists.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.list", otel.kind = "client", db.namespace = "catalog", db.operation.name = "list"))]
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<ProductRecord>, StoreError> {
        let mut sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p JOIN inventory i ON i.sku = p.sku WHERE 1 = 1"
        );
        let mut binds: Vec<Bind> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, value: Bind| {
            binds.push(value);
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
        };
        if !query.include_inactive {
            sql.push_str(" AND p.deactivated_at IS NULL");
        }
        if let Some(category) = &query.category {
            push(
                &mut sql,
                " AND p.category = $?",
                Bind::Text(category.clone()),
            );
        }
        if let Some(min) = query.min_price {
            push(&mut sql, " AND p.price_minor >= $?", Bind::Int(min));
        }
        if let Some(max) = query.max_price {
            push(&mut sql, " AND p.price_minor <= $?", Bind::Int(max));
        }
        if let Some(text) = &query.text {
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            push(
                &mut sql,
                " AND (p.name_lower LIKE $? ESCAPE '\\'",
                Bind::Text(pattern.clone()),
            );
            push(
                &mut sql,
                " OR LOWER(p.description) LIKE $? ESCAPE '\\')",
                Bind::Text(pattern),
            );
        }
        if !query.skus.is_empty() {
            sql.push_str(" AND p.sku IN (");
            for (i, sku) in query.skus.iter().enumerate() {
                push(
                    &mut sql,
                    if i == 0 { "$?" } else { ", $?" },
                    Bind::Text(sku.clone()),
                );
            }
            sql.push(')');
        }
        let (key_column, direction) = match query.sort {
            Sort::Name => ("p.name_lower", "ASC"),
            Sort::PriceAscending => ("p.price_minor", "ASC"),
            Sort::PriceDescending => ("p.price_minor", "DESC"),
            Sort::Newest => ("p.created_at", "DESC"),
        };
        if let Some(after) = &query.after {
            let comparison = if direction == "ASC" { ">" } else { "<" };
            let key = match &after.key {
                CursorKey::Text(text) => Bind::Text(text.clone()),
                CursorKey::Number(number) => Bind::Int(*number),
            };
            // Row values give a strict order across ties on the key: (key, id).
            push(
                &mut sql,
                &format!(" AND ({key_column}, p.id) {comparison} ($?"),
                key,
            );
            push(&mut sql, ", $?)", Bind::Text(after.id.clone()));
        }
        sql.push_str(&format!(
            " ORDER BY {key_column} {direction}, p.id {direction}"
        ));
        push(&mut sql, " LIMIT $?", Bind::Int(i64::from(query.limit) + 1));

        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(number) => statement.bind(number),
            };
        }
        let rows = statement.fetch_all(self.db.reader()).await?;
        rows.iter().map(product_from_row).collect()
    }

    /// The product with this id or sku.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.find", otel.kind = "client", db.namespace = "catalog", db.operation.name = "find"))]
    pub async fn find(&self, id_or_sku: &str) -> Result<Option<ProductRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products p JOIN inventory i ON i.sku = p.sku WHERE p.id = $1 OR p.sku = $2"
        )))
        .bind(id_or_sku)
        .bind(id_or_sku.to_ascii_uppercase())
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(product_from_row).transpose()
    }

    /// Creates a product and its inventory row.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.insert", otel.kind = "client", db.namespace = "catalog", db.operation.name = "insert"))]
    pub async fn insert(&self, product: &ProductRecord) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO products (id, sku, name, name_lower, description, price_minor, currency, category, image_url,
                                   deactivated_at, created_at, updated_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $10
             WHERE EXISTS (SELECT 1 FROM categories WHERE slug = $8)",
        )
        .bind(&product.id)
        .bind(&product.sku)
        .bind(&product.name)
        .bind(product.name.to_lowercase())
        .bind(&product.description)
        .bind(product.price_minor)
        .bind(&product.currency)
        .bind(&product.category)
        .bind(product.image_url.clone())
        .bind(product.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 0 => return Err(StoreError::UnknownCategory),
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::SkuTaken),
            Err(e) => return Err(e.into()),
        }
        sqlx::query("INSERT INTO inventory (sku, on_hand, reserved, sold) VALUES ($1, $2, 0, 0)")
            .bind(&product.sku)
            .bind(product.on_hand)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a product's editable fields; `false` if there is no such product.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.update", otel.kind = "client", db.namespace = "catalog", db.operation.name = "update"))]
    pub async fn update(&self, product: &ProductRecord, now: i64) -> Result<bool, StoreError> {
        let done = self.db.execute(sqlx::query(
            "UPDATE products SET name = $1, name_lower = $2, description = $3, price_minor = $4, currency = $5,
                    category = $6, image_url = $7,
                    deactivated_at = CASE WHEN $8 = 1 THEN NULL ELSE COALESCE(deactivated_at, $9) END,
                    updated_at = $9
             WHERE id = $10 AND EXISTS (SELECT 1 FROM categories WHERE slug = $6)",
        )
        .bind(&product.name)
        .bind(product.name.to_lowercase())
        .bind(&product.description)
        .bind(product.price_minor)
        .bind(&product.currency)
        .bind(&product.category)
        .bind(product.image_url.clone())
        .bind(i64::from(product.active))
        .bind(now)
        .bind(&product.id)
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds `quantity` units to a sku's stock; `false` if there is no such sku.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.restock", otel.kind = "client", db.namespace = "catalog", db.operation.name = "restock"))]
    pub async fn restock(&self, sku: &str, quantity: i64) -> Result<bool, StoreError> {
        let done = self
            .db
            .execute(
                sqlx::query("UPDATE inventory SET on_hand = on_hand + $1 WHERE sku = $2")
                    .bind(quantity)
                    .bind(sku),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many products exist, active or not.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "catalog.product_count", otel.kind = "client", db.namespace = "catalog", db.operation.name = "product_count"))]
    pub async fn product_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM products")
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn product_from_row(row: &AnyRow) -> Result<ProductRecord, StoreError> {
    let deactivated_at: Option<i64> = row.try_get("deactivated_at")?;
    Ok(ProductRecord {
        id: row.try_get("id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price_minor: row.try_get("price_minor")?,
        currency: row.try_get("currency")?,
        category: row.try_get("category")?,
        image_url: row.try_get("image_url")?,
        active: deactivated_at.is_none(),
        on_hand: row.try_get("on_hand")?,
        reserved: row.try_get("reserved")?,
        sold: row.try_get("sold")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
