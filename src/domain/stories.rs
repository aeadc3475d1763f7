//! The story library (spec §5–§6.3, contract §4–§5): creating, reading, listing with
//! keyset pagination, renaming, deleting and retrying stories; chapters and their media.
//! Ownership is checked here, for every door.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::accounts::User;
use super::conversations::MessageRole;
use super::cursor::micros_to_db;
use super::{Domain, char_len, internal, page_limit};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::models::{ChapterRow, ChapterText, ConversationRow, MediaFileRow, StoryRow};
pub use crate::store::stories::MediaKind;
use crate::store::stories::{Joined, MediaColumns, Quota, Resume};
pub(crate) use crate::store::stories::{SortKey, SortOrder};
use crate::store::{self, from_db, to_db};

use crate::store::types::{
    ChapterId, ConversationId, MediaFileId, StoryId, StoryRequestId, UserId,
};
pub use crate::store::types::{StoryLength, StoryStatus};

impl StoryLength {
    /// Chapters a story of this length has (contract §5).
    pub(crate) fn chapters(self) -> i32 {
        match self {
            StoryLength::Short => 3,
            StoryLength::Medium => 5,
            StoryLength::Long => 7,
        }
    }
}

/// A stored media file.
#[derive(Clone, Debug)]
pub struct MediaFile {
    pub id: MediaFileId,
    pub path: String,
    pub content_type: String,
}

#[derive(Clone, Debug)]
pub struct Chapter {
    pub id: ChapterId,
    pub number: i32,
    pub title: String,
    pub content: String,
    pub image: Option<MediaFile>,
    pub audio: Option<MediaFile>,
}

#[derive(Clone, Debug)]
pub struct Story {
    pub id: StoryId,
    pub owner_id: UserId,
    pub conversation_id: Option<ConversationId>,
    pub title: Option<String>,
    pub status: StoryStatus,
    pub theme: String,
    pub characters: Vec<String>,
    pub length: StoryLength,
    pub chapter_count: i32,
    pub child_name: String,
    pub child_age: i32,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub chapters: Vec<Chapter>,
}

/// What a guardian asks for (spec §6.3).
#[derive(Clone, Debug)]
pub(crate) struct NewStory {
    pub theme: String,
    pub characters: Vec<String>,
    pub length: StoryLength,
    pub conversation_id: Option<String>,
}

/// One page of a listing: each story with the cursor that resumes after it.
#[derive(Clone, Debug)]
pub(crate) struct StoryPage {
    pub items: Vec<(String, Story)>,
    pub has_more: bool,
}

impl StoryPage {
    pub(crate) fn end_cursor(&self) -> Option<&str> {
        self.items.last().map(|(c, _)| c.as_str())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ListStories {
    pub status: Option<StoryStatus>,
    pub sort: SortKey,
    pub order: SortOrder,
    pub first: i32,
    pub after: Option<String>,
}

impl Resume {
    /// Where a page resumes, in the sort key's terms. A time-keyed cursor without its
    /// time cannot come from us.
    fn from(after: Position, sort: SortKey) -> AppResult<Resume> {
        let time = after.t.map(micros_to_db).transpose()?;
        match (sort, time) {
            (SortKey::CreatedAt, Some(t)) => Ok(Resume::CreatedAt(t, after.id)),
            (SortKey::UpdatedAt, Some(t)) => Ok(Resume::UpdatedAt(t, after.id)),
            (SortKey::Title, _) => Ok(Resume::Title(after.title, after.id)),
            (SortKey::CreatedAt | SortKey::UpdatedAt, None) => {
                Err(AppError::validation("start_cursor가 올바르지 않습니다."))
            }
        }
    }
}

/// What a cursor is valid for: the listing's sort, order, filters and owner. A cursor
/// from another listing is refused.
fn cursor_scope(query: &ListStories, owner: Option<UserId>, range: TimeRange) -> String {
    let (created_after, created_before) = range;
    format!(
        "stories:{}:{}:{}:{}:{}:{}",
        query.sort.as_str(),
        match query.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        },
        query.status.map(StoryStatus::as_str).unwrap_or("*"),
        owner.map(|o| o.to_string()).unwrap_or_else(|| "*".into()),
        created_after
            .map(|t| t.timestamp_micros())
            .unwrap_or(i64::MIN),
        created_before
            .map(|t| t.timestamp_micros())
            .unwrap_or(i64::MAX),
    )
}

/// Where a page ending at `row` ended, in the sort key's terms.
fn position_of(row: &StoryRow, sort: SortKey) -> Position {
    let (t, title) = match sort {
        SortKey::CreatedAt => (Some(micros(row.created_at)), None),
        SortKey::UpdatedAt => (Some(micros(row.updated_at)), None),
        SortKey::Title => (None, row.title.clone()),
    };
    Position {
        t,
        title,
        id: row.id,
    }
}

/// Where a page ended, in the sort key's terms: a timestamp in microseconds, or a title
/// (`None` for a story without one), plus the id that breaks ties.
#[derive(Serialize, Deserialize)]
struct Position {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    t: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    title: Option<String>,
    id: StoryId,
}

/// Creation-time bounds of a listing: from (inclusive), until (exclusive).
pub(crate) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
pub(crate) const DEFAULT_PAGE_SIZE: i32 = 20;

/// Parses a client-supplied UUID; anything else is a validation error naming `field`.
pub(crate) fn parse_id<Id: std::str::FromStr>(field: &str, value: &str) -> AppResult<Id> {
    value
        .parse()
        .map_err(|_| AppError::validation(format!("`{field}`은(는) UUID여야 합니다.")))
}

fn validate_text(field: &str, value: &str, max: usize) -> AppResult<()> {
    if value.trim().is_empty() || char_len(value) > max {
        return Err(AppError::validation(format!(
            "`{field}`은(는) 1~{max}자여야 하며 공백만으로 이루어질 수 없습니다."
        )));
    }
    Ok(())
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

impl Domain {
    /// Creates a `pending` story for `owner` (contract §5).
    pub(crate) async fn create_story(&self, owner: &User, input: NewStory) -> AppResult<Story> {
        validate_text("user_preferences.theme", &input.theme, 200)?;
        if input.characters.len() > 10 {
            return Err(AppError::validation(
                "`user_preferences.characters`는 최대 10개입니다.",
            ));
        }
        for c in &input.characters {
            validate_text("user_preferences.characters", c, 100)?;
        }
        let (conversation_id, child_name, child_age) = match &input.conversation_id {
            None => (None, owner.name.clone(), owner.age),
            Some(raw) => {
                let id = parse_id("conversation_id", raw)?;
                let conversation = self.conversation_row(id).await?;
                if conversation.owner_id != owner.id {
                    return Err(AppError::code_only(ErrorCode::InsufficientPermission));
                }
                (
                    Some(id),
                    conversation
                        .child_name
                        .unwrap_or_else(|| owner.name.clone()),
                    conversation.child_age.unwrap_or(owner.age),
                )
            }
        };
        let now = to_db(store::now());
        let row = StoryRow {
            id: StoryId::random(),
            owner_id: owner.id,
            conversation_id,
            title: None,
            title_from_guardian: false,
            status: StoryStatus::Pending,
            theme: input.theme,
            characters: serde_json::to_string(&input.characters)
                .map_err(|e| internal("characters", e))?,
            length: input.length,
            chapter_count: input.length.chapters(),
            child_name,
            child_age,
            failure_reason: None,
            created_at: now,
            updated_at: now,
            lease_owner: None,
            lease_expires_at: None,
            attempts: 0,
        };
        self.insert_within_quota(&row).await?;
        tracing::info!(story_id = %row.id, "story requested");
        self.signal_work();
        story_from_rows(row, Vec::new())
    }

    /// Inserts a story if its owner is within the creation quota (contract §7), counted
    /// in the database so every process shares it. The request is recorded first, so on
    /// SQLite the transaction takes the write lock up front; on PostgreSQL an advisory
    /// lock per account serialises concurrent requests of one account.
    async fn insert_within_quota(&self, row: &StoryRow) -> AppResult<()> {
        let quota = i64::from(self.config().story_quota);
        let window = chrono::Duration::from_std(self.config().story_quota_window)
            .map_err(|e| internal("quota window", e))?;
        let now = row.created_at;
        let request_id = StoryRequestId::random();
        let mut conn = self.pool().get().await?;
        let quota_state = store::stories::insert_within_quota(
            &mut conn.db(),
            row,
            request_id,
            now - window,
            quota,
        )
        .await?;
        match quota_state {
            Quota::Inserted => Ok(()),
            Quota::Exceeded { oldest } => {
                let free_at = oldest + window;
                let wait = (free_at - now).num_seconds().max(1) as u64;
                Err(AppError::Limited {
                    message: format!(
                        "이야기 생성 한도({quota}개/{}초)를 초과했습니다. {wait}초 후에 다시 시도해 주세요.",
                        window.num_seconds()
                    ),
                    retry_after: wait,
                })
            }
        }
    }

    async fn conversation_row(&self, id: ConversationId) -> AppResult<ConversationRow> {
        let mut conn = self.pool().get().await?;
        store::conversations::conversation(&mut conn.db(), id)
            .await?
            .ok_or_else(AppError::not_found)
    }

    /// Loads a story row and checks that `viewer` owns it: 404 when it does not exist,
    /// 403 when it is someone else's.
    async fn owned_story_row(&self, viewer: &User, id: &str) -> AppResult<StoryRow> {
        let id = parse_id("story_id", id)?;
        let row = store::stories::story(&mut self.pool().get().await?.db(), id).await?;
        owned_by(row, viewer.id)
    }

    /// A story for the generation worker (no viewer: the worker acts for the owner).
    pub async fn story_for_job(&self, id: StoryId) -> AppResult<Story> {
        let mut conn = self.pool().get().await?;
        let row = store::stories::story(&mut conn.db(), id)
            .await?
            .ok_or_else(AppError::not_found)?;
        let mut stories = with_chapters_on(&mut conn, vec![row]).await?;
        Ok(stories.remove(0))
    }

    /// What a story's conversation gives generation: the child's interests and the
    /// transcript as (role, text), oldest first, without flagged messages.
    pub(crate) async fn conversation_material(
        &self,
        conversation: Option<ConversationId>,
    ) -> AppResult<(Vec<String>, Vec<(MessageRole, String)>)> {
        let Some(id) = conversation else {
            return Ok((Vec::new(), Vec::new()));
        };
        let row = match self.conversation_row(id).await {
            Ok(row) => row,
            // Deleted meanwhile: the story keeps what it has.
            Err(e) if e.code() == ErrorCode::ResourceNotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(e),
        };
        let interests: Vec<String> =
            serde_json::from_str(&row.interests).map_err(|e| internal("stored interests", e))?;
        let transcript = self
            .messages(id)
            .await?
            .into_iter()
            .filter(|m| !m.flagged)
            .map(|m| (m.role, m.text))
            .collect();
        Ok((interests, transcript))
    }

    /// The viewer's story `id` with its chapters: 404 when it does not exist, 403 when it
    /// is someone else's. One trip to the database: the row, the ownership check and the
    /// chapters on one connection (on SQLite in one call on its thread).
    pub async fn story(&self, viewer: &User, id: &str) -> AppResult<Story> {
        self.owned_story(viewer, parse_id("story_id", id)?).await
    }

    /// [`Domain::story`] of a parsed id.
    async fn owned_story(&self, viewer: &User, id: StoryId) -> AppResult<Story> {
        let mut conn = self.pool().get().await?;
        let (row, joined) =
            store::stories::story_with_chapters(&mut conn.db(), id, viewer.id).await?;
        drop(conn);
        let row = owned_by(row, viewer.id)?;
        let mut stories = stories_from_rows(vec![row], joined)?;
        Ok(stories.remove(0))
    }

    /// One page of the viewer's stories, keyset-paginated over (sort key, id).
    pub(crate) async fn list_stories(
        &self,
        viewer: &User,
        query: ListStories,
    ) -> AppResult<StoryPage> {
        self.query_stories(Some(viewer.id), None, query).await
    }

    /// One page of stories of `owner` (every account's when `None`), optionally created
    /// within `range`. Callers decide who may see what: members get only their own.
    pub(crate) async fn query_stories(
        &self,
        owner: Option<UserId>,
        range: Option<TimeRange>,
        query: ListStories,
    ) -> AppResult<StoryPage> {
        let limit = page_limit(query.first)? + 1;
        let (created_after, created_before) = range.unwrap_or((None, None));
        let scope = cursor_scope(&query, owner, (created_after, created_before));
        let created_after = created_after.map(to_db);
        let created_before = created_before.map(to_db);
        let after: Option<Position> = query
            .after
            .as_deref()
            .map(|c| self.cursors().decode(&scope, c))
            .transpose()?;
        let resume = after.map(|p| Resume::from(p, query.sort)).transpose()?;
        let page = store::stories::PageQuery {
            owner,
            status: query.status,
            created_after,
            created_before,
            sort: query.sort,
            order: query.order,
            resume,
            limit,
            first: query.first as usize,
        };
        let mut conn = self.pool().get().await?;
        let (rows, has_more, joined) = store::stories::page(&mut conn.db(), page).await?;
        drop(conn);
        let cursors: Vec<String> = rows
            .iter()
            .map(|r| self.cursors().encode(&scope, &position_of(r, query.sort)))
            .collect();
        let stories = stories_from_rows(rows, joined)?;
        Ok(StoryPage {
            items: cursors.into_iter().zip(stories).collect(),
            has_more,
        })
    }

    /// The recorded provider attempts of a story's generation, oldest first.
    pub async fn generation_steps(
        &self,
        story_id: StoryId,
    ) -> AppResult<Vec<crate::store::models::GenerationStepRow>> {
        let mut conn = self.pool().get().await?;
        Ok(store::jobs::steps_of(&mut conn.db(), story_id).await?)
    }

    /// Renames a story (`PATCH`): the guardian's title wins over a generated one.
    pub(crate) async fn rename_story(
        &self,
        viewer: &User,
        id: &str,
        title: &str,
    ) -> AppResult<Story> {
        validate_text("title", title, 200)?;
        let row = self.owned_story_row(viewer, id).await?;
        let now = to_db(store::now());
        store::stories::rename(&mut self.pool().get().await?.db(), row.id, title, now).await?;
        self.story_changed(row.id).await;
        self.owned_story(viewer, row.id).await
    }

    /// Deletes a story with its chapters and media files.
    pub(crate) async fn delete_story(&self, viewer: &User, id: &str) -> AppResult<()> {
        let row = self.owned_story_row(viewer, id).await?;
        store::stories::delete(&mut self.pool().get().await?.db(), row.id).await?;
        self.remove_media_dir(&format!("{}/{}", row.owner_id, row.id))
            .await;
        self.story_changed(row.id).await;
        tracing::info!(story_id = %row.id, "story deleted");
        Ok(())
    }

    /// Sends a `failed` story back to `pending`; any other status is a conflict.
    pub(crate) async fn retry_story(&self, viewer: &User, id: &str) -> AppResult<Story> {
        let row = self.owned_story_row(viewer, id).await?;
        let now = to_db(store::now());
        let retried =
            store::stories::retry(&mut self.pool().get().await?.db(), row.id, now).await?;
        if !retried {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "실패한(failed) 이야기만 다시 시도할 수 있습니다.",
            ));
        }
        self.story_changed(row.id).await;
        self.signal_work();
        self.owned_story(viewer, row.id).await
    }

    /// Removes a directory below the media directory (a story's or an account's files).
    pub(crate) async fn remove_media_dir(&self, relative: &str) {
        let Some(path) = self.media().resolve(relative) else {
            return;
        };
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %path.display(), error = %e, "removing media"),
        }
    }

    // ----- Writing stories: used by generation (and by tests to seed data). -----

    /// Moves a story to `status`, recording `reason` for failures.
    pub async fn set_story_status(
        &self,
        story_id: StoryId,
        status: StoryStatus,
        reason: Option<&str>,
    ) -> AppResult<()> {
        let now = to_db(store::now());
        let mut conn = self.pool().get().await?;
        store::stories::set_status(&mut conn.db(), story_id, status, reason, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(())
    }

    /// Writes a generated title unless the guardian already chose one.
    pub async fn set_generated_title(&self, story_id: StoryId, title: &str) -> AppResult<()> {
        let now = to_db(store::now());
        let mut conn = self.pool().get().await?;
        store::stories::set_generated_title(&mut conn.db(), story_id, title, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(())
    }

    /// Adds (or replaces) chapters `(number, title, content)` of a story in one
    /// transaction, announced as one change; returns their ids in order.
    pub async fn put_chapters(
        &self,
        story_id: StoryId,
        chapters_in: &[(i32, String, String)],
    ) -> AppResult<Vec<ChapterId>> {
        let now = to_db(store::now());
        let rows: Vec<ChapterRow> = chapters_in
            .iter()
            .map(|(number, title, content)| ChapterRow {
                id: ChapterId::random(),
                story_id,
                chapter_number: *number,
                title: title.clone(),
                content: content.clone(),
                image_file_id: None,
                audio_file_id: None,
                created_at: now,
            })
            .collect();
        let mut conn = self.pool().get().await?;
        store::stories::put_chapters(&mut conn.db(), story_id, &rows, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(rows.iter().map(|r| r.id).collect())
    }

    /// Stores `bytes` as a chapter's illustration or narration and links it.
    pub async fn put_chapter_media(
        &self,
        story_id: StoryId,
        chapter_id: ChapterId,
        kind: MediaKind,
        bytes: &[u8],
        content_type: &str,
        extension: &str,
    ) -> AppResult<MediaFile> {
        let owner = store::stories::owner_of(&mut self.pool().get().await?.db(), story_id).await?;
        let file_id = MediaFileId::random();
        let relative = format!("{owner}/{story_id}/{file_id}.{extension}");
        let path = self
            .media()
            .resolve(&relative)
            .ok_or_else(|| internal("media path", &relative))?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| internal("creating media dir", e))?;
        }
        // Write to a temporary name, then rename: a reader never sees half a file.
        let tmp = path.with_extension(format!("{extension}.part"));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| internal("writing media", e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| internal("placing media", e))?;
        let row = MediaFileRow {
            id: file_id,
            owner_id: owner,
            story_id: Some(story_id),
            path: relative,
            content_type: content_type.to_string(),
            size_bytes: bytes.len() as i64,
            created_at: to_db(store::now()),
        };
        let mut conn = self.pool().get().await?;
        let linked = store::stories::link_media(&mut conn.db(), &row, chapter_id, kind).await;
        drop(conn);
        if let Err(e) = linked {
            // The story (or account) was deleted meanwhile: leave no orphan file behind.
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
        self.story_changed(story_id).await;
        Ok(MediaFile {
            id: file_id,
            path: row.path,
            content_type: row.content_type,
        })
    }
}

/// [`Domain::with_chapters`] on a connection the caller holds.
async fn with_chapters_on(
    conn: &mut crate::store::Conn,
    rows: Vec<StoryRow>,
) -> AppResult<Vec<Story>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let joined = store::stories::chapters(&mut conn.db(), &rows).await?;
    stories_from_rows(rows, joined)
}

/// The stored story `row` if it exists (404) and `viewer_id` owns it (403).
fn owned_by(row: Option<StoryRow>, viewer_id: UserId) -> AppResult<StoryRow> {
    let row = row.ok_or_else(AppError::not_found)?;
    if row.owner_id != viewer_id {
        return Err(AppError::code_only(ErrorCode::InsufficientPermission));
    }
    Ok(row)
}

/// Story rows and their joined chapter rows (in any order of stories) → stories, in the
/// order of `rows`.
fn stories_from_rows(rows: Vec<StoryRow>, joined: Vec<Joined>) -> AppResult<Vec<Story>> {
    let mut by_story: HashMap<StoryId, Vec<ChapterWithMedia>> = HashMap::new();
    for (chapter, image, audio) in joined {
        by_story
            .entry(chapter.story_id)
            .or_default()
            .push(ChapterWithMedia {
                chapter,
                image,
                audio,
            });
    }
    rows.into_iter()
        .map(|row| {
            let chapters = by_story.remove(&row.id).unwrap_or_default();
            story_from_rows(row, chapters)
        })
        .collect()
}

/// A chapter row with the media files it points at (`None`: none, or the file is gone).
struct ChapterWithMedia {
    chapter: ChapterText,
    image: Option<MediaColumns>,
    audio: Option<MediaColumns>,
}

fn story_from_rows(row: StoryRow, chapters: Vec<ChapterWithMedia>) -> AppResult<Story> {
    let file = |columns: Option<MediaColumns>| {
        columns.map(|(id, path, content_type)| MediaFile {
            id,
            path,
            content_type,
        })
    };
    let chapters = chapters
        .into_iter()
        .map(
            |ChapterWithMedia {
                 chapter: c,
                 image,
                 audio,
             }| Chapter {
                id: c.id,
                number: c.chapter_number,
                image: file(image),
                audio: file(audio),
                title: c.title,
                content: c.content,
            },
        )
        .collect();
    Ok(Story {
        id: row.id,
        owner_id: row.owner_id,
        conversation_id: row.conversation_id,
        title: row.title,
        status: row.status,
        theme: row.theme,
        characters: serde_json::from_str(&row.characters)
            .map_err(|e| internal("stored characters", e))?,
        length: row.length,
        chapter_count: row.chapter_count,
        child_name: row.child_name,
        child_age: row.child_age,
        failure_reason: row.failure_reason,
        created_at: from_db(row.created_at),
        updated_at: from_db(row.updated_at),
        chapters,
    })
}
