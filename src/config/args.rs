//! The settings as clap reads them: every flag with its `JJONGAL_*` variable and default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use clap::builder::TypedValueParser;
use secrecy::SecretString;

use super::{Environment, LogFormat, SampleRetention, TemperatureParam, TokenLimitParam};

/// Flags and environment variables. Every flag can be given after any subcommand.
/// The secrets and API keys are [`SecretString`]s from the moment they are parsed, so
/// `Debug` shows them redacted. A setting set but blank is refused as it is parsed
/// ([`NonBlank`]), naming it.
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Address the public HTTP listener binds: this machine only by default (a
    /// development server has open sign-up and generated secrets); `0.0.0.0:8000` to be
    /// reached from other devices.
    #[arg(
        long,
        env = "JJONGAL_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: SocketAddr,
    /// Database URL: `postgres://…` selects PostgreSQL; anything else is a SQLite file
    /// path. Default: `<data dir>/jjongal.db`.
    #[arg(
        long,
        env = "JJONGAL_DATABASE_URL",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub database_url: Option<SecretString>,
    /// Directory for the SQLite database, generated development secrets and media.
    #[arg(
        long,
        env = "JJONGAL_DATA_DIR",
        default_value = "./data",
        value_parser = NonBlank::path(),
        global = true
    )]
    pub data_dir: PathBuf,
    /// Public base URL, used to build absolute (signed) media URLs.
    #[arg(
        long,
        env = "JJONGAL_PUBLIC_URL",
        default_value = "http://localhost:8000",
        value_parser = NonBlank::text(),
        global = true
    )]
    pub public_url: String,
    /// HS256 secret for access tokens (at least 32 bytes; required in production).
    #[arg(
        long,
        env = "JJONGAL_JWT_SECRET",
        hide_env_values = true,
        value_parser = NonBlank::secret(),
        global = true
    )]
    pub jwt_secret: Option<SecretString>,
    /// Secret for signed media URLs (at least 32 bytes; required in production).
    #[arg(
        long,
        env = "JJONGAL_MEDIA_SECRET",
        hide_env_values = true,
        value_parser = NonBlank::secret(),
        global = true
    )]
    pub media_secret: Option<SecretString>,
    /// Directory of media files. Default: `<data dir>/media`.
    #[arg(long, env = "JJONGAL_MEDIA_DIR", value_parser = NonBlank::path(), global = true)]
    pub media_dir: Option<PathBuf>,
    /// Address of the Prometheus metrics listener (never the public port).
    #[arg(
        long,
        env = "JJONGAL_METRICS_BIND",
        default_value = "127.0.0.1:9100",
        global = true
    )]
    pub metrics_bind: SocketAddr,
    /// `development` generates missing secrets; `production` refuses to start without them.
    #[arg(
        long = "env",
        env = "JJONGAL_ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "JJONGAL_LOG", default_value = "info", value_parser = NonBlank::text(), global = true)]
    pub log: String,
    /// Log format.
    #[arg(
        long,
        env = "JJONGAL_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    /// Whether `POST /api/v1/users` (self sign-up) is open.
    #[arg(
        long,
        env = "JJONGAL_ALLOW_SIGNUP",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub allow_signup: bool,
    /// Serves `/api/v1/_bench/limit` for the load benchmark's stack-limit measurement
    /// (`cargo bench --bench load`). Development mode only.
    #[arg(
        long,
        env = "JJONGAL_BENCH_ROUTES",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub bench_routes: bool,
    /// Protections production may be started without, named one by one (comma
    /// separated): `catch-all-proxies` (a trusted proxy range of /0), `public-metrics`
    /// (`JJONGAL_METRICS_BIND` on a public or unspecified address), `media-dir`
    /// (`JJONGAL_MEDIA_DIR` that is the data dir or holds it). Each is refused otherwise.
    #[arg(long, env = "JJONGAL_ALLOW_UNSAFE", default_value = "", global = true)]
    pub allow_unsafe: String,
    /// Lifetime of access tokens, in seconds (`expires_in`).
    #[arg(long, env = "JJONGAL_ACCESS_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86_400), global = true)]
    pub access_token_ttl: u64,
    /// How long an authenticated account may be served from this process's memory
    /// instead of the database, in milliseconds (0: always read). Deletion, role and
    /// voice changes drop it at once, on every process; this bounds a missed
    /// notification.
    #[arg(long, env = "JJONGAL_ACCOUNT_CACHE_TTL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000), global = true)]
    pub account_cache_ttl_ms: u64,
    /// Memory for stories' chapters kept between reads, in MiB (0: none). A kept story is
    /// served only while its row, read with every request, shows the revision its
    /// chapters were read at, so a change on any process is seen at once.
    #[arg(long, env = "JJONGAL_STORY_CACHE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=65_536), global = true)]
    pub story_cache_mb: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "JJONGAL_REFRESH_TOKEN_TTL", default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(300..), global = true)]
    pub refresh_token_ttl: u64,
    /// Lifetime of signed media URLs, in seconds (rounded up to a whole minute).
    #[arg(long, env = "JJONGAL_MEDIA_URL_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=604_800), global = true)]
    pub media_url_ttl: u64,
    /// Base URL of the storyteller (OpenAI-compatible chat completions, e.g. http://localhost:11434/v1 for Ollama); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_LLM_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub llm_base_url: Option<String>,
    /// API key for llm (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_LLM_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub llm_api_key: Option<SecretString>,
    /// Model name for llm.
    #[arg(long, env = "JJONGAL_LLM_MODEL", value_parser = NonBlank::text(), global = true)]
    pub llm_model: Option<String>,
    /// Timeout of one llm call, seconds.
    #[arg(long, env = "JJONGAL_LLM_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub llm_timeout: u64,
    /// Concurrent llm calls at most: story writing and the conversation guide together
    /// (keep it above the worker's concurrency, so children are not kept waiting).
    #[arg(long, env = "JJONGAL_LLM_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub llm_concurrency: u32,
    /// How long the offline storyteller takes to type one chapter, milliseconds (its
    /// stories appear as they are written, as a model's do); 0: at once.
    #[arg(long, env = "JJONGAL_OFFLINE_TYPING_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000), global = true)]
    pub offline_typing_ms: u64,
    /// Largest answer accepted from the chat model, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_LLM_MAX_RESPONSE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub llm_max_response_mib: u32,
    /// Base URL of illustrations (OpenAI-compatible images API); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_IMAGE_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub image_base_url: Option<String>,
    /// API key for image (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_IMAGE_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub image_api_key: Option<SecretString>,
    /// Model name for image.
    #[arg(long, env = "JJONGAL_IMAGE_MODEL", value_parser = NonBlank::text(), global = true)]
    pub image_model: Option<String>,
    /// Timeout of one image call, seconds.
    #[arg(long, env = "JJONGAL_IMAGE_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub image_timeout: u64,
    /// Concurrent image calls at most.
    #[arg(long, env = "JJONGAL_IMAGE_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub image_concurrency: u32,
    /// Largest answer accepted from illustrations, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_IMAGE_MAX_RESPONSE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub image_max_response_mib: u32,
    /// Base URL of narration (OpenAI-compatible /audio/speech); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_SPEECH_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub speech_base_url: Option<String>,
    /// API key for speech (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_SPEECH_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub speech_api_key: Option<SecretString>,
    /// Model name for speech.
    #[arg(long, env = "JJONGAL_SPEECH_MODEL", value_parser = NonBlank::text(), global = true)]
    pub speech_model: Option<String>,
    /// Timeout of one speech call, seconds.
    #[arg(long, env = "JJONGAL_SPEECH_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub speech_timeout: u64,
    /// Concurrent speech calls at most.
    #[arg(long, env = "JJONGAL_SPEECH_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub speech_concurrency: u32,
    /// Largest answer accepted from narration, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_SPEECH_MAX_RESPONSE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub speech_max_response_mib: u32,
    /// Base URL of moderation (OpenAI-compatible /moderations); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_MODERATION_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub moderation_base_url: Option<String>,
    /// API key for moderation (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_MODERATION_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub moderation_api_key: Option<SecretString>,
    /// Model name for moderation.
    #[arg(long, env = "JJONGAL_MODERATION_MODEL", value_parser = NonBlank::text(), global = true)]
    pub moderation_model: Option<String>,
    /// Timeout of one moderation call, seconds.
    #[arg(long, env = "JJONGAL_MODERATION_TIMEOUT", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub moderation_timeout: u64,
    /// Concurrent moderation calls at most.
    #[arg(long, env = "JJONGAL_MODERATION_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub moderation_concurrency: u32,
    /// Largest answer accepted from moderation, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_MODERATION_MAX_RESPONSE_MIB", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub moderation_max_response_mib: u32,
    /// Base URL of voice cloning and cloned-voice narration (ElevenLabs-compatible); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_VOICE_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub voice_base_url: Option<String>,
    /// API key for voice (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_VOICE_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub voice_api_key: Option<SecretString>,
    /// Model name for voice.
    #[arg(long, env = "JJONGAL_VOICE_MODEL", value_parser = NonBlank::text(), global = true)]
    pub voice_model: Option<String>,
    /// Timeout of one voice call, seconds.
    #[arg(long, env = "JJONGAL_VOICE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub voice_timeout: u64,
    /// Concurrent voice calls at most.
    #[arg(long, env = "JJONGAL_VOICE_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub voice_concurrency: u32,
    /// Largest answer accepted from the voice provider, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_VOICE_MAX_RESPONSE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub voice_max_response_mib: u32,
    /// Base URL of speech-to-text (OpenAI-compatible /audio/transcriptions) for utterances
    /// sent as raw PCM on the conversation socket; unset: no server speech recognition.
    #[arg(long, env = "JJONGAL_STT_BASE_URL", value_parser = NonBlank::text(), global = true)]
    pub stt_base_url: Option<String>,
    /// API key for speech-to-text (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_STT_API_KEY",
        hide_env_values = true,
        value_parser = NonBlank::key(),
        global = true
    )]
    pub stt_api_key: Option<SecretString>,
    /// Model name for speech-to-text.
    #[arg(long, env = "JJONGAL_STT_MODEL", value_parser = NonBlank::text(), global = true)]
    pub stt_model: Option<String>,
    /// Timeout of one speech-to-text call, seconds.
    #[arg(long, env = "JJONGAL_STT_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub stt_timeout: u64,
    /// Concurrent speech-to-text calls at most.
    #[arg(long, env = "JJONGAL_STT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub stt_concurrency: u32,
    /// Largest answer accepted from speech-to-text, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_STT_MAX_RESPONSE_MIB", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub stt_max_response_mib: u32,
    /// Voice for OpenAI-compatible narration.
    #[arg(
        long,
        env = "JJONGAL_SPEECH_VOICE",
        default_value = "alloy",
        value_parser = NonBlank::text(),
        global = true
    )]
    pub speech_voice: String,
    /// Longest text sent in one OpenAI-compatible speech call, characters (OpenAI takes
    /// 4096); longer chapters are narrated in pieces, cut at sentence ends, and joined.
    #[arg(long, env = "JJONGAL_SPEECH_MAX_INPUT_CHARS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(100..=100_000), global = true)]
    pub speech_max_input_chars: u32,
    /// Which token limit the chat model gets: `auto` sends `max_completion_tokens` to
    /// OpenAI (and for reasoning models anywhere) and `max_tokens` to other servers.
    #[arg(long, env = "JJONGAL_LLM_TOKEN_LIMIT_PARAM", value_enum, default_value_t = TokenLimitParam::Auto, global = true)]
    pub llm_token_limit_param: TokenLimitParam,
    /// Whether the chat model gets a `temperature`: `auto` omits it for reasoning models
    /// (GPT-5, o-series), which refuse any but the default.
    #[arg(long, env = "JJONGAL_LLM_TEMPERATURE", value_enum, default_value_t = TemperatureParam::Auto, global = true)]
    pub llm_temperature: TemperatureParam,
    /// Let media URLs that providers answer with point at loopback or private addresses
    /// (for providers on this machine or network); off: such URLs are refused.
    #[arg(long, env = "JJONGAL_PROVIDER_ALLOW_PRIVATE_URLS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub provider_allow_private_urls: bool,
    /// A category score at or above this flags text (stricter than the provider's own).
    #[arg(
        long,
        env = "JJONGAL_MODERATION_THRESHOLD",
        default_value_t = 0.3,
        global = true
    )]
    pub moderation_threshold: f64,
    /// Attempts per provider call (retries on timeouts, 5xx, 429).
    #[arg(long, env = "JJONGAL_PROVIDER_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20), global = true)]
    pub provider_max_attempts: u32,
    /// First retry delay, milliseconds (doubles per attempt, with jitter, up to 30 s).
    #[arg(long, env = "JJONGAL_PROVIDER_BACKOFF_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000), global = true)]
    pub provider_backoff_ms: u64,
    /// Whether `serve` runs the story worker.
    #[arg(long, env = "JJONGAL_WORKER", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub worker: bool,
    /// Stories generated at once by one process.
    #[arg(long, env = "JJONGAL_WORKER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub worker_concurrency: u32,
    /// How often the worker looks for work it was not told about, milliseconds.
    #[arg(long, env = "JJONGAL_WORKER_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000), global = true)]
    pub worker_poll_ms: u64,
    /// A claimed story's lease, seconds; renewed while it is worked on, taken over by
    /// another worker once expired (after a crash).
    #[arg(long, env = "JJONGAL_WORKER_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=3600), global = true)]
    pub worker_lease_secs: u64,
    /// After SIGTERM, how long running stories may take to finish before their leases
    /// are released for another worker, seconds.
    #[arg(long, env = "JJONGAL_SHUTDOWN_GRACE_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600), global = true)]
    pub shutdown_grace_secs: u64,
    /// Close a conversation socket after this long without a text or binary frame from
    /// the client (pongs do not count), seconds.
    #[arg(long, env = "JJONGAL_WS_IDLE_TIMEOUT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub ws_idle_timeout_secs: u64,
    /// How often the server pings a conversation socket, seconds.
    #[arg(long, env = "JJONGAL_WS_PING_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub ws_ping_secs: u64,
    /// Messages (text or binary) one conversation socket may send per minute.
    #[arg(long, env = "JJONGAL_WS_MESSAGES_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub ws_messages_per_minute: u32,
    /// Frames one socket (either door) may have waiting for the client to read; past it
    /// the client is too slow and the socket closes with 1008.
    #[arg(long, env = "JJONGAL_WS_SEND_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(4..=10_000), global = true)]
    pub ws_send_queue: u32,
    /// How long one write to a socket may take before the client counts as gone, seconds.
    #[arg(long, env = "JJONGAL_WS_WRITE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub ws_write_timeout_secs: u64,
    /// Messages a conversation socket may have waiting while the guide answers an earlier
    /// one; past it a message is refused with `error` (`RATE_LIMIT_EXCEEDED`).
    #[arg(long, env = "JJONGAL_WS_TURN_QUEUE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub ws_turn_queue: u32,
    /// How long a reply waits for its narration, milliseconds; past it `ai_response` goes
    /// out with `audio_url: null` and `audio_status: "timed_out"`.
    #[arg(long, env = "JJONGAL_REPLY_NARRATION_DEADLINE_MS", default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=600_000), global = true)]
    pub reply_narration_deadline_ms: u64,
    /// An active conversation with no message for this long (and so no open socket: it
    /// must be at least the socket idle timeout) is ended, seconds.
    #[arg(long, env = "JJONGAL_CONVERSATION_IDLE_END_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=2_592_000), global = true)]
    pub conversation_idle_end_secs: u64,
    /// Raw-PCM speech one account may have buffered (not yet stored) across its sockets,
    /// bytes.
    #[arg(long, env = "JJONGAL_SPEECH_BUFFER_PER_ACCOUNT", default_value_t = 16_777_216, value_parser = clap::value_parser!(u64).range(65_536..=1_073_741_824), global = true)]
    pub speech_buffer_per_account: u64,
    /// Raw-PCM speech this process may have buffered across every socket, bytes.
    #[arg(long, env = "JJONGAL_SPEECH_BUFFER_TOTAL", default_value_t = 268_435_456, value_parser = clap::value_parser!(u64).range(65_536..=17_179_869_184), global = true)]
    pub speech_buffer_total: u64,
    /// Voice samples needed before the voice is cloned (once).
    #[arg(long, env = "JJONGAL_VOICE_CLONE_SAMPLES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub voice_clone_samples: u32,
    /// Voice samples one account may keep; beyond it a sample is refused (nothing stored).
    #[arg(long, env = "JJONGAL_VOICE_MAX_SAMPLES", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub voice_max_samples: u32,
    /// Bytes of voice samples one account may keep in all.
    #[arg(long, env = "JJONGAL_VOICE_MAX_SAMPLE_BYTES", default_value_t = 52_428_800, value_parser = clap::value_parser!(u64).range(1024..=10_737_418_240), global = true)]
    pub voice_max_sample_bytes: u64,
    /// Ended conversations (messages, spoken replies) are deleted this many days after
    /// their last change; 0: at the next purge.
    #[arg(long, env = "JJONGAL_RETAIN_CONVERSATIONS_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(0..=36_500), global = true)]
    pub retain_conversations_days: u32,
    /// Spoken replies of ended conversations lose their audio this many days after they
    /// were spoken (the text stays); 0: at the next purge.
    #[arg(long, env = "JJONGAL_RETAIN_REPLY_AUDIO_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=36_500), global = true)]
    pub retain_reply_audio_days: u32,
    /// Voice samples: `until-cloned` (deleted once the voice is cloned) or
    /// `until-deleted` (kept until the voice or the consent is taken back).
    #[arg(long, env = "JJONGAL_RETAIN_VOICE_SAMPLES", value_enum, default_value_t = SampleRetention::UntilCloned, global = true)]
    pub retain_voice_samples: SampleRetention,
    /// How often the purge runs, seconds (once per interval across processes).
    #[arg(long, env = "JJONGAL_PURGE_INTERVAL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800), global = true)]
    pub purge_interval_secs: u64,
    /// One export of a family's data (GET /api/v1/users/me/export) per account per this
    /// many seconds.
    #[arg(long, env = "JJONGAL_EXPORT_INTERVAL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800), global = true)]
    pub export_interval_secs: u64,
    /// Whether operators' views of conversations include message texts.
    #[arg(long, env = "JJONGAL_OPERATOR_CAN_READ_TRANSCRIPTS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub operator_can_read_transcripts: bool,
    /// Longest time one HTTP request may take before it is answered with 503, seconds.
    #[arg(long, env = "JJONGAL_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub request_timeout_secs: u64,
    /// Origins allowed to call the API from browsers (CORS), comma separated; empty: none.
    #[arg(long, env = "JJONGAL_CORS_ORIGINS", default_value = "", global = true)]
    pub cors_origins: String,
    /// Stories one account may request per quota window.
    #[arg(long, env = "JJONGAL_STORY_QUOTA", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub story_quota: u32,
    /// The quota window, seconds.
    #[arg(long, env = "JJONGAL_STORY_QUOTA_WINDOW", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub story_quota_window: u64,
    /// Maximum number of pooled database connections.
    #[arg(long, env = "JJONGAL_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub database_pool_size: u32,
    /// How long a request waits for a pooled database connection before it is answered
    /// with 503, milliseconds.
    #[arg(long, env = "JJONGAL_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000), global = true)]
    pub database_acquire_timeout_ms: u64,
    /// Requests one client IP may make per minute (REST, GraphQL, WebSocket upgrades and
    /// socket messages); 0 switches the per-IP limit off.
    #[arg(
        long,
        env = "JJONGAL_RATE_LIMIT_IP_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub rate_limit_ip_per_minute: u32,
    /// Requests one client IP may make at once before the per-minute rate applies.
    #[arg(long, env = "JJONGAL_RATE_LIMIT_IP_BURST", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_ip_burst: u32,
    /// Requests one account may make per minute (by its access token, across REST,
    /// GraphQL and sockets); 0 switches the per-account limit off.
    #[arg(
        long,
        env = "JJONGAL_RATE_LIMIT_ACCOUNT_PER_MINUTE",
        default_value_t = 300,
        global = true
    )]
    pub rate_limit_account_per_minute: u32,
    /// Requests one account may make at once before the per-minute rate applies.
    #[arg(long, env = "JJONGAL_RATE_LIMIT_ACCOUNT_BURST", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub rate_limit_account_burst: u32,
    /// Proxy addresses (IPs or CIDR ranges, comma separated) whose `X-Forwarded-For` /
    /// `X-Real-IP` name the client; from anyone else those headers are ignored.
    #[arg(
        long,
        env = "JJONGAL_TRUSTED_PROXIES",
        default_value = "",
        global = true
    )]
    pub trusted_proxies: String,
    /// Seconds a connection has to send a request's complete headers; then it is closed.
    #[arg(long, env = "JJONGAL_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub header_read_timeout_secs: u64,
    /// Connections one client address may hold open at once (trusted proxies exempt);
    /// beyond it a new one is closed at once.
    #[arg(long, env = "JJONGAL_MAX_CONNECTIONS_PER_IP", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_connections_per_ip: u32,
    /// Sockets (conversation and `/graphql/ws` with a token) one account may hold open at
    /// once; beyond it a new one is refused and closed (1013).
    #[arg(long, env = "JJONGAL_MAX_SOCKETS_PER_ACCOUNT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub max_sockets_per_account: u32,
    /// Requests served at once; beyond it the service answers 503 at once instead of
    /// queueing without bound.
    #[arg(long, env = "JJONGAL_MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_concurrent_requests: u32,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; sign-ins and sign-ups
    /// beyond it wait. Default: the number of CPUs.
    #[arg(long, env = "JJONGAL_PASSWORD_HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub password_hash_concurrency: Option<u32>,
    /// Sign-ins and sign-ups that may wait for a password hash; beyond it they are
    /// answered `429 RATE_LIMIT_EXCEEDED` at once (memory stays bounded).
    #[arg(long, env = "JJONGAL_PASSWORD_HASH_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=100_000), global = true)]
    pub password_hash_queue: u32,
    /// Whether GraphQL introspection (and `/graphql/schema.graphql`)
    /// is on. Default: on in development, off in production.
    #[arg(long, env = "JJONGAL_GRAPHQL_INTROSPECTION", action = clap::ArgAction::Set, global = true)]
    pub graphql_introspection: Option<bool>,
    /// Deepest selection nesting a GraphQL operation may have.
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub graphql_max_depth: u32,
    /// Highest complexity of an operation (each field 1; lists and connections multiply
    /// their selection by the page size asked for). A full REST page of 100 stories with
    /// all their chapters is about 11,300.
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_COMPLEXITY", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub graphql_max_complexity: u32,
    /// Aliases one GraphQL document may use.
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_ALIASES", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000), global = true)]
    pub graphql_max_aliases: u32,
    /// Root fields one GraphQL operation may select.
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_ROOT_FIELDS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub graphql_max_root_fields: u32,
    /// Selections one operation may have with every fragment spread expanded where it is
    /// spread (checked before validation, so a fragment bomb costs nothing).
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_SELECTIONS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=10_000_000), global = true)]
    pub graphql_max_selections: u32,
    /// Directives one field may carry.
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_DIRECTIVES", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub graphql_max_directives: u32,
    /// Deepest recursion while validating a document (nested lists, objects, fragments).
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_RECURSION", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub graphql_max_recursion: u32,
    /// Lexical tokens a GraphQL document may have (checked before it is parsed).
    #[arg(long, env = "JJONGAL_GRAPHQL_MAX_TOKENS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000_000), global = true)]
    pub graphql_max_tokens: u32,
    /// Seconds a `/graphql/ws` client has to send `connection_init` (then close 4408).
    #[arg(long, env = "JJONGAL_GRAPHQL_WS_INIT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub graphql_ws_init_timeout_secs: u64,
    /// Largest request body, bytes (then 413 `PAYLOAD_TOO_LARGE`; contract: 1 MiB).
    #[arg(long, env = "JJONGAL_MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824), global = true)]
    pub max_body_bytes: u64,
    /// Longest text field, in characters (then 400 `VALIDATION_ERROR`; contract: 10,000):
    /// REST bodies, GraphQL variables and literals, conversation socket frames.
    #[arg(long, env = "JJONGAL_MAX_TEXT_CHARS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000), global = true)]
    pub max_text_chars: u64,
    /// Largest message (and frame) on `/graphql/ws`, bytes (then close 1009).
    #[arg(long, env = "JJONGAL_GRAPHQL_WS_MAX_MESSAGE_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216), global = true)]
    pub graphql_ws_max_message_bytes: u64,
    /// Operations one `/graphql/ws` connection may run at once.
    #[arg(long, env = "JJONGAL_GRAPHQL_WS_MAX_SUBSCRIPTIONS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub graphql_ws_max_subscriptions: u32,
}

/// clap's value parser for a setting that may be unset but not set blank
/// (`JJONGAL_DATABASE_URL=`, `--public-url ""`): that is a mistake far more often than a
/// wish, and taken as given it made a server that reported ready and failed every
/// request. The refusal names the variable and the flag. Secrets are refused only when
/// empty (a blank one is judged by its entropy, and refused there).
#[derive(Clone)]
pub struct NonBlank<T> {
    secret: bool,
    make: fn(String) -> T,
}

impl NonBlank<String> {
    fn text() -> NonBlank<String> {
        NonBlank {
            secret: false,
            make: |s| s,
        }
    }
}

impl NonBlank<PathBuf> {
    fn path() -> NonBlank<PathBuf> {
        NonBlank {
            secret: false,
            make: PathBuf::from,
        }
    }
}

impl NonBlank<SecretString> {
    /// A signing secret: refused only when empty (a blank one is judged by its entropy,
    /// and refused there).
    fn secret() -> NonBlank<SecretString> {
        NonBlank {
            secret: true,
            make: SecretString::from,
        }
    }

    /// An API key or a URL that may hold a password: not blank, kept secret.
    fn key() -> NonBlank<SecretString> {
        NonBlank {
            secret: false,
            make: SecretString::from,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for NonBlank<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)?;
        let blank = if self.secret {
            text.is_empty()
        } else {
            text.trim().is_empty()
        };
        if blank {
            let env = arg
                .and_then(clap::Arg::get_env)
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            let flag = arg.and_then(clap::Arg::get_long).unwrap_or_default();
            return Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "{env} (--{flag}) is set but empty: give a value, or unset it to use the default\n"
                ),
            )
            .with_cmd(cmd));
        }
        Ok((self.make)(text))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let cli = Cli::try_parse_from([
            "jjongal",
            "--database-url",
            "postgres://app:db-password-value@db/jjongal",
            "--jwt-secret",
            "jwt-secret-value-0123456789abcdef",
            "--llm-api-key",
            "sk-provider-key-value",
        ])
        .unwrap();
        let shown = format!("{:?}", cli.config);
        assert!(shown.contains("jwt_secret"), "{shown}");
        for secret in [
            "jwt-secret-value",
            "sk-provider-key-value",
            "db-password-value",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }

    #[test]
    fn blank_settings_are_refused_by_name() {
        let refusal = |args: &[&str]| {
            let mut all = vec!["jjongal"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).err().map(|e| e.to_string())
        };
        let message = refusal(&["--public-url", "  "]).unwrap();
        assert!(
            message.contains("JJONGAL_PUBLIC_URL (--public-url) is set but empty"),
            "{message}"
        );
        assert!(refusal(&["--data-dir", ""]).is_some());
        // A blank secret is left to the entropy check; an empty one is refused here.
        assert!(refusal(&["--jwt-secret", " "]).is_none());
        assert!(refusal(&["--jwt-secret", ""]).is_some());
        // A blank API key is refused (it would only fail at the provider).
        assert!(refusal(&["--llm-api-key", "  "]).is_some());
        assert!(refusal(&["--llm-model", "gpt-4o-mini"]).is_none());
    }
}
