//! `jjongal providers check`: one minimal real call to every configured provider, so an
//! operator sees a wrong base URL, key or model at deploy time rather than from a
//! child's failed story. Each line says OK, or the provider's own answer (URL, status,
//! error code and message).

use std::fmt;
use std::time::Duration;

use super::openai::{ChatCall, ImagesIllustrator, ModerationApi, SpeechNarrator, chat};
use super::transcribe::{Transcriber, TranscriptionApi};
use super::voice::VoiceCloner;
use super::{
    HttpSettings, IllustrationRequest, Illustrator, Moderator, Narrator, ProviderError,
    http_settings,
};
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

/// Calls every configured provider once (no retries, all at once) and reports each;
/// with a `deadline`, a capability that has not answered by then is reported as such
/// (a request's own timeout must not swallow the whole report).
pub async fn check_all(config: &ProvidersConfig, deadline: Option<Duration>) -> Vec<CheckLine> {
    let (llm, image, speech, moderation, voice, stt) = futures_util::join!(
        check_llm(config, deadline),
        check_image(config, deadline),
        check_speech(config, deadline),
        check_moderation(config, deadline),
        check_voice(config, deadline),
        check_stt(config, deadline),
    );
    vec![llm, image, speech, moderation, voice, stt]
}

/// One capability's line: offline when it has no base URL, else what `call` found.
async fn checked<F, Fut>(
    capability: &'static str,
    p: &crate::config::ProviderConfig,
    config: &ProvidersConfig,
    deadline: Option<Duration>,
    call: F,
) -> CheckLine
where
    F: FnOnce(HttpSettings) -> Fut,
    Fut: std::future::Future<Output = Result<(), ProviderError>>,
{
    match http_settings(p, config) {
        Some(s) => {
            let url = Some(s.base_url.clone());
            let outcome = match deadline {
                None => call(s).await,
                Some(deadline) => tokio::time::timeout(deadline, call(s))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ProviderError::new(
                            super::ErrorKind::Timeout,
                            format!(
                                "no answer within {} s here (`jjongal providers check` waits the full timeout)",
                                deadline.as_secs()
                            ),
                        ))
                    }),
            };
            CheckLine {
                capability,
                url,
                outcome,
            }
        }
        None => CheckLine {
            capability,
            url: None,
            outcome: Ok(()),
        },
    }
}

async fn check_llm(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked("llm", &config.llm, config, deadline, async |s| {
        let client = super::http::client_for(&s);
        let messages =
            [serde_json::json!({"role": "user", "content": "Answer with the single word OK."})];
        let call = ChatCall {
            messages: &messages,
            temperature: 0.0,
            max_tokens: Some(5),
            json: false,
        };
        chat(&client, &s, &call).await.map(|_| ())
    })
    .await
}

async fn check_image(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked("image", &config.image, config, deadline, async |s| {
        let request = IllustrationRequest {
            seed: 0,
            chapter_number: 1,
            chapter_title: "check".into(),
            scene: "a small yellow star".into(),
            place: String::new(),
            character_sheet: "a small yellow star".into(),
            characters: vec![],
        };
        ImagesIllustrator::new(s)
            .illustrate(&request)
            .await
            .map(|_| ())
    })
    .await
}

async fn check_speech(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked("speech", &config.speech, config, deadline, async |s| {
        let narrator = SpeechNarrator::new(
            s,
            config.speech_voice.clone(),
            config.speech_max_input_chars,
        );
        narrator.narrate("안녕.", None).await.map(|_| ())
    })
    .await
}

async fn check_moderation(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked(
        "moderation",
        &config.moderation,
        config,
        deadline,
        async |s| {
            let api = ModerationApi::new(s, config.moderation_threshold);
            api.check(&["hello".to_string()]).await.map(|_| ())
        },
    )
    .await
}

/// Deleting a voice that does not exist: the provider must say it does not know it
/// (key and URL right), which clones and spends nothing.
async fn check_voice(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked("voice", &config.voice, config, deadline, async |s| {
        VoiceCloner::new(s)
            .delete_voice("jjongal-providers-check-no-such-voice")
            .await
    })
    .await
}

async fn check_stt(config: &ProvidersConfig, deadline: Option<Duration>) -> CheckLine {
    checked("stt", &config.stt, config, deadline, async |s| {
        TranscriptionApi::new(s)
            .transcribe(&silence())
            .await
            .map(|_| ())
    })
    .await
}
