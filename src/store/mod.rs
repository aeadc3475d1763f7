//! Storage: one pool type over PostgreSQL (`AsyncPgConnection`) and SQLite
//! (`SyncConnectionWrapper<SqliteConnection>`, each connection on a thread of its own),
//! embedded per-backend migrations, and the [`with_conn!`](crate::with_conn) macro that
//! runs the same diesel expression on either.

mod json_in;
pub mod models;
pub mod schema;
mod sqlite_thread;
pub(crate) mod stories;
pub mod types;

pub(crate) use json_in::in_json_array;

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

/// A SQLite connection for async code, on a thread of its own ([`sqlite_thread`]).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, sqlite_thread::ConnectionThread>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Key of the PostgreSQL advisory lock held while migrating ("jjongal" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x006a_6a6f_6e67_616c;

/// Errors of the storage layer. The domain maps them once to public codes.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection failed: {0}")]
    Connect(String),
    #[error("database pool exhausted or unavailable: {0}")]
    Pool(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// True when the error is a unique-constraint violation (e.g. a taken login id).
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Which backend a database URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub(crate) fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A pool of connections to one of the two backends.
#[derive(Clone)]
pub enum Pool {
    Pg(DeadPool<AsyncPgConnection>),
    Sqlite(DeadPool<SqliteConn>),
}

/// A pooled connection of either backend; use it through [`with_conn!`](crate::with_conn).
// One lives on the stack per request; boxing would add an allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Pg(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

/// Runs the same diesel code on whichever backend `$conn` holds. Each arm is
/// monomorphised for its connection type, so the body must compile for both.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Pg(pooled) => {
                let $c: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                $body
            }
            $crate::store::Conn::Sqlite(pooled) => {
                let $c: &mut $crate::store::SqliteConn = &mut *pooled;
                $body
            }
        }
    };
}

/// Runs `$body` inside one transaction on whichever backend `$conn` holds. On SQLite the
/// body should start with a write so the lock is taken up front (busy timeout applies).
#[macro_export]
macro_rules! with_tx {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Pg(pooled) => {
                let pooled: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                diesel_async::AsyncConnection::transaction(pooled, async |$c| $body).await
            }
            $crate::store::Conn::Sqlite(pooled) => {
                let pooled: &mut $crate::store::SqliteConn = &mut *pooled;
                diesel_async::AsyncConnection::transaction(pooled, async |$c| $body).await
            }
        }
    };
}

/// [`with_tx!`] serialised per `$key` (e.g. an account): on PostgreSQL the transaction
/// first takes a transaction-scoped advisory lock on the key's hash, so concurrent
/// transactions of one key run one after the other (a count-then-insert stays exact); on
/// SQLite the transaction itself serialises writers (the body should start with a write).
#[macro_export]
macro_rules! with_locked_tx {
    ($conn:expr, $key:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Pg(pooled) => {
                let pooled: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                diesel_async::AsyncConnection::transaction(pooled, async |$c| {
                    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                        .bind::<diesel::sql_types::Text, _>($key)
                        .execute($c)
                        .await?;
                    $body
                })
                .await
            }
            $crate::store::Conn::Sqlite(pooled) => {
                let pooled: &mut $crate::store::SqliteConn = &mut *pooled;
                diesel_async::AsyncConnection::transaction(pooled, async |$c| $body).await
            }
        }
    };
}

/// How long a command-line or migration connection waits for the pool (the server's own
/// pool takes `JJONGAL_DATABASE_ACQUIRE_TIMEOUT_MS`).
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Builds a pool for a manager of either backend (a macro: a generic function would
/// need diesel-internal bounds).
macro_rules! build_pool {
    ($manager:expr, $max_size:expr, $wait:expr) => {
        DeadPool::builder($manager)
            .max_size($max_size)
            .wait_timeout(Some($wait))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))
    };
}

impl Pool {
    /// Connects to `url` (a `postgres://` URL, else a SQLite file path) without migrating.
    pub async fn connect(url: &str, max_size: usize) -> Result<Pool, DbError> {
        Pool::connect_waiting(url, max_size, POOL_WAIT).await
    }

    /// As [`Pool::connect`]; a caller waits at most `wait` for a free connection, then
    /// gets [`DbError::Pool`] (which the service answers with 503).
    pub async fn connect_waiting(
        url: &str,
        max_size: usize,
        wait: Duration,
    ) -> Result<Pool, DbError> {
        match Backend::of_url(url) {
            Backend::Postgres => {
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
                Ok(Pool::Pg(build_pool!(manager, max_size, wait)?))
            }
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").unwrap_or(url);
                if let Some(parent) = std::path::Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| DbError::Connect(format!("{}: {e}", parent.display())))?;
                }
                let mut config = ManagerConfig::<SqliteConn>::default();
                // A checked-out connection is not test-queried first (diesel-async's
                // default runs `SELECT 1`): an embedded database cannot have gone away,
                // and the query was an extra trip to the connection's thread on every
                // checkout (8 % of `GET /stories/{id}`'s CPU). Open transactions are
                // still checked. PostgreSQL keeps the test query: its server can restart.
                config.recycling_method = RecyclingMethod::Fast;
                config.custom_setup = Box::new(|url| {
                    async move {
                        let mut conn = SqliteConn::establish(url).await?;
                        // Reads map the database file (256 MiB at most) instead of
                        // copying each page into every connection's own cache: with
                        // ten connections of 2 MiB each, a story page re-read pages
                        // from the file all the time (`pread` in the profile).
                        conn.batch_execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                             PRAGMA mmap_size = 268435456;",
                        )
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager =
                    AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path, config);
                Ok(Pool::Sqlite(build_pool!(manager, max_size, wait)?))
            }
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Pg(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Takes a connection from the pool.
    pub async fn get(&self) -> Result<Conn, DbError> {
        match self {
            Pool::Pg(p) => p
                .get()
                .await
                .map(Conn::Pg)
                .map_err(|e| DbError::Pool(e.to_string())),
            Pool::Sqlite(p) => p
                .get()
                .await
                .map(Conn::Sqlite)
                .map_err(|e| DbError::Pool(e.to_string())),
        }
    }

    /// Checks that the database answers (readiness).
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.get().await?;
        with_conn!(&mut conn, |c| {
            diesel::sql_query("SELECT 1").execute(c).await?;
        });
        Ok(())
    }
}

/// Applies pending migrations for the backend `url` selects. On PostgreSQL this holds an
/// advisory lock on a dedicated connection, so processes starting together on one
/// database migrate one after another instead of racing. Needs tokio's multi-thread
/// runtime (the migration harness blocks in place).
pub async fn migrate(url: &str) -> Result<Vec<String>, DbError> {
    let applied = match Backend::of_url(url) {
        Backend::Postgres => {
            let mut conn = AsyncPgConnection::establish(url)
                .await
                .map_err(|e| DbError::Connect(e.to_string()))?;
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .await?;
            let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
            let result = harness
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| DbError::Migration(e.to_string()));
            let mut conn = harness.into_inner();
            // The lock also goes away with the connection; unlock explicitly anyway.
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .await?;
            result?
        }
        Backend::Sqlite => {
            // SQLite has no advisory locks: serialise migrating processes with an OS
            // file lock beside the database (released when the file is closed).
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let _guard = if path == ":memory:" {
                None
            } else {
                Some(lock_file(&format!("{path}.migrate-lock")).await?)
            };
            let pool = Pool::connect(url, 1).await?;
            let Pool::Sqlite(pool) = pool else {
                unreachable!("a non-postgres URL selects SQLite")
            };
            let conn = pool.get().await.map_err(|e| DbError::Pool(e.to_string()))?;
            let conn = Object::take(conn);
            let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| DbError::Migration(e.to_string()))?
        }
    };
    Ok(applied)
}

/// Opens (creating it if needed) and exclusively locks `path`, waiting for other holders.
async fn lock_file(path: &str) -> Result<std::fs::File, DbError> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = std::path::Path::new(&path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbError::Migration(format!("{}: {e}", parent.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DbError::Migration(format!("{path}: {e}")))?;
        file.lock()
            .map_err(|e| DbError::Migration(format!("locking {path}: {e}")))?;
        Ok(file)
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}

/// Now, truncated to microseconds (PostgreSQL's precision) so both backends store and
/// compare the same instant.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A UTC instant as stored (`TIMESTAMP` without zone, UTC by convention).
pub fn to_db(t: DateTime<Utc>) -> NaiveDateTime {
    t.trunc_subsecs(6).naive_utc()
}

pub(crate) fn from_db(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}
