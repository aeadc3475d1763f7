//! The REST objects (spec §5): what the route documents select from GraphQL, read into
//! these types (`Deserialize`, the documents' aliases are their field names) and written
//! out as the envelope's `data` (`Serialize`). The OpenAPI document is generated from the
//! same types (`ToSchema`), and the schemathesis run in CI checks every answer against it.
//!
//! Request bodies are the schema's own input objects (`graphql::*Input`), which carry
//! their REST spelling and constraints; the query strings are the `*Query` types here.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::graphql::stories::{SortKey, SortOrder, StoryStatus};

/// A constant string field (`"object": "user"`): one variant, spelt as the spec does.
macro_rules! tag {
    ($name:ident, $variant:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub(crate) enum $name {
            $variant,
        }
    };
}

tag!(UserTag, User, "`\"user\"`");
tag!(StoryTag, Story, "`\"story\"`");
tag!(ChapterTag, Chapter, "`\"chapter\"`");
tag!(FileTag, File, "`\"file\"`");
tag!(FileKind, Internal, "`\"internal\"`");
tag!(ListTag, List, "`\"list\"`");
tag!(ConversationTag, Conversation, "`\"conversation\"`");
tag!(VoiceConsentTag, VoiceConsent, "`\"voice_consent\"`");
tag!(
    RegenerationTag,
    ChapterRegeneration,
    "`\"chapter_regeneration\"`"
);

/// `"Bearer"`
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) enum BearerTag {
    Bearer,
}

/// The child an account's stories are for (spec §5.4).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "7c0e1d2a-3b4c-4d5e-8f90-123456789abc", "object": "user", "name": "민준", "age": 7, "created_at": "2024-07-30T10:30:00.123Z"}))]
pub(crate) struct User {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: UserTag,
    pub name: String,
    #[schema(minimum = 1, maximum = 19)]
    pub age: i32,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The guardian's voice-cloning consent (extension, issue 33): whether it stands, and
/// the text and provider agreed to — or, until it is given, the ones to show.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"object": "voice_consent", "given": false, "voice_of": null, "provider": "https://api.elevenlabs.io", "text_version": "2026-12-05", "text": "목소리 복제 동의 (버전 2026-12-05) …", "given_at": null}))]
pub(crate) struct VoiceConsent {
    #[schema(inline)]
    pub object: VoiceConsentTag,
    pub given: bool,
    /// `"guardian"` once given.
    #[schema(required = true)]
    pub voice_of: Option<String>,
    /// The voice provider's address the samples go to (`"none"`: kept on this server).
    pub provider: String,
    pub text_version: String,
    /// Korean; show it to the guardian before asking.
    pub text: String,
    #[schema(format = DateTime, required = true)]
    pub given_at: Option<String>,
}

/// A request to make part of a chapter again (extension, issue 34), and how it went:
/// `status` moves `pending` → `in_progress` → `completed` or `failed`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "0b0e6f1c-6a53-4f0e-9d2b-0c1f5d2b7a11", "object": "chapter_regeneration", "story_id": "5d1bd1ab-8f84-4d0e-9a7a-3b1f4c0f2a11", "chapter_number": 2, "text": false, "image": true, "audio": false, "status": "pending", "failure_reason": null, "created_at": "2026-12-05T10:00:00.000Z", "updated_at": "2026-12-05T10:00:00.000Z"}))]
pub(crate) struct ChapterRegeneration {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: RegenerationTag,
    #[schema(format = "uuid")]
    pub story_id: String,
    pub chapter_number: i32,
    pub text: bool,
    pub image: bool,
    pub audio: bool,
    pub status: StoryStatus,
    #[schema(required = true)]
    pub failure_reason: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// An access token (JWT, `expires_in` seconds) and a single-use refresh token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token_type": "Bearer", "access_token": "eyJhbGciOiJIUzI1NiJ9…", "expires_in": 3600, "refresh_token": "q8Yw…"}))]
pub(crate) struct TokenPair {
    #[schema(inline)]
    pub token_type: BearerTag,
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
}

/// A media file behind a signed URL that expires (spec §5.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[schema(inline)]
    pub object: FileTag,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: FileKind,
    #[schema(format = "uri")]
    pub url: String,
    #[schema(format = DateTime)]
    pub expiry_time: String,
}

/// One chapter of a story, with its illustration and narration when made (spec §5.2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Chapter {
    #[schema(format = "uuid")]
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

/// A story (spec §5.3); `title` is null until generation (or the guardian) writes one.
/// Fields that may be null are still always present, so they are `required` (nullable)
/// in the OpenAPI document — client generators then type them as present-but-optional.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Story {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: StoryTag,
    #[schema(format = "uuid")]
    pub owner_id: String,
    #[schema(required = true)]
    pub title: Option<String>,
    pub status: StoryStatus,
    pub chapters: Vec<Chapter>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// Whether the conversation can still go on.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConversationStatus {
    Active,
    Ended,
}

/// A conversation with the guide (metadata).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conversation {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: ConversationTag,
    pub child_name: String,
    pub age: i32,
    pub interests: Vec<String>,
    pub status: ConversationStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
}

/// One message of a conversation, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Message {
    pub seq: i32,
    /// `child` or `guide`.
    pub role: String,
    pub text: String,
    #[schema(format = "uri", required = true)]
    pub audio_url: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A conversation with its messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationDetail {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(inline)]
    pub object: ConversationTag,
    pub child_name: String,
    pub age: i32,
    pub interests: Vec<String>,
    pub status: ConversationStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
    pub messages: Vec<Message>,
}

/// The health checks' `data`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthStatus {
    pub status: &'static str,
    pub database: Option<&'static str>,
}

/// A page (spec §3.5): `next_cursor` is null exactly when `has_more` is false. Its
/// OpenAPI name is the item's with `List` after it (`StoryList`).
#[derive(Debug, Serialize)]
pub(crate) struct List<T> {
    pub object: ListTag,
    pub results: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> PartialSchema for List<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A page (spec §3.5); `next_cursor` is null exactly when `has_more` is false.",
            ))
            .property("object", ListTag::schema())
            .required("object")
            .property(
                "results",
                ArrayBuilder::new().items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    T::name(),
                ))),
            )
            .required("results")
            .property("has_more", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("has_more")
            .property(
                "next_cursor",
                ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ])),
            )
            .required("next_cursor")
            .into()
    }
}

impl<T: ToSchema> ToSchema for List<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}List", T::name()))
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// A Relay connection as GraphQL answers it: what a list route's document selects.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection<T> {
    edges: Vec<Edge<T>>,
    page_info: PageInfo,
}

#[derive(Debug, Deserialize)]
struct Edge<T> {
    node: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// The one place a connection becomes the spec's list.
impl<T> From<Connection<T>> for List<T> {
    fn from(connection: Connection<T>) -> List<T> {
        let has_more = connection.page_info.has_next_page;
        List {
            object: ListTag::List,
            results: connection.edges.into_iter().map(|e| e.node).collect(),
            has_more,
            next_cursor: connection.page_info.end_cursor.filter(|_| has_more),
        }
    }
}

/// The selection of a connection of `fields`, as a list route's document needs it.
pub(crate) fn connection_selection(fields: &str) -> String {
    format!("edges {{ node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }}")
}

/// `GET /stories`: cursor pagination (spec §3.5) plus filter and sort.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StoryListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i32>,
    /// The previous page's `next_cursor` (opaque; only with the same filters).
    #[param(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]
    pub start_cursor: Option<String>,
    /// Only stories in this status.
    #[param(inline)]
    pub status: Option<StoryStatus>,
    /// Sort key (default `created_at`; titles by code point, untitled last).
    #[param(inline)]
    pub sort_by: Option<SortKey>,
    /// Sort order (default `desc`).
    #[param(inline)]
    pub order: Option<SortOrder>,
}

/// `GET /conversations`: cursor pagination.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i32>,
    /// The previous page's `next_cursor` (opaque; only with the same filters).
    #[param(pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]
    pub start_cursor: Option<String>,
}

/// Routes without query parameters (any given is refused).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoQuery {}

/// `true`, the only accepted value (`guardian_consent`).
pub(crate) fn always_true() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
}

/// `"guardian"`, the only voice that may be cloned (`voice_of`).
pub(crate) fn guardian_only() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["guardian"]))
}

/// The story's characters: at most 10, each 1–100 characters, not only spaces. No text
/// anywhere may hold NUL (U+0000), hence `[^\x00]` in every pattern.
pub(crate) fn character_names() -> ArrayBuilder {
    ArrayBuilder::new().max_items(Some(10)).items(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(100))
            .pattern(Some(r"^[^\x00]*[^\s\x00][^\x00]*$")),
    )
}
