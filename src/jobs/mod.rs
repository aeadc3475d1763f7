//! Story generation as durable jobs. A story in `pending` (or `in_progress` with an
//! expired lease) is its own job: a worker claims it with a lease, renews the lease while
//! it works, and another worker takes it over if the lease runs out (a crash or restart
//! loses nothing). Work already stored (chapters, media) is not done again.

mod claim;
mod pipeline;

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::vocabulary::StoryId;

use crate::config::WorkerConfig;
use crate::domain::Domain;
use crate::domain::stories::StoryStatus;
use crate::shutdown::Shutdown;

pub(crate) use claim::Claimed;
use pipeline::Redone;

/// Claims of one story that ended in an internal error before it is marked failed.
const MAX_JOB_ATTEMPTS: i32 = 5;

/// Claims stories and runs the generation pipeline for them.
#[derive(Clone)]
pub(crate) struct StoryWorker {
    inner: Arc<Inner>,
}

struct Inner {
    domain: Domain,
    config: WorkerConfig,
    /// Identifies this worker's leases.
    id: String,
}

impl StoryWorker {
    pub(crate) fn new(domain: Domain, config: WorkerConfig) -> StoryWorker {
        StoryWorker {
            inner: Arc::new(Inner {
                domain,
                config,
                id: format!("worker-{}", Uuid::new_v4()),
            }),
        }
    }

    /// Runs until the shutdown starts; then stops claiming, gives in-flight stories the
    /// configured grace to finish, and releases the leases of those that did not, so
    /// another worker picks them up at once.
    pub(crate) async fn run(self, shutdown: Shutdown) {
        let inner = &self.inner;
        let grace = inner.config.shutdown_grace;
        let slots = Arc::new(Semaphore::new(inner.config.concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut claimed: std::collections::HashMap<StoryId, claim::Job> = Default::default();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<StoryId>();
        tracing::info!(worker = %inner.id, concurrency = inner.config.concurrency, "story worker started");
        loop {
            while let Ok(id) = done_rx.try_recv() {
                claimed.remove(&id);
            }
            // Claim while there is room.
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                match claim::claim(&inner.domain, &inner.id, inner.config.lease).await {
                    Ok(Some(job)) => {
                        claimed.insert(job.id, job.job);
                        let worker = self.clone();
                        let done = done_tx.clone();
                        running.spawn(async move {
                            let id = job.id;
                            worker.work_on(job).await;
                            drop(permit);
                            let _ = done.send(id);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = ?e, "claiming a story failed");
                        break;
                    }
                }
            }
            // Then chapters to write again, while there is room.
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                match claim::claim_regeneration(&inner.domain, &inner.id, inner.config.lease).await
                {
                    Ok(Some((job, row))) => {
                        claimed.insert(job.id, job.job);
                        let worker = self.clone();
                        let done = done_tx.clone();
                        running.spawn(async move {
                            let id = job.id;
                            worker.regenerate(job, row).await;
                            drop(permit);
                            let _ = done.send(id);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = ?e, "claiming a chapter regeneration failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.requested() => break,
                _ = inner.domain.work_available() => {}
                _ = tokio::time::sleep(inner.config.poll) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
            if shutdown.is_requested() {
                break;
            }
        }
        tracing::info!(in_flight = running.len(), "story worker stopping");
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.abort_all();
            while let Ok(id) = done_rx.try_recv() {
                claimed.remove(&id);
            }
            for (id, job) in claimed {
                if let Err(e) = claim::release(&inner.domain, &inner.id, (id, job)).await {
                    tracing::warn!(story_id = %id, error = ?e, "releasing a lease failed; it will expire");
                }
            }
        }
    }

    /// Writes one chapter of a completed story again, renewing the story's lease
    /// meanwhile; an internal failure leaves the request open for another attempt (after
    /// a few, it fails visibly).
    async fn regenerate(&self, job: Claimed, row: crate::store::models::RegenerationRow) {
        let inner = &self.inner;
        let (_heartbeat, lost_rx) = self.heartbeat(&job);
        let span = tracing::info_span!("regenerate", story_id = %job.id, chapter = row.chapter_number, attempt = row.attempts);
        let outcome = tracing::Instrument::instrument(
            pipeline::regenerate(
                &inner.domain,
                inner.domain.providers(),
                &inner.id,
                &job,
                &row,
                lost_rx,
            ),
            span,
        )
        .await;
        let (status, reason) = match outcome {
            Ok(Redone::Done) => (StoryStatus::Completed, None),
            Ok(Redone::Failed(reason)) => (StoryStatus::Failed, Some(reason)),
            // Another worker has the story now; it ends the request.
            Ok(Redone::Lost) => return,
            Err(e) if row.attempts < MAX_JOB_ATTEMPTS => {
                tracing::error!(story_id = %job.id, attempt = row.attempts, error = ?e, "chapter regeneration stopped by an internal error; it will be tried again");
                if let Err(e) = claim::release(&inner.domain, &inner.id, (job.id, job.job)).await {
                    tracing::warn!(story_id = %job.id, error = ?e, "could not hand the story back; its lease will expire");
                }
                return;
            }
            Err(e) => {
                tracing::error!(story_id = %job.id, attempt = row.attempts, error = ?e, "chapter regeneration stopped by an internal error");
                (
                    StoryStatus::Failed,
                    Some(
                        "내부 오류로 장을 다시 만들지 못했습니다. 다시 요청해 주세요.".to_string(),
                    ),
                )
            }
        };
        let ended = claim::end_regeneration(
            &inner.domain,
            &inner.id,
            &job,
            &row,
            status,
            reason.as_deref(),
        )
        .await;
        match ended {
            Ok(false) => {
                tracing::warn!(story_id = %job.id, "lease lost before the chapter regeneration could be ended; its new holder ends it")
            }
            Ok(true) => {
                tracing::info!(story_id = %job.id, chapter = row.chapter_number, status = status.as_str(), reason = reason.as_deref().unwrap_or(""), "chapter regeneration finished")
            }
            Err(e) => {
                tracing::warn!(story_id = %job.id, error = ?e, "ending a chapter regeneration failed; it will be tried again")
            }
        }
    }

    /// Renews `job`'s lease every third of its length until dropped; the receiver turns
    /// true when the lease is lost.
    fn heartbeat(&self, job: &Claimed) -> (AbortOnDrop, watch::Receiver<bool>) {
        let inner = &self.inner;
        let lease = inner.config.lease;
        let (lost_tx, lost_rx) = watch::channel(false);
        let heartbeat = AbortOnDrop({
            let domain = inner.domain.clone();
            let owner = inner.id.clone();
            let (id, job) = (job.id, job.job);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match claim::renew(&domain, &owner, (id, job), lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(story_id = %id, "lease lost; stopping work on this story");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(story_id = %id, error = ?e, "renewing lease failed")
                        }
                    }
                }
            })
        });
        (heartbeat, lost_rx)
    }

    /// Generates one claimed story, renewing its lease meanwhile.
    async fn work_on(&self, job: Claimed) {
        let inner = &self.inner;
        let (_heartbeat, lost_rx) = self.heartbeat(&job);
        let span = tracing::info_span!("generate", story_id = %job.id, attempt = job.attempts);
        let outcome = tracing::Instrument::instrument(
            pipeline::run(
                &inner.domain,
                inner.domain.providers(),
                &inner.id,
                &job,
                lost_rx,
            ),
            span,
        )
        .await;
        if let Err(e) = outcome {
            tracing::error!(story_id = %job.id, attempt = job.attempts, error = ?e, "generation stopped by an internal error");
            // Another attempt resumes from what is stored; after a few, give up visibly.
            let next = if job.attempts >= MAX_JOB_ATTEMPTS {
                claim::finish(
                    &inner.domain,
                    &inner.id,
                    job.id,
                    StoryStatus::Failed,
                    Some("내부 오류로 이야기를 완성하지 못했습니다. 다시 시도해 주세요."),
                )
                .await
                .map(|_| ())
            } else {
                claim::release(&inner.domain, &inner.id, (job.id, job.job)).await
            };
            if let Err(e) = next {
                tracing::warn!(story_id = %job.id, error = ?e, "could not hand the story back; its lease will expire");
            }
        }
    }
}

/// Aborts a helper task when the work it belongs to ends or is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
