//! GraphQL over WebSocket at `/graphql/ws`: `graphql-transport-ws` (the protocol of the
//! `graphql-ws` library) and the legacy `graphql-ws` (subscriptions-transport-ws), served
//! by our own loop so the protocol's rules hold — async-graphql's handler enforces
//! neither the init timeout nor duplicate ids, and uses other close codes:
//!
//! - no `connection_init` within `JJONGAL_GRAPHQL_WS_INIT_TIMEOUT_SECS`: close 4408;
//!   a second one: 4429; a token that does not authenticate: 4403; an account already
//!   holding `JJONGAL_MAX_SOCKETS_PER_ACCOUNT` sockets: 1013;
//! - `subscribe` before the acknowledgement: 4401; an id already running: 4409;
//!   a malformed message: 4400; a frame over `JJONGAL_GRAPHQL_WS_MAX_MESSAGE_BYTES`
//!   (64 KiB): 1009; a client that does not read what it is sent (the shared socket
//!   writer's queue full): 1008; the account deleted or its role changed: 4403;
//! - more than `JJONGAL_GRAPHQL_WS_MAX_SUBSCRIPTIONS` operations at once, or over the
//!   client's or account's rate limit: an `error` for that operation (the connection
//!   stays open), with `RATE_LIMIT_EXCEEDED`.
//!
//! Browsers cannot set headers on a WebSocket, so the token comes in the
//! `connection_init` payload (`{"Authorization": "Bearer …"}` or `{"token": "…"}`); an
//! `Authorization` header on the upgrade works too. Without any token the connection is
//! anonymous and operations that need an account answer `INVALID_TOKEN`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Request, ServerError};
use axum::Extension;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::errors::is_request_error;
use super::limits::DocumentLimits;
use super::{AppSchema, RequestAuth};
use crate::domain::Domain;
use crate::domain::accounts::User;
use crate::error::ErrorCode;
use crate::gateway::Gateway;
use crate::http::ClientAddr;
use crate::http::socket_close::{await_client_close, echo_code};
use crate::http::socket_writer::{self, Outbox, Writer};
use crate::server::HeldConnection;
use crate::shutdown::TaskGuard;
use crate::tally::Ticket;
use crate::vocabulary::UserId;

/// How often the legacy protocol's keep-alive (`ka`) goes out.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`
    Transport,
    /// `graphql-ws` (legacy subscriptions-transport-ws)
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }

    /// The sub-protocol to speak: the first one the client offers that we speak (its
    /// order is its preference, RFC 6455 §4.1; Python gql offers both and then speaks the
    /// first), `graphql-transport-ws` when nothing is offered, `None` when only others
    /// are offered.
    fn choose(headers: &HeaderMap) -> Option<Protocol> {
        let mut offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .peekable();
        if offered.peek().is_none() {
            return Some(Protocol::Transport);
        }
        offered.find_map(|p| match p.as_str() {
            "graphql-transport-ws" => Some(Protocol::Transport),
            "graphql-ws" => Some(Protocol::Legacy),
            _ => None,
        })
    }
}

pub(crate) async fn upgrade(
    State(schema): State<AppSchema>,
    Extension(domain): Extension<Domain>,
    Extension(gateway): Extension<Gateway>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    held: Option<Extension<HeldConnection>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = Protocol::choose(&headers) else {
        let body = json!({"errors": [{
            "message": "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
            "extensions": {"code": ErrorCode::ValidationError.as_str()},
        }]});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let header_token = crate::http::bearer(&headers);
    let max_message = domain.config().graphql.ws_max_message_bytes;
    let connection = Connection {
        _running: gateway.shutdown().track(),
        schema,
        domain,
        gateway,
        client,
        protocol,
        header_token,
        _held: held,
    };
    upgrade
        .protocols([protocol.name()])
        // A document with its variables: far below the library defaults (64/16 MiB).
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| connection.serve(socket))
}

struct Connection {
    schema: AppSchema,
    domain: Domain,
    gateway: Gateway,
    client: IpAddr,
    protocol: Protocol,
    header_token: Option<String>,
    /// Keeps the connection counted for its client while the socket is open.
    _held: Option<Extension<HeldConnection>>,
    /// The shutdown waits for the socket (which closes with `1001` when it starts).
    _running: Option<TaskGuard>,
}

/// Who the connection is, once `connection_init` was accepted.
#[derive(Clone)]
struct Principal {
    token: Option<String>,
    /// The account, when the token authenticated one.
    user: Option<crate::vocabulary::UserId>,
    /// The account's place among its open sockets (none for an anonymous connection).
    _place: Option<Arc<Ticket<UserId>>>,
}

/// What an open connection holds: who it is (after `connection_init`), its running
/// operations by id, and the queues to its writer and of finished operations.
struct Live {
    principal: Option<Principal>,
    active: HashMap<String, AbortHandle>,
    /// To the connection's writer (bounded; a client that does not read is closed).
    out: Outbox,
    done: mpsc::UnboundedSender<(String, tokio::task::Id)>,
    max_subscriptions: usize,
    /// Keep-alive messages (`ping`/`pong`, and WebSocket ping/pong frames) this minute;
    /// past `JJONGAL_WS_MESSAGES_PER_MINUTE` the connection is closed with `4429`.
    keepalive: MinuteBudget,
}

/// A count of messages per minute against a cap.
struct MinuteBudget {
    cap: u32,
    window: tokio::time::Instant,
    used: u32,
}

impl MinuteBudget {
    fn new(cap: u32) -> MinuteBudget {
        MinuteBudget {
            cap,
            window: tokio::time::Instant::now(),
            used: 0,
        }
    }

    /// Counts one message; `false` once this minute's are used up.
    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            self.window = tokio::time::Instant::now();
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.cap
    }
}

/// The close for a connection that sends keep-alives past its budget.
fn too_many_messages() -> Step {
    close(4429, "Too many messages")
}

impl Live {
    /// Forgets operation `id` once its task `task` finished (unless the id names a newer
    /// task by now); whether none is running any more.
    fn finished(&mut self, id: &str, task: tokio::task::Id) -> bool {
        if self.active.get(id).is_some_and(|h| h.id() == task) {
            self.active.remove(id);
        }
        self.active.is_empty()
    }
}

/// Whether a connection goes on after a frame; when it stops, how (`by_client`: the
/// client's Close or the stream's end, which need no answering Close awaited).
enum Flow {
    Go,
    Stop { step: Step, by_client: bool },
}

/// The outcome of one client message.
enum Step {
    Continue,
    Close(u16, String),
}

/// The close code for a failed read (RFC 6455 §7.4.1), from tungstenite's own error
/// (axum wraps it): a message over the cap is 1009, text that is not UTF-8 1007.
fn read_failure(e: &axum::Error) -> (u16, &'static str) {
    use std::error::Error as _;
    match e
        .source()
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
    {
        Some(tungstenite::Error::Capacity(_)) => (1009, "Message too big"),
        Some(tungstenite::Error::Utf8(_)) => (1007, "Invalid UTF-8"),
        _ => (1002, "Protocol error"),
    }
}

fn close(code: u16, reason: impl Into<String>) -> Step {
    Step::Close(code, reason.into())
}

fn coded_error(code: ErrorCode, message: &str, retry_after: Option<u64>) -> Value {
    let mut extensions = json!({"code": code.as_str()});
    if let Some(secs) = retry_after {
        extensions["retryAfter"] = json!(secs);
    }
    json!({"message": message, "extensions": extensions})
}

fn token_from_payload(payload: &Value) -> Option<String> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(Value::as_str);
    if let Some(h) = header {
        return crate::http::bearer::bearer_of(h);
    }
    payload
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|t| !t.is_empty())
}

impl Connection {
    async fn serve(self, socket: WebSocket) {
        let ws = &self.domain.config().ws;
        let (mut stream, writer, out_tx) =
            socket_writer::split(socket, ws.send_queue, ws.write_timeout);
        let config = self.domain.config().graphql.clone();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, tokio::task::Id)>();
        let mut live = Live {
            principal: None,
            active: HashMap::new(),
            out: out_tx,
            done: done_tx,
            max_subscriptions: config.ws_max_subscriptions,
            keepalive: MinuteBudget::new(self.domain.config().ws.messages_per_minute),
        };
        let init_deadline = tokio::time::sleep(config.ws_init_timeout);
        tokio::pin!(init_deadline);
        // Idle: no message from the client and no operation running, this long.
        let idle_timeout = self.domain.config().ws.idle_timeout;
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let mut peer_closed = false;
        // The connection's token expires: then it closes (4401), ending every operation.
        let expiry = tokio::time::sleep(Duration::MAX);
        tokio::pin!(expiry);
        let mut expiry_set = false;
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        // The account deleted or its role changed (on any process): the connection closes
        // at once with 4403, as the login it was opened with no longer holds.
        // (Followed once the connection knows its account.)
        let mut events: Option<tokio::sync::broadcast::Receiver<crate::events::Event>> = None;

        let outcome = loop {
            let frame = tokio::select! {
                // Finished operations first: their slots are free before the next message.
                biased;
                Some((id, task)) = done_rx.recv() => {
                    if live.finished(&id, task) {
                        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    }
                    continue;
                }
                () = &mut init_deadline, if live.principal.is_none() => {
                    break close(4408, "Connection initialisation timeout");
                }
                () = &mut idle, if live.active.is_empty() => {
                    break close(1001, "Idle timeout");
                }
                () = &mut expiry, if expiry_set => {
                    break close(4401, "Token expired");
                }
                () = self.gateway.shutdown().requested() => {
                    break close(1001, "Server shutting down");
                }
                // The writer stopped (a client too slow to read, or gone): nothing more
                // can be said.
                // (What the client still sends is read and dropped for a moment before the
                // connection goes: closed with unread data, the kernel would reset it and
                // the client would lose what it had not read yet, the close included.)
                () = live.out.gone() => {
                    peer_closed = false;
                    break Step::Continue;
                }
                event = async {
                    match events.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let me = live.principal.as_ref().and_then(|p| p.user);
                    match event {
                        Ok(
                            crate::events::Event::AccountGone { user }
                            | crate::events::Event::AccountChanged { user },
                        ) if Some(user) == me => {
                            break close(4403, "Forbidden");
                        }
                        // Events were missed: the deletion may have been among them.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            if let Some(id) = me
                                && matches!(self.domain.accounts().find_user(id).await, Ok(None))
                            {
                                break close(4403, "Forbidden");
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            events = me.map(|id| {
                                self.domain.events().follow(crate::events::Topic::Account(id))
                            });
                        }
                        _ => {}
                    }
                    continue;
                }
                frame = stream.next() => frame,
                _ = keep_alive.tick(), if self.protocol == Protocol::Legacy && live.principal.is_some() => {
                    let _ = live.out.text(json!({"type": "ka"}).to_string());
                    continue;
                }
            };
            if let Some(Ok(Message::Text(_) | Message::Binary(_))) = &frame {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + idle_timeout);
            }
            match self.on_frame(&mut live, frame).await {
                Flow::Go => {}
                Flow::Stop { step, by_client } => {
                    peer_closed = by_client;
                    break step;
                }
            }
            if events.is_none()
                && let Some(id) = live.principal.as_ref().and_then(|p| p.user)
            {
                events = Some(
                    self.domain
                        .events()
                        .follow(crate::events::Topic::Account(id)),
                );
            }
            if !expiry_set
                && let Some(token) = live.principal.as_ref().and_then(|p| p.token.as_deref())
            {
                let left = self.domain.token_time_left(token).unwrap_or_default();
                expiry.as_mut().reset(tokio::time::Instant::now() + left);
                expiry_set = true;
            }
        };
        finish(live, outcome, writer, &mut stream, peer_closed).await;
    }

    /// One frame read (or the stream's end): whether the connection goes on.
    async fn on_frame(&self, live: &mut Live, frame: Option<Result<Message, axum::Error>>) -> Flow {
        let step = match frame {
            None => {
                return Flow::Stop {
                    step: Step::Continue,
                    by_client: true,
                };
            }
            // Answered in kind (the writer's Close flushes tungstenite's echo).
            Some(Ok(Message::Close(frame))) => {
                return Flow::Stop {
                    step: Step::Close(echo_code(frame.as_ref()), String::new()),
                    by_client: true,
                };
            }
            // Most often a message over the size cap. (The close for an oversized
            // message is sent at the end; the client may still be writing, so the
            // connection lingers a moment for it to read it.)
            Some(Err(e)) => {
                tracing::debug!(error = %e, "graphql socket read failed");
                let (code, reason) = read_failure(&e);
                close(code, reason)
            }
            Some(Ok(Message::Text(text))) => self.on_text(live, &text).await,
            Some(Ok(Message::Binary(_))) => close(4400, "Binary messages are not supported"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) if !live.keepalive.take() => {
                too_many_messages()
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
        };
        match step {
            Step::Continue => Flow::Go,
            step => Flow::Stop {
                step,
                by_client: false,
            },
        }
    }

    async fn on_text(&self, live: &mut Live, text: &str) -> Step {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            return close(4400, "Invalid message received");
        };
        let Some(kind) = message.get("type").and_then(Value::as_str) else {
            return close(4400, "Invalid message received: no type");
        };
        let legacy = self.protocol == Protocol::Legacy;
        // Keep-alives count against the connection's budget, before and after
        // `connection_init` alike (answering them was free: 56,900 pongs in 10 s).
        if matches!(kind, "ping" | "pong") && !live.keepalive.take() {
            return too_many_messages();
        }
        // A ping asks for work (a pong): it spends the client's and the account's message
        // budgets too, as operations do; over them it goes unanswered (the connection
        // stays, as for an operation refused for its budget). A pong answers, and spends
        // only the cap above.
        if kind == "ping" {
            let account = live.principal.as_ref().and_then(|p| p.user);
            if self.gateway.check_message(self.client, account).is_err() {
                return Step::Continue;
            }
        }
        match kind {
            "connection_init" => self.on_init(&message, live).await,
            "ping" if !legacy => {
                let mut pong = json!({"type": "pong"});
                if let Some(p) = message.get("payload") {
                    pong["payload"] = p.clone();
                }
                let _ = live.out.text(pong.to_string());
                Step::Continue
            }
            "pong" if !legacy => Step::Continue,
            "subscribe" | "start" if (kind == "start") == legacy => {
                self.on_subscribe(&message, live).await
            }
            "complete" | "stop" if (kind == "stop") == legacy => {
                if let Some(id) = message.get("id").and_then(Value::as_str)
                    && let Some(task) = live.active.remove(id)
                {
                    task.abort();
                    if legacy {
                        let _ = live
                            .out
                            .text(json!({"type": "complete", "id": id}).to_string());
                    }
                }
                Step::Continue
            }
            "connection_terminate" if legacy => close(1000, "Normal closure"),
            other => close(
                4400,
                format!("Invalid message received: unknown type `{other}`"),
            ),
        }
    }

    /// `connection_init`: the token (from the payload, else the upgrade's header) is
    /// checked once and the account's socket place taken; then `connection_ack`.
    async fn on_init(&self, message: &serde_json::Map<String, Value>, live: &mut Live) -> Step {
        let legacy = self.protocol == Protocol::Legacy;
        let out = &live.out;
        if live.principal.is_some() {
            return close(4429, "Too many initialisation requests");
        }
        let payload = message.get("payload").cloned().unwrap_or(Value::Null);
        let token = token_from_payload(&payload).or_else(|| self.header_token.clone());
        let mut place = None;
        let mut account = None;
        match &token {
            None => {}
            Some(t) => match self.domain.accounts().authenticate(Some(t)).await {
                // One account's open sockets are capped, on every door together.
                Ok(user) => match self.gateway.open_socket(user.id) {
                    Ok(ticket) => {
                        place = Some(Arc::new(ticket));
                        account = Some(user.id);
                    }
                    Err(max) => {
                        tracing::warn!(user_id = %user.id, max, "too many open sockets for one account; refused");
                        if legacy {
                            let _ = out
                                .text(json!({
                                    "type": "connection_error",
                                    "payload": coded_error(ErrorCode::RateLimitExceeded, &Gateway::too_many_sockets(max), None),
                                }).to_string());
                        }
                        return close(1013, "Too many open sockets for this account");
                    }
                },
                // The database, not the token: tell the client to come back.
                Err(e) if e.code() != ErrorCode::InvalidToken => {
                    if let Some(cause) = e.into_public().cause {
                        crate::http::errors::log(&cause);
                    }
                    return close(1011, "Internal error; try again");
                }
                Err(_) => {
                    if legacy {
                        let _ = out
                            .text(json!({
                                "type": "connection_error",
                                "payload": coded_error(ErrorCode::InvalidToken, ErrorCode::InvalidToken.default_message(), None),
                            }).to_string());
                    }
                    return close(4403, "Forbidden");
                }
            },
        };
        live.principal = Some(Principal {
            token,
            user: account,
            _place: place,
        });
        let out = &live.out;
        let _ = out.text(json!({"type": "connection_ack"}).to_string());
        if legacy {
            let _ = out.text(json!({"type": "ka"}).to_string());
        }
        Step::Continue
    }

    /// `subscribe` (`start`): the login is checked again, the operation admitted (the
    /// connection's subscription cap, the client's and account's budgets) and started.
    async fn on_subscribe(
        &self,
        message: &serde_json::Map<String, Value>,
        live: &mut Live,
    ) -> Step {
        let legacy = self.protocol == Protocol::Legacy;
        let Some(who) = live.principal.clone() else {
            return close(4401, "Unauthorized");
        };
        let user = match self.login_again(&who).await {
            Ok(user) => user,
            Err(step) => return step,
        };
        let Some(id) = message
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
        else {
            return close(4400, "Invalid message received: no id");
        };
        if live.active.contains_key(id) {
            return close(4409, format!("Subscriber for {id} already exists"));
        }
        let request = match message
            .get("payload")
            .map(|p| serde_json::from_value::<Request>(p.clone()))
        {
            Some(Ok(r)) => r,
            _ => return close(4400, "Invalid message received: bad payload"),
        };
        if let Some(error) = self.refusal(live, user.as_ref()) {
            let out = &live.out;
            let _ = out.text(error_message(self.protocol, id, vec![error]).to_string());
            if legacy {
                let complete = json!({"type": "complete", "id": id});
                let _ = out.text(complete.to_string());
            }
            return Step::Continue;
        }
        let task = tokio::spawn(run_operation(
            self.schema.clone(),
            DocumentLimits::from_config(&self.domain.config().graphql),
            self.protocol,
            id.to_string(),
            request.data(RequestAuth::for_user(who.token.clone(), user)),
            live.out.clone(),
            live.done.clone(),
        ));
        live.active.insert(id.to_string(), task.abort_handle());
        Step::Continue
    }

    /// The login checked again for an operation: a token that expired, or an account
    /// deleted, since `connection_init` ends the connection (the `Err` is how).
    async fn login_again(&self, who: &Principal) -> Result<Option<User>, Step> {
        let Some(token) = &who.token else {
            return Ok(None);
        };
        match self.domain.accounts().authenticate(Some(token)).await {
            Ok(user) => Ok(Some(user)),
            Err(e) if e.code() == ErrorCode::InvalidToken => {
                Err(close(4403, "Forbidden: the token is no longer valid"))
            }
            Err(e) => {
                if let Some(cause) = e.into_public().cause {
                    crate::http::errors::log(&cause);
                }
                Err(close(1011, "Internal error; try again"))
            }
        }
    }

    /// Why a new operation may not start, as the error to send: the connection's
    /// subscription cap, or the client's and the account's message budgets.
    fn refusal(&self, live: &Live, user: Option<&User>) -> Option<Value> {
        let max = live.max_subscriptions;
        if live.active.len() >= max {
            return Some(coded_error(
                ErrorCode::RateLimitExceeded,
                &format!("이 연결에서는 동시에 {max}개까지만 구독할 수 있습니다."),
                None,
            ));
        }
        self.gateway
            .check_message(self.client, user.map(|u| u.id))
            .err()
            .map(|secs| {
                coded_error(
                    ErrorCode::RateLimitExceeded,
                    ErrorCode::RateLimitExceeded.default_message(),
                    Some(secs),
                )
            })
    }
}

/// Ends a connection: its operations stop, the close frame (if the server closes) is
/// sent, the writer drains, and the server waits for the client's answering Close (or,
/// after an oversized message the client may still be writing, lingers a moment so it
/// can read the close frame).
async fn finish(
    mut live: Live,
    outcome: Step,
    writer: Writer,
    stream: &mut SplitStream<WebSocket>,
    peer_closed: bool,
) {
    for (_, task) in live.active.drain() {
        task.abort();
    }
    let linger = matches!(outcome, Step::Close(1009, _));
    if let Step::Close(code, reason) = outcome {
        if peer_closed {
            // The answer to the client's Close overtakes anything still queued.
            live.out.close_now(code, reason);
        } else {
            live.out.close_after(code, reason);
        }
    }
    // The writer ends with its queue; who the connection is (and the account's socket
    // place) stays until the connection is gone.
    let Live { principal, out, .. } = live;
    drop(out);
    writer.finish().await;
    if linger {
        tokio::time::sleep(Duration::from_millis(500)).await;
    } else if !peer_closed {
        await_client_close(stream).await;
    }
    drop(principal);
}

/// An operation's refusal before execution: `error` with a list of errors
/// (`graphql-transport-ws`), or with one error (legacy).
fn error_message(protocol: Protocol, id: &str, errors: Vec<Value>) -> Value {
    match protocol {
        Protocol::Transport => json!({"type": "error", "id": id, "payload": errors}),
        Protocol::Legacy => json!({
            "type": "error",
            "id": id,
            "payload": errors.into_iter().next().unwrap_or(Value::Null),
        }),
    }
}

fn server_errors(errors: &[ServerError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect()
}

/// Runs one operation and forwards its results; an operation that cannot start (parse,
/// validation or limit errors) is one `error` message, anything else `next`/`data`
/// messages and then `complete`.
async fn run_operation(
    schema: AppSchema,
    limits: DocumentLimits,
    protocol: Protocol,
    id: String,
    request: Request,
    out: Outbox,
    done: mpsc::UnboundedSender<(String, tokio::task::Id)>,
) {
    let next = match protocol {
        Protocol::Transport => "next",
        Protocol::Legacy => "data",
    };
    // Frees the id's slot however the task ends (finished, failed, panicked, aborted).
    let mut slot = SlotGuard {
        id: Some(id.clone()),
        task: tokio::task::id(),
        done,
    };
    let mut results = super::execute_stream(&schema, Some(&limits), request);
    let mut first = true;
    let mut refused = false;
    while let Some(mut response) = results.next().await {
        crate::http::errors::log_graphql(&response.errors);
        super::errors::graphql_words(&mut response.errors);
        if first && is_request_error(&response) {
            let errors = server_errors(&response.errors);
            let _ = out.text(error_message(protocol, &id, errors).to_string());
            refused = true;
            break;
        }
        first = false;
        let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
        if !out.text(json!({"type": next, "id": id, "payload": payload}).to_string()) {
            return;
        }
    }
    // The slot is free before the client can see `complete` and reuse the id.
    slot.release();
    if !refused || protocol == Protocol::Legacy {
        let _ = out.text(json!({"type": "complete", "id": id}).to_string());
    }
}

/// Tells the connection loop an operation's id is free again, once.
struct SlotGuard {
    id: Option<String>,
    task: tokio::task::Id,
    done: mpsc::UnboundedSender<(String, tokio::task::Id)>,
}

impl SlotGuard {
    fn release(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.done.send((id, self.task));
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.release();
    }
}
