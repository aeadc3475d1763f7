//! Leases on story jobs and the record of their provider attempts. The one place with
//! backend-specific SQL for jobs: `FOR UPDATE SKIP LOCKED` on PostgreSQL, a single atomic
//! `UPDATE … RETURNING` on SQLite (which has one writer at a time).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use diesel_async::RunQueryDsl;

use super::models::{GenerationStepRow, StoryRow};
use super::schema::{generation_steps as steps, stories};
use super::types::{StoryId, StoryStatus};
use super::{Db, DbError, on_db};

/// The claim, one statement per backend: PostgreSQL binds `$n` and locks the picked row
/// (`FOR UPDATE SKIP LOCKED`, so two workers never pick the same one); SQLite binds `?n`
/// and needs no lock (one writer at a time). `$1`/`?1` the owner, `$2`/`?2` the lease's
/// end, `$3`/`?3` now.
const CLAIM_PG: &str = "UPDATE stories SET status = 'in_progress', lease_owner = $1, \
     lease_expires_at = $2, attempts = attempts + 1, \
     updated_at = CASE WHEN status = 'pending' THEN $3 ELSE updated_at END \
     WHERE id = (SELECT id FROM stories \
       WHERE status = 'pending' \
          OR (status = 'in_progress' AND (lease_expires_at IS NULL OR lease_expires_at < $3)) \
       ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING *";
const CLAIM_SQLITE: &str = "UPDATE stories SET status = 'in_progress', lease_owner = ?1, \
     lease_expires_at = ?2, attempts = attempts + 1, \
     updated_at = CASE WHEN status = 'pending' THEN ?3 ELSE updated_at END \
     WHERE id = (SELECT id FROM stories \
       WHERE status = 'pending' \
          OR (status = 'in_progress' AND (lease_expires_at IS NULL OR lease_expires_at < ?3)) \
       ORDER BY created_at, id LIMIT 1) \
     RETURNING *";

/// Leases the oldest claimable story (pending, or in progress with a lapsed lease) to
/// `owner` until `expires`, counting the attempt.
pub(crate) async fn claim(
    db: &mut Db<'_>,
    owner: &str,
    expires: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Option<StoryRow>, DbError> {
    let claim = match db {
        Db::Pg(_) => CLAIM_PG,
        Db::Sqlite(_) => CLAIM_SQLITE,
    };
    let query = diesel::sql_query(claim)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(expires)
        .bind::<Timestamp, _>(now);
    Ok(on_db!(db, |c| query.get_result(c).await.optional())?)
}

/// Story `$id` while `$owner` holds its lease for `$job`'s kind of work: generation
/// holds an `in_progress` story, a chapter regeneration a `completed` one (so a stale
/// generation task of a worker never passes for its regeneration of the same story).
macro_rules! held {
    ($id:expr, $owner:expr, $job:expr) => {
        stories::table
            .find($id)
            .filter(stories::lease_owner.eq($owner))
            .filter(stories::status.eq($job.leased()))
    };
}

/// Which kind of work a lease is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// Writing a story (the story is `in_progress`).
    Generation,
    /// Writing a chapter of a `completed` story again.
    Regeneration,
}

impl Job {
    fn leased(self) -> StoryStatus {
        match self {
            Job::Generation => StoryStatus::InProgress,
            Job::Regeneration => StoryStatus::Completed,
        }
    }
}

/// Extends `owner`'s lease on story `id` to `expires`; `false` when it holds none.
pub(crate) async fn renew(
    db: &mut Db<'_>,
    owner: &str,
    (id, job): (StoryId, Job),
    expires: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(held!(id, owner, job),)
        .set(stories::lease_expires_at.eq(Some(expires)))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Whether `owner` holds an unexpired lease on story `id` at `now`.
pub(crate) async fn holds(
    db: &mut Db<'_>,
    owner: &str,
    (id, job): (StoryId, Job),
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n: i64 = on_db!(db, |c| held!(id, owner, job)
        .filter(stories::lease_expires_at.gt(now))
        .count()
        .get_result(c)
        .await)?;
    Ok(n == 1)
}

/// Gives `owner`'s lease on story `id` up, leaving it in progress for the next claim.
pub(crate) async fn release(
    db: &mut Db<'_>,
    owner: &str,
    (id, job): (StoryId, Job),
) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(held!(id, owner, job),)
        .set((
            stories::lease_owner.eq(None::<String>),
            stories::lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Writes story `id`'s final `status` (and `reason`) and ends the lease, only while
/// `owner` holds it; `false` when it does not.
pub(crate) async fn finish(
    db: &mut Db<'_>,
    owner: &str,
    id: StoryId,
    status: StoryStatus,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    // Only an unexpired lease: a worker whose lease ran out (not yet taken over) must
    // not finish a story it stopped writing.
    let n = on_db!(db, |c| diesel::update(
        held!(id, owner, Job::Generation).filter(stories::lease_expires_at.gt(now))
    )
    .set((
        stories::status.eq(status),
        stories::failure_reason.eq(reason),
        stories::lease_owner.eq(None::<String>),
        stories::lease_expires_at.eq(None::<NaiveDateTime>),
        stories::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Records provider attempts.
pub(crate) async fn insert_steps(
    db: &mut Db<'_>,
    rows: &[GenerationStepRow],
) -> Result<(), DbError> {
    // One row at a time: SQLite's batch insert cannot take optional columns.
    for row in rows {
        on_db!(&mut *db, |c| diesel::insert_into(steps::table)
            .values(row)
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// The recorded provider attempts of story `id`, oldest first.
pub(crate) async fn steps_of(
    db: &mut Db<'_>,
    id: StoryId,
) -> Result<Vec<GenerationStepRow>, DbError> {
    Ok(on_db!(db, |c| steps::table
        .filter(steps::story_id.eq(id))
        .order_by((steps::started_at.asc(), steps::attempt.asc()))
        .select(GenerationStepRow::as_select())
        .load(c)
        .await)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_claims_differ_only_in_placeholders_and_the_lock() {
        let sqlite_spelling = CLAIM_PG
            .replace('$', "?")
            .replace(" FOR UPDATE SKIP LOCKED", "");
        assert_eq!(sqlite_spelling, CLAIM_SQLITE);
        assert!(!CLAIM_SQLITE.contains('$'));
    }
}
