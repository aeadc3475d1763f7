//! Row types of the schema. Both backends are checked at compile time.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::types::{
    AuditId, ChapterId, ConversationId, ConversationStatus, DeletionStatus, MediaFileId, MessageId,
    MessageRole, PurgeRunId, RefreshTokenId, RegenerationId, Role, StepId, StepOutcome, StoryId,
    StoryLength, StoryStatus, TokenFamilyId, UserId, VoiceConsentId, VoiceDeletionId,
    VoiceSampleId, VoiceStatus,
};

use super::schema::{
    chapter_regenerations, chapters, conversation_messages, conversations, generation_steps,
    media_files, ops_audit, purge_runs, refresh_tokens, stories, users, voice_consents,
    voice_deletions, voice_samples,
};

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct UserRow {
    pub id: UserId,
    pub login_id: String,
    pub login_key: String,
    pub password_hash: String,
    pub name: String,
    pub age: i32,
    pub role: Role,
    pub guardian_consent_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub voice_id: Option<String>,
    pub voice_status: VoiceStatus,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct RefreshTokenRow {
    pub id: RefreshTokenId,
    pub user_id: UserId,
    pub family_id: TokenFamilyId,
    pub token_hash: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct ConversationRow {
    pub id: ConversationId,
    pub owner_id: UserId,
    pub child_name: Option<String>,
    pub child_age: Option<i32>,
    pub interests: String,
    pub status: ConversationStatus,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = stories)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct StoryRow {
    pub id: StoryId,
    pub owner_id: UserId,
    pub conversation_id: Option<ConversationId>,
    pub title: Option<String>,
    pub title_from_guardian: bool,
    pub status: StoryStatus,
    pub theme: String,
    pub characters: String,
    pub length: StoryLength,
    pub chapter_count: i32,
    pub child_name: String,
    pub child_age: i32,
    pub failure_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub attempts: i32,
    /// Changes to the story's chapters so far, counted by the database (migration 16):
    /// the key the chapter cache keeps them under.
    pub revision: i64,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = media_files)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MediaFileRow {
    pub id: MediaFileId,
    pub owner_id: UserId,
    pub story_id: Option<StoryId>,
    pub path: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = chapters)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ChapterRow {
    pub id: ChapterId,
    pub story_id: StoryId,
    pub chapter_number: i32,
    pub title: String,
    pub content: String,
    pub created_at: NaiveDateTime,
    #[diesel(embed)]
    pub files: ChapterFiles,
}

/// The text columns of a chapter that a story's readers see (no timestamp to parse).
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = chapters)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct ChapterText {
    pub id: ChapterId,
    pub story_id: StoryId,
    pub chapter_number: i32,
    pub title: String,
    pub content: String,
}

/// A chapter's illustration and narration: each file's id with its path and content type
/// (migration 000010; `link_media` writes the three together), so a chapter's readers
/// need no `media_files` lookup. A file counts only while the chapter points at it (a
/// file's deletion clears the id).
#[derive(Clone, Debug, Default, Queryable, Selectable, Insertable)]
#[diesel(table_name = chapters)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ChapterFiles {
    pub image_file_id: Option<MediaFileId>,
    pub image_path: Option<String>,
    pub image_content_type: Option<String>,
    pub audio_file_id: Option<MediaFileId>,
    pub audio_path: Option<String>,
    pub audio_content_type: Option<String>,
}

impl ChapterFiles {
    /// The image's id, path and content type, if the chapter has one.
    pub(crate) fn image(&self) -> Option<MediaColumns> {
        file(
            &self.image_file_id,
            &self.image_path,
            &self.image_content_type,
        )
    }

    /// The narration's id, path and content type, if the chapter has one.
    pub(crate) fn audio(&self) -> Option<MediaColumns> {
        file(
            &self.audio_file_id,
            &self.audio_path,
            &self.audio_content_type,
        )
    }
}

fn file(
    id: &Option<MediaFileId>,
    path: &Option<String>,
    content_type: &Option<String>,
) -> Option<MediaColumns> {
    Some(((*id)?, path.clone()?, content_type.clone()?))
}

/// A chapter as its readers see it: its text and its files.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = chapters)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct ChapterRead {
    #[diesel(embed)]
    pub text: ChapterText,
    #[diesel(embed)]
    pub files: ChapterFiles,
}

impl ChapterRead {
    /// The text with each file's id, path and content type.
    pub(crate) fn files(self) -> (ChapterText, Option<MediaColumns>, Option<MediaColumns>) {
        let (image, audio) = (self.files.image(), self.files.audio());
        (self.text, image, audio)
    }
}

/// The id, path and content type of a chapter's image or narration.
pub(crate) type MediaColumns = (MediaFileId, String, String);

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = generation_steps)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct GenerationStepRow {
    pub id: StepId,
    pub story_id: StoryId,
    pub step: String,
    pub chapter_number: Option<i32>,
    pub provider: String,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub duration_ms: i64,
    pub outcome: StepOutcome,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    /// The provider and model, on a successful attempt.
    pub made_by: Option<String>,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversation_messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct MessageRow {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i32,
    pub role: MessageRole,
    pub text: String,
    pub flagged: bool,
    pub audio_path: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = voice_samples)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct VoiceSampleRow {
    pub id: VoiceSampleId,
    pub owner_id: UserId,
    pub path: String,
    pub format: String,
    pub size_bytes: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = ops_audit)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct AuditRow {
    pub id: AuditId,
    pub operator_id: UserId,
    pub action: String,
    pub detail: String,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = voice_deletions)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct VoiceDeletionRow {
    pub id: VoiceDeletionId,
    pub voice_id: String,
    pub owner_id: UserId,
    pub status: DeletionStatus,
    pub last_error: String,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A voice-cloning consent as given (`withdrawn_at` once withdrawn).
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = voice_consents)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct VoiceConsentRow {
    pub id: VoiceConsentId,
    pub owner_id: UserId,
    pub voice_of: String,
    pub provider: String,
    pub text_version: String,
    pub text: String,
    pub given_at: NaiveDateTime,
    pub withdrawn_at: Option<NaiveDateTime>,
}

/// One retention purge: when, by whom, what it deleted.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = purge_runs)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub(crate) struct PurgeRunRow {
    pub id: PurgeRunId,
    pub slot: Option<i64>,
    pub trigger: String,
    pub process: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub conversations: i32,
    pub reply_audio: i32,
    pub voice_samples: i32,
    pub error: Option<String>,
}

/// A request to write one chapter of a completed story again (`chapter_regenerations`).
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = chapter_regenerations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct RegenerationRow {
    pub id: RegenerationId,
    pub story_id: StoryId,
    pub owner_id: UserId,
    pub chapter_number: i32,
    pub redo_text: bool,
    pub redo_image: bool,
    pub redo_audio: bool,
    pub status: StoryStatus,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}
