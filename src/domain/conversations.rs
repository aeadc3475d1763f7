//! Conversations between a child and the storyteller. The conversation WebSocket fills
//! them; stories refer to them (`conversation_id`).

use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::Domain;
use super::accounts::{User, validate_age, validate_name};
use crate::db::models::ConversationRow;
use crate::db::schema::conversations;
use crate::db::{self, to_db};
use crate::error::{AppError, AppResult};
use crate::with_conn;

/// Who the conversation is with; unset fields fall back to the account's child.
#[derive(Clone, Debug, Default)]
pub struct ConversationChild {
    pub name: Option<String>,
    pub age: Option<i32>,
    pub interests: Vec<String>,
}

impl Domain {
    /// Opens a conversation owned by `owner`; returns its id.
    pub async fn create_conversation(
        &self,
        owner: &User,
        child: ConversationChild,
    ) -> AppResult<Uuid> {
        if let Some(name) = &child.name {
            validate_name(name)?;
        }
        if let Some(age) = child.age {
            validate_age(age)?;
        }
        let now = to_db(db::now());
        let id = Uuid::new_v4();
        let row = ConversationRow {
            id: id.to_string(),
            owner_id: owner.id.to_string(),
            child_name: child.name,
            child_age: child.age,
            interests: serde_json::to_string(&child.interests)
                .map_err(|e| AppError::Internal(e.into()))?,
            status: "active".into(),
            created_at: now,
            updated_at: now,
            ended_at: None,
        };
        let mut conn = self.pool().get().await?;
        with_conn!(&mut conn, |c| {
            diesel::insert_into(conversations::table)
                .values(&row)
                .execute(c)
                .await
        })?;
        Ok(id)
    }
}
