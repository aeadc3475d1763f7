//! Each SQLite connection runs on a thread of its own.
//!
//! diesel-async's `SyncConnectionWrapper` runs every call of a synchronous connection
//! through a [`SpawnBlocking`]; its default is tokio's blocking pool, where consecutive
//! calls of one connection land on any of the pool's threads — dozens under load, grown
//! by bursts and kept while busy. SQLite's memory for a connection (page cache,
//! statements, parse trees) was then allocated and freed on all of them, and the
//! allocator's per-thread heaps each kept a share of it: in the load benchmark's
//! 10-minute soak the server's memory grew when a burst had grown the pool (docs/performance.md,
//! *Memory on SQLite*). Here a connection's calls run one after another on its own
//! thread, started with the connection and ended when it is dropped, so its memory stays
//! in one heap, and SQLite work no longer grows the blocking pool.
//!
//! **Cancellation.** A request whose client goes away is dropped mid-query; the call it
//! had sent still runs on the connection's thread and holds the connection's shared
//! state until it ends. The pool must not hand the connection on (or check it, which
//! needs that state alone: diesel-async panics "Cannot access shared transaction
//! state", diesel-rs/diesel_async#281) before then, so [`settle`] runs before every
//! recycle: an empty call queued behind whatever is still running, awaited.

use std::error::Error;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use diesel_async::sync_connection_wrapper::SpawnBlocking;
use futures_util::future::BoxFuture;

type Job = Box<dyn FnOnce() + Send>;
type SpawnError = Box<dyn Error + Send + Sync + 'static>;

/// The thread one SQLite connection runs on (see the module documentation).
pub struct ConnectionThread {
    /// `Err` when the thread could not be started: every call then fails with it.
    jobs: Result<mpsc::Sender<Job>, String>,
}

impl SpawnBlocking for ConnectionThread {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, SpawnError>>
    where
        R: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        // A panicking call is reported to its caller, as tokio's blocking pool does, and
        // the thread goes on serving the connection.
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(task));
            let _ = done.send(outcome);
        });
        let sent = match &self.jobs {
            Ok(jobs) => jobs
                .send(job)
                .map_err(|_| "the SQLite connection's thread has stopped".to_string()),
            Err(e) => Err(e.clone()),
        };
        Box::pin(async move {
            sent.map_err(SpawnError::from)?;
            match result.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_panic)) => Err("a SQLite call panicked".into()),
                Err(_) => Err("the SQLite connection's thread dropped a call".into()),
            }
        })
    }

    /// Called once per connection, as it is established.
    fn get_runtime() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("sqlite-conn".into())
            .spawn(move || {
                // Ends when the connection (the only sender) is dropped.
                for job in queue {
                    job();
                }
            });
        ConnectionThread {
            jobs: started
                .map(|_| jobs)
                .map_err(|e| format!("could not start a SQLite connection thread: {e}")),
        }
    }
}

/// Waits until every call sent to `conn`'s thread has finished (an empty call, queued
/// behind them, has run), so nothing but `conn` holds the connection any more.
pub(super) async fn settle(
    conn: &mut super::SqliteConn,
) -> Result<(), deadpool::managed::HookError<diesel_async::pooled_connection::PoolError>> {
    use deadpool::managed::HookError;
    // Not longer than this: a connection still busy then is dropped (its thread ends
    // with its last call) and the pool takes or makes another.
    match tokio::time::timeout(SETTLE_AT_MOST, conn.spawn_blocking(|_| Ok(()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(HookError::Backend(
            diesel_async::pooled_connection::PoolError::QueryError(e),
        )),
        Err(_) => Err(HookError::Message(
            "a SQLite connection was still busy with an abandoned call".into(),
        )),
    }
}

/// Longest a checkout waits for a connection's abandoned call to end.
const SETTLE_AT_MOST: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_of_one_connection_run_in_order_on_one_thread() {
        let mut thread = ConnectionThread::get_runtime();
        let mut seen = Vec::new();
        for i in 0..5 {
            let (id, n) = thread
                .spawn_blocking(move || (std::thread::current().id(), i))
                .await
                .unwrap();
            seen.push((id, n));
        }
        assert_ne!(seen[0].0, std::thread::current().id());
        assert!(seen.iter().all(|(id, _)| *id == seen[0].0), "{seen:?}");
        assert_eq!(
            seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // Another connection has another thread.
        let mut other = ConnectionThread::get_runtime();
        let id = other
            .spawn_blocking(|| std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(id, seen[0].0);
    }

    /// A query abandoned mid-flight (its client went away) does not make the next
    /// checkout of its connection panic: the pool waits for it to end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_query_never_breaks_the_next_checkout() {
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("t.db").to_string_lossy().into_owned();
        // One connection: every checkout is the same one.
        let pool = super::super::Pool::connect(&url, 1).await.unwrap();
        let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) \
                    SELECT count(*) AS n FROM c";
        for _ in 0..3 {
            let mut conn = pool.get().await.unwrap();
            let super::super::Conn::Sqlite(c) = &mut conn else {
                unreachable!()
            };
            let query = diesel::sql_query(slow).get_result::<Count>(&mut **c);
            // The client goes away while the query runs.
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(5), query)
                    .await
                    .is_err()
            );
            drop(conn);
            // The next checkout waits for the abandoned query, then works.
            let mut conn = pool.get().await.unwrap();
            let super::super::Conn::Sqlite(c) = &mut conn else {
                unreachable!()
            };
            let done = diesel::sql_query("SELECT 41 + 1 AS n")
                .get_result::<Count>(&mut **c)
                .await;
            assert_eq!(done.unwrap().n, 42);
        }
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_the_thread_serves_the_next() {
        let mut thread = ConnectionThread::get_runtime();
        let failed = thread
            .spawn_blocking(|| -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(failed.to_string(), "a SQLite call panicked");
        assert_eq!(thread.spawn_blocking(|| 7).await.unwrap(), 7);
    }
}
