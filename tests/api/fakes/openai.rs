//! A strict stand-in for OpenAI's API: every request is checked against the official
//! request schema (unknown top-level parameters refused, as OpenAI does) and the rules
//! the API description states in prose; a request OpenAI would refuse gets OpenAI's own
//! `400 {"error": {...}}`. Answers are checked against the official response schemas
//! before they are sent. Tests wrap their answers in [`strict`]; [`Natural`] answers as
//! OpenAI would to a valid request.

use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{multipart, schema};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("a fixture is JSON")
}

static CHAT: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.chat-completions.json"
    ))
});
static IMAGES: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.images-generations.json"
    ))
});
static SPEECH: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.audio-speech.json"
    ))
});
static MODERATIONS: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.moderations.json"
    ))
});
static TRANSCRIPTIONS: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.audio-transcriptions.json"
    ))
});
static ERROR: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/openai.error-response.json"
    ))
});

/// A real 2 × 1 PNG (a red and a blue pixel), so the label can be written into it.
pub const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x02\x00\x00\x00\x01\x08\x02\x00\x00\x00\x7b\x40\xe8\xdd\x00\x00\x00\x0d\x49\x44\x41\x54\x78\x9c\x63\xf8\xcf\x00\x04\xff\x01\x07\x00\x01\xff\xe2\x23\x9e\x59\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";
/// MPEG audio frames (a frame header, then bytes), without an ID3 tag.
pub const MP3: &[u8] = b"\xff\xf3\x84\xc4fake-mp3-frames";

/// The endpoints the service calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Chat,
    Images,
    Speech,
    Moderations,
    Transcriptions,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Images => "/v1/images/generations",
            Api::Speech => "/v1/audio/speech",
            Api::Moderations => "/v1/moderations",
            Api::Transcriptions => "/v1/audio/transcriptions",
        }
    }

    fn description(self) -> &'static Value {
        match self {
            Api::Chat => &CHAT,
            Api::Images => &IMAGES,
            Api::Speech => &SPEECH,
            Api::Moderations => &MODERATIONS,
            Api::Transcriptions => &TRANSCRIPTIONS,
        }
    }

    fn request_schema(self) -> &'static Value {
        let request = &self.description()["request"];
        match self {
            Api::Transcriptions => &request["multipart/form-data"],
            _ => &request["application/json"],
        }
    }
}

/// OpenAI's error answer, checked against the official error schema.
pub fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> ResponseTemplate {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    schema::check(&ERROR, &body)
        .unwrap_or_else(|e| panic!("the fake's error answer breaks the schema: {e}"));
    ResponseTemplate::new(status).set_body_json(body)
}

fn invalid(code: &str, param: Option<&str>, message: &str) -> ResponseTemplate {
    error(400, "invalid_request_error", Some(code), param, message)
}

/// A JSON answer of `api`, checked against its official 200 schema.
fn answer(api: Api, body: Value) -> ResponseTemplate {
    let schema = &api.description()["responses"]["200"]["application/json"];
    assert!(schema.is_object(), "no 200 schema for {api:?}");
    schema::check(schema, &body)
        .unwrap_or_else(|e| panic!("the fake's {api:?} answer breaks the schema: {e}\n{body}"));
    ResponseTemplate::new(200).set_body_json(body)
}

/// A chat completion whose message is `content`.
pub fn chat_answer(content: &str) -> ResponseTemplate {
    chat_message(json!(content), Value::Null, "stop")
}

/// One streamed chunk of a chat completion, checked against the official chunk schema.
fn chunk(choices: Value, usage: Option<Value>) -> String {
    let mut body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_764_000_000,
        "model": "gpt-5.4-mini", "choices": choices,
    });
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    let schema = &CHAT["responses"]["200"]["text/event-stream"];
    assert!(schema.is_object(), "no stream schema for chat");
    schema::check(schema, &body)
        .unwrap_or_else(|e| panic!("the fake's chat chunk breaks the schema: {e}\n{body}"));
    format!("data: {body}\n\n")
}

/// The server-sent events of a streamed chat completion whose message is `content`, as
/// OpenAI sends them: the role first, then the content in pieces of `cut` characters,
/// then the finish reason (and the usage chunk when `usage`), then `[DONE]`.
pub fn stream_events(content: &str, cut: usize, finish: &str, usage: bool) -> Vec<String> {
    let usage_field = usage.then_some(Value::Null);
    let mut events = vec![chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
        usage_field.clone(),
    )];
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(cut.max(1)) {
        let piece: String = piece.iter().collect();
        events.push(chunk(
            json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]),
            usage_field.clone(),
        ));
    }
    events.push(chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
        usage_field,
    ));
    if usage {
        events.push(chunk(
            json!([]),
            Some(json!({"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20})),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

/// A `text/event-stream` answer of `events`.
pub fn sse(events: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(events.concat(), "text/event-stream; charset=utf-8")
}

/// The model's message `content`, answered as OpenAI answers the request: streamed
/// (server-sent events) when it asks for `stream: true`, one JSON completion otherwise.
pub struct ChatAnswer {
    content: String,
    refusal: Option<String>,
    finish: &'static str,
}

/// `content` as the model's whole answer, streamed or not as asked.
pub fn story_answer(content: &str) -> ChatAnswer {
    ChatAnswer {
        content: content.to_string(),
        refusal: None,
        finish: "stop",
    }
}

impl ChatAnswer {
    /// The answer ends with this finish reason (`length`, `content_filter`).
    pub fn finish(mut self, reason: &'static str) -> Self {
        self.finish = reason;
        self
    }
}

impl Respond for ChatAnswer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let usage = body["stream_options"]["include_usage"] == true;
        match (body["stream"] == true, &self.refusal) {
            (true, None) => sse(&stream_events(&self.content, 7, self.finish, usage)),
            (true, Some(refusal)) => {
                let usage_field = usage.then_some(Value::Null);
                let events = [
                    chunk(
                        json!([{"index": 0, "delta": {"role": "assistant", "content": null, "refusal": ""}, "logprobs": null, "finish_reason": null}]),
                        usage_field.clone(),
                    ),
                    chunk(
                        json!([{"index": 0, "delta": {"refusal": refusal}, "logprobs": null, "finish_reason": null}]),
                        usage_field.clone(),
                    ),
                    chunk(
                        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": self.finish}]),
                        usage_field,
                    ),
                    "data: [DONE]\n\n".to_string(),
                ];
                sse(&events)
            }
            (false, None) => chat_message(json!(self.content), Value::Null, self.finish),
            (false, Some(refusal)) => chat_message(Value::Null, json!(refusal), self.finish),
        }
    }
}

/// A chat completion in which the model refuses (`message.refusal`; streamed, the
/// refusal comes in `delta.refusal`).
pub fn refusal_answer(refusal: &str) -> ChatAnswer {
    ChatAnswer {
        content: String::new(),
        refusal: Some(refusal.to_string()),
        finish: "stop",
    }
}

fn chat_message(content: Value, refusal: Value, finish: &str) -> ResponseTemplate {
    answer(
        Api::Chat,
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_764_000_000,
            "model": "gpt-5.4-mini",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": null,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        }),
    )
}

/// An images answer with the picture in base64.
pub fn image_b64(bytes: &[u8]) -> ResponseTemplate {
    answer(
        Api::Images,
        json!({"created": 1_764_000_000, "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes)}]}),
    )
}

/// An images answer with the picture at `url`.
pub fn image_url(url: &str) -> ResponseTemplate {
    answer(
        Api::Images,
        json!({"created": 1_764_000_000, "data": [{"url": url}]}),
    )
}

pub fn moderation_answer(flagged: bool) -> ResponseTemplate {
    let score = if flagged { 0.9 } else { 0.001 };
    answer(
        Api::Moderations,
        json!({
            "id": "modr-fake", "model": "omni-moderation-latest",
            "results": [{
                "flagged": flagged,
                "categories": {"hate": false, "hate/threatening": false, "harassment": false,
                    "harassment/threatening": false, "illicit": false, "illicit/violent": false,
                    "self-harm": false, "self-harm/intent": false, "self-harm/instructions": false,
                    "sexual": false, "sexual/minors": false, "violence": flagged, "violence/graphic": false},
                "category_scores": {"hate": 0.0, "hate/threatening": 0.0, "harassment": 0.0,
                    "harassment/threatening": 0.0, "illicit": 0.0, "illicit/violent": 0.0,
                    "self-harm": 0.0, "self-harm/intent": 0.0, "self-harm/instructions": 0.0,
                    "sexual": 0.0, "sexual/minors": 0.0, "violence": score, "violence/graphic": 0.0},
                "category_applied_input_types": {"hate": ["text"], "hate/threatening": ["text"],
                    "harassment": ["text"], "harassment/threatening": ["text"], "illicit": ["text"],
                    "illicit/violent": ["text"], "self-harm": ["text"], "self-harm/intent": ["text"],
                    "self-harm/instructions": ["text"], "sexual": ["text"], "sexual/minors": ["text"],
                    "violence": ["text"], "violence/graphic": ["text"]}
            }]
        }),
    )
}

pub fn transcription_answer(text: &str) -> ResponseTemplate {
    answer(Api::Transcriptions, json!({"text": text}))
}

/// Audio bytes in `format`, as the speech endpoint sends them.
pub fn audio_of(format: &str) -> Vec<u8> {
    match format {
        "wav" => b"RIFF\x24\x00\x00\x00WAVEfmt fake-wav".to_vec(),
        "flac" => b"fLaC\x00\x00\x00\x22fake-flac".to_vec(),
        "aac" => vec![0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC, 0x21],
        "opus" => b"OggS\x00\x02fake-opus".to_vec(),
        "pcm" => vec![0u8; 32],
        _ => MP3.to_vec(),
    }
}

pub fn speech_answer(format: &str) -> ResponseTemplate {
    let content_type = match format {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        "opus" => "audio/ogg",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    };
    ResponseTemplate::new(200)
        .insert_header("content-type", content_type)
        .set_body_bytes(audio_of(format))
}

/// OpenAI's reasoning models (the o-series and GPT-5).
fn reasoning(model: &str) -> bool {
    model.starts_with("gpt-5")
        || ["o1", "o3", "o4"]
            .iter()
            .any(|p| model == *p || model.starts_with(&format!("{p}-")))
}

fn gpt_image(model: &str) -> bool {
    model.starts_with("gpt-image")
}

/// Checks a request as OpenAI would; `Err` is OpenAI's answer to it.
pub fn check(api: Api, request: &Request, key: Option<&str>) -> Result<Value, ResponseTemplate> {
    let auth = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| !k.is_empty());
    match (auth, key) {
        (None, _) => {
            return Err(error(
                401,
                "invalid_request_error",
                None,
                None,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        }
        (Some(given), Some(expected)) if given != expected => {
            return Err(error(
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
                "Incorrect API key provided.",
            ));
        }
        _ => {}
    }
    let schema = api.request_schema();
    let body = match api {
        Api::Transcriptions => {
            let content_type = request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let parts = multipart::parse(content_type, &request.body).map_err(|e| {
                invalid(
                    "invalid_value",
                    None,
                    &format!("Could not parse multipart form: {e}"),
                )
            })?;
            if let Some(file) = parts.iter().find(|p| p.name == "file") {
                let name = file.file_name.clone().unwrap_or_default();
                let ext = name.rsplit('.').next().unwrap_or_default();
                if ![
                    "flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm",
                ]
                .contains(&ext)
                {
                    return Err(invalid(
                        "invalid_value",
                        Some("file"),
                        &format!(
                            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm'] (got {name:?})"
                        ),
                    ));
                }
            }
            multipart::as_json(&parts, schema)
        }
        _ => {
            let content_type = request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !content_type.starts_with("application/json") {
                return Err(invalid(
                    "invalid_value",
                    None,
                    "The request body must be JSON.",
                ));
            }
            serde_json::from_slice(&request.body).map_err(|_| {
                invalid(
                    "invalid_json",
                    None,
                    "We could not parse the JSON body of your request.",
                )
            })?
        }
    };
    let declared = schema::declared_properties(schema);
    if let Some(obj) = body.as_object() {
        for key in obj.keys() {
            if !declared.contains(key) {
                return Err(invalid(
                    "unknown_parameter",
                    Some(key),
                    &format!("Unknown parameter: '{key}'."),
                ));
            }
        }
    }
    if let Err(problem) = schema::check(schema, &body) {
        return Err(invalid(
            "invalid_value",
            None,
            &format!("Invalid request: {problem}"),
        ));
    }
    rules(api, &body)?;
    Ok(body)
}

/// The rules OpenAI's API description states in prose.
fn rules(api: Api, body: &Value) -> Result<(), ResponseTemplate> {
    let model = body["model"].as_str().unwrap_or_default();
    let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    match api {
        Api::Chat => {
            if reasoning(model) && has("max_tokens") {
                return Err(invalid(
                    "unsupported_parameter",
                    Some("max_tokens"),
                    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                ));
            }
            if reasoning(model) && has("temperature") && body["temperature"].as_f64() != Some(1.0) {
                return Err(invalid(
                    "unsupported_value",
                    Some("temperature"),
                    "Unsupported value: 'temperature' does not support this value with this model. Only the default (1) value is supported.",
                ));
            }
            if has("stream_options") && body["stream"] != true {
                return Err(invalid(
                    "invalid_value",
                    Some("stream_options"),
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                ));
            }
            if body["response_format"]["type"] == "json_object"
                && !body["messages"].to_string().to_lowercase().contains("json")
            {
                return Err(invalid(
                    "invalid_value",
                    Some("messages"),
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                ));
            }
        }
        Api::Images => {
            let model = if model.is_empty() { "dall-e-2" } else { model };
            if gpt_image(model) && has("response_format") {
                return Err(invalid(
                    "unknown_parameter",
                    Some("response_format"),
                    "Unknown parameter: 'response_format'.",
                ));
            }
            if !gpt_image(model) {
                for only_gpt in [
                    "output_format",
                    "output_compression",
                    "background",
                    "moderation",
                    "partial_images",
                    "stream",
                ] {
                    if has(only_gpt) {
                        return Err(invalid(
                            "unknown_parameter",
                            Some(only_gpt),
                            &format!("Unknown parameter: '{only_gpt}'."),
                        ));
                    }
                }
            }
            let limit = match model {
                "dall-e-2" => 1000,
                "dall-e-3" => 4000,
                _ => 32_000,
            };
            if body["prompt"].as_str().unwrap_or_default().chars().count() > limit {
                return Err(invalid(
                    "string_above_max_length",
                    Some("prompt"),
                    &format!(
                        "Invalid 'prompt': string too long. Expected a string with maximum length {limit}."
                    ),
                ));
            }
            if model == "dall-e-3" && has("n") && body["n"] != 1 {
                return Err(invalid(
                    "invalid_value",
                    Some("n"),
                    "For dall-e-3, only n=1 is supported.",
                ));
            }
            let size = body["size"].as_str().unwrap_or("auto");
            let sizes: &[&str] = match model {
                "dall-e-2" => &["256x256", "512x512", "1024x1024"],
                "dall-e-3" => &["1024x1024", "1792x1024", "1024x1792"],
                _ => &["auto", "1024x1024", "1536x1024", "1024x1536"],
            };
            if has("size") && !sizes.contains(&size) && !model.starts_with("gpt-image-2") {
                return Err(invalid(
                    "invalid_value",
                    Some("size"),
                    &format!("Invalid size '{size}' for {model}."),
                ));
            }
            let quality = body["quality"].as_str();
            let qualities: &[&str] = match model {
                "dall-e-2" => &["standard", "auto"],
                "dall-e-3" => &["standard", "hd", "auto"],
                _ => &["low", "medium", "high", "auto"],
            };
            if let Some(q) = quality
                && !qualities.contains(&q)
            {
                return Err(invalid(
                    "invalid_value",
                    Some("quality"),
                    &format!("Invalid quality '{q}' for {model}."),
                ));
            }
        }
        Api::Speech => {
            // "Supported built-in voices are alloy, ash, ballad, coral, echo, fable, onyx,
            // nova, sage, shimmer, verse, marin, and cedar" (or a custom `{"id"}`).
            const VOICES: [&str; 13] = [
                "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                "shimmer", "verse", "marin", "cedar",
            ];
            if let Some(voice) = body["voice"].as_str()
                && !VOICES.contains(&voice)
            {
                return Err(invalid(
                    "invalid_value",
                    Some("voice"),
                    &format!("Invalid value for 'voice': '{voice}'."),
                ));
            }
            if model.starts_with("tts-1") && has("instructions") {
                return Err(invalid(
                    "unsupported_parameter",
                    Some("instructions"),
                    "Instructions are not supported for tts-1 or tts-1-hd.",
                ));
            }
            if model.starts_with("tts-1") && body["stream_format"] == "sse" {
                return Err(invalid(
                    "unsupported_value",
                    Some("stream_format"),
                    "sse is not supported for tts-1 or tts-1-hd.",
                ));
            }
        }
        Api::Transcriptions => {
            let format = body["response_format"].as_str().unwrap_or("json");
            if [
                "gpt-4o-transcribe",
                "gpt-4o-mini-transcribe",
                "gpt-4o-mini-transcribe-2025-12-15",
            ]
            .contains(&model)
                && format != "json"
            {
                return Err(invalid(
                    "unsupported_value",
                    Some("response_format"),
                    &format!(
                        "response_format '{format}' is not compatible with model '{model}'. Use 'json'."
                    ),
                ));
            }
        }
        Api::Moderations => {}
    }
    Ok(())
}

/// Checks every request before `answer` may answer it.
pub struct Strict<R> {
    api: Api,
    answer: R,
    key: Option<String>,
}

/// `answer`, behind OpenAI's checks of `api`.
pub fn strict<R: Respond>(api: Api, answer: R) -> Strict<R> {
    Strict {
        api,
        answer,
        key: None,
    }
}

impl<R> Strict<R> {
    /// Only this API key is accepted (any non-empty one otherwise).
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }
}

impl<R: Respond> Respond for Strict<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match check(self.api, request, self.key.as_deref()) {
            Ok(_) => self.answer.respond(request),
            Err(refusal) => {
                eprintln!(
                    "fake OpenAI refused a {:?} request: {}",
                    self.api,
                    String::from_utf8_lossy(&request.body)
                        .chars()
                        .take(400)
                        .collect::<String>()
                );
                refusal
            }
        }
    }
}

/// How OpenAI answers a valid request, per endpoint: a story sized to what the prompt
/// asks for ("정확히 N장") or a guide's reply; a picture in the form the model returns
/// (GPT image models: base64 always; DALL·E: base64 or a URL, as asked); audio in the
/// asked format; moderation not flagged; a transcript.
pub struct Natural {
    /// This server's address, for image URLs it serves itself.
    pub base: String,
}

/// A well-formed story of `n` chapters, as the model would write it: in the order the
/// prompt shows (the title first, then each chapter's title and content).
pub fn story_json(title: &str, n: usize) -> String {
    let chapters: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                "{{\"title\": {}, \"content\": {}}}",
                json!(format!("{i}장 제목")),
                json!(format!("{i}장: 토끼와 민준이 숲을 걸었어요."))
            )
        })
        .collect();
    format!(
        "{{\"title\": {}, \"chapters\": [{}]}}",
        json!(title),
        chapters.join(", ")
    )
}

impl Respond for Natural {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        match request.url.path() {
            "/v1/chat/completions" => {
                let prompt = body["messages"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["role"] == "user"))
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or_default();
                if body["response_format"]["type"] != "json_object" {
                    return chat_answer("우와, 멋지다! 그 다음엔 무슨 일이 생길까?");
                }
                let n = prompt
                    .split("정확히 ")
                    .nth(1)
                    .and_then(|r| r.split('장').next())
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(3);
                let theme = prompt
                    .split("주제: ")
                    .nth(1)
                    .and_then(|r| r.lines().next())
                    .unwrap_or("이야기");
                // A continuation asks for the chapters still missing ("남은 N개 장").
                let last = body["messages"]
                    .as_array()
                    .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or_default();
                let n = last
                    .split("남은 ")
                    .nth(1)
                    .and_then(|r| r.split('개').next())
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(n);
                story_answer(&story_json(&format!("{theme} 이야기"), n)).respond(request)
            }
            "/v1/images/generations" => {
                let model = body["model"].as_str().unwrap_or("dall-e-2");
                if gpt_image(model) || body["response_format"] == "b64_json" {
                    image_b64(PNG)
                } else {
                    image_url(&format!("{}/fake-images/1.png", self.base))
                }
            }
            "/v1/audio/speech" => speech_answer(body["response_format"].as_str().unwrap_or("mp3")),
            "/v1/moderations" => moderation_answer(false),
            "/v1/audio/transcriptions" => transcription_answer("공룡이 좋아"),
            other => panic!("Natural does not answer {other}"),
        }
    }
}

/// Mounts every OpenAI endpoint, strict and natural, on `server` (at `/v1/...`), plus
/// the pictures it hands out by URL. Tests mount their own answers at a higher priority.
pub async fn mount_all(server: &MockServer) {
    for api in [
        Api::Chat,
        Api::Images,
        Api::Speech,
        Api::Moderations,
        Api::Transcriptions,
    ] {
        Mock::given(method("POST"))
            .and(path(api.path()))
            .respond_with(strict(api, Natural { base: server.uri() }))
            .with_priority(10)
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex(r"^/fake-images/[0-9]+\.png$"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(PNG),
        )
        .with_priority(10)
        .mount(server)
        .await;
}
