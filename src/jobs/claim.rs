//! Leases on story jobs. The one place with backend-specific SQL for jobs:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, a single atomic `UPDATE … RETURNING` on
//! SQLite (which has one writer at a time).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::domain::Domain;
use crate::error::{AppError, AppResult};
use crate::store::models::StoryRow;
use crate::store::schema::stories;
use crate::store::types::StoryStatus;
use crate::store::{self, Conn, to_db};
use crate::with_conn;

/// A story this worker holds the lease of.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub id: Uuid,
    pub attempts: i32,
}

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
    let mut conn = domain.pool().get().await?;
    let claim = match &conn {
        Conn::Pg(_) => CLAIM_PG,
        Conn::Sqlite(_) => CLAIM_SQLITE,
    };
    let query = diesel::sql_query(claim)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(expires)
        .bind::<Timestamp, _>(now);
    let row: Option<StoryRow> = with_conn!(&mut conn, |c| query.get_result(c).await.optional())?;
    drop(conn);
    let Some(row) = row else { return Ok(None) };
    let id = Uuid::parse_str(&row.id).map_err(|e| AppError::Internal(e.into()))?;
    tracing::info!(story_id = %id, attempt = row.attempts, "story claimed");
    domain.story_changed(id).await;
    Ok(Some(Claimed {
        id,
        attempts: row.attempts,
    }))
}

/// Extends the lease; `false` when this worker no longer holds it.
pub(crate) async fn renew(
    domain: &Domain,
    owner: &str,
    id: Uuid,
    lease: Duration,
) -> AppResult<bool> {
    let expires = to_db(
        store::now()
            + chrono::Duration::from_std(lease).map_err(|e| AppError::Internal(e.into()))?,
    );
    let id = id.to_string();
    let mut conn = domain.pool().get().await?;
    let n = with_conn!(&mut conn, |c| {
        diesel::update(
            stories::table
                .find(&id)
                .filter(stories::lease_owner.eq(owner))
                .filter(stories::status.eq(StoryStatus::InProgress)),
        )
        .set(stories::lease_expires_at.eq(Some(expires)))
        .execute(c)
        .await
    })?;
    Ok(n == 1)
}

/// Whether this worker still holds the lease (checked before each write).
pub(crate) async fn holds(domain: &Domain, owner: &str, id: Uuid) -> AppResult<bool> {
    let id = id.to_string();
    let now = to_db(store::now());
    let mut conn = domain.pool().get().await?;
    let n: i64 = with_conn!(&mut conn, |c| {
        stories::table
            .find(&id)
            .filter(stories::lease_owner.eq(owner))
            .filter(stories::status.eq(StoryStatus::InProgress))
            .filter(stories::lease_expires_at.gt(now))
            .count()
            .get_result(c)
            .await
    })?;
    Ok(n == 1)
}

/// Gives a lease up (on shutdown), so another worker can resume at once.
pub(crate) async fn release(domain: &Domain, owner: &str, id: Uuid) -> AppResult<()> {
    let id = id.to_string();
    let mut conn = domain.pool().get().await?;
    with_conn!(&mut conn, |c| {
        diesel::update(
            stories::table
                .find(&id)
                .filter(stories::lease_owner.eq(owner))
                .filter(stories::status.eq(StoryStatus::InProgress)),
        )
        .set((
            stories::lease_owner.eq(None::<String>),
            stories::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
        ))
        .execute(c)
        .await
    })?;
    Ok(())
}

/// Ends a job: the final status is written only while holding the lease.
pub(crate) async fn finish(
    domain: &Domain,
    owner: &str,
    id: Uuid,
    status: StoryStatus,
    reason: Option<&str>,
) -> AppResult<bool> {
    let sid = id.to_string();
    let now = to_db(store::now());
    let mut conn = domain.pool().get().await?;
    let n = with_conn!(&mut conn, |c| {
        diesel::update(
            stories::table
                .find(&sid)
                .filter(stories::lease_owner.eq(owner))
                .filter(stories::status.eq(StoryStatus::InProgress)),
        )
        .set((
            stories::status.eq(status),
            stories::failure_reason.eq(reason),
            stories::lease_owner.eq(None::<String>),
            stories::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
            stories::updated_at.eq(now),
        ))
        .execute(c)
        .await
    })?;
    drop(conn);
    if n == 1 {
        domain.story_changed(id).await;
    }
    Ok(n == 1)
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
