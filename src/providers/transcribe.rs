//! Server speech-to-text for utterances the conversation socket receives as raw PCM:
//! OpenAI-compatible `POST {base}/audio/transcriptions` (multipart `file`, `model`,
//! `language`, `response_format=json`; the answer's `text`). There is no offline one:
//! without `JJONGAL_STT_BASE_URL` the socket says so instead of guessing words.

use async_trait::async_trait;
use reqwest::Client;
use reqwest::multipart::{Form, Part};

use super::{ErrorKind, HttpSettings, ProviderError};

/// Longest transcript accepted from a provider (characters); longer is a bad answer.
const MAX_TRANSCRIPT_CHARS: usize = 10_000;

#[async_trait]
pub trait Transcriber: Send + Sync {
    fn name(&self) -> &'static str;
    /// The words spoken in `wav` (16-bit PCM WAV), Korean expected.
    async fn transcribe(&self, wav: &[u8]) -> Result<String, ProviderError>;
}

pub(crate) struct TranscriptionApi {
    settings: HttpSettings,
    client: Client,
}

impl TranscriptionApi {
    pub(crate) fn new(settings: HttpSettings) -> TranscriptionApi {
        TranscriptionApi {
            client: super::http::client_for(&settings),
            settings,
        }
    }
}

#[async_trait]
impl Transcriber for TranscriptionApi {
    fn name(&self) -> &'static str {
        "openai-compatible-transcriptions"
    }

    async fn transcribe(&self, wav: &[u8]) -> Result<String, ProviderError> {
        let file = Part::bytes(wav.to_vec())
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| ProviderError::new(ErrorKind::BadResponse, e.to_string()))?;
        let model = self
            .settings
            .model
            .clone()
            .unwrap_or_else(|| super::openai::DEFAULT_STT_MODEL.to_string());
        let form = Form::new()
            .part("file", file)
            .text("model", model)
            .text("language", "ko")
            .text("response_format", "json");
        let rb = self
            .client
            .post(super::http::endpoint(
                &self.settings,
                "audio/transcriptions",
            ))
            .multipart(form);
        let value = super::http::json_capped(
            super::http::send(super::http::with_bearer(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await?;
        let text = value["text"]
            .as_str()
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "no text in the answer"))?;
        if text.chars().count() > MAX_TRANSCRIPT_CHARS || text.contains('\0') {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                "the transcript is too long or holds NUL",
            ));
        }
        Ok(text.trim().to_string())
    }
}
