//! Stories, their chapters and media. The reads — one story with its chapters, a keyset
//! page of story rows with their chapters — take one statement for one story and, for a
//! page, its rows then the chapters the chapter cache does not hold at the rows' revisions
//! (none when warm); on SQLite each is one call on the connection's thread, read with
//! diesel's synchronous API. A chapter records its media's paths, so no read looks files
//! up.
//! The writes: the quota-checked insert, renaming, deleting, retrying, the worker's
//! status, title and chapters, and linking a chapter's media.

use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

pub(crate) use super::models::MediaColumns;
use super::models::{ChapterRead, ChapterRow, ChapterText, MediaFileRow, StoryRow};
use super::schema::{chapters, media_files, stories, story_requests};
use super::types::{ChapterId, StoryId, StoryRequestId, StoryStatus, UserId};
use super::{ChapterCache, Db, DbError, Page, SqliteConn, locked_transaction, on_db, transaction};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortKey {
    CreatedAt,
    UpdatedAt,
    Title,
}

impl SortKey {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
            SortKey::Title => "title",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortOrder {
    Asc,
    Desc,
}

/// Where a listing resumes: after this sort key value and id.
#[derive(Clone)]
pub(crate) enum Resume {
    CreatedAt(NaiveDateTime, StoryId),
    UpdatedAt(NaiveDateTime, StoryId),
    Title(Option<String>, StoryId),
}

/// One page of stories: the filters, the order, and where it resumes.
#[derive(Clone)]
pub(crate) struct PageQuery {
    /// Only this account's stories (`None`: everyone's, for operators).
    pub(crate) owner: Option<UserId>,
    pub(crate) status: Option<StoryStatus>,
    /// Created at or after this (inclusive) and before that (exclusive).
    pub(crate) created_after: Option<NaiveDateTime>,
    pub(crate) created_before: Option<NaiveDateTime>,
    pub(crate) sort: SortKey,
    pub(crate) order: SortOrder,
    pub(crate) resume: Option<Resume>,
    /// Rows the page holds (one more is read: is there a next page?).
    pub(crate) first: usize,
}

/// `$q` (a boxed select of stories) ordered by `$sort` in `$order`, ties broken by id.
macro_rules! ordered {
    ($q:expr, $sort:expr, $order:expr) => {
        match ($sort, $order) {
            (SortKey::CreatedAt, SortOrder::Asc) => {
                $q.order_by((stories::created_at.asc(), stories::id.asc()))
            }
            (SortKey::CreatedAt, SortOrder::Desc) => {
                $q.order_by((stories::created_at.desc(), stories::id.desc()))
            }
            (SortKey::UpdatedAt, SortOrder::Asc) => {
                $q.order_by((stories::updated_at.asc(), stories::id.asc()))
            }
            (SortKey::UpdatedAt, SortOrder::Desc) => {
                $q.order_by((stories::updated_at.desc(), stories::id.desc()))
            }
            // Stories without a title come last in both orders.
            (SortKey::Title, SortOrder::Asc) => $q.order_by((
                stories::title.is_null().asc(),
                stories::title.asc(),
                stories::id.asc(),
            )),
            (SortKey::Title, SortOrder::Desc) => $q.order_by((
                stories::title.is_null().asc(),
                stories::title.desc(),
                stories::id.desc(),
            )),
        }
    };
}

/// `$q` (a boxed select of stories, ordered as [`ordered!`]) after `$resume` in `$order`.
macro_rules! resumed {
    ($q:expr, $resume:expr, $order:expr) => {
        match ($resume, $order) {
            (None, _) => $q,
            (Some(Resume::CreatedAt(t, id)), SortOrder::Asc) => $q.filter(
                stories::created_at
                    .gt(*t)
                    .or(stories::created_at.eq(*t).and(stories::id.gt(id))),
            ),
            (Some(Resume::CreatedAt(t, id)), SortOrder::Desc) => $q.filter(
                stories::created_at
                    .lt(*t)
                    .or(stories::created_at.eq(*t).and(stories::id.lt(id))),
            ),
            (Some(Resume::UpdatedAt(t, id)), SortOrder::Asc) => $q.filter(
                stories::updated_at
                    .gt(*t)
                    .or(stories::updated_at.eq(*t).and(stories::id.gt(id))),
            ),
            (Some(Resume::UpdatedAt(t, id)), SortOrder::Desc) => $q.filter(
                stories::updated_at
                    .lt(*t)
                    .or(stories::updated_at.eq(*t).and(stories::id.lt(id))),
            ),
            (Some(Resume::Title(Some(title), id)), SortOrder::Asc) => $q.filter(
                stories::title
                    .gt(title)
                    .or(stories::title.eq(title).and(stories::id.gt(id)))
                    .or(stories::title.is_null()),
            ),
            (Some(Resume::Title(Some(title), id)), SortOrder::Desc) => $q.filter(
                stories::title
                    .lt(title)
                    .or(stories::title.eq(title).and(stories::id.lt(id)))
                    .or(stories::title.is_null()),
            ),
            (Some(Resume::Title(None, id)), SortOrder::Asc) => {
                $q.filter(stories::title.is_null().and(stories::id.gt(id)))
            }
            (Some(Resume::Title(None, id)), SortOrder::Desc) => {
                $q.filter(stories::title.is_null().and(stories::id.lt(id)))
            }
        }
    };
}

/// The page's story rows for `$query` (a [`PageQuery`]), one more than asked for (is
/// there a next page?): a macro, as the boxed query's type differs per backend.
macro_rules! page_rows {
    ($query:expr) => {{
        let query: &PageQuery = $query;
        let mut q = stories::table.select(StoryRow::as_select()).into_boxed();
        if let Some(o) = &query.owner {
            q = q.filter(stories::owner_id.eq(o));
        }
        if let Some(s) = query.status {
            q = q.filter(stories::status.eq(s));
        }
        if let Some(t) = query.created_after {
            q = q.filter(stories::created_at.ge(t));
        }
        if let Some(t) = query.created_before {
            q = q.filter(stories::created_at.lt(t));
        }
        q = ordered!(q, query.sort, query.order);
        q = resumed!(q, &query.resume, query.order);
        q.limit(query.first as i64 + 1)
    }};
}

/// A page's story rows, whether there is a next page, and the rows' chapters: from
/// `cache` where it holds them at the rows' revisions, the rest read and kept. The rows
/// and any chapters on one connection: one pool checkout per page, and on SQLite one trip
/// to the connection's thread; on PostgreSQL one statement when every row's chapters are
/// cached, else two.
pub(crate) async fn page(
    db: &mut Db<'_>,
    cache: &Arc<ChapterCache>,
    query: PageQuery,
) -> Result<(Page<StoryRow>, Vec<Joined>), DbError> {
    let first = query.first;
    Ok(match db {
        // The rows, then the chapters not cached (given their ids). One statement joining
        // the page's rows (found by a subquery) with their chapters was slower in `cargo
        // bench --bench load`: 1,146 pages/s read directly and 621/s served, against 1,486
        // and 730 for the rows then the chapters (each row's story columns repeated per
        // chapter cost more than the second round trip saves).
        Db::Pg(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            let page = Page::of(page_rows!(&query).load(c).await?, first);
            let (mut joined, missing) = cached(cache, &page.rows);
            let read = chapters_pg(c, &ids_of(&missing)).await?;
            keep(cache, &missing, &read);
            joined.extend(read);
            (page, joined)
        }
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            let cache = cache.clone();
            c.spawn_blocking(move |c| {
                let page = Page::of(diesel::RunQueryDsl::load(page_rows!(&query), c)?, first);
                let (mut joined, missing) = cached(&cache, &page.rows);
                let read = chapters_sqlite(c, &ids_of(&missing))?;
                keep(&cache, &missing, &read);
                joined.extend(read);
                Ok((page, joined))
            })
            .await?
        }
    })
}

/// Story `id`'s row, and its chapters when `viewer_id` owns it (none read otherwise): the
/// row, the ownership check and the chapters in one trip. The chapters come from `cache`
/// when it holds them at the row's revision. On PostgreSQL a story the cache holds is read
/// as its row alone (its chapters read by a second statement only when the row shows
/// another revision: they changed); one it does not hold, as its row joined with its
/// chapters.
pub(crate) async fn story_with_chapters(
    db: &mut Db<'_>,
    cache: &Arc<ChapterCache>,
    id: StoryId,
    viewer: UserId,
) -> Result<(Option<StoryRow>, Vec<Joined>), DbError> {
    Ok(match db {
        Db::Pg(c) if cache.revision_of(id).is_some() => {
            // (A join whose chapters the condition on the row turns away still reads
            // them: 11 buffers against 3, and 30,000 against 43,000 statements/s in
            // pgbench.)
            let c: &mut diesel_async::AsyncPgConnection = c;
            let row: Option<StoryRow> = stories::table
                .find(id)
                .select(StoryRow::as_select())
                .first(c)
                .await
                .optional()?;
            let joined = match &row {
                Some(r) if r.owner_id == viewer => {
                    let (hit, missing) = cached(cache, std::slice::from_ref(r));
                    if missing.is_empty() {
                        hit
                    } else {
                        let read = chapters_pg(c, &[id]).await?;
                        keep(cache, &missing, &read);
                        read
                    }
                }
                _ => Vec::new(),
            };
            (row, joined)
        }
        Db::Pg(c) => {
            // One statement: the row, with its chapters joined only when the viewer owns
            // it (the row comes once per chapter, or once with none).
            let c: &mut diesel_async::AsyncPgConnection = c;
            let rows: Vec<(StoryRow, Option<ChapterRead>)> = stories::table
                // (The chapters by the id itself: their index serves it whatever the
                // columns' collations.)
                .left_join(
                    chapters::table.on(chapters::story_id.eq(id).and(stories::owner_id.eq(viewer))),
                )
                .filter(stories::id.eq(id))
                .order_by(chapters::chapter_number.asc())
                .select((StoryRow::as_select(), Option::<ChapterRead>::as_select()))
                .load(c)
                .await?;
            let mut row = None;
            let mut joined = Vec::with_capacity(rows.len());
            for (story, chapter) in rows {
                row.get_or_insert(story);
                if let Some(chapter) = chapter {
                    joined.push(chapter.files());
                }
            }
            if let Some(r) = row.as_ref().filter(|r| r.owner_id == viewer) {
                keep(cache, &[r], &joined);
            }
            (row, joined)
        }
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            let cache = cache.clone();
            c.spawn_blocking(move |c| {
                let row: Option<StoryRow> = diesel::RunQueryDsl::first(
                    stories::table.find(&id).select(StoryRow::as_select()),
                    c,
                )
                .optional()?;
                let joined = match &row {
                    Some(r) if r.owner_id == viewer => {
                        let (mut joined, missing) = cached(&cache, std::slice::from_ref(r));
                        if !missing.is_empty() {
                            joined = chapters_sqlite(c, &[id])?;
                            keep(&cache, &missing, &joined);
                        }
                        joined
                    }
                    _ => Vec::new(),
                };
                Ok((row, joined))
            })
            .await?
        }
    })
}

/// The chapters `cache` holds for `rows` at their revisions, and the rows it does not
/// hold them for.
fn cached<'r>(cache: &ChapterCache, rows: &'r [StoryRow]) -> (Vec<Joined>, Vec<&'r StoryRow>) {
    let mut joined = Vec::new();
    let mut missing = Vec::new();
    for row in rows {
        match cache.get(row.id, row.revision) {
            Some(chapters) => joined.extend(chapters.iter().cloned()),
            None => missing.push(row),
        }
    }
    (joined, missing)
}

/// Keeps the chapters `read` of the stories `rows` in `cache`, each story's under the
/// revision its row showed (chapters read after their row are as new or newer: a later
/// read sees the newer revision and reads them again).
fn keep(cache: &ChapterCache, rows: &[&StoryRow], read: &[Joined]) {
    for row in rows {
        let chapters = read.iter().filter(|(c, _, _)| c.story_id == row.id);
        cache.put(row.id, row.revision, chapters.cloned().collect());
    }
}

/// The chapters (with their media) of the stories `rows`, in one query.
pub(crate) async fn chapters(db: &mut Db<'_>, rows: &[StoryRow]) -> Result<Vec<Joined>, DbError> {
    let ids = ids_of(rows);
    Ok(match db {
        Db::Pg(c) => chapters_pg(c, &ids).await?,
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            c.spawn_blocking(move |c| chapters_sqlite(c, &ids)).await?
        }
    })
}

/// A chapter's text with its image and narration.
pub(crate) type Joined = (ChapterText, Option<MediaColumns>, Option<MediaColumns>);

/// The chapters of the stories `ids`, ordered by story and number: one query for any
/// number of stories.
macro_rules! chapters_of {
    ($stories:expr) => {
        chapters::table
            .filter($stories)
            .order_by((chapters::story_id, chapters::chapter_number))
            .select(ChapterRead::as_select())
    };
}

/// PostgreSQL: the chapters of the stories `ids` (`story_id = ANY($1)`).
async fn chapters_pg(
    c: &mut diesel_async::AsyncPgConnection,
    ids: &[StoryId],
) -> QueryResult<Vec<Joined>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<ChapterRead> = chapters_of!(chapters::story_id.eq_any(ids)).load(c).await?;
    Ok(rows.into_iter().map(ChapterRead::files).collect())
}

/// SQLite, called on the connection's own thread with the synchronous API (see
/// `SqliteConn::spawn_blocking`): rows are read straight from the statement (the async
/// wrapper copies every value of every row first), and the ids go in as one JSON array
/// ([`super::in_json_array`]), so the statement stays prepared.
fn chapters_sqlite(
    c: &mut diesel::sqlite::SqliteConnection,
    ids: &[StoryId],
) -> QueryResult<Vec<Joined>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let in_page = super::in_json_array(chapters::story_id, ids)?;
    let rows: Vec<ChapterRead> = diesel::RunQueryDsl::load(chapters_of!(in_page), c)?;
    Ok(rows.into_iter().map(ChapterRead::files).collect())
}

fn ids_of<R: std::borrow::Borrow<StoryRow>>(rows: &[R]) -> Vec<StoryId> {
    rows.iter().map(|r| r.borrow().id).collect()
}

pub(crate) async fn story(db: &mut Db<'_>, id: StoryId) -> Result<Option<StoryRow>, DbError> {
    Ok(on_db!(db, |c| stories::table
        .find(id)
        .select(StoryRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Whether a story went in under its owner's creation quota.
pub(crate) enum Quota {
    Inserted,
    /// Refused: the owner asked for more than the quota since the window's start; the
    /// oldest of those requests was at `oldest`.
    Exceeded {
        oldest: NaiveDateTime,
    },
}

/// How a request inside the quota's transaction went wrong.
pub(crate) enum Outcome {
    Db(DbError),
    /// Over the quota: the oldest request counted.
    Exceeded(NaiveDateTime),
}

impl From<diesel::result::Error> for Outcome {
    fn from(e: diesel::result::Error) -> Outcome {
        Outcome::Db(e.into())
    }
}

impl From<DbError> for Outcome {
    fn from(e: DbError) -> Outcome {
        Outcome::Db(e)
    }
}

/// Records `owner`'s request in the quota's ledger (`story_requests`: new stories and
/// chapter regenerations alike) inside the caller's per-account locked transaction,
/// then counts the requests since `since`: `Exceeded` when there are more than `quota`
/// (the caller's transaction then rolls back, the record with it). Recording first
/// makes SQLite take the write lock up front; on PostgreSQL the advisory lock per
/// account serialises one account's concurrent requests.
pub(crate) async fn within_quota(
    tx: &mut Db<'_>,
    (owner, request_id, at): (&UserId, StoryRequestId, NaiveDateTime),
    since: NaiveDateTime,
    quota: i64,
) -> Result<(), Outcome> {
    let request = (
        story_requests::id.eq(request_id),
        story_requests::owner_id.eq(owner),
        story_requests::created_at.eq(at),
    );
    on_db!(&mut *tx, |c| diesel::insert_into(story_requests::table)
        .values(request)
        .execute(c)
        .await)?;
    let recent: Vec<NaiveDateTime> = on_db!(&mut *tx, |c| story_requests::table
        .filter(story_requests::owner_id.eq(owner))
        .filter(story_requests::created_at.gt(since))
        .order_by(story_requests::created_at.asc())
        .select(story_requests::created_at)
        .load(c)
        .await)?;
    match recent.len() as i64 > quota {
        true => Err(Outcome::Exceeded(recent[0])),
        false => Ok(()),
    }
}

/// Inserts `row` if its owner asked for at most `quota` stories (and regenerations)
/// since `since`, this one included, counted in the database so every process shares
/// the count ([`within_quota`]).
pub(crate) async fn insert_within_quota(
    db: &mut Db<'_>,
    row: &StoryRow,
    request_id: StoryRequestId,
    since: NaiveDateTime,
    quota: i64,
) -> Result<Quota, DbError> {
    let result: Result<(), Outcome> = locked_transaction!(db, &row.owner_id, |tx| {
        let request = (&row.owner_id, request_id, row.created_at);
        within_quota(&mut *tx, request, since, quota).await?;
        on_db!(&mut *tx, |c| diesel::insert_into(stories::table)
            .values(row)
            .execute(c)
            .await)?;
        Ok(())
    });
    match result {
        Ok(()) => Ok(Quota::Inserted),
        Err(Outcome::Exceeded(oldest)) => Ok(Quota::Exceeded { oldest }),
        Err(Outcome::Db(e)) => Err(e),
    }
}

/// Gives a story the guardian's `title` (which a generated one never replaces).
pub(crate) async fn rename(
    db: &mut Db<'_>,
    id: StoryId,
    title: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(stories::table.find(id))
        .set((
            stories::title.eq(Some(title)),
            stories::title_from_guardian.eq(true),
            stories::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Deletes a story (its chapters and media rows cascade).
pub(crate) async fn delete(db: &mut Db<'_>, id: StoryId) -> Result<(), DbError> {
    on_db!(db, |c| diesel::delete(stories::table.find(id))
        .execute(c)
        .await)?;
    Ok(())
}

/// Sends a failed story back to pending; `false` when it was not failed.
pub(crate) async fn retry(
    db: &mut Db<'_>,
    id: StoryId,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(
        stories::table
            .find(id)
            .filter(stories::status.eq(StoryStatus::Failed)),
    )
    .set((
        stories::status.eq(StoryStatus::Pending),
        stories::failure_reason.eq(None::<String>),
        stories::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

pub(crate) async fn set_status(
    db: &mut Db<'_>,
    id: StoryId,
    status: StoryStatus,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(stories::table.find(id))
        .set((
            stories::status.eq(status),
            stories::failure_reason.eq(reason),
            stories::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Writes a generated title unless the guardian chose one.
pub(crate) async fn set_generated_title(
    db: &mut Db<'_>,
    id: StoryId,
    title: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(
        stories::table
            .find(id)
            .filter(stories::title_from_guardian.eq(false)),
    )
    .set((stories::title.eq(Some(title)), stories::updated_at.eq(now)))
    .execute(c)
    .await)?;
    Ok(())
}

/// Puts `rows` in place of the story's chapters of the same numbers, in one transaction.
pub(crate) async fn put_chapters(
    db: &mut Db<'_>,
    story: StoryId,
    rows: &[ChapterRow],
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let numbers: Vec<i32> = rows.iter().map(|r| r.chapter_number).collect();
    transaction!(db, |tx| {
        // The story row first: a chapter's trigger updates it (its revision), and a story's
        // deletion locks it before its chapters — the same order, so the two never wait
        // for each other (PostgreSQL would end one as a deadlock).
        on_db!(&mut *tx, |c| diesel::update(stories::table.find(story))
            .set(stories::updated_at.eq(now))
            .execute(c)
            .await)?;
        on_db!(&mut *tx, |c| diesel::delete(
            chapters::table
                .filter(chapters::story_id.eq(story))
                .filter(chapters::chapter_number.eq_any(&numbers)),
        )
        .execute(c)
        .await)?;
        for row in rows {
            on_db!(&mut *tx, |c| diesel::insert_into(chapters::table)
                .values(row)
                .execute(c)
                .await)?;
        }
        Ok::<_, DbError>(())
    })
}

/// The account story `id` belongs to.
pub(crate) async fn owner_of(db: &mut Db<'_>, id: StoryId) -> Result<UserId, DbError> {
    Ok(on_db!(db, |c| stories::table
        .find(id)
        .select(stories::owner_id)
        .first(c)
        .await)?)
}

/// Which of a chapter's media a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
}

/// Records the media file `file` and links it to chapter `chapter` as its `kind`, in
/// one transaction. It fails when the file's story (or account) is gone; a chapter that
/// is gone is simply not linked.
pub(crate) async fn link_media(
    db: &mut Db<'_>,
    file: &MediaFileRow,
    chapter: ChapterId,
    kind: MediaKind,
) -> Result<(), DbError> {
    transaction!(db, |tx| {
        on_db!(&mut *tx, |c| diesel::insert_into(media_files::table)
            .values(file)
            .execute(c)
            .await)?;
        // The chapter records the file's path and content type beside its id, which its
        // readers use instead of looking the file up.
        let link = diesel::update(chapters::table.find(chapter));
        let (fid, path, content_type) = (Some(file.id), Some(&file.path), Some(&file.content_type));
        on_db!(&mut *tx, |c| match kind {
            MediaKind::Image => {
                link.set((
                    chapters::image_file_id.eq(fid),
                    chapters::image_path.eq(path),
                    chapters::image_content_type.eq(content_type),
                ))
                .execute(c)
                .await
            }
            MediaKind::Audio => {
                link.set((
                    chapters::audio_file_id.eq(fid),
                    chapters::audio_path.eq(path),
                    chapters::audio_content_type.eq(content_type),
                ))
                .execute(c)
                .await
            }
        })?;
        Ok::<_, DbError>(())
    })
}
