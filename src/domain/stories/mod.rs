//! The story library (spec §5–§6.3, contract §4–§5): creating, reading, listing with
//! keyset pagination, renaming, deleting and retrying stories; chapters and their media.
//! Ownership is checked here, for every door.

mod listing;
pub(crate) mod provenance;
pub use provenance::{Provenance, ProvenancePart};
mod regenerate;
mod rows;
mod writing;
pub(crate) use regenerate::Redo;
pub use regenerate::Regeneration;

use rows::{owned_by, stories_from_rows, story_without_chapters, with_chapters_on};

use chrono::{DateTime, Utc};

use super::accounts::User;
use super::{Stories, char_len, internal};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::models::{ConversationRow, StoryRow};
pub use crate::store::stories::MediaKind;
use crate::store::stories::Quota;
pub(crate) use crate::store::stories::{SortKey, SortOrder};
use crate::store::{self, to_db};
use crate::vocabulary::MessageRole;

use crate::vocabulary::{ChapterId, ConversationId, MediaFileId, StoryId, StoryRequestId, UserId};
pub use crate::vocabulary::{StoryLength, StoryStatus};

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
    /// `None` only with a conversation: then the child's interests in it are the theme
    /// (see [`theme_from_interests`]).
    pub theme: Option<String>,
    pub characters: Vec<String>,
    pub length: StoryLength,
    pub conversation_id: Option<ConversationId>,
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

/// Creation-time bounds of a listing: from (inclusive), until (exclusive).
pub(crate) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
pub(crate) const DEFAULT_PAGE_SIZE: i32 = 20;

fn validate_text(field: &str, value: &str, max: usize) -> AppResult<()> {
    if value.trim().is_empty() || char_len(value) > max {
        return Err(AppError::validation(format!(
            "`{field}`은(는) 1~{max}자여야 하며 공백만으로 이루어질 수 없습니다."
        )));
    }
    Ok(())
}

/// The theme of a story made from a conversation that named none: as many of the
/// child's interests as fit a theme (200 characters), else "today's talk".
pub(crate) fn theme_from_interests(interests: &[String]) -> String {
    let mut theme = String::new();
    for interest in interests {
        let next = if theme.is_empty() {
            interest.clone()
        } else {
            format!("{theme}, {interest}")
        };
        if next.chars().count() > 200 {
            break;
        }
        theme = next;
    }
    if theme.is_empty() {
        "오늘 나눈 이야기".to_string()
    } else {
        theme
    }
}

impl Stories<'_> {
    /// Creates a `pending` story for `owner` (contract §5).
    pub(crate) async fn create_story(&self, owner: &User, input: NewStory) -> AppResult<Story> {
        if let Some(theme) = &input.theme {
            validate_text("user_preferences.theme", theme, 200)?;
        }
        if input.characters.len() > 10 {
            return Err(AppError::validation(
                "`user_preferences.characters`는 최대 10개입니다.",
            ));
        }
        for c in &input.characters {
            validate_text("user_preferences.characters", c, 100)?;
        }
        let (conversation_id, child_name, child_age, theme) = match input.conversation_id {
            None => {
                let theme = input.theme.ok_or_else(|| {
                    AppError::validation("`user_preferences.theme`가 필요합니다.")
                })?;
                (None, owner.name.clone(), owner.age, theme)
            }
            Some(id) => {
                let conversation = self.conversation_row(id).await?;
                if conversation.owner_id != owner.id {
                    return Err(AppError::code_only(ErrorCode::InsufficientPermission));
                }
                let theme = match input.theme {
                    Some(theme) => theme,
                    None => {
                        let interests: Vec<String> = serde_json::from_str(&conversation.interests)
                            .map_err(|e| internal("interests", e))?;
                        theme_from_interests(&interests)
                    }
                };
                (
                    Some(id),
                    conversation
                        .child_name
                        .unwrap_or_else(|| owner.name.clone()),
                    conversation.child_age.unwrap_or(owner.age),
                    theme,
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
            theme,
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
            revision: 0,
        };
        self.insert_within_quota(&row).await?;
        tracing::info!(story_id = %row.id, "story requested");
        self.signal_work();
        story_without_chapters(row)
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
    async fn owned_story_row(&self, viewer: &User, id: StoryId) -> AppResult<StoryRow> {
        let row = store::stories::story(&mut self.pool().get().await?.db(), id).await?;
        owned_by(row, viewer.id)
    }

    /// A story for the generation worker (no viewer: the worker acts for the owner).
    pub async fn story_for_job(&self, id: StoryId) -> AppResult<Story> {
        let mut conn = self.pool().get().await?;
        // Claimed, then gone: an internal failure for the worker, as before.
        let row = store::stories::story(&mut conn.db(), id)
            .await?
            .ok_or_else(|| internal("story to generate", id))?;
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
            .conversations()
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
    pub async fn story(&self, viewer: &User, id: StoryId) -> AppResult<Story> {
        let (row, joined) = store::read!(self.pool(), |db| {
            store::stories::story_with_chapters(db, self.pool().chapters(), id, viewer.id).await
        })?;
        let row = owned_by(row, viewer.id)?;
        let mut stories = stories_from_rows(vec![row], joined)?;
        Ok(stories.remove(0))
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
        id: StoryId,
        title: &str,
    ) -> AppResult<Story> {
        validate_text("title", title, 200)?;
        let row = self.owned_story_row(viewer, id).await?;
        let now = to_db(store::now());
        store::stories::rename(&mut self.pool().get().await?.db(), row.id, title, now).await?;
        self.story_changed(row.id).await;
        self.story(viewer, row.id).await
    }

    /// Deletes a story with its chapters and media files.
    pub(crate) async fn delete_story(&self, viewer: &User, id: StoryId) -> AppResult<()> {
        let row = self.owned_story_row(viewer, id).await?;
        store::stories::delete(&mut self.pool().get().await?.db(), row.id).await?;
        self.media()
            .remove_dir(&format!("{}/{}", row.owner_id, row.id))
            .await;
        self.story_changed(row.id).await;
        tracing::info!(story_id = %row.id, "story deleted");
        Ok(())
    }

    /// Sends a `failed` story back to `pending`; any other status is a conflict.
    pub(crate) async fn retry_story(&self, viewer: &User, id: StoryId) -> AppResult<Story> {
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
        self.story(viewer, row.id).await
    }
}
