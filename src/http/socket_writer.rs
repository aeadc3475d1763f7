//! The one writer both socket doors (`/wss/v1/audio` and `/graphql/ws`) write through.
//!
//! - **Bounded.** A socket has at most `JJONGAL_WS_SEND_QUEUE` frames waiting for its
//!   client; a client that reads slower than the server produces is closed with
//!   [`SLOW_READER`] instead of growing the server's memory.
//! - **Every write has a deadline** (`JJONGAL_WS_WRITE_TIMEOUT_SECS`): a client that
//!   stops reading is dropped.
//! - **Closes in order or at once.** [`Outbox::close_after`] sends what is queued first
//!   (`conversation_ended`, then `1000`); [`Outbox::close_now`] overtakes the queue — for
//!   the answer to a client's Close, which must never be lost behind queued replies
//!   (before, 80 of 80 closes that met a queued reply ended in `1006`), and for a slow
//!   reader.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The close code for a client that does not read what it is sent (policy violation).
pub(crate) const SLOW_READER: u16 = 1008;

/// One frame for the client.
#[derive(Debug)]
enum Frame {
    Text(String),
    Ping,
    Close(u16, Cow<'static, str>),
}

/// A close asked for now: its code and reason.
type CloseNow = Option<(u16, Cow<'static, str>)>;

/// How to reach a socket's writer; cheap to clone (every task of a socket holds one).
#[derive(Clone)]
pub(crate) struct Outbox {
    queue: mpsc::Sender<Frame>,
    now: Arc<watch::Sender<CloseNow>>,
}

impl Outbox {
    /// Queues a text frame; `false` when the socket is closing or gone. A full queue is
    /// a client too slow to read: the socket closes with [`SLOW_READER`].
    pub(crate) fn text(&self, text: String) -> bool {
        self.push(Frame::Text(text))
    }

    /// Queues a ping.
    pub(crate) fn ping(&self) -> bool {
        self.push(Frame::Ping)
    }

    fn push(&self, frame: Frame) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!("socket client reads too slowly; closing it");
                self.close_now(SLOW_READER, "client reads too slowly");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the socket after what is already queued (a full queue closes it at once).
    pub(crate) fn close_after(&self, code: u16, reason: impl Into<Cow<'static, str>>) {
        let reason = clip(reason.into());
        if let Err(mpsc::error::TrySendError::Full(Frame::Close(code, reason))) =
            self.queue.try_send(Frame::Close(code, reason))
        {
            self.close_now(code, reason);
        }
    }

    /// Closes the socket now: what is queued is dropped (the first close asked wins).
    pub(crate) fn close_now(&self, code: u16, reason: impl Into<Cow<'static, str>>) {
        let reason = clip(reason.into());
        self.now.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some((code, reason));
            true
        });
    }

    /// Resolves once the writer has stopped (the socket closed or the client is gone).
    pub(crate) async fn gone(&self) {
        self.queue.closed().await;
    }
}

/// A close frame's reason is at most 123 bytes (a control frame carries 125, the code
/// takes two); longer ones are cut at a character boundary.
fn clip(mut reason: Cow<'static, str>) -> Cow<'static, str> {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.to_mut().truncate(end);
    }
    reason
}

/// The socket's writer task; [`Writer::finish`] waits for it to flush and stop.
pub(crate) struct Writer {
    task: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer of `sink`: at most `capacity` frames wait, each write may take
    /// `write_timeout`.
    pub(crate) fn start(
        sink: SplitSink<WebSocket, Message>,
        capacity: usize,
        write_timeout: Duration,
    ) -> (Writer, Outbox) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let (now, now_rx) = watch::channel(None);
        let task = tokio::spawn(run(sink, rx, now_rx, write_timeout));
        (
            Writer { task },
            Outbox {
                queue,
                now: Arc::new(now),
            },
        )
    }

    /// Waits until the writer has sent its Close (or given up on the client). The
    /// writer stops when a close was asked for or every [`Outbox`] is dropped.
    pub(crate) async fn finish(self) {
        let _ = self.task.await;
    }
}

async fn run(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Frame>,
    mut now: watch::Receiver<CloseNow>,
    write_timeout: Duration,
) {
    loop {
        let frame = tokio::select! {
            biased;
            Some((code, reason)) = close_asked(&mut now) => {
                send_close(&mut sink, code, reason, write_timeout).await;
                break;
            }
            frame = queue.recv() => frame,
        };
        let message = match frame {
            // Every outbox is gone: nothing more will be said.
            None => {
                let _ = tokio::time::timeout(write_timeout, sink.close()).await;
                break;
            }
            Some(Frame::Close(code, reason)) => {
                send_close(&mut sink, code, reason, write_timeout).await;
                break;
            }
            Some(Frame::Text(text)) => Message::Text(text.into()),
            Some(Frame::Ping) => Message::Ping(Vec::new().into()),
        };
        // A close asked for while this write waits on a slow client overtakes it.
        let written = tokio::select! {
            biased;
            Some((code, reason)) = close_asked(&mut now) => {
                send_close(&mut sink, code, reason, write_timeout).await;
                break;
            }
            written = tokio::time::timeout(write_timeout, sink.send(message)) => written,
        };
        match written {
            Ok(Ok(())) => {}
            // Refused after the client's Close (tungstenite queued its echo and takes
            // nothing else): flush the echo so the client reads it.
            Ok(Err(_)) => {
                let _ = tokio::time::timeout(write_timeout, sink.close()).await;
                break;
            }
            Err(_) => {
                tracing::info!(
                    timeout_secs = write_timeout.as_secs(),
                    "socket write timed out; the client is gone"
                );
                break;
            }
        }
    }
    // Whatever is still queued is dropped with the receiver: senders see the socket gone.
    queue.close();
}

/// The close asked for with [`Outbox::close_now`]; `None` once no outbox can ask any more.
async fn close_asked(now: &mut watch::Receiver<CloseNow>) -> CloseNow {
    loop {
        now.changed().await.ok()?;
        if let Some(close) = now.borrow_and_update().clone() {
            return Some(close);
        }
    }
}

/// Sends a Close and flushes it. After the client's own Close the send is refused (the
/// echo is already queued by tungstenite); closing the sink flushes that echo.
async fn send_close(
    sink: &mut SplitSink<WebSocket, Message>,
    code: u16,
    reason: Cow<'static, str>,
    write_timeout: Duration,
) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into_owned().into(),
    }));
    let _ = tokio::time::timeout(write_timeout, sink.send(frame)).await;
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// Splits `socket` into its reading half and a started writer.
pub(crate) fn split(
    socket: WebSocket,
    capacity: usize,
    write_timeout: Duration,
) -> (futures_util::stream::SplitStream<WebSocket>, Writer, Outbox) {
    let (sink, stream) = socket.split();
    let (writer, outbox) = Writer::start(sink, capacity, write_timeout);
    (stream, writer, outbox)
}
