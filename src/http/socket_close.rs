//! The WebSocket closing handshake, as both socket doors (`/wss/v1/audio` and
//! `/graphql/ws`) finish it (RFC 6455 §5.5.1, §7.1.1).
//!
//! - A client's Close is answered with a Close (tungstenite queues the echo when it reads
//!   the client's frame and refuses any other send; closing the sink flushes it). Without the answer,
//!   clients saw `1006` (abnormal closure) for every socket they closed themselves.
//! - After the server's own Close (`4401`, `1001`, `1000` …) the connection stays until
//!   the client's answering Close arrives (or [`CLOSE_REPLY_TIMEOUT`] passes), so the
//!   client reads the code: dropping the TCP connection at once lost it 9 times in 20
//!   (the kernel resets a connection closed with unread data).

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;

/// How long the server waits for the client's answering Close.
pub(crate) const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// The code to answer a client's Close with: its own (RFC 6455 §5.5.1), or `1000` when
/// it sent none or one that may not be sent (1005, 1006, 1015).
pub(crate) fn echo_code(frame: Option<&CloseFrame>) -> u16 {
    match frame.map(|f| f.code) {
        Some(code) if !matches!(code, 1005 | 1006 | 1015) && (1000..5000).contains(&code) => code,
        _ => 1000,
    }
}

/// Reads (and drops) what the client still sends until its Close, the end of the
/// stream, an error, or the timeout.
pub(crate) async fn await_client_close(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_REPLY_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
