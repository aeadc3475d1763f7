//! Conversations and their messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{ConversationRow, MessageRow};
use super::schema::{conversation_messages as messages, conversations};
use super::types::{ConversationId, ConversationStatus, UserId};
use super::{Db, DbError, Page, newest_first, on_db, transaction};

pub(crate) async fn insert(db: &mut Db<'_>, row: &ConversationRow) -> Result<(), DbError> {
    on_db!(db, |c| diesel::insert_into(conversations::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub(crate) async fn conversation(
    db: &mut Db<'_>,
    id: ConversationId,
) -> Result<Option<ConversationRow>, DbError> {
    Ok(on_db!(db, |c| conversations::table
        .find(id)
        .select(ConversationRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Ends an active conversation at `now` (an ended one stays as it is).
pub(crate) async fn end(
    db: &mut Db<'_>,
    id: ConversationId,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(
        conversations::table
            .find(id)
            .filter(conversations::status.eq(ConversationStatus::Active)),
    )
    .set((
        conversations::status.eq(ConversationStatus::Ended),
        conversations::ended_at.eq(Some(now)),
        conversations::updated_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(())
}

/// Deletes a conversation (its messages cascade).
pub(crate) async fn delete(db: &mut Db<'_>, id: ConversationId) -> Result<(), DbError> {
    on_db!(db, |c| diesel::delete(conversations::table.find(id))
        .execute(c)
        .await)?;
    Ok(())
}

/// Appends `message` under the next sequence number of its conversation (its `seq` is
/// ignored); returns that number. The conversation is touched first, so on SQLite the
/// transaction takes the write lock before it reads the last number.
pub(crate) async fn append_message(
    db: &mut Db<'_>,
    mut message: MessageRow,
) -> Result<i32, DbError> {
    transaction!(db, |tx| {
        let cid = message.conversation_id;
        on_db!(&mut *tx, |c| diesel::update(
            conversations::table.find(&cid)
        )
        .set(conversations::updated_at.eq(message.created_at))
        .execute(c)
        .await)?;
        let last: Option<i32> = on_db!(&mut *tx, |c| messages::table
            .filter(messages::conversation_id.eq(&cid))
            .select(diesel::dsl::max(messages::seq))
            .first(c)
            .await)?;
        message.seq = last.unwrap_or(0) + 1;
        on_db!(&mut *tx, |c| diesel::insert_into(messages::table)
            .values(&message)
            .execute(c)
            .await)?;
        Ok::<_, DbError>(message.seq)
    })
}

/// The messages of a conversation with numbers in `seqs` (all when `None`), oldest first.
pub(crate) async fn messages(
    db: &mut Db<'_>,
    conversation: ConversationId,
    seqs: Option<std::ops::RangeInclusive<i32>>,
) -> Result<Vec<MessageRow>, DbError> {
    Ok(on_db!(db, |c| {
        let mut q = messages::table
            .filter(messages::conversation_id.eq(conversation))
            .order_by(messages::seq.asc())
            .select(MessageRow::as_select())
            .into_boxed();
        if let Some(seqs) = &seqs {
            q = q.filter(messages::seq.between(*seqs.start(), *seqs.end()));
        }
        q.load(c).await
    })?)
}

/// Conversations (of `owner`, or everyone's), newest first, after `after` (a creation
/// time and id).
pub(crate) async fn newest_first(
    db: &mut Db<'_>,
    owner: Option<UserId>,
    after: Option<(NaiveDateTime, ConversationId)>,
    first: usize,
) -> Result<Page<ConversationRow>, DbError> {
    let rows = on_db!(db, |c| {
        let mut q = conversations::table
            .select(ConversationRow::as_select())
            .into_boxed();
        if let Some(o) = owner {
            q = q.filter(conversations::owner_id.eq(o));
        }
        newest_first!(q, conversations, &after, first).load(c).await
    })?;
    Ok(Page::of(rows, first))
}

/// How many messages each of the conversations `ids` has (those with none are left out).
pub(crate) async fn message_counts(
    db: &mut Db<'_>,
    ids: &[ConversationId],
) -> Result<Vec<(ConversationId, i64)>, DbError> {
    Ok(on_db!(db, |c| messages::table
        .filter(messages::conversation_id.eq_any(ids))
        .group_by(messages::conversation_id)
        .select((messages::conversation_id, diesel::dsl::count_star()))
        .load(c)
        .await)?)
}

/// How many conversations are still open.
pub(crate) async fn open_count(db: &mut Db<'_>) -> Result<i64, DbError> {
    Ok(on_db!(db, |c| conversations::table
        .filter(conversations::status.eq(ConversationStatus::Active))
        .count()
        .get_result(c)
        .await)?)
}
