//! SQLite's writes, run in place: the process's one write connection, and the executor that
//! runs sqlx queries on it.
//!
//! A writer holds SQLite's one write lock for the whole of its transaction, so when each
//! statement was handed to sqlx's SQLite thread and back, those hand-offs, each waiting for a
//! core under load, set the pace of every write in the process (docs/decisions.md,
//! 2026-11-28). Writes therefore run on a connection of the chassis's own, in place, on the
//! task that writes (`chassis::db::sqlite`): a transaction of five statements is five calls into
//! SQLite, not ten trips between threads.
//!
//! The statements are the same sqlx queries (`sqlx::query(..).bind(..).execute(&mut *tx)`):
//! [`WriteConn`] is an sqlx executor for the `Any` driver.
//!
//! **Group commit.** Each SQLite commit appends every page it changed to the WAL, and the
//! writes of one service change the same few pages (the ends of its tables and indexes), so
//! two commits write those pages twice. The writes that finish in one turn of the runtime
//! therefore commit together: a write runs behind a savepoint of its own inside a
//! transaction the writer keeps open; its commit releases the savepoint and waits; a task
//! that runs once the turn's other ready tasks have had theirs (`flush_soon`) commits the
//! transaction and tells every write in it. A write still commits or rolls back alone (its
//! savepoint), and its caller hears of its commit only once it is durable, so nobody sees a
//! write that could still be lost; if the shared commit fails, every write in it is told so.
//! Reads never run on the writer's connection while a group is open ([`super::reader`]).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use rusqlite::Connection;
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyTypeInfo};
use sqlx::{Either, Execute, Executor, Row, Transaction};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

use super::sqlite::{self, Statement, first_row, step_stream, to_sqlx, unsupported};

/// The savepoint each write runs behind, inside the group's transaction.
const SAVEPOINT: &str = "SAVEPOINT bazaar_write";
const RELEASE: &str = "RELEASE bazaar_write";
const ROLLBACK_TO: &str = "ROLLBACK TO bazaar_write; RELEASE bazaar_write";

/// Commits between two requests for a checkpoint: about 2,800 frames of WAL (11 MB) at the
/// eight to eleven pages each of orders' commits writes under checkout load. A checkpoint
/// copies each page it finds once, however many commits changed it, so the hot pages (the
/// sagas, the outbox, the ends of their indexes) are copied once per checkpoint: the fewer
/// checkpoints, the fewer copies.
const COMMITS_PER_CHECKPOINT: u32 = 256;

/// Frames the WAL may hold (64 MiB of 4 KiB pages) before a checkpoint holds the writes back
/// to start it over.
///
/// SQLite starts the WAL over, writing again from its first frame, only when a write begins
/// with every frame already copied into the database file. While writes go on, a checkpoint
/// beside the writer never leaves it so: even when it copies every frame it found, a write
/// is open meanwhile and commits more. Without a pause in the writes the WAL would grow for
/// ever (by about 200 KB per checkout in orders: 540 MB in 25 s at 100 checkouts a second).
/// So once the WAL holds this many frames, the checkpoint takes the writer's turn for a
/// second pass, which copies the few frames committed during its first; the next write then
/// starts the WAL over. The writes wait for that second pass only, once per this many
/// frames.
pub(super) const RESTART_FRAMES: i64 = 16_384;

/// The process's write connection to its SQLite file.
pub(crate) struct Writer {
    conn: Connection,
    /// Commits since a checkpoint was last asked for.
    commits: u32,
    /// Wakes the checkpointer ([`checkpoints`]).
    checkpoint: Arc<Notify>,
    /// The transaction open for the writes of this turn, if any.
    group: Option<Group>,
}

/// What a shared commit tells the writes in it: nothing yet, then its outcome.
type Outcome = Option<Result<(), Arc<sqlx::Error>>>;

/// The writes sharing the open transaction.
struct Group {
    /// Writes released into the transaction, waiting for its commit.
    released: usize,
    /// Told the outcome of the commit.
    outcome: watch::Sender<Outcome>,
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
        // No automatic checkpoint: it would copy the WAL back into the database file, and sync
        // it, inside a commit, on the runtime's thread. [`checkpoints`] does it on sqlx's pool
        // instead. (`begin` waits for other processes' write locks.)
        let conn = sqlite::open(
            path,
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;",
        )?;
        Ok(Self {
            conn,
            commits: 0,
            checkpoint,
            group: None,
        })
    }

    /// The connection, for a read while no write holds it and no transaction is open
    /// (`super::reader`): only then does it see what is committed and nothing else.
    pub(super) fn idle_conn(&self) -> Option<&Connection> {
        self.conn.is_autocommit().then_some(&self.conn)
    }

    /// Starts a write behind its savepoint: in the open transaction, or in a new one (`BEGIN
    /// IMMEDIATE`, which takes the file's write lock now; another process holding it, a
    /// replica sharing the file, is waited for asynchronously, up to
    /// [`sqlite::BUSY_TIMEOUT`]).
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        if self.group.is_some() && self.conn.is_autocommit() {
            // An error SQLite answers by rolling back the whole transaction ended it.
            self.end_group(Err(lost()));
        }
        if self.group.is_none() {
            // Borrowed mutably, so the future stays `Send` (a connection is not `Sync`).
            let conn = &mut self.conn;
            sqlite::until_not_busy(move || conn.execute_batch("BEGIN IMMEDIATE").map_err(to_sqlx))
                .await?;
            self.group = Some(Group {
                released: 0,
                outcome: watch::Sender::new(None),
            });
        }
        if let Err(error) = self.conn.execute_batch(SAVEPOINT) {
            self.end_if_unreleased();
            return Err(to_sqlx(error));
        }
        Ok(())
    }

    /// Ends the current write, keeping what it wrote for the group's commit: the receiver
    /// then tells the commit's outcome, and `true` says this is the group's first release
    /// (whose writer is to ask for the commit).
    fn release(&mut self) -> Result<(watch::Receiver<Outcome>, bool), sqlx::Error> {
        if let Err(error) = self.conn.execute_batch(RELEASE) {
            let error = to_sqlx(error);
            self.undo();
            return Err(error);
        }
        match &mut self.group {
            Some(group) => {
                group.released += 1;
                Ok((group.outcome.subscribe(), group.released == 1))
            }
            None => Err(sqlite::copy(&lost())),
        }
    }

    /// Undoes the current write, leaving the group's other writes as they are.
    fn undo(&mut self) {
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back already (some errors do).
            self.end_group(Err(lost()));
            return;
        }
        if let Err(error) = self.conn.execute_batch(ROLLBACK_TO) {
            tracing::error!(%error, "rolling back a write failed; rolling back the writes grouped with it");
            self.end_group(Err(Arc::new(to_sqlx(error))));
            return;
        }
        self.end_if_unreleased();
    }

    /// Rolls the open transaction back if no write waits for its commit.
    fn end_if_unreleased(&mut self) {
        if self.group.as_ref().is_some_and(|g| g.released == 0) {
            self.end_group(Err(lost()));
        }
    }

    /// Commits the open transaction, if any, and tells every write in it the outcome.
    fn flush(&mut self) {
        if self.group.is_none() {
            return;
        }
        if self.conn.is_autocommit() {
            self.end_group(Err(lost()));
            return;
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.commits += 1;
                if self.commits >= COMMITS_PER_CHECKPOINT {
                    self.commits = 0;
                    self.checkpoint.notify_one();
                }
                self.end_group(Ok(()));
            }
            Err(error) => self.end_group(Err(Arc::new(to_sqlx(error)))),
        }
    }

    /// Closes the group with `outcome`, rolling its transaction back unless it committed.
    fn end_group(&mut self, outcome: Result<(), Arc<sqlx::Error>>) {
        if outcome.is_err()
            && !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back a write transaction failed");
        }
        if let Some(group) = self.group.take() {
            group.outcome.send_replace(Some(outcome));
        }
    }
}

/// Why a write's commit did not happen when SQLite gave no error of its own.
fn lost() -> Arc<sqlx::Error> {
    Arc::new(sqlx::Error::Protocol(
        "the transaction was rolled back before it committed (a write grouped with this one failed)".to_owned(),
    ))
}

/// Commits the writer's open transaction once the other tasks ready in this turn of the
/// runtime have run: those that write join it first.
async fn flush_soon(writer: Arc<Mutex<Writer>>) {
    tokio::task::yield_now().await;
    writer.lock().await.flush();
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

    /// Commits, with the other writes of this turn: returns once the commit is made. On
    /// failure nothing of this write is kept.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        // Released or undone: either way no longer this write's to roll back.
        self.open = false;
        let (mut outcome, first) = self.writer.release()?;
        if first {
            tokio::spawn(flush_soon(Arc::clone(OwnedMutexGuard::mutex(&self.writer))));
        }
        // The next write may go ahead, into the same transaction.
        drop(self);
        match outcome.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(error))) => Err(sqlite::copy(error)),
            Ok(None) | Err(_) => Err(sqlite::copy(&lost())),
        }
    }

    /// Rolls back this write.
    pub(super) fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.open = false;
        self.writer.undo();
        Ok(())
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        // A transaction abandoned half-way (an error, a cancelled request) leaves nothing
        // behind.
        if self.open {
            self.writer.undo();
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
            Inner::Sqlite(tx) => {
                step_stream(Statement::take(query).and_then(|s| s.run(&tx.writer.conn, usize::MAX)))
            }
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
                let row = Statement::take(query).and_then(|s| s.run(&tx.writer.conn, 1));
                Box::pin(std::future::ready(row.map(first_row)))
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
            Inner::Sqlite(_) => unsupported("hand out prepared statements"),
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
            Inner::Sqlite(_) => unsupported("describe queries"),
        }
    }
}

/// Checkpoints the WAL of the database behind `pool` each time the writer asks, until the
/// pool closes or the writer is gone: `PASSIVE`, so the writer and the readers carry on
/// meanwhile, on one of sqlx's connections, so the copying and syncing happen on its thread,
/// not the runtime's. A WAL of `restart_frames` or more is started over ([`RESTART_FRAMES`]).
pub(super) async fn checkpoints(
    pool: sqlx::AnyPool,
    writer: Weak<Mutex<Writer>>,
    asked: Arc<Notify>,
    restart_frames: i64,
) {
    loop {
        tokio::select! {
            () = asked.notified() => {}
            () = pool.close_event() => return,
        }
        if writer.strong_count() == 0 {
            return;
        }
        if let Err(error) = checkpoint(&pool, &writer, restart_frames).await {
            tracing::warn!(error = %crate::error::ErrorChain(&error), "checkpointing the WAL failed; trying again after the next commits");
        }
    }
}

/// One checkpoint: a pass beside the writer; then, if the WAL holds `restart_frames` or
/// more, a second pass with the writer's turn held, so that the next write starts the WAL
/// over. (Even a first pass that copied every frame it found leaves the write that was open
/// meanwhile to commit more.) Both passes run on one connection, taken before the writer's
/// turn, so the writes never wait for the pool.
async fn checkpoint(
    pool: &sqlx::AnyPool,
    writer: &Weak<Mutex<Writer>>,
    restart_frames: i64,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let (frames, _) = passive_checkpoint(&mut conn).await?;
    if frames < restart_frames {
        return Ok(());
    }
    let Some(writer) = writer.upgrade() else {
        return Ok(());
    };
    let waited = Instant::now();
    let mut turn = writer.lock().await;
    // The writes waiting in an open transaction commit first: the next write then begins a
    // transaction after the copy, which is what starts the WAL over.
    turn.flush();
    let held = Instant::now();
    let (frames, copied) = passive_checkpoint(&mut conn).await?;
    tracing::debug!(
        frames,
        copied,
        waited_us = held.duration_since(waited).as_micros(),
        held_us = held.elapsed().as_micros(),
        "copied the WAL whole with the writes held: the next write starts it over"
    );
    Ok(())
}

/// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: the frames in the WAL, and how many of them
/// are now copied into the database file.
async fn passive_checkpoint(
    conn: &mut sqlx::pool::PoolConnection<Any>,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut **conn)
        .await?;
    Ok((row.try_get(1)?, row.try_get(2)?))
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use std::sync::Arc;

    use secrecy::ExposeSecret;
    use tokio::sync::{Mutex, Notify};
    use tokio::task::JoinHandle;

    use super::{Inner, SqliteTransaction, WriteConn, Writer, checkpoints};
    use crate::db::tests::{count, insert, open_with_items as open};
    use crate::db::{Backend, Db, WriteTransaction, is_unique_violation};
    use crate::testing::TestDatabase;

    /// Item `id`'s `n`, as the reader sees it.
    async fn n_of(db: &Db, id: &str) -> i64 {
        sqlx::query("SELECT n FROM items WHERE id = $1")
            .bind(id)
            .fetch_one(db.reader())
            .await
            .expect("reading")
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
        insert(&mut tx, "a", 1).await.expect("the first insert");
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

    /// `Db::execute` is a transaction of its own: it waits for the open writer, and a statement
    /// that fails leaves nothing.
    async fn a_single_write_waits_its_turn_and_commits_alone(test_db: TestDatabase) {
        let db = open(&test_db).await;
        let mut tx = db.begin_write().await.expect("a write transaction");
        insert(&mut tx, "a", 1).await.expect("the first insert");
        let racing = tokio::spawn({
            let db = db.clone();
            async move {
                db.execute(
                    sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
                        .bind("a")
                        .bind(2_i64),
                )
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !racing.is_finished(),
            "the single write waits for the open one"
        );
        tx.commit().await.expect("the commit");
        let refused = racing
            .await
            .expect("the racing task")
            .expect_err("the same key again is refused");
        assert!(is_unique_violation(&refused), "{refused:?}");
        let n = n_of(&db, "a").await;
        assert_eq!(n, 1, "the refused write changed nothing");

        let done = db
            .execute(
                sqlx::query("UPDATE items SET n = n + $1 WHERE id = $2")
                    .bind(5_i64)
                    .bind("a"),
            )
            .await
            .expect("a single update");
        assert_eq!(done.rows_affected(), 1);
        assert_eq!(count(&db).await, 1);
        let n = n_of(&db, "a").await;
        assert_eq!(n, 6, "the update is committed");
    }

    /// Under writes that never pause, the WAL still starts over: a checkpoint that finds it
    /// past its bound holds the writes back while it copies the rest, so the file stays small
    /// however much is written.
    #[tokio::test]
    async fn the_wal_starts_over_while_writes_go_on() {
        const RESTART_FRAMES: i64 = 64;
        let test_db = TestDatabase::sqlite();
        let db = open(&test_db).await;
        let url = test_db.url();
        let file = std::path::PathBuf::from(
            url.expose_secret()
                .strip_prefix("sqlite://")
                .expect("a SQLite URL"),
        );
        // A writer of the test's own, with a checkpointer that starts the WAL over past
        // RESTART_FRAMES frames (the database's own would wait for 16,384).
        let asked = Arc::new(Notify::new());
        let writer = Arc::new(Mutex::new(
            Writer::open(&file, Arc::clone(&asked)).expect("the write connection"),
        ));
        tokio::spawn(checkpoints(
            db.pool().clone(),
            Arc::downgrade(&writer),
            Arc::clone(&asked),
            RESTART_FRAMES,
        ));
        let note = "n".repeat(1000);
        let commits = 3000;
        // Every 16th write asks for a checkpoint and stays open while it runs, as a busy
        // writer's next write would be: the checkpoint's first pass cannot leave the WAL
        // ready to start over, so only the second, with the writes held, does.
        for i in 0..commits {
            let turn = Arc::clone(&writer).lock_owned().await;
            let mut tx = WriteTransaction {
                conn: WriteConn(Inner::Sqlite(
                    SqliteTransaction::begin(turn).await.expect("begin"),
                )),
                backend: Backend::Sqlite,
            };
            sqlx::query("INSERT INTO items (id, n, note) VALUES ($1, $2, $3)")
                .bind(format!("item-{i:05}"))
                .bind(i64::from(i))
                .bind(note.as_str())
                .execute(&mut *tx)
                .await
                .expect("the insert");
            if i % 16 == 0 {
                asked.notify_one();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            tx.commit().await.expect("the commit");
        }
        assert_eq!(count(&db).await, i64::from(commits));
        // The file keeps the largest size the WAL reached. Without starting over it holds
        // every commit's pages, about 34 MB here; starting over past 64 frames, a few of
        // RESTART_FRAMES' worth.
        let wal = std::fs::metadata(file.with_extension("db-wal"))
            .expect("the WAL file")
            .len();
        assert!(
            wal < 6 * 1024 * 1024,
            "the WAL grew to {wal} bytes: it did not start over"
        );
    }

    /// The commits `db`'s writer has made (since its last checkpoint: none in these tests).
    async fn commits(db: &Db) -> u32 {
        db.writer
            .as_ref()
            .expect("a SQLite writer")
            .lock()
            .await
            .commits
    }

    /// The ids in `items`, as the reader sees them.
    async fn ids(db: &Db) -> Vec<String> {
        sqlx::query("SELECT id FROM items ORDER BY id")
            .fetch_all(db.reader())
            .await
            .expect("reading")
            .iter()
            .map(|row| row.get("id"))
            .collect()
    }

    /// A write as a task: inserts `id`, then commits, rolls back, or is dropped unfinished.
    fn write(db: &Db, id: &'static str, end: &'static str) -> JoinHandle<Result<(), String>> {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin_write().await.map_err(|e| e.to_string())?;
            insert(&mut tx, id, 1).await.map_err(|e| e.to_string())?;
            match end {
                "commit" => tx.commit().await.map_err(|e| e.to_string()),
                "rollback" => tx.rollback().await.map_err(|e| e.to_string()),
                _ => {
                    drop(tx);
                    Ok(())
                }
            }
        })
    }

    /// The writes ready in one turn of the runtime share one SQLite commit, and each still
    /// stands alone: one rolled back, one dropped and one refused (its key taken by a write
    /// of the same group) leave nothing, and the others are all kept.
    #[tokio::test]
    async fn the_writes_of_one_turn_commit_together_and_each_rolls_back_alone() {
        let test_db = TestDatabase::sqlite();
        let db = open(&test_db).await;
        let writes = [
            write(&db, "a", "commit"),
            write(&db, "b", "rollback"),
            write(&db, "c", "drop"),
            write(&db, "a", "commit"),
            write(&db, "e", "commit"),
        ];
        let mut ends = Vec::new();
        for write in writes {
            ends.push(write.await.expect("the task"));
        }
        assert_eq!(ends[0], Ok(()));
        assert_eq!(ends[1], Ok(()));
        assert_eq!(ends[2], Ok(()));
        assert!(
            ends[3].as_ref().is_err_and(|e| e.contains("UNIQUE")),
            "{:?}",
            ends[3]
        );
        assert_eq!(ends[4], Ok(()));
        assert_eq!(ids(&db).await, ["a", "e"]);
        assert_eq!(commits(&db).await, 1, "one commit for the turn");

        // A write alone commits alone, and the writer's connection reads again once idle.
        db.execute(sqlx::query("UPDATE items SET n = 5 WHERE id = 'e'"))
            .await
            .expect("an update");
        assert_eq!(commits(&db).await, 2);
        assert_eq!(n_of(&db, "e").await, 5);
    }

    /// A write hears of its commit only once it is made: a read meanwhile, even in the same
    /// turn, sees nothing of it (it does not run on the writer's connection, which would).
    #[tokio::test]
    async fn a_write_waiting_for_its_commit_is_not_seen() {
        let test_db = TestDatabase::sqlite();
        let db = open(&test_db).await;
        let committed = write(&db, "a", "commit");
        let seen = tokio::spawn({
            let db = db.clone();
            async move { count(&db).await }
        });
        assert_eq!(seen.await.expect("the read"), 0, "read before the commit");
        assert_eq!(committed.await.expect("the write"), Ok(()));
        assert_eq!(count(&db).await, 1);
    }

    /// When the shared commit fails, every write in it is told so and none is kept; the
    /// writer then goes on with the next. (A deferred constraint is what SQLite checks at the
    /// commit: one write breaking it fails its group. The services' schemas defer none.)
    #[tokio::test]
    async fn a_failed_commit_fails_every_write_in_it() {
        let test_db = TestDatabase::sqlite();
        let db = open(&test_db).await;
        sqlx::query(
            "CREATE TABLE notes (item TEXT NOT NULL REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(db.pool())
        .await
        .expect("the table is created");
        let orphan = tokio::spawn({
            let db = db.clone();
            async move {
                let mut tx = db.begin_write().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO notes (item) VALUES ('nobody')")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        });
        let innocent = write(&db, "a", "commit");
        let refused = orphan.await.expect("the task");
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("FOREIGN KEY")),
            "{refused:?}"
        );
        let grouped = innocent.await.expect("the task");
        assert!(
            grouped.as_ref().is_err_and(|e| e.contains("FOREIGN KEY")),
            "{grouped:?}"
        );
        assert_eq!(commits(&db).await, 0);
        assert_eq!(count(&db).await, 0);
        assert_eq!(write(&db, "c", "commit").await.expect("the task"), Ok(()));
        assert_eq!(ids(&db).await, ["c"]);
    }

    crate::database_tests!(
        writes_bind_by_number_and_read_typed_rows,
        failures_and_abandoned_transactions_leave_nothing,
        a_single_write_waits_its_turn_and_commits_alone,
    );
}
