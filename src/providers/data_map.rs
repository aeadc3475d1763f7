//! Where a family's data goes: for each capability, what it receives and where that is
//! sent in *this* configuration — a provider's address and model, this server itself (the
//! offline built-ins, `espeak-ng`), or nowhere. Made from the configuration, so it is
//! what the running service does: logged at start-up, printed by
//! `jjongal providers check`, and the source for the guardian's consent text
//! (docs/privacy.md explains it).

use std::fmt;

use super::openai::{
    DEFAULT_CHAT_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_MODERATION_MODEL, DEFAULT_SPEECH_MODEL,
    DEFAULT_STT_MODEL,
};
use super::voice::DEFAULT_TTS_MODEL;
use crate::config::{ProviderConfig, ProvidersConfig};

/// Where one capability's data goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// An HTTP provider: its base URL (never a key) and the model asked for.
    Provider { url: String, model: String },
    /// Stays on this server (an offline built-in).
    ThisServer(&'static str),
    /// Not done at all, so nothing is sent.
    Nowhere(&'static str),
}

/// One capability: what it receives and where it goes.
#[derive(Clone, Debug)]
pub struct DataFlow {
    pub capability: &'static str,
    pub receives: &'static str,
    pub destination: Destination,
}

impl DataFlow {
    /// Whether the data leaves this server.
    pub fn leaves(&self) -> bool {
        matches!(self.destination, Destination::Provider { .. })
    }
}

impl fmt::Display for DataFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = match &self.destination {
            Destination::Provider { url, model } => format!("→ {url} (model {model})"),
            Destination::ThisServer(what) => format!("stays on this server ({what})"),
            Destination::Nowhere(why) => format!("not sent anywhere ({why})"),
        };
        write!(f, "{:<11} {to}: {}", self.capability, self.receives)
    }
}

/// What each capability receives (docs/providers.md, *What each provider receives*).
const TEXT: &str = "the story request (theme, characters, length), the child's name, age and \
    interests, the conversation's last 40 messages; for the guide, its last 30 messages \
    (words the moderator flagged are left out)";
const IMAGE: &str = "a chapter's title and first 400 characters, and the cast (the child's \
    name and age, the characters)";
const SPEECH: &str = "each chapter's title and text; the guide's replies";
const MODERATION: &str =
    "the story request, the child's words, every written chapter, every guide reply";
const VOICE: &str = "the guardian's voice samples (complete audio files, only after the \
    guardian's voice-cloning consent) once, to clone; then chapter texts and guide replies to \
    narrate";
const STT: &str = "the child's spoken utterances (raw-PCM mode), as WAV, once (then dropped)";

/// The map of this machine's configuration (whether `espeak-ng` is installed here).
pub fn data_map_here(config: &ProvidersConfig) -> Vec<DataFlow> {
    data_map(
        config,
        super::offline::EspeakNarrator::detect().is_installed(),
    )
}

/// The map for `config` (`espeak`: whether `espeak-ng` narrates when no speech provider
/// is set).
pub fn data_map(config: &ProvidersConfig, espeak: bool) -> Vec<DataFlow> {
    let to = |p: &ProviderConfig, default_model: &str, otherwise: Destination| match &p.base_url {
        Some(url) => Destination::Provider {
            url: url.clone(),
            model: p.model.clone().unwrap_or_else(|| default_model.to_string()),
        },
        None => otherwise,
    };
    let narration = if espeak {
        Destination::ThisServer("espeak-ng")
    } else {
        Destination::Nowhere("no narration")
    };
    vec![
        DataFlow {
            capability: "llm",
            receives: TEXT,
            destination: to(
                &config.llm,
                DEFAULT_CHAT_MODEL,
                Destination::ThisServer("offline storyteller and guide"),
            ),
        },
        DataFlow {
            capability: "image",
            receives: IMAGE,
            destination: to(
                &config.image,
                DEFAULT_IMAGE_MODEL,
                Destination::ThisServer("offline pictures"),
            ),
        },
        DataFlow {
            capability: "speech",
            receives: SPEECH,
            destination: to(&config.speech, DEFAULT_SPEECH_MODEL, narration),
        },
        DataFlow {
            capability: "moderation",
            receives: MODERATION,
            destination: to(
                &config.moderation,
                DEFAULT_MODERATION_MODEL,
                Destination::ThisServer("offline word list"),
            ),
        },
        DataFlow {
            capability: "voice",
            receives: VOICE,
            destination: to(
                &config.voice,
                DEFAULT_TTS_MODEL,
                Destination::Nowhere("no voice cloning; samples stay on this server"),
            ),
        },
        DataFlow {
            capability: "stt",
            receives: STT,
            destination: to(
                &config.stt,
                DEFAULT_STT_MODEL,
                Destination::Nowhere("no speech-to-text"),
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(timeout_secs: u64) -> ProviderConfig {
        ProviderConfig {
            base_url: None,
            api_key: None,
            model: None,
            timeout: std::time::Duration::from_secs(timeout_secs),
            concurrency: 1,
            max_response_bytes: 1024,
        }
    }

    fn config(llm: Option<&str>, voice: Option<&str>) -> ProvidersConfig {
        let mut config = ProvidersConfig {
            llm: offline(1),
            image: offline(1),
            speech: offline(1),
            moderation: offline(1),
            voice: offline(1),
            stt: offline(1),
            speech_voice: "alloy".into(),
            speech_max_input_chars: 4096,
            chat: Default::default(),
            allow_private_urls: false,
            moderation_threshold: 0.5,
            max_attempts: 1,
            backoff: std::time::Duration::ZERO,
            offline_typing: std::time::Duration::ZERO,
        };
        config.llm.base_url = llm.map(str::to_string);
        config.llm.model = Some("llama3".into());
        config.voice.base_url = voice.map(str::to_string);
        config
    }

    #[test]
    fn the_map_follows_the_configuration() {
        let offline = data_map(&config(None, None), false);
        assert_eq!(offline.len(), 6);
        assert!(offline.iter().all(|f| !f.leaves()), "{offline:?}");
        assert_eq!(offline[2].destination, Destination::Nowhere("no narration"));
        let map = data_map(
            &config(
                Some("http://localhost:11434/v1"),
                Some("https://api.elevenlabs.io"),
            ),
            true,
        );
        assert_eq!(
            map[0].destination,
            Destination::Provider {
                url: "http://localhost:11434/v1".into(),
                model: "llama3".into()
            }
        );
        assert_eq!(
            map[4].destination,
            Destination::Provider {
                url: "https://api.elevenlabs.io".into(),
                model: DEFAULT_TTS_MODEL.into()
            }
        );
        assert_eq!(map[2].destination, Destination::ThisServer("espeak-ng"));
        // The guardians' page shows the same, as HTML.
        let page = crate::docs::privacy_page(&map);
        assert!(
            page.contains("<code>http://localhost:11434/v1</code>, model <code>llama3</code>"),
            "{page}"
        );
        let line = map[0].to_string();
        assert!(
            line.starts_with(
                "llm         → http://localhost:11434/v1 (model llama3): the story request"
            ),
            "{line}"
        );
    }
}
