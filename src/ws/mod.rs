//! The conversation WebSocket `/wss/v1/audio` (spec §7, contract §6), adapted onto the
//! GraphQL schema: spec messages become `startConversation` / `sendMessage` /
//! `endConversation` mutations, and the `conversationEvents` subscription stream comes
//! back as spec JSON. No business rule lives here.

mod protocol;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use async_graphql::{Request, Variables};
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::WsConfig;
use crate::domain::Domain;
use crate::domain::accounts::User;
use crate::domain::voices::pcm_wav;
use crate::error::ErrorCode;
use crate::gateway::Gateway;
use crate::graphql::errors::code_of;
use crate::graphql::{AppSchema, RequestAuth};
use crate::http::ClientAddr;
use crate::http::socket_close::{await_client_close, echo_code};
use crate::server::HeldConnection;
use protocol::{AudioConfig, ClientMessage, StoryRequest, parse_client_message};

/// Binary frames (voice samples) longer than this are refused (the socket stays open).
pub const MAX_SAMPLE_BYTES: usize = 5 * 1024 * 1024;
/// Frames longer than this close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct WsState {
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
    if let Err(e) = state.domain.add_voice_sample(user, &wav).await {
        send(error(e.code(), e.public_message()));
    }
    let Some(conversation) = conversation.filter(|_| answer) else {
        return;
    };
    match state.domain.transcribe(&wav).await {
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
                send(error(e.code(), e.public_message()));
            }
        }
        Err(e) => send(error(e.code(), e.public_message())),
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

fn not_started() -> Outbound {
    let code = ErrorCode::ConversationNotStarted;
    error(code, code.default_message())
}

pub async fn audio(
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

async fn session(
    socket: WebSocket,
    state: WsState,
    token: Option<String>,
    params: HashMap<String, String>,
    client: IpAddr,
) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
    // The one writer: replies, forwarded events and pings all go through it.
    let writer = tokio::spawn(async move {
        while let Some(item) = out_rx.recv().await {
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
    });
    let send = |o: Outbound| {
        let _ = out_tx.send(o);
    };

    // Authentication: a bad or missing token is told, then the socket closes with 4401.
    let user = match state.domain.authenticate(token.as_deref()).await {
        Ok(user) => user,
        Err(_) => {
            send(error(
                ErrorCode::InvalidToken,
                ErrorCode::InvalidToken.default_message(),
            ));
            send(Outbound::Close(4401, "invalid token"));
            drop(out_tx);
            let _ = writer.await;
            await_client_close(&mut stream).await;
            return;
        }
    };
    // One account's open sockets are capped (every door's sockets count together).
    let _place = match state.gateway.open_socket(user.id) {
        Ok(place) => place,
        Err(max) => {
            tracing::warn!(user_id = %user.id, max, "too many open sockets for one account; refused");
            send(error(
                ErrorCode::RateLimitExceeded,
                Gateway::too_many_sockets(max),
            ));
            send(Outbound::Close(1013, "too many open sockets"));
            drop(out_tx);
            let _ = writer.await;
            await_client_close(&mut stream).await;
            return;
        }
    };
    let token = token.unwrap_or_default();
    tracing::info!(user_id = %user.id, "conversation socket opened");
    let _gauge = SocketGauge::open(state.domain.clone());
    let defaults = prefill(&params);
    let limiter = RateLimiter::direct(Quota::per_minute(
        NonZeroU32::new(state.config.messages_per_minute).unwrap_or(NonZeroU32::MIN),
    ));
    let mut conversation: Option<(String, JoinHandle<()>)> = None;
    // The child's interests as the conversation started (a theme for `create_story`).
    let mut interests: Vec<String> = Vec::new();
    let mut speech = Speech::default();
    let voice_forwarder = forward_voice_events(&state.schema, &token, out_tx.clone()).await;
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.reset();
    let idle = tokio::time::sleep(state.config.idle_timeout);
    tokio::pin!(idle);
    // When the access token expires the socket closes (4401), like one opened with it.
    let expiry = tokio::time::sleep(state.domain.token_time_left(&token).unwrap_or_default());
    tokio::pin!(expiry);
    let (closing_tx, mut closing_rx) = mpsc::unbounded_channel::<()>();
    // Whether the client ended the connection (its Close, or the stream's end); if not,
    // the server's own Close waits for the client's answer.
    let mut peer_closed = false;

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = state.gateway.shutdown().requested() => {
                send(Outbound::Close(1001, "server shutting down"));
                break;
            }
            _ = ping.tick() => { send(Outbound::Ping); continue; }
            _ = &mut idle => {
                send(Outbound::Close(1001, "idle timeout"));
                break;
            }
            _ = &mut expiry => {
                send(error(ErrorCode::InvalidToken, "토큰이 만료되었습니다. 새 토큰으로 다시 연결하세요."));
                send(Outbound::Close(4401, "token expired"));
                break;
            }
            Some(()) = closing_rx.recv() => break,
        };
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                // Most often a frame over the size cap. The client may still be writing
                // it: keep the connection a moment so it can read the close frame.
                tracing::debug!(error = %e, "conversation socket read failed");
                send(Outbound::Close(1009, "message too big"));
                finish_utterance(&state, &user, &token, None, &mut speech, false, &out_tx).await;
                drop(out_tx);
                let _ = writer.await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some((_, forwarder)) = conversation.take() {
                    forwarder.abort();
                }
                voice_forwarder.abort();
                return;
            }
            None => {
                peer_closed = true;
                break;
            }
        };
        match &frame {
            // Later frames of one raw-PCM utterance are not messages of their own.
            Message::Binary(_) if speech.under_way() => {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + state.config.idle_timeout);
            }
            Message::Text(_) | Message::Binary(_) => {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + state.config.idle_timeout);
                // This socket's own pace, then the client's and the account's budgets
                // (shared with every other door of this process).
                let over = match limiter.check() {
                    Err(_) => Some(None),
                    Ok(()) => state
                        .gateway
                        .check_message(client, Some(user.id))
                        .err()
                        .map(Some),
                };
                if let Some(retry_after) = over {
                    send(rate_limited(retry_after));
                    continue;
                }
            }
            _ => {}
        }
        match frame {
            Message::Text(text) => {
                // A text frame ends the utterance before it (answered first).
                finish_utterance(
                    &state,
                    &user,
                    &token,
                    conversation.as_ref().map(|(id, _)| id.as_str()),
                    &mut speech,
                    true,
                    &out_tx,
                )
                .await;
                if text.chars().count() > state.config.max_text_chars {
                    send(error(
                        ErrorCode::ValidationError,
                        format!(
                            "메시지는 {}자를 넘을 수 없습니다.",
                            state.config.max_text_chars
                        ),
                    ));
                    continue;
                }
                let message = match parse_client_message(&text) {
                    Ok(m) => m,
                    Err(reason) => {
                        send(error(ErrorCode::ValidationError, reason));
                        continue;
                    }
                };
                match message {
                    ClientMessage::Start(payload, audio) => {
                        speech.config = None;
                        if let Some((id, forwarder)) = conversation.take() {
                            // Starting again ends the current conversation (quietly: this
                            // socket goes on with the new one).
                            forwarder.abort();
                            let _ = execute(&state.schema, &token, END, json!({"id": id})).await;
                        }
                        let input = merge(&defaults, &payload);
                        interests = input["interests"]
                            .as_array()
                            .map(|items| {
                                items
                                    .iter()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let response =
                            execute(&state.schema, &token, START, json!({"input": input})).await;
                        match response {
                            Ok(data) => {
                                let started = &data["startConversation"];
                                let id = started["conversation"]["id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string();
                                // Events after the greeting (which this answer carries).
                                let after = started["greeting"]["seq"].as_i64().unwrap_or(0);
                                let forwarder = forward_events(
                                    &state.schema,
                                    &token,
                                    &id,
                                    after,
                                    out_tx.clone(),
                                    closing_tx.clone(),
                                )
                                .await;
                                send(Outbound::Json(json!({
                                    "type": "conversation_started",
                                    "conversation_id": id,
                                    "text": started["greeting"]["text"],
                                    "audio_url": started["greeting"]["audioUrl"],
                                })));
                                conversation = Some((id, forwarder));
                                speech.config = audio;
                            }
                            Err((code, message)) => send(error(code, message)),
                        }
                    }
                    ClientMessage::UserMessage(text) => {
                        let Some((id, _)) = &conversation else {
                            send(not_started());
                            continue;
                        };
                        // The answer arrives through the subscription as `ai_response`.
                        if let Err((code, message)) =
                            execute(&state.schema, &token, SEND, json!({"id": id, "text": text}))
                                .await
                        {
                            send(error(code, message));
                        }
                    }
                    ClientMessage::End(story) => {
                        let Some((id, _)) = &conversation else {
                            send(not_started());
                            continue;
                        };
                        // The story first (its id before `conversation_ended`); a refusal
                        // is told, and the conversation ends as asked all the same.
                        if let Some(story) = story {
                            let input = story_input(id, story, &interests);
                            match execute(
                                &state.schema,
                                &token,
                                CREATE_STORY,
                                json!({"input": input}),
                            )
                            .await
                            {
                                Ok(data) => send(Outbound::Json(json!({
                                    "type": "story_id_assigned",
                                    "story_id": data["createStory"]["id"],
                                }))),
                                Err((code, message)) => send(error(code, message)),
                            }
                        }
                        // `conversation_ended` and the close come from the subscription.
                        if let Err((code, message)) =
                            execute(&state.schema, &token, END, json!({"id": id})).await
                        {
                            send(error(code, message));
                        }
                    }
                }
            }
            Message::Binary(bytes) if speech.config.is_some() => {
                if let Some(refusal) = speech.push(&bytes) {
                    send(refusal);
                }
            }
            Message::Binary(bytes) => {
                if bytes.len() > MAX_SAMPLE_BYTES {
                    send(error(
                        ErrorCode::PayloadTooLarge,
                        "음성 샘플은 5MB를 넘을 수 없습니다.",
                    ));
                    continue;
                }
                // Straight to the voice service; progress returns on `voiceEvents`.
                if let Err(e) = state.domain.add_voice_sample(&user, &bytes).await {
                    send(error(e.code(), e.public_message()));
                }
            }
            Message::Close(close) => {
                // Answered in kind (the writer's Close flushes tungstenite's echo).
                send(Outbound::Close(echo_code(close.as_ref()), ""));
                peer_closed = true;
                break;
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    // Speech cut off by the end of the socket is still kept as a voice sample.
    finish_utterance(&state, &user, &token, None, &mut speech, false, &out_tx).await;
    if let Some((_, forwarder)) = conversation.take() {
        forwarder.abort();
    }
    voice_forwarder.abort();
    drop(out_tx);
    let _ = writer.await;
    if !peer_closed {
        await_client_close(&mut stream).await;
    }
    tracing::info!(user_id = %user.id, "conversation socket closed");
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
        match event["__typename"].as_str() {
            Some("AiResponse") => Forward::Send(
                vec![Outbound::Json(json!({
                    "type": "ai_response",
                    "text": event["text"],
                    "audio_url": event["audioUrl"],
                    "user_text": event["userText"],
                }))],
                false,
            ),
            Some("ConversationEnded") => Forward::Send(
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
    ... on VoiceCloneFailure { code message } } }";

/// Follows the account's `voiceEvents` for the socket, as spec messages.
async fn forward_voice_events(
    schema: &AppSchema,
    token: &str,
    out: mpsc::UnboundedSender<Outbound>,
) -> JoinHandle<()> {
    let request = Request::new(VOICE_EVENTS).data(RequestAuth::new(Some(token.to_string())));
    forward(schema, request, out, None, |data| {
        let event = &data["voiceEvents"];
        let message = match event["__typename"].as_str() {
            Some("VoiceCloneProgress") => json!({
                "type": "voice_clone_progress",
                "sample_count": event["sampleCount"],
                "ready_for_cloning": event["readyForCloning"],
            }),
            Some("VoiceCloneSuccess") => json!({
                "type": "voice_clone_success",
                "voice_id": event["voiceId"],
                "message": event["message"],
            }),
            Some("VoiceCloneFailure") => json!({
                "type": "error",
                "error_code": event["code"],
                "error_message": event["message"],
            }),
            _ => return Forward::Skip,
        };
        Forward::Send(vec![Outbound::Json(message)], false)
    })
    .await
}
