//! The operators' read-only view across accounts (internal dashboards). Every call checks
//! the role as the database has it now (a demotion takes effect at once) and leaves an
//! audit row: who read what, when. Conversation texts are shown to operators only when
//! `JJONGAL_OPERATOR_CAN_READ_TRANSCRIPTS` allows it.

mod figures;

use chrono::{DateTime, Utc};

use super::Ops;
use super::accounts::{Role, User};
use super::cursor::TimePosition;
use super::page_limit;
use super::stories::{ListStories, StoryPage};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::models::{AuditRow, GenerationStepRow};
use crate::store::{self, from_db, to_db};
use crate::vocabulary::{
    AuditId, ConversationId, ConversationStatus, MessageRole, StoryId, UserId,
};

#[derive(Clone, Debug)]
pub(crate) struct AuditEntry {
    pub id: AuditId,
    pub operator_id: UserId,
    pub action: String,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

/// A conversation as operators see it: metadata and counts.
#[derive(Clone, Debug)]
pub(crate) struct OpsConversation {
    pub id: ConversationId,
    pub owner_id: UserId,
    pub child_name: Option<String>,
    pub child_age: Option<i32>,
    pub status: ConversationStatus,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub message_count: i64,
}

/// A message as operators see it: the text only where transcripts may be read.
#[derive(Clone, Debug)]
pub(crate) struct OpsMessage {
    pub seq: i32,
    pub role: MessageRole,
    pub text: Option<String>,
    pub flagged: bool,
    pub created_at: DateTime<Utc>,
}

/// A recorded deletion of a cloned voice at the provider.
#[derive(Clone, Debug)]
pub(crate) struct VoiceDeletion {
    pub voice_id: String,
    pub owner_id: UserId,
    pub status: crate::vocabulary::DeletionStatus,
    pub last_error: String,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Ops<'_> {
    /// The operator check: the role is read from the database on every call.
    pub(crate) async fn require_operator(&self, viewer: &User) -> AppResult<User> {
        let fresh = self
            .accounts()
            .find_user(viewer.id)
            .await?
            .ok_or_else(AppError::invalid_token)?;
        if fresh.role != Role::Operator {
            return Err(AppError::new(
                ErrorCode::InsufficientPermission,
                "운영자만 사용할 수 있습니다.",
            ));
        }
        Ok(fresh)
    }

    /// Calls every configured AI provider once (as `jjongal providers check`), for an
    /// operator; audited (an image provider makes one picture).
    pub(crate) async fn provider_check(
        &self,
        viewer: &User,
    ) -> AppResult<Vec<crate::providers::check::CheckLine>> {
        let operator = self.require_operator(viewer).await?;
        self.audit(&operator, "provider_check", String::new())
            .await?;
        // Within the request's own timeout, so the report always comes back.
        let deadline = self.config().request_timeout * 3 / 4;
        Ok(crate::providers::check::check_all(&self.config().providers, Some(deadline)).await)
    }

    /// Cloned voices whose deletion at the provider was recorded (pending, deleted later,
    /// or settled by force), newest first; operators only.
    /// The retention purges, newest first (what each deleted: the audit of the policy).
    pub(crate) async fn purge_runs(
        &self,
        viewer: &User,
        first: i32,
    ) -> AppResult<Vec<crate::domain::retention::PurgeRun>> {
        self.require_operator(viewer).await?;
        let limit = page_limit(first)?;
        self.retention().runs(limit).await
    }

    pub(crate) async fn voice_deletions(
        &self,
        viewer: &User,
        first: i32,
    ) -> AppResult<Vec<VoiceDeletion>> {
        self.require_operator(viewer).await?;
        let limit = page_limit(first)?;
        let rows = store::voices::deletions(&mut self.pool().get().await?.db(), limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| VoiceDeletion {
                voice_id: r.voice_id,
                owner_id: r.owner_id,
                status: r.status,
                last_error: r.last_error,
                attempts: r.attempts,
                created_at: store::from_db(r.created_at),
                updated_at: store::from_db(r.updated_at),
            })
            .collect())
    }

    /// Audits an operator read made outside this module (live subscriptions).
    pub(crate) async fn record_ops_read(
        &self,
        operator: &User,
        action: &str,
        detail: String,
    ) -> AppResult<()> {
        let operator = self.require_operator(operator).await?;
        self.audit(&operator, action, detail).await
    }

    async fn audit(&self, operator: &User, action: &str, detail: String) -> AppResult<()> {
        let row = AuditRow {
            id: AuditId::random(),
            operator_id: operator.id,
            action: action.to_string(),
            detail,
            created_at: to_db(store::now()),
        };
        store::ops::insert_audit(&mut self.pool().get().await?.db(), &row).await?;
        tracing::info!(operator = %operator.id, action, "operator read");
        Ok(())
    }

    /// Stories across accounts, with the member listing's filters plus owner and time.
    pub(crate) async fn ops_stories(
        &self,
        viewer: &User,
        owner: Option<UserId>,
        created_after: Option<DateTime<Utc>>,
        created_before: Option<DateTime<Utc>>,
        query: ListStories,
    ) -> AppResult<StoryPage> {
        let operator = self.require_operator(viewer).await?;
        self.audit(
            &operator,
            "ops.stories",
            format!(
                "owner={} status={:?} after={created_after:?} before={created_before:?}",
                owner.map(|o| o.to_string()).unwrap_or_else(|| "*".into()),
                query.status.map(|s| s.as_str())
            ),
        )
        .await?;
        self.stories()
            .query_stories(owner, Some((created_after, created_before)), query)
            .await
    }

    /// A story's recorded generation attempts.
    pub(crate) async fn ops_generation_history(
        &self,
        viewer: &User,
        id: StoryId,
    ) -> AppResult<Vec<GenerationStepRow>> {
        let operator = self.require_operator(viewer).await?;
        self.audit(&operator, "ops.generation_history", format!("story={id}"))
            .await?;
        self.stories().generation_steps(id).await
    }

    /// Accounts, newest first (never password hashes: they are not part of `User`).
    pub(crate) async fn ops_accounts(
        &self,
        viewer: &User,
        first: i32,
        after: Option<&str>,
    ) -> AppResult<(Vec<(String, User)>, bool)> {
        let operator = self.require_operator(viewer).await?;
        let limit = page_limit(first)? as usize;
        self.audit(&operator, "ops.accounts", format!("first={first}"))
            .await?;
        let scope = "ops.accounts:created_at:desc";
        let after = TimePosition::resume(self.cursors(), scope, after)?;
        let mut conn = self.pool().get().await?;
        let page = store::accounts::accounts_newest_first(&mut conn.db(), after, limit).await?;
        let has_more = page.has_more;
        let items = self.cursors().newest_first_items(
            scope,
            page.rows,
            |row| (row.created_at, row.id),
            User::try_from,
        )?;
        Ok((items, has_more))
    }

    /// Conversations across accounts (metadata and counts), newest first.
    pub(crate) async fn ops_conversations(
        &self,
        viewer: &User,
        owner: Option<UserId>,
        first: i32,
    ) -> AppResult<Vec<OpsConversation>> {
        let operator = self.require_operator(viewer).await?;
        let limit = page_limit(first)? as usize;
        self.audit(
            &operator,
            "ops.conversations",
            format!(
                "owner={}",
                owner.map(|o| o.to_string()).unwrap_or_else(|| "*".into())
            ),
        )
        .await?;
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        let rows = store::conversations::newest_first(&mut db, owner, None, limit)
            .await?
            .rows;
        let ids: Vec<ConversationId> = rows.iter().map(|r| r.id).collect();
        let counts = store::conversations::message_counts(&mut db, &ids).await?;
        drop(conn);
        rows.into_iter()
            .map(|r| {
                Ok(OpsConversation {
                    message_count: counts
                        .iter()
                        .find(|(id, _)| *id == r.id)
                        .map(|(_, n)| *n)
                        .unwrap_or(0),
                    id: r.id,
                    owner_id: r.owner_id,
                    child_name: r.child_name,
                    child_age: r.child_age,
                    status: r.status,
                    created_at: from_db(r.created_at),
                    ended_at: r.ended_at.map(from_db),
                })
            })
            .collect()
    }

    /// A conversation's messages for operators: texts only when transcripts may be read.
    pub(crate) async fn ops_conversation_messages(
        &self,
        viewer: &User,
        conversation: ConversationId,
    ) -> AppResult<Vec<OpsMessage>> {
        let operator = self.require_operator(viewer).await?;
        let readable = self.config().operator_can_read_transcripts;
        self.audit(
            &operator,
            "ops.conversation_messages",
            format!("conversation={conversation} texts={readable}"),
        )
        .await?;
        Ok(self
            .conversations()
            .messages(conversation)
            .await?
            .into_iter()
            .map(|m| OpsMessage {
                seq: m.seq,
                role: m.role,
                text: readable.then_some(m.text),
                flagged: m.flagged,
                created_at: m.created_at,
            })
            .collect())
    }

    /// The audit log, newest first.
    pub(crate) async fn ops_audit_log(
        &self,
        viewer: &User,
        first: i32,
    ) -> AppResult<Vec<AuditEntry>> {
        self.require_operator(viewer).await?;
        let limit = page_limit(first)?;
        let rows = store::ops::audit_log(&mut self.pool().get().await?.db(), limit).await?;
        rows.into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.id,
                    operator_id: row.operator_id,
                    action: row.action,
                    detail: row.detail,
                    created_at: from_db(row.created_at),
                })
            })
            .collect()
    }

    /// Grants or withdraws a role (the CLI's `users set-role`).
    pub async fn set_role(&self, login_id: &str, role: Role) -> AppResult<User> {
        let key = login_id.to_ascii_lowercase();
        let now = to_db(store::now());
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        if !store::accounts::set_role(&mut db, &key, role, now).await? {
            return Err(AppError::not_found());
        }
        let row = store::accounts::user_by_login(&mut db, &key)
            .await?
            .ok_or_else(AppError::not_found)?;
        drop(conn);
        let user = User::try_from(row)?;
        // Open sockets were admitted as what the account was: they close now; requests
        // see the new role at once.
        self.announce(crate::events::Event::AccountChanged { user: user.id })
            .await;
        Ok(user)
    }
}
