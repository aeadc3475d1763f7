//! The conversation WebSocket `/wss/v1/audio` (spec §7, contract §6), adapted onto the
//! GraphQL schema: spec messages become `startConversation` / `sendMessage` /
//! `createStoryFromConversation` / `endConversation` mutations, and the
//! `conversationEvents` and `voiceEvents` subscriptions come back as spec messages. It
//! holds no business rule: it translates.
//!
//! One socket is three tasks around one writer ([`crate::http::socket_writer`]):
//! - the **reader** (this connection's task) reads every frame as it comes — pings are
//!   answered, a Close is answered at once, budgets are kept, raw-PCM speech is
//!   gathered — and hands messages to the turn task through a bounded queue (full: the
//!   message is refused with `error`);
//! - the **turn task** runs the messages one after another as GraphQL operations
//!   (documents parsed once, at start-up; answers read into types) and sends each
//!   answer from the value in hand;
//! - the **event tasks** follow the subscriptions for what others cause (a dashboard
//!   ending the conversation, voice progress); the socket's own replies are not
//!   repeated (its operations carry its [`TurnOrigin`]).
//!
//! The account is authenticated once, when the socket opens; its deletion or a change of
//! its role closes the socket at once (`4401`), on every process.

mod documents;
mod protocol;
mod speech;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_graphql::{Request, Variables};
use axum::Extension;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::WsConfig;
use crate::domain::Domain;
use crate::domain::accounts::User;
use crate::domain::voices::{SampleAdded, pcm_wav};
use crate::error::{AppError, ErrorCode};
use crate::events::{Event, Topic};
use crate::gateway::Gateway;
use crate::graphql::conversations::TurnOrigin;
use crate::graphql::errors::code_of;
use crate::graphql::{AppSchema, RequestAuth};
use crate::http::ClientAddr;
use crate::http::socket_close::{await_client_close, echo_code};
use crate::http::socket_writer::{self, Outbox};
use crate::server::HeldConnection;
use crate::tally::Ticket;
use crate::vocabulary::UserId;
pub(crate) use documents::Documents;
use documents::{
    ConversationEvent, EndAnswer, EventsAnswer, SendAnswer, StartAnswer, StoryAnswer, VoiceAnswer,
    VoiceEvent,
};
use protocol::{AudioConfig, ClientMessage, ServerMessage, StartPayload, StoryRequest};
pub(crate) use speech::SpeechBudget;
use speech::{Cap, Pushed, Speech, Utterance};

/// Binary frames (voice samples) longer than this are refused (the socket stays open).
pub(crate) const MAX_SAMPLE_BYTES: usize = 5 * 1024 * 1024;
/// Frames longer than this close the socket with 1009.
pub(crate) const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// What every conversation socket shares; cloned into each of a socket's tasks, so one
/// pointer (thousands of idle sockets hold a few copies each).
#[derive(Clone)]
pub(crate) struct WsState(Arc<WsParts>);

impl WsState {
    pub(crate) fn new(parts: WsParts) -> WsState {
        WsState(Arc::new(parts))
    }
}

impl std::ops::Deref for WsState {
    type Target = WsParts;

    fn deref(&self) -> &WsParts {
        &self.0
    }
}

pub(crate) struct WsParts {
    pub schema: AppSchema,
    pub domain: Domain,
    pub config: WsConfig,
    /// Also the shutdown signal: on shutdown every open conversation closes with `1001`.
    pub gateway: Gateway,
    /// The socket's GraphQL documents, parsed once.
    pub documents: Arc<Documents>,
    /// Raw-PCM speech buffered on this process.
    pub speech: Arc<SpeechBudget>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(code, message)
}

/// A domain error as the socket answers it (an internal cause is logged).
fn app_error(e: AppError) -> ServerMessage {
    let public = crate::http::errors::answered(e);
    error(public.code, public.message)
}

fn not_started() -> ServerMessage {
    let code = ErrorCode::ConversationNotStarted;
    error(code, code.default_message())
}

/// `RATE_LIMIT_EXCEEDED`, with `retry_after` (seconds) when the gateway knows it.
fn rate_limited(message: &str, retry_after: Option<u64>) -> ServerMessage {
    ServerMessage::Error {
        error_code: ErrorCode::RateLimitExceeded.as_str().into(),
        error_message: message.into(),
        retry_after,
        retryable: None,
    }
}

fn say(out: &Outbox, message: ServerMessage) -> bool {
    out.text(message.to_text())
}

pub(crate) async fn audio(
    State(state): State<WsState>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    held: Option<Extension<HeldConnection>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = params
        .get("token")
        .cloned()
        .filter(|t| !t.is_empty())
        .or_else(|| crate::http::bearer(&headers));
    // The account, once: kept as the socket's principal (a refusal is told on the
    // socket, as the contract says).
    let admitted = admit(&state, token.as_deref()).await;
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // Mostly small JSON: small buffers keep thousands of idle sockets cheap (a frame's
        // whole length is reserved when its header arrives, so large voice samples still
        // arrive whole; the buffer is what an idle socket keeps).
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            // The connection stays counted for its client while the socket is open, and
            // the shutdown waits for the socket.
            let _held = held;
            let _running = state.gateway.shutdown().track();
            session(socket, state, token, admitted, params, client).await
        })
}

/// Who the socket is for, and its place among the account's open sockets; or what the
/// client is told before the socket closes: a bad or missing token (4401), or an
/// account with too many open sockets (every door's sockets count together; 1013).
async fn admit(
    state: &WsState,
    token: Option<&str>,
) -> Result<(User, Ticket<UserId>), (ServerMessage, u16, &'static str)> {
    let Ok(user) = state.domain.accounts().authenticate(token).await else {
        return Err((
            error(
                ErrorCode::InvalidToken,
                ErrorCode::InvalidToken.default_message(),
            ),
            4401,
            "invalid token",
        ));
    };
    match state.gateway.open_socket(user.id) {
        Ok(place) => Ok((user, place)),
        Err(max) => {
            tracing::warn!(user_id = %user.id, max, "too many open sockets for one account; refused");
            Err((
                error(ErrorCode::RateLimitExceeded, Gateway::too_many_sockets(max)),
                1013,
                "too many open sockets",
            ))
        }
    }
}

/// The child's details from the query string (`start_conversation` overrides them).
fn prefill(params: &HashMap<String, String>) -> StartPayload {
    StartPayload {
        child_name: params.get("child_name").filter(|n| !n.is_empty()).cloned(),
        age: params.get("age").and_then(|a| a.parse().ok()),
        interests: params.get("interests").map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }),
        conversation_id: None,
        audio: None,
    }
}

/// What the socket's operations run as: the account authenticated when it opened (its
/// voice kept current by the voice events), and the socket's origin.
#[derive(Clone)]
struct Principal {
    user: Arc<RwLock<User>>,
    token: Arc<str>,
    origin: TurnOrigin,
}

impl Principal {
    fn user(&self) -> User {
        self.user.read().expect("principal lock").clone()
    }

    fn id(&self) -> UserId {
        self.user.read().expect("principal lock").id
    }

    fn request(&self, doc: &documents::Document, variables: impl Serialize) -> Request {
        let mut request = Request::new(doc.source)
            .variables(Variables::from_json(
                serde_json::to_value(variables).expect("variables serialise"),
            ))
            .data(RequestAuth::for_user(
                Some(self.token.to_string()),
                Some(self.user()),
            ))
            .data(self.origin);
        request.set_parsed_query(doc.parsed.clone());
        request
    }
}

async fn session(
    socket: WebSocket,
    state: WsState,
    token: Option<String>,
    admitted: Result<(User, Ticket<UserId>), (ServerMessage, u16, &'static str)>,
    params: HashMap<String, String>,
    client: IpAddr,
) {
    let (mut stream, writer, out) =
        socket_writer::split(socket, state.config.send_queue, state.config.write_timeout);
    let (user, _place) = match admitted {
        Ok(admitted) => admitted,
        Err((message, code, reason)) => {
            say(&out, message);
            out.close_after(code, reason);
            drop(out);
            writer.finish().await;
            await_client_close(&mut stream).await;
            return;
        }
    };
    let user_id = user.id;
    tracing::info!(user_id = %user_id, "conversation socket opened");
    let _gauge = SocketGauge::open(state.domain.clone());
    let principal = Principal {
        user: Arc::new(RwLock::new(user)),
        token: token.unwrap_or_default().into(),
        origin: TurnOrigin(rand::random()),
    };
    let (closing_tx, closing_rx) = mpsc::unbounded_channel::<()>();
    let (work_tx, work_rx) = mpsc::channel::<Work>(state.config.turn_queue);
    let turns = tokio::spawn(
        Turns {
            state: state.clone(),
            principal: principal.clone(),
            out: out.clone(),
            closing: closing_tx,
            defaults: prefill(&params),
            conversation: None,
            voice: None,
            told: HashSet::new(),
        }
        .run(work_rx),
    );
    // (The query string, token included, is not kept for the socket's life.)
    drop(params);
    let mut reader = Reader {
        speech: Speech::new(state.speech.clone(), user_id),
        state,
        principal,
        out,
        work: work_tx,
    };
    let ending = reader.serve(&mut stream, client, closing_rx).await;
    // Speech cut off by the close is still kept (never answered: the socket is gone).
    if let Some(utterance) = reader.speech.take() {
        let _ = reader
            .work
            .try_send(Work::Utterance(Box::new(utterance), false));
    }
    let Reader { out, work, .. } = reader;
    drop(work);
    drop(out);
    // The writer stops with the close (sent or answered); nothing is sent after it.
    writer.finish().await;
    match ending {
        // The client may still be writing the big frame: keep the connection a moment
        // so it can read the close frame.
        Ending::TooBig => tokio::time::sleep(Duration::from_millis(500)).await,
        // The server's own Close waits for the client's answer.
        Ending::ByServer => await_client_close(&mut stream).await,
        Ending::ByClient => {}
    }
    drop(stream);
    // A turn under way finishes and is stored (the child hears it on resuming); the
    // account's socket place is held until then.
    let _ = turns.await;
    tracing::info!(user_id = %user_id, "conversation socket closed");
}

/// How a socket's loop ended.
enum Ending {
    /// The client ended the connection (its Close, or the stream's end).
    ByClient,
    /// The server closed it (shutdown, idle, token expiry, a failed session).
    ByServer,
    /// A frame over the size cap (closed with 1009).
    TooBig,
}

/// What the reader hands to the turn task. Kept small (the big cases boxed): the queue
/// allocates its slots up front, on every socket.
enum Work {
    Start(Box<StartPayload>),
    Message(String),
    End(Option<Box<StoryRequest>>),
    /// A voice sample frame (a complete audio file).
    Sample(Vec<u8>),
    /// A finished raw-PCM utterance; `true` when it is to be answered.
    Utterance(Box<Utterance>, bool),
}

struct Reader {
    state: WsState,
    principal: Principal,
    out: Outbox,
    work: mpsc::Sender<Work>,
    speech: Speech,
}

impl Reader {
    /// Reads the client's frames until the connection ends, keeping it alive (pings),
    /// timing it out (idle, token expiry) and holding it to its message budgets.
    async fn serve(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        client: IpAddr,
        mut closing: mpsc::UnboundedReceiver<()>,
    ) -> Ending {
        let config = self.state.config.clone();
        let limiter = RateLimiter::direct(Quota::per_minute(
            NonZeroU32::new(config.messages_per_minute).unwrap_or(NonZeroU32::MIN),
        ));
        let mut ping = tokio::time::interval(config.ping_interval);
        ping.reset();
        let idle = tokio::time::sleep(config.idle_timeout);
        tokio::pin!(idle);
        // When the access token expires the socket closes (4401), like one opened with it.
        let left = self.state.domain.token_time_left(&self.principal.token);
        let expiry = tokio::time::sleep(left.unwrap_or_default());
        tokio::pin!(expiry);
        // The account deleted or changed (on any process): the socket closes at once.
        let me = self.principal.id();
        let mut events = self.state.domain.events().follow(Topic::Account(me));
        let out = self.out.clone();
        let goodbye = |message: &str, code: u16, reason: &'static str| {
            say(&out, error(ErrorCode::InvalidToken, message));
            out.close_after(code, reason);
            Ending::ByServer
        };
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                event = events.recv() => match event {
                    Ok(Event::AccountGone { user }) if user == me => {
                        return goodbye("계정이 삭제되었습니다.", 4401, "account deleted");
                    }
                    Ok(Event::AccountChanged { user }) if user == me => {
                        return goodbye("계정이 바뀌었습니다. 다시 연결해 주세요.", 4401, "account changed");
                    }
                    // The account's voice was cloned (by any socket): later replies use it.
                    Ok(Event::VoiceCloned { user, voice_id }) if user == me => {
                        self.principal.user.write().expect("principal lock").voice_id = Some(voice_id);
                        continue;
                    }
                    // Events were missed: the deletion may have been among them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let account = Box::pin(self.state.domain.accounts().find_user(me)).await;
                        if matches!(account, Ok(None)) {
                            return goodbye("계정이 삭제되었습니다.", 4401, "account deleted");
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        events = self.state.domain.events().follow(Topic::Account(me));
                        continue;
                    }
                    _ => continue,
                },
                () = self.state.gateway.shutdown().requested() => {
                    self.out.close_after(1001, "server shutting down");
                    return Ending::ByServer;
                }
                _ = ping.tick() => { self.out.ping(); continue; }
                _ = &mut idle => {
                    self.out.close_after(1001, "idle timeout");
                    return Ending::ByServer;
                }
                _ = &mut expiry => {
                    return goodbye("토큰이 만료되었습니다. 새 토큰으로 다시 연결하세요.", 4401, "token expired");
                }
                // The conversation ended (its `conversation_ended` and Close are queued).
                Some(()) = closing.recv() => return Ending::ByServer,
                // The writer stopped: a client too slow to read, or gone. (What it still
                // sends is read and dropped for a moment: closed with unread data, the
                // kernel would reset the connection and the client lose the close.)
                () = self.out.gone() => return Ending::ByServer,
            };
            let frame = match frame {
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    // Most often a frame over the size cap.
                    tracing::debug!(error = %e, "conversation socket read failed");
                    self.out.close_now(1009, "message too big");
                    return Ending::TooBig;
                }
                None => return Ending::ByClient,
            };
            if matches!(frame, Message::Text(_) | Message::Binary(_)) {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + config.idle_timeout);
            }
            if let Some(retry_after) = self.over_budget(&frame, &limiter, client) {
                say(
                    &self.out,
                    rate_limited(
                        "메시지를 너무 빨리 보내고 있어요. 잠시 후 다시 보내 주세요.",
                        retry_after,
                    ),
                );
                continue;
            }
            match frame {
                Message::Text(text) => self.on_text(&text),
                Message::Binary(bytes) => self.on_binary(bytes.into()),
                Message::Close(close) => {
                    // Answered at once, ahead of anything queued.
                    self.out.close_now(echo_code(close.as_ref()), "");
                    return Ending::ByClient;
                }
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }

    /// Whether `frame` goes over a message budget: this socket's own pace (`Some(None)`),
    /// or the client's and the account's, shared with every other door of this process
    /// (`Some(Some(seconds))` to wait). Control frames, and the later frames of one
    /// raw-PCM utterance, are not messages of their own.
    fn over_budget(
        &self,
        frame: &Message,
        limiter: &DefaultDirectRateLimiter,
        client: IpAddr,
    ) -> Option<Option<u64>> {
        let counts = match frame {
            Message::Binary(_) if self.speech.under_way() => false,
            Message::Text(_) | Message::Binary(_) => true,
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) => false,
        };
        if !counts {
            return None;
        }
        match limiter.check() {
            Err(_) => Some(None),
            Ok(()) => self
                .state
                .gateway
                .check_message(client, Some(self.principal.id()))
                .err()
                .map(Some),
        }
    }

    /// Hands `work` to the turn task; a full queue refuses it with `error`.
    fn hand_over(&self, work: Work) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.work.try_send(work) {
            say(
                &self.out,
                rate_limited(
                    "쫑이가 앞의 말에 대답하고 있어요. 대답을 들은 뒤 다시 보내 주세요.",
                    None,
                ),
            );
        }
    }

    /// A text frame: first the utterance before it is finished (answered first), then
    /// the spec message it carries.
    fn on_text(&mut self, text: &str) {
        if let Some(utterance) = self.speech.take() {
            self.hand_over(Work::Utterance(Box::new(utterance), true));
        }
        let max = self.state.config.max_text_chars;
        if text.chars().count() > max {
            say(
                &self.out,
                error(
                    ErrorCode::ValidationError,
                    format!("메시지는 {max}자를 넘을 수 없습니다."),
                ),
            );
            return;
        }
        match protocol::parse_client_message(text) {
            Ok(ClientMessage::StartConversation(payload)) => {
                // Binary frames after this are speech (when the payload says so).
                self.speech.take();
                self.speech.config = payload.audio;
                self.hand_over(Work::Start(Box::new(payload)));
            }
            Ok(ClientMessage::UserMessage(text)) => self.hand_over(Work::Message(text)),
            Ok(ClientMessage::EndConversation(story)) => {
                self.hand_over(Work::End(story.map(Box::new)))
            }
            Ok(ClientMessage::EndRefused(reason)) => {
                say(&self.out, error(ErrorCode::ValidationError, reason));
                self.hand_over(Work::End(None));
            }
            Err(reason) => {
                say(&self.out, error(ErrorCode::ValidationError, reason));
            }
        }
    }

    /// A binary frame: raw PCM of the utterance under way, or a voice sample.
    fn on_binary(&mut self, bytes: Vec<u8>) {
        if self.speech.config.is_some() {
            match self.speech.push(&bytes) {
                Pushed::Kept | Pushed::Dropped => {}
                Pushed::Cut(cap, kept) => {
                    say(&self.out, cut_notice(cap));
                    if let Some(utterance) = kept {
                        self.hand_over(Work::Utterance(Box::new(utterance), true));
                    }
                }
            }
            return;
        }
        if bytes.len() > MAX_SAMPLE_BYTES {
            say(
                &self.out,
                error(
                    ErrorCode::PayloadTooLarge,
                    "음성 샘플은 5MB를 넘을 수 없습니다.",
                ),
            );
            return;
        }
        self.hand_over(Work::Sample(bytes));
    }
}

/// What the client hears when its utterance was cut at a cap.
fn cut_notice(cap: Cap) -> ServerMessage {
    match cap {
        Cap::Utterance => error(
            ErrorCode::PayloadTooLarge,
            "한 번에 말한 음성은 5MB(16 kHz에서 약 2분 40초)까지예요. 거기까지만 들었어요.",
        ),
        Cap::Account | Cap::Process => rate_limited(
            "지금은 음성을 더 받아 둘 수 없어요. 여기까지는 들었어요. 잠시 후 다시 말해 주세요.",
            Some(1),
        ),
    }
}

/// The socket's turns: its messages run one after another as GraphQL operations.
struct Turns {
    state: WsState,
    principal: Principal,
    out: Outbox,
    /// Told by the events' task when the conversation has ended (the socket closes).
    closing: mpsc::UnboundedSender<()>,
    defaults: StartPayload,
    /// The conversation under way, and the task following its events.
    conversation: Option<(String, Following)>,
    /// The task following the account's voice events, from this socket's first sample
    /// on (a socket that sends none does not pay for it).
    voice: Option<JoinHandle<()>>,
    /// The notices this socket has told (each once).
    told: HashSet<String>,
}

impl Turns {
    async fn run(mut self, mut work: mpsc::Receiver<Work>) {
        while let Some(item) = work.recv().await {
            // Boxed: between turns the task holds only itself, not the space of its
            // largest turn.
            Box::pin(self.turn(item)).await;
        }
        if let Some((_, events)) = self.conversation.take() {
            events.abort();
        }
        if let Some(voice) = self.voice.take() {
            voice.abort();
        }
    }

    async fn turn(&mut self, item: Work) {
        match item {
            Work::Start(payload) => self.start(*payload).await,
            Work::Message(text) => self.user_message(&text).await,
            Work::End(story) => self.end(story.map(|s| *s)).await,
            Work::Sample(bytes) => self.sample(&bytes).await,
            Work::Utterance(utterance, answer) => self.utterance(*utterance, answer).await,
        }
    }

    /// Follows the account's voice events before this socket's first sample is stored
    /// (so its progress cannot be missed).
    async fn follow_voice(&mut self) {
        if self.voice.is_none() {
            self.voice = Some(follow_voice(&self.state, &self.principal, self.out.clone()).await);
        }
    }

    fn say(&self, message: ServerMessage) {
        say(&self.out, message);
    }

    /// Runs one of the socket's documents; a GraphQL error becomes the client's `error`.
    async fn run_doc<T: DeserializeOwned>(
        &self,
        doc: &documents::Document,
        variables: impl Serialize,
    ) -> Result<T, ServerMessage> {
        let request = self.principal.request(doc, variables);
        // Boxed: an operation's future is large, and an idle socket's task should not
        // carry its space between turns.
        let response = Box::pin(crate::graphql::execute(&self.state.schema, None, request)).await;
        crate::http::errors::log_graphql(&response.errors);
        if let Some(err) = response.errors.first() {
            let code = code_of(err).unwrap_or(ErrorCode::ServerError);
            return Err(error(code, err.message.clone()));
        }
        async_graphql::from_value(response.data).map_err(|e| {
            app_error(AppError::Internal(anyhow::anyhow!(
                "the conversation socket's answer did not read: {e}"
            )))
        })
    }

    /// Says what this server cannot do, once per socket.
    fn tell_once(&mut self, code: String, message: String) {
        if self.told.insert(code.clone()) {
            self.say(ServerMessage::Notice { code, message });
        }
    }

    /// A sample was stored: its progress is told from the value in hand (in order with
    /// what this socket says next: the subscription skips it), and whether it can be
    /// cloned here is said once.
    async fn after_sample(&mut self, user: &User, count: i64, ready: bool, clone_due: bool) {
        self.say(ServerMessage::VoiceCloneProgress {
            sample_count: count,
            ready_for_cloning: ready,
        });
        // Cloning after the progress was told: its success or failure comes after it.
        if clone_due && let Err(e) = Box::pin(self.state.domain.voices().clone_when_due(user)).await
        {
            self.say(app_error(e));
        }
        if let Some(notice) = self.state.domain.conversations().sample_notice(user) {
            self.tell_once(notice.code.to_string(), notice.message.to_string());
        }
    }

    fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_ref().map(|(id, _)| id.as_str())
    }

    /// `start_conversation`: ends the current one (quietly: this socket goes on with the
    /// new one) unless it is the one resumed, starts or resumes one and follows its
    /// events.
    async fn start(&mut self, payload: StartPayload) {
        let resuming = payload.conversation_id.clone();
        if let Some((id, events)) = self.conversation.take() {
            events.abort();
            if resuming.as_deref() != Some(id.as_str()) {
                let docs = self.state.documents.clone();
                let _ = self
                    .run_doc::<EndAnswer>(&docs.end, documents::IdVars { id: &id })
                    .await;
            }
        }
        let input = documents::StartInput::new(&self.defaults, payload);
        let docs = self.state.documents.clone();
        let started: StartAnswer = match self
            .run_doc(&docs.start, documents::InputVars { input })
            .await
        {
            Ok(answer) => answer,
            Err(refusal) => return self.say(refusal),
        };
        let started = started.start_conversation;
        let id = started.conversation.id;
        // Events after the greeting (which this answer carries).
        let events = follow_conversation(
            &self.state,
            &self.principal,
            &id,
            started.greeting.seq,
            self.out.clone(),
            self.closing.clone(),
        )
        .await;
        self.say(ServerMessage::ConversationStarted {
            conversation_id: id.clone(),
            text: started.greeting.text,
            audio_url: started.greeting.audio_url,
            resumed: started.resumed,
        });
        for notice in started.notices {
            self.tell_once(notice.code, notice.message);
        }
        self.conversation = Some((id, Following::new(self.state.domain.clone(), events)));
    }

    /// `user_message`: the answer is sent from the mutation's result.
    async fn user_message(&self, text: &str) {
        let Some(id) = self.conversation_id() else {
            return self.say(not_started());
        };
        let docs = self.state.documents.clone();
        match self
            .run_doc::<SendAnswer>(&docs.send, documents::SendVars { id, text })
            .await
        {
            Ok(answer) => {
                let reply = answer.send_message;
                self.say(ServerMessage::AiResponse {
                    text: reply.text,
                    audio_url: reply.audio_url,
                    user_text: reply.user_text,
                    audio_status: reply.audio_status,
                });
            }
            Err(refusal) => self.say(refusal),
        }
    }

    /// `end_conversation`: the story first (its id before `conversation_ended`; a refusal
    /// is told, and the conversation ends as asked all the same). `conversation_ended`
    /// and the close come from the subscription.
    async fn end(&self, story: Option<StoryRequest>) {
        let Some(id) = self.conversation_id() else {
            return self.say(not_started());
        };
        let docs = self.state.documents.clone();
        if let Some(story) = story {
            let vars = documents::StoryVars::new(id, story);
            match self.run_doc::<StoryAnswer>(&docs.story, vars).await {
                Ok(answer) => self.say(ServerMessage::StoryIdAssigned {
                    story_id: answer.create_story_from_conversation.id,
                }),
                Err(refusal) => self.say(refusal),
            }
        }
        if let Err(refusal) = self
            .run_doc::<EndAnswer>(&docs.end, documents::IdVars { id })
            .await
        {
            self.say(refusal);
        }
    }

    /// A voice sample frame (the guardian's recording): stored by the voice service;
    /// progress returns on `voiceEvents`. Full storage is told (the guardian acts).
    async fn sample(&mut self, bytes: &[u8]) {
        self.follow_voice().await;
        let user = self.principal.user();
        let voices = self.state.domain.voices();
        match Box::pin(voices.add_voice_sample(&user, bytes, Some(self.principal.origin.0))).await {
            Ok(SampleAdded::Stored {
                count,
                ready,
                clone_due,
            }) => self.after_sample(&user, count, ready, clone_due).await,
            Ok(SampleAdded::Full(message)) => self.say(error(ErrorCode::ValidationError, message)),
            Err(e) => self.say(app_error(e)),
        }
    }

    /// A raw-PCM utterance: the child talking (contract §6). Never a voice sample (a
    /// child's voice is not cloned) and not kept: when `answer` and this server has
    /// speech-to-text, it is transcribed and answered like `user_message`, and dropped
    /// once transcribed (only the text is kept, as a message of the conversation).
    async fn utterance(&mut self, utterance: Utterance, answer: bool) {
        if !utterance.pcm.len().is_multiple_of(2) {
            return self.say(error(
                ErrorCode::InvalidAudio,
                "pcm_s16le 음성은 2바이트 단위여야 해요. 이 말은 듣지 못했어요.",
            ));
        }
        // Without speech-to-text the client heard it once (a notice at the start).
        if !answer
            || self.conversation.is_none()
            || self.state.domain.providers().transcriber.is_none()
        {
            return;
        }
        let AudioConfig { sample_rate } = utterance.config;
        let wav = pcm_wav(sample_rate, &utterance.pcm);
        drop(utterance);
        match Box::pin(self.state.domain.conversations().transcribe(&wav)).await {
            Ok(text) if text.trim().is_empty() => self.say(error(
                ErrorCode::InvalidAudio,
                "알아들을 수 있는 말이 없었어요. 다시 말해 주세요.",
            )),
            // Answered exactly like `user_message`.
            Ok(text) => Box::pin(self.user_message(&text)).await,
            Err(e) => self.say(app_error(e)),
        }
    }
}

/// Starts `request` as a subscription and hands each result to `forward` until it
/// returns `false`. The stream is polled once before returning: the resolvers subscribe
/// to the event bus before their first await, so nothing published after this returns
/// can be missed.
async fn follow<T, F>(schema: &AppSchema, request: Request, mut forward: F) -> JoinHandle<()>
where
    T: DeserializeOwned + Send + 'static,
    F: FnMut(Result<T, ServerMessage>) -> bool + Send + 'static,
{
    let mut stream = crate::graphql::execute_stream(schema, None, request);
    let first = futures_util::poll!(stream.next());
    tokio::spawn(async move {
        let mut pending = match first {
            std::task::Poll::Ready(item) => Some(item),
            std::task::Poll::Pending => None,
        };
        loop {
            let item = match pending.take() {
                Some(item) => item,
                None => stream.next().await,
            };
            let Some(response) = item else { return };
            crate::http::errors::log_graphql(&response.errors);
            let result = match response.errors.first() {
                Some(err) => Err(error(
                    code_of(err).unwrap_or(ErrorCode::ServerError),
                    err.message.clone(),
                )),
                None => async_graphql::from_value::<T>(response.data).map_err(|e| {
                    app_error(AppError::Internal(anyhow::anyhow!(
                        "a subscription event did not read: {e}"
                    )))
                }),
            };
            let failed = result.is_err();
            if !forward(result) || failed {
                return;
            }
        }
    })
}

/// Follows `conversationEvents` for the socket: answers asked for elsewhere become
/// `ai_response` (the socket's own were sent by its turns), the end becomes
/// `conversation_ended` followed by a normal close.
async fn follow_conversation(
    state: &WsState,
    principal: &Principal,
    id: &str,
    after_seq: i32,
    out: Outbox,
    closing: mpsc::UnboundedSender<()>,
) -> JoinHandle<()> {
    let request = principal.request(
        &state.documents.events,
        documents::EventsVars {
            id,
            after: after_seq,
        },
    );
    let id = id.to_string();
    follow(
        &state.schema,
        request,
        move |event: Result<EventsAnswer, _>| {
            match event.map(|e| e.conversation_events) {
                Err(refusal) => {
                    say(&out, refusal);
                    false
                }
                Ok(ConversationEvent::AiResponse {
                    text,
                    audio_url,
                    user_text,
                    audio_status,
                }) => say(
                    &out,
                    ServerMessage::AiResponse {
                        text,
                        audio_url,
                        user_text,
                        audio_status,
                    },
                ),
                Ok(ConversationEvent::ConversationEnded) => {
                    say(
                        &out,
                        ServerMessage::ConversationEnded {
                            conversation_id: id.clone(),
                        },
                    );
                    out.close_after(1000, "conversation ended");
                    let _ = closing.send(());
                    false
                }
                // The socket's own turn already answered with the error.
                Ok(ConversationEvent::ConversationError) => true,
            }
        },
    )
    .await
}

/// Follows the account's `voiceEvents` for the socket, as spec messages.
async fn follow_voice(state: &WsState, principal: &Principal, out: Outbox) -> JoinHandle<()> {
    let request = principal.request(&state.documents.voice_events, documents::NoVars {});
    follow(
        &state.schema,
        request,
        move |event: Result<VoiceAnswer, _>| {
            let message = match event.map(|e| e.voice_events) {
                Err(refusal) => {
                    say(&out, refusal);
                    return false;
                }
                Ok(VoiceEvent::VoiceCloneProgress {
                    sample_count,
                    ready_for_cloning,
                }) => ServerMessage::VoiceCloneProgress {
                    sample_count,
                    ready_for_cloning,
                },
                Ok(VoiceEvent::VoiceCloneSuccess { voice_id, message }) => {
                    ServerMessage::VoiceCloneSuccess { voice_id, message }
                }
                Ok(VoiceEvent::VoiceCloneFailure {
                    code,
                    message,
                    retryable,
                }) => ServerMessage::Error {
                    error_code: code,
                    error_message: message,
                    retry_after: None,
                    retryable: Some(retryable),
                },
            };
            say(&out, message)
        },
    )
    .await
}

/// The task following a conversation's events, counted as an open conversation (for
/// `/metrics` and the ops figures) until dropped, which stops it.
struct Following {
    domain: Domain,
    events: JoinHandle<()>,
}

impl Following {
    fn new(domain: Domain, events: JoinHandle<()>) -> Following {
        domain.metrics().conversation_followed();
        Following { domain, events }
    }

    fn abort(&self) {
        self.events.abort();
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.events.abort();
        self.domain.metrics().conversation_left();
    }
}

/// Counts an open conversation socket for `/metrics` until dropped.
struct SocketGauge(Domain);

impl SocketGauge {
    fn open(domain: Domain) -> SocketGauge {
        domain.metrics().socket_opened();
        SocketGauge(domain)
    }
}

impl Drop for SocketGauge {
    fn drop(&mut self) {
        self.0.metrics().socket_closed();
    }
}
