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
//! recycle: while some call is abandoned and still running (counted process-wide), an
//! empty call queued behind whatever is still running, awaited; otherwise nothing (a
//! call that was waited for has let go of the connection before its caller got the
//! result), so a checkout costs no trip to the connection's thread.

use std::error::Error;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};

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
        let call = Arc::new(AtomicU8::new(RUNNING));
        let ran = call.clone();
        // A panicking call is reported to its caller, as tokio's blocking pool does, and
        // the thread goes on serving the connection.
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(task));
            // `task` (and its hold on the connection) is gone: before the result is sent.
            if ran.swap(FINISHED, SeqCst) == CALLER_GONE {
                ABANDONED.fetch_sub(1, SeqCst);
            }
            let _ = done.send(outcome);
        });
        let sent = match &self.jobs {
            Ok(jobs) => jobs
                .send(job)
                .map_err(|_| "the SQLite connection's thread has stopped".to_string()),
            Err(e) => Err(e.clone()),
        };
        if sent.is_err() {
            // Never runs: nothing to wait for.
            call.store(FINISHED, SeqCst);
        }
        // Dropped with the future, polled or not: the call was sent already.
        let watch = Watch(call);
        Box::pin(async move {
            let _watch = watch;
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

/// A call's state: running, finished (its hold on the connection released), or still
/// running with its caller gone (counted in [`ABANDONED`]).
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const CALLER_GONE: u8 = 2;

/// Calls of every connection whose caller stopped waiting and that have not finished.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Counts its call as abandoned when dropped before the call finished. Counted first and
/// taken back if the call finished meanwhile: the count may be one too high for a
/// moment, never too low.
struct Watch(Arc<AtomicU8>);

impl Drop for Watch {
    fn drop(&mut self) {
        ABANDONED.fetch_add(1, SeqCst);
        if self
            .0
            .compare_exchange(RUNNING, CALLER_GONE, SeqCst, SeqCst)
            .is_err()
        {
            ABANDONED.fetch_sub(1, SeqCst);
        }
    }
}

/// Waits until every call sent to `conn`'s thread has finished (an empty call, queued
/// behind them, has run), so nothing but `conn` holds the connection any more. With no
/// abandoned call anywhere, every call has finished already: nothing to wait for.
pub(super) async fn settle(
    conn: &mut super::SqliteConn,
) -> Result<(), deadpool::managed::HookError<diesel_async::pooled_connection::PoolError>> {
    use deadpool::managed::HookError;
    if ABANDONED.load(SeqCst) == 0 {
        return Ok(());
    }
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

    /// A call dropped before it ran (never polled, even) counts as abandoned until it
    /// has run: then the pool waits for it before handing its connection on.
    #[tokio::test]
    async fn a_call_dropped_before_it_ran_counts_as_abandoned_until_it_ran() {
        let mut thread = ConnectionThread::get_runtime();
        let (release, held) = std::sync::mpsc::channel::<()>();
        // The thread is busy until released.
        let busy = thread.spawn_blocking(move || held.recv().is_ok());
        drop(thread.spawn_blocking(|| 1));
        // (Other tests may count theirs at the same time: never fewer than this one.)
        assert!(ABANDONED.load(SeqCst) >= 1);
        release.send(()).unwrap();
        assert!(busy.await.unwrap());
        // Behind it in the queue: the dropped call has run once this returns.
        assert_eq!(thread.spawn_blocking(|| 2).await.unwrap(), 2);
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
