//! Stories in GraphQL: `story`, `stories` (a Relay connection sharing the REST cursors),
//! `createStory`, `updateStory`, `deleteStory`, `retryStory`.

use async_graphql::resolver_utils::enum_value;
use async_graphql::{
    Context, Enum, ID, InputObject, Object, ScalarType, SimpleObject, Subscription, Value,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::plain::{Fast, Plain, nested};
use super::scalars::Timestamp;
use super::{domain, viewer};
use crate::domain::stories::{
    self as model, DEFAULT_PAGE_SIZE, ListStories, MediaFile, NewStory, Story,
};
use crate::events::Event;
use crate::media::SignedUrl;
use crate::vocabulary::parse_id;

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[graphql(
    remote = "crate::domain::stories::StoryStatus",
    rename_items = "snake_case"
)]
pub(crate) enum StoryStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[graphql(
    remote = "crate::domain::stories::StoryLength",
    rename_items = "snake_case"
)]
pub(crate) enum StoryLength {
    Short,
    Medium,
    Long,
}

impl StoryLength {
    /// The default length (a `serde` default).
    fn medium() -> StoryLength {
        StoryLength::Medium
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StorySort)]
#[graphql(
    name = "StorySort",
    remote = "crate::domain::stories::SortKey",
    rename_items = "snake_case"
)]
pub(crate) enum SortKey {
    CreatedAt,
    UpdatedAt,
    Title,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[graphql(
    remote = "crate::domain::stories::SortOrder",
    rename_items = "snake_case"
)]
pub(crate) enum SortOrder {
    Asc,
    Desc,
}

/// A media file behind a signed, expiring URL (spec §5.1). Signed once, so `url` and
/// `expiryTime` always agree (and a page of 200 files signs 200 times, not 400).
pub(crate) struct FileObject {
    signed: SignedUrl,
    content_type: String,
}

impl FileObject {
    fn signed(ctx: &Context<'_>, file: &MediaFile) -> FileObject {
        FileObject {
            signed: domain(ctx).media().sign(&file.path, chrono::Utc::now()),
            content_type: file.content_type.clone(),
        }
    }
}

#[Object(name = "File")]
impl FileObject {
    /// Always `"file"`.
    async fn object(&self) -> &'static str {
        "file"
    }
    /// Always `"internal"`.
    async fn r#type(&self) -> &'static str {
        "internal"
    }
    /// Signed URL, valid until `expiryTime`.
    async fn url(&self) -> &str {
        &self.signed.url
    }
    async fn expiry_time(&self) -> Timestamp {
        Timestamp(self.signed.expires)
    }
    /// MIME type of the file.
    async fn content_type(&self) -> &str {
        &self.content_type
    }
}

/// A chapter, borrowed from its story (a page of 20 stories would otherwise copy 100
/// chapters' texts once more per request).
pub(crate) struct ChapterObject<'a>(pub &'a model::Chapter);

#[Object(name = "Chapter")]
impl<'a> ChapterObject<'a> {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Always `"chapter"`.
    async fn object(&self) -> &'static str {
        "chapter"
    }
    async fn chapter_number(&self) -> i32 {
        self.0.number
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn content(&self) -> &str {
        &self.0.content
    }
    /// The illustration, `null` when none could be made.
    async fn image(&self, ctx: &Context<'_>) -> Option<FileObject> {
        self.0.image.as_ref().map(|f| FileObject::signed(ctx, f))
    }
    /// The narration, `null` when none could be made.
    async fn audio(&self, ctx: &Context<'_>) -> Option<FileObject> {
        self.0.audio.as_ref().map(|f| FileObject::signed(ctx, f))
    }
}

pub(crate) struct StoryObject(pub Story);

use crate::domain::stories::provenance::AI_LABEL;

/// Where a story came from (`Story.provenance`).
#[derive(SimpleObject)]
pub(crate) struct StoryProvenance {
    /// True once the story has chapters: its text, pictures and narration are made by
    /// AI (the offline built-ins too).
    pub ai_generated: bool,
    /// The label to show with the story.
    pub label: String,
    /// The IPTC digital source type of its content (`trainedAlgorithmicMedia`), also
    /// written into each picture's XMP and each sound's tags.
    pub digital_source_type: String,
    /// Who made what, in chapter order.
    pub parts: Vec<ProvenancePart>,
}

/// What one provider (and model) made of a story.
#[derive(SimpleObject)]
pub(crate) struct ProvenancePart {
    /// `text`, `illustration` or `narration`.
    pub capability: String,
    /// The provider with its model (`openai-images (gpt-image-1)`), or an offline
    /// built-in (`offline-png`).
    pub made_by: String,
    /// Made on this server by a built-in offline provider.
    pub offline: bool,
    /// The chapters it made.
    pub chapters: Vec<i32>,
}

#[Object(name = "Story")]
impl StoryObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Always `"story"`.
    async fn object(&self) -> &'static str {
        "story"
    }
    async fn owner_id(&self) -> ID {
        ID(self.0.owner_id.to_string())
    }
    /// `null` until generation writes one (or the guardian sets one).
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn status(&self) -> StoryStatus {
        self.0.status.into()
    }
    /// The chapters in order (at most 7: complexity counts the selection 7 times).
    #[graphql(complexity = "7 * child_complexity")]
    async fn chapters(&self) -> Vec<ChapterObject<'_>> {
        self.0.chapters.iter().map(ChapterObject).collect()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }
    /// Where the story came from: made by AI, and which provider and model made its
    /// text, pictures and narration (the pictures and sounds carry the same label in
    /// their metadata). Apps show `label` with the story (docs/privacy.md).
    #[graphql(complexity = "5 + child_complexity")]
    async fn provenance(&self, ctx: &Context<'_>) -> async_graphql::Result<StoryProvenance> {
        let p = domain(ctx).stories().provenance(&self.0).await?;
        Ok(StoryProvenance {
            ai_generated: p.ai_generated,
            label: AI_LABEL.to_string(),
            digital_source_type: p.digital_source_type.to_string(),
            parts: p
                .parts
                .into_iter()
                .map(|part| ProvenancePart {
                    capability: part.capability.to_string(),
                    made_by: part.made_by,
                    offline: part.offline,
                    chapters: part.chapters,
                })
                .collect(),
        })
    }
    /// The story's requests to write a chapter again (`regenerateChapter`), newest
    /// first (the last 20), with how each went.
    #[graphql(complexity = "20 * child_complexity")]
    async fn regenerations(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ChapterRegenerationObject>> {
        Ok(domain(ctx)
            .stories()
            .regenerations(self.0.id)
            .await?
            .into_iter()
            .map(ChapterRegenerationObject)
            .collect())
    }
    /// Why generation failed (`failed` stories); on a `completed` story, what could not
    /// be made at all (e.g. every illustration failed, and why); `null` otherwise.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// The conversation the story was made from, if any.
    async fn conversation_id(&self) -> Option<ID> {
        self.0.conversation_id.map(|c| ID(c.to_string()))
    }
    async fn theme(&self) -> &str {
        &self.0.theme
    }
    async fn characters(&self) -> &[String] {
        &self.0.characters
    }
    async fn length(&self) -> StoryLength {
        self.0.length.into()
    }
    /// How many chapters generation writes (3, 5 or 7).
    async fn chapter_count(&self) -> i32 {
        self.0.chapter_count
    }
}

// The synchronous path (`plain.rs`): each field's value exactly as the resolvers above
// give it.

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn optional_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

impl Plain for FileObject {
    fn field_value(&self, name: &str, _ctx: &Context<'_>) -> Option<Value> {
        Some(match name {
            "object" => text("file"),
            "type" => text("internal"),
            "url" => text(&self.signed.url),
            "expiryTime" => Timestamp(self.signed.expires).to_value(),
            "contentType" => text(&self.content_type),
            _ => return None,
        })
    }
}

impl Plain for ChapterObject<'_> {
    fn field_value(&self, name: &str, ctx: &Context<'_>) -> Option<Value> {
        let file = |file: &Option<MediaFile>| match file {
            Some(f) => nested(&FileObject::signed(ctx, f), ctx),
            None => Some(Value::Null),
        };
        Some(match name {
            "id" => Value::String(self.0.id.to_string()),
            "object" => text("chapter"),
            "chapterNumber" => Value::from(self.0.number),
            "title" => text(&self.0.title),
            "content" => text(&self.0.content),
            "image" => file(&self.0.image)?,
            "audio" => file(&self.0.audio)?,
            _ => return None,
        })
    }
}

impl Plain for StoryObject {
    fn field_value(&self, name: &str, ctx: &Context<'_>) -> Option<Value> {
        let story = &self.0;
        Some(match name {
            "id" => Value::String(story.id.to_string()),
            "object" => text("story"),
            "ownerId" => Value::String(story.owner_id.to_string()),
            "title" => optional_text(story.title.as_deref()),
            "status" => enum_value(StoryStatus::from(story.status)),
            "chapters" => {
                let items = ctx.with_selection_set(&ctx.item.node.selection_set);
                Value::List(
                    story
                        .chapters
                        .iter()
                        .enumerate()
                        .map(|(i, chapter)| {
                            super::plain::resolve_plain(
                                &ChapterObject(chapter),
                                &items.with_index(i),
                            )
                        })
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            "createdAt" => Timestamp(story.created_at).to_value(),
            "updatedAt" => Timestamp(story.updated_at).to_value(),
            "failureReason" => optional_text(story.failure_reason.as_deref()),
            "conversationId" => story
                .conversation_id
                .map_or(Value::Null, |c| Value::String(c.to_string())),
            "theme" => text(&story.theme),
            "characters" => Value::List(story.characters.iter().map(|c| text(c)).collect()),
            "length" => enum_value(StoryLength::from(story.length)),
            "chapterCount" => Value::from(story.chapter_count),
            _ => return None,
        })
    }
}

/// More of a chapter's text as it is being written (`storyText`).
#[derive(SimpleObject)]
pub(crate) struct StoryTextDelta {
    /// The chapter being written (1-based).
    pub chapter_number: i32,
    /// Where `delta` goes: the chapter's text keeps its first `offset` characters and
    /// continues with `delta`.
    pub offset: i32,
    /// The characters from `offset` on (moderated).
    pub delta: String,
    /// The chapter is complete and stored.
    pub done: bool,
}

#[derive(SimpleObject)]
pub(crate) struct PageInfo {
    pub has_next_page: bool,
    /// Cursor of the last edge; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub(crate) struct StoryEdge {
    pub cursor: String,
    pub(crate) node: Fast<StoryObject>,
}

#[derive(SimpleObject)]
pub(crate) struct StoryConnection {
    pub edges: Vec<StoryEdge>,
    pub page_info: PageInfo,
}

impl From<model::StoryPage> for StoryConnection {
    fn from(page: model::StoryPage) -> StoryConnection {
        let end_cursor = page.end_cursor().map(str::to_string);
        StoryConnection {
            page_info: PageInfo {
                has_next_page: page.has_more,
                end_cursor,
            },
            edges: page
                .items
                .into_iter()
                .map(|(cursor, story)| StoryEdge {
                    cursor,
                    node: Fast(StoryObject(story)),
                })
                .collect(),
        }
    }
}

/// What the story should be about.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserPreferences)]
pub(crate) struct UserPreferencesInput {
    /// 1–200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    pub theme: String,
    /// At most 10, each 1–100 characters, not only spaces (default: none).
    #[graphql(default)]
    #[serde(default)]
    #[schema(schema_with = crate::rest::types::character_names)]
    pub characters: Vec<String>,
    /// `short` (3 chapters), `medium` (5, the default) or `long` (7).
    #[graphql(default_with = "StoryLength::Medium")]
    #[serde(default = "StoryLength::medium")]
    pub length: StoryLength,
}

/// Ask for a story (spec §6.3); also the REST body of `POST /api/v1/stories`.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateStoryRequest, example = json!({"user_preferences": {"theme": "모험", "characters": ["용감한 토끼", "지혜로운 거북이"], "length": "medium"}, "conversation_id": null}))]
pub(crate) struct CreateStoryInput {
    pub user_preferences: UserPreferencesInput,
    /// A conversation of the viewer's whose child and words the story uses.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub conversation_id: Option<ID>,
}

/// Rename a story (the only field that can change); also the REST body of
/// `PATCH /api/v1/stories/{id}`.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateStoryRequest, example = json!({"title": "새로운 멋진 제목"}))]
pub(crate) struct UpdateStoryInput {
    /// 1–200 characters, not only spaces; the guardian's title wins over a generated one.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    pub title: String,
}

#[derive(Default)]
pub(crate) struct StoryQuery;

#[Object]
impl StoryQuery {
    /// One of the viewer's stories.
    async fn story(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Fast<StoryObject>> {
        let viewer = viewer(ctx).await?;
        Ok(Fast(StoryObject(
            domain(ctx)
                .stories()
                .story(&viewer, parse_id("id", &id)?)
                .await?,
        )))
    }

    /// The viewer's stories, newest first by default.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn stories(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "page size, 1–100 (default 20)")] first: Option<i32>,
        after: Option<String>,
        status: Option<StoryStatus>,
        #[graphql(default_with = "SortKey::CreatedAt")] sort_by: SortKey,
        #[graphql(default_with = "SortOrder::Desc")] order: SortOrder,
    ) -> async_graphql::Result<StoryConnection> {
        let viewer = viewer(ctx).await?;
        let page = domain(ctx)
            .stories()
            .list_stories(
                &viewer,
                ListStories {
                    status: status.map(Into::into),
                    sort: sort_by.into(),
                    order: order.into(),
                    first: first.unwrap_or(DEFAULT_PAGE_SIZE),
                    after,
                },
            )
            .await?;
        Ok(StoryConnection::from(page))
    }
}

#[derive(Default)]
pub(crate) struct StoryMutation;

#[Object]
impl StoryMutation {
    /// Asks for a new story; it starts `pending` and is written in the background.
    async fn create_story(
        &self,
        ctx: &Context<'_>,
        input: CreateStoryInput,
    ) -> async_graphql::Result<StoryObject> {
        let viewer = viewer(ctx).await?;
        let prefs = input.user_preferences;
        let story = domain(ctx)
            .stories()
            .create_story(
                &viewer,
                NewStory {
                    theme: Some(prefs.theme),
                    characters: prefs.characters,
                    length: prefs.length.into(),
                    conversation_id: input
                        .conversation_id
                        .map(|id| parse_id("conversation_id", &id))
                        .transpose()?,
                },
            )
            .await?;
        Ok(StoryObject(story))
    }

    /// Renames a story.
    async fn update_story(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateStoryInput,
    ) -> async_graphql::Result<StoryObject> {
        let viewer = viewer(ctx).await?;
        let story = domain(ctx)
            .stories()
            .rename_story(&viewer, parse_id("id", &id)?, &input.title)
            .await?;
        Ok(StoryObject(story))
    }

    /// Deletes a story with its chapters and media.
    async fn delete_story(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx).await?;
        domain(ctx)
            .stories()
            .delete_story(&viewer, parse_id("id", &id)?)
            .await?;
        Ok(true)
    }

    /// Sends a `failed` story back to `pending`.
    async fn retry_story(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<StoryObject> {
        let viewer = viewer(ctx).await?;
        Ok(StoryObject(
            domain(ctx)
                .stories()
                .retry_story(&viewer, parse_id("id", &id)?)
                .await?,
        ))
    }

    /// Asks for chapter `chapterNumber` of a completed story to be made again — its
    /// text, picture or narration, any of them — keeping the rest. Done in the
    /// background, one at a time per story, counted in the story quota; the chapter's
    /// changes arrive on `storyUpdated`, and `Story.regenerations` says how it went.
    /// `CONFLICT` while the story is not completed or another of its chapters is being
    /// made again; `RESOURCE_NOT_FOUND` for a chapter it does not have.
    async fn regenerate_chapter(
        &self,
        ctx: &Context<'_>,
        id: ID,
        chapter_number: i32,
        input: RegenerateChapterInput,
    ) -> async_graphql::Result<ChapterRegenerationObject> {
        let viewer = viewer(ctx).await?;
        let what = model::Redo {
            text: input.text.unwrap_or(false),
            image: input.image.unwrap_or(false),
            audio: input.audio.unwrap_or(false),
        };
        Ok(ChapterRegenerationObject(
            domain(ctx)
                .stories()
                .regenerate_chapter(&viewer, parse_id("id", &id)?, chapter_number, what)
                .await?,
        ))
    }

    /// Prepares the book of a completed story: a URL that downloads it as an EPUB 3
    /// picture book (`application/epub+zip`: a cover, a page per chapter with its
    /// illustration, the narration read aloud in sync with the text) without the bearer
    /// header, for ten minutes and this story only. The download is
    /// `GET /api/v1/stories/{id}/book.epub`. `CONFLICT` until the story is completed.
    async fn prepare_book(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<PreparedBook> {
        let viewer = viewer(ctx).await?;
        let prepared = domain(ctx)
            .books()
            .prepare(&viewer, parse_id("id", &id)?)
            .await?;
        Ok(PreparedBook {
            url: prepared.url,
            expires_at: Timestamp(prepared.expires_at),
        })
    }
}

/// What to make again of a chapter (`regenerateChapter`; the REST body of
/// `POST /api/v1/stories/{id}/chapters/{n}/regenerate`): any of its text, picture and
/// narration, at least one. New text is narrated anew too.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RegenerateChapterRequest, example = json!({"text": false, "image": true, "audio": false}))]
pub(crate) struct RegenerateChapterInput {
    /// Write the chapter's words again (its narration then follows them).
    #[serde(default)]
    #[graphql(default)]
    pub text: Option<bool>,
    /// Draw the chapter's picture again.
    #[serde(default)]
    #[graphql(default)]
    pub image: Option<bool>,
    /// Narrate the chapter again.
    #[serde(default)]
    #[graphql(default)]
    pub audio: Option<bool>,
}

/// A request to make part of a chapter again, and how it went.
pub(crate) struct ChapterRegenerationObject(pub model::Regeneration);

#[Object(name = "ChapterRegeneration")]
impl ChapterRegenerationObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Always `"chapter_regeneration"`.
    async fn object(&self) -> &'static str {
        "chapter_regeneration"
    }
    async fn story_id(&self) -> ID {
        ID(self.0.story_id.to_string())
    }
    async fn chapter_number(&self) -> i32 {
        self.0.chapter_number
    }
    /// The words are written again (and so narrated again).
    async fn text(&self) -> bool {
        self.0.text
    }
    /// The picture is drawn again.
    async fn image(&self) -> bool {
        self.0.image
    }
    /// The narration is made again.
    async fn audio(&self) -> bool {
        self.0.audio
    }
    /// `pending` → `in_progress` → `completed` or `failed`.
    async fn status(&self) -> StoryStatus {
        self.0.status.into()
    }
    /// Why it failed; `null` otherwise.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }
}

/// Where to download a story's book (`prepareBook`).
#[derive(SimpleObject)]
pub(crate) struct PreparedBook {
    /// `GET` it for the EPUB; it works until `expiresAt`.
    pub url: String,
    pub expires_at: Timestamp,
}

#[derive(Default)]
pub(crate) struct StorySubscription;

/// What decides whether a subscriber has already seen a state.
fn fingerprint(story: &Story) -> String {
    let chapters: Vec<String> = story
        .chapters
        .iter()
        .map(|c| {
            format!(
                "{}:{}:{}:{}:{}",
                c.number,
                c.title,
                c.content,
                c.image
                    .as_ref()
                    .map(|f| f.id.to_string())
                    .unwrap_or_default(),
                c.audio
                    .as_ref()
                    .map(|f| f.id.to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{}|{:?}|{}|{}",
        story.status.as_str(),
        story.title,
        story.failure_reason.as_deref().unwrap_or(""),
        chapters.join(",")
    )
}

fn finished(story: &Story) -> bool {
    matches!(
        story.status,
        model::StoryStatus::Completed | model::StoryStatus::Failed
    )
}

#[Subscription]
impl StorySubscription {
    /// The story now, then every change (status, title, each chapter and its media as
    /// they are stored) until it is `completed` or `failed`. Works across server
    /// processes sharing one PostgreSQL database.
    async fn story_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = StoryObject> + use<>> {
        let viewer = viewer(ctx).await?;
        let domain = domain(ctx).clone();
        // Subscribe before reading, so no change between the two is missed.
        let events = domain.events().subscribe();
        let first = domain
            .stories()
            .story(&viewer, parse_id("id", &id)?)
            .await?;
        let story_id = first.id;
        struct State {
            domain: crate::domain::Domain,
            viewer: crate::domain::accounts::User,
            events: tokio::sync::broadcast::Receiver<Event>,
            pending: Option<Story>,
            last: String,
            done: bool,
        }
        let state = State {
            domain,
            viewer,
            events,
            last: String::new(),
            done: false,
            pending: Some(first),
        };
        Ok(futures_util::stream::unfold(
            state,
            move |mut st| async move {
                loop {
                    if let Some(story) = st.pending.take() {
                        let print = fingerprint(&story);
                        // A finished story goes on while one of its chapters is made
                        // again.
                        let done = finished(&story)
                            && !st
                                .domain
                                .stories()
                                .regenerating(story.id)
                                .await
                                .unwrap_or(false);
                        if print != st.last {
                            st.last = print;
                            st.done = done;
                            return Some((StoryObject(story), st));
                        }
                        st.done = done;
                    }
                    if st.done {
                        return None;
                    }
                    match st.events.recv().await {
                        Ok(Event::Story { id }) if id == story_id => {}
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    }
                    // Deleted, or no longer readable: the stream ends.
                    match st.domain.stories().story(&st.viewer, story_id).await {
                        Ok(story) => st.pending = Some(story),
                        Err(_) => return None,
                    }
                }
            },
        ))
    }

    /// A story's text as it is written, for apps that show it typing: the chapter being
    /// written, as `delta` from character `offset` on (the text before `offset` stays,
    /// whatever the app had after it is replaced — normally `offset` is where the text
    /// ends, so the delta is appended), at most about twice a second, each piece
    /// released only after moderation has passed the chapter's text so far; `done` when
    /// the chapter is complete and stored, with the text then exactly the stored words.
    /// A subscriber that joins mid-chapter gets the text from its join on (`offset`
    /// says how much came before). Ends when the story is `completed` or `failed` (at
    /// once if it already is); a chapter refused by moderation fails the story, and its
    /// text shown so far must be dropped. Works across server processes sharing one
    /// PostgreSQL database.
    async fn story_text(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = StoryTextDelta> + use<>> {
        let viewer = viewer(ctx).await?;
        let domain = domain(ctx).clone();
        let events = domain.events().subscribe();
        let story = domain
            .stories()
            .story(&viewer, parse_id("id", &id)?)
            .await?;
        let story_id = story.id;
        let state = (domain, viewer, events, finished(&story));
        Ok(futures_util::stream::unfold(
            state,
            move |(domain, viewer, mut events, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match events.recv().await {
                        Ok(Event::StoryText {
                            id,
                            chapter,
                            offset,
                            delta,
                            done,
                        }) if id == story_id => {
                            let item = StoryTextDelta {
                                chapter_number: chapter,
                                offset,
                                delta,
                                done,
                            };
                            return Some((item, (domain, viewer, events, false)));
                        }
                        Ok(Event::Story { id }) if id == story_id => {
                            // Deleted, no longer readable or finished: the stream ends.
                            match domain.stories().story(&viewer, story_id).await {
                                Ok(story) if !finished(&story) => {}
                                _ => return None,
                            }
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}
