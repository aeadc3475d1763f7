//! The conversation WebSocket `/wss/v1/audio` (spec §7, contract §6), adapted onto the
//! GraphQL schema: spec messages become `startConversation` / `sendMessage` /
//! `endConversation` mutations, and the `conversationEvents` subscription stream comes
//! back as spec JSON. No business rule lives here.

mod protocol;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use async_graphql::{OutputType, Request, Variables};
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::WsConfig;
use crate::domain::Domain;
use crate::domain::accounts::User;
use crate::domain::voices::pcm_wav;
use crate::error::{AppError, ErrorCode};
use crate::gateway::Gateway;
use crate::graphql::conversations::{
    AiResponse, ConversationEnded, VoiceCloneFailure, VoiceCloneProgress, VoiceCloneSuccess,
};
use crate::graphql::errors::code_of;
use crate::graphql::{AppSchema, RequestAuth};
use crate::http::ClientAddr;
use crate::http::socket_close::{await_client_close, echo_code};
use crate::server::HeldConnection;
use crate::store::types::UserId;
use crate::tally::Ticket;
use protocol::{AudioConfig, ClientMessage, StoryRequest, parse_client_message};

/// Binary frames (voice samples) longer than this are refused (the socket stays open).
pub(crate) const MAX_SAMPLE_BYTES: usize = 5 * 1024 * 1024;
/// Frames longer than this close the socket with 1009.
pub(crate) const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct WsState {
    pub schema: AppSchema,
    pub domain: Domain,
    pub config: WsConfig,
    /// Also the shutdown signal: on shutdown every open conversation closes with `1001`.
    pub gateway: Gateway,
}

const START: &str = "mutation($input: StartConversationInput) { startConversation(input: $input) { \
    conversation { id } greeting { seq text audioUrl } } }";
const SEND: &str =
    "mutation($id: ID!, $text: String!) { sendMessage(conversationId: $id, text: $text) { seq } }";
const END: &str = "mutation($id: ID!) { endConversation(conversationId: $id) { id } }";
const CREATE_STORY: &str =
    "mutation($input: CreateStoryInput!) { createStory(input: $input) { id } }";

/// The theme of a story asked for at the end of a conversation without one.
const DEFAULT_THEME: &str = "오늘 나눈 이야기";

/// `createStory`'s input for `end_conversation`'s `create_story`: the conversation's own
/// story; without a theme, the child's interests (or "today's talk") are the theme.
fn story_input(conversation: &str, story: StoryRequest, interests: &[String]) -> Value {
    let theme = story.theme.unwrap_or_else(|| {
        // As many interests as fit a theme (200 characters).
        let mut theme = String::new();
        for interest in interests {
            let next = if theme.is_empty() {
                interest.clone()
            } else {
                format!("{theme}, {interest}")
            };
            if next.chars().count() > 200 {
                break;
            }
            theme = next;
        }
        if theme.is_empty() {
            DEFAULT_THEME.to_string()
        } else {
            theme
        }
    });
    let mut preferences = json!({"theme": theme});
    if let Some(characters) = story.characters {
        preferences["characters"] = json!(characters);
    }
    if let Some(length) = story.length {
        preferences["length"] = json!(length);
    }
    json!({"userPreferences": preferences, "conversationId": conversation})
}

/// Raw-PCM speech (`audio_config`) of the current conversation, gathered from binary
/// frames until the next text frame: one utterance.
#[derive(Default)]
struct Speech {
    config: Option<AudioConfig>,
    pcm: Vec<u8>,
    /// This utterance grew over the cap: the rest of it is dropped (the client was told).
    refused: bool,
    /// The client was told that this server has no speech-to-text (once per socket).
    told_no_stt: bool,
}

impl Speech {
    /// Whether an utterance is under way (its later frames are not separate messages).
    fn under_way(&self) -> bool {
        self.config.is_some() && (!self.pcm.is_empty() || self.refused)
    }

    /// Adds one binary frame; the utterance is refused once it would exceed the cap.
    fn push(&mut self, bytes: &[u8]) -> Option<Outbound> {
        if self.refused {
            return None;
        }
        if 44 + self.pcm.len() + bytes.len() > MAX_SAMPLE_BYTES {
            self.pcm = Vec::new();
            self.refused = true;
            return Some(error(
                ErrorCode::PayloadTooLarge,
                "한 번에 말한 음성은 5MB(16 kHz에서 약 2분 40초)를 넘을 수 없어요. 이 말은 저장하지 않았어요.",
            ));
        }
        self.pcm.extend_from_slice(bytes);
        None
    }

    /// The finished utterance (if any) and its sample rate; the next one starts empty.
    fn take(&mut self) -> Option<(AudioConfig, Vec<u8>)> {
        self.refused = false;
        let pcm = std::mem::take(&mut self.pcm);
        match self.config {
            Some(config) if !pcm.is_empty() => Some((config, pcm)),
            _ => None,
        }
    }
}

/// Ends an utterance: stored as a WAV voice sample (it counts toward cloning), then, when
/// `answer` and the server has speech-to-text, transcribed and sent like `user_message`.
async fn finish_utterance(
    state: &WsState,
    user: &User,
    token: &str,
    conversation: Option<&str>,
    speech: &mut Speech,
    answer: bool,
    out: &mpsc::UnboundedSender<Outbound>,
) {
    let send = |o: Outbound| {
        let _ = out.send(o);
    };
    let Some((config, pcm)) = speech.take() else {
        return;
    };
    if pcm.len() % 2 != 0 {
        send(error(
            ErrorCode::InvalidAudio,
            "pcm_s16le 음성은 2바이트 단위여야 해요. 이 말은 저장하지 않았어요.",
        ));
        return;
    }
    let wav = pcm_wav(config.sample_rate, &pcm);
    drop(pcm);
    if let Err(e) = state.domain.voices().add_voice_sample(user, &wav).await {
        send(app_error(e));
    }
    let Some(conversation) = conversation.filter(|_| answer) else {
        return;
    };
    match state.domain.conversations().transcribe(&wav).await {
        Ok(text) if text.is_empty() => send(error(
            ErrorCode::InvalidAudio,
            "알아들을 수 있는 말이 없었어요. 다시 말해 주세요.",
        )),
        // Answered exactly like `user_message`: `ai_response` comes on the subscription.
        Ok(text) => {
            if let Err((code, message)) = execute(
                &state.schema,
                token,
                SEND,
                json!({"id": conversation, "text": text}),
            )
            .await
            {
                send(error(code, message));
            }
        }
        // Without speech-to-text the client is told once, not after every utterance.
        Err(e) if state.domain.providers().transcriber.is_none() => {
            if !speech.told_no_stt {
                speech.told_no_stt = true;
                send(app_error(e));
            }
        }
        Err(e) => send(app_error(e)),
    }
}

/// What the session's writer sends.
enum Outbound {
    Json(Value),
    Ping,
    Close(u16, &'static str),
}

fn error(code: ErrorCode, message: impl Into<String>) -> Outbound {
    Outbound::Json(
        json!({"type": "error", "error_code": code.as_str(), "error_message": message.into()}),
    )
}

/// `RATE_LIMIT_EXCEEDED`, with `retry_after` (seconds) when the gateway knows it.
fn rate_limited(retry_after: Option<u64>) -> Outbound {
    let mut message = json!({
        "type": "error",
        "error_code": ErrorCode::RateLimitExceeded.as_str(),
        "error_message": "메시지를 너무 빨리 보내고 있어요. 잠시 후 다시 보내 주세요.",
    });
    if let Some(secs) = retry_after {
        message["retry_after"] = json!(secs);
    }
    Outbound::Json(message)
}

/// A domain error as the socket answers it (an internal cause is logged).
fn app_error(e: AppError) -> Outbound {
    let public = crate::http::errors::answered(e);
    error(public.code, public.message)
}

fn not_started() -> Outbound {
    let code = ErrorCode::ConversationNotStarted;
    error(code, code.default_message())
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
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // Mostly small JSON: a small read buffer keeps thousands of idle sockets cheap
        // (large voice samples still arrive whole; the buffer grows as needed).
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| async move {
            // The connection stays counted for its client while the socket is open, and
            // the shutdown waits for the socket.
            let _held = held;
            let _running = state.gateway.shutdown().track();
            session(socket, state, token, params, client).await
        })
}

/// The child's details from the query string (`start_conversation` overrides them).
fn prefill(params: &HashMap<String, String>) -> Value {
    let mut payload = serde_json::Map::new();
    if let Some(name) = params.get("child_name").filter(|n| !n.is_empty()) {
        payload.insert("child_name".into(), json!(name));
    }
    if let Some(age) = params.get("age").and_then(|a| a.parse::<i64>().ok()) {
        payload.insert("age".into(), json!(age));
    }
    if let Some(interests) = params.get("interests") {
        let list: Vec<&str> = interests
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        payload.insert("interests".into(), json!(list));
    }
    Value::Object(payload)
}

/// The socket's one writer: replies, forwarded events and pings all go through it; a
/// Close ends it.
fn spawn_writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: mpsc::UnboundedReceiver<Outbound>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = out.recv().await {
            let result = match item {
                Outbound::Json(v) => sink.send(Message::Text(v.to_string().into())).await,
                Outbound::Ping => sink.send(Message::Ping(Vec::new().into())).await,
                Outbound::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    // After the client's Close the send above is refused (the echo is
                    // already queued); closing the sink flushes it.
                    let _ = sink.close().await;
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
    })
}

/// Who the socket is for, and its place among the account's open sockets; or what the
/// client is told before the socket closes: a bad or missing token (4401), or an
/// account with too many open sockets (every door's sockets count together; 1013).
async fn admit(
    state: &WsState,
    token: Option<&str>,
) -> Result<(User, Ticket<UserId>), [Outbound; 2]> {
    let Ok(user) = state.domain.accounts().authenticate(token).await else {
        return Err([
            error(
                ErrorCode::InvalidToken,
                ErrorCode::InvalidToken.default_message(),
            ),
            Outbound::Close(4401, "invalid token"),
        ]);
    };
    match state.gateway.open_socket(user.id) {
        Ok(place) => Ok((user, place)),
        Err(max) => {
            tracing::warn!(user_id = %user.id, max, "too many open sockets for one account; refused");
            Err([
                error(ErrorCode::RateLimitExceeded, Gateway::too_many_sockets(max)),
                Outbound::Close(1013, "too many open sockets"),
            ])
        }
    }
}

async fn session(
    socket: WebSocket,
    state: WsState,
    token: Option<String>,
    params: HashMap<String, String>,
    client: IpAddr,
) {
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outbound>();
    let writer = spawn_writer(sink, out_rx);
    let (user, _place) = match admit(&state, token.as_deref()).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            for message in refusal {
                let _ = out_tx.send(message);
            }
            drop(out_tx);
            let _ = writer.await;
            await_client_close(&mut stream).await;
            return;
        }
    };
    let token = token.unwrap_or_default();
    tracing::info!(user_id = %user.id, "conversation socket opened");
    let _gauge = SocketGauge::open(state.domain.clone());
    let voice_forwarder = forward_voice_events(&state.schema, &token, out_tx.clone()).await;
    let (closing_tx, closing_rx) = mpsc::unbounded_channel::<()>();
    let mut session = Session {
        defaults: prefill(&params),
        state,
        user,
        token,
        out: out_tx,
        closing: closing_tx,
        conversation: None,
        interests: Vec::new(),
        speech: Speech::default(),
    };
    let ending = serve(&mut session, &mut stream, client, closing_rx).await;
    let user_id = session.user.id;
    session.close().await;
    voice_forwarder.abort();
    let _ = writer.await;
    match ending {
        // The client may still be writing the big frame: keep the connection a moment
        // so it can read the close frame.
        Ending::TooBig => tokio::time::sleep(Duration::from_millis(500)).await,
        // The server's own Close waits for the client's answer.
        Ending::ByServer => await_client_close(&mut stream).await,
        Ending::ByClient => {}
    }
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

/// Reads the client's frames until the connection ends, keeping it alive (pings), timing
/// it out (idle, token expiry) and holding it to its message budgets.
async fn serve(
    session: &mut Session,
    stream: &mut SplitStream<WebSocket>,
    client: IpAddr,
    mut closing: mpsc::UnboundedReceiver<()>,
) -> Ending {
    let config = session.state.config.clone();
    let limiter = RateLimiter::direct(Quota::per_minute(
        NonZeroU32::new(config.messages_per_minute).unwrap_or(NonZeroU32::MIN),
    ));
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.reset();
    let idle = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle);
    // When the access token expires the socket closes (4401), like one opened with it.
    let left = session.state.domain.token_time_left(&session.token);
    let expiry = tokio::time::sleep(left.unwrap_or_default());
    tokio::pin!(expiry);
    // The account deleted (on any process): the socket closes at once (4401).
    let mut events = session.state.domain.events().subscribe();
    let me = session.user.id;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            event = events.recv() => match event {
                Ok(crate::events::Event::AccountGone { user }) if user == me => {
                    session.send(error(ErrorCode::InvalidToken, "계정이 삭제되었습니다."));
                    session.send(Outbound::Close(4401, "account deleted"));
                    return Ending::ByServer;
                }
                // Events were missed: the deletion may have been among them.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let gone = matches!(
                        session.state.domain.accounts().find_user(me).await,
                        Ok(None)
                    );
                    if gone {
                        session.send(error(ErrorCode::InvalidToken, "계정이 삭제되었습니다."));
                        session.send(Outbound::Close(4401, "account deleted"));
                        return Ending::ByServer;
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    events = session.state.domain.events().subscribe();
                    continue;
                }
                _ => continue,
            },
            () = session.state.gateway.shutdown().requested() => {
                session.send(Outbound::Close(1001, "server shutting down"));
                return Ending::ByServer;
            }
            _ = ping.tick() => { session.send(Outbound::Ping); continue; }
            _ = &mut idle => {
                session.send(Outbound::Close(1001, "idle timeout"));
                return Ending::ByServer;
            }
            _ = &mut expiry => {
                session.send(error(ErrorCode::InvalidToken, "토큰이 만료되었습니다. 새 토큰으로 다시 연결하세요."));
                session.send(Outbound::Close(4401, "token expired"));
                return Ending::ByServer;
            }
            Some(()) = closing.recv() => return Ending::ByServer,
        };
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                // Most often a frame over the size cap.
                tracing::debug!(error = %e, "conversation socket read failed");
                session.send(Outbound::Close(1009, "message too big"));
                return Ending::TooBig;
            }
            None => return Ending::ByClient,
        };
        if matches!(frame, Message::Text(_) | Message::Binary(_)) {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + config.idle_timeout);
        }
        if let Some(retry_after) = session.over_budget(&frame, &limiter, client) {
            session.send(rate_limited(retry_after));
            continue;
        }
        match frame {
            Message::Text(text) => session.on_text(&text).await,
            Message::Binary(bytes) => session.on_binary(&bytes).await,
            Message::Close(close) => {
                // Answered in kind (the writer's Close flushes tungstenite's echo).
                session.send(Outbound::Close(echo_code(close.as_ref()), ""));
                return Ending::ByClient;
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// One authenticated conversation socket: what the client's messages act on.
struct Session {
    state: WsState,
    user: User,
    token: String,
    /// To the socket's one writer.
    out: mpsc::UnboundedSender<Outbound>,
    /// Told by the events' forwarder when the conversation has ended (then the socket
    /// closes).
    closing: mpsc::UnboundedSender<()>,
    /// The child's details from the query string (`start_conversation` overrides them).
    defaults: Value,
    /// The conversation under way, and the task forwarding its events.
    conversation: Option<(String, JoinHandle<()>)>,
    /// The child's interests as the conversation started (a theme for `create_story`).
    interests: Vec<String>,
    speech: Speech,
}

impl Session {
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
                .check_message(client, Some(self.user.id))
                .err()
                .map(Some),
        }
    }

    fn send(&self, message: Outbound) {
        let _ = self.out.send(message);
    }

    fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_ref().map(|(id, _)| id.as_str())
    }

    /// A text frame: first the utterance before it is finished (answered first), then
    /// the spec message it carries.
    async fn on_text(&mut self, text: &str) {
        let conversation = self.conversation.as_ref().map(|(id, _)| id.as_str());
        finish_utterance(
            &self.state,
            &self.user,
            &self.token,
            conversation,
            &mut self.speech,
            true,
            &self.out,
        )
        .await;
        let max = self.state.config.max_text_chars;
        if text.chars().count() > max {
            self.send(error(
                ErrorCode::ValidationError,
                format!("메시지는 {max}자를 넘을 수 없습니다."),
            ));
            return;
        }
        match parse_client_message(text) {
            Ok(ClientMessage::Start(payload, audio)) => self.start(&payload, audio).await,
            Ok(ClientMessage::UserMessage(text)) => self.user_message(&text).await,
            Ok(ClientMessage::End(story)) => self.end(story).await,
            Ok(ClientMessage::EndRefused(reason)) => {
                self.send(error(ErrorCode::ValidationError, reason));
                self.end(None).await;
            }
            Err(reason) => self.send(error(ErrorCode::ValidationError, reason)),
        }
    }

    /// `start_conversation`: ends the current one (quietly: this socket goes on with the
    /// new one), starts a new one and follows its events.
    async fn start(&mut self, payload: &Value, audio: Option<AudioConfig>) {
        self.speech.config = None;
        if let Some((id, forwarder)) = self.conversation.take() {
            forwarder.abort();
            let _ = execute(&self.state.schema, &self.token, END, json!({"id": id})).await;
        }
        let input = merge(&self.defaults, payload);
        self.interests = input["interests"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let data = match execute(
            &self.state.schema,
            &self.token,
            START,
            json!({"input": input}),
        )
        .await
        {
            Ok(data) => data,
            Err((code, message)) => return self.send(error(code, message)),
        };
        let started = &data["startConversation"];
        let id = started["conversation"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Events after the greeting (which this answer carries).
        let after = started["greeting"]["seq"].as_i64().unwrap_or(0);
        let forwarder = forward_events(
            &self.state.schema,
            &self.token,
            &id,
            after,
            self.out.clone(),
            self.closing.clone(),
        )
        .await;
        self.send(Outbound::Json(json!({
            "type": "conversation_started",
            "conversation_id": id,
            "text": started["greeting"]["text"],
            "audio_url": started["greeting"]["audioUrl"],
        })));
        self.conversation = Some((id, forwarder));
        self.speech.config = audio;
    }

    /// `user_message`: the answer arrives through the subscription as `ai_response`.
    async fn user_message(&self, text: &str) {
        let Some(id) = self.conversation_id() else {
            return self.send(not_started());
        };
        let sent = execute(
            &self.state.schema,
            &self.token,
            SEND,
            json!({"id": id, "text": text}),
        )
        .await;
        if let Err((code, message)) = sent {
            self.send(error(code, message));
        }
    }

    /// `end_conversation`: the story first (its id before `conversation_ended`; a refusal
    /// is told, and the conversation ends as asked all the same). `conversation_ended`
    /// and the close come from the subscription.
    async fn end(&self, story: Option<StoryRequest>) {
        let Some(id) = self.conversation_id() else {
            return self.send(not_started());
        };
        if let Some(story) = story {
            let input = story_input(id, story, &self.interests);
            match execute(
                &self.state.schema,
                &self.token,
                CREATE_STORY,
                json!({"input": input}),
            )
            .await
            {
                Ok(data) => self.send(Outbound::Json(json!({
                    "type": "story_id_assigned",
                    "story_id": data["createStory"]["id"],
                }))),
                Err((code, message)) => self.send(error(code, message)),
            }
        }
        if let Err((code, message)) =
            execute(&self.state.schema, &self.token, END, json!({"id": id})).await
        {
            self.send(error(code, message));
        }
    }

    /// A binary frame: raw PCM of the utterance under way, or a voice sample (straight to
    /// the voice service; progress returns on `voiceEvents`).
    async fn on_binary(&mut self, bytes: &[u8]) {
        if self.speech.config.is_some() {
            if let Some(refusal) = self.speech.push(bytes) {
                self.send(refusal);
            }
            return;
        }
        if bytes.len() > MAX_SAMPLE_BYTES {
            return self.send(error(
                ErrorCode::PayloadTooLarge,
                "음성 샘플은 5MB를 넘을 수 없습니다.",
            ));
        }
        if let Err(e) = self
            .state
            .domain
            .voices()
            .add_voice_sample(&self.user, bytes)
            .await
        {
            self.send(app_error(e));
        }
    }

    /// The socket ends: speech cut off by it is still kept as a voice sample; the
    /// conversation's forwarder stops (the conversation itself stays, to be resumed).
    async fn close(mut self) {
        finish_utterance(
            &self.state,
            &self.user,
            &self.token,
            None,
            &mut self.speech,
            false,
            &self.out,
        )
        .await;
        if let Some((_, forwarder)) = self.conversation.take() {
            forwarder.abort();
        }
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

/// `payload` over `defaults`, as GraphQL input (camelCase).
fn merge(defaults: &Value, payload: &Value) -> Value {
    let mut merged = defaults.as_object().cloned().unwrap_or_default();
    if let Some(p) = payload.as_object() {
        for (k, v) in p {
            merged.insert(k.clone(), v.clone());
        }
    }
    let mut input = serde_json::Map::new();
    for (k, v) in merged {
        let key = match k.as_str() {
            "child_name" => "childName",
            other => other,
        };
        input.insert(key.to_string(), v);
    }
    Value::Object(input)
}

/// Runs one GraphQL operation for this socket's account.
async fn execute(
    schema: &AppSchema,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, (ErrorCode, String)> {
    let request = Request::new(query)
        .variables(Variables::from_json(variables))
        .data(RequestAuth::new(Some(token.to_string())));
    // The socket's own documents (its text limits are checked where messages arrive).
    let response = crate::graphql::execute(schema, None, request).await;
    crate::http::errors::log_graphql(&response.errors);
    if let Some(err) = response.errors.first() {
        let code = code_of(err).unwrap_or(ErrorCode::ServerError);
        return Err((code, err.message.clone()));
    }
    response
        .data
        .into_json()
        .map_err(|e| (ErrorCode::ServerError, e.to_string()))
}

/// Starts `request` as a subscription for the socket and forwards what `map` makes of
/// each result until the stream or `map` ends it. The stream is polled once before
/// returning: the resolvers subscribe to the event bus before their first await, so
/// nothing published after this returns can be missed. When `map` ends the forwarding,
/// `done` (if any) is told after the last message was queued.
async fn forward<F>(
    schema: &AppSchema,
    request: Request,
    out: mpsc::UnboundedSender<Outbound>,
    done: Option<mpsc::UnboundedSender<()>>,
    mut map: F,
) -> JoinHandle<()>
where
    F: FnMut(&Value) -> Forward + Send + 'static,
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
            if let Some(err) = response.errors.first() {
                let code = code_of(err).unwrap_or(ErrorCode::ServerError);
                let _ = out.send(error(code, err.message.clone()));
                return;
            }
            let Ok(data) = response.data.into_json() else {
                continue;
            };
            match map(&data) {
                Forward::Skip => {}
                Forward::Send(messages, last) => {
                    for m in messages {
                        if out.send(m).is_err() {
                            return;
                        }
                    }
                    if last {
                        if let Some(done) = &done {
                            let _ = done.send(());
                        }
                        return;
                    }
                }
            }
        }
    })
}

/// What to do with one subscription result.
enum Forward {
    Skip,
    /// Send these; `true` ends the forwarding.
    Send(Vec<Outbound>, bool),
}

const EVENTS: &str = "subscription($id: ID!, $after: Int) { conversationEvents(conversationId: $id, afterSeq: $after) { \
    __typename \
    ... on AiResponse { text audioUrl userText } \
    ... on ConversationEnded { conversationId } } }";

/// Follows `conversationEvents` for the socket: answers become `ai_response`, the end
/// becomes `conversation_ended` followed by a normal close.
async fn forward_events(
    schema: &AppSchema,
    token: &str,
    id: &str,
    after_seq: i64,
    out: mpsc::UnboundedSender<Outbound>,
    closing: mpsc::UnboundedSender<()>,
) -> JoinHandle<()> {
    let request = Request::new(EVENTS)
        .variables(Variables::from_json(json!({"id": id, "after": after_seq})))
        .data(RequestAuth::new(Some(token.to_string())));
    let id = id.to_string();
    forward(schema, request, out, Some(closing), move |data| {
        let event = &data["conversationEvents"];
        let kind = event["__typename"].as_str().unwrap_or_default();
        // The union members' names come from their Rust types, so they cannot drift.
        match kind {
            _ if kind == AiResponse::type_name() => Forward::Send(
                vec![Outbound::Json(json!({
                    "type": "ai_response",
                    "text": event["text"],
                    "audio_url": event["audioUrl"],
                    "user_text": event["userText"],
                }))],
                false,
            ),
            _ if kind == ConversationEnded::type_name() => Forward::Send(
                vec![
                    Outbound::Json(json!({"type": "conversation_ended", "conversation_id": id})),
                    Outbound::Close(1000, "conversation ended"),
                ],
                true,
            ),
            _ => Forward::Skip,
        }
    })
    .await
}

const VOICE_EVENTS: &str = "subscription { voiceEvents { __typename \
    ... on VoiceCloneProgress { sampleCount readyForCloning } \
    ... on VoiceCloneSuccess { voiceId message } \
    ... on VoiceCloneFailure { code message retryable } } }";

/// Follows the account's `voiceEvents` for the socket, as spec messages.
async fn forward_voice_events(
    schema: &AppSchema,
    token: &str,
    out: mpsc::UnboundedSender<Outbound>,
) -> JoinHandle<()> {
    let request = Request::new(VOICE_EVENTS).data(RequestAuth::new(Some(token.to_string())));
    forward(schema, request, out, None, |data| {
        let event = &data["voiceEvents"];
        let kind = event["__typename"].as_str().unwrap_or_default();
        let message = match kind {
            _ if kind == VoiceCloneProgress::type_name() => json!({
                "type": "voice_clone_progress",
                "sample_count": event["sampleCount"],
                "ready_for_cloning": event["readyForCloning"],
            }),
            _ if kind == VoiceCloneSuccess::type_name() => json!({
                "type": "voice_clone_success",
                "voice_id": event["voiceId"],
                "message": event["message"],
            }),
            _ if kind == VoiceCloneFailure::type_name() => json!({
                "type": "error",
                "error_code": event["code"],
                "error_message": event["message"],
                "retryable": event["retryable"],
            }),
            _ => return Forward::Skip,
        };
        Forward::Send(vec![Outbound::Json(message)], false)
    })
    .await
}
