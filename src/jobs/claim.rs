//! Leases on story jobs, held by one worker at a time (their SQL is `store::jobs`).

use std::time::Duration;

use crate::domain::Domain;
use crate::error::{AppError, AppResult};
pub(crate) use crate::store::jobs::Job;
use crate::store::{self, to_db};
use crate::vocabulary::{StoryId, StoryStatus};

/// A story this worker holds the lease of, and for which work.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub id: StoryId,
    pub attempts: i32,
    pub job: Job,
}

/// Claims the oldest claimable story, if any.
pub(crate) async fn claim(
    domain: &Domain,
    owner: &str,
    lease: Duration,
) -> AppResult<Option<Claimed>> {
    let now = store::now();
    let expires =
        to_db(now + chrono::Duration::from_std(lease).map_err(|e| AppError::Internal(e.into()))?);
    let now = to_db(now);
    let row = store::jobs::claim(&mut domain.pool().get().await?.db(), owner, expires, now).await?;
    let Some(row) = row else { return Ok(None) };
    let id = row.id;
    tracing::info!(story_id = %id, attempt = row.attempts, "story claimed");
    domain.story_changed(id).await;
    Ok(Some(Claimed {
        id,
        attempts: row.attempts,
        job: Job::Generation,
    }))
}

/// Extends the lease; `false` when this worker no longer holds it.
pub(crate) async fn renew(
    domain: &Domain,
    owner: &str,
    (id, job): (StoryId, Job),
    lease: Duration,
) -> AppResult<bool> {
    let expires = to_db(
        store::now()
            + chrono::Duration::from_std(lease).map_err(|e| AppError::Internal(e.into()))?,
    );
    let mut conn = domain.pool().get().await?;
    Ok(store::jobs::renew(&mut conn.db(), owner, (id, job), expires).await?)
}

/// Whether this worker still holds the lease (checked before each write).
pub(crate) async fn holds(domain: &Domain, owner: &str, job: &Claimed) -> AppResult<bool> {
    let now = to_db(store::now());
    let mut conn = domain.pool().get().await?;
    Ok(store::jobs::holds(&mut conn.db(), owner, (job.id, job.job), now).await?)
}

/// Gives a lease up (on shutdown), so another worker can resume at once.
pub(crate) async fn release(
    domain: &Domain,
    owner: &str,
    (id, job): (StoryId, Job),
) -> AppResult<()> {
    let mut conn = domain.pool().get().await?;
    store::jobs::release(&mut conn.db(), owner, (id, job)).await?;
    Ok(())
}

/// Ends a job: the final status is written only while holding the lease.
pub(crate) async fn finish(
    domain: &Domain,
    owner: &str,
    id: StoryId,
    status: StoryStatus,
    reason: Option<&str>,
) -> AppResult<bool> {
    let now = to_db(store::now());
    let mut conn = domain.pool().get().await?;
    let finished = store::jobs::finish(&mut conn.db(), owner, id, status, reason, now).await?;
    drop(conn);
    if finished {
        domain.story_changed(id).await;
    }
    Ok(finished)
}

/// Claims the oldest open chapter regeneration, if any: its story's lease (the story
/// stays `completed`) and the request, marked in progress.
pub(crate) async fn claim_regeneration(
    domain: &Domain,
    owner: &str,
    lease: Duration,
) -> AppResult<Option<(Claimed, crate::store::models::RegenerationRow)>> {
    let now = store::now();
    let expires =
        to_db(now + chrono::Duration::from_std(lease).map_err(|e| AppError::Internal(e.into()))?);
    let now = to_db(now);
    let row =
        store::regenerations::claim(&mut domain.pool().get().await?.db(), owner, expires, now)
            .await?;
    let Some(row) = row else { return Ok(None) };
    tracing::info!(story_id = %row.story_id, chapter = row.chapter_number, attempt = row.attempts, "chapter regeneration claimed");
    domain.story_changed(row.story_id).await;
    Ok(Some((
        Claimed {
            id: row.story_id,
            attempts: row.attempts,
            job: Job::Regeneration,
        },
        row,
    )))
}

/// Ends a regeneration (`completed` or `failed`) and gives its story's lease back, only
/// while this worker holds it (`false` when it does not: another worker took the story
/// over and ends the request itself).
pub(crate) async fn end_regeneration(
    domain: &Domain,
    owner: &str,
    job: &Claimed,
    row: &crate::store::models::RegenerationRow,
    status: StoryStatus,
    reason: Option<&str>,
) -> AppResult<bool> {
    if !holds(domain, owner, job).await? {
        return Ok(false);
    }
    let now = to_db(store::now());
    let mut conn = domain.pool().get().await?;
    store::regenerations::finish(&mut conn.db(), row, status, reason, now).await?;
    store::jobs::release(&mut conn.db(), owner, (job.id, job.job)).await?;
    drop(conn);
    domain.story_changed(row.story_id).await;
    Ok(true)
}
