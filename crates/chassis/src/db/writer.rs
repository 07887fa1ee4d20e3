//! SQLite's writes, run in place: the process's one write connection, and the executor that
//! runs sqlx queries on it.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement over and
//! back, about 100–150 µs a statement here against some 15 µs of SQLite's own work. A writer
//! holds SQLite's one write lock for the whole of its transaction, so under load those
//! hand-offs, each waiting for a core, set the pace of every write in the process
//! (docs/decisions.md, 2026-11-28). Writes therefore run on a connection of the chassis's own,
//! in place, on the task that writes: a transaction of five statements is five calls into
//! SQLite, not ten trips between threads. Reads keep sqlx's pool.
//!
//! The statements are the same sqlx queries (`sqlx::query(..).bind(..).execute(&mut *tx)`):
//! [`WriteConn`] is an sqlx executor for the `Any` driver, so a service writes each query once
//! for both engines and cannot tell which runs it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture};
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql};
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Either, Execute, Executor, Transaction};
use sqlx_core::any::{AnyColumn, AnyValue, AnyValueKind};
use tokio::sync::{Notify, OwnedMutexGuard};

/// How long [`Writer::begin`] waits for another process that holds the file's write lock (as
/// sqlx's connections wait, through SQLite's busy timeout).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits between two requests for a checkpoint: about as many pages of WAL as SQLite's own
/// automatic checkpoint lets grow (1000), at a checkout's dozen pages a commit.
const COMMITS_PER_CHECKPOINT: u32 = 64;

/// The process's write connection to its SQLite file.
pub(crate) struct Writer {
    conn: Connection,
    /// Commits since a checkpoint was last asked for.
    commits: u32,
    /// Wakes the checkpointer ([`checkpoints`]).
    checkpoint: Arc<Notify>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Opens `path`, which exists and is in WAL mode already, with the settings sqlx gives its
    /// own connections: foreign keys enforced, `synchronous = NORMAL`.
    pub(crate) fn open(path: &Path, checkpoint: Arc<Notify>) -> Result<Self, sqlx::Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(to_sqlx)?;
        // No busy handler: it would sleep on the runtime's thread. `begin` waits instead.
        conn.busy_timeout(Duration::ZERO).map_err(to_sqlx)?;
        // No automatic checkpoint either: it would copy the WAL back into the database file,
        // and sync it, inside a commit, on the runtime's thread. [`checkpoints`] does it on
        // sqlx's pool instead.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(to_sqlx)?;
        // Every statement a service writes, each prepared once.
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Self {
            conn,
            commits: 0,
            checkpoint,
        })
    }

    /// `BEGIN IMMEDIATE`: takes the file's write lock now. Another process holding it (a
    /// replica sharing the file) is waited for asynchronously, up to [`BUSY_TIMEOUT`].
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(error)
                    if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(error) => return Err(to_sqlx(error)),
            }
        }
    }

    /// Runs one statement with `arguments` and returns its rows (at most `limit`), then its
    /// result, in the order sqlx's own drivers yield them.
    fn run(
        &self,
        sql: &str,
        arguments: Vec<AnyValueKind>,
        limit: usize,
    ) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
        let mut statement = self.conn.prepare_cached(sql).map_err(to_sqlx)?;
        // `$n` and `?n` take the n-th argument; a bare `?` takes the next one.
        let mut next = 0;
        for index in 1..=statement.parameter_count() {
            let position = match statement.parameter_name(index) {
                None => {
                    next += 1;
                    next
                }
                Some(name) => name
                    .strip_prefix(['$', '?'])
                    .and_then(|digits| digits.parse::<usize>().ok())
                    .ok_or_else(|| {
                        sqlx::Error::Protocol(format!("unsupported SQL parameter {name}"))
                    })?,
            };
            let value = position
                .checked_sub(1)
                .and_then(|i| arguments.get(i))
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "parameter {position} has no argument ({} given)",
                        arguments.len()
                    ))
                })?;
            statement
                .raw_bind_parameter(index, Bound(value))
                .map_err(to_sqlx)?;
        }
        let writes = !statement.readonly();
        let names: Arc<sqlx_core::HashMap<_, _>> = Arc::new(
            statement
                .column_names()
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name.to_owned().into(), i))
                .collect(),
        );
        let mut out = Vec::new();
        {
            let mut rows = statement.raw_query();
            while out.len() < limit {
                let Some(row) = rows.next().map_err(to_sqlx)? else {
                    break;
                };
                out.push(Either::Right(any_row(row, &names)?));
            }
        }
        out.push(Either::Left(AnyQueryResult {
            rows_affected: if writes { self.conn.changes() } else { 0 },
            last_insert_id: Some(self.conn.last_insert_rowid()),
        }));
        Ok(out)
    }
}

/// One row as the `Any` driver's, each value typed by what SQLite stored.
fn any_row(
    row: &rusqlite::Row<'_>,
    names: &Arc<sqlx_core::HashMap<sqlx_core::ext::ustr::UStr, usize>>,
) -> Result<AnyRow, sqlx::Error> {
    let count = row.as_ref().column_count();
    let mut columns = Vec::with_capacity(count);
    let mut values = Vec::with_capacity(count);
    for ordinal in 0..count {
        let kind = match row.get_ref(ordinal).map_err(to_sqlx)? {
            ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
            ValueRef::Integer(n) => AnyValueKind::BigInt(n),
            ValueRef::Real(x) => AnyValueKind::Double(x),
            ValueRef::Text(bytes) => AnyValueKind::Text(Arc::new(
                String::from_utf8(bytes.to_vec()).map_err(|e| sqlx::Error::ColumnDecode {
                    index: ordinal.to_string(),
                    source: Box::new(e),
                })?,
            )),
            ValueRef::Blob(bytes) => AnyValueKind::Blob(Arc::new(bytes.to_vec())),
        };
        let type_info = AnyTypeInfo {
            kind: match kind {
                AnyValueKind::Null(_) => AnyTypeInfoKind::Null,
                AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
                AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
                AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
                _ => AnyTypeInfoKind::Text,
            },
        };
        let name = row.as_ref().column_name(ordinal).map_err(to_sqlx)?;
        columns.push(AnyColumn {
            ordinal,
            name: name.to_owned().into(),
            type_info,
        });
        values.push(AnyValue { kind });
    }
    Ok(AnyRow {
        column_names: Arc::clone(names),
        columns,
        values,
    })
}

/// An argument of an sqlx query, bound as SQLite stores it (as sqlx's SQLite driver does:
/// booleans and every integer width as INTEGER).
struct Bound<'a>(&'a AnyValueKind);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            AnyValueKind::Null(_) => ValueRef::Null,
            AnyValueKind::Bool(b) => ValueRef::Integer(i64::from(*b)),
            AnyValueKind::SmallInt(n) => ValueRef::Integer(i64::from(*n)),
            AnyValueKind::Integer(n) => ValueRef::Integer(i64::from(*n)),
            AnyValueKind::BigInt(n) => ValueRef::Integer(*n),
            AnyValueKind::Real(x) => ValueRef::Real(f64::from(*x)),
            AnyValueKind::Double(x) => ValueRef::Real(*x),
            AnyValueKind::Text(s) => ValueRef::Text(s.as_bytes()),
            AnyValueKind::TextSlice(s) => ValueRef::Text(s.as_bytes()),
            AnyValueKind::Blob(b) => ValueRef::Blob(b),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite type for {other:?}").into(),
                ));
            }
        }))
    }
}

/// An error of SQLite's, as sqlx reports database errors: `is_unique_violation` and the
/// other kinds answer as they do for sqlx's own SQLite driver.
#[derive(Debug, thiserror::Error)]
#[error("(code: {code}) {message}")]
struct SqliteWriteError {
    /// SQLite's extended result code.
    code: i32,
    message: String,
}

impl DatabaseError for SqliteWriteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// rusqlite's error as sqlx's: SQLite's own errors as database errors, the rest as protocol
/// errors (a statement the writer cannot run).
fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteWriteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// What a write transaction runs its statements on: the SQLite writer, in place, or a
/// PostgreSQL transaction of sqlx's. Use it as an sqlx executor (`&mut *tx`).
#[derive(Debug)]
pub struct WriteConn(pub(super) Inner);

#[derive(Debug)]
pub(super) enum Inner {
    Sqlite(SqliteTransaction),
    Postgres(Transaction<'static, Any>),
}

/// An open `BEGIN IMMEDIATE` on the writer, rolled back if dropped unfinished.
#[derive(Debug)]
pub(super) struct SqliteTransaction {
    writer: OwnedMutexGuard<Writer>,
    open: bool,
}

impl SqliteTransaction {
    /// Takes the writer's turn (already held) and begins.
    pub(super) async fn begin(mut writer: OwnedMutexGuard<Writer>) -> Result<Self, sqlx::Error> {
        writer.begin().await?;
        Ok(Self { writer, open: true })
    }

    /// Commits; on failure the transaction is rolled back.
    pub(super) fn commit(mut self) -> Result<(), sqlx::Error> {
        self.writer.conn.execute_batch("COMMIT").map_err(to_sqlx)?;
        self.open = false;
        let writer = &mut *self.writer;
        writer.commits += 1;
        if writer.commits >= COMMITS_PER_CHECKPOINT {
            writer.commits = 0;
            writer.checkpoint.notify_one();
        }
        Ok(())
    }

    /// Rolls back.
    pub(super) fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.open = false;
        self.writer.conn.execute_batch("ROLLBACK").map_err(to_sqlx)
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        // A transaction abandoned half-way (an error, a cancelled request) leaves nothing
        // behind. SQLite may have rolled back already (some errors end the transaction).
        if self.open
            && !self.writer.conn.is_autocommit()
            && let Err(error) = self.writer.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back an abandoned write transaction failed");
        }
    }
}

impl<'c> Executor<'c> for &'c mut WriteConn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match &mut self.0 {
            Inner::Postgres(tx) => (&mut **tx).fetch_many(query),
            Inner::Sqlite(tx) => match run(&tx.writer, query, usize::MAX) {
                Ok(steps) => stream::iter(steps.into_iter().map(Ok)).boxed(),
                Err(error) => stream::once(future::ready(Err(error))).boxed(),
            },
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
        match &mut self.0 {
            Inner::Postgres(tx) => (&mut **tx).fetch_optional(query),
            Inner::Sqlite(tx) => {
                let row = run(&tx.writer, query, 1).map(|steps| {
                    steps.into_iter().find_map(|step| match step {
                        Either::Right(row) => Some(row),
                        Either::Left(_) => None,
                    })
                });
                Box::pin(future::ready(row))
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
        match &mut self.0 {
            Inner::Postgres(tx) => (&mut **tx).prepare_with(sql, parameters),
            Inner::Sqlite(_) => Box::pin(future::ready(Err(sqlx::Error::Protocol(
                "a SQLite write transaction runs queries; it does not hand out prepared statements"
                    .to_owned(),
            )))),
        }
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match &mut self.0 {
            Inner::Postgres(tx) => (&mut **tx).describe(sql),
            Inner::Sqlite(_) => Box::pin(future::ready(Err(sqlx::Error::Protocol(
                "a SQLite write transaction does not describe queries".to_owned(),
            )))),
        }
    }
}

/// Checkpoints the WAL of the database behind `pool` each time the writer asks, until the
/// pool closes: `PASSIVE`, so the writer and the readers carry on meanwhile, on one of sqlx's
/// connections, so the copying and syncing happen on its thread, not the runtime's.
pub(super) async fn checkpoints(pool: sqlx::AnyPool, asked: Arc<Notify>) {
    loop {
        tokio::select! {
            () = asked.notified() => {}
            () = pool.close_event() => return,
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %crate::error::ErrorChain(&error), "checkpointing the WAL failed; trying again after the next commits");
        }
    }
}

/// Runs `query` on the writer.
fn run<'q, E: Execute<'q, Any>>(
    writer: &Writer,
    mut query: E,
    limit: usize,
) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
    let arguments = query
        .take_arguments()
        .map_err(sqlx::Error::Encode)?
        .map(|arguments| arguments.values.0)
        .unwrap_or_default();
    writer.run(query.sql().as_str(), arguments, limit)
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::db::{Db, is_unique_violation};
    use crate::testing::TestDatabase;

    async fn open(test_db: &TestDatabase) -> Db {
        let db = Db::connect_with(&test_db.url(), &Default::default(), &[])
            .await
            .expect("the database opens");
        sqlx::query(
            "CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, note TEXT, x DOUBLE PRECISION)",
        )
        .execute(db.pool())
        .await
        .expect("the table is created");
        db
    }

    async fn count(db: &Db) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM items")
            .fetch_one(db.pool())
            .await
            .expect("counting")
            .get("n")
    }

    /// Placeholders numbered out of order take their arguments by number, rows come back typed
    /// as sqlx's own drivers give them, and a commit is what the pool's readers then see.
    async fn writes_bind_by_number_and_read_typed_rows(test_db: TestDatabase) {
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        let inserted = sqlx::query("INSERT INTO items (n, id, note, x) VALUES ($2, $1, $3, $4)")
            .bind("a")
            .bind(7_i64)
            .bind(Option::<String>::None)
            .bind(1.5_f64)
            .execute(&mut *tx)
            .await
            .expect("the insert runs");
        assert_eq!(inserted.rows_affected(), 1);
        let returned: i64 =
            sqlx::query("INSERT INTO items (id, n, note) VALUES ($1, $2, $3) RETURNING n")
                .bind("b")
                .bind(-3_i64)
                .bind("hello")
                .fetch_one(&mut *tx)
                .await
                .expect("the insert returns its row")
                .get("n");
        assert_eq!(returned, -3);
        let row = sqlx::query("SELECT id, n, note, x FROM items WHERE id = $1")
            .bind("a")
            .fetch_one(&mut *tx)
            .await
            .expect("the row reads back inside the transaction");
        assert_eq!(row.get::<String, _>("id"), "a");
        assert_eq!(row.get::<i64, _>("n"), 7);
        assert_eq!(row.get::<Option<String>, _>("note"), None);
        assert!((row.get::<f64, _>("x") - 1.5).abs() < f64::EPSILON);
        let missing = sqlx::query("SELECT id FROM items WHERE id = $1")
            .bind("nobody")
            .fetch_optional(&mut *tx)
            .await
            .expect("an empty select runs");
        assert!(missing.is_none());
        let updated = sqlx::query("UPDATE items SET n = n + $1")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .expect("the update runs");
        assert_eq!(updated.rows_affected(), 2);
        assert_eq!(count(&db).await, 0, "nothing shows before the commit");
        tx.commit().await.expect("the commit");
        assert_eq!(count(&db).await, 2);
        let notes: Vec<Option<String>> = sqlx::query("SELECT note FROM items ORDER BY id")
            .fetch_all(db.pool())
            .await
            .expect("reading")
            .iter()
            .map(|row| row.get("note"))
            .collect();
        assert_eq!(notes, [None, Some("hello".to_owned())]);
    }

    /// A duplicate key is the unique violation callers test for; a transaction dropped
    /// unfinished, or rolled back, leaves nothing, and the next writer goes ahead.
    async fn failures_and_abandoned_transactions_leave_nothing(test_db: TestDatabase) {
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind("a")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .expect("the first insert");
        let duplicate = sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind("a")
            .bind(2_i64)
            .execute(&mut *tx)
            .await
            .expect_err("a second row with the same key is refused");
        assert!(is_unique_violation(&duplicate), "{duplicate:?}");
        tx.rollback().await.expect("the rollback");
        assert_eq!(count(&db).await, 0);

        let mut tx = db.begin_write().await.expect("a write transaction");
        sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind("b")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .expect("the insert");
        drop(tx);
        assert_eq!(count(&db).await, 0, "a dropped transaction is rolled back");

        let bad = sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind("c")
            .execute(&mut *db.begin_write().await.expect("a write transaction"))
            .await
            .expect_err("a missing argument is an error, not a NULL");
        assert!(
            matches!(bad, sqlx::Error::Protocol(_) | sqlx::Error::Database(_)),
            "{bad:?}"
        );

        let mut tx = db.begin_write().await.expect("the writer is free again");
        let sql = format!(
            "INSERT INTO items (id, n) VALUES {}",
            tx.backend().values_placeholders(3, 2)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, n) in [("x", 1_i64), ("y", 2), ("z", 3)] {
            insert = insert.bind(id).bind(n);
        }
        insert.execute(&mut *tx).await.expect("a multi-row insert");
        tx.commit().await.expect("the commit");
        let total: i64 = sqlx::query("SELECT CAST(SUM(n) AS BIGINT) AS total FROM items")
            .fetch_one(db.pool())
            .await
            .expect("summing")
            .get("total");
        assert_eq!(total, 6);
    }

    crate::database_tests!(
        writes_bind_by_number_and_read_typed_rows,
        failures_and_abandoned_transactions_leave_nothing,
    );
}
