//! PostgreSQL's `LISTEN/NOTIFY` on the service's one channel: what carries change events
//! between processes (see `events`). Each side holds a dedicated connection, outside the
//! pool.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{Stream, StreamExt};

use super::DbError;

const CHANNEL: &str = "jjongal_events";

/// A dedicated connection for the channel.
pub(crate) type Channel = AsyncPgConnection;

/// A connection of its own, for sending notifications.
pub(crate) async fn connect(url: &str) -> Result<Channel, DbError> {
    AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))
}

/// A connection of its own that listens on the channel.
pub(crate) async fn listen(url: &str) -> Result<Channel, DbError> {
    let mut conn = connect(url).await?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(conn)
}

/// Sends `payload` on the channel.
pub(crate) async fn notify(conn: &mut Channel, payload: &str) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The payloads arriving on a [`listen`]ing connection; it ends at the first error (the
/// connection is then of no more use).
pub(crate) fn payloads(conn: &mut Channel) -> impl Stream<Item = Result<String, DbError>> + '_ {
    conn.notifications_stream().filter_map(|item| async move {
        match item {
            Ok(n) if n.channel == CHANNEL => Some(Ok(n.payload)),
            Ok(_) => None,
            Err(e) => Some(Err(DbError::from(e))),
        }
    })
}
