//! Stories, their chapters and media. The reads — a keyset page of story rows with their
//! chapters and media, one story with its chapters — each take one trip to the database
//! (on SQLite, one call on the connection's thread, read with diesel's synchronous API).
//! The writes: the quota-checked insert, renaming, deleting, retrying, the worker's
//! status, title and chapters, and linking a chapter's media.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{ChapterRow, ChapterText, MediaFileRow, StoryRow};
use super::schema::{chapters, media_files, stories, story_requests};
use super::types::{ChapterId, MediaFileId, StoryId, StoryRequestId, StoryStatus, UserId};
use super::{Db, DbError, Page, SqliteConn, locked_transaction, on_db, transaction};

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

/// The two aliases of `media_files` a chapter's image and narration are joined as, and
/// the columns read of each.
macro_rules! chapter_files {
    () => {{
        let (image, audio) =
            diesel::alias!(media_files as chapter_image, media_files as chapter_audio);
        let columns = (
            media_files::id,
            media_files::path,
            media_files::content_type,
        );
        (image, audio, columns)
    }};
}

/// The chapters of `$stories` joined with both of their media files, ordered by story and
/// number: one query for any number of stories. (Two queries before: SQLite prepared the
/// second one, with an `IN` list of up to 200 file ids, afresh for every page.)
macro_rules! chapters_with_media {
    ($stories:expr) => {{
        let (image, audio, file_columns) = chapter_files!();
        chapters::table
            .left_join(
                image.on(chapters::image_file_id.eq(image.field(media_files::id).nullable())),
            )
            .left_join(
                audio.on(chapters::audio_file_id.eq(audio.field(media_files::id).nullable())),
            )
            .filter($stories)
            .order_by((chapters::story_id, chapters::chapter_number))
            .select((
                ChapterText::as_select(),
                image.fields(file_columns).nullable(),
                audio.fields(file_columns).nullable(),
            ))
    }};
}

/// A page's story rows, whether there is a next page, and the rows' chapters. The rows
/// and their chapters on one connection: one pool checkout per page, and on SQLite one
/// trip to the connection's thread.
pub(crate) async fn page(
    db: &mut Db<'_>,
    query: PageQuery,
) -> Result<(Page<StoryRow>, Vec<Joined>), DbError> {
    let first = query.first;
    Ok(match db {
        // The rows, then their chapters and media (given the rows' ids; two statements
        // pipelined, see `chapters_pg`). One statement joining the page's rows (found by
        // a subquery) with their chapters was slower in `cargo bench --bench load`: 1,146
        // pages/s read directly and 621/s served, against 1,486 and 730 for the rows then
        // the chapters (each row's story columns repeated per chapter cost more than the
        // second round trip saves).
        Db::Pg(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            let page = Page::of(page_rows!(&query).load(c).await?, first);
            let joined = chapters_pg(c, &ids_of(&page.rows)).await?;
            (page, joined)
        }
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            c.spawn_blocking(move |c| {
                let page = Page::of(diesel::RunQueryDsl::load(page_rows!(&query), c)?, first);
                let joined = chapters_sqlite(c, &ids_of(&page.rows))?;
                Ok((page, joined))
            })
            .await?
        }
    })
}

/// Story `id`'s row, and its chapters when `viewer_id` owns it (none read otherwise): the
/// row, the ownership check and the chapters in one trip.
pub(crate) async fn story_with_chapters(
    db: &mut Db<'_>,
    id: StoryId,
    viewer: UserId,
) -> Result<(Option<StoryRow>, Vec<Joined>), DbError> {
    Ok(match db {
        Db::Pg(c) => {
            // One statement: the row, with its chapters joined only when the viewer owns
            // it (the row comes once per chapter, or once with none).
            let c: &mut diesel_async::AsyncPgConnection = c;
            let (image, audio, file_columns) = chapter_files!();
            let rows: Vec<StoryWithChapter> = stories::table
                // (The chapters by the id itself: their index serves it whatever the
                // columns' collations.)
                .left_join(
                    chapters::table.on(chapters::story_id.eq(id).and(stories::owner_id.eq(viewer))),
                )
                .left_join(
                    image.on(chapters::image_file_id.eq(image.field(media_files::id).nullable())),
                )
                .left_join(
                    audio.on(chapters::audio_file_id.eq(audio.field(media_files::id).nullable())),
                )
                .filter(stories::id.eq(id))
                .order_by(chapters::chapter_number.asc())
                .select((
                    StoryRow::as_select(),
                    Option::<ChapterText>::as_select(),
                    image.fields(file_columns).nullable(),
                    audio.fields(file_columns).nullable(),
                ))
                .load(c)
                .await?;
            let mut row = None;
            let mut joined = Vec::with_capacity(rows.len());
            for (story, chapter, image, audio) in rows {
                row.get_or_insert(story);
                if let Some(chapter) = chapter {
                    joined.push((chapter, image, audio));
                }
            }
            (row, joined)
        }
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            c.spawn_blocking(move |c| {
                let row: Option<StoryRow> = diesel::RunQueryDsl::first(
                    stories::table.find(&id).select(StoryRow::as_select()),
                    c,
                )
                .optional()?;
                let joined = match &row {
                    Some(r) if r.owner_id == viewer => chapters_sqlite(c, &[id])?,
                    _ => Vec::new(),
                };
                Ok((row, joined))
            })
            .await?
        }
    })
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

/// The id, path and content type of a chapter's image or narration.
pub(crate) type MediaColumns = (MediaFileId, String, String);
/// A chapter row with both of its media files, as one joined row.
pub(crate) type Joined = (ChapterText, Option<MediaColumns>, Option<MediaColumns>);
/// A story row left-joined with one of its chapters and that chapter's media.
type StoryWithChapter = (
    StoryRow,
    Option<ChapterText>,
    Option<MediaColumns>,
    Option<MediaColumns>,
);

/// PostgreSQL: the chapters of the stories `ids` (`story_id = ANY($1)`) and those
/// stories' media files (`media_files.story_id = ANY($1)`, by the media's story index),
/// the two statements pipelined (one round trip), matched here. Joining each chapter
/// with its two files instead probed the media's primary key twice per chapter: 200
/// probes (about 800 buffer reads) for a page of 20. A chapter's files always belong to
/// its own story (`writing.rs` records them so); one not found reads as gone.
async fn chapters_pg(
    c: &mut diesel_async::AsyncPgConnection,
    ids: &[StoryId],
) -> QueryResult<Vec<Joined>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let c: &diesel_async::AsyncPgConnection = c;
    let chapters = chapters::table
        .filter(chapters::story_id.eq_any(ids))
        .order_by((chapters::story_id, chapters::chapter_number))
        .select((
            ChapterText::as_select(),
            chapters::image_file_id,
            chapters::audio_file_id,
        ))
        .load::<(ChapterText, Option<MediaFileId>, Option<MediaFileId>)>(&mut &*c);
    let media = media_files::table
        .filter(media_files::story_id.eq_any(ids))
        .select((
            media_files::id,
            media_files::path,
            media_files::content_type,
        ))
        .load::<MediaColumns>(&mut &*c);
    let (chapters, media) = futures_util::join!(chapters, media);
    let media: std::collections::HashMap<MediaFileId, MediaColumns> =
        media?.into_iter().map(|m| (m.0, m)).collect();
    let file = |id: Option<MediaFileId>| id.and_then(|id| media.get(&id).cloned());
    Ok(chapters?
        .into_iter()
        .map(|(chapter, image, audio)| (chapter, file(image), file(audio)))
        .collect())
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
    diesel::RunQueryDsl::load(chapters_with_media!(in_page), c)
}

fn ids_of(rows: &[StoryRow]) -> Vec<StoryId> {
    rows.iter().map(|r| r.id).collect()
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

/// Inserts `row` if its owner asked for at most `quota` stories since `since`, this one
/// included, counted in the database so every process shares the count. The request is
/// recorded first, so on SQLite the transaction takes the write lock up front; on
/// PostgreSQL an advisory lock per account serialises concurrent requests of one account.
pub(crate) async fn insert_within_quota(
    db: &mut Db<'_>,
    row: &StoryRow,
    request_id: StoryRequestId,
    since: NaiveDateTime,
    quota: i64,
) -> Result<Quota, DbError> {
    enum Outcome {
        Db(DbError),
        Exceeded(NaiveDateTime),
    }
    impl From<diesel::result::Error> for Outcome {
        fn from(e: diesel::result::Error) -> Outcome {
            Outcome::Db(e.into())
        }
    }
    let request = (
        story_requests::id.eq(request_id),
        story_requests::owner_id.eq(&row.owner_id),
        story_requests::created_at.eq(row.created_at),
    );
    let result: Result<(), Outcome> = locked_transaction!(db, &row.owner_id, |tx| {
        on_db!(&mut *tx, |c| diesel::insert_into(story_requests::table)
            .values(request)
            .execute(c)
            .await)?;
        let recent: Vec<NaiveDateTime> = on_db!(&mut *tx, |c| story_requests::table
            .filter(story_requests::owner_id.eq(&row.owner_id))
            .filter(story_requests::created_at.gt(since))
            .order_by(story_requests::created_at.asc())
            .select(story_requests::created_at)
            .load(c)
            .await)?;
        if recent.len() as i64 > quota {
            return Err(Outcome::Exceeded(recent[0]));
        }
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
        on_db!(&mut *tx, |c| diesel::update(stories::table.find(story))
            .set(stories::updated_at.eq(now))
            .execute(c)
            .await)?;
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
        let link = diesel::update(chapters::table.find(chapter));
        let fid = Some(file.id);
        on_db!(&mut *tx, |c| match kind {
            MediaKind::Image => link.set(chapters::image_file_id.eq(fid)).execute(c).await,
            MediaKind::Audio => link.set(chapters::audio_file_id.eq(fid)).execute(c).await,
        })?;
        Ok::<_, DbError>(())
    })
}
