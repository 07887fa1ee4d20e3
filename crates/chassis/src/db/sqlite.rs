//! sqlx queries run in place on a SQLite connection of the chassis's own (rusqlite, on the same
//! SQLite library as sqlx's driver): what [`super::writer`] and [`super::reader`] share.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement over and
//! back, about 100–150 µs a statement here against some 15 µs of SQLite's own work
//! (docs/decisions.md, 2026-11-28). Run in place, on the task that asks, a statement is one call
//! into SQLite. A query is still an sqlx query (`sqlx::query(..).bind(..)`): it is bound the way
//! sqlx binds it, and its rows and results come back as the `Any` driver's, so a service writes
//! each query once for both engines and cannot tell which runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture};
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, OpenFlags, ToSql};
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Either, Execute};
use sqlx_core::any::{AnyColumn, AnyValue, AnyValueKind};

/// How long a statement waits for another connection that holds a lock it needs (as sqlx's
/// connections wait, through SQLite's busy timeout). The waiting is asynchronous: the
/// connections have no busy handler, which would sleep on the runtime's thread.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the SQLite file at `path` (which exists, in WAL mode) for running statements in
/// place, then applies `pragmas`. The connection has no busy handler, which would sleep on the
/// runtime's thread ([`until_not_busy`] waits instead), and prepares each statement a service
/// runs once.
pub(super) fn open(path: &Path, pragmas: &str) -> Result<Connection, sqlx::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(to_sqlx)?;
    conn.busy_timeout(Duration::ZERO).map_err(to_sqlx)?;
    // Plans that do not look at bound values. Otherwise SQLite plans some statements for the
    // values bound the first time (a `LIMIT $2`, say) and, since another binding could want
    // another plan, parses and plans them again on every run: the cache of prepared
    // statements was then no cache at all for them.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(to_sqlx)?;
    conn.execute_batch(pragmas).map_err(to_sqlx)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// What a statement gives back, in the order sqlx's own drivers yield it: its rows, then its
/// result.
pub(super) type Steps = Vec<Either<AnyQueryResult, AnyRow>>;

/// A query's SQL and arguments, taken out of the sqlx query.
pub(super) struct Statement {
    sql: sqlx::SqlStr,
    arguments: Vec<AnyValueKind>,
}

impl Statement {
    pub(super) fn take<'q, E: Execute<'q, Any>>(mut query: E) -> Result<Self, sqlx::Error> {
        let arguments = query
            .take_arguments()
            .map_err(sqlx::Error::Encode)?
            .map(|arguments| arguments.values.0)
            .unwrap_or_default();
        Ok(Self {
            sql: query.sql(),
            arguments,
        })
    }

    /// Runs the statement on `conn` and returns its rows (at most `limit`), then its result.
    pub(super) fn run(&self, conn: &Connection, limit: usize) -> Result<Steps, sqlx::Error> {
        let statement = self.prepare(conn)?;
        steps(statement, conn, limit)
    }

    /// Whether the statement is a query (`SELECT`, or `WITH` before one): not a transaction's
    /// control, nor a `PRAGMA` that changes a connection, which SQLite also calls read-only.
    pub(super) fn is_query(&self) -> bool {
        let keyword = self
            .sql
            .as_str()
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or_default();
        keyword.eq_ignore_ascii_case("select") || keyword.eq_ignore_ascii_case("with")
    }

    /// The statement prepared on `conn` (from its cache) with its arguments bound.
    pub(super) fn prepare<'c>(
        &self,
        conn: &'c Connection,
    ) -> Result<CachedStatement<'c>, sqlx::Error> {
        let mut statement = conn.prepare_cached(self.sql.as_str()).map_err(to_sqlx)?;
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
                .and_then(|i| self.arguments.get(i))
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "parameter {position} has no argument ({} given)",
                        self.arguments.len()
                    ))
                })?;
            statement
                .raw_bind_parameter(index, Bound(value))
                .map_err(to_sqlx)?;
        }
        Ok(statement)
    }
}

/// Runs a prepared `statement` of `conn` and returns its rows (at most `limit`), then its
/// result.
pub(super) fn steps(
    mut statement: CachedStatement<'_>,
    conn: &Connection,
    limit: usize,
) -> Result<Steps, sqlx::Error> {
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
        rows_affected: if writes { conn.changes() } else { 0 },
        last_insert_id: Some(conn.last_insert_rowid()),
    }));
    Ok(out)
}

/// Runs `attempt` until it is not refused for a lock another connection holds, sleeping
/// between tries (asynchronously), for up to [`BUSY_TIMEOUT`].
pub(super) async fn until_not_busy<T>(
    mut attempt: impl FnMut() -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match attempt() {
            Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// Whether SQLite refused for a lock another connection holds.
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<SqliteError>())
        .is_some_and(|e| e.code & 0xff == rusqlite::ffi::SQLITE_BUSY)
}

/// The steps of a statement as the stream `Executor::fetch_many` returns.
pub(super) fn step_stream<'e>(
    steps: Result<Steps, sqlx::Error>,
) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
    match steps {
        Ok(steps) => stream::iter(steps.into_iter().map(Ok)).boxed(),
        Err(error) => stream::once(future::ready(Err(error))).boxed(),
    }
}

/// The first row of a statement's steps, as `Executor::fetch_optional` returns it.
pub(super) fn first_row(steps: Steps) -> Option<AnyRow> {
    steps.into_iter().find_map(|step| match step {
        Either::Right(row) => Some(row),
        Either::Left(_) => None,
    })
}

/// The error `prepare_with` and `describe` give: these connections run queries, they do not
/// hand out prepared statements or describe them.
pub(super) fn unsupported<'e, T: Send + 'e>(what: &str) -> BoxFuture<'e, Result<T, sqlx::Error>> {
    Box::pin(future::ready(Err(sqlx::Error::Protocol(format!(
        "a SQLite connection run in place does not {what}"
    )))))
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
struct SqliteError {
    /// SQLite's extended result code.
    code: i32,
    message: String,
}

impl DatabaseError for SqliteError {
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
/// `error` again, for each of several writes it concerns (the writes of one commit).
pub(super) fn copy(error: &sqlx::Error) -> sqlx::Error {
    match error
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<SqliteError>())
    {
        Some(e) => sqlx::Error::Database(Box::new(SqliteError {
            code: e.code,
            message: e.message.clone(),
        })),
        None => sqlx::Error::Protocol(error.to_string()),
    }
}

pub(super) fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;
    use sqlx::Any;

    use super::*;

    /// Only a `SELECT` (or a `WITH` before one) counts as a query; a transaction's control
    /// and a `PRAGMA`, which SQLite calls read-only, do not.
    #[test]
    fn queries_are_selects() {
        let is_query = |sql: &'static str| {
            Statement::take(sqlx::query::<Any>(sql))
                .expect("taken")
                .is_query()
        };
        for sql in [
            "SELECT 1",
            "  select n FROM t",
            "\nWITH k AS (SELECT 1) SELECT * FROM k",
            "select(1)",
        ] {
            assert!(is_query(sql), "{sql}");
        }
        for sql in [
            "BEGIN",
            "PRAGMA query_only = ON",
            "INSERT INTO t VALUES (1)",
            "SAVEPOINT s",
            "selected",
            "",
        ] {
            assert!(!is_query(sql), "{sql}");
        }
    }

    /// A statement whose plan could depend on what is bound (a `LIMIT`, a `LIKE` pattern) is
    /// still parsed once: run again with other values, it is not prepared again.
    #[test]
    fn a_statement_is_prepared_once_whatever_is_bound() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("plans.db");
        Connection::open(&path)
            .and_then(|setup| {
                setup.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     CREATE TABLE t (n INTEGER PRIMARY KEY, word TEXT NOT NULL);
                     CREATE INDEX t_word ON t (word);
                     WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 20)
                     INSERT INTO t SELECT n, 'w' || n FROM k;",
                )
            })
            .expect("a database with twenty rows");
        let conn = open(&path, "PRAGMA query_only = ON;").expect("opens");
        let sql = "SELECT n FROM t WHERE n > $1 AND word LIKE $2 ORDER BY n LIMIT $3";
        for (after, pattern, limit, rows) in [
            (0_i64, "w%", 1_i64, 1),
            (5, "w1%", 50, 10),
            (15, "w%", 3, 3),
        ] {
            let query = sqlx::query::<Any>(sql)
                .bind(after)
                .bind(pattern)
                .bind(limit);
            let steps = Statement::take(query)
                .expect("the arguments")
                .run(&conn, usize::MAX)
                .expect("the statement runs");
            assert_eq!(steps.len() - 1, rows, "rows after {after} like {pattern}");
        }
        let cached = conn.prepare_cached(sql).expect("the cached statement");
        assert_eq!(cached.get_status(StatementStatus::RePrepare), 0);
    }
}
