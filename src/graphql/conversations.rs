//! Conversations in GraphQL: the operations the conversation WebSocket is adapted onto
//! (`startConversation`, `sendMessage`, `endConversation`), the guardians' views
//! (`conversation`, `conversations`, `deleteConversation`) and the live
//! `conversationEvents` subscription.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription, Union};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::scalars::Timestamp;
use super::stories::PageInfo;
use super::{domain, viewer};
use crate::domain::conversations::{Conversation, ConversationChild, Message, Reply};
use crate::error::ErrorCode;
use crate::events::{Event, Topic};
use crate::vocabulary::parse_id;

fn signed(ctx: &Context<'_>, path: &Option<String>) -> Option<String> {
    path.as_ref()
        .map(|p| domain(ctx).media().sign(p, chrono::Utc::now()).url)
}

pub(crate) struct ConversationObject {
    pub conversation: Conversation,
    pub messages: Option<Vec<Message>>,
}

#[Object(name = "Conversation")]
impl ConversationObject {
    async fn id(&self) -> ID {
        ID(self.conversation.id.to_string())
    }
    /// Always `"conversation"`.
    async fn object(&self) -> &'static str {
        "conversation"
    }
    async fn child_name(&self) -> &str {
        &self.conversation.child_name
    }
    async fn age(&self) -> i32 {
        self.conversation.child_age
    }
    async fn interests(&self) -> &[String] {
        &self.conversation.interests
    }
    /// `active` or `ended`.
    async fn status(&self) -> &'static str {
        self.conversation.status.as_str()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.conversation.created_at)
    }
    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.conversation.updated_at)
    }
    async fn ended_at(&self) -> Option<Timestamp> {
        self.conversation.ended_at.map(Timestamp)
    }
    /// The messages, oldest first (complexity counts the selection 50 times).
    #[graphql(complexity = "50 * child_complexity")]
    async fn messages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MessageObject>> {
        let list = match &self.messages {
            Some(m) => m.clone(),
            None => {
                domain(ctx)
                    .conversations()
                    .messages(self.conversation.id)
                    .await?
            }
        };
        Ok(list.into_iter().map(MessageObject).collect())
    }
}

pub(crate) struct MessageObject(pub Message);

#[Object(name = "ConversationMessage")]
impl MessageObject {
    async fn seq(&self) -> i32 {
        self.0.seq
    }
    /// `child` or `assistant`.
    async fn role(&self) -> &'static str {
        self.0.role.as_str()
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    /// The child's words were flagged by moderation (they never reach a story).
    async fn flagged(&self) -> bool {
        self.0.flagged
    }
    /// The spoken reply, signed; `null` when none was made.
    async fn audio_url(&self, ctx: &Context<'_>) -> Option<String> {
        signed(ctx, &self.0.audio_path)
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
}

/// The guide's answer (spec: `ai_response`).
pub(crate) struct AiResponse(pub Reply);

#[Object]
impl AiResponse {
    async fn conversation_id(&self) -> ID {
        ID(self.0.conversation_id.to_string())
    }
    async fn seq(&self) -> i32 {
        self.0.seq
    }
    async fn text(&self) -> &str {
        &self.0.text
    }
    /// The spoken answer, signed; `null` when no narrator is available.
    async fn audio_url(&self, ctx: &Context<'_>) -> Option<String> {
        signed(ctx, &self.0.audio_path)
    }
    /// What the child said, as received (`null` for the greeting).
    async fn user_text(&self) -> Option<&str> {
        self.0.user_text.as_deref()
    }
    /// Why `audioUrl` is `null` when it is: `unavailable` (no narrator could speak it)
    /// or `timed_out` (its narration missed the reply's deadline); `ready` otherwise.
    async fn audio_status(&self) -> AudioStatus {
        self.0.audio_status.into()
    }
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(
    name = "AudioStatus",
    remote = "crate::domain::conversations::AudioStatus",
    rename_items = "snake_case"
)]
pub(crate) enum AudioStatus {
    Ready,
    Unavailable,
    TimedOut,
}

/// Something conversations cannot do on this server (said once, not as an error on
/// every message): `VOICE_CLONING_UNAVAILABLE`, `SPEECH_TO_TEXT_UNAVAILABLE`.
#[derive(SimpleObject)]
pub(crate) struct ConversationNotice {
    pub code: String,
    pub message: String,
}

/// Which socket (or client) an operation comes from: set by the conversation socket on
/// its operations, so its own `conversationEvents` skip the replies it already sent from
/// the mutation's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TurnOrigin(pub u64);

/// The viewer's id when it is known without an await: resolved already (a socket's
/// principal), or the subject of a token whose signature holds (the account itself is
/// still read before anything is sent).
fn known_viewer(ctx: &Context<'_>) -> Option<crate::vocabulary::UserId> {
    let auth = ctx.data_opt::<super::RequestAuth>()?;
    if let Some(user) = auth.resolved() {
        return Some(user.id);
    }
    domain(ctx).keys().verify(auth.bearer()?).ok()
}

fn origin(ctx: &Context<'_>) -> Option<u64> {
    ctx.data_opt::<TurnOrigin>().map(|o| o.0)
}

#[derive(SimpleObject)]
pub(crate) struct ConversationError {
    pub conversation_id: ID,
    /// From the contract's catalogue, e.g. `AI_UNAVAILABLE`.
    pub code: String,
    pub message: String,
}

#[derive(SimpleObject)]
pub(crate) struct ConversationEnded {
    pub conversation_id: ID,
}

/// What happens in a conversation, as the child's socket sees it.
#[derive(Union)]
pub(crate) enum ConversationEvent {
    AiResponse(AiResponse),
    Error(ConversationError),
    Ended(ConversationEnded),
}

#[derive(SimpleObject)]
pub(crate) struct ConversationStarted {
    pub conversation: ConversationObject,
    /// The guide's greeting; for a resumed conversation, the last reply (what the child
    /// heard last), with `seq` the conversation's last message.
    pub greeting: AiResponse,
    /// True when an active conversation was continued (`input.conversationId`).
    pub resumed: bool,
    /// What conversations cannot do on this server.
    pub notices: Vec<ConversationNotice>,
}

#[derive(SimpleObject)]
pub(crate) struct ConversationEdge {
    pub cursor: String,
    pub node: ConversationObject,
}

#[derive(SimpleObject)]
pub(crate) struct ConversationConnection {
    pub edges: Vec<ConversationEdge>,
    pub page_info: PageInfo,
}

#[derive(InputObject, Default)]
pub(crate) struct StartConversationInput {
    /// The child's name for this conversation (default: the account's child).
    pub child_name: Option<String>,
    pub age: Option<i32>,
    #[graphql(default)]
    pub interests: Vec<String>,
    /// Continue this active conversation of the viewer's instead of starting one (after
    /// a socket closed); the child's details above must then be left out.
    pub conversation_id: Option<ID>,
    /// The client will send speech (raw PCM) to be transcribed: `notices` say when this
    /// server cannot understand it.
    #[graphql(default)]
    pub speaks: bool,
}

/// The story to make from a conversation; what is left out comes from the conversation
/// (the theme: the child's interests in it, or "오늘 나눈 이야기").
#[derive(InputObject)]
pub(crate) struct ConversationStoryInput {
    pub theme: Option<String>,
    #[graphql(default)]
    pub characters: Vec<String>,
    #[graphql(default_with = "super::stories::StoryLength::Medium")]
    pub length: super::stories::StoryLength,
}

impl Default for ConversationStoryInput {
    fn default() -> Self {
        ConversationStoryInput {
            theme: None,
            characters: Vec::new(),
            length: super::stories::StoryLength::Medium,
        }
    }
}

#[derive(Default)]
pub(crate) struct ConversationQuery;

#[Object]
impl ConversationQuery {
    /// One of the viewer's conversations, with its messages.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ConversationObject> {
        let viewer = viewer(ctx).await?;
        let conversation = domain(ctx)
            .conversations()
            .conversation(&viewer, parse_id("id", &id)?)
            .await?;
        let messages = domain(ctx)
            .conversations()
            .messages(conversation.id)
            .await?;
        Ok(ConversationObject {
            conversation,
            messages: Some(messages),
        })
    }

    /// The viewer's conversations, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ConversationConnection> {
        let viewer = viewer(ctx).await?;
        let page = domain(ctx)
            .conversations()
            .list_conversations(&viewer, first.unwrap_or(20), after.as_deref())
            .await?;
        let end_cursor = page.items.last().map(|(c, _)| c.clone());
        Ok(ConversationConnection {
            page_info: PageInfo {
                has_next_page: page.has_more,
                end_cursor,
            },
            edges: page
                .items
                .into_iter()
                .map(|(cursor, conversation)| ConversationEdge {
                    cursor,
                    node: ConversationObject {
                        conversation,
                        messages: None,
                    },
                })
                .collect(),
        })
    }
}

#[derive(Default)]
pub(crate) struct ConversationMutation;

#[Object]
impl ConversationMutation {
    /// Starts a conversation; the guide greets the child.
    async fn start_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] input: StartConversationInput,
    ) -> async_graphql::Result<ConversationStarted> {
        let viewer = viewer(ctx).await?;
        let conversations = domain(ctx).conversations();
        let resumed = input.conversation_id.is_some();
        let (conversation, greeting) = match input.conversation_id {
            Some(id) => {
                if input.child_name.is_some() || input.age.is_some() || !input.interests.is_empty()
                {
                    return Err(crate::error::AppError::validation(
                        "이어 가는 대화에는 childName, age, interests를 줄 수 없습니다.",
                    )
                    .into());
                }
                conversations
                    .resume_conversation(&viewer, parse_id("id", &id)?)
                    .await?
            }
            None => {
                conversations
                    .start_conversation(
                        &viewer,
                        ConversationChild {
                            name: input.child_name,
                            age: input.age,
                            interests: input.interests,
                        },
                        origin(ctx),
                    )
                    .await?
            }
        };
        let notices = conversations
            .notices(input.speaks)
            .into_iter()
            .map(|n| ConversationNotice {
                code: n.code.to_string(),
                message: n.message.to_string(),
            })
            .collect();
        Ok(ConversationStarted {
            conversation: ConversationObject {
                conversation,
                messages: None,
            },
            greeting: AiResponse(greeting),
            resumed,
            notices,
        })
    }

    /// Makes the story of one of the viewer's conversations (what the conversation
    /// socket's `end_conversation` with `create_story` does before ending it).
    async fn create_story_from_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        #[graphql(default)] input: ConversationStoryInput,
    ) -> async_graphql::Result<super::stories::StoryObject> {
        let viewer = viewer(ctx).await?;
        let story = domain(ctx)
            .stories()
            .create_story(
                &viewer,
                crate::domain::stories::NewStory {
                    theme: input.theme,
                    characters: input.characters,
                    length: input.length.into(),
                    conversation_id: Some(parse_id("conversation_id", &conversation_id)?),
                },
            )
            .await?;
        Ok(super::stories::StoryObject(story))
    }

    /// The child says something; the guide answers (also on `conversationEvents`).
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        text: String,
    ) -> async_graphql::Result<AiResponse> {
        let viewer = viewer(ctx).await?;
        let reply = domain(ctx)
            .conversations()
            .send_message(
                &viewer,
                parse_id("id", &conversation_id)?,
                &text,
                origin(ctx),
            )
            .await?;
        Ok(AiResponse(reply))
    }

    /// Ends a conversation (it is kept; stories can be made from it).
    async fn end_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
    ) -> async_graphql::Result<ConversationObject> {
        let viewer = viewer(ctx).await?;
        let conversation = domain(ctx)
            .conversations()
            .end_conversation(&viewer, parse_id("id", &conversation_id)?)
            .await?;
        Ok(ConversationObject {
            conversation,
            messages: None,
        })
    }

    /// Deletes a conversation with its messages and spoken replies.
    async fn delete_conversation(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx).await?;
        domain(ctx)
            .conversations()
            .delete_conversation(&viewer, parse_id("id", &id)?)
            .await?;
        Ok(true)
    }
}

#[derive(Default)]
pub(crate) struct ConversationSubscription;

#[Subscription]
impl ConversationSubscription {
    /// Everything a conversation produces from now on: the guide's answers, errors, and
    /// its end (after which the stream completes).
    async fn conversation_events(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        #[graphql(desc = "only answers after this message number (e.g. the greeting's)")]
        after_seq: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = ConversationEvent> + use<>> {
        let after_seq = after_seq.unwrap_or(0);
        // Subscribe before the first await: a client that starts this stream and then
        // sends a message cannot miss the answer.
        let domain = domain(ctx).clone();
        // Only this conversation's events (the id is checked again, with the owner, below).
        let cid = parse_id("conversationId", &conversation_id)?;
        let events = domain.events().follow(Topic::Conversation(cid));
        let own = origin(ctx);
        let viewer = viewer(ctx).await?;
        let conversation = domain.conversations().conversation(&viewer, cid).await?;
        let id = conversation.id;
        let state = (domain, events, false);
        Ok(futures_util::stream::unfold(
            state,
            move |(domain, mut events, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let event = match events.recv().await {
                        Ok(e) => e,
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "conversation subscriber lagged");
                            continue;
                        }
                        Err(RecvError::Closed) => return None,
                    };
                    let item = match event {
                        // A reply the subscribing socket asked for is already sent by it.
                        Event::ConversationReply { origin, .. }
                            if origin.is_some() && origin == own =>
                        {
                            continue;
                        }
                        Event::ConversationReply {
                            id: cid,
                            seq,
                            reply,
                            ..
                        } if cid == id && seq > after_seq => {
                            let reply = match reply {
                                // In hand on this process; read from the database when the
                                // event came from another process (boxed: the stream waits
                                // between events holding only its receiver, not the space of
                                // a database read — an idle conversation socket holds one).
                                Some(reply) => (*reply).clone(),
                                None => {
                                    match Box::pin(domain.conversations().reply_at(id, seq)).await {
                                        Ok(reply) => reply,
                                        Err(_) => continue,
                                    }
                                }
                            };
                            (ConversationEvent::AiResponse(AiResponse(reply)), false)
                        }
                        Event::ConversationError { id: cid, code } if cid == id => {
                            let message = ErrorCode::parse(&code)
                                .map(|c| c.default_message().to_string())
                                .unwrap_or_default();
                            (
                                ConversationEvent::Error(ConversationError {
                                    conversation_id: ID(id.to_string()),
                                    code,
                                    message,
                                }),
                                false,
                            )
                        }
                        Event::ConversationEnded { id: cid } if cid == id => (
                            ConversationEvent::Ended(ConversationEnded {
                                conversation_id: ID(id.to_string()),
                            }),
                            true,
                        ),
                        _ => continue,
                    };
                    return Some((item.0, (domain, events, item.1)));
                }
            },
        ))
    }
}

/// Progress of the account's voice samples.
#[derive(SimpleObject)]
pub(crate) struct VoiceCloneProgress {
    pub sample_count: i64,
    pub ready_for_cloning: bool,
}

#[derive(SimpleObject)]
pub(crate) struct VoiceCloneSuccess {
    pub voice_id: String,
    pub message: String,
}

#[derive(SimpleObject)]
pub(crate) struct VoiceCloneFailure {
    /// Always `VOICE_CLONE_FAILED`.
    pub code: String,
    pub message: String,
    /// True when the failure is passing (the provider busy or unreachable) and cloning
    /// is tried again once more samples come; false when the operator must act (voice
    /// slots full, quota, key or URL wrong).
    pub retryable: bool,
}

/// What happens to the account's voice.
#[derive(Union)]
pub(crate) enum VoiceEvent {
    Progress(VoiceCloneProgress),
    Success(VoiceCloneSuccess),
    Failure(VoiceCloneFailure),
}

#[derive(Default)]
pub(crate) struct VoiceSubscription;

#[Subscription]
impl VoiceSubscription {
    /// The viewer's voice samples and cloning, as they happen.
    async fn voice_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = VoiceEvent> + use<>> {
        // Subscribe before the first await (see conversationEvents): to the account's
        // events when who it is is known without the database, else to every event.
        let events = match known_viewer(ctx) {
            Some(id) => domain(ctx).events().follow(Topic::Account(id)),
            None => domain(ctx).events().subscribe(),
        };
        let own = origin(ctx);
        let user = viewer(ctx).await?.id;
        // Progress of samples stored before this subscription started may still be on
        // its way (another process's NOTIFY, a closed socket's): not news to this
        // subscriber, so only counts above the present one are told (from 0 again once
        // the voice is deleted).
        let stored = domain(ctx).voices().sample_count(user).await?;
        Ok(futures_util::stream::unfold(
            (events, stored),
            move |(mut rx, mut stored)| async move {
                loop {
                    let event = match rx.recv().await {
                        Ok(e) => e,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    let item = match event {
                        // Progress the subscribing socket told its client itself.
                        Event::VoiceProgress { origin, .. }
                            if origin.is_some() && origin == own =>
                        {
                            continue;
                        }
                        Event::VoiceProgress {
                            user: u,
                            count,
                            ready,
                            ..
                        } if u == user && count > stored => {
                            VoiceEvent::Progress(VoiceCloneProgress {
                                sample_count: count,
                                ready_for_cloning: ready,
                            })
                        }
                        Event::VoiceCloned { user: u, voice_id } if u == user => {
                            VoiceEvent::Success(VoiceCloneSuccess {
                                voice_id,
                                message: "목소리 복제 완료!".into(),
                            })
                        }
                        Event::VoiceCloneFailed {
                            user: u,
                            message,
                            retryable,
                        } if u == user => VoiceEvent::Failure(VoiceCloneFailure {
                            code: ErrorCode::VoiceCloneFailed.as_str().into(),
                            message,
                            retryable,
                        }),
                        // The voice was deleted: its samples with it.
                        Event::AccountUpdated { user: u } if u == user => {
                            stored = 0;
                            continue;
                        }
                        _ => continue,
                    };
                    return Some((item, (rx, stored)));
                }
            },
        ))
    }
}
