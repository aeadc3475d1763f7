//! AI providers, one trait per capability, each with an HTTP implementation
//! (OpenAI-compatible; ElevenLabs-compatible for voices) and an honest offline one.
//! Configuration picks one per capability (see [`ProviderConfig`]).

pub(crate) mod audio;
pub mod check;
pub mod data_map;
pub(crate) mod guide;
pub mod http;
pub(crate) mod korean;
pub(crate) mod moderation;
pub(crate) mod offline;
pub(crate) mod openai;
pub(crate) mod pictures;
pub(crate) mod plan;
pub(crate) mod retry;
pub(crate) mod story_stream;
pub(crate) mod story_text;
pub(crate) mod transcribe;
pub(crate) mod voice;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::config::Secret;

/// What kind of failure a provider call had; decides whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The call took too long.
    Timeout,
    /// 429 (not a quota problem): retry after `retry_after` if given.
    RateLimited,
    /// 5xx.
    Server,
    /// Connection refused, reset, DNS…
    Network,
    /// Bad or missing API key (401/403).
    Unauthorized,
    /// The account's quota is used up.
    Quota,
    /// The provider refused the content.
    Refused,
    /// An answer we could not use (malformed JSON, wrong shape, 4xx).
    BadResponse,
    /// No such provider is available here (e.g. no `espeak-ng`).
    Unavailable,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server_error",
            ErrorKind::Network => "network",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Quota => "quota",
            ErrorKind::Refused => "refused",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Unavailable => "unavailable",
        }
    }

    /// Whether trying again can succeed.
    pub(crate) fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Network
        )
    }
}

/// A failed provider call. The message never contains API keys.
#[derive(Clone, Debug)]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub retry_after: Option<Duration>,
    pub message: String,
    /// The HTTP status the provider answered with, when it answered.
    pub status: Option<u16>,
    /// The provider's own error code (OpenAI's `error.code`/`error.type`, ElevenLabs'
    /// `detail.status`), when it gave one.
    pub code: Option<String>,
}

impl ProviderError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind,
            retry_after: None,
            message: message.into(),
            status: None,
            code: None,
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// Everything the storyteller needs to write one story.
#[derive(Clone, Debug)]
pub struct StoryRequest {
    pub seed: u64,
    pub theme: String,
    pub characters: Vec<String>,
    pub child_name: String,
    pub child_age: i32,
    pub chapters: usize,
    /// The child's interests, from the conversation.
    pub interests: Vec<String>,
    /// The conversation, oldest first: (role, text); role is `child` or `assistant`.
    pub transcript: Vec<(crate::vocabulary::MessageRole, String)>,
    /// Set when the last chapter asked for is written again (a regeneration).
    pub rewrite: Option<Rewrite>,
}

/// A chapter written again: its words until now, and the chapter after it (which the
/// new one must still lead to).
#[derive(Clone, Debug)]
pub struct Rewrite {
    pub old: GeneratedChapter,
    pub next: Option<GeneratedChapter>,
    /// How many chapters the whole story has.
    pub total: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedChapter {
    pub title: String,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedStory {
    pub title: String,
    pub chapters: Vec<GeneratedChapter>,
}

/// Bytes of a generated illustration or narration.
#[derive(Clone, Debug)]
pub struct Media {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub extension: &'static str,
    /// The provider that made it (its `name()`; [`Providers::made_by`] adds the model).
    pub made_by: &'static str,
}

impl Media {
    /// The bytes with the AI label written into their metadata ([`crate::media::label`]),
    /// `made_by` naming the provider and model. A format the label cannot be written
    /// into is kept as it is, and the log says so.
    pub fn labelled(&self, made_by: &str) -> std::borrow::Cow<'_, [u8]> {
        match crate::media::label::labelled(&self.bytes, &self.content_type, made_by) {
            Some(bytes) => std::borrow::Cow::Owned(bytes),
            None => {
                tracing::warn!(
                    content_type = %self.content_type,
                    made_by,
                    "the AI label could not be written into this file; stored without it"
                );
                std::borrow::Cow::Borrowed(&self.bytes)
            }
        }
    }
}

/// One chapter's picture to draw.
#[derive(Clone, Debug)]
pub struct IllustrationRequest {
    pub seed: u64,
    pub chapter_number: usize,
    pub chapter_title: String,
    pub scene: String,
    /// Where the story happens (the conversation's place, else the theme).
    pub place: String,
    /// The same description in every chapter's prompt, so characters look alike.
    pub character_sheet: String,
    pub characters: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Flagged { categories: Vec<String> },
}

/// What a story writer hands on while it writes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoryPiece {
    /// The story's title (before or with its first chapter).
    Title(String),
    /// More of chapter `number`'s content, as the model writes it (not yet checked by
    /// moderation: the pipeline releases it only in moderated pieces).
    Text { number: usize, delta: String },
    /// Chapter `number` is complete.
    Chapter {
        number: usize,
        chapter: GeneratedChapter,
    },
    /// The writer starts (again): text of an unfinished chapter sent before is void.
    Restart,
}

/// Where a writer puts what it writes: it remembers the title and the chapters so far,
/// so a call that is tried again (or a job resumed) continues after them instead of
/// starting over, and passes each piece on the moment it is complete.
pub struct StorySink {
    so_far: std::sync::Mutex<(Option<String>, Vec<GeneratedChapter>)>,
    tx: tokio::sync::mpsc::UnboundedSender<StoryPiece>,
}

impl StorySink {
    /// A sink that already holds `title` and `chapters` (a resumed story's), and the
    /// receiving end of what is added.
    pub fn new(
        title: Option<String>,
        chapters: Vec<GeneratedChapter>,
    ) -> (StorySink, tokio::sync::mpsc::UnboundedReceiver<StoryPiece>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = StorySink {
            so_far: std::sync::Mutex::new((title, chapters)),
            tx,
        };
        (sink, rx)
    }

    fn so_far(&self) -> std::sync::MutexGuard<'_, (Option<String>, Vec<GeneratedChapter>)> {
        self.so_far.lock().expect("story sink lock")
    }

    /// The title, once written.
    pub fn title(&self) -> Option<String> {
        self.so_far().0.clone()
    }

    /// The chapters written so far.
    pub fn chapters(&self) -> Vec<GeneratedChapter> {
        self.so_far().1.clone()
    }

    /// How many chapters are written.
    pub fn count(&self) -> usize {
        self.so_far().1.len()
    }

    /// The story's title; only the first one counts (a continuation repeats it).
    pub fn put_title(&self, title: String) {
        let mut so_far = self.so_far();
        if so_far.0.is_none() {
            so_far.0 = Some(title.clone());
            let _ = self.tx.send(StoryPiece::Title(title));
        }
    }

    /// A new call of the writer begins: what it sent of an unfinished chapter is void.
    pub fn put_restart(&self) {
        let _ = self.tx.send(StoryPiece::Restart);
    }

    /// More of the chapter being written (the one after those complete).
    pub fn put_text(&self, delta: String) {
        let number = self.count() + 1;
        let _ = self.tx.send(StoryPiece::Text { number, delta });
    }

    /// The next chapter, complete.
    pub fn put_chapter(&self, chapter: GeneratedChapter) {
        let mut so_far = self.so_far();
        so_far.1.push(chapter.clone());
        let number = so_far.1.len();
        let _ = self.tx.send(StoryPiece::Chapter { number, chapter });
    }
}

#[async_trait]
pub trait StoryWriter: Send + Sync {
    fn name(&self) -> &'static str;
    /// Writes the title (when the sink has none) and the chapters after those in `sink`
    /// up to `request.chapters`, putting each into `sink` as it is complete. `Ok` once
    /// every chapter is there; an error leaves what was written in the sink.
    async fn write(&self, request: &StoryRequest, sink: &StorySink) -> Result<(), ProviderError>;
}

#[async_trait]
pub trait Illustrator: Send + Sync {
    fn name(&self) -> &'static str;
    async fn illustrate(&self, request: &IllustrationRequest) -> Result<Media, ProviderError>;
}

#[async_trait]
pub trait Narrator: Send + Sync {
    fn name(&self) -> &'static str;
    /// Narrates `text`, in the cloned voice `voice_id` when given and supported.
    async fn narrate(&self, text: &str, voice_id: Option<&str>) -> Result<Media, ProviderError>;
}

#[async_trait]
pub trait Moderator: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self, texts: &[String]) -> Result<Verdict, ProviderError>;
}

/// Settings of one HTTP provider (`JJONGAL_<CAPABILITY>_*`).
#[derive(Clone, Debug)]
pub(crate) struct HttpSettings {
    /// Normalised: no trailing `/`; OpenAI-compatible bases end in their API root
    /// (`/v1` added to a bare host), ElevenLabs-compatible ones have no `/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    pub timeout: Duration,
    /// Largest answer body read from this provider.
    pub max_response_bytes: usize,
    /// Whether media URLs the provider answers with may point at loopback or private
    /// addresses (local providers).
    pub allow_private_urls: bool,
    /// Which chat parameters to send (chat capability only).
    pub chat: crate::config::ChatParams,
}

/// The HTTP settings of capability `p`, when it has a base URL (else it is offline).
pub(crate) fn http_settings(
    p: &crate::config::ProviderConfig,
    config: &crate::config::ProvidersConfig,
) -> Option<HttpSettings> {
    p.base_url.as_ref().map(|base_url| HttpSettings {
        base_url: base_url.clone(),
        api_key: p.api_key.clone(),
        model: p.model.clone(),
        timeout: p.timeout,
        max_response_bytes: p.max_response_bytes,
        allow_private_urls: config.allow_private_urls,
        chat: config.chat,
    })
}

/// Retry policy for provider calls.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// The providers the service runs with, and the concurrency bound of each.
#[derive(Clone)]
pub struct Providers {
    pub writer: Arc<dyn StoryWriter>,
    pub illustrator: Arc<dyn Illustrator>,
    pub narrator: Arc<dyn Narrator>,
    /// Used instead of `narrator` when the account has a cloned voice.
    pub voice_narrator: Option<Arc<dyn Narrator>>,
    pub moderator: Arc<dyn Moderator>,
    pub guide: Arc<dyn guide::Guide>,
    /// Voice cloning, when a voice provider is configured.
    pub cloner: Option<Arc<voice::VoiceCloner>>,
    /// Speech-to-text for raw-PCM utterances, when configured (there is no offline one).
    pub transcriber: Option<Arc<dyn transcribe::Transcriber>>,
    /// Used when the stock `narrator` is an HTTP one and fails.
    pub offline_narrator: Option<Arc<dyn Narrator>>,
    /// One bound per capability: every provider call takes its capability's slot (the
    /// story writer and the conversation guide share the chat model's).
    pub writer_slots: Arc<Semaphore>,
    pub image_slots: Arc<Semaphore>,
    pub speech_slots: Arc<Semaphore>,
    pub moderation_slots: Arc<Semaphore>,
    pub voice_slots: Arc<Semaphore>,
    pub stt_slots: Arc<Semaphore>,
    pub retry: RetryPolicy,
    /// Where a family's data goes in this configuration ([`data_map`]): made once at
    /// start-up, for the logs, the `/privacy` page and the voice-cloning consent text.
    pub data_map: Arc<[data_map::DataFlow]>,
    /// The model each HTTP provider asks for, by the provider's `name()`.
    models: Arc<std::collections::HashMap<&'static str, String>>,
}

/// Which capabilities have a provider configured (and whether `espeak-ng` is here), to
/// tell at start-up which run offline or not at all, and how to enable them.
struct Capabilities {
    llm: bool,
    image: bool,
    speech: bool,
    espeak: bool,
    moderation: bool,
    voice: bool,
    stt: bool,
}

impl Capabilities {
    /// One line per capability that is not an HTTP provider: `true` when it is absent
    /// (a warning), `false` when the built-in offline provider does it.
    fn notices(&self) -> Vec<(bool, &'static str)> {
        let mut notices = Vec::new();
        if !self.llm {
            notices.push((false, "story text and conversation guide: offline (built-in templates and rules) — set JJONGAL_LLM_BASE_URL and JJONGAL_LLM_API_KEY for a model"));
        }
        if !self.image {
            notices.push((false, "illustrations: offline (built-in pictures) — set JJONGAL_IMAGE_BASE_URL and JJONGAL_IMAGE_API_KEY for generated images"));
        }
        match (self.speech, self.espeak) {
            (true, true) => {}
            (true, false) => notices.push((false, "narration fallback: none (espeak-ng is not installed) — install espeak-ng to narrate when the speech provider fails")),
            (false, true) => notices.push((false, "narration: offline (espeak-ng) — set JJONGAL_SPEECH_BASE_URL and JJONGAL_SPEECH_API_KEY for natural voices")),
            (false, false) => notices.push((true, "narration: none, stories and replies have no audio — install espeak-ng (e.g. apt install espeak-ng) or set JJONGAL_SPEECH_BASE_URL and JJONGAL_SPEECH_API_KEY")),
        }
        if !self.moderation {
            notices.push((false, "moderation: offline (a built-in word list only) — set JJONGAL_MODERATION_BASE_URL and JJONGAL_MODERATION_API_KEY before real families use the service"));
        }
        if !self.voice {
            notices.push((true, "cloned voice: none, narration never uses a parent's voice — set JJONGAL_VOICE_BASE_URL and JJONGAL_VOICE_API_KEY"));
        }
        if !self.stt {
            notices.push((true, "speech-to-text: none, raw-PCM speech on the conversation socket is not understood — set JJONGAL_STT_BASE_URL and JJONGAL_STT_API_KEY"));
        }
        notices
    }
}

/// One way to narrate, in the order they are tried.
pub(crate) struct NarrationOption {
    pub narrator: Arc<dyn Narrator>,
    /// The cloned voice, for the cloned-voice narrator.
    pub voice: Option<String>,
    pub slots: Arc<Semaphore>,
}

impl Providers {
    /// Builds the providers configuration asks for: HTTP where a base URL is set, the
    /// offline built-ins elsewhere.
    pub fn from_config(config: &crate::config::ProvidersConfig) -> Providers {
        let http = |p: &crate::config::ProviderConfig| http_settings(p, config);
        let guide: Arc<dyn guide::Guide> = match http(&config.llm) {
            Some(s) => Arc::new(guide::ChatGuide::new(s)),
            None => Arc::new(guide::RuleGuide),
        };
        let writer: Arc<dyn StoryWriter> = match http(&config.llm) {
            Some(s) => Arc::new(openai::ChatStoryWriter::new(s)),
            None => Arc::new(offline::TemplateWriter {
                typing: config.offline_typing,
            }),
        };
        let illustrator: Arc<dyn Illustrator> = match http(&config.image) {
            Some(s) => Arc::new(openai::ImagesIllustrator::new(s)),
            None => Arc::new(offline::SvgIllustrator),
        };
        let espeak = offline::EspeakNarrator::detect();
        let (narrator, offline_narrator): (Arc<dyn Narrator>, Option<Arc<dyn Narrator>>) =
            match http(&config.speech) {
                Some(s) => (
                    Arc::new(openai::SpeechNarrator::new(
                        s,
                        config.speech_voice.clone(),
                        config.speech_max_input_chars,
                    )),
                    Some(Arc::new(espeak.clone())),
                ),
                None => (Arc::new(espeak.clone()), None),
            };
        let cloner = http(&config.voice).map(|s| Arc::new(voice::VoiceCloner::new(s)));
        let voice_narrator: Option<Arc<dyn Narrator>> = http(&config.voice)
            .map(|s| Arc::new(voice::ElevenLabsNarrator::new(s)) as Arc<dyn Narrator>);
        let transcriber = http(&config.stt).map(|s| {
            Arc::new(transcribe::TranscriptionApi::new(s)) as Arc<dyn transcribe::Transcriber>
        });
        let moderator: Arc<dyn Moderator> = match http(&config.moderation) {
            Some(s) => Arc::new(moderation::Layered {
                api: openai::ModerationApi::new(s, config.moderation_threshold),
            }),
            None => Arc::new(moderation::Blocklist),
        };
        tracing::info!(
            storyteller = writer.name(),
            illustrator = illustrator.name(),
            narrator = narrator.name(),
            cloned_voice = voice_narrator.as_ref().map(|n| n.name()).unwrap_or("none"),
            moderator = moderator.name(),
            guide = guide.name(),
            speech_to_text = transcriber.as_ref().map(|t| t.name()).unwrap_or("none"),
            "providers (names starting with offline- are the built-in offline ones)"
        );
        let capabilities = Capabilities {
            llm: http(&config.llm).is_some(),
            image: http(&config.image).is_some(),
            speech: http(&config.speech).is_some(),
            espeak: espeak.is_installed(),
            moderation: http(&config.moderation).is_some(),
            voice: cloner.is_some(),
            stt: transcriber.is_some(),
        };
        // What leaves this server, and for where (what stays is said by the notices).
        let data_map: Arc<[data_map::DataFlow]> =
            data_map::data_map(config, espeak.is_installed()).into();
        for flow in data_map.iter() {
            if flow.leaves() {
                tracing::info!("family data sent: {flow}");
            }
        }
        for (absent, notice) in capabilities.notices() {
            if absent {
                tracing::warn!("{notice}");
            } else {
                tracing::info!("{notice}");
            }
        }
        let slots = |p: &crate::config::ProviderConfig| Arc::new(Semaphore::new(p.concurrency));
        // The model each HTTP provider asks for is the data map's (one place says it).
        let model_of = |capability: &str| {
            data_map
                .iter()
                .find(|flow| flow.capability == capability)
                .and_then(|flow| match &flow.destination {
                    data_map::Destination::Provider { model, .. } => Some(model.clone()),
                    _ => None,
                })
        };
        let makers = [
            (writer.name(), "llm"),
            (guide.name(), "llm"),
            (illustrator.name(), "image"),
            (narrator.name(), "speech"),
        ];
        let models: std::collections::HashMap<&'static str, String> = makers
            .into_iter()
            .chain(voice_narrator.as_ref().map(|n| (n.name(), "voice")))
            .filter_map(|(name, capability)| Some((name, model_of(capability)?)))
            .collect();
        Providers {
            models: Arc::new(models),
            writer,
            illustrator,
            narrator,
            voice_narrator,
            offline_narrator,
            moderator,
            guide,
            cloner,
            transcriber,
            writer_slots: slots(&config.llm),
            image_slots: slots(&config.image),
            speech_slots: slots(&config.speech),
            moderation_slots: slots(&config.moderation),
            voice_slots: slots(&config.voice),
            stt_slots: slots(&config.stt),
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                base_delay: config.backoff,
                max_delay: Duration::from_secs(30),
            },
            data_map,
        }
    }

    /// Who made something: the provider's name, with the model an HTTP provider asks
    /// for (`openai-images (gpt-image-1)`); the offline ones are their name.
    pub fn made_by(&self, provider: &str) -> String {
        match self.models.get(provider) {
            Some(model) => format!("{provider} ({model})"),
            None => provider.to_string(),
        }
    }

    /// Narrates `text` down the narration chain for `voice` (see [`Self::narration_chain`]):
    /// each narrator in one of its capability's slots, with the retry policy, every
    /// attempt reported to `observe(provider, attempt)`; each step down is logged at warn
    /// (naming `context`) and counted under `step`. When none succeeds, the error is the
    /// first real failure (not a narrator that is merely not installed).
    pub(crate) async fn narrate(
        &self,
        text: &str,
        voice: Option<&str>,
        step: &str,
        context: &str,
        metrics: &crate::metrics::Metrics,
        mut observe: impl FnMut(&'static str, retry::Attempt<'_>),
    ) -> Result<Media, ProviderError> {
        let chain = self.narration_chain(voice);
        let mut telling: Option<ProviderError> = None;
        for (i, option) in chain.iter().enumerate() {
            let narrator = &option.narrator;
            let name = narrator.name();
            let result = match option.slots.acquire().await {
                Ok(_slot) => {
                    retry::with_retry(
                        self.retry,
                        || narrator.narrate(text, option.voice.as_deref()),
                        |a| observe(name, a),
                    )
                    .await
                }
                Err(_) => Err(ProviderError::new(ErrorKind::Unavailable, "shutting down")),
            };
            let e = match result {
                Ok(media) => return Ok(media),
                Err(e) => e,
            };
            if let Some(next) = chain.get(i + 1) {
                let to = next.narrator.name();
                tracing::warn!(context, from = name, to, error = %e, "narrator failed; falling back");
                metrics.record_fallback(step, name, to);
            }
            if telling
                .as_ref()
                .is_none_or(|t| t.kind == ErrorKind::Unavailable)
            {
                telling = Some(e);
            }
        }
        Err(telling.expect("the narration chain is never empty"))
    }

    /// The narrators to try, in order, for an account with cloned voice `voice`: the
    /// cloned voice (when there is one and a voice provider), the stock narrator, then
    /// the offline one when the stock narrator is an HTTP provider.
    pub(crate) fn narration_chain(&self, voice: Option<&str>) -> Vec<NarrationOption> {
        let mut chain = Vec::with_capacity(3);
        if let (Some(narrator), Some(voice)) = (&self.voice_narrator, voice) {
            chain.push(NarrationOption {
                narrator: narrator.clone(),
                voice: Some(voice.to_string()),
                slots: self.voice_slots.clone(),
            });
        }
        chain.push(NarrationOption {
            narrator: self.narrator.clone(),
            voice: None,
            slots: self.speech_slots.clone(),
        });
        if let Some(offline) = &self.offline_narrator {
            chain.push(NarrationOption {
                narrator: offline.clone(),
                voice: None,
                // The offline narrator runs on this machine: the same bound as speech.
                slots: self.speech_slots.clone(),
            });
        }
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::Capabilities;

    fn capabilities(espeak: bool) -> Capabilities {
        Capabilities {
            llm: false,
            image: false,
            speech: false,
            espeak,
            moderation: false,
            voice: false,
            stt: false,
        }
    }

    /// Start-up names every capability that is offline or absent, and how to enable it;
    /// narration without espeak-ng is absent (a warning), not "offline-espeak-ng".
    #[test]
    fn start_up_says_which_capabilities_are_offline_or_absent() {
        let without = capabilities(false).notices();
        let narration = without
            .iter()
            .find(|(_, n)| n.starts_with("narration"))
            .unwrap();
        assert!(narration.0, "absent: a warning");
        assert!(narration.1.contains("install espeak-ng"));
        assert!(narration.1.contains("JJONGAL_SPEECH_BASE_URL"));
        assert_eq!(without.len(), 6);
        assert_eq!(without.iter().filter(|(absent, _)| *absent).count(), 3);

        let with = capabilities(true).notices();
        let narration = with
            .iter()
            .find(|(_, n)| n.starts_with("narration"))
            .unwrap();
        assert_eq!(
            *narration,
            (
                false,
                "narration: offline (espeak-ng) — set JJONGAL_SPEECH_BASE_URL and JJONGAL_SPEECH_API_KEY for natural voices"
            )
        );

        let all = Capabilities {
            llm: true,
            image: true,
            speech: true,
            espeak: true,
            moderation: true,
            voice: true,
            stt: true,
        };
        assert!(
            all.notices().is_empty(),
            "nothing to say when all are configured"
        );
    }
}
