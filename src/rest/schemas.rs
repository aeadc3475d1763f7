//! The REST facade's request and response shapes as OpenAPI schemas (utoipa). They
//! describe what the route table's GraphQL documents produce (their aliases are these
//! field names); the schemathesis run in CI checks every answer against them.

#![allow(dead_code)] // Types for the document only: never constructed.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};

/// `true`, the only accepted value.
fn always_true() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
}

/// `"user"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum UserTag {
    User,
}
/// `"story"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoryTag {
    Story,
}
/// `"chapter"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChapterTag {
    Chapter,
}
/// `"file"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileTag {
    File,
}
/// `"internal"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileKind {
    Internal,
}
/// `"list"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ListTag {
    List,
}
/// `"conversation"`
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConversationTag {
    Conversation,
}
/// `"Bearer"`
#[derive(Serialize, ToSchema)]
pub(crate) enum BearerTag {
    Bearer,
}

/// The child an account's stories are for (spec §5.4).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "7c0e1d2a-3b4c-4d5e-8f90-123456789abc", "object": "user", "name": "민준", "age": 7, "created_at": "2024-07-30T10:30:00.123Z"}))]
pub(crate) struct User {
    #[schema(value_type = String, format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: UserTag,
    pub name: String,
    #[schema(minimum = 1, maximum = 19)]
    pub age: i32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

/// An access token (JWT, `expires_in` seconds) and a single-use refresh token.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token_type": "Bearer", "access_token": "eyJhbGciOiJIUzI1NiJ9…", "expires_in": 3600, "refresh_token": "q8Yw…"}))]
pub(crate) struct TokenPair {
    #[schema(inline)]
    pub token_type: BearerTag,
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
}

/// A media file behind a signed URL that expires (spec §5.1).
#[derive(Serialize, ToSchema)]
pub(crate) struct File {
    #[schema(inline)]
    pub object: FileTag,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: FileKind,
    #[schema(format = "uri")]
    pub url: String,
    #[schema(value_type = String, format = DateTime)]
    pub expiry_time: String,
}

/// One chapter of a story, with its illustration and narration when made (spec §5.2).
#[derive(Serialize, ToSchema)]
pub(crate) struct Chapter {
    #[schema(value_type = String, format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: ChapterTag,
    #[schema(minimum = 1)]
    pub chapter_number: i32,
    pub title: String,
    pub content: String,
    #[schema(required = true)]
    pub image: Option<File>,
    #[schema(required = true)]
    pub audio: Option<File>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoryStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

/// A story (spec §5.3); `title` is null until generation (or the guardian) writes one.
/// Fields that may be null are still always present, so they are `required` (nullable)
/// in the OpenAPI document — client generators then type them as present-but-optional.
#[derive(Serialize, ToSchema)]
pub(crate) struct Story {
    #[schema(value_type = String, format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: StoryTag,
    #[schema(value_type = String, format = "uuid")]
    pub owner_id: String,
    #[schema(required = true)]
    pub title: Option<String>,
    pub status: StoryStatus,
    pub chapters: Vec<Chapter>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// A page of stories (spec §3.5); `next_cursor` is null exactly when `has_more` is false.
#[derive(Serialize, ToSchema)]
pub(crate) struct StoryList {
    #[schema(inline)]
    pub object: ListTag,
    pub results: Vec<Story>,
    pub has_more: bool,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConversationStatus {
    Active,
    Ended,
}

/// A conversation with the guide (metadata).
#[derive(Serialize, ToSchema)]
pub(crate) struct Conversation {
    #[schema(value_type = String, format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: ConversationTag,
    pub child_name: String,
    pub age: i32,
    pub interests: Vec<String>,
    pub status: ConversationStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub ended_at: Option<String>,
}

/// One message of a conversation, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Message {
    pub seq: i32,
    /// `child` or `guide`.
    pub role: String,
    pub text: String,
    #[schema(format = "uri", required = true)]
    pub audio_url: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

/// A conversation with its messages.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationDetail {
    #[schema(value_type = String, format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: ConversationTag,
    pub child_name: String,
    pub age: i32,
    pub interests: Vec<String>,
    pub status: ConversationStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub ended_at: Option<String>,
    pub messages: Vec<Message>,
}

/// A page of conversations, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationList {
    #[schema(inline)]
    pub object: ListTag,
    pub results: Vec<Conversation>,
    pub has_more: bool,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Sign-up (extension, contract §3): the guardian's login and the child's details.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "minjun-family", "password": "correct horse battery", "name": "민준", "age": 7, "guardian_consent": true}))]
pub(crate) struct SignUpRequest {
    /// The login id: 3–64 characters of `A–Z a–z 0–9 . _ -`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    pub user_id: String,
    #[schema(min_length = 8, max_length = 128, pattern = r"^[^\x00]*$")]
    pub password: String,
    /// The child's name: 1–50 characters with a visible one, no control characters.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(minimum = 1, maximum = 19)]
    pub age: i32,
    /// Must be `true`: the guardian agrees to the processing of the child's data.
    #[schema(value_type = bool, schema_with = always_true)]
    pub guardian_consent: bool,
}

/// Log-in (spec §6.1).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "minjun-family", "password": "correct horse battery"}))]
pub(crate) struct TokenRequest {
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub user_id: String,
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub password: String,
}

/// A refresh token to rotate or revoke.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoryLength {
    Short,
    Medium,
    Long,
}

/// A character of the story: 1–100 characters, not only spaces. No text anywhere may
/// hold NUL (U+0000), hence `[^\x00]` in every pattern.
#[derive(Serialize, ToSchema)]
#[schema(
    min_length = 1,
    max_length = 100,
    pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
)]
pub(crate) struct CharacterName(String);

/// What the story should be about.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPreferences {
    /// 1–200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    pub theme: String,
    /// At most 10, each 1–100 characters (default: none).
    #[schema(max_items = 10, nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub characters: Option<Vec<CharacterName>>,
    /// `short` (3 chapters), `medium` (5, the default) or `long` (7).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<StoryLength>,
}

/// Ask for a story (spec §6.3).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_preferences": {"theme": "모험", "characters": ["용감한 토끼", "지혜로운 거북이"], "length": "medium"}, "conversation_id": null}))]
pub(crate) struct CreateStoryRequest {
    pub user_preferences: UserPreferences,
    /// A conversation of this account whose child and words the story uses.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub conversation_id: Option<String>,
}

/// Rename a story (the only field that can change).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "새로운 멋진 제목"}))]
pub(crate) struct UpdateStoryRequest {
    /// 1–200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    pub title: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HealthStatus {
    pub status: String,
    pub database: Option<String>,
}
