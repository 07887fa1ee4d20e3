//! The service's own database: SQLite (a file per service, the default) or PostgreSQL, chosen by
//! the URL, behind one sqlx `AnyPool` so every query is written once.
//!
//! Rules that keep one SQL code path valid on both: `$1` placeholders (except a long multi-row
//! `VALUES` list, whose placeholders come from `Backend::values_placeholders`); ids as TEXT (UUIDv7
//! strings); times as BIGINT milliseconds since the Unix epoch; no booleans (use nullable
//! timestamps); `INSERT ... ON CONFLICT ... DO NOTHING` for idempotent inserts.
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL` (a killed process loses nothing
//! committed). Transactions that write start with [`Db::begin_write`]. On SQLite that is
//! `BEGIN IMMEDIATE`, which takes the write lock up front instead of failing when two
//! read-then-write transactions race, on the process's one write connection, which writers
//! queue for on an async mutex. SQLite admits one writer at a time anyway; queueing in-process
//! hands the lock over at once, where SQLite's busy handler would sleep and retry (which put a
//! 400 ms tail on writes under load). Other processes sharing the file are waited for, without
//! blocking, for up to five seconds. The write connection runs its statements in place, on the
//! writing task, rather than on a thread of sqlx's: see [`writer`] for why; the writes that
//! finish in one turn of the runtime share one commit there. Short reads run in
//! place too, on read connections of their own ([`Db::reader`]); long scans use sqlx's pool.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{
    AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyQueryResult, install_default_drivers,
};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor};
use tokio::sync::{Mutex, Notify};

use crate::config::DatabaseConfig;

pub mod reader;
mod sqlite;
pub mod writer;

pub use reader::Reader;
pub use writer::WriteConn;
use writer::{Inner, SqliteTransaction, Writer};

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a URL selects, if any.
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The placeholders of a multi-row `VALUES` list: `rows` rows of `columns` values each,
    /// to be bound in order, row by row. PostgreSQL numbers them (`($1, $2), ($3, $4)`);
    /// SQLite gets anonymous ones (`(?, ?), (?, ?)`), which must then be the statement's only
    /// placeholders.
    ///
    /// SQLite keeps a statement's named parameters (`$1` is one) in a list it searches from the
    /// front, both when it parses the statement and each time sqlx asks a parameter's name to
    /// bind it, so a statement's cost grows with the square of its `$n` count: binding 200
    /// rows of spans took a quarter of the trace store's CPU (docs/decisions.md). Anonymous
    /// parameters are numbered as they come, and bound in order without a search.
    pub fn values_placeholders(self, rows: usize, columns: usize) -> String {
        let mut sql = String::with_capacity(rows * columns * 6);
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match self {
                    Self::Sqlite => sql.push('?'),
                    Self::Postgres => {
                        sql.push('$');
                        sql.push_str(&(row * columns + column + 1).to_string());
                    }
                }
            }
            sql.push(')');
        }
        sql
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("database.url must start with sqlite: or postgres://")]
    UnsupportedUrl,
    /// The SQLite file's folder could not be created.
    #[error("creating the database folder {path}")]
    CreateDir {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, creating the database or migrating failed.
    #[error("{context}")]
    Sqlx {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("running migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn sqlx_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Sqlx { context, source }
}

/// A pool of connections to the service's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// On SQLite, the process's write connection; waiting for it queues this process's
    /// writers (see the module docs).
    writer: Option<Arc<Mutex<Writer>>>,
    /// Where reads run: in place on SQLite, on the pool on PostgreSQL.
    reader: Arc<Reader>,
    backend: Backend,
}

impl Db {
    /// Opens the database at `url` (creating it if allowed and missing) and runs `migrator`.
    pub async fn connect(
        url: &SecretString,
        config: &DatabaseConfig,
        migrator: &Migrator,
    ) -> Result<Self, DbError> {
        Self::connect_with(url, config, &[migrator]).await
    }

    /// Opens the database at `url` and runs each of `migrators` in turn (the service's, then
    /// the chassis's event tables, each with its own history table).
    pub async fn connect_with(
        url: &SecretString,
        config: &DatabaseConfig,
        migrators: &[&Migrator],
    ) -> Result<Self, DbError> {
        install_default_drivers();
        let url = url.expose_secret();
        let backend = Backend::from_url(url).ok_or(DbError::UnsupportedUrl)?;
        // Replicas sharing a SQLite file must not set it up or migrate it at the same time;
        // on PostgreSQL the migrator takes an advisory lock itself.
        // On SQLite, the held setup lock and the file the writer opens.
        let (_setup_lock, sqlite_file) = match backend {
            Backend::Sqlite => {
                let (lock, file) = prepare_sqlite(url).await?;
                (Some(lock), Some(file))
            }
            Backend::Postgres if config.create_if_missing => {
                create_postgres(url).await?;
                (None, None)
            }
            Backend::Postgres => (None, None),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // A SQLite connection is a file open in this process: a ping before each use tells
            // nothing, and costs a round trip to its worker thread per query. A PostgreSQL
            // connection can have been closed by the server, so it is checked.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per connection: WAL makes NORMAL safe against process crashes.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(statement_logging(
                AnyConnectOptions::from_str(url).map_err(sqlx_error("parsing the database URL"))?,
            ))
            .await
            .map_err(sqlx_error("connecting to the database"))?;
        for migrator in migrators {
            migrator.run(&pool).await?;
        }
        let (writer, reader) = match sqlite_file {
            Some(file) => {
                let checkpoint = Arc::new(Notify::new());
                let writer = Writer::open(&file, Arc::clone(&checkpoint))
                    .map_err(sqlx_error("opening the SQLite write connection"))?;
                let writer = Arc::new(Mutex::new(writer));
                let reader = Reader::sqlite(&file, Arc::downgrade(&writer))
                    .map_err(sqlx_error("opening a SQLite read connection"))?;
                tokio::spawn(writer::checkpoints(
                    pool.clone(),
                    Arc::downgrade(&writer),
                    checkpoint,
                    writer::RESTART_FRAMES,
                ));
                (Some(writer), reader)
            }
            None => (None, Reader::pool(pool.clone())),
        };
        Ok(Self {
            pool,
            writer,
            reader: Arc::new(reader),
            backend,
        })
    }

    /// Where reads run, as an sqlx executor (`.fetch_optional(db.reader())`): on SQLite in
    /// place, on the asking task, which suits short reads (see [`reader`]); on PostgreSQL, the
    /// pool.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// sqlx's connection pool: for a long scan, which on SQLite runs on a connection's own
    /// thread instead of the asking task's, and for what needs the pool itself.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that will write. See the module docs for why this differs by engine.
    pub async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        let conn = match &self.writer {
            Some(writer) => {
                let turn = Arc::clone(writer).lock_owned().await;
                Inner::Sqlite(SqliteTransaction::begin(turn).await?)
            }
            None => Inner::Postgres(self.pool.begin().await?),
        };
        Ok(WriteTransaction {
            conn: WriteConn(conn),
            backend: self.backend,
        })
    }

    /// Runs one statement that writes as a transaction of its own, queued like any other
    /// ([`Db::begin_write`]). A write sent to [`Db::pool`] instead would, on SQLite, bypass the
    /// writers' queue and meet SQLite's busy handler.
    pub async fn execute(
        &self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        let mut tx = self.begin_write().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction that writes; use it as an sqlx executor (`&mut *tx`, a [`WriteConn`]), then
/// commit or roll back. Dropping it rolls back.
#[derive(Debug)]
pub struct WriteTransaction {
    conn: WriteConn,
    backend: Backend,
}

impl WriteTransaction {
    /// Which engine this transaction runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn.0 {
            Inner::Sqlite(tx) => tx.commit().await,
            Inner::Postgres(tx) => tx.commit().await,
        }
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.conn.0 {
            Inner::Sqlite(tx) => tx.rollback(),
            Inner::Postgres(tx) => tx.rollback().await,
        }
    }
}

impl Deref for WriteTransaction {
    type Target = WriteConn;

    fn deref(&self) -> &WriteConn {
        &self.conn
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut WriteConn {
        &mut self.conn
    }
}

/// sqlx's own statement log: off, and a statement slower than a second as a warning.
///
/// Each statement sqlx runs on PostgreSQL asks the subscriber whether its log line is wanted,
/// on the task that runs it, and may then not write it; with per-layer filters that leaves the
/// answer behind for the next span the task opens, which the trace layer then skips (a saga's
/// steps after its first write went unrecorded, and so did every call they made). With
/// statements off, only slow ones ask, and those are always written.
fn statement_logging(options: AnyConnectOptions) -> AnyConnectOptions {
    options
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1))
}

/// Creates the SQLite file and its folder if missing and switches it to WAL, which is a property
/// of the file and so needs setting only once, before the pool opens. Returns the held setup
/// lock (`<file>.lock`): keep it until the migrations have run; and the database file's path.
async fn prepare_sqlite(url: &str) -> Result<(std::fs::File, std::path::PathBuf), DbError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(sqlx_error("parsing the SQLite URL"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let filename = options.get_filename().to_path_buf();
    let folder_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| DbError::CreateDir { path, source }
    };
    if let Some(folder) = filename.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(folder_error(folder))?;
    }
    let lock_path = filename.with_extension("lock");
    let lock = tokio::task::spawn_blocking({
        let lock_path = lock_path.clone();
        move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        }
    })
    .await
    .map_err(|e| folder_error(&lock_path)(std::io::Error::other(e)))?
    .map_err(folder_error(&lock_path))?;
    let conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(sqlx_error("opening the SQLite database"))?;
    conn.close()
        .await
        .map_err(sqlx_error("opening the SQLite database"))?;
    Ok((lock, filename))
}

/// Creates the PostgreSQL database named in `url` if it does not exist. Two replicas may race
/// here: losing the race is fine, so a failure is rechecked before it is reported.
async fn create_postgres(url: &str) -> Result<(), DbError> {
    if Any::database_exists(url)
        .await
        .map_err(sqlx_error("checking the database exists"))?
    {
        return Ok(());
    }
    if let Err(error) = Any::create_database(url).await {
        let exists = Any::database_exists(url).await.unwrap_or(false);
        if !exists {
            return Err(DbError::Sqlx {
                context: "creating the database",
                source: error,
            });
        }
    }
    Ok(())
}

/// Whether `error` is a unique-constraint violation (a duplicate key), on either engine.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Whether `error` ended a transaction that would succeed if run again: PostgreSQL broke a
/// deadlock by aborting it (`40P01`), or could not serialize it (`40001`). PostgreSQL's
/// documentation asks applications to retry these; SQLite, with one writer, raises neither.
pub fn is_transient_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Milliseconds since the Unix epoch, the representation of times in every table.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Converts a stored time back to a UTC timestamp.
pub fn from_millis(millis: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use sqlx::Row;
    use sqlx::any::AnyQueryResult;

    use super::{Backend, Db, WriteTransaction};
    use crate::testing::TestDatabase;

    /// A database with one table, `items`, for the reader's and the writer's tests.
    pub(crate) async fn open_with_items(test_db: &TestDatabase) -> Db {
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

    /// Inserts item `id` with `n` in `tx`.
    pub(crate) async fn insert(
        tx: &mut WriteTransaction,
        id: &str,
        n: i64,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
            .bind(id)
            .bind(n)
            .execute(&mut **tx)
            .await
    }

    /// How many rows `items` holds, as the reader sees it.
    pub(crate) async fn count(db: &Db) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM items")
            .fetch_one(db.reader())
            .await
            .expect("counting")
            .get("n")
    }

    #[test]
    fn values_placeholders_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        assert_eq!(
            Backend::Postgres.values_placeholders(2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            Backend::Sqlite.values_placeholders(2, 3),
            "(?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(Backend::Postgres.values_placeholders(1, 1), "($1)");
        assert_eq!(Backend::Sqlite.values_placeholders(0, 4), "");
    }
}
