//! The public listener's accept loop: what `axum::serve` does, plus the limits it cannot
//! set — a deadline for a request's headers, and a cap on one client's open connections.
//!
//! - HTTP/1.1 only (no h2c, see [`speaks_http1`]); the first bytes are awaited with the
//!   header deadline too.
//! - `JJONGAL_HEADER_READ_TIMEOUT_SECS` (10): a connection whose request headers are not
//!   complete by then is closed — one that sends nothing, or only part of a request line,
//!   included (unfinished headers were held 324 s, uncounted, and no request timeout
//!   applies before a request exists).
//! - `JJONGAL_MAX_CONNECTIONS_PER_IP` (256): a client beyond it is disconnected at once.
//!   Trusted proxies (`JJONGAL_TRUSTED_PROXIES`) are exempt: every client behind Nginx
//!   arrives from its address (Nginx caps per client with `limit_conn`).
//!
//! A WebSocket keeps its connection counted until the socket ends ([`HeldConnection`]).
//!
//! Each connection carries its peer address as axum's `ConnectInfo`, and WebSocket
//! upgrades work as with `axum::serve`. On shutdown the loop stops accepting and waits
//! for open connections to finish their requests (hyper's graceful shutdown).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::IpNet;
use crate::tally::{Tally, Ticket};

/// How the accept loop treats connections.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_per_ip: usize,
    /// Exempt from `max_per_ip`.
    pub trusted_proxies: Vec<IpNet>,
}

/// A request's hold on its connection's place in the per-client count. A WebSocket
/// handler keeps it for the socket's life: after an upgrade hyper's connection task ends,
/// but the client still holds the connection.
#[derive(Clone)]
pub(crate) struct HeldConnection(#[allow(dead_code)] Option<Arc<Ticket<IpAddr>>>);

/// Waits, at most `deadline`, until the connection shows it speaks HTTP/1: bytes that do
/// not start the HTTP/2 preface. `false` (close it) for silence, a preface (h2c is not
/// served: behind Nginx, which speaks HTTP/1.1 to its upstreams, HTTP/2 brings nothing)
/// or its first bytes alone. hyper's own header deadline starts only once it has chosen
/// HTTP/1, after its sniffing: before this, a connection that sent nothing, a lone `P` or
/// the preface was held for ever.
async fn speaks_http1(stream: &tokio::net::TcpStream, deadline: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let sniff = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if buf[..n] != PREFACE[..n] {
                return true;
            }
            if n == PREFACE.len() {
                return false;
            }
            // The start of the preface: more may come (peek does not wait for it).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(deadline, sniff).await.unwrap_or(false)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let open = Tally::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a moment, as axum::serve does.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ip = peer.ip().to_canonical();
        let counted = if limits.trusted_proxies.iter().any(|net| net.contains(&ip)) {
            None
        } else {
            match open.admit(ip, limits.max_per_ip) {
                Some(counted) => Some(Arc::new(counted)),
                None => {
                    tracing::warn!(client = %ip, max = limits.max_per_ip, "too many open connections from one client; refused");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let held = HeldConnection(counted.clone());
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(held.clone());
                request
            });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_bytes = limits.header_read_timeout;
        tokio::spawn(async move {
            let _counted = counted;
            if !speaks_http1(&stream, first_bytes).await {
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
