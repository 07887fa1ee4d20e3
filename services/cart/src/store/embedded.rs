//! Carts in an embedded redb file: ACID, pure Rust, no server. redb runs one write transaction
//! at a time, so each change is a read-modify-write that no other change can interleave with.
//! redb is synchronous; every call runs on the blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{CartStore, StoreError, ttl_millis};
use crate::domain::{Cart, Change, Limits};

const CARTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("carts");

/// What is stored per cart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    cart: Cart,
    /// Last change, ms since the epoch.
    touched_at: i64,
}

/// The embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    ttl: i64,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`; carts idle for `ttl` expire.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, StoreError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(StoreError::backend)?;
        }
        let db = Database::create(path).map_err(StoreError::backend)?;
        Ok(Self {
            db: Arc::new(db),
            ttl: ttl_millis(ttl),
        })
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database, i64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let ttl = self.ttl;
        tokio::task::spawn_blocking(move || work(&db, ttl))
            .await
            .map_err(StoreError::backend)?
    }
}

fn now() -> i64 {
    chassis::db::now_millis()
}

fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::backend)
}

fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(StoreError::backend)
}

fn live(record: Record, ttl: i64) -> Option<Record> {
    (now() - record.touched_at <= ttl).then_some(record)
}

/// Reads a live record within a write transaction's table.
fn read(
    table: &redb::Table<'_, &str, &[u8]>,
    id: &str,
    ttl: i64,
) -> Result<Option<Record>, StoreError> {
    match table.get(id).map_err(StoreError::backend)? {
        Some(bytes) => Ok(live(decode(bytes.value())?, ttl)),
        None => Ok(None),
    }
}

impl CartStore for EmbeddedStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Cart>, StoreError>> {
        let id = id.to_owned();
        Box::pin(self.blocking(move |db, ttl| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let table = match txn.open_table(CARTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(StoreError::backend(error)),
            };
            let record = match table.get(id.as_str()).map_err(StoreError::backend)? {
                Some(bytes) => live(decode(bytes.value())?, ttl),
                None => None,
            };
            Ok(record.map(|r| r.cart))
        }))
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        change: &'a Change,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>> {
        let (id, change) = (id.to_owned(), change.clone());
        Box::pin(self.blocking(move |db, ttl| {
            let txn = db.begin_write().map_err(StoreError::backend)?;
            let cart = {
                let mut table = txn.open_table(CARTS).map_err(StoreError::backend)?;
                let mut record = read(&table, &id, ttl)?.unwrap_or_default();
                record.cart.apply(&change, limits)?;
                record.touched_at = now();
                table
                    .insert(id.as_str(), encode(&record)?.as_slice())
                    .map_err(StoreError::backend)?;
                record.cart
            };
            txn.commit().map_err(StoreError::backend)?;
            Ok(cart)
        }))
    }

    fn merge<'a>(
        &'a self,
        from: &'a str,
        into: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Cart, StoreError>> {
        let (from, into) = (from.to_owned(), into.to_owned());
        Box::pin(self.blocking(move |db, ttl| {
            let txn = db.begin_write().map_err(StoreError::backend)?;
            let cart = {
                let mut table = txn.open_table(CARTS).map_err(StoreError::backend)?;
                let source = read(&table, &from, ttl)?;
                let mut target = read(&table, &into, ttl)?.unwrap_or_default();
                if let Some(source) = source {
                    target.cart.merge(&source.cart, limits);
                    target.touched_at = now();
                    table
                        .insert(into.as_str(), encode(&target)?.as_slice())
                        .map_err(StoreError::backend)?;
                    table.remove(from.as_str()).map_err(StoreError::backend)?;
                }
                target.cart
            };
            txn.commit().map_err(StoreError::backend)?;
            Ok(cart)
        }))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let id = id.to_owned();
        Box::pin(self.blocking(move |db, _| {
            let txn = db.begin_write().map_err(StoreError::backend)?;
            txn.open_table(CARTS)
                .map_err(StoreError::backend)?
                .remove(id.as_str())
                .map_err(StoreError::backend)?;
            txn.commit().map_err(StoreError::backend)
        }))
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.blocking(move |db, ttl| {
            let txn = db.begin_write().map_err(StoreError::backend)?;
            let mut purged = 0;
            {
                let mut table = txn.open_table(CARTS).map_err(StoreError::backend)?;
                let cutoff = now() - ttl;
                table
                    .retain(|_, bytes| {
                        let keep = decode(bytes)
                            .map(|r| r.touched_at >= cutoff)
                            .unwrap_or(false);
                        if !keep {
                            purged += 1;
                        }
                        keep
                    })
                    .map_err(StoreError::backend)?;
            }
            txn.commit().map_err(StoreError::backend)?;
            Ok(purged)
        }))
    }
}
