//! One publisher for change events. With one server an in-process broadcast carries
//! them; with PostgreSQL they go through `LISTEN/NOTIFY`, so a subscriber on one process
//! sees what another did. A notification carries only what identifies the event; the
//! receiver reads the rest from the database.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::{Backend, DbError, Pool};
use crate::with_conn;

const CHANNEL: &str = "jjongal_events";

/// What changed. Small on purpose (NOTIFY payloads are capped at 8000 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// A story's status, title or chapters changed.
    Story { id: Uuid },
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    pool: Pool,
}

impl Events {
    /// Starts the event bus; on PostgreSQL, a dedicated listening connection (reconnected
    /// if it drops) feeds the local broadcast. Returns once listening.
    pub async fn start(pool: Pool, database_url: &str) -> Result<Events, DbError> {
        let (tx, _) = broadcast::channel(1024);
        if pool.backend() == Backend::Postgres {
            let conn = listen(database_url).await?;
            tokio::spawn(forward(conn, database_url.to_string(), tx.clone()));
        }
        Ok(Events { tx, pool })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes `event` to every subscriber of every process. Failures are logged:
    /// subscribers re-read state from the database, so a lost event delays, never lies.
    pub async fn publish(&self, event: Event) {
        match self.pool.backend() {
            Backend::Sqlite => {
                let _ = self.tx.send(event);
            }
            Backend::Postgres => {
                let payload = serde_json::to_string(&event).expect("events serialise");
                let sent = async {
                    let mut conn = self.pool.get().await?;
                    with_conn!(&mut conn, |c| {
                        diesel::sql_query("SELECT pg_notify($1, $2)")
                            .bind::<diesel::sql_types::Text, _>(CHANNEL)
                            .bind::<diesel::sql_types::Text, _>(&payload)
                            .execute(c)
                            .await
                    })?;
                    Ok::<_, DbError>(())
                }
                .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "publishing event failed; delivering locally only");
                    let _ = self.tx.send(event);
                }
            }
        }
    }
}

async fn listen(url: &str) -> Result<AsyncPgConnection, DbError> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(conn)
}

async fn forward(mut conn: AsyncPgConnection, url: String, tx: broadcast::Sender<Event>) {
    loop {
        {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            while let Some(item) = stream.next().await {
                match item {
                    Ok(n) if n.channel == CHANNEL => {
                        match serde_json::from_str::<Event>(&n.payload) {
                            Ok(event) => {
                                let _ = tx.send(event);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable event payload"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener error");
                        break;
                    }
                }
            }
        }
        // The connection ended: reconnect with a pause, forever (until the process ends).
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match listen(&url).await {
                Ok(c) => {
                    conn = c;
                    tracing::info!("event listener reconnected");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "event listener reconnect failed"),
            }
        }
    }
}
