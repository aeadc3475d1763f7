//! The retention purge's reads and deletions, and its audit rows (`purge_runs`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::PurgeRunRow;
use super::schema::{
    conversation_messages as messages, conversations, purge_runs, users, voice_samples,
};
use super::types::{
    ConversationId, ConversationStatus, MessageId, PurgeRunId, UserId, VoiceStatus,
};
use super::{Db, DbError, on_db, write_turn};

/// Records the start of a run; for a scheduled one (`row.slot` set), only if no process
/// took that slot: `false` then, and nothing is written.
pub(crate) async fn start_run(db: &mut Db<'_>, row: &PurgeRunRow) -> Result<bool, DbError> {
    let _turn = write_turn(db).await;
    let n = on_db!(db, |c| diesel::insert_into(purge_runs::table)
        .values(row)
        .on_conflict(purge_runs::slot)
        .do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Records what run `id` deleted (and its error, if it stopped short).
pub(crate) async fn finish_run(
    db: &mut Db<'_>,
    id: PurgeRunId,
    counts: (i32, i32, i32),
    error: Option<&str>,
    at: NaiveDateTime,
) -> Result<(), DbError> {
    let _turn = write_turn(db).await;
    on_db!(db, |c| diesel::update(purge_runs::table.find(id))
        .set((
            purge_runs::finished_at.eq(Some(at)),
            purge_runs::conversations.eq(counts.0),
            purge_runs::reply_audio.eq(counts.1),
            purge_runs::voice_samples.eq(counts.2),
            purge_runs::error.eq(error),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// The newest `n` runs.
pub(crate) async fn runs(db: &mut Db<'_>, n: i64) -> Result<Vec<PurgeRunRow>, DbError> {
    Ok(on_db!(db, |c| purge_runs::table
        .order((purge_runs::started_at.desc(), purge_runs::id.desc()))
        .limit(n)
        .select(PurgeRunRow::as_select())
        .load(c)
        .await)?)
}

/// Deletes ended conversations unchanged since `before` (their messages cascade);
/// returns each one's id and owner (whose reply files the caller removes).
pub(crate) async fn delete_conversations_before(
    db: &mut Db<'_>,
    before: NaiveDateTime,
) -> Result<Vec<(ConversationId, UserId)>, DbError> {
    let _turn = write_turn(db).await;
    Ok(on_db!(db, |c| diesel::delete(
        conversations::table
            .filter(conversations::status.eq(ConversationStatus::Ended))
            .filter(conversations::updated_at.lt(before)),
    )
    .returning((conversations::id, conversations::owner_id))
    .get_results(c)
    .await)?)
}

/// Spoken replies of ended conversations spoken before `before`: their message ids and
/// media paths (at most `limit`, oldest first).
pub(crate) async fn reply_audio_before(
    db: &mut Db<'_>,
    before: NaiveDateTime,
    limit: i64,
) -> Result<Vec<(MessageId, String)>, DbError> {
    let ended = conversations::table
        .filter(conversations::status.eq(ConversationStatus::Ended))
        .select(conversations::id);
    let rows: Vec<(MessageId, Option<String>)> = on_db!(db, |c| messages::table
        .filter(messages::conversation_id.eq_any(ended))
        .filter(messages::audio_path.is_not_null())
        .filter(messages::created_at.lt(before))
        .order(messages::created_at.asc())
        .limit(limit)
        .select((messages::id, messages::audio_path))
        .load(c)
        .await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, path)| path.map(|p| (id, p)))
        .collect())
}

/// Forgets the audio of messages `ids` (the text stays); how many lost it.
pub(crate) async fn clear_reply_audio(
    db: &mut Db<'_>,
    ids: &[MessageId],
) -> Result<usize, DbError> {
    let _turn = write_turn(db).await;
    Ok(on_db!(db, |c| diesel::update(
        messages::table.filter(messages::id.eq_any(ids))
    )
    .set(messages::audio_path.eq(None::<String>))
    .execute(c)
    .await)?)
}

/// Deletes the sample rows of accounts whose voice is cloned; returns each sample's
/// owner and file name.
pub(crate) async fn delete_samples_of_cloned(
    db: &mut Db<'_>,
) -> Result<Vec<(UserId, String)>, DbError> {
    let _turn = write_turn(db).await;
    let cloned = users::table
        .filter(users::voice_status.eq(VoiceStatus::Cloned))
        .select(users::id);
    Ok(on_db!(db, |c| diesel::delete(
        voice_samples::table.filter(voice_samples::owner_id.eq_any(cloned))
    )
    .returning((voice_samples::owner_id, voice_samples::path))
    .get_results(c)
    .await)?)
}
