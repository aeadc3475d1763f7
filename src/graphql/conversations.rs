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
use crate::events::Event;

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
    pub greeting: AiResponse,
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
            .conversation(&viewer, &id)
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
        let (conversation, greeting) = domain(ctx)
            .conversations()
            .start_conversation(
                &viewer,
                ConversationChild {
                    name: input.child_name,
                    age: input.age,
                    interests: input.interests,
                },
            )
            .await?;
        Ok(ConversationStarted {
            conversation: ConversationObject {
                conversation,
                messages: None,
            },
            greeting: AiResponse(greeting),
        })
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
            .send_message(&viewer, &conversation_id, &text)
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
            .end_conversation(&viewer, &conversation_id)
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
            .delete_conversation(&viewer, &id)
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
        let events = domain.events().subscribe();
        let viewer = viewer(ctx).await?;
        let conversation = domain
            .conversations()
            .conversation(&viewer, &conversation_id)
            .await?;
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
                        Event::ConversationReply { id: cid, seq }
                            if cid == id && seq > after_seq =>
                        {
                            match domain.conversations().reply_at(id, seq).await {
                                Ok(reply) => {
                                    (ConversationEvent::AiResponse(AiResponse(reply)), false)
                                }
                                Err(_) => continue,
                            }
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
        // Subscribe before the first await (see conversationEvents).
        let events = domain(ctx).events().subscribe();
        let user = viewer(ctx).await?.id;
        Ok(futures_util::stream::unfold(
            events,
            move |mut rx| async move {
                loop {
                    let event = match rx.recv().await {
                        Ok(e) => e,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    let item = match event {
                        Event::VoiceProgress {
                            user: u,
                            count,
                            ready,
                        } if u == user => VoiceEvent::Progress(VoiceCloneProgress {
                            sample_count: count,
                            ready_for_cloning: ready,
                        }),
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
                        _ => continue,
                    };
                    return Some((item, rx));
                }
            },
        ))
    }
}
