//! Storage: one pool type over PostgreSQL (`AsyncPgConnection`) and SQLite
//! (`SyncConnectionWrapper<SqliteConnection>`, each connection on a thread of its own),
//! embedded per-backend migrations, and [`Db`], the connection handle every query of the
//! service takes (all of its SQL lives in this module's children).

pub(crate) mod accounts;
pub mod chapter_cache;
pub(crate) mod conversations;
pub(crate) mod exports;
pub(crate) mod jobs;
mod json_in;
pub use chapter_cache::ChapterCache;
pub mod models;
pub(crate) mod notify;
pub(crate) mod ops;
pub(crate) mod regenerations;
pub(crate) mod retention;
pub mod schema;
mod sqlite_thread;
pub(crate) mod stories;
pub mod types;
pub(crate) mod voices;

pub(crate) use json_in::in_json_array;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
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
    /// True when the database cannot write because its storage is full or failing
    /// (SQLite's "database or disk is full" / "disk I/O error", PostgreSQL's "could not
    /// extend file" / "No space left on device"): a passing condition for the client.
    pub(crate) fn is_storage_full(&self) -> bool {
        let DbError::Query(diesel::result::Error::DatabaseError(_, info)) = self else {
            return false;
        };
        let message = info.message();
        [
            "database or disk is full",
            "disk I/O error",
            "No space left on device",
            "could not extend file",
            "could not write to file",
        ]
        .iter()
        .any(|m| message.contains(m))
    }

    /// True when the connection itself was lost (the server restarted or ended it): the
    /// statement may not have reached the server, and another connection may succeed.
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UnableToSendCommand
                    | diesel::result::DatabaseErrorKind::ClosedConnection,
                _
            ))
        )
    }

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

/// One page of a keyset listing: its rows, and whether more follow.
pub(crate) struct Page<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) has_more: bool,
}

impl<T> Page<T> {
    /// A page from rows read with a limit of one more than `first`: the first `first`,
    /// and whether the extra one came.
    pub(crate) fn of(mut rows: Vec<T>, first: usize) -> Page<T> {
        let has_more = rows.len() > first;
        rows.truncate(first);
        Page { rows, has_more }
    }
}

/// One page of a newest-first keyset listing: the boxed select `$q` of `$table` ordered by
/// (`created_at`, `id`) descending, after `$after` (an `&Option` of the last creation time
/// and id seen), limited to one row more than `$first` (read the rows into
/// [`Page::of`]).
macro_rules! newest_first {
    ($q:expr, $table:ident, $after:expr, $first:expr) => {{
        let mut q = $q.order_by(($table::created_at.desc(), $table::id.desc()));
        if let Some((t, id)) = $after {
            q = q.filter(
                $table::created_at
                    .lt(*t)
                    .or($table::created_at.eq(*t).and($table::id.lt(*id))),
            );
        }
        q.limit($first as i64 + 1)
    }};
}
pub(crate) use newest_first;

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

/// A pool of connections to one of the two backends, with the chapters its reads keep
/// ([`chapter_cache`]).
#[derive(Clone)]
pub struct Pool {
    conns: Conns,
    chapters: Arc<ChapterCache>,
}

#[derive(Clone)]
enum Conns {
    Pg(DeadPool<AsyncPgConnection>),
    Sqlite(DeadPool<SqliteConn>),
}

/// The chapter cache's budget unless set otherwise ([`Pool::with_chapter_cache`]).
pub const DEFAULT_CHAPTER_CACHE_BYTES: usize = 64 << 20;

/// A pooled connection of either backend; the store's functions take it as a [`Db`].
// One lives on the stack per request; boxing would add an allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Pg(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

/// How often [`Conn::was_lost`] looks (2 ms apart) for an erring connection to close.
const LOSS_CHECKS: u32 = 25;

impl Conn {
    /// Takes the connection out of the pool for good (it is closed, not handed out again).
    pub(crate) fn discard(self) {
        match self {
            Conn::Pg(pooled) => drop(Object::take(pooled)),
            Conn::Sqlite(pooled) => drop(Object::take(pooled)),
        }
    }

    /// Whether `error` came from this connection being lost: a statement that could not
    /// be sent, or (PostgreSQL) a server error after which the connection is closed — a
    /// backend ended by a restart or `pg_terminate_backend` answers the next statement
    /// with its FATAL reason (SQLSTATE 57P01, which diesel does not pass on) and closes,
    /// so the closing is waited for a moment (an error that is not a loss waits those
    /// few milliseconds; reads rarely fail otherwise).
    pub(crate) async fn was_lost(&mut self, error: &DbError) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        use diesel_async::pooled_connection::PoolableConnection;
        if error.is_connection_lost() {
            return true;
        }
        let Conn::Pg(pooled) = self else {
            return false;
        };
        if !matches!(
            error,
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, _))
        ) {
            return false;
        }
        for _ in 0..LOSS_CHECKS {
            if PoolableConnection::is_broken(&mut **pooled) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// The connection as the store's functions take it.
    pub(crate) fn db(&mut self) -> Db<'_> {
        match self {
            Conn::Pg(pooled) => Db::Pg(pooled),
            Conn::Sqlite(pooled) => Db::Sqlite(pooled),
        }
    }
}

/// A connection of either backend, borrowed: a pooled one ([`Conn::db`]) or the one a
/// transaction runs on ([`transaction!`](crate::store::transaction)). Every function of
/// the store takes one, so the same function runs inside a caller's transaction or
/// outside any.
pub(crate) enum Db<'a> {
    Pg(&'a mut AsyncPgConnection),
    Sqlite(&'a mut SqliteConn),
}

/// SQLite takes one writer at a time; writers that find the lock taken sleep in SQLite's
/// busy handler (1, 2, 5 … 100 ms steps), idle time that made 1000 conversation turns at
/// once take 25 s (2154 sleeps in 15 s, the CPU mostly idle). The hot single-statement
/// writes of this process queue here instead, in order, without sleeping. Never taken
/// inside a transaction (the functions that take it are not called in one).
static SQLITE_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The SQLite write turn for a single-statement write on `db` (none on PostgreSQL).
pub(crate) async fn write_turn(db: &Db<'_>) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    match db {
        Db::Sqlite(_) => Some(SQLITE_WRITES.lock().await),
        Db::Pg(_) => None,
    }
}

/// Statements run by every connection of the process since it started
/// (`jjongal_sql_statements_total`): what the benchmarks count per operation. Counted by
/// diesel's instrumentation, installed for every new connection of either backend
/// ([`count_every_statement`]): BEGIN and COMMIT, the pool's own and a
/// `pg_notify` count like any other.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes every connection opened from now on count its statements in [`statements`].
pub(crate) fn count_every_statement() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        fn counter() -> Option<Box<dyn diesel::connection::Instrumentation>> {
            Some(Box::new(
                |event: diesel::connection::InstrumentationEvent<'_>| {
                    if matches!(
                        event,
                        diesel::connection::InstrumentationEvent::StartQuery { .. }
                    ) {
                        STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
            ))
        }
        if let Err(e) = diesel::connection::set_default_instrumentation(counter) {
            tracing::warn!(error = %e, "SQL statements will not be counted");
        }
    });
}

/// Statements run since the process started.
pub fn statements() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `$body` (a `Result<_, DbError>`, with `$db` the [`Db`] of a pooled connection of
/// `$pool`) and, when it failed because that connection was lost ([`Conn::was_lost`]:
/// the server restarted or ended it), again on another — the lost one leaves the pool —
/// as long as connections turn out lost, at most once per connection the pool may hold
/// (after a restart every pooled connection is gone; the last try gets a new one). For
/// reads, and other work that may safely run again. (A macro: an async closure's future
/// is not `Send` for every borrow it takes.)
macro_rules! read {
    ($pool:expr, |$db:ident| $body:expr) => {{
        let pool: &$crate::store::Pool = $pool;
        let mut lost = 0;
        loop {
            let mut conn = match pool.get().await {
                Ok(conn) => conn,
                Err(e) => break Err(e),
            };
            let done = {
                let $db = &mut conn.db();
                $body
            };
            match done {
                Err(e) if lost < pool.max_size() && conn.was_lost(&e).await => {
                    tracing::warn!(error = %e, "a pooled database connection was lost; the read runs again on another");
                    conn.discard();
                    lost += 1;
                }
                done => break done,
            }
        }
    }};
}
pub(crate) use read;

/// The load benchmark's database limit (`cargo bench --bench load`, not for the
/// service): one page of `owner`'s stories, newest first, `first` of them with their
/// chapters — the very statements `GET /api/v1/stories?page_size=…` runs, on a pool like
/// the service's — without the service around them. Returns the page's story ids,
/// whether there is a next page, and the chapters read.
#[doc(hidden)]
pub async fn page_for_benchmark(
    pool: &Pool,
    owner: types::UserId,
    first: usize,
) -> Result<(Vec<types::StoryId>, bool, usize), DbError> {
    let query = stories::PageQuery {
        owner: Some(owner),
        status: None,
        created_after: None,
        created_before: None,
        sort: stories::SortKey::CreatedAt,
        order: stories::SortOrder::Desc,
        resume: None,
        first,
    };
    let (page, joined) = read!(pool, |db| stories::page(db, pool.chapters(), query.clone())
        .await)?;
    Ok((
        page.rows.iter().map(|r| r.id).collect(),
        page.has_more,
        joined.len(),
    ))
}

/// Runs the same diesel code on whichever backend the [`Db`] `$db` holds. Each arm is
/// monomorphised for its connection type, so the body must compile for both.
macro_rules! on_db {
    ($db:expr, |$c:ident| $body:expr) => {{
        match $db {
            $crate::store::Db::Pg($c) => {
                let $c: &mut diesel_async::AsyncPgConnection = $c;
                $body
            }
            $crate::store::Db::Sqlite($c) => {
                let $c: &mut $crate::store::SqliteConn = $c;
                $body
            }
        }
    }};
}
pub(crate) use on_db;

/// Runs `$body` in one transaction on the [`Db`] `$db`, with `$tx` the transaction's own
/// [`Db`]: the store's functions called with it commit or roll back together. `$body`
/// returns `Result<_, E>` with `E: From<diesel::result::Error>`. On SQLite the body
/// should start with a write so the lock is taken up front (busy timeout applies).
macro_rules! transaction {
    ($db:expr, |$tx:ident| $body:expr) => {{
        match $db {
            $crate::store::Db::Pg(c) => {
                let c: &mut diesel_async::AsyncPgConnection = c;
                diesel_async::AsyncConnection::transaction(c, async |c| {
                    let $tx = &mut $crate::store::Db::Pg(c);
                    $body
                })
                .await
            }
            $crate::store::Db::Sqlite(c) => {
                let c: &mut $crate::store::SqliteConn = c;
                diesel_async::AsyncConnection::transaction(c, async |c| {
                    let $tx = &mut $crate::store::Db::Sqlite(c);
                    $body
                })
                .await
            }
        }
    }};
}
pub(crate) use transaction;

/// [`transaction!`] serialised per `$key` (e.g. an account): on PostgreSQL the
/// transaction first takes a transaction-scoped advisory lock on the key's hash, so
/// concurrent transactions of one key run one after the other (a count-then-insert stays
/// exact); on SQLite the transaction itself serialises writers (the body should start
/// with a write).
macro_rules! locked_transaction {
    ($db:expr, $key:expr, |$tx:ident| $body:expr) => {{
        match $db {
            $crate::store::Db::Pg(c) => {
                let c: &mut diesel_async::AsyncPgConnection = c;
                diesel_async::AsyncConnection::transaction(c, async |c| {
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                            .bind::<diesel::sql_types::Text, _>($key),
                        &mut *c,
                    )
                    .await?;
                    let $tx = &mut $crate::store::Db::Pg(c);
                    $body
                })
                .await
            }
            $crate::store::Db::Sqlite(c) => {
                let c: &mut $crate::store::SqliteConn = c;
                diesel_async::AsyncConnection::transaction(c, async |c| {
                    let $tx = &mut $crate::store::Db::Sqlite(c);
                    $body
                })
                .await
            }
        }
    }};
}
pub(crate) use locked_transaction;

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
        count_every_statement();
        match Backend::of_url(url) {
            Backend::Postgres => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                // A checked-out connection is not test-queried first (diesel-async's
                // default runs `SELECT 1`, one more round trip on every checkout): one
                // the server closed is known without a query (its connection task has
                // ended; the pool drops it), and a read that still meets a lost
                // connection runs again on another ([`read!`]).
                config.recycling_method = RecyclingMethod::Fast;
                let manager =
                    AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                Ok(Pool::of(Conns::Pg(build_pool!(manager, max_size, wait)?)))
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
                let pool = DeadPool::builder(manager)
                    .max_size(max_size)
                    .wait_timeout(Some(wait))
                    .runtime(deadpool::Runtime::Tokio1)
                    .pre_recycle(deadpool::managed::Hook::async_fn(|conn, _| {
                        Box::pin(sqlite_thread::settle(conn))
                    }))
                    .build()
                    .map_err(|e| DbError::Pool(e.to_string()))?;
                Ok(Pool::of(Conns::Sqlite(pool)))
            }
        }
    }

    fn of(conns: Conns) -> Pool {
        Pool {
            conns,
            chapters: Arc::new(ChapterCache::new(DEFAULT_CHAPTER_CACHE_BYTES)),
        }
    }

    /// The pool with a chapter cache of `bytes` (0: none) in place of its own.
    pub fn with_chapter_cache(self, bytes: usize) -> Pool {
        Pool {
            chapters: Arc::new(ChapterCache::new(bytes)),
            ..self
        }
    }

    /// The chapters its story reads keep.
    pub(crate) fn chapters(&self) -> &Arc<ChapterCache> {
        &self.chapters
    }

    /// The revision story `id`'s chapters are kept at, if they are (for tests).
    #[doc(hidden)]
    pub fn kept_revision(&self, id: types::StoryId) -> Option<i64> {
        self.chapters.revision_of(id)
    }

    pub(crate) fn backend(&self) -> Backend {
        match &self.conns {
            Conns::Pg(_) => Backend::Postgres,
            Conns::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The most connections the pool holds.
    pub(crate) fn max_size(&self) -> usize {
        match &self.conns {
            Conns::Pg(p) => p.status().max_size,
            Conns::Sqlite(p) => p.status().max_size,
        }
    }

    /// Takes a connection from the pool.
    pub async fn get(&self) -> Result<Conn, DbError> {
        match &self.conns {
            Conns::Pg(p) => p
                .get()
                .await
                .map(Conn::Pg)
                .map_err(|e| DbError::Pool(e.to_string())),
            Conns::Sqlite(p) => p
                .get()
                .await
                .map(Conn::Sqlite)
                .map_err(|e| DbError::Pool(e.to_string())),
        }
    }

    /// Checks that the database answers and takes a write (readiness): one row of a
    /// few kilobytes written and deleted in one committed transaction, so a full or
    /// failing disk shows here as it does for every other write.
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.get().await?;
        let id = uuid::Uuid::new_v4().to_string();
        let insert = format!(
            "INSERT INTO readiness_probe (id, filler) VALUES ('{id}', '{}')",
            "x".repeat(4000)
        );
        let delete = format!("DELETE FROM readiness_probe WHERE id = '{id}'");
        transaction!(&mut conn.db(), |tx| {
            on_db!(&mut *tx, |c| c.batch_execute(&insert).await)?;
            on_db!(&mut *tx, |c| c.batch_execute(&delete).await)?;
            Ok::<(), diesel::result::Error>(())
        })?;
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
            let Conns::Sqlite(pool) = pool.conns else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> DbError {
        DbError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UnableToSendCommand,
            Box::new("connection closed".to_string()),
        ))
    }

    async fn read_counting(
        pool: &Pool,
        answers: &mut Vec<Result<i32, DbError>>,
        calls: &mut u32,
    ) -> Result<i32, DbError> {
        read!(pool, |db| {
            let _ = db;
            *calls += 1;
            answers.remove(0)
        })
    }

    /// A read that met a lost connection runs again on another connection, at most once
    /// per connection the pool may hold; any other failure is the caller's.
    #[tokio::test]
    async fn a_read_runs_again_when_its_connection_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("t.db").to_string_lossy().into_owned();
        let pool = Pool::connect(&url, 2).await.unwrap();

        let (mut answers, mut calls) = (vec![Err(lost()), Ok(42)], 0);
        let read = read_counting(&pool, &mut answers, &mut calls).await;
        assert_eq!((read.unwrap(), calls), (42, 2));

        // Every pooled connection lost (a restart): the third try, on a new one, works.
        let (mut answers, mut calls) = (vec![Err(lost()), Err(lost()), Ok(7)], 0);
        let read = read_counting(&pool, &mut answers, &mut calls).await;
        assert_eq!((read.unwrap(), calls), (7, 3));

        let (mut answers, mut calls) = (vec![Err(lost()), Err(lost()), Err(lost()), Ok(7)], 0);
        let read = read_counting(&pool, &mut answers, &mut calls).await;
        assert!(read.unwrap_err().is_connection_lost());
        assert_eq!(calls, 3, "at most once per pooled connection more");

        let refused = DbError::Query(diesel::result::Error::NotFound);
        let (mut answers, mut calls) = (vec![Err(refused), Ok(7)], 0);
        let read = read_counting(&pool, &mut answers, &mut calls).await;
        assert!(matches!(
            read,
            Err(DbError::Query(diesel::result::Error::NotFound))
        ));
        assert_eq!(calls, 1, "only a lost connection is tried again");

        // The pool still serves (the lost connections left it; new ones were made).
        let mut conn = pool.get().await.unwrap();
        assert!(matches!(conn.db(), Db::Sqlite(_)));
    }
}
