//! Voice cloning at an ElevenLabs-compatible provider: `POST /v1/voices/add` (multipart
//! `name` and repeated `files`) and `DELETE /v1/voices/{id}`.

use reqwest::Client;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{ErrorKind, HttpSettings, ProviderError};

pub struct VoiceCloner {
    settings: HttpSettings,
    client: Client,
}

/// One sample to upload: bytes, file name, MIME type.
pub(crate) struct Sample {
    pub bytes: Vec<u8>,
    pub file_name: String,
    pub content_type: &'static str,
}

impl VoiceCloner {
    pub(crate) fn new(settings: HttpSettings) -> VoiceCloner {
        VoiceCloner {
            client: super::http::client_for(&settings),
            settings,
        }
    }

    fn with_key(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            Some(key) => rb.header(
                "xi-api-key",
                String::from_utf8_lossy(key.expose()).into_owned(),
            ),
            None => rb,
        }
    }

    /// Clones a voice from `samples`; returns the provider's voice id.
    pub(crate) async fn clone_voice(
        &self,
        name: &str,
        samples: Vec<Sample>,
    ) -> Result<String, ProviderError> {
        let mut form = Form::new().text("name", name.to_string());
        for sample in samples {
            let part = Part::bytes(sample.bytes)
                .file_name(sample.file_name)
                .mime_str(sample.content_type)
                .map_err(|e| ProviderError::new(ErrorKind::BadResponse, e.to_string()))?;
            form = form.part("files", part);
        }
        let rb = self
            .client
            .post(super::http::endpoint(&self.settings, "v1/voices/add"))
            .multipart(form);
        let value: Value = super::http::send(self.with_key(rb))
            .await?
            .json()
            .await
            .map_err(|e| ProviderError::new(ErrorKind::BadResponse, e.without_url().to_string()))?;
        value["voice_id"]
            .as_str()
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_string)
            .ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, "no voice_id in the answer"))
    }

    /// Deletes a cloned voice at the provider (a voice already gone counts as deleted).
    pub(crate) async fn delete_voice(&self, voice_id: &str) -> Result<(), ProviderError> {
        let id: String = voice_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let rb = self.client.delete(super::http::endpoint(
            &self.settings,
            &format!("v1/voices/{id}"),
        ));
        match super::http::send(self.with_key(rb)).await {
            Ok(_) => Ok(()),
            // Already gone there: deleted is what was asked for.
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
