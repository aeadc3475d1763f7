//! What operators read across accounts: the audit log and the figures kept in the
//! database.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::AuditRow;
use super::schema::{generation_steps as steps, ops_audit, stories};
use super::types::StoryStatus;
use super::{Db, DbError, on_db};

pub(crate) async fn insert_audit(db: &mut Db<'_>, row: &AuditRow) -> Result<(), DbError> {
    on_db!(db, |c| diesel::insert_into(ops_audit::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The newest `limit` audit rows, newest first.
pub(crate) async fn audit_log(db: &mut Db<'_>, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    Ok(on_db!(db, |c| ops_audit::table
        .order_by((ops_audit::created_at.desc(), ops_audit::id.desc()))
        .select(AuditRow::as_select())
        .limit(limit)
        .load(c)
        .await)?)
}

/// How many stories each status has (statuses without stories are left out).
pub(crate) async fn stories_by_status(db: &mut Db<'_>) -> Result<Vec<(StoryStatus, i64)>, DbError> {
    Ok(on_db!(db, |c| stories::table
        .group_by(stories::status)
        .select((stories::status, diesel::dsl::count_star()))
        .load(c)
        .await)?)
}

/// When the oldest pending story was created.
pub(crate) async fn oldest_pending(db: &mut Db<'_>) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(on_db!(db, |c| stories::table
        .filter(stories::status.eq(StoryStatus::Pending))
        .select(diesel::dsl::min(stories::created_at))
        .first(c)
        .await)?)
}

/// One recorded provider attempt, as figures need it.
pub(crate) struct StepSample {
    pub(crate) step: String,
    pub(crate) provider: String,
    pub(crate) duration_ms: i64,
    pub(crate) error_kind: Option<String>,
}

/// The provider attempts started since `since` (not the history's summary rows, which
/// are numbered attempt 0).
pub(crate) async fn steps_since(
    db: &mut Db<'_>,
    since: NaiveDateTime,
) -> Result<Vec<StepSample>, DbError> {
    let rows: Vec<(String, String, i64, Option<String>)> = on_db!(db, |c| steps::table
        .filter(steps::started_at.ge(since))
        .filter(steps::attempt.gt(0))
        .select((
            steps::step,
            steps::provider,
            steps::duration_ms,
            steps::error_kind
        ))
        .load(c)
        .await)?;
    Ok(rows
        .into_iter()
        .map(|(step, provider, duration_ms, error_kind)| StepSample {
            step,
            provider,
            duration_ms,
            error_kind,
        })
        .collect())
}
