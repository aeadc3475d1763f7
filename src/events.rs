//! One publisher for change events. With one server an in-process broadcast carries
//! them; with PostgreSQL they go through `LISTEN/NOTIFY`, so a subscriber on one process
//! sees what another did. A notification carries only what identifies the event; the
//! receiver reads the rest from the database.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::shutdown::Shutdown;
use crate::store::notify::{self, Channel, listen};
use crate::store::types::{ConversationId, StoryId, UserId};
use crate::store::{Backend, DbError, Pool};

/// What changed. Small on purpose (NOTIFY payloads are capped at 8000 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A story's status, title or chapters changed.
    Story { id: StoryId },
    /// The guide answered in a conversation: message `seq` is the answer. `origin` is the
    /// socket that asked (it sent the answer itself); `reply` is the answer for
    /// subscribers of this process (a notification carries only the number: subscribers
    /// of other processes read it).
    ConversationReply {
        id: ConversationId,
        seq: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<u64>,
        #[serde(skip)]
        reply: Option<std::sync::Arc<crate::domain::conversations::Reply>>,
    },
    /// A conversation could not go on for a moment (`code` from the catalogue).
    ConversationError { id: ConversationId, code: String },
    /// A conversation ended (or was deleted).
    ConversationEnded { id: ConversationId },
    /// An account's voice samples changed: `count` samples stored.
    VoiceProgress {
        user: UserId,
        count: i64,
        ready: bool,
    },
    /// An account's voice was cloned.
    VoiceCloned { user: UserId, voice_id: String },
    /// An account was deleted: its open sockets (on every process) close at once.
    AccountGone { user: UserId },
    /// An account's role changed: its open sockets (on every process) close at once, so
    /// the next one is opened as what the account is now.
    AccountChanged { user: UserId },
    /// Cloning an account's voice failed (`message` is for the guardian); `retryable`
    /// when the service tries again by itself, not when the operator must act.
    VoiceCloneFailed {
        user: UserId,
        message: String,
        retryable: bool,
    },
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    /// On PostgreSQL: the queue of the task that sends NOTIFYs on its own connection, so
    /// publishing never waits for (or deadlocks on) the shared pool.
    outbox: Option<mpsc::UnboundedSender<Event>>,
}

impl Events {
    /// Starts the event bus; on PostgreSQL, a dedicated listening connection (reconnected
    /// if it drops) feeds the local broadcast until the shutdown. Returns once listening.
    pub async fn start(
        pool: Pool,
        database_url: &str,
        shutdown: Shutdown,
    ) -> Result<Events, DbError> {
        let (tx, _) = broadcast::channel(1024);
        let outbox = if pool.backend() == Backend::Postgres {
            let conn = listen(database_url).await?;
            let listening = forward(conn, database_url.to_string(), tx.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = listening => {}
                    () = shutdown.requested() => tracing::debug!("event listener stopped"),
                }
            });
            let sender = notify::connect(database_url).await?;
            let (out_tx, out_rx) = mpsc::unbounded_channel();
            tokio::spawn(notify_loop(
                sender,
                database_url.to_string(),
                out_rx,
                tx.clone(),
            ));
            Some(out_tx)
        } else {
            None
        };
        Ok(Events { tx, outbox })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes `event` to every subscriber of every process. It never blocks on the
    /// database; subscribers re-read state from the database, so a lost event delays an
    /// update, it never shows a wrong one.
    pub(crate) async fn publish(&self, event: Event) {
        match &self.outbox {
            Some(outbox) => {
                if let Err(returned) = outbox.send(event) {
                    let _ = self.tx.send(returned.0);
                }
            }
            None => {
                let _ = self.tx.send(event);
            }
        }
    }
}

/// Sends queued events as NOTIFYs on a dedicated connection (reconnecting as needed);
/// while the database cannot be reached, delivers them locally at least.
async fn notify_loop(
    mut conn: Channel,
    url: String,
    mut queue: mpsc::UnboundedReceiver<Event>,
    local: broadcast::Sender<Event>,
) {
    while let Some(event) = queue.recv().await {
        let payload = serde_json::to_string(&event).expect("events serialise");
        if let Err(e) = notify::notify(&mut conn, &payload).await {
            tracing::warn!(error = %e, "publishing an event failed; delivering it locally and reconnecting");
            let _ = local.send(event);
            match notify::connect(&url).await {
                Ok(c) => conn = c,
                Err(e) => {
                    tracing::warn!(error = %e, "event publisher reconnect failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn forward(mut conn: Channel, url: String, tx: broadcast::Sender<Event>) {
    loop {
        {
            let mut stream = std::pin::pin!(notify::payloads(&mut conn));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(payload) => match serde_json::from_str::<Event>(&payload) {
                        Ok(event) => {
                            let _ = tx.send(event);
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable event payload"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener error");
                        break;
                    }
                }
            }
        }
        // The connection ended: reconnect with a pause, until the shutdown.
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
