//! Requests to write one chapter of a completed story again (`chapter_regenerations`):
//! asked within the account's story quota, one open at a time per story, claimed by a
//! worker through the story's own lease (the story stays `completed`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use diesel_async::RunQueryDsl;

use super::models::RegenerationRow;
use super::schema::{chapter_regenerations as regen, chapters, media_files, stories};
use super::stories::{Outcome, within_quota};
use super::types::{ChapterId, MediaFileId, StoryId, StoryRequestId, StoryStatus};
use super::{Db, DbError, locked_transaction, on_db, transaction};

/// How asking for a regeneration went.
pub(crate) enum Requested {
    Inserted,
    /// The account's story quota is used up; its oldest counted request.
    Exceeded {
        oldest: NaiveDateTime,
    },
    /// The story already has one pending or in progress.
    Busy,
}

/// Records `row` as the account's request, within `quota` requests (stories and
/// regenerations together) since `since`, serialised per account.
pub(crate) async fn request(
    db: &mut Db<'_>,
    row: &RegenerationRow,
    request_id: StoryRequestId,
    since: NaiveDateTime,
    quota: i64,
) -> Result<Requested, DbError> {
    let result: Result<(), Outcome> = locked_transaction!(db, &row.owner_id, |tx| {
        let request = (&row.owner_id, request_id, row.created_at);
        within_quota(&mut *tx, request, since, quota).await?;
        on_db!(&mut *tx, |c| diesel::insert_into(regen::table)
            .values(row)
            .execute(c)
            .await)?;
        Ok(())
    });
    match result {
        Ok(()) => Ok(Requested::Inserted),
        Err(Outcome::Exceeded(oldest)) => Ok(Requested::Exceeded { oldest }),
        Err(Outcome::Db(e)) if e.is_unique_violation() => Ok(Requested::Busy),
        Err(Outcome::Db(e)) => Err(e),
    }
}

/// Takes the lease of the completed story whose regeneration has waited longest (and
/// whose lease is free or expired).
const LEASE_PG: &str = "UPDATE stories SET lease_owner = $1, lease_expires_at = $2 \
     WHERE id = (SELECT s.id FROM chapter_regenerations r JOIN stories s ON s.id = r.story_id \
       WHERE r.status IN ('pending', 'in_progress') AND s.status = 'completed' \
         AND (s.lease_expires_at IS NULL OR s.lease_expires_at < $3) \
       ORDER BY r.created_at, r.id LIMIT 1 FOR UPDATE OF s SKIP LOCKED) \
     RETURNING id";
const LEASE_SQLITE: &str = "UPDATE stories SET lease_owner = ?1, lease_expires_at = ?2 \
     WHERE id = (SELECT s.id FROM chapter_regenerations r JOIN stories s ON s.id = r.story_id \
       WHERE r.status IN ('pending', 'in_progress') AND s.status = 'completed' \
         AND (s.lease_expires_at IS NULL OR s.lease_expires_at < ?3) \
       ORDER BY r.created_at, r.id LIMIT 1) \
     RETURNING id";

#[derive(QueryableByName)]
struct Leased {
    #[diesel(sql_type = Text)]
    id: StoryId,
}

/// Claims the oldest open regeneration: the story's lease for `owner`, then the
/// regeneration marked in progress (an attempt more). `None` when there is none.
pub(crate) async fn claim(
    db: &mut Db<'_>,
    owner: &str,
    expires: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Option<RegenerationRow>, DbError> {
    let lease = match db {
        Db::Pg(_) => LEASE_PG,
        Db::Sqlite(_) => LEASE_SQLITE,
    };
    let query = diesel::sql_query(lease)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(expires)
        .bind::<Timestamp, _>(now);
    let leased: Option<Leased> = on_db!(&mut *db, |c| query.get_result(c).await.optional())?;
    let Some(leased) = leased else {
        return Ok(None);
    };
    // Only the lease holder gets here: no other worker marks this story's request.
    let open = regen::table
        .filter(regen::story_id.eq(leased.id))
        .filter(regen::status.eq_any([StoryStatus::Pending, StoryStatus::InProgress]));
    let row: Option<RegenerationRow> = on_db!(&mut *db, |c| open
        .select(RegenerationRow::as_select())
        .first(c)
        .await
        .optional())?;
    let Some(mut row) = row else {
        // Finished or deleted meanwhile: the lease goes back.
        on_db!(&mut *db, |c| diesel::update(
            stories::table
                .find(leased.id)
                .filter(stories::lease_owner.eq(owner))
        )
        .set((
            stories::lease_owner.eq(None::<String>),
            stories::lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(c)
        .await)?;
        return Ok(None);
    };
    on_db!(&mut *db, |c| diesel::update(regen::table.find(row.id))
        .set((
            regen::status.eq(StoryStatus::InProgress),
            regen::attempts.eq(regen::attempts + 1),
            regen::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    row.status = StoryStatus::InProgress;
    row.attempts += 1;
    Ok(Some(row))
}

/// Ends a regeneration as `completed` or `failed`; its story shows it changed.
pub(crate) async fn finish(
    db: &mut Db<'_>,
    row: &RegenerationRow,
    status: StoryStatus,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(&mut *db, |c| diesel::update(regen::table.find(row.id))
        .set((
            regen::status.eq(status),
            regen::failure_reason.eq(reason),
            regen::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    on_db!(&mut *db, |c| diesel::update(
        stories::table.find(row.story_id)
    )
    .set(stories::updated_at.eq(now))
    .execute(c)
    .await)?;
    Ok(())
}

/// A story's regenerations, newest first (at most `limit`).
pub(crate) async fn of_story(
    db: &mut Db<'_>,
    story: StoryId,
    limit: i64,
) -> Result<Vec<RegenerationRow>, DbError> {
    Ok(on_db!(db, |c| regen::table
        .filter(regen::story_id.eq(story))
        .order_by((regen::created_at.desc(), regen::id.desc()))
        .limit(limit)
        .select(RegenerationRow::as_select())
        .load(c)
        .await)?)
}

/// Gives a chapter new words in place (its id, and the files not redone, stay); its
/// story shows it changed.
pub(crate) async fn rewrite_chapter(
    db: &mut Db<'_>,
    (story, chapter): (StoryId, ChapterId),
    title: &str,
    content: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    // The story row first, then the chapter (whose trigger updates the story's revision):
    // the order a story's deletion locks them in, so the two never deadlock.
    transaction!(db, |tx| {
        on_db!(&mut *tx, |c| diesel::update(stories::table.find(story))
            .set(stories::updated_at.eq(now))
            .execute(c)
            .await)?;
        on_db!(&mut *tx, |c| diesel::update(chapters::table.find(chapter))
            .set((chapters::title.eq(title), chapters::content.eq(content)))
            .execute(c)
            .await)?;
        Ok::<_, DbError>(())
    })
}

/// Takes narration `file` away from a chapter, if it is still the chapter's (its words
/// changed and a new narration could not be made: the old one reads other words).
pub(crate) async fn unlink_audio(
    db: &mut Db<'_>,
    (story, chapter): (StoryId, ChapterId),
    file: MediaFileId,
) -> Result<(), DbError> {
    let linked = chapters::table
        .find(chapter)
        .filter(chapters::audio_file_id.eq(file));
    transaction!(db, |tx| {
        // The story row locked first, as in `rewrite_chapter`.
        on_db!(&mut *tx, |c| diesel::update(stories::table.find(story))
            .set(stories::revision.eq(stories::revision))
            .execute(c)
            .await)?;
        on_db!(&mut *tx, |c| diesel::update(linked)
            .set((
                chapters::audio_file_id.eq(None::<MediaFileId>),
                chapters::audio_path.eq(None::<String>),
                chapters::audio_content_type.eq(None::<String>),
            ))
            .execute(c)
            .await)?;
        Ok::<_, DbError>(())
    })
}

/// Forgets a media file no chapter links any more; its path, for the file on disk.
pub(crate) async fn drop_file(
    db: &mut Db<'_>,
    file: MediaFileId,
) -> Result<Option<String>, DbError> {
    let linked = chapters::table
        .filter(
            chapters::image_file_id
                .eq(file)
                .or(chapters::audio_file_id.eq(file)),
        )
        .count();
    let n: i64 = on_db!(&mut *db, |c| linked.get_result(c).await)?;
    if n > 0 {
        return Ok(None);
    }
    let path: Option<String> = on_db!(&mut *db, |c| media_files::table
        .find(file)
        .select(media_files::path)
        .first(c)
        .await
        .optional())?;
    on_db!(&mut *db, |c| diesel::delete(media_files::table.find(file))
        .execute(c)
        .await)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_leases_differ_only_in_placeholders_and_the_lock() {
        let sqlite_spelling = LEASE_PG
            .replace('$', "?")
            .replace(" FOR UPDATE OF s SKIP LOCKED", "");
        assert_eq!(sqlite_spelling, LEASE_SQLITE);
    }
}
