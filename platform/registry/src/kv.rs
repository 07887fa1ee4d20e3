//! The KV store: a write-through cache over the `kv` table.
//!
//! Reads and blocking reads are served from memory; writes are serialized by one lock (so
//! check-and-set is atomic and indexes are allocated in order), committed to the database, then
//! applied to the cache and announced through the [`Index`].
//!
//! A prefix has an index too, so watchers of a whole prefix (gateways watching every traffic
//! policy, services watching fault rules) wake only when something under it changes: the
//! highest modify index of its keys, or of a key deleted from it (deletions are remembered in
//! memory; after a restart the index can only move, which wakes every watcher once).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chassis::db::Db;
use contracts::discovery::KvEntry;
use sqlx::Row;

use crate::index::Index;

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The check-and-set index did not match.
    #[error("the key changed since index {expected} (now {actual})")]
    CasMismatch {
        /// Index the writer expected.
        expected: u64,
        /// Index the key has (0: absent).
        actual: u64,
    },
    /// The database failed.
    #[error("writing the KV store")]
    Db(#[from] sqlx::Error),
}

/// The KV store.
#[derive(Debug)]
pub struct KvStore {
    db: Db,
    entries: RwLock<Keys>,
    writes: tokio::sync::Mutex<()>,
    index: Arc<Index>,
}

impl KvStore {
    /// Loads every key, and starts the registry's index after the highest one stored.
    pub async fn open(db: Db) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query("SELECT key, value, create_index, modify_index FROM kv")
            .fetch_all(db.pool())
            .await?;
        let mut entries = BTreeMap::new();
        let mut highest = 0;
        for row in rows {
            let entry = KvEntry {
                key: row.try_get("key")?,
                value: row.try_get("value")?,
                create_index: index_from_db(row.try_get("create_index")?),
                modify_index: index_from_db(row.try_get("modify_index")?),
            };
            highest = highest.max(entry.modify_index);
            entries.insert(entry.key.clone(), entry);
        }
        Ok(Self {
            db,
            entries: RwLock::new(Keys {
                live: entries,
                deleted: BTreeMap::new(),
            }),
            writes: tokio::sync::Mutex::new(()),
            index: Arc::new(Index::new(highest)),
        })
    }

    /// The registry's index, shared with the catalog.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The entry at `key`.
    pub fn get(&self, key: &str) -> Option<KvEntry> {
        self.read().live.get(key).cloned()
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<KvEntry> {
        under(&self.read().live, prefix)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The index of the last change under `prefix`: a write or a deletion (0: never changed).
    pub fn prefix_index(&self, prefix: &str) -> u64 {
        let keys = self.read();
        let written = under(&keys.live, prefix).map(|(_, e)| e.modify_index);
        let deleted = under(&keys.deleted, prefix).map(|(_, index)| *index);
        written.chain(deleted).max().unwrap_or(0)
    }

    /// Writes `value` at `key`; with `cas`, only if the key's modify index is `cas` (0: absent).
    pub async fn put(&self, key: &str, value: &str, cas: Option<u64>) -> Result<KvEntry, KvError> {
        let _write = self.writes.lock().await;
        let current = self.get(key);
        check_cas(cas, current.as_ref())?;
        let index = self.index.current() + 1;
        let create_index = current.as_ref().map_or(index, |e| e.create_index);
        self.db.execute(sqlx::query(
            "INSERT INTO kv (key, value, create_index, modify_index) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, modify_index = excluded.modify_index",
        )
        .bind(key)
        .bind(value)
        .bind(index_to_db(create_index))
        .bind(index_to_db(index))
        )
        .await?;
        let entry = KvEntry {
            key: key.to_owned(),
            value: value.to_owned(),
            create_index,
            modify_index: index,
        };
        {
            let mut keys = self.write();
            keys.deleted.remove(key);
            keys.live.insert(key.to_owned(), entry.clone());
        }
        self.index.bump();
        Ok(entry)
    }

    /// Deletes `key`; with `cas`, only if its modify index is `cas`. `false` if it was absent.
    pub async fn delete(&self, key: &str, cas: Option<u64>) -> Result<bool, KvError> {
        let _write = self.writes.lock().await;
        let current = self.get(key);
        check_cas(cas, current.as_ref())?;
        if current.is_none() {
            return Ok(false);
        }
        self.db
            .execute(sqlx::query("DELETE FROM kv WHERE key = $1").bind(key))
            .await?;
        {
            let mut keys = self.write();
            keys.live.remove(key);
            keys.deleted
                .insert(key.to_owned(), self.index.current() + 1);
        }
        self.index.bump();
        Ok(true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The keys, and when each deleted key was deleted.
#[derive(Debug)]
struct Keys {
    live: BTreeMap<String, KvEntry>,
    deleted: BTreeMap<String, u64>,
}

/// The entries of `map` whose key starts with `prefix`.
fn under<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    map.range(prefix.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

fn check_cas(cas: Option<u64>, current: Option<&KvEntry>) -> Result<(), KvError> {
    let actual = current.map_or(0, |e| e.modify_index);
    match cas {
        Some(expected) if expected != actual => Err(KvError::CasMismatch { expected, actual }),
        _ => Ok(()),
    }
}

fn index_to_db(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn index_from_db(index: i64) -> u64 {
    u64::try_from(index).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_zero_means_absent() {
        let entry = KvEntry {
            key: "k".into(),
            value: "v".into(),
            create_index: 3,
            modify_index: 5,
        };
        assert!(check_cas(Some(0), None).is_ok());
        assert!(check_cas(Some(0), Some(&entry)).is_err());
        assert!(check_cas(Some(5), Some(&entry)).is_ok());
        assert!(check_cas(Some(4), Some(&entry)).is_err());
        assert!(check_cas(None, Some(&entry)).is_ok());
    }
}
