//! ElevenLabs-compatible voices: cloning (`POST /v1/voices/add`, multipart `name` and
//! repeated `files`), deleting (`DELETE /v1/voices/{id}`) and narration in a cloned
//! voice (`POST /v1/text-to-speech/{id}`). The base URL is the API's root, with or
//! without `/v1` (normalised in configuration).

use async_trait::async_trait;
use reqwest::Client;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use super::http::{client_for, endpoint, json_capped, read_capped, send, with_xi_key};
use super::openai::narrate_in_pieces;
use super::{ErrorKind, HttpSettings, Media, Narrator, ProviderError};

/// The text-to-speech model used when none is configured.
pub(crate) const DEFAULT_TTS_MODEL: &str = "eleven_multilingual_v2";

/// Characters sent in one text-to-speech call (the multilingual model takes 10,000; a
/// smaller piece fails and retries cheaper).
const MAX_TTS_CHARS: usize = 5000;

/// ElevenLabs' `detail.status` for a voice that is not (or no longer) there.
pub(crate) fn is_missing_voice(e: &ProviderError) -> bool {
    matches!(e.status, Some(400 | 404))
        && matches!(
            e.code.as_deref(),
            Some("voice_not_found" | "voice_does_not_exist")
        )
}

/// A voice id as it may go into a URL path.
fn path_safe(voice_id: &str) -> String {
    voice_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

pub struct VoiceCloner {
    settings: HttpSettings,
    client: Client,
}

/// One sample to upload: bytes, file name, MIME type.
#[derive(Clone)]
pub(crate) struct Sample {
    pub bytes: Vec<u8>,
    pub file_name: String,
    pub content_type: &'static str,
}

impl VoiceCloner {
    pub(crate) fn new(settings: HttpSettings) -> VoiceCloner {
        VoiceCloner {
            client: client_for(&settings),
            settings,
        }
    }

    /// Clones a voice from `samples`; returns the provider's voice id.
    pub(crate) async fn clone_voice(
        &self,
        name: &str,
        samples: &[Sample],
    ) -> Result<String, ProviderError> {
        let mut form = Form::new().text("name", name.to_string());
        for sample in samples {
            let part = Part::bytes(sample.bytes.clone())
                .file_name(sample.file_name.clone())
                .mime_str(sample.content_type)
                .map_err(|e| ProviderError::new(ErrorKind::BadResponse, e.to_string()))?;
            form = form.part("files", part);
        }
        let rb = self
            .client
            .post(endpoint(&self.settings, "v1/voices/add"))
            .multipart(form);
        let value = json_capped(
            send(with_xi_key(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await?;
        value["voice_id"]
            .as_str()
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_string)
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "no voice_id in the answer"))
    }

    /// Deletes a cloned voice at the provider. A voice the provider says it does not know
    /// (`voice_not_found` / `voice_does_not_exist`) counts as deleted; a bare 404 does
    /// not (a wrong base URL answers that too, and the voice would stay).
    pub(crate) async fn delete_voice(&self, voice_id: &str) -> Result<(), ProviderError> {
        let rb = self.client.delete(endpoint(
            &self.settings,
            &format!("v1/voices/{}", path_safe(voice_id)),
        ));
        match send(with_xi_key(rb, &self.settings)).await {
            Ok(response) => {
                read_capped(response, self.settings.max_response_bytes).await?;
                Ok(())
            }
            Err(e) if is_missing_voice(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// ElevenLabs-compatible text-to-speech, for cloned voices.
pub(crate) struct ElevenLabsNarrator {
    settings: HttpSettings,
    client: Client,
}

impl ElevenLabsNarrator {
    pub(crate) fn new(settings: HttpSettings) -> ElevenLabsNarrator {
        ElevenLabsNarrator {
            client: client_for(&settings),
            settings,
        }
    }

    async fn piece(&self, voice: &str, text: String) -> Result<Vec<u8>, ProviderError> {
        let rb = self
            .client
            .post(endpoint(
                &self.settings,
                &format!("v1/text-to-speech/{voice}"),
            ))
            .header("accept", "audio/mpeg")
            .json(&json!({
                "text": text,
                "model_id": self.settings.model.as_deref().unwrap_or(DEFAULT_TTS_MODEL),
            }));
        read_capped(
            send(with_xi_key(rb, &self.settings)).await?,
            self.settings.max_response_bytes,
        )
        .await
    }
}

#[async_trait]
impl Narrator for ElevenLabsNarrator {
    fn name(&self) -> &'static str {
        "elevenlabs-tts"
    }

    async fn narrate(&self, text: &str, voice_id: Option<&str>) -> Result<Media, ProviderError> {
        let Some(voice) = voice_id.map(path_safe).filter(|v| !v.is_empty()) else {
            return Err(ProviderError::new(ErrorKind::Unavailable, "no voice id"));
        };
        narrate_in_pieces(self.name(), text, MAX_TTS_CHARS, |p| self.piece(&voice, p)).await
    }
}
