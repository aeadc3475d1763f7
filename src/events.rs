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
use crate::store::{Backend, DbError, Pool};
use crate::vocabulary::{ConversationId, StoryId, UserId};

/// What changed. Small on purpose (NOTIFY payloads are capped at 8000 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A story's status, title or chapters changed.
    Story { id: StoryId },
    /// More of chapter `chapter`'s text as it is being written, moderated: `delta` goes
    /// at character `offset` of the chapter's content; `done` when the chapter is
    /// complete and stored (it is then read in full from the story).
    StoryText {
        id: StoryId,
        chapter: i32,
        offset: i32,
        delta: String,
        done: bool,
    },
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
        /// The socket that sent the sample (it told its client itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<u64>,
    },
    /// An account's voice was cloned.
    VoiceCloned { user: UserId, voice_id: String },
    /// An account was deleted: its open sockets (on every process) close at once.
    AccountGone { user: UserId },
    /// An account's role changed: its open sockets (on every process) close at once, so
    /// the next one is opened as what the account is now.
    AccountChanged { user: UserId },
    /// Something else of an account's row changed that its readers see (its voice was
    /// deleted): copies kept in memory are dropped.
    AccountUpdated { user: UserId },
    /// Cloning an account's voice failed (`message` is for the guardian); `retryable`
    /// when the service tries again by itself, not when the operator must act.
    VoiceCloneFailed {
        user: UserId,
        message: String,
        retryable: bool,
    },
}

/// What one subscriber follows, so an event wakes only those who follow it (with one
/// broadcast for all, every reply of every conversation woke every open socket three
/// times: 1000 open sockets added 20 ms to each reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Conversation(ConversationId),
    Account(UserId),
}

impl Event {
    /// The account whose row, as its readers see it, this event says changed (deleted,
    /// role, voice): copies of it kept in memory are dropped on every process.
    pub(crate) fn changed_account(&self) -> Option<UserId> {
        match self {
            Event::AccountGone { user }
            | Event::AccountChanged { user }
            | Event::AccountUpdated { user }
            | Event::VoiceCloned { user, .. }
            | Event::VoiceCloneFailed { user, .. } => Some(*user),
            _ => None,
        }
    }

    /// The topic this event belongs to (none: only the subscribers of everything).
    fn topic(&self) -> Option<Topic> {
        match self {
            Event::Story { .. } | Event::StoryText { .. } => None,
            Event::ConversationReply { id, .. }
            | Event::ConversationError { id, .. }
            | Event::ConversationEnded { id } => Some(Topic::Conversation(*id)),
            Event::VoiceProgress { user, .. }
            | Event::VoiceCloned { user, .. }
            | Event::AccountGone { user }
            | Event::AccountChanged { user }
            | Event::AccountUpdated { user }
            | Event::VoiceCloneFailed { user, .. } => Some(Topic::Account(*user)),
        }
    }
}

/// This process's delivery: one broadcast for the subscribers of everything, one per
/// followed topic.
struct Hub {
    all: broadcast::Sender<Event>,
    topics: std::sync::Mutex<(
        std::collections::HashMap<Topic, broadcast::Sender<Event>>,
        u32,
    )>,
}

/// Events one topic may hold for a slow subscriber. One that falls further behind is told
/// it lagged: a socket's account follower then re-reads the account; the conversation
/// stream skips what it missed (not recovered yet).
const TOPIC_CAPACITY: usize = 32;

impl Hub {
    fn new() -> std::sync::Arc<Hub> {
        std::sync::Arc::new(Hub {
            all: broadcast::channel(1024).0,
            topics: std::sync::Mutex::new((std::collections::HashMap::new(), 0)),
        })
    }

    fn deliver(&self, event: Event) {
        if let Some(topic) = event.topic() {
            let topics = self.topics.lock().expect("event topics lock");
            if let Some(tx) = topics.0.get(&topic) {
                let _ = tx.send(event.clone());
            }
        }
        let _ = self.all.send(event);
    }

    fn follow(&self, topic: Topic) -> broadcast::Receiver<Event> {
        let mut topics = self.topics.lock().expect("event topics lock");
        let (map, calls) = &mut *topics;
        // Now and then, forget the topics nobody follows any more.
        *calls = calls.wrapping_add(1);
        if *calls % 64 == 0 {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        map.entry(topic)
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe()
    }
}

#[derive(Clone)]
pub struct Events {
    hub: std::sync::Arc<Hub>,
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
        let hub = Hub::new();
        let outbox = if pool.backend() == Backend::Postgres {
            let conn = listen(database_url).await?;
            let listening = forward(conn, database_url.to_string(), hub.clone());
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
                hub.clone(),
            ));
            Some(out_tx)
        } else {
            None
        };
        Ok(Events { hub, outbox })
    }

    /// Every event (for the views of everything: operators' live views, story lists).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.hub.all.subscribe()
    }

    /// How many subscribers of every event this process has.
    pub(crate) fn subscribers(&self) -> usize {
        self.hub.all.receiver_count()
    }

    /// The events of one conversation or account only.
    pub(crate) fn follow(&self, topic: Topic) -> broadcast::Receiver<Event> {
        self.hub.follow(topic)
    }

    /// Publishes `event` to every subscriber of every process. It never blocks on the
    /// database; subscribers re-read state from the database, so a lost event delays an
    /// update, it never shows a wrong one.
    pub(crate) async fn publish(&self, event: Event) {
        match &self.outbox {
            Some(outbox) => {
                if let Err(returned) = outbox.send(event) {
                    self.hub.deliver(returned.0);
                }
            }
            None => self.hub.deliver(event),
        }
    }
}

/// Sends queued events as NOTIFYs on a dedicated connection (reconnecting as needed);
/// while the database cannot be reached, delivers them locally at least.
async fn notify_loop(
    mut conn: Channel,
    url: String,
    mut queue: mpsc::UnboundedReceiver<Event>,
    local: std::sync::Arc<Hub>,
) {
    while let Some(event) = queue.recv().await {
        let payload = serde_json::to_string(&event).expect("events serialise");
        if let Err(e) = notify::notify(&mut conn, &payload).await {
            tracing::warn!(error = %e, "publishing an event failed; delivering it locally and reconnecting");
            local.deliver(event);
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

async fn forward(mut conn: Channel, url: String, hub: std::sync::Arc<Hub>) {
    loop {
        {
            let mut stream = std::pin::pin!(notify::payloads(&mut conn));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(payload) => match serde_json::from_str::<Event>(&payload) {
                        Ok(event) => hub.deliver(event),
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
