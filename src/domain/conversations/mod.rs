//! Conversations between a child and the guide "쫑이" (contract §6): starting, talking,
//! ending, reading and deleting them. Every reply is moderated, spoken when a narrator is
//! available, stored, and announced as an event — the conversation WebSocket and the
//! GraphQL subscription both follow those events.

mod turn;

use chrono::{DateTime, Utc};

use super::accounts::{User, validate_age, validate_name};
use super::cursor::TimePosition;
use super::{Conversations, char_len, internal, page_limit};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::store::models::{ConversationRow, MessageRow};
use crate::store::{self, from_db, to_db};
use crate::vocabulary::{ConversationId, MessageId, UserId};
pub use crate::vocabulary::{ConversationStatus, MessageRole};

/// Who the conversation is with; unset fields fall back to the account's child.
#[derive(Clone, Debug, Default)]
pub struct ConversationChild {
    pub name: Option<String>,
    pub age: Option<i32>,
    pub interests: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Conversation {
    pub id: ConversationId,
    pub owner_id: UserId,
    pub child_name: String,
    pub child_age: i32,
    pub interests: Vec<String>,
    pub status: ConversationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub seq: i32,
    pub role: MessageRole,
    pub text: String,
    pub flagged: bool,
    /// The spoken reply, a path below the media directory.
    pub audio_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A reply of the guide, with what the child said before it (none for the greeting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub conversation_id: ConversationId,
    pub seq: i32,
    pub text: String,
    pub user_text: Option<String>,
    pub audio_path: Option<String>,
    pub audio_status: AudioStatus,
}

/// Whether a reply has its spoken audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioStatus {
    Ready,
    /// No narrator could speak it (none configured, or every one failed).
    Unavailable,
    /// The narration missed the reply's deadline (`JJONGAL_REPLY_NARRATION_DEADLINE_MS`).
    TimedOut,
}

impl AudioStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AudioStatus::Ready => "ready",
            AudioStatus::Unavailable => "unavailable",
            AudioStatus::TimedOut => "timed_out",
        }
    }

    fn of_stored(audio_path: &Option<String>) -> AudioStatus {
        if audio_path.is_some() {
            AudioStatus::Ready
        } else {
            AudioStatus::Unavailable
        }
    }
}

/// Something a conversation cannot do on this server, said once to the child's client
/// (instead of an error on every message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub code: &'static str,
    pub message: &'static str,
}

/// The voice cannot be cloned here (no voice provider configured).
pub const VOICE_CLONING_UNAVAILABLE: Notice = Notice {
    code: "VOICE_CLONING_UNAVAILABLE",
    message: "이 서버에는 목소리 복제가 설정되어 있지 않아요. 이야기는 기본 목소리로 읽어 줄게요.",
};

/// Spoken (raw-PCM) messages cannot be understood here (no speech-to-text configured).
pub const SPEECH_TO_TEXT_UNAVAILABLE: Notice = Notice {
    code: "SPEECH_TO_TEXT_UNAVAILABLE",
    message: "이 서버에는 음성 인식이 설정되어 있지 않아 음성은 듣지도 저장하지도 않아요. 말은 글(user_message)로 보내 주세요.",
};

#[derive(Clone, Debug)]
pub(crate) struct ConversationPage {
    pub items: Vec<(String, Conversation)>,
    pub has_more: bool,
}

pub(crate) const MAX_INTERESTS: usize = 10;

/// `row` when it is there and `owner`'s (404, else 403).
fn owned(row: Option<ConversationRow>, owner: &User) -> AppResult<ConversationRow> {
    let row = row.ok_or_else(AppError::not_found)?;
    if row.owner_id != owner.id {
        return Err(AppError::code_only(ErrorCode::InsufficientPermission));
    }
    Ok(row)
}

fn conversation_from_row(row: ConversationRow, owner: &User) -> AppResult<Conversation> {
    Ok(Conversation {
        id: row.id,
        owner_id: row.owner_id,
        child_name: row.child_name.unwrap_or_else(|| owner.name.clone()),
        child_age: row.child_age.unwrap_or(owner.age),
        interests: serde_json::from_str(&row.interests).map_err(|e| internal("interests", e))?,
        status: row.status,
        created_at: from_db(row.created_at),
        updated_at: from_db(row.updated_at),
        ended_at: row.ended_at.map(from_db),
    })
}

/// A new message row of `conversation` (numbered when stored).
fn message_row(
    conversation: ConversationId,
    role: MessageRole,
    text: &str,
    flagged: bool,
    audio_path: Option<String>,
    created_at: chrono::NaiveDateTime,
) -> MessageRow {
    MessageRow {
        id: MessageId::random(),
        conversation_id: conversation,
        seq: 0,
        role,
        text: text.to_string(),
        flagged,
        audio_path,
        created_at,
    }
}

fn message_from_row(row: MessageRow) -> Message {
    Message {
        seq: row.seq,
        role: row.role,
        text: row.text,
        flagged: row.flagged,
        audio_path: row.audio_path,
        created_at: from_db(row.created_at),
    }
}

/// Checks the child's details given for a conversation.
pub(crate) fn validate_child(child: &ConversationChild) -> AppResult<()> {
    if let Some(name) = &child.name {
        validate_name(name)?;
    }
    if let Some(age) = child.age {
        validate_age(age)?;
    }
    if child.interests.len() > MAX_INTERESTS {
        return Err(AppError::validation("interests는 최대 10개입니다."));
    }
    if child
        .interests
        .iter()
        .any(|i| i.trim().is_empty() || char_len(i) > 50)
    {
        return Err(AppError::validation(
            "interests의 각 항목은 1~50자여야 합니다.",
        ));
    }
    Ok(())
}

impl Conversations<'_> {
    /// Opens a conversation owned by `owner`.
    pub async fn create_conversation(
        &self,
        owner: &User,
        child: ConversationChild,
    ) -> AppResult<Conversation> {
        validate_child(&child)?;
        let now = to_db(store::now());
        let id = ConversationId::random();
        let row = ConversationRow {
            id,
            owner_id: owner.id,
            child_name: child.name,
            child_age: child.age,
            interests: serde_json::to_string(&child.interests)
                .map_err(|e| AppError::Internal(e.into()))?,
            status: ConversationStatus::Active,
            created_at: now,
            updated_at: now,
            ended_at: None,
        };
        store::conversations::insert(&mut self.pool().get().await?.db(), &row).await?;
        conversation_from_row(row, owner)
    }

    /// Starts a conversation and greets the child.
    pub async fn start_conversation(
        &self,
        owner: &User,
        child: ConversationChild,
        origin: Option<u64>,
    ) -> AppResult<(Conversation, Reply)> {
        let conversation = self.create_conversation(owner, child).await?;
        let id = conversation.id;
        match self
            .guide_turn(owner, &conversation, Vec::new(), None, origin)
            .await
        {
            Ok(reply) => Ok((conversation, reply)),
            Err(e) => {
                // No greeting, no conversation: do not leave an empty one behind.
                if let Err(cleanup) = self.delete_conversation(owner, id).await {
                    tracing::warn!(error = ?cleanup, "removing a conversation that never started");
                }
                Err(e)
            }
        }
    }

    /// The child says `text`; the guide answers (also announced to subscribers).
    pub async fn send_message(
        &self,
        owner: &User,
        conversation_id: ConversationId,
        text: &str,
        origin: Option<u64>,
    ) -> AppResult<Reply> {
        if text.trim().is_empty() || char_len(text) > 10_000 {
            return Err(AppError::validation("text는 1~10,000자여야 합니다."));
        }
        let (conversation, messages) = self
            .conversation_and_messages(owner, conversation_id)
            .await?;
        if conversation.status != ConversationStatus::Active {
            return Err(AppError::new(
                ErrorCode::ConversationNotStarted,
                "이미 끝난 대화입니다. 새 대화를 시작해 주세요.",
            ));
        }
        self.guide_turn(owner, &conversation, messages, Some(text), origin)
            .await
    }

    /// Continues an active conversation of `owner`'s (on a new socket, after the old one
    /// closed): its history stays and its numbering goes on. Returns the conversation,
    /// its last reply (what the child heard last) and the number of its last message.
    /// An ended conversation cannot be resumed (`CONVERSATION_NOT_STARTED`).
    pub async fn resume_conversation(
        &self,
        owner: &User,
        conversation_id: ConversationId,
    ) -> AppResult<(Conversation, Reply)> {
        let (conversation, messages) = self
            .conversation_and_messages(owner, conversation_id)
            .await?;
        if conversation.status != ConversationStatus::Active {
            return Err(AppError::new(
                ErrorCode::ConversationNotStarted,
                "이미 끝난 대화는 이어 갈 수 없어요. 새 대화를 시작해 주세요.",
            ));
        }
        let last_seq = messages.last().map_or(0, |m| m.seq);
        let answer = messages
            .iter()
            .rposition(|m| m.role == MessageRole::Assistant)
            .ok_or_else(|| internal("resume", "a conversation without a greeting"))?;
        let heard = &messages[answer];
        let reply = Reply {
            conversation_id: conversation.id,
            // Events after this are new to the resuming client.
            seq: last_seq,
            text: heard.text.clone(),
            user_text: answer
                .checked_sub(1)
                .map(|i| &messages[i])
                .filter(|m| m.role == MessageRole::Child)
                .map(|m| m.text.clone()),
            audio_path: heard.audio_path.clone(),
            audio_status: AudioStatus::of_stored(&heard.audio_path),
        };
        // Resumed now: the idle end counts from here.
        let now = to_db(store::now());
        store::conversations::touch(&mut self.pool().get().await?.db(), conversation.id, now)
            .await?;
        Ok((conversation, reply))
    }

    /// Ends every active conversation that had no message (and no resume) for
    /// `JJONGAL_CONVERSATION_IDLE_END_SECS`: its socket is long gone. Subscribers hear
    /// `ConversationEnded`; returns how many ended.
    pub async fn end_idle(&self) -> AppResult<usize> {
        let idle = chrono::Duration::from_std(self.config().ws.conversation_idle_end)
            .map_err(|e| internal("idle end", e))?;
        let now = store::now();
        let ended = store::conversations::end_idle(
            &mut self.pool().get().await?.db(),
            to_db(now - idle),
            to_db(now),
        )
        .await?;
        for id in &ended {
            tracing::info!(conversation_id = %id, "conversation ended after its idle time");
            self.events()
                .publish(Event::ConversationEnded { id: *id })
                .await;
        }
        Ok(ended.len())
    }

    /// What a starting conversation cannot do on this server, for the child's client to
    /// hear once: understanding speech without speech-to-text (when the client streams
    /// speech).
    pub fn notices(&self, speaks: bool) -> Vec<Notice> {
        let mut notices = Vec::new();
        if speaks && self.providers().transcriber.is_none() {
            notices.push(SPEECH_TO_TEXT_UNAVAILABLE);
        }
        notices
    }

    /// After a voice sample of `owner`'s was stored: whether to say that it cannot be
    /// cloned here (no voice provider, and no voice yet).
    pub fn sample_notice(&self, owner: &User) -> Option<Notice> {
        (self.providers().cloner.is_none() && owner.voice_id.is_none())
            .then_some(VOICE_CLONING_UNAVAILABLE)
    }

    /// Ends a conversation; it is kept (its id is what `POST /stories` takes).
    pub(crate) async fn end_conversation(
        &self,
        owner: &User,
        id: ConversationId,
    ) -> AppResult<Conversation> {
        let conversation = self.conversation(owner, id).await?;
        let cid = conversation.id;
        let now = to_db(store::now());
        store::conversations::end(&mut self.pool().get().await?.db(), cid, now).await?;
        self.events()
            .publish(Event::ConversationEnded {
                id: conversation.id,
            })
            .await;
        self.conversation(owner, id).await
    }

    /// Deletes a conversation with its messages and spoken replies.
    pub(crate) async fn delete_conversation(
        &self,
        owner: &User,
        id: ConversationId,
    ) -> AppResult<()> {
        let conversation = self.conversation(owner, id).await?;
        let cid = conversation.id;
        store::conversations::delete(&mut self.pool().get().await?.db(), cid).await?;
        self.media()
            .remove_dir(&format!("{}/conversations/{cid}", owner.id))
            .await;
        self.events()
            .publish(Event::ConversationEnded {
                id: conversation.id,
            })
            .await;
        Ok(())
    }

    /// One of `owner`'s conversations: 400 malformed id, 404 unknown, 403 someone else's.
    pub(crate) async fn conversation(
        &self,
        owner: &User,
        id: ConversationId,
    ) -> AppResult<Conversation> {
        let row =
            store::conversations::conversation(&mut self.pool().get().await?.db(), id).await?;
        conversation_from_row(owned(row, owner)?, owner)
    }

    /// `owner`'s conversation `id` and its messages, oldest first, in one trip to the
    /// database (the messages are read only when the owner matches).
    pub(crate) async fn conversation_and_messages(
        &self,
        owner: &User,
        id: ConversationId,
    ) -> AppResult<(Conversation, Vec<Message>)> {
        let (row, messages) = store::conversations::conversation_with_messages(
            &mut self.pool().get().await?.db(),
            id,
            owner.id,
        )
        .await?;
        Ok((
            conversation_from_row(owned(row, owner)?, owner)?,
            messages.into_iter().map(message_from_row).collect(),
        ))
    }

    /// The messages of a conversation, oldest first (ownership checked by the caller).
    pub(crate) async fn messages(&self, conversation: ConversationId) -> AppResult<Vec<Message>> {
        let mut conn = self.pool().get().await?;
        let rows = store::conversations::messages(&mut conn.db(), conversation, None).await?;
        Ok(rows.into_iter().map(message_from_row).collect())
    }

    /// The guide's reply `seq` with the child's words before it, for subscribers.
    pub(crate) async fn reply_at(
        &self,
        conversation: ConversationId,
        seq: i32,
    ) -> AppResult<Reply> {
        let mut conn = self.pool().get().await?;
        let rows =
            store::conversations::messages(&mut conn.db(), conversation, Some(seq - 1..=seq))
                .await?;
        let answer = rows
            .iter()
            .find(|m| m.seq == seq && m.role == MessageRole::Assistant)
            .ok_or_else(AppError::not_found)?;
        Ok(Reply {
            conversation_id: conversation,
            seq,
            text: answer.text.clone(),
            user_text: rows
                .iter()
                .find(|m| m.seq == seq - 1 && m.role == MessageRole::Child)
                .map(|m| m.text.clone()),
            audio_path: answer.audio_path.clone(),
            audio_status: AudioStatus::of_stored(&answer.audio_path),
        })
    }

    /// `owner`'s conversations, newest first, keyset-paginated like stories.
    pub(crate) async fn list_conversations(
        &self,
        owner: &User,
        first: i32,
        after: Option<&str>,
    ) -> AppResult<ConversationPage> {
        let first = page_limit(first)? as usize;
        // A cursor is the account's own: another account's is refused (400), as for
        // stories.
        let scope = &format!("conversations:{}:created_at:desc", owner.id);
        let after = TimePosition::resume(self.cursors(), scope, after)?;
        let mut conn = self.pool().get().await?;
        let page = store::conversations::newest_first(&mut conn.db(), Some(owner.id), after, first)
            .await?;
        let has_more = page.has_more;
        let items = self.cursors().newest_first_items(
            scope,
            page.rows,
            |row| (row.created_at, row.id),
            |row| conversation_from_row(row, owner),
        )?;
        Ok(ConversationPage { items, has_more })
    }
}
