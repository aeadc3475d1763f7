//! HTTP providers: OpenAI-compatible chat completions, images, speech and moderation
//! (OpenAI, Ollama, LocalAI, vLLM, llama.cpp…), and ElevenLabs-compatible speech.
//! API keys go only into request headers; errors and logs never contain them.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::store::types::MessageRole;

use super::{
    ErrorKind, GeneratedChapter, GeneratedStory, HttpSettings, IllustrationRequest, Illustrator,
    Media, Moderator, Narrator, ProviderError, StoryRequest, StoryWriter, Verdict,
};

/// Longest chapter text accepted from a model (the API's text-field limit).
const MAX_CHAPTER_CHARS: usize = 10_000;

pub(crate) fn endpoint(settings: &HttpSettings, path: &str) -> String {
    format!("{}/{}", settings.base_url.trim_end_matches('/'), path)
}

pub(crate) fn with_bearer(rb: RequestBuilder, settings: &HttpSettings) -> RequestBuilder {
    match &settings.api_key {
        Some(key) => rb.bearer_auth(String::from_utf8_lossy(key.expose())),
        None => rb,
    }
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Network
    } else {
        ErrorKind::BadResponse
    };
    // reqwest's message names the URL, never headers; strip any query string anyway.
    let text = e.without_url().to_string();
    ProviderError::new(kind, text)
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = when
        .signed_duration_since(chrono::Utc::now())
        .num_milliseconds();
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// Sends a request and turns every non-2xx status into a classified error.
pub(crate) async fn send(rb: RequestBuilder) -> Result<Response, ProviderError> {
    let response = rb.send().await.map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let after = retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    let detail: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let code = detail["error"]["code"]
        .as_str()
        .or(detail["error"]["type"].as_str())
        .unwrap_or_default()
        .to_string();
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS if code.contains("quota") => ErrorKind::Quota,
        StatusCode::PAYMENT_REQUIRED => ErrorKind::Quota,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
        s if s.is_server_error() => ErrorKind::Server,
        _ if code.contains("content_policy") || code.contains("safety") => ErrorKind::Refused,
        _ => ErrorKind::BadResponse,
    };
    let mut err = ProviderError::new(
        kind,
        format!(
            "HTTP {}{}",
            status.as_u16(),
            if code.is_empty() {
                String::new()
            } else {
                format!(" ({code})")
            }
        ),
    );
    err.retry_after = after;
    err.status = Some(status.as_u16());
    Err(err)
}

/// Installs rustls' ring crypto provider for this process (idempotent). reqwest is built
/// without a default provider to keep the aws-lc build out.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn client_for(settings: &HttpSettings) -> Client {
    install_tls();
    Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds")
}

/// Chat completions that return the story as JSON.
pub(crate) struct ChatStoryWriter {
    settings: HttpSettings,
    client: Client,
}

impl ChatStoryWriter {
    pub(crate) fn new(settings: HttpSettings) -> ChatStoryWriter {
        ChatStoryWriter {
            client: client_for(&settings),
            settings,
        }
    }

    async fn complete(&self, messages: &[Value]) -> Result<String, ProviderError> {
        let body = json!({
            "model": self.settings.model.as_deref().unwrap_or("gpt-4o-mini"),
            "messages": messages,
            "temperature": 0.8,
            "response_format": {"type": "json_object"},
        });
        let rb = self
            .client
            .post(endpoint(&self.settings, "chat/completions"))
            .json(&body);
        let response = send(with_bearer(rb, &self.settings)).await?;
        let value: Value = response.json().await.map_err(transport_error)?;
        if value["choices"][0]["finish_reason"] == "content_filter" {
            return Err(ProviderError::new(
                ErrorKind::Refused,
                "the model refused the content",
            ));
        }
        value["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "no message content"))
    }
}

/// The system prompt: a storyteller for the child's age band.
fn system_prompt(age: i32) -> String {
    let band = match age {
        ..=4 => "아주 어린 아이(3~4세): 아주 짧은 문장, 쉬운 낱말, 의성어·의태어와 반복",
        5..=7 => "유아(5~7세): 짧은 문장, 쉬운 낱말, 따뜻하고 밝은 분위기",
        8..=10 => "초등 저학년(8~10세): 조금 더 긴 문장과 모험, 간단한 교훈",
        _ => "초등 고학년 이상: 풍부한 묘사와 인물의 감정, 생각할 거리",
    };
    format!(
        "너는 아이를 위한 한국어 동화 작가야. 대상: {band}. 폭력, 공포, 위험한 행동, 차별, \
         어른용 주제는 절대 쓰지 마. 반드시 JSON 객체 하나만 답해: \
         {{\"title\": string, \"chapters\": [{{\"title\": string, \"content\": string}}]}}"
    )
}

fn user_prompt(req: &StoryRequest) -> String {
    let transcript: String = req
        .transcript
        .iter()
        .rev()
        .take(40)
        .rev()
        .map(|(role, text)| {
            format!(
                "{}: {}\n",
                match role {
                    MessageRole::Child => "아이",
                    MessageRole::Assistant => "쫑이",
                },
                text
            )
        })
        .collect();
    format!(
        "주인공 아이: {name} ({age}살)\n주제: {theme}\n등장인물: {chars}\n좋아하는 것: {likes}\n\
         장 수: 정확히 {n}장\n각 장은 3~6문장, 아이의 이름과 등장인물을 이야기 속에 자연스럽게 넣어 줘.\n\
         아이와 나눈 대화(이야기 재료로 써 줘):\n{transcript}",
        name = req.child_name,
        age = req.child_age,
        theme = req.theme,
        chars = if req.characters.is_empty() {
            "자유".to_string()
        } else {
            req.characters.join(", ")
        },
        likes = if req.interests.is_empty() {
            "-".to_string()
        } else {
            req.interests.join(", ")
        },
        n = req.chapters,
    )
}

/// Parses and checks the model's JSON against the expected shape.
pub(crate) fn parse_story(text: &str, chapters: usize) -> Result<GeneratedStory, String> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .map(|t| t.trim_end().trim_end_matches("```"))
        .unwrap_or(trimmed);
    let value: Value = serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"))?;
    let title = value["title"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().count() <= 200)
        .ok_or("`title` must be a non-empty string of at most 200 characters")?;
    let list = value["chapters"]
        .as_array()
        .ok_or("`chapters` must be an array")?;
    if list.len() != chapters {
        return Err(format!(
            "expected exactly {chapters} chapters, got {}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(chapters);
    for (i, ch) in list.iter().enumerate() {
        let title = ch["title"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let content = ch["content"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (title, content) {
            (Some(t), Some(c))
                if c.chars().count() <= MAX_CHAPTER_CHARS && t.chars().count() <= 200 =>
            {
                out.push(GeneratedChapter {
                    title: t.to_string(),
                    content: c.to_string(),
                })
            }
            _ => {
                return Err(format!(
                    "chapter {} needs a non-empty `title` and `content`",
                    i + 1
                ));
            }
        }
    }
    Ok(GeneratedStory {
        title: title.to_string(),
        chapters: out,
    })
}

#[async_trait]
impl StoryWriter for ChatStoryWriter {
    fn name(&self) -> &'static str {
        "openai-chat"
    }

    async fn write(&self, request: &StoryRequest) -> Result<GeneratedStory, ProviderError> {
        let mut messages = vec![
            json!({"role": "system", "content": system_prompt(request.child_age)}),
            json!({"role": "user", "content": user_prompt(request)}),
        ];
        let first = self.complete(&messages).await?;
        let problem = match parse_story(&first, request.chapters) {
            Ok(story) => return Ok(story),
            Err(problem) => problem,
        };
        // One repair attempt: show the model its answer and what is wrong with it.
        tracing::warn!(%problem, "model answer malformed; asking for a repair");
        messages.push(json!({"role": "assistant", "content": first}));
        messages.push(json!({"role": "user", "content": format!(
            "그 답은 형식이 잘못되었어: {problem}. 같은 이야기를 정확히 {}장으로, 설명 없이 JSON 객체 하나로만 다시 보내 줘.",
            request.chapters
        )}));
        let second = self.complete(&messages).await?;
        parse_story(&second, request.chapters).map_err(|p| {
            ProviderError::new(
                ErrorKind::BadResponse,
                format!("malformed story after repair: {p}"),
            )
        })
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

/// OpenAI-compatible `/images/generations`.
pub(crate) struct ImagesIllustrator {
    settings: HttpSettings,
    client: Client,
}

impl ImagesIllustrator {
    pub(crate) fn new(settings: HttpSettings) -> ImagesIllustrator {
        ImagesIllustrator {
            client: client_for(&settings),
            settings,
        }
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
        let body = json!({
            "model": self.settings.model.as_deref().unwrap_or("gpt-image-1"),
            "prompt": prompt,
            "n": 1,
            "size": "1024x1024",
            "response_format": "b64_json",
        });
        let rb = self
            .client
            .post(endpoint(&self.settings, "images/generations"))
            .json(&body);
        let value: Value = send(with_bearer(rb, &self.settings))
            .await?
            .json()
            .await
            .map_err(transport_error)?;
        let item = &value["data"][0];
        let bytes = if let Some(b64) = item["b64_json"].as_str() {
            STANDARD
                .decode(b64)
                .map_err(|_| ProviderError::new(ErrorKind::BadResponse, "b64_json is not base64"))?
        } else if let Some(url) = item["url"].as_str().filter(|u| u.starts_with("http")) {
            send(self.client.get(url))
                .await?
                .bytes()
                .await
                .map_err(transport_error)?
                .to_vec()
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
        })
    }
}

fn audio_media(bytes: Vec<u8>) -> Result<Media, ProviderError> {
    let (content_type, extension) = if bytes.starts_with(b"RIFF") {
        ("audio/wav", "wav")
    } else if bytes.starts_with(b"OggS") {
        ("audio/ogg", "ogg")
    } else if bytes.starts_with(b"ID3")
        || (bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
    {
        ("audio/mpeg", "mp3")
    } else {
        return Err(ProviderError::new(
            ErrorKind::BadResponse,
            "not an audio file",
        ));
    };
    Ok(Media {
        bytes,
        content_type: content_type.into(),
        extension,
    })
}

/// OpenAI-compatible `/audio/speech`.
pub(crate) struct SpeechNarrator {
    settings: HttpSettings,
    voice: String,
    client: Client,
}

impl SpeechNarrator {
    pub(crate) fn new(settings: HttpSettings, voice: String) -> SpeechNarrator {
        SpeechNarrator {
            client: client_for(&settings),
            settings,
            voice,
        }
    }
}

#[async_trait]
impl Narrator for SpeechNarrator {
    fn name(&self) -> &'static str {
        "openai-speech"
    }

    async fn narrate(&self, text: &str, _voice_id: Option<&str>) -> Result<Media, ProviderError> {
        let body = json!({
            "model": self.settings.model.as_deref().unwrap_or("gpt-4o-mini-tts"),
            "input": text,
            "voice": self.voice,
            "response_format": "mp3",
        });
        let rb = self
            .client
            .post(endpoint(&self.settings, "audio/speech"))
            .json(&body);
        let bytes = send(with_bearer(rb, &self.settings))
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        audio_media(bytes.to_vec())
    }
}

/// ElevenLabs-compatible text-to-speech, for cloned voices.
pub(crate) struct ElevenLabsNarrator {
    settings: HttpSettings,
    default_voice: Option<String>,
    client: Client,
}

impl ElevenLabsNarrator {
    pub(crate) fn new(settings: HttpSettings, default_voice: Option<String>) -> ElevenLabsNarrator {
        ElevenLabsNarrator {
            client: client_for(&settings),
            settings,
            default_voice,
        }
    }
}

#[async_trait]
impl Narrator for ElevenLabsNarrator {
    fn name(&self) -> &'static str {
        "elevenlabs-tts"
    }

    async fn narrate(&self, text: &str, voice_id: Option<&str>) -> Result<Media, ProviderError> {
        let Some(voice) = voice_id.or(self.default_voice.as_deref()) else {
            return Err(ProviderError::new(ErrorKind::Unavailable, "no voice id"));
        };
        let voice: String = voice
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let mut rb = self
            .client
            .post(endpoint(
                &self.settings,
                &format!("v1/text-to-speech/{voice}"),
            ))
            .header("accept", "audio/mpeg")
            .json(&json!({
                "text": text,
                "model_id": self.settings.model.as_deref().unwrap_or("eleven_multilingual_v2"),
            }));
        if let Some(key) = &self.settings.api_key {
            rb = rb.header(
                "xi-api-key",
                String::from_utf8_lossy(key.expose()).into_owned(),
            );
        }
        let bytes = send(rb).await?.bytes().await.map_err(transport_error)?;
        audio_media(bytes.to_vec())
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
            "model": self.settings.model.as_deref().unwrap_or("omni-moderation-latest"),
            "input": texts,
        });
        let rb = self
            .client
            .post(endpoint(&self.settings, "moderations"))
            .json(&body);
        let value: Value = send(with_bearer(rb, &self.settings))
            .await?
            .json()
            .await
            .map_err(transport_error)?;
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

    #[test]
    fn parses_only_the_expected_shape() {
        let ok = r#"{"title": "별", "chapters": [{"title": "1", "content": "가"}, {"title": "2", "content": "나"}]}"#;
        assert_eq!(parse_story(ok, 2).unwrap().chapters.len(), 2);
        assert!(parse_story(&format!("```json\n{ok}\n```"), 2).is_ok());
        assert!(parse_story(ok, 3).is_err());
        assert!(parse_story("{\"title\": \"별\"}", 1).is_err());
        assert!(parse_story("not json", 1).is_err());
        assert!(parse_story(r#"{"title": "", "chapters": []}"#, 0).is_err());
        assert!(
            parse_story(
                r#"{"title": "t", "chapters": [{"title": "a", "content": ""}]}"#,
                1
            )
            .is_err()
        );
    }
}
