//! Helpers for tests of services built on the chassis (feature `test-util`).
//!
//! Every test gets its own database: a SQLite file in a temporary folder, or a freshly created
//! PostgreSQL database that is dropped when the test ends. [`database_tests!`](crate::database_tests)
//! turns one async test function into both variants; the PostgreSQL one is `#[ignore]`d so
//! `cargo test` passes on a machine without a server, and `.ci/run` runs it with
//! `--include-ignored`.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Environment variable naming the PostgreSQL server tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "BAZAAR_TEST_POSTGRES_URL";
/// Server used when [`POSTGRES_URL_VAR`] is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    /// Keeps the SQLite folder alive; removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server's maintenance URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A SQLite file in a fresh temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the test database");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new, empty PostgreSQL database on the test server.
    pub async fn postgres() -> Self {
        let server =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("bazaar_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("connecting to PostgreSQL at {server} ({POSTGRES_URL_VAR}): {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let _ = admin.close().await;
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => format!("{server}/{name}"),
        };
        Self {
            url,
            _dir: None,
            postgres: Some((server, name)),
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The database URL, as a service's `database.url` takes it.
    pub fn url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee; use a thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop a test database; it will be left behind");
        }
    }
}

/// Generates a SQLite and a PostgreSQL test for each named async function taking a
/// [`TestDatabase`]: `name::sqlite` and `name::postgres` (ignored unless asked for).
#[macro_export]
macro_rules! database_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::testing::TestDatabase::sqlite()).await;
                }

                #[tokio::test]
                #[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
                async fn postgres() {
                    super::$name($crate::testing::TestDatabase::postgres().await).await;
                }
            }
        )*
    };
}

/// A local address nothing listens on (a port bound, then let go): connecting is refused.
pub fn dead_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("an address")
}

/// Waits until the service at `base_url` is ready, panicking after `within`.
pub async fn wait_ready(base_url: &str, within: Duration) {
    assert!(
        crate::health::wait_until_ready(&crate::client::Transport::http(), base_url, Some(within))
            .await,
        "{base_url} not ready within {within:?}"
    );
}

/// An outbox served as a feed, standing in for the producers a consumer under test follows:
/// the test publishes events into it as any producer would (the source is the first part of
/// the event type: `users` for `users.user.registered`).
#[derive(Debug)]
pub struct FeedProducer {
    db: crate::db::Db,
    url: String,
    stop: tokio_util::sync::CancellationToken,
    _db: TestDatabase,
}

impl Drop for FeedProducer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FeedProducer {
    /// An outbox in a fresh SQLite database, served on a free port.
    pub async fn start() -> Self {
        let test_db = TestDatabase::sqlite();
        let db = crate::db::Db::connect_with(
            &test_db.url(),
            &Default::default(),
            &[crate::events::migrator()],
        )
        .await
        .expect("the producer's database opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let app = crate::events::routes(db.clone(), Duration::from_millis(200), None);
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Self {
            db,
            url,
            stop,
            _db: test_db,
        }
    }

    /// The feed's base URL, for the consumer's static instances.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Publishes `event`, committed.
    pub async fn publish<E: contracts::events::Event>(&self, event: &E) {
        let source = E::TYPE.split('.').next().unwrap_or(E::TYPE);
        let mut tx = self.db.begin_write().await.expect("a write transaction");
        crate::events::publish(&mut tx, source, event)
            .await
            .expect("the event is written");
        tx.commit().await.expect("the event commits");
    }
}
