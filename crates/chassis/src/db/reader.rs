//! Reads on the request path: on SQLite, run in place on read connections of the chassis's own
//! (`chassis::db::sqlite`); on PostgreSQL, on sqlx's pool.
//!
//! A read handed to sqlx's SQLite thread and back costs two thread wake-ups, each waiting for a
//! core under load, around some 15 µs of SQLite's own work: 17 % of the orders service's CPU
//! under checkout load went to those threads after the writes had moved in place
//! (docs/decisions.md, 2026-11-28). [`Reader`] runs a read on the task that asks for it: on the
//! writer's connection when no write holds it, whose page cache stays warm, or else on an idle
//! read connection of its own (it opens one when none is idle: the process runs one task at a
//! time, so it seldom holds more than one).
//!
//! In place means the task's thread is busy until the statement is done. That is right for a
//! short read (a row by its key, a bounded page); a long scan should use [`super::Db::pool`], so
//! the runtime's thread serves other requests meanwhile.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, Weak};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::Connection;
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyTypeInfo};
use sqlx::{AnyPool, Either, Execute, Executor};
use tokio::sync::Mutex as AsyncMutex;

use super::sqlite::{self, Statement, Steps, first_row, step_stream, unsupported};
use super::writer::Writer;

/// Idle read connections kept for the next reads; more are closed when returned.
const IDLE_CONNECTIONS: usize = 4;

/// Where a [`Db`](super::Db)'s reads run: an sqlx executor for the `Any` driver
/// (`.fetch_optional(db.reader())`).
pub struct Reader(Source);

enum Source {
    Sqlite(Readers),
    Postgres(AnyPool),
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = match self.0 {
            Source::Sqlite(_) => "sqlite, in place",
            Source::Postgres(_) => "postgres, pool",
        };
        f.debug_tuple("Reader").field(&engine).finish()
    }
}

impl Reader {
    /// Reads from the SQLite file at `path` (which exists, in WAL mode), in place, on
    /// `writer`'s connection when no write holds it.
    pub(super) fn sqlite(
        path: &Path,
        writer: Weak<AsyncMutex<Writer>>,
    ) -> Result<Self, sqlx::Error> {
        let readers = Readers {
            path: path.to_path_buf(),
            writer,
            idle: Mutex::new(Vec::new()),
        };
        // Open one now, so a file that cannot be read fails at start, not on a request.
        let conn = readers.open()?;
        readers.put_back(conn);
        Ok(Self(Source::Sqlite(readers)))
    }

    /// Reads on `pool` (PostgreSQL).
    pub(super) fn pool(pool: AnyPool) -> Self {
        Self(Source::Postgres(pool))
    }
}

/// SQLite read connections, idle ones kept for reuse, and the process's writer.
struct Readers {
    path: PathBuf,
    /// The write connection, which a read uses when no write holds it ([`Readers::run`]).
    writer: Weak<AsyncMutex<Writer>>,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A read connection: it can change nothing (`query_only`).
    fn open(&self) -> Result<Connection, sqlx::Error> {
        sqlite::open(&self.path, "PRAGMA query_only = ON;")
    }

    fn take(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Runs `statement` on an idle connection, returning at most `limit` rows.
    ///
    /// The writer's connection goes first, when no write holds it, no commit is pending on it
    /// (what it would see is not committed yet) and the statement is a query that only reads. Its page cache stays warm: no other connection writes (unless
    /// replicas share the file). A read connection instead finds the file changed at nearly
    /// every read under writes, drops its whole cache and reads each page it needs again: a
    /// system call and a look-up in the WAL per page. Anything else (a write, a `PRAGMA`, a
    /// `BEGIN`) goes to a read connection, which can change nothing.
    fn run(&self, statement: &Statement, limit: usize) -> Result<Steps, sqlx::Error> {
        if statement.is_query()
            && let Some(writer) = self.writer.upgrade()
            && let Ok(writer) = writer.try_lock()
            && let Some(conn) = writer.idle_conn()
        {
            let prepared = statement.prepare(conn)?;
            if prepared.readonly() {
                return sqlite::steps(prepared, conn, limit);
            }
        }
        let conn = match self.take() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let steps = statement.run(&conn, limit);
        self.put_back(conn);
        steps
    }

    /// Runs `query`, waiting (asynchronously) while another connection holds a lock the read
    /// needs: in WAL mode only while one recovers the log after a crash.
    async fn read<'q, E: Execute<'q, Any>>(
        &self,
        query: E,
        limit: usize,
    ) -> Result<Steps, sqlx::Error> {
        let statement = Statement::take(query)?;
        sqlite::until_not_busy(|| self.run(&statement, limit)).await
    }
}

impl<'c> Executor<'c> for &'c Reader {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match &self.0 {
            Source::Postgres(pool) => pool.fetch_many(query),
            Source::Sqlite(readers) => stream::once(readers.read(query, usize::MAX))
                .flat_map(step_stream)
                .boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match &self.0 {
            Source::Postgres(pool) => pool.fetch_optional(query),
            Source::Sqlite(readers) => {
                Box::pin(async move { readers.read(query, 1).await.map(first_row) })
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match &self.0 {
            Source::Postgres(pool) => pool.prepare_with(sql, parameters),
            Source::Sqlite(_) => unsupported("hand out prepared statements"),
        }
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match &self.0 {
            Source::Postgres(pool) => pool.describe(sql),
            Source::Sqlite(_) => unsupported("describe queries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;
    use sqlx::Row;

    use crate::db::Backend;
    use crate::db::tests::{count, insert, open_with_items as open};
    use crate::testing::TestDatabase;

    /// Reads see what was committed, and only that, typed as sqlx's drivers give it; a
    /// statement with many rows streams them all.
    async fn reads_see_commits_and_type_their_rows(test_db: TestDatabase) {
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        for (id, n, note) in [("a", 1_i64, None), ("b", 2, Some("two")), ("c", 3, None)] {
            sqlx::query("INSERT INTO items (id, n, note) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(n)
                .bind(note)
                .execute(&mut *tx)
                .await
                .expect("the insert");
        }
        let before = sqlx::query("SELECT id FROM items WHERE id = $1")
            .bind("a")
            .fetch_optional(db.reader())
            .await
            .expect("a read while a writer is open");
        assert!(before.is_none(), "an uncommitted row is not read");
        tx.commit().await.expect("the commit");

        let row = sqlx::query("SELECT n, note FROM items WHERE id = $1")
            .bind("b")
            .fetch_one(db.reader())
            .await
            .expect("the committed row is read");
        assert_eq!(row.get::<i64, _>("n"), 2);
        assert_eq!(row.get::<Option<String>, _>("note").as_deref(), Some("two"));

        let ids: Vec<String> = sqlx::query("SELECT id FROM items WHERE n >= $1 ORDER BY id")
            .bind(2_i64)
            .fetch(db.reader())
            .map_ok(|row| row.get("id"))
            .try_collect()
            .await
            .expect("a read of many rows");
        assert_eq!(ids, ["b", "c"]);

        let missing = sqlx::query("SELECT id FROM items WHERE id = $1")
            .bind("nobody")
            .fetch_optional(db.reader())
            .await
            .expect("a read of nothing");
        assert!(missing.is_none());

        let unbound = sqlx::query("SELECT id FROM items WHERE id = $1 AND n = $2")
            .bind("a")
            .fetch_optional(db.reader())
            .await
            .err()
            .expect("a missing argument is an error, not a NULL");
        assert!(
            matches!(unbound, sqlx::Error::Protocol(_) | sqlx::Error::Database(_)),
            "{unbound:?}"
        );
    }

    /// On SQLite the reader changes nothing, even on the idle writer's connection: a write
    /// sent to the reader by mistake is refused instead of bypassing the writers' queue.
    async fn the_reader_refuses_writes_on_sqlite(test_db: TestDatabase) {
        let db = open(&test_db).await;
        if db.backend() != Backend::Sqlite {
            return;
        }
        let refused = sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind("a")
            .bind(1_i64)
            .execute(db.reader())
            .await
            .expect_err("a write on a read connection is refused");
        assert!(matches!(refused, sqlx::Error::Database(_)), "{refused:?}");
        assert_eq!(count(&db).await, 0);
    }

    /// While a write holds the writer, reads go on, on a read connection, and see only what
    /// is committed; once it commits, the next read (on the writer's connection when
    /// SQLite's) sees it.
    async fn reads_go_on_beside_an_open_write(test_db: TestDatabase) {
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        insert(&mut tx, "a", 1).await.expect("the insert");
        assert_eq!(count(&db).await, 0, "the open write is not seen");
        tx.commit().await.expect("the commit");
        assert_eq!(count(&db).await, 1, "the committed write is seen");
    }

    crate::database_tests!(
        reads_see_commits_and_type_their_rows,
        the_reader_refuses_writes_on_sqlite,
        reads_go_on_beside_an_open_write,
    );

    /// Reads from many threads at once each get a connection of their own, and every one
    /// answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_each_get_a_connection() {
        let test_db = TestDatabase::sqlite();
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        insert(&mut tx, "a", 7).await.expect("the insert");
        tx.commit().await.expect("the commit");
        let reads = (0..64).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                sqlx::query("SELECT n FROM items WHERE id = $1")
                    .bind("a")
                    .fetch_one(db.reader())
                    .await
                    .map(|row| row.get::<i64, _>("n"))
            })
        });
        for read in futures_util::future::join_all(reads).await {
            assert_eq!(read.expect("the task").expect("the read"), 7);
        }
    }
}
