//! The AI providers' settings: one HTTP provider per capability, or the offline built-in
//! when no base URL is set.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use secrecy::SecretString;

use super::secrets::exposed;
use super::{ConfigArgs, Secret};

/// One provider capability: HTTP when `base_url` is set, else the offline built-in.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_response_bytes: usize,
}

/// `JJONGAL_LLM_TOKEN_LIMIT_PARAM`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TokenLimitParam {
    #[default]
    Auto,
    MaxTokens,
    MaxCompletionTokens,
}

/// `JJONGAL_LLM_TEMPERATURE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TemperatureParam {
    #[default]
    Auto,
    Send,
    Omit,
}

/// Which chat parameters a chat server takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatParams {
    pub token_limit: TokenLimitParam,
    pub temperature: TemperatureParam,
}

#[derive(Clone, Debug)]
pub struct ProvidersConfig {
    pub llm: ProviderConfig,
    pub image: ProviderConfig,
    pub speech: ProviderConfig,
    pub moderation: ProviderConfig,
    pub voice: ProviderConfig,
    pub stt: ProviderConfig,
    pub speech_voice: String,
    pub speech_max_input_chars: usize,
    pub chat: ChatParams,
    pub allow_private_urls: bool,
    pub moderation_threshold: f64,
    pub max_attempts: u32,
    pub backoff: Duration,
    /// How long the offline storyteller types one chapter.
    pub offline_typing: Duration,
}

/// The AI providers (each one HTTP provider, or the offline one when no URL is set).
pub(super) fn providers_config(args: &ConfigArgs) -> anyhow::Result<ProvidersConfig> {
    let mut providers = ProvidersConfig {
        llm: provider(
            &args.llm_base_url,
            &args.llm_api_key,
            &args.llm_model,
            args.llm_timeout,
            args.llm_concurrency,
            args.llm_max_response_mib,
        ),
        image: provider(
            &args.image_base_url,
            &args.image_api_key,
            &args.image_model,
            args.image_timeout,
            args.image_concurrency,
            args.image_max_response_mib,
        ),
        speech: provider(
            &args.speech_base_url,
            &args.speech_api_key,
            &args.speech_model,
            args.speech_timeout,
            args.speech_concurrency,
            args.speech_max_response_mib,
        ),
        moderation: provider(
            &args.moderation_base_url,
            &args.moderation_api_key,
            &args.moderation_model,
            args.moderation_timeout,
            args.moderation_concurrency,
            args.moderation_max_response_mib,
        ),
        voice: provider(
            &args.voice_base_url,
            &args.voice_api_key,
            &args.voice_model,
            args.voice_timeout,
            args.voice_concurrency,
            args.voice_max_response_mib,
        ),
        stt: provider(
            &args.stt_base_url,
            &args.stt_api_key,
            &args.stt_model,
            args.stt_timeout,
            args.stt_concurrency,
            args.stt_max_response_mib,
        ),
        speech_voice: args.speech_voice.clone(),
        speech_max_input_chars: args.speech_max_input_chars as usize,
        chat: ChatParams {
            token_limit: args.llm_token_limit_param,
            temperature: args.llm_temperature,
        },
        allow_private_urls: args.provider_allow_private_urls,
        moderation_threshold: args.moderation_threshold,
        max_attempts: args.provider_max_attempts,
        backoff: Duration::from_millis(args.provider_backoff_ms),
        offline_typing: Duration::from_millis(args.offline_typing_ms),
    };
    for (name, p, shape) in [
        ("LLM", &mut providers.llm, BaseShape::OpenAi),
        ("IMAGE", &mut providers.image, BaseShape::OpenAi),
        ("SPEECH", &mut providers.speech, BaseShape::OpenAi),
        ("MODERATION", &mut providers.moderation, BaseShape::OpenAi),
        ("VOICE", &mut providers.voice, BaseShape::ElevenLabs),
        ("STT", &mut providers.stt, BaseShape::OpenAi),
    ] {
        if let Some(url) = &p.base_url {
            p.base_url = Some(
                normalise_base_url(url, shape)
                    .with_context(|| format!("JJONGAL_{name}_BASE_URL"))?,
            );
        }
    }
    Ok(providers)
}

/// Which API root a provider's base URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseShape {
    /// OpenAI-compatible: the root the paths hang off (`…/v1`); a bare host gets `/v1`
    /// (OpenAI, Ollama, vLLM, llama.cpp, LocalAI all serve there), any other path is
    /// kept as given (Azure-style or proxied roots).
    OpenAi,
    /// ElevenLabs-compatible: the host, with or without `/v1` (the paths add it).
    ElevenLabs,
}

/// A provider base URL in the one form the providers append their paths to.
pub(crate) fn normalise_base_url(url: &str, shape: BaseShape) -> anyhow::Result<String> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|_| anyhow::anyhow!("must be an http(s) URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("must be an http(s) URL");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        bail!("must not have a query or fragment");
    }
    let text = parsed.as_str().trim_end_matches('/').to_string();
    let path = parsed.path().trim_end_matches('/');
    Ok(match shape {
        BaseShape::OpenAi if path.is_empty() => format!("{text}/v1"),
        BaseShape::OpenAi => text,
        BaseShape::ElevenLabs => text.strip_suffix("/v1").map(str::to_string).unwrap_or(text),
    })
}

/// One capability's provider settings.
fn provider(
    base_url: &Option<String>,
    api_key: &Option<SecretString>,
    model: &Option<String>,
    timeout_secs: u64,
    concurrency: u32,
    max_response_mib: u32,
) -> ProviderConfig {
    ProviderConfig {
        base_url: base_url.clone(),
        api_key: exposed(api_key).map(|k| Secret::new(k.as_bytes().to_vec())),
        model: model.clone(),
        timeout: Duration::from_secs(timeout_secs),
        concurrency: concurrency as usize,
        max_response_bytes: max_response_mib as usize * 1024 * 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_base_urls_are_normalised() {
        let open = |u: &str| normalise_base_url(u, BaseShape::OpenAi).unwrap();
        assert_eq!(open("https://api.openai.com"), "https://api.openai.com/v1");
        assert_eq!(open("https://api.openai.com/"), "https://api.openai.com/v1");
        assert_eq!(
            open("https://api.openai.com/v1/"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            open("http://localhost:11434/v1"),
            "http://localhost:11434/v1"
        );
        assert_eq!(
            open("https://proxy.example/openai/v1"),
            "https://proxy.example/openai/v1"
        );
        let eleven = |u: &str| normalise_base_url(u, BaseShape::ElevenLabs).unwrap();
        assert_eq!(
            eleven("https://api.elevenlabs.io"),
            "https://api.elevenlabs.io"
        );
        assert_eq!(
            eleven("https://api.elevenlabs.io/v1"),
            "https://api.elevenlabs.io"
        );
        assert_eq!(
            eleven("https://api.elevenlabs.io/v1/"),
            "https://api.elevenlabs.io"
        );
        for bad in ["ftp://x", "api.openai.com", "http://", "https://x/v1?key=1"] {
            assert!(normalise_base_url(bad, BaseShape::OpenAi).is_err(), "{bad}");
        }
    }
}
