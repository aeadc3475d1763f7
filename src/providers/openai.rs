//! OpenAI-compatible providers (OpenAI, Ollama, vLLM, llama.cpp, LocalAI…): chat
//! completions, images, speech and moderation. Each request carries only what the chosen
//! model accepts (the rules OpenAI's API description states: GPT image models take no
//! `response_format`; reasoning models take `max_completion_tokens` and no
//! `temperature`; speech `input` is at most 4096 characters), with settings to override
//! the guess for servers that differ.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Client;
use serde_json::{Map, Value, json};

use super::audio::{self, split_for_speech};
use super::http::{
    MediaFetcher, client_for, endpoint, json_capped, read_capped, send, with_bearer,
};
use super::{
    ErrorKind, HttpSettings, IllustrationRequest, Illustrator, Media, Moderator, Narrator,
    ProviderError, StoryRequest, StorySink, StoryWriter, Verdict,
};
use crate::config::{TemperatureParam, TokenLimitParam};

/// The chat model used when none is configured (one OpenAI serves today).
pub(crate) const DEFAULT_CHAT_MODEL: &str = "gpt-5.4-mini";
pub(crate) const DEFAULT_IMAGE_MODEL: &str = "gpt-image-1.5";
pub(crate) const DEFAULT_SPEECH_MODEL: &str = "gpt-4o-mini-tts";
pub(crate) const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";
pub(crate) const DEFAULT_STT_MODEL: &str = "gpt-4o-mini-transcribe";

/// The model name without a router prefix (`openai/gpt-5` → `gpt-5`).
fn bare(model: &str) -> &str {
    model.rsplit('/').next().unwrap_or(model)
}

/// OpenAI's reasoning models (o-series, GPT-5 family): `max_completion_tokens` only,
/// and no `temperature` but the default.
pub(crate) fn is_reasoning_model(model: &str) -> bool {
    let m = bare(model);
    m.starts_with("gpt-5")
        || ["o1", "o3", "o4"]
            .iter()
            .any(|p| m == *p || m.starts_with(&format!("{p}-")))
}

/// GPT image models return base64 always and refuse `response_format`.
pub(crate) fn is_gpt_image_model(model: &str) -> bool {
    bare(model).starts_with("gpt-image")
}

/// Whether `base_url` is OpenAI's own API (where `max_tokens` is deprecated).
fn is_openai(base_url: &str) -> bool {
    reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.eq_ignore_ascii_case("api.openai.com"))
        })
        .unwrap_or(false)
}

/// One chat call's sampling wishes; which of them are sent depends on the model.
pub(crate) struct ChatCall<'a> {
    pub messages: &'a [Value],
    pub temperature: f64,
    /// The visible answer's budget, if any; reasoning models get room to think on top
    /// of it.
    pub max_tokens: Option<u32>,
    pub json: bool,
}

/// The request body of a chat call, with the parameters the model takes.
pub(crate) fn chat_body(settings: &HttpSettings, call: &ChatCall<'_>) -> Value {
    let model = settings.model.as_deref().unwrap_or(DEFAULT_CHAT_MODEL);
    let reasoning = is_reasoning_model(model);
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), json!(call.messages));
    let completion_tokens = match settings.chat.token_limit {
        TokenLimitParam::MaxTokens => false,
        TokenLimitParam::MaxCompletionTokens => true,
        TokenLimitParam::Auto => reasoning || is_openai(&settings.base_url),
    };
    match (call.max_tokens, completion_tokens) {
        (None, _) => {}
        (Some(n), true) => {
            // Reasoning tokens count against this budget too.
            let budget = if reasoning { n.saturating_add(4000) } else { n };
            body.insert("max_completion_tokens".into(), json!(budget));
        }
        (Some(n), false) => {
            body.insert("max_tokens".into(), json!(n));
        }
    }
    let send_temperature = match settings.chat.temperature {
        TemperatureParam::Send => true,
        TemperatureParam::Omit => false,
        TemperatureParam::Auto => !reasoning,
    };
    if send_temperature {
        body.insert("temperature".into(), json!(call.temperature));
    }
    if call.json {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    Value::Object(body)
}

/// One chat completion's text. A refusal (`message.refusal`, or `finish_reason`
/// `content_filter`) is [`ErrorKind::Refused`].
pub(crate) async fn chat(
    client: &Client,
    settings: &HttpSettings,
    call: &ChatCall<'_>,
) -> Result<String, ProviderError> {
    let rb = client
        .post(endpoint(settings, "chat/completions"))
        .json(&chat_body(settings, call));
    let value = json_capped(
        send(with_bearer(rb, settings)).await?,
        settings.max_response_bytes,
    )
    .await?;
    let choice = &value["choices"][0];
    if let Some(refusal) = choice["message"]["refusal"]
        .as_str()
        .filter(|r| !r.is_empty())
    {
        let short: String = refusal.chars().take(200).collect();
        return Err(ProviderError::new(
            ErrorKind::Refused,
            format!("the model refused: {short}"),
        ));
    }
    if choice["finish_reason"] == "content_filter" {
        return Err(ProviderError::new(
            ErrorKind::Refused,
            "the provider's content filter withheld the answer",
        ));
    }
    let text = choice["message"]["content"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match text {
        Some(t) => Ok(t.to_string()),
        None if choice["finish_reason"] == "length" => Err(ProviderError::new(
            ErrorKind::BadResponse,
            "the answer was cut off by the token limit before any text",
        )),
        None => Err(ProviderError::new(
            ErrorKind::BadResponse,
            "no message content",
        )),
    }
}

/// Chat completions that return the story as JSON, streamed (`stream: true`): each
/// chapter is handed on the moment its object closes in the answer, while the model
/// writes the next.
pub(crate) struct ChatStoryWriter {
    settings: HttpSettings,
    client: Client,
}

/// How one streamed answer ended, when the provider itself did not fail.
enum Answer {
    /// Every chapter asked for is in the sink.
    Complete,
    /// The answer ended short or malformed: the problem, for the next call.
    Short(String),
}

impl ChatStoryWriter {
    pub(crate) fn new(settings: HttpSettings) -> ChatStoryWriter {
        ChatStoryWriter {
            client: client_for(&settings),
            settings,
        }
    }

    /// One streamed call: its server-sent events read as they arrive, the story's JSON
    /// scanned as it grows, each piece put into `sink`. Reading stops once the last
    /// chapter asked for is complete.
    async fn stream(
        &self,
        messages: &[Value],
        request: &StoryRequest,
        sink: &StorySink,
    ) -> Result<Answer, ProviderError> {
        use super::http::transport_error;
        use super::story_stream::{Scanned, SseLines, StoryScanner};
        // No token limit: a server's own limit fits its context (vLLM refuses a limit
        // larger than the context left).
        let call = ChatCall {
            messages,
            temperature: 0.8,
            max_tokens: None,
            json: true,
        };
        let mut body = chat_body(&self.settings, &call);
        body["stream"] = json!(true);
        let rb = self
            .client
            .post(endpoint(&self.settings, "chat/completions"))
            .json(&body);
        let mut response = send(with_bearer(rb, &self.settings)).await?;
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !streamed {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                "the model server did not stream its answer (no text/event-stream)",
            ));
        }
        sink.put_restart();
        let cap = self.settings.max_response_bytes;
        let mut read = 0usize;
        let mut sse = SseLines::default();
        let mut scanner = StoryScanner::new();
        let mut finish: Option<String> = None;
        let mut ended = false;
        while !ended {
            // Once the answer has begun, a broken body is a lost connection: retried, the
            // next call continues after the chapters received.
            let chunk = response.chunk().await.map_err(|e| {
                let mut err = transport_error(e);
                if err.kind == ErrorKind::BadResponse {
                    err.kind = ErrorKind::Network;
                }
                err
            })?;
            let events = match chunk {
                Some(bytes) => {
                    read += bytes.len();
                    if read > cap {
                        return Err(ProviderError::new(
                            ErrorKind::BadResponse,
                            format!("the answer is larger than {cap} bytes"),
                        ));
                    }
                    sse.push(&bytes)
                }
                None => {
                    ended = true;
                    sse.finish().into_iter().collect()
                }
            };
            for data in events {
                if data.trim() == "[DONE]" {
                    ended = true;
                    break;
                }
                let chunk: Value = serde_json::from_str(&data).map_err(|e| {
                    ProviderError::new(ErrorKind::BadResponse, format!("invalid stream event: {e}"))
                })?;
                if chunk.get("error").is_some_and(|e| !e.is_null()) {
                    let (code, message) = super::http::provider_code(&chunk);
                    let mut err = ProviderError::new(
                        ErrorKind::Server,
                        format!(
                            "the stream ended in an error: {}",
                            message
                                .unwrap_or_default()
                                .chars()
                                .take(200)
                                .collect::<String>()
                        ),
                    );
                    err.code = code;
                    return Err(err);
                }
                let Some(choice) = chunk["choices"].get(0) else {
                    continue; // the usage chunk
                };
                let delta = &choice["delta"];
                if let Some(refusal) = delta["refusal"].as_str().filter(|r| !r.is_empty()) {
                    let short: String = refusal.chars().take(200).collect();
                    return Err(ProviderError::new(
                        ErrorKind::Refused,
                        format!("the model refused: {short}"),
                    ));
                }
                if let Some(text) = delta["content"].as_str() {
                    for piece in scanner.push(text) {
                        match piece {
                            Scanned::Title(title) => sink.put_title(title),
                            Scanned::Text { delta, .. } => {
                                if sink.count() < request.chapters {
                                    sink.put_text(delta)
                                }
                            }
                            Scanned::Chapter(chapter) => {
                                if sink.count() < request.chapters {
                                    sink.put_chapter(chapter);
                                }
                            }
                        }
                        if sink.count() >= request.chapters && sink.title().is_some() {
                            // Everything asked for is here: the rest is not read.
                            return Ok(Answer::Complete);
                        }
                    }
                }
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish = Some(reason.to_string());
                }
            }
        }
        if finish.as_deref() == Some("content_filter") {
            return Err(ProviderError::new(
                ErrorKind::Refused,
                "the provider's content filter withheld the answer",
            ));
        }
        let problem = match (scanner.problem(), scanner.started(), finish.as_deref()) {
            (Some(p), _, _) => p.to_string(),
            (None, false, _) => "no JSON object in the answer".to_string(),
            (None, _, Some("length")) => "the answer was cut off by the token limit".to_string(),
            (None, _, None) => "the stream ended before the answer was finished".to_string(),
            (None, _, _) if sink.title().is_none() => {
                "`title` must be a non-empty string of at most 200 characters".to_string()
            }
            (None, _, _) => format!(
                "expected exactly {} chapters, got {}",
                request.chapters,
                sink.count()
            ),
        };
        if sink.count() >= request.chapters && sink.title().is_some() {
            return Ok(Answer::Complete);
        }
        Ok(Answer::Short(problem))
    }
}

#[async_trait]
impl StoryWriter for ChatStoryWriter {
    fn name(&self) -> &'static str {
        "openai-chat"
    }

    async fn write(&self, request: &StoryRequest, sink: &StorySink) -> Result<(), ProviderError> {
        // An answer that ends short or malformed gets one more call, which continues
        // after the chapters already received (the model sees them as its own answer).
        let mut problem: Option<String> = None;
        for _ in 0..2 {
            if sink.count() >= request.chapters && sink.title().is_some() {
                return Ok(());
            }
            let messages = super::story_text::messages(
                request,
                sink.title().as_deref(),
                &sink.chapters(),
                problem.as_deref(),
            );
            match self.stream(&messages, request, sink).await? {
                Answer::Complete => return Ok(()),
                Answer::Short(p) => {
                    tracing::warn!(problem = %p, chapters = sink.count(), "model answer short or malformed; asking it to go on");
                    problem = Some(p);
                }
            }
        }
        Err(ProviderError::new(
            ErrorKind::BadResponse,
            format!(
                "malformed story after repair: {}",
                problem.unwrap_or_default()
            ),
        ))
    }
}

/// Detects the image format from its bytes.
fn sniff_image(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", "png"))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", "jpg"))
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("image/webp", "webp"))
    } else {
        None
    }
}

/// Longest prompt each image model takes, in characters (OpenAI's API description).
fn prompt_limit(model: &str) -> usize {
    match bare(model) {
        "dall-e-2" => 1000,
        "dall-e-3" => 4000,
        _ => 32_000,
    }
}

/// OpenAI-compatible `/images/generations`.
pub(crate) struct ImagesIllustrator {
    settings: HttpSettings,
    client: Client,
    fetcher: MediaFetcher,
}

impl ImagesIllustrator {
    pub(crate) fn new(settings: HttpSettings) -> ImagesIllustrator {
        ImagesIllustrator {
            client: client_for(&settings),
            fetcher: MediaFetcher::new(&settings),
            settings,
        }
    }

    /// The request body: GPT image models always answer in base64 and refuse
    /// `response_format`; the others (DALL·E, local servers) are asked for base64.
    pub(crate) fn body(&self, prompt: &str) -> Value {
        let model = self
            .settings
            .model
            .as_deref()
            .unwrap_or(DEFAULT_IMAGE_MODEL);
        let prompt: String = prompt.chars().take(prompt_limit(model)).collect();
        let mut body = json!({
            "model": model,
            "prompt": prompt,
            "n": 1,
            "size": "1024x1024",
        });
        if !is_gpt_image_model(model) {
            body["response_format"] = json!("b64_json");
        }
        body
    }
}

#[async_trait]
impl Illustrator for ImagesIllustrator {
    fn name(&self) -> &'static str {
        "openai-images"
    }

    async fn illustrate(&self, req: &IllustrationRequest) -> Result<Media, ProviderError> {
        let prompt = format!(
            "Gentle watercolor illustration for a children's picture book, no text. \
             Characters (draw them exactly the same in every picture): {}. \
             Scene {}: {} — {}",
            req.character_sheet, req.chapter_number, req.chapter_title, req.scene
        );
        let rb = self
            .client
            .post(endpoint(&self.settings, "images/generations"))
            .json(&self.body(&prompt));
        let value = json_capped(
            send(with_bearer(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await?;
        let item = &value["data"][0];
        let bytes = if let Some(b64) = item["b64_json"].as_str() {
            STANDARD
                .decode(b64)
                .map_err(|_| ProviderError::new(ErrorKind::BadResponse, "b64_json is not base64"))?
        } else if let Some(url) = item["url"].as_str() {
            self.fetcher.fetch(url).await?
        } else {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                "no image in the answer",
            ));
        };
        let (content_type, extension) = sniff_image(&bytes).ok_or_else(|| {
            ProviderError::new(ErrorKind::BadResponse, "not a PNG, JPEG or WebP image")
        })?;
        Ok(Media {
            bytes,
            content_type: content_type.into(),
            extension,
            made_by: self.name(),
        })
    }
}

/// Audio bytes as stored media, the format read from the bytes.
pub(crate) fn audio_media(bytes: Vec<u8>, made_by: &'static str) -> Result<Media, ProviderError> {
    let format = audio::sniff(&bytes)
        .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "not an audio file"))?;
    Ok(Media {
        bytes,
        content_type: format.content_type.into(),
        extension: format.extension,
        made_by,
    })
}

/// Narrates `text` piece by piece (each at most `limit` characters) and joins the
/// pieces' audio; every piece must succeed. MP3 (what is asked for), AAC (ADTS) and Ogg
/// streams join by concatenation; a server that answers a long text in a container that
/// does not (WAV, FLAC…) fails the narration, so the next narrator in line reads it.
pub(crate) async fn narrate_in_pieces<F, Fut>(
    made_by: &'static str,
    text: &str,
    limit: usize,
    mut piece: F,
) -> Result<Media, ProviderError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, ProviderError>>,
{
    let pieces = split_for_speech(text, limit);
    let several = pieces.len() > 1;
    let mut joined = Vec::new();
    for part in pieces {
        let bytes = piece(part).await?;
        let format = audio::sniff(&bytes)
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "not an audio file"))?;
        if several && !matches!(format.extension, "mp3" | "aac" | "ogg") {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                format!(
                    "the speech server answered {}, which cannot be joined; long texts need MP3",
                    format.extension
                ),
            ));
        }
        joined.extend(bytes);
    }
    audio_media(joined, made_by)
}

/// OpenAI-compatible `/audio/speech`.
pub(crate) struct SpeechNarrator {
    settings: HttpSettings,
    voice: String,
    client: Client,
    max_input_chars: usize,
}

impl SpeechNarrator {
    pub(crate) fn new(
        settings: HttpSettings,
        voice: String,
        max_input_chars: usize,
    ) -> SpeechNarrator {
        SpeechNarrator {
            client: client_for(&settings),
            settings,
            voice,
            max_input_chars,
        }
    }

    pub(crate) fn body(&self, input: &str) -> Value {
        let model = self
            .settings
            .model
            .as_deref()
            .unwrap_or(DEFAULT_SPEECH_MODEL);
        let mut body = json!({
            "model": model,
            "input": input,
            "voice": self.voice,
            "response_format": "mp3",
        });
        // `instructions` do not work with tts-1 / tts-1-hd.
        if !bare(model).starts_with("tts-1") {
            body["instructions"] =
                json!("Speak warmly and gently, like a storyteller reading to a young child.");
        }
        body
    }

    async fn piece(&self, input: String) -> Result<Vec<u8>, ProviderError> {
        let rb = self
            .client
            .post(endpoint(&self.settings, "audio/speech"))
            .json(&self.body(&input));
        read_capped(
            send(with_bearer(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await
    }
}

#[async_trait]
impl Narrator for SpeechNarrator {
    fn name(&self) -> &'static str {
        "openai-speech"
    }

    async fn narrate(&self, text: &str, _voice_id: Option<&str>) -> Result<Media, ProviderError> {
        narrate_in_pieces(self.name(), text, self.max_input_chars, |p| self.piece(p)).await
    }
}

/// OpenAI-compatible `/moderations`, stricter than the provider's own `flagged`: any
/// category scoring at or above `threshold` counts.
pub(crate) struct ModerationApi {
    settings: HttpSettings,
    threshold: f64,
    client: Client,
}

impl ModerationApi {
    pub(crate) fn new(settings: HttpSettings, threshold: f64) -> ModerationApi {
        ModerationApi {
            client: client_for(&settings),
            settings,
            threshold,
        }
    }
}

#[async_trait]
impl Moderator for ModerationApi {
    fn name(&self) -> &'static str {
        "openai-moderation"
    }

    async fn check(&self, texts: &[String]) -> Result<Verdict, ProviderError> {
        let body = json!({
            "model": self.settings.model.as_deref().unwrap_or(DEFAULT_MODERATION_MODEL),
            "input": texts,
        });
        let rb = self
            .client
            .post(endpoint(&self.settings, "moderations"))
            .json(&body);
        let value = json_capped(
            send(with_bearer(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await?;
        let results = value["results"]
            .as_array()
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "no moderation results"))?;
        let mut categories = Vec::new();
        for result in results {
            if let Some(scores) = result["category_scores"].as_object() {
                for (name, score) in scores {
                    if score.as_f64().is_some_and(|s| s >= self.threshold)
                        && !categories.contains(name)
                    {
                        categories.push(name.clone());
                    }
                }
            }
            if result["flagged"] == true && categories.is_empty() {
                categories.push("flagged".into());
            }
        }
        Ok(if categories.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Flagged { categories }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChatParams;
    use std::time::Duration;

    fn settings(base: &str, model: &str, chat: ChatParams) -> HttpSettings {
        HttpSettings {
            base_url: base.into(),
            api_key: None,
            model: Some(model.into()),
            timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
            allow_private_urls: false,
            chat,
        }
    }

    fn body(base: &str, model: &str, chat: ChatParams) -> Value {
        let call = ChatCall {
            messages: &[],
            temperature: 0.7,
            max_tokens: Some(300),
            json: false,
        };
        chat_body(&settings(base, model, chat), &call)
    }

    #[test]
    fn chat_parameters_follow_the_model_and_the_settings() {
        let auto = ChatParams::default();
        let gpt5 = body("https://api.openai.com/v1", "gpt-5.4-mini", auto);
        assert!(gpt5.get("max_tokens").is_none() && gpt5.get("temperature").is_none());
        assert!(gpt5["max_completion_tokens"].as_u64().unwrap() > 300);
        let o3 = body("https://api.openai.com/v1", "o3-mini", auto);
        assert!(o3.get("temperature").is_none());
        let gpt4 = body("https://api.openai.com/v1", "gpt-4.1-mini", auto);
        assert_eq!(gpt4["max_completion_tokens"], 300);
        assert_eq!(gpt4["temperature"], 0.7);
        // Local servers keep the widely supported `max_tokens`.
        let ollama = body("http://localhost:11434/v1", "llama3.1", auto);
        assert_eq!(ollama["max_tokens"], 300);
        assert_eq!(ollama["temperature"], 0.7);
        assert!(ollama.get("max_completion_tokens").is_none());
        // A model name that merely starts with "o" is not an o-series model.
        assert!(!is_reasoning_model("olmo-2"));
        let forced = ChatParams {
            token_limit: TokenLimitParam::MaxCompletionTokens,
            temperature: TemperatureParam::Omit,
        };
        let vllm = body("http://vllm:8000/v1", "qwen", forced);
        assert_eq!(vllm["max_completion_tokens"], 300);
        assert!(vllm.get("temperature").is_none());
    }

    #[tokio::test]
    async fn pieces_join_only_where_the_format_allows() {
        let text = "하나. 둘. 셋.";
        let mp3 = |_: String| async { Ok(b"ID3\x04\0\0mp3".to_vec()) };
        let joined = narrate_in_pieces("test", text, 4, mp3).await.unwrap();
        assert_eq!(joined.extension, "mp3");
        assert_eq!(joined.bytes.len(), 3 * 9, "three pieces, joined");
        let wav = |_: String| async { Ok(b"RIFF\0\0\0\0WAVEfmt ".to_vec()) };
        assert!(
            narrate_in_pieces("test", text, 4, wav).await.is_err(),
            "WAV pieces cannot be joined"
        );
        // One piece in any format is fine.
        let one = narrate_in_pieces("test", text, 100, wav).await.unwrap();
        assert_eq!(one.extension, "wav");
    }

    #[test]
    fn image_bodies_carry_only_what_the_model_takes() {
        let auto = ChatParams::default();
        let gpt =
            ImagesIllustrator::new(settings("https://api.openai.com/v1", "gpt-image-1", auto));
        assert!(gpt.body("p").get("response_format").is_none());
        let dalle = ImagesIllustrator::new(settings("https://api.openai.com/v1", "dall-e-2", auto));
        let b = dalle.body(&"가".repeat(2000));
        assert_eq!(b["response_format"], "b64_json");
        assert_eq!(b["prompt"].as_str().unwrap().chars().count(), 1000);
    }
}
