//! Conversations between a child and the guide "쫑이" (contract §6): starting, talking,
//! ending, reading and deleting them. Every reply is moderated, spoken when a narrator is
//! available, stored, and announced as an event — the conversation WebSocket and the
//! GraphQL subscription both follow those events.

mod turn;

use chrono::{DateTime, Utc};

use super::accounts::{User, validate_age, validate_name};
use super::cursor::TimePosition;
use super::stories::parse_id;
use super::{Conversations, char_len, internal, page_limit};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::store::models::{ConversationRow, MessageRow};
use crate::store::types::{ConversationId, MessageId, UserId};
pub use crate::store::types::{ConversationStatus, MessageRole};
use crate::store::{self, from_db, to_db};

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
#[derive(Clone, Debug)]
pub struct Reply {
    pub conversation_id: ConversationId,
    pub seq: i32,
    pub text: String,
    pub user_text: Option<String>,
    pub audio_path: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct ConversationPage {
    pub items: Vec<(String, Conversation)>,
    pub has_more: bool,
}

pub(crate) const MAX_INTERESTS: usize = 10;

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
    /// Opens a conversation owned by `owner`; returns its id.
    pub async fn create_conversation(
        &self,
        owner: &User,
        child: ConversationChild,
    ) -> AppResult<ConversationId> {
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
        Ok(id)
    }

    /// Starts a conversation and greets the child.
    pub async fn start_conversation(
        &self,
        owner: &User,
        child: ConversationChild,
    ) -> AppResult<(Conversation, Reply)> {
        let id = self.create_conversation(owner, child).await?;
        let conversation = self.conversation(owner, &id.to_string()).await?;
        match self.guide_turn(owner, &conversation, None).await {
            Ok(reply) => Ok((conversation, reply)),
            Err(e) => {
                // No greeting, no conversation: do not leave an empty one behind.
                if let Err(cleanup) = self.delete_conversation(owner, &id.to_string()).await {
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
        conversation_id: &str,
        text: &str,
    ) -> AppResult<Reply> {
        if text.trim().is_empty() || char_len(text) > 10_000 {
            return Err(AppError::validation("text는 1~10,000자여야 합니다."));
        }
        let conversation = self.conversation(owner, conversation_id).await?;
        if conversation.status != ConversationStatus::Active {
            return Err(AppError::new(
                ErrorCode::ConversationNotStarted,
                "이미 끝난 대화입니다. 새 대화를 시작해 주세요.",
            ));
        }
        self.guide_turn(owner, &conversation, Some(text)).await
    }

    /// Appends a message with the next sequence number; returns it.
    async fn append_message(
        &self,
        conversation: ConversationId,
        role: MessageRole,
        text: &str,
        flagged: bool,
        audio_path: Option<String>,
    ) -> AppResult<i32> {
        let message = MessageRow {
            id: MessageId::random(),
            conversation_id: conversation,
            seq: 0,
            role,
            text: text.to_string(),
            flagged,
            audio_path,
            created_at: to_db(store::now()),
        };
        let mut conn = self.pool().get().await?;
        Ok(store::conversations::append_message(&mut conn.db(), message).await?)
    }

    /// Ends a conversation; it is kept (its id is what `POST /stories` takes).
    pub(crate) async fn end_conversation(&self, owner: &User, id: &str) -> AppResult<Conversation> {
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
    pub(crate) async fn delete_conversation(&self, owner: &User, id: &str) -> AppResult<()> {
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
    pub(crate) async fn conversation(&self, owner: &User, id: &str) -> AppResult<Conversation> {
        let id = parse_id("id", id)?;
        let row = store::conversations::conversation(&mut self.pool().get().await?.db(), id)
            .await?
            .ok_or_else(AppError::not_found)?;
        if row.owner_id != owner.id {
            return Err(AppError::code_only(ErrorCode::InsufficientPermission));
        }
        conversation_from_row(row, owner)
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
