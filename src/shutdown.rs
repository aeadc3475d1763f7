//! One shutdown signal for every long-lived task of a process: the two socket loops, the
//! PostgreSQL event listener, the gateway's sweeper, the story worker and the metrics
//! listener all watch the same [`Shutdown`], and the application waits for the tasks that
//! [`Shutdown::track`] counted before it returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// A handle on the process's shutdown signal (cheap to clone).
#[derive(Clone, Debug)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    /// Tracked tasks hold a strong sender; the switch's receiver ends when all are gone.
    tasks: mpsc::WeakSender<()>,
}

/// The one place that starts the shutdown, and waits for the tracked tasks to end.
#[derive(Debug)]
pub struct ShutdownSwitch {
    signal: Arc<watch::Sender<bool>>,
    /// Keeps the tracker open until the shutdown starts (so `track` works before it).
    open: Option<mpsc::Sender<()>>,
    ended: mpsc::Receiver<()>,
    handle: Shutdown,
}

/// Held by a tracked task for as long as it runs.
#[derive(Debug)]
pub(crate) struct TaskGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl ShutdownSwitch {
    pub fn new() -> ShutdownSwitch {
        let (signal, watching) = watch::channel(false);
        let (open, ended) = mpsc::channel(1);
        let handle = Shutdown {
            signal: watching,
            tasks: open.downgrade(),
        };
        ShutdownSwitch {
            signal: Arc::new(signal),
            open: Some(open),
            ended,
            handle,
        }
    }

    /// A handle for the tasks to watch.
    pub fn handle(&self) -> Shutdown {
        self.handle.clone()
    }

    /// Starts the shutdown: every handle's [`Shutdown::requested`] resolves.
    pub(crate) fn pull(&self) {
        self.signal.send_replace(true);
    }

    /// Waits for `cause`, then pulls the switch (a future that owns what it needs).
    pub(crate) fn pull_on(
        &self,
        cause: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let signal = self.signal.clone();
        async move {
            cause.await;
            signal.send_replace(true);
        }
    }

    /// Pulls the switch (if not yet) and waits until every tracked task has ended, or
    /// `grace` has passed; `false` when some were still running. [`Shutdown::track`]
    /// gives nothing from now on.
    pub(crate) async fn drain(&mut self, grace: Duration) -> bool {
        self.pull();
        self.open = None;
        tokio::time::timeout(grace, async { while self.ended.recv().await.is_some() {} })
            .await
            .is_ok()
    }
}

impl Default for ShutdownSwitch {
    fn default() -> ShutdownSwitch {
        ShutdownSwitch::new()
    }
}

impl Shutdown {
    /// Whether the shutdown has started.
    pub(crate) fn is_requested(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the shutdown has started (at once if it has). Cancel-safe: a loop
    /// may `select!` on it again and again.
    pub(crate) fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut signal = self.signal.clone();
        async move {
            // An error means the switch is gone, which is a shutdown too.
            let _ = signal.wait_for(|pulled| *pulled).await;
        }
    }

    /// Counts a long-lived task that the application waits for on shutdown; `None` once
    /// the application has begun waiting (the task should not begin).
    pub(crate) fn track(&self) -> Option<TaskGuard> {
        self.tasks.upgrade().map(TaskGuard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tracked_tasks_and_the_signal_reaches_every_handle() {
        let mut switch = ShutdownSwitch::new();
        let handle = switch.handle();
        assert!(!handle.is_requested());
        let guard = handle.track().expect("tracked before the shutdown");
        let watcher = handle.clone();
        let task = tokio::spawn(async move {
            watcher.requested().await;
            // Ends a moment after the signal, as a socket sending its Close does.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(guard);
        });
        assert!(switch.drain(Duration::from_secs(5)).await, "the task ended");
        task.await.unwrap();
        assert!(handle.is_requested());
        assert!(
            handle.track().is_none(),
            "nothing starts once the shutdown drains"
        );
        // Resolves at once for a latecomer.
        tokio::time::timeout(Duration::from_secs(1), handle.requested())
            .await
            .expect("already requested");
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace() {
        let mut switch = ShutdownSwitch::new();
        let stuck = switch.handle().track().unwrap();
        assert!(!switch.drain(Duration::from_millis(50)).await);
        drop(stuck);
        assert!(switch.drain(Duration::from_secs(5)).await);
    }
}
