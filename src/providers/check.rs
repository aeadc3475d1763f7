//! `jjongal providers check`: one minimal real call to every configured provider, so an
//! operator sees a wrong base URL, key or model at deploy time rather than from a
//! child's failed story. Each line says OK, or the provider's own answer (URL, status,
//! error code and message).

use std::fmt;

use super::openai::{ChatCall, ImagesIllustrator, ModerationApi, SpeechNarrator, chat};
use super::transcribe::{Transcriber, TranscriptionApi};
use super::voice::VoiceCloner;
use super::{IllustrationRequest, Illustrator, Moderator, Narrator, ProviderError, http_settings};
use crate::config::ProvidersConfig;

/// What one capability's check found.
pub struct CheckLine {
    pub capability: &'static str,
    /// The base URL called; `None` when the capability runs on the offline built-in.
    pub url: Option<String>,
    pub outcome: Result<(), ProviderError>,
}

impl CheckLine {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.url, &self.outcome) {
            (None, _) => write!(
                f,
                "{:<11} offline built-in (nothing to call)",
                self.capability
            ),
            (Some(url), Ok(())) => write!(f, "{:<11} OK      {url}", self.capability),
            // The message carries the status and the provider's own code and words.
            (Some(url), Err(e)) => write!(
                f,
                "{:<11} FAILED  {url}: {} [{}]",
                self.capability,
                e.message,
                e.kind.as_str()
            ),
        }
    }
}

/// A 0.25 s silent WAV: the smallest honest speech-to-text input.
fn silence() -> Vec<u8> {
    crate::domain::voices::pcm_wav(16_000, &[0u8; 8000])
}

/// Calls every configured provider once (no retries) and reports each.
pub async fn check_all(config: &ProvidersConfig) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let mut line = |capability, url: Option<&String>, outcome| {
        lines.push(CheckLine {
            capability,
            url: url.cloned(),
            outcome,
        })
    };

    match http_settings(&config.llm, config) {
        Some(s) => {
            let client = super::http::client_for(&s);
            let messages =
                [serde_json::json!({"role": "user", "content": "Answer with the single word OK."})];
            let call = ChatCall {
                messages: &messages,
                temperature: 0.0,
                max_tokens: Some(5),
                json: false,
            };
            let outcome = chat(&client, &s, &call).await.map(|_| ());
            line("llm", Some(&s.base_url), outcome);
        }
        None => line("llm", None, Ok(())),
    }
    match http_settings(&config.image, config) {
        Some(s) => {
            let url = s.base_url.clone();
            let request = IllustrationRequest {
                seed: 0,
                chapter_number: 1,
                chapter_title: "check".into(),
                scene: "a small yellow star".into(),
                character_sheet: "a small yellow star".into(),
                characters: vec![],
            };
            let outcome = ImagesIllustrator::new(s)
                .illustrate(&request)
                .await
                .map(|_| ());
            line("image", Some(&url), outcome);
        }
        None => line("image", None, Ok(())),
    }
    match http_settings(&config.speech, config) {
        Some(s) => {
            let url = s.base_url.clone();
            let narrator = SpeechNarrator::new(
                s,
                config.speech_voice.clone(),
                config.speech_max_input_chars,
            );
            let outcome = narrator.narrate("안녕.", None).await.map(|_| ());
            line("speech", Some(&url), outcome);
        }
        None => line("speech", None, Ok(())),
    }
    match http_settings(&config.moderation, config) {
        Some(s) => {
            let url = s.base_url.clone();
            let api = ModerationApi::new(s, config.moderation_threshold);
            let outcome = api.check(&["hello".to_string()]).await.map(|_| ());
            line("moderation", Some(&url), outcome);
        }
        None => line("moderation", None, Ok(())),
    }
    match http_settings(&config.voice, config) {
        Some(s) => {
            // Deleting a voice that does not exist: the provider must say it does not
            // know it (key and URL right), which clones and spends nothing.
            let url = s.base_url.clone();
            let outcome = VoiceCloner::new(s)
                .delete_voice("jjongal-providers-check-no-such-voice")
                .await;
            line("voice", Some(&url), outcome);
        }
        None => line("voice", None, Ok(())),
    }
    match http_settings(&config.stt, config) {
        Some(s) => {
            let url = s.base_url.clone();
            let outcome = TranscriptionApi::new(s)
                .transcribe(&silence())
                .await
                .map(|_| ());
            line("stt", Some(&url), outcome);
        }
        None => line("stt", None, Ok(())),
    }
    lines
}
