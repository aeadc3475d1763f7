//! The operators' surface: one root field `ops`, protected by one guard, read-only.

use async_graphql::{Context, Guard, ID, Object, SimpleObject};

use super::scalars::Timestamp;
use super::stories::{SortKey, SortOrder, StoryConnection, StoryStatus};
use super::{domain, viewer};
use crate::domain::accounts::{Role, User};
use crate::domain::stories::{DEFAULT_PAGE_SIZE, ListStories};
use crate::vocabulary::parse_id;

/// Lets only operators through, reading the role from the database each time.
pub(crate) struct OperatorGuard;

impl Guard for OperatorGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let user = viewer(ctx).await?;
        domain(ctx).ops().require_operator(&user).await?;
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct OpsRoot;

#[Object]
impl OpsRoot {
    /// Internal dashboards (operators only). Every read is audited.
    #[graphql(guard = "OperatorGuard", visible = "operator_visible")]
    async fn ops(&self) -> OpsQuery {
        OpsQuery(OpsReads, OpsFigures)
    }
}

#[derive(async_graphql::MergedObject)]
#[graphql(name = "Ops")]
pub(crate) struct OpsQuery(OpsReads, OpsFigures);

pub(crate) struct OpsReads;
pub(crate) struct OpsFigures;

/// An account as operators see it (never a password hash).
pub(crate) struct OpsAccount(pub User);

#[Object]
impl OpsAccount {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn login_id(&self) -> &str {
        &self.0.login_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn age(&self) -> i32 {
        self.0.age
    }
    /// `member` or `operator`.
    async fn role(&self) -> &'static str {
        self.0.role.as_str()
    }
    async fn has_cloned_voice(&self) -> bool {
        self.0.voice_id.is_some()
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    /// Every voice-cloning consent the guardian gave, newest first (withdrawn ones
    /// with their withdrawal).
    #[graphql(complexity = "10 * child_complexity")]
    async fn voice_consents(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<VoiceConsentRecord>> {
        let history = domain(ctx).voices().consent_history(self.0.id).await?;
        Ok(history
            .into_iter()
            .map(|c| VoiceConsentRecord {
                voice_of: c.voice_of,
                provider: c.provider,
                text_version: c.text_version,
                given_at: Timestamp(c.given_at),
                withdrawn_at: c.withdrawn_at.map(Timestamp),
            })
            .collect())
    }
}

/// A voice-cloning consent as recorded (the text agreed to is in `me.voiceConsent`).
#[derive(SimpleObject)]
pub(crate) struct VoiceConsentRecord {
    pub voice_of: String,
    pub provider: String,
    pub text_version: String,
    pub given_at: Timestamp,
    pub withdrawn_at: Option<Timestamp>,
}

#[derive(SimpleObject)]
pub(crate) struct OpsAccountEdge {
    pub cursor: String,
    pub node: OpsAccount,
}

#[derive(SimpleObject)]
pub(crate) struct OpsAccountConnection {
    pub edges: Vec<OpsAccountEdge>,
    pub page_info: super::stories::PageInfo,
}

/// One recorded provider attempt of a story's generation.
#[derive(SimpleObject)]
pub(crate) struct GenerationStep {
    pub step: String,
    pub chapter_number: Option<i32>,
    pub provider: String,
    pub attempt: i32,
    pub started_at: Timestamp,
    pub duration_ms: i64,
    /// `ok`, `error` or `flagged`.
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
}

#[derive(SimpleObject)]
pub(crate) struct OpsConversation {
    pub id: ID,
    pub owner_id: ID,
    pub child_name: Option<String>,
    pub age: Option<i32>,
    pub status: String,
    pub created_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub message_count: i64,
}

#[derive(SimpleObject)]
pub(crate) struct OpsMessage {
    pub seq: i32,
    pub role: String,
    /// `null` unless `JJONGAL_OPERATOR_CAN_READ_TRANSCRIPTS=true`.
    pub text: Option<String>,
    pub flagged: bool,
    pub created_at: Timestamp,
}

#[derive(SimpleObject)]
pub(crate) struct AuditEntry {
    pub id: ID,
    pub operator_id: ID,
    pub action: String,
    pub detail: String,
    pub created_at: Timestamp,
}

#[Object]
impl OpsReads {
    /// Stories across all accounts: the member listing's filters and sorting, plus owner
    /// and creation time (`createdAfter` inclusive, `createdBefore` exclusive).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn stories(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<StoryStatus>,
        #[graphql(default_with = "SortKey::CreatedAt")] sort_by: SortKey,
        #[graphql(default_with = "SortOrder::Desc")] order: SortOrder,
        owner_id: Option<ID>,
        created_after: Option<Timestamp>,
        created_before: Option<Timestamp>,
    ) -> async_graphql::Result<StoryConnection> {
        let user = viewer(ctx).await?;
        let page = domain(ctx)
            .ops()
            .ops_stories(
                &user,
                owner_id.map(|id| parse_id("owner_id", &id)).transpose()?,
                created_after.map(|t| t.0),
                created_before.map(|t| t.0),
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

    /// A story's generation history: every provider attempt, oldest first.
    #[graphql(complexity = "50 * child_complexity")]
    async fn generation_history(
        &self,
        ctx: &Context<'_>,
        story_id: ID,
    ) -> async_graphql::Result<Vec<GenerationStep>> {
        let user = viewer(ctx).await?;
        let rows = domain(ctx)
            .ops()
            .ops_generation_history(&user, parse_id("story_id", &story_id)?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| GenerationStep {
                step: r.step,
                chapter_number: r.chapter_number,
                provider: r.provider,
                attempt: r.attempt,
                started_at: Timestamp(r.started_at.and_utc()),
                duration_ms: r.duration_ms,
                outcome: r.outcome.as_str().into(),
                error_kind: r.error_kind,
                error_message: r.error_message,
            })
            .collect())
    }

    /// Accounts, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OpsAccountConnection> {
        let user = viewer(ctx).await?;
        let (items, has_more) = domain(ctx)
            .ops()
            .ops_accounts(&user, first.unwrap_or(20), after.as_deref())
            .await?;
        let end_cursor = items.last().map(|(c, _)| c.clone());
        Ok(OpsAccountConnection {
            edges: items
                .into_iter()
                .map(|(cursor, u)| OpsAccountEdge {
                    cursor,
                    node: OpsAccount(u),
                })
                .collect(),
            page_info: super::stories::PageInfo {
                has_next_page: has_more,
                end_cursor,
            },
        })
    }

    /// Conversations across accounts (metadata and counts), newest first.
    #[graphql(complexity = "first.clamp(1, 100) as usize * child_complexity")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        owner_id: Option<ID>,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<OpsConversation>> {
        let user = viewer(ctx).await?;
        let list = domain(ctx)
            .ops()
            .ops_conversations(
                &user,
                owner_id.map(|id| parse_id("owner_id", &id)).transpose()?,
                first,
            )
            .await?;
        Ok(list
            .into_iter()
            .map(|c| OpsConversation {
                id: ID(c.id.to_string()),
                owner_id: ID(c.owner_id.to_string()),
                child_name: c.child_name,
                age: c.child_age,
                status: c.status.as_str().into(),
                created_at: Timestamp(c.created_at),
                ended_at: c.ended_at.map(Timestamp),
                message_count: c.message_count,
            })
            .collect())
    }

    /// A conversation's messages; texts only where transcripts may be read.
    #[graphql(complexity = "50 * child_complexity")]
    async fn conversation_messages(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
    ) -> async_graphql::Result<Vec<OpsMessage>> {
        let user = viewer(ctx).await?;
        let id = parse_id("conversation_id", &conversation_id)?;
        let list = domain(ctx)
            .ops()
            .ops_conversation_messages(&user, id)
            .await?;
        Ok(list
            .into_iter()
            .map(|m| OpsMessage {
                seq: m.seq,
                role: m.role.as_str().into(),
                text: m.text,
                flagged: m.flagged,
                created_at: Timestamp(m.created_at),
            })
            .collect())
    }

    /// Recorded deletions of cloned voices at the provider, newest first: what is still
    /// there (`pending`) after a family's erasure.
    #[graphql(complexity = "first.clamp(1, 100) as usize * child_complexity")]
    async fn voice_deletions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<VoiceDeletion>> {
        let user = viewer(ctx).await?;
        let rows = domain(ctx).ops().voice_deletions(&user, first).await?;
        Ok(rows
            .into_iter()
            .map(|r| VoiceDeletion {
                voice_id: r.voice_id,
                owner_id: ID(r.owner_id.to_string()),
                status: r.status.as_str(),
                last_error: r.last_error,
                attempts: r.attempts,
                created_at: Timestamp(r.created_at),
                updated_at: Timestamp(r.updated_at),
            })
            .collect())
    }

    /// The retention purges, newest first: when each ran, where, and what it deleted
    /// (docs/privacy.md, *Retention*).
    #[graphql(complexity = "first.clamp(1, 100) as usize * child_complexity")]
    async fn purges(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<PurgeRun>> {
        let user = viewer(ctx).await?;
        let runs = domain(ctx).ops().purge_runs(&user, first).await?;
        Ok(runs
            .into_iter()
            .map(|r| PurgeRun {
                trigger: r.trigger,
                process: r.process,
                started_at: Timestamp(r.started_at),
                finished_at: r.finished_at.map(Timestamp),
                conversations: r.purged.conversations as i32,
                reply_audio: r.purged.reply_audio as i32,
                voice_samples: r.purged.voice_samples as i32,
                error: r.error,
            })
            .collect())
    }

    /// The audit log of operator reads, newest first.
    #[graphql(complexity = "first.clamp(1, 100) as usize * child_complexity")]
    async fn audit(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<AuditEntry>> {
        let user = viewer(ctx).await?;
        let list = domain(ctx).ops().ops_audit_log(&user, first).await?;
        Ok(list
            .into_iter()
            .map(|a| AuditEntry {
                id: ID(a.id.to_string()),
                operator_id: ID(a.operator_id.to_string()),
                action: a.action,
                detail: a.detail,
                created_at: Timestamp(a.created_at),
            })
            .collect())
    }
}

/// One retention purge, as recorded.
#[derive(SimpleObject)]
pub(crate) struct PurgeRun {
    /// `scheduled` (the server's) or `command` (`jjongal purge`).
    pub trigger: String,
    /// The process that ran it.
    pub process: String,
    pub started_at: Timestamp,
    /// `null` while it runs (or if its process stopped mid-way).
    pub finished_at: Option<Timestamp>,
    /// Ended conversations deleted (with messages and spoken replies).
    pub conversations: i32,
    /// Spoken replies whose audio was deleted.
    pub reply_audio: i32,
    /// Voice samples deleted (of cloned voices).
    pub voice_samples: i32,
    /// Set when the run stopped short (the log has the cause).
    pub error: Option<String>,
}

/// A cloned voice whose deletion at the voice provider was recorded when its account or
/// voice was deleted (`jjongal voices retry-deletions` retries the pending ones).
#[derive(SimpleObject)]
pub(crate) struct VoiceDeletion {
    /// The voice's id at the provider.
    pub voice_id: String,
    /// The account it belonged to (it may no longer exist).
    pub owner_id: ID,
    /// `pending` (still at the provider), `deleted` (the provider confirmed) or
    /// `forced` (settled by an operator without the provider's confirmation).
    pub status: &'static str,
    /// The provider's last answer, while it did not confirm.
    pub last_error: String,
    pub attempts: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(SimpleObject)]
pub(crate) struct StatusCount {
    pub status: String,
    pub count: i64,
}

#[derive(SimpleObject)]
pub(crate) struct StepFigures {
    pub step: String,
    pub attempts: i64,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
}

#[derive(SimpleObject)]
pub(crate) struct KindCount {
    pub kind: String,
    pub count: i64,
}

#[derive(SimpleObject)]
pub(crate) struct ProviderFigures {
    pub provider: String,
    pub attempts: i64,
    pub errors: i64,
    /// errors ÷ attempts (0 when there were none).
    pub error_rate: f64,
    pub errors_by_kind: Vec<KindCount>,
}

/// The operations figures of a live board.
#[derive(SimpleObject)]
pub(crate) struct Figures {
    pub stories_by_status: Vec<StatusCount>,
    /// Stories waiting to be generated.
    pub queue_depth: i64,
    /// Age of the oldest pending story, seconds (0 when none waits).
    pub oldest_pending_seconds: f64,
    /// Conversations followed by an open socket of the process that answered.
    pub open_conversations: i64,
    /// Conversations not ended: open, or waiting to be resumed until
    /// `JJONGAL_CONVERSATION_IDLE_END_SECS` ends them.
    pub active_conversations: i64,
    /// Conversation sockets open on the process that answered.
    pub open_sockets: i64,
    /// Generation step durations over the window.
    pub steps: Vec<StepFigures>,
    /// Provider error rates over the window.
    pub providers: Vec<ProviderFigures>,
}

/// What one capability's provider check found.
#[derive(SimpleObject)]
pub(crate) struct ProviderCheck {
    /// `llm`, `image`, `speech`, `moderation`, `voice` or `stt`.
    pub capability: &'static str,
    /// The base URL called; `null` when the capability runs on the offline built-in.
    pub url: Option<String>,
    pub ok: bool,
    /// The provider's HTTP status, when it answered with an error.
    pub status: Option<i32>,
    /// The provider's own error code (e.g. `invalid_api_key`, `unknown_parameter`).
    pub code: Option<String>,
    /// What went wrong, as the provider said it.
    pub message: Option<String>,
}

#[Object]
impl OpsFigures {
    /// One minimal real call to every configured AI provider (as `jjongal providers
    /// check`): a wrong base URL, key or model shows here, not in a child's story.
    /// Audited; with an image provider configured it makes one picture.
    async fn provider_check(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProviderCheck>> {
        let user = viewer(ctx).await?;
        let lines = domain(ctx).ops().provider_check(&user).await?;
        Ok(lines
            .into_iter()
            .map(|l| {
                let error = l.outcome.err();
                ProviderCheck {
                    capability: l.capability,
                    ok: error.is_none(),
                    url: l.url,
                    status: error.as_ref().and_then(|e| e.status).map(i32::from),
                    code: error.as_ref().and_then(|e| e.code.clone()),
                    message: error.map(|e| e.message),
                }
            })
            .collect())
    }

    /// Figures over the last `windowMinutes` (1–10080, default 60).
    async fn figures(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 60)] window_minutes: i32,
    ) -> async_graphql::Result<Figures> {
        let user = viewer(ctx).await?;
        let f = domain(ctx).ops().ops_figures(&user, window_minutes).await?;
        Ok(Figures {
            stories_by_status: f
                .stories_by_status
                .into_iter()
                .map(|(status, count)| StatusCount { status, count })
                .collect(),
            queue_depth: f.queue_depth,
            oldest_pending_seconds: f.oldest_pending_seconds,
            open_conversations: f.open_conversations,
            active_conversations: f.active_conversations,
            open_sockets: f.open_sockets,
            steps: f
                .steps
                .into_iter()
                .map(|s| StepFigures {
                    step: s.step,
                    attempts: s.attempts,
                    p50_ms: s.p50_ms,
                    p95_ms: s.p95_ms,
                    p99_ms: s.p99_ms,
                })
                .collect(),
            providers: f
                .providers
                .into_iter()
                .map(|p| ProviderFigures {
                    error_rate: if p.attempts == 0 {
                        0.0
                    } else {
                        p.errors as f64 / p.attempts as f64
                    },
                    provider: p.provider,
                    attempts: p.attempts,
                    errors: p.errors,
                    errors_by_kind: p
                        .errors_by_kind
                        .into_iter()
                        .map(|(kind, count)| KindCount { kind, count })
                        .collect(),
                })
                .collect(),
        })
    }
}

/// A story change as operators see it live.
#[derive(SimpleObject)]
pub(crate) struct OpsStoryUpdate {
    pub story_id: ID,
    pub owner_id: ID,
    pub status: StoryStatus,
    pub title: Option<String>,
    pub chapters: i32,
    pub failure_reason: Option<String>,
    pub updated_at: Timestamp,
}

/// A conversation event as operators see it live: texts only where transcripts may be
/// read (`JJONGAL_OPERATOR_CAN_READ_TRANSCRIPTS`).
#[derive(SimpleObject)]
pub(crate) struct OpsConversationEvent {
    pub conversation_id: ID,
    /// `ai_response`, `error` or `ended`.
    pub kind: String,
    pub seq: Option<i32>,
    pub text: Option<String>,
    pub user_text: Option<String>,
    pub code: Option<String>,
}

#[derive(Default)]
pub(crate) struct OpsSubscription;

#[async_graphql::Subscription]
impl OpsSubscription {
    /// Every story's changes, across accounts (operators only).
    #[graphql(guard = "OperatorGuard", visible = "operator_visible")]
    async fn ops_story_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<
        impl futures_util::Stream<Item = async_graphql::Result<OpsStoryUpdate>> + use<>,
    > {
        let domain = domain(ctx).clone();
        let events = domain.events().subscribe();
        let operator = viewer(ctx).await?;
        domain
            .ops()
            .record_ops_read(&operator, "ops.story_updates", String::new())
            .await?;
        Ok(futures_util::stream::unfold(
            Some((domain, events, operator)),
            |state| async move {
                let (domain, mut events, operator) = state?;
                loop {
                    let id = match events.recv().await {
                        Ok(crate::events::Event::Story { id }) => id,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    };
                    // The role, again, before every event: a demoted operator's stream
                    // ends with the refusal.
                    if let Err(e) = domain.ops().require_operator(&operator).await {
                        return Some((Err(e.into()), None));
                    }
                    let Ok(story) = domain.stories().story_for_job(id).await else {
                        continue;
                    };
                    let update = OpsStoryUpdate {
                        story_id: ID(story.id.to_string()),
                        owner_id: ID(story.owner_id.to_string()),
                        status: story.status.into(),
                        title: story.title.clone(),
                        chapters: story.chapters.len() as i32,
                        failure_reason: story.failure_reason.clone(),
                        updated_at: Timestamp(story.updated_at),
                    };
                    return Some((Ok(update), Some((domain, events, operator))));
                }
            },
        ))
    }

    /// Any conversation's events (operators only; audited).
    #[graphql(guard = "OperatorGuard", visible = "operator_visible")]
    async fn ops_conversation_events(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
    ) -> async_graphql::Result<
        impl futures_util::Stream<Item = async_graphql::Result<OpsConversationEvent>> + use<>,
    > {
        let domain = domain(ctx).clone();
        let id = parse_id("conversation_id", &conversation_id)?;
        let events = domain
            .events()
            .follow(crate::events::Topic::Conversation(id));
        let operator = viewer(ctx).await?;
        let readable = domain.config().operator_can_read_transcripts;
        domain
            .ops()
            .record_ops_read(
                &operator,
                "ops.conversation_events",
                format!("conversation={id} texts={readable}"),
            )
            .await?;
        Ok(futures_util::stream::unfold(
            Some((domain, events, operator)),
            move |state| async move {
                use crate::events::Event;
                let (domain, mut events, operator) = state?;
                loop {
                    let event = match events.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    };
                    let concerns_it = matches!(&event,
                        Event::ConversationReply { id: cid, .. }
                        | Event::ConversationError { id: cid, .. }
                        | Event::ConversationEnded { id: cid } if *cid == id);
                    // The role, again, before every event of this conversation.
                    if concerns_it && let Err(e) = domain.ops().require_operator(&operator).await {
                        return Some((Err(e.into()), None));
                    }
                    let item = match event {
                        Event::ConversationReply {
                            id: cid,
                            seq,
                            reply,
                            ..
                        } if cid == id => {
                            let reply = match reply {
                                Some(reply) => (*reply).clone(),
                                None => match domain.conversations().reply_at(id, seq).await {
                                    Ok(reply) => reply,
                                    Err(_) => continue,
                                },
                            };
                            OpsConversationEvent {
                                conversation_id: ID(id.to_string()),
                                kind: "ai_response".into(),
                                seq: Some(seq),
                                text: readable.then_some(reply.text),
                                user_text: if readable { reply.user_text } else { None },
                                code: None,
                            }
                        }
                        Event::ConversationError { id: cid, code } if cid == id => {
                            OpsConversationEvent {
                                conversation_id: ID(id.to_string()),
                                kind: "error".into(),
                                seq: None,
                                text: None,
                                user_text: None,
                                code: Some(code),
                            }
                        }
                        Event::ConversationEnded { id: cid } if cid == id => OpsConversationEvent {
                            conversation_id: ID(id.to_string()),
                            kind: "ended".into(),
                            seq: None,
                            text: None,
                            user_text: None,
                            code: None,
                        },
                        _ => continue,
                    };
                    return Some((Ok(item), Some((domain, events, operator))));
                }
            },
        ))
    }
}

/// Operator-only fields are listed in introspection only for operators (the request's
/// viewer is resolved up front by the HTTP and WebSocket handlers).
pub(crate) fn operator_visible(ctx: &Context<'_>) -> bool {
    ctx.data_opt::<super::RequestAuth>()
        .and_then(|auth| auth.resolved())
        .is_some_and(|user| user.role == Role::Operator)
}
