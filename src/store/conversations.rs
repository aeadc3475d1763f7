//! Conversations and their messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{ConversationRow, MessageRow};
use super::schema::{conversation_messages as messages, conversations};
use super::types::{ConversationId, ConversationStatus, UserId};
use super::{Db, DbError, Page, SqliteConn, newest_first, on_db, write_turn};

pub(crate) async fn insert(db: &mut Db<'_>, row: &ConversationRow) -> Result<(), DbError> {
    let _turn = write_turn(db).await;
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

/// Conversation `id`'s row and, when `owner` owns it, its messages oldest first (none are
/// read otherwise): one trip (on SQLite, one call on the connection's thread).
pub(crate) async fn conversation_with_messages(
    db: &mut Db<'_>,
    id: ConversationId,
    owner: UserId,
) -> Result<(Option<ConversationRow>, Vec<MessageRow>), DbError> {
    let (row, rows) = match db {
        Db::Pg(c) => {
            let c: &mut diesel_async::AsyncPgConnection = c;
            let row: Option<ConversationRow> = conversations::table
                .find(id)
                .select(ConversationRow::as_select())
                .first(c)
                .await
                .optional()?;
            let rows = match &row {
                Some(r) if r.owner_id == owner => {
                    messages::table
                        .filter(messages::conversation_id.eq(id))
                        .order_by(messages::seq.asc())
                        .select(MessageRow::as_select())
                        .load(c)
                        .await?
                }
                _ => Vec::new(),
            };
            (row, rows)
        }
        Db::Sqlite(c) => {
            let c: &mut SqliteConn = c;
            c.spawn_blocking(move |c| {
                let row: Option<ConversationRow> = diesel::RunQueryDsl::first(
                    conversations::table
                        .find(id)
                        .select(ConversationRow::as_select()),
                    c,
                )
                .optional()?;
                let rows = match &row {
                    Some(r) if r.owner_id == owner => diesel::RunQueryDsl::load(
                        messages::table
                            .filter(messages::conversation_id.eq(id))
                            .order_by(messages::seq.asc())
                            .select(MessageRow::as_select()),
                        c,
                    )?,
                    _ => Vec::new(),
                };
                Ok((row, rows))
            })
            .await?
        }
    };
    Ok((row, rows))
}

/// Ends an active conversation at `now` (an ended one stays as it is).
pub(crate) async fn end(
    db: &mut Db<'_>,
    id: ConversationId,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let _turn = write_turn(db).await;
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

/// Appends the messages of one turn (the child's words and the guide's answer, already
/// numbered after the last message the caller read) in one statement. A unique-key
/// conflict means another turn took those numbers meanwhile: the caller renumbers and
/// tries again ([`DbError::is_unique_violation`]).
pub(crate) async fn insert_messages(db: &mut Db<'_>, rows: &[MessageRow]) -> Result<(), DbError> {
    use diesel::sql_types::{Bool, Integer, Nullable, Text, Timestamp};
    // One multi-row INSERT, written out: diesel-async's SQLite connection does not take
    // diesel's batch insert.
    macro_rules! insert {
        ($c:expr, $backend:ty, $placeholder:expr) => {{
            let mut sql = String::from(
                "INSERT INTO conversation_messages \
                 (id, conversation_id, seq, role, text, flagged, audio_path, created_at) VALUES ",
            );
            for (r, _) in rows.iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                let marks: Vec<String> = (1..=8).map(|k| $placeholder(r * 8 + k)).collect();
                sql.push('(');
                sql.push_str(&marks.join(", "));
                sql.push(')');
            }
            let mut query = diesel::sql_query(sql).into_boxed::<$backend>();
            for m in rows {
                query = query
                    .bind::<Text, _>(m.id)
                    .bind::<Text, _>(m.conversation_id)
                    .bind::<Integer, _>(m.seq)
                    .bind::<Text, _>(m.role)
                    .bind::<Text, _>(m.text.clone())
                    .bind::<Bool, _>(m.flagged)
                    .bind::<Nullable<Text>, _>(m.audio_path.clone())
                    .bind::<Timestamp, _>(m.created_at);
            }
            query.execute($c).await
        }};
    }
    let _turn = write_turn(db).await;
    match db {
        Db::Pg(c) => insert!(&mut **c, diesel::pg::Pg, |k: usize| format!("${k}")),
        Db::Sqlite(c) => insert!(&mut **c, diesel::sqlite::Sqlite, |_k: usize| "?"
            .to_string()),
    }?;
    Ok(())
}

/// The number of a conversation's last message (0 when it has none).
pub(crate) async fn last_seq(db: &mut Db<'_>, id: ConversationId) -> Result<i32, DbError> {
    let last: Option<i32> = on_db!(db, |c| messages::table
        .filter(messages::conversation_id.eq(id))
        .select(diesel::dsl::max(messages::seq))
        .first(c)
        .await)?;
    Ok(last.unwrap_or(0))
}

/// Marks a conversation as changed at `now` (a turn was stored).
pub(crate) async fn touch(
    db: &mut Db<'_>,
    id: ConversationId,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let _turn = write_turn(db).await;
    on_db!(db, |c| diesel::update(conversations::table.find(id))
        .set(conversations::updated_at.eq(now))
        .execute(c)
        .await)?;
    Ok(())
}

/// Ends every active conversation unchanged since `before` (abandoned: no socket follows
/// it any more); returns their ids. Safe on several processes: each conversation is
/// ended, and returned, once.
pub(crate) async fn end_idle(
    db: &mut Db<'_>,
    before: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Vec<ConversationId>, DbError> {
    let _turn = write_turn(db).await;
    Ok(on_db!(db, |c| diesel::update(
        conversations::table
            .filter(conversations::status.eq(ConversationStatus::Active))
            .filter(conversations::updated_at.lt(before)),
    )
    .set((
        conversations::status.eq(ConversationStatus::Ended),
        conversations::ended_at.eq(Some(now)),
        conversations::updated_at.eq(now),
    ))
    .returning(conversations::id)
    .get_results(c)
    .await)?)
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
