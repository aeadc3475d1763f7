//! One typed configuration, from flags and `JJONGAL_*` environment variables.
//! Secrets are wrapped in [`Secret`] so they never reach logs, `Debug` or `--help`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, ValueEnum};
use rand::RngCore;

/// Minimum length of the JWT and media secrets in production.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Flags and environment variables. Every flag can be given after any subcommand.
/// Deliberately not `Debug`: the secrets and API keys are still plain strings here, and
/// nothing may print them; [`Config`], which holds them as [`Secret`]s, is what is logged.
#[derive(Args, Clone)]
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
        global = true
    )]
    pub database_url: Option<String>,
    /// Directory for the SQLite database, generated development secrets and media.
    #[arg(
        long,
        env = "JJONGAL_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Public base URL, used to build absolute (signed) media URLs.
    #[arg(
        long,
        env = "JJONGAL_PUBLIC_URL",
        default_value = "http://localhost:8000",
        global = true
    )]
    pub public_url: String,
    /// HS256 secret for access tokens (at least 32 bytes; required in production).
    #[arg(
        long,
        env = "JJONGAL_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    /// Secret for signed media URLs (at least 32 bytes; required in production).
    #[arg(
        long,
        env = "JJONGAL_MEDIA_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub media_secret: Option<String>,
    /// Directory of media files. Default: `<data dir>/media`.
    #[arg(long, env = "JJONGAL_MEDIA_DIR", global = true)]
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
    #[arg(long, env = "JJONGAL_LOG", default_value = "info", global = true)]
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
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "JJONGAL_REFRESH_TOKEN_TTL", default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(300..), global = true)]
    pub refresh_token_ttl: u64,
    /// Lifetime of signed media URLs, in seconds (rounded up to a whole minute).
    #[arg(long, env = "JJONGAL_MEDIA_URL_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=604_800), global = true)]
    pub media_url_ttl: u64,
    /// Base URL of the storyteller (OpenAI-compatible chat completions, e.g. http://localhost:11434/v1 for Ollama); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_LLM_BASE_URL", global = true)]
    pub llm_base_url: Option<String>,
    /// API key for llm (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_LLM_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub llm_api_key: Option<String>,
    /// Model name for llm.
    #[arg(long, env = "JJONGAL_LLM_MODEL", global = true)]
    pub llm_model: Option<String>,
    /// Timeout of one llm call, seconds.
    #[arg(long, env = "JJONGAL_LLM_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub llm_timeout: u64,
    /// Concurrent llm calls at most: story writing and the conversation guide together
    /// (keep it above the worker's concurrency, so children are not kept waiting).
    #[arg(long, env = "JJONGAL_LLM_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub llm_concurrency: u32,
    /// Largest answer accepted from the chat model, MiB (a larger one is refused, not read).
    #[arg(long, env = "JJONGAL_LLM_MAX_RESPONSE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub llm_max_response_mib: u32,
    /// Base URL of illustrations (OpenAI-compatible images API); unset: the offline built-in.
    #[arg(long, env = "JJONGAL_IMAGE_BASE_URL", global = true)]
    pub image_base_url: Option<String>,
    /// API key for image (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_IMAGE_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub image_api_key: Option<String>,
    /// Model name for image.
    #[arg(long, env = "JJONGAL_IMAGE_MODEL", global = true)]
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
    #[arg(long, env = "JJONGAL_SPEECH_BASE_URL", global = true)]
    pub speech_base_url: Option<String>,
    /// API key for speech (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_SPEECH_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub speech_api_key: Option<String>,
    /// Model name for speech.
    #[arg(long, env = "JJONGAL_SPEECH_MODEL", global = true)]
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
    #[arg(long, env = "JJONGAL_MODERATION_BASE_URL", global = true)]
    pub moderation_base_url: Option<String>,
    /// API key for moderation (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_MODERATION_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub moderation_api_key: Option<String>,
    /// Model name for moderation.
    #[arg(long, env = "JJONGAL_MODERATION_MODEL", global = true)]
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
    #[arg(long, env = "JJONGAL_VOICE_BASE_URL", global = true)]
    pub voice_base_url: Option<String>,
    /// API key for voice (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_VOICE_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub voice_api_key: Option<String>,
    /// Model name for voice.
    #[arg(long, env = "JJONGAL_VOICE_MODEL", global = true)]
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
    #[arg(long, env = "JJONGAL_STT_BASE_URL", global = true)]
    pub stt_base_url: Option<String>,
    /// API key for speech-to-text (sent only in request headers).
    #[arg(
        long,
        env = "JJONGAL_STT_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub stt_api_key: Option<String>,
    /// Model name for speech-to-text.
    #[arg(long, env = "JJONGAL_STT_MODEL", global = true)]
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

/// A secret value: never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The resolved configuration the application runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub public_url: String,
    pub jwt_secret: Secret,
    pub media_secret: Secret,
    pub media_dir: PathBuf,
    pub metrics_bind: SocketAddr,
    pub environment: Environment,
    pub allow_signup: bool,
    /// The load benchmark's stack-limit routes (never in production).
    pub bench_routes: bool,
    pub access_token_ttl: Duration,
    pub account_cache_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub media_url_ttl: Duration,
    pub database_pool_size: usize,
    pub providers: ProvidersConfig,
    pub worker: WorkerConfig,
    pub story_quota: u32,
    pub story_quota_window: Duration,
    pub ws: WsConfig,
    pub voice_clone_samples: u32,
    /// Samples and bytes of samples one account may keep.
    pub voice_max_samples: u32,
    pub voice_max_sample_bytes: u64,
    pub operator_can_read_transcripts: bool,
    /// Password hashes at once, and requests that may wait for one.
    pub password_hash_concurrency: usize,
    pub password_hash_queue: usize,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections_per_ip: usize,
    pub database_acquire_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_text_chars: usize,
    pub gateway: GatewayConfig,
    pub graphql: GraphqlConfig,
}

/// What the gateway enforces before a request reaches a resolver.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Per client IP; `None` when switched off.
    pub ip_rate: Option<RateConfig>,
    /// Per account; `None` when switched off.
    pub account_rate: Option<RateConfig>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_concurrent_requests: usize,
    /// Open sockets per account.
    pub max_sockets_per_account: usize,
}

/// A token bucket: `per_minute` refill, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    pub per_minute: u32,
    pub burst: u32,
}

/// GraphQL's abuse limits (every door: HTTP, WebSocket, the facade's own documents).
#[derive(Clone, Debug)]
pub struct GraphqlConfig {
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_selections: usize,
    pub max_directives: usize,
    pub max_recursion: usize,
    pub max_tokens: usize,
    pub ws_init_timeout: Duration,
    pub ws_max_subscriptions: usize,
    pub ws_max_message_bytes: usize,
    pub max_text_chars: usize,
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n`.
    pub(crate) fn parse(s: &str) -> Option<IpNet> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack listener reports) as
/// the IPv4 address they are.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The conversation WebSocket's limits.
#[derive(Clone, Debug)]
pub struct WsConfig {
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub messages_per_minute: u32,
    pub max_text_chars: usize,
    /// Frames waiting for a slow reader before its socket closes (both doors).
    pub send_queue: usize,
    pub write_timeout: Duration,
    /// Conversation messages waiting while a turn runs.
    pub turn_queue: usize,
    pub reply_narration_deadline: Duration,
    /// An active conversation with no message this long is ended.
    pub conversation_idle_end: Duration,
    pub speech_buffer_per_account: usize,
    pub speech_buffer_total: usize,
}

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
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub enabled: bool,
    pub concurrency: usize,
    pub poll: Duration,
    pub lease: Duration,
    pub shutdown_grace: Duration,
}

impl Config {
    /// Resolves flags into a runnable configuration: creates the data directory, and in
    /// development generates (or reuses) secrets kept in it.
    pub fn resolve(args: ConfigArgs) -> anyhow::Result<Config> {
        refuse_empty_settings(&args)?;
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
        let database_url = match &args.database_url {
            Some(url) => database_url(url)?,
            None => args
                .data_dir
                .join("jjongal.db")
                .to_string_lossy()
                .into_owned(),
        };
        let public_url = args.public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("JJONGAL_PUBLIC_URL must be an http(s) URL");
        }
        let (jwt_secret, media_secret) = secrets(&args)?;
        if args.bench_routes && args.environment == Environment::Production {
            bail!("JJONGAL_BENCH_ROUTES is for the load benchmark and refused in production mode");
        }
        let providers = providers_config(&args)?;
        let media_dir = args
            .media_dir
            .clone()
            .unwrap_or_else(|| args.data_dir.join("media"));
        let gateway = gateway_config(&args)?;
        refuse_unsafe(&args, &gateway, &media_dir)?;
        if !(0.0..=1.0).contains(&args.moderation_threshold) {
            bail!("JJONGAL_MODERATION_THRESHOLD must be between 0 and 1");
        }
        if args.conversation_idle_end_secs < args.ws_idle_timeout_secs {
            bail!(
                "JJONGAL_CONVERSATION_IDLE_END_SECS ({}) must be at least JJONGAL_WS_IDLE_TIMEOUT_SECS ({}): a conversation with an open socket is never ended for idleness",
                args.conversation_idle_end_secs,
                args.ws_idle_timeout_secs
            );
        }
        Ok(Config {
            providers,
            worker: WorkerConfig {
                enabled: args.worker,
                concurrency: args.worker_concurrency as usize,
                poll: Duration::from_millis(args.worker_poll_ms),
                lease: Duration::from_secs(args.worker_lease_secs),
                shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            },
            ws: WsConfig {
                idle_timeout: Duration::from_secs(args.ws_idle_timeout_secs),
                ping_interval: Duration::from_secs(args.ws_ping_secs),
                messages_per_minute: args.ws_messages_per_minute,
                max_text_chars: args.max_text_chars as usize,
                send_queue: args.ws_send_queue as usize,
                write_timeout: Duration::from_secs(args.ws_write_timeout_secs),
                turn_queue: args.ws_turn_queue as usize,
                reply_narration_deadline: Duration::from_millis(args.reply_narration_deadline_ms),
                conversation_idle_end: Duration::from_secs(args.conversation_idle_end_secs),
                speech_buffer_per_account: args.speech_buffer_per_account as usize,
                speech_buffer_total: args.speech_buffer_total as usize,
            },
            voice_clone_samples: args.voice_clone_samples,
            voice_max_samples: args.voice_max_samples,
            voice_max_sample_bytes: args.voice_max_sample_bytes,
            operator_can_read_transcripts: args.operator_can_read_transcripts,
            password_hash_concurrency: args.password_hash_concurrency.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |n| n as usize,
            ),
            password_hash_queue: args.password_hash_queue as usize,
            cors_origins: parse_origins(&args.cors_origins)?,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
            max_connections_per_ip: args.max_connections_per_ip as usize,
            database_acquire_timeout: Duration::from_millis(args.database_acquire_timeout_ms),
            max_body_bytes: args.max_body_bytes as usize,
            max_text_chars: args.max_text_chars as usize,
            gateway,
            graphql: graphql_config(&args),
            story_quota: args.story_quota,
            story_quota_window: Duration::from_secs(args.story_quota_window),
            bind: args.bind,
            database_url,
            media_dir,
            data_dir: args.data_dir,
            public_url,
            jwt_secret,
            media_secret,
            metrics_bind: args.metrics_bind,
            environment: args.environment,
            allow_signup: args.allow_signup,
            bench_routes: args.bench_routes,
            access_token_ttl: Duration::from_secs(args.access_token_ttl),
            account_cache_ttl: Duration::from_millis(args.account_cache_ttl_ms),
            refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl),
            media_url_ttl: Duration::from_secs(args.media_url_ttl),
            database_pool_size: args.database_pool_size as usize,
        })
    }
}

/// The signing secrets: required (and distinct) in production; in development, generated
/// once into the data dir when not set.
fn secrets(args: &ConfigArgs) -> anyhow::Result<(Secret, Secret)> {
    match args.environment {
        Environment::Production => {
            let jwt = required_secret("JJONGAL_JWT_SECRET", args.jwt_secret.as_deref())?;
            let media = required_secret("JJONGAL_MEDIA_SECRET", args.media_secret.as_deref())?;
            if jwt.expose() == media.expose() {
                bail!("JJONGAL_MEDIA_SECRET must differ from JJONGAL_JWT_SECRET");
            }
            Ok((jwt, media))
        }
        Environment::Development => {
            let mut generated = Vec::new();
            let jwt = match args.jwt_secret.as_deref() {
                Some(s) if !s.is_empty() => Secret::new(s.as_bytes().to_vec()),
                _ => {
                    generated.push("jwt.secret");
                    dev_secret(&args.data_dir, "jwt.secret")?
                }
            };
            let media = match args.media_secret.as_deref() {
                Some(s) if !s.is_empty() => Secret::new(s.as_bytes().to_vec()),
                _ => {
                    generated.push("media.secret");
                    dev_secret(&args.data_dir, "media.secret")?
                }
            };
            if !generated.is_empty() {
                tracing::warn!(
                    files = ?generated,
                    dir = %args.data_dir.join("secrets").display(),
                    "development mode: using generated secrets kept in the data dir; \
                     set JJONGAL_JWT_SECRET and JJONGAL_MEDIA_SECRET (and JJONGAL_ENV=production) in production"
                );
            }
            Ok((jwt, media))
        }
    }
}

/// The AI providers (each one HTTP provider, or the offline one when no URL is set).
fn providers_config(args: &ConfigArgs) -> anyhow::Result<ProvidersConfig> {
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

/// Rate limits, trusted proxies and load shedding.
fn gateway_config(args: &ConfigArgs) -> anyhow::Result<GatewayConfig> {
    Ok(GatewayConfig {
        ip_rate: (args.rate_limit_ip_per_minute > 0).then_some(RateConfig {
            per_minute: args.rate_limit_ip_per_minute,
            burst: args.rate_limit_ip_burst,
        }),
        account_rate: (args.rate_limit_account_per_minute > 0).then_some(RateConfig {
            per_minute: args.rate_limit_account_per_minute,
            burst: args.rate_limit_account_burst,
        }),
        trusted_proxies: parse_proxies(&args.trusted_proxies)?,
        max_concurrent_requests: args.max_concurrent_requests as usize,
        max_sockets_per_account: args.max_sockets_per_account as usize,
    })
}

/// One capability's provider settings (an empty setting counts as unset).
fn provider(
    base_url: &Option<String>,
    api_key: &Option<String>,
    model: &Option<String>,
    timeout_secs: u64,
    concurrency: u32,
    max_response_mib: u32,
) -> ProviderConfig {
    ProviderConfig {
        base_url: non_empty(base_url.clone()),
        api_key: non_empty(api_key.clone()).map(|k| Secret::new(k.into_bytes())),
        model: non_empty(model.clone()),
        timeout: Duration::from_secs(timeout_secs),
        concurrency: concurrency as usize,
        max_response_bytes: max_response_mib as usize * 1024 * 1024,
    }
}

/// GraphQL's document limits, introspection and socket settings.
fn graphql_config(args: &ConfigArgs) -> GraphqlConfig {
    GraphqlConfig {
        introspection: args
            .graphql_introspection
            .unwrap_or(args.environment == Environment::Development),
        max_depth: args.graphql_max_depth as usize,
        max_complexity: args.graphql_max_complexity as usize,
        max_aliases: args.graphql_max_aliases as usize,
        max_root_fields: args.graphql_max_root_fields as usize,
        max_selections: args.graphql_max_selections as usize,
        max_directives: args.graphql_max_directives as usize,
        max_recursion: args.graphql_max_recursion as usize,
        max_tokens: args.graphql_max_tokens as usize,
        ws_init_timeout: Duration::from_secs(args.graphql_ws_init_timeout_secs),
        ws_max_subscriptions: args.graphql_ws_max_subscriptions as usize,
        ws_max_message_bytes: args.graphql_ws_max_message_bytes as usize,
        max_text_chars: args.max_text_chars as usize,
    }
}

/// `https://a.example, http://localhost:3000` → exact origins; `*` is refused (the API
/// takes credentials in headers, and a wildcard would let any site use them).
fn parse_origins(list: &str) -> anyhow::Result<Vec<String>> {
    let mut origins = Vec::new();
    for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if origin == "*" {
            bail!("JJONGAL_CORS_ORIGINS cannot be `*`: list the allowed origins");
        }
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.trim_end_matches('/').contains(['?', '#'])
            && origin.matches('/').count() == 2;
        if !valid {
            bail!("JJONGAL_CORS_ORIGINS: `{origin}` is not an origin like https://app.example.com");
        }
        origins.push(origin.to_string());
    }
    Ok(origins)
}

/// `JJONGAL_DATABASE_URL` as the store takes it: a `postgres://`/`postgresql://` URL (the
/// scheme in any case, RFC 3986), a `sqlite://` URL or a plain file path for SQLite.
/// Anything else that looks like a URL (`postgres:/…`, `mysql://…`) is an error, never a
/// SQLite file named like it (in a multi-process deployment each process would get its
/// own database).
pub(crate) fn database_url(url: &str) -> anyhow::Result<String> {
    if url.trim() != url || url.starts_with(['"', '\'']) || url.ends_with(['"', '\'']) {
        bail!(
            "JJONGAL_DATABASE_URL has surrounding spaces or quotes (an env file that quotes it?)"
        );
    }
    // Anything that names a scheme with `://` is a URL: one of ours, or an error.
    if let Some((scheme, _)) = url.split_once("://")
        && !["postgres", "postgresql", "sqlite"].contains(&scheme.to_ascii_lowercase().as_str())
    {
        bail!(
            "JJONGAL_DATABASE_URL: unrecognised scheme `{scheme}://` (postgres://… for PostgreSQL, a file path or sqlite://… for SQLite)"
        );
    }
    let scheme_end = url.find(':').filter(|&i| {
        i > 1
            && url[..i].chars().enumerate().all(|(n, c)| {
                c.is_ascii_alphabetic() || (n > 0 && (c.is_ascii_digit() || "+-.".contains(c)))
            })
    });
    let Some(end) = scheme_end else {
        return Ok(url.to_string());
    };
    let scheme = url[..end].to_ascii_lowercase();
    let rest = &url[end..];
    match scheme.as_str() {
        "postgres" | "postgresql" | "sqlite" if rest.starts_with("://") => {
            Ok(format!("{scheme}{rest}"))
        }
        "postgres" | "postgresql" => bail!(
            "JJONGAL_DATABASE_URL: `{scheme}:` must be followed by `//` (postgres://user@host/db)"
        ),
        _ => bail!(
            "JJONGAL_DATABASE_URL: unrecognised scheme `{scheme}:` (postgres://… for PostgreSQL, a file path or sqlite://… for SQLite)"
        ),
    }
}

/// Production refuses settings that switch its own protections off, unless
/// `JJONGAL_ALLOW_UNSAFE` names each one (development only warns).
fn refuse_unsafe(
    args: &ConfigArgs,
    gateway: &GatewayConfig,
    media_dir: &Path,
) -> anyhow::Result<()> {
    let allowed: Vec<&str> = args
        .allow_unsafe
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for name in &allowed {
        if !["catch-all-proxies", "public-metrics", "media-dir"].contains(name) {
            bail!(
                "JJONGAL_ALLOW_UNSAFE: unknown exception `{name}` (catch-all-proxies, public-metrics, media-dir)"
            );
        }
    }
    let mut problems = Vec::new();
    // Wider than any one network a proxy lives in (a /8 of IPv4, a /32 of IPv6): a
    // catch-all, however it is split (`0.0.0.0/1, 128.0.0.0/1`).
    let too_wide = |net: &IpNet| match net.addr {
        IpAddr::V4(_) => net.prefix < 8,
        IpAddr::V6(_) => net.prefix < 32,
    };
    if gateway.trusted_proxies.iter().any(too_wide) {
        problems.push((
            "catch-all-proxies",
            "JJONGAL_TRUSTED_PROXIES holds a catch-all range (wider than /8, or /32 for IPv6): every client could choose its own address, and so its rate-limit key",
        ));
    }
    let metrics = args.metrics_bind.ip();
    if metrics.is_unspecified() || crate::providers::http::is_public(metrics) {
        problems.push((
            "public-metrics",
            "JJONGAL_METRICS_BIND is on a public (or every) address: /metrics must stay internal",
        ));
    }
    if media_holds(media_dir, &args.data_dir) {
        problems.push((
            "media-dir",
            "JJONGAL_MEDIA_DIR is the data dir or holds it: what serves media would serve the database, secrets and voice samples",
        ));
    }
    for (name, problem) in problems {
        if allowed.contains(&name) {
            tracing::warn!(
                exception = name,
                "{problem} (allowed by JJONGAL_ALLOW_UNSAFE)"
            );
        } else if args.environment == Environment::Production {
            bail!("{problem}; refused in production (JJONGAL_ALLOW_UNSAFE={name} to start anyway)");
        } else {
            tracing::warn!("{problem}; production mode would refuse it");
        }
    }
    Ok(())
}

/// Whether `media` is `data` or one of its ancestors (`/`), once both are absolute.
fn media_holds(media: &Path, data: &Path) -> bool {
    let (media, data) = (resolved(media), resolved(data));
    data.starts_with(&media)
}

/// `p` absolute, with `.` and `..` resolved, and symbolic links too as far as the path
/// exists (a media dir is often created later, so `data/media/..` must still be seen
/// as `data`).
fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
        if let Ok(real) = std::fs::canonicalize(&out) {
            out = real;
        }
    }
    out
}

/// `10.0.0.1, 192.168.0.0/16, ::1` → networks; anything unparsable stops start-up.
fn parse_proxies(list: &str) -> anyhow::Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            IpNet::parse(p).with_context(|| {
                format!("JJONGAL_TRUSTED_PROXIES: `{p}` is not an IP address or CIDR range")
            })
        })
        .collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A setting given but empty (`JJONGAL_DATABASE_URL=`, `--public-url ""`) is refused at
/// start-up, naming it: it is a mistake far more often than a wish, and taken as given it
/// made a server that reported ready and failed every request. Unset means the default.
/// Only lists whose empty value is their documented default (CORS origins, trusted
/// proxies: none) may be empty.
fn refuse_empty_settings(args: &ConfigArgs) -> anyhow::Result<()> {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.as_os_str().to_string_lossy().into_owned())
    };
    let settings: [(&str, Option<String>); 26] = [
        ("JJONGAL_DATABASE_URL", args.database_url.clone()),
        ("JJONGAL_DATA_DIR", path(&Some(args.data_dir.clone()))),
        ("JJONGAL_PUBLIC_URL", Some(args.public_url.clone())),
        ("JJONGAL_JWT_SECRET", args.jwt_secret.clone()),
        ("JJONGAL_MEDIA_SECRET", args.media_secret.clone()),
        ("JJONGAL_MEDIA_DIR", path(&args.media_dir)),
        ("JJONGAL_LOG", Some(args.log.clone())),
        ("JJONGAL_LLM_BASE_URL", args.llm_base_url.clone()),
        ("JJONGAL_LLM_API_KEY", args.llm_api_key.clone()),
        ("JJONGAL_LLM_MODEL", args.llm_model.clone()),
        ("JJONGAL_IMAGE_BASE_URL", args.image_base_url.clone()),
        ("JJONGAL_IMAGE_API_KEY", args.image_api_key.clone()),
        ("JJONGAL_IMAGE_MODEL", args.image_model.clone()),
        ("JJONGAL_SPEECH_BASE_URL", args.speech_base_url.clone()),
        ("JJONGAL_SPEECH_API_KEY", args.speech_api_key.clone()),
        ("JJONGAL_SPEECH_MODEL", args.speech_model.clone()),
        ("JJONGAL_SPEECH_VOICE", Some(args.speech_voice.clone())),
        (
            "JJONGAL_MODERATION_BASE_URL",
            args.moderation_base_url.clone(),
        ),
        (
            "JJONGAL_MODERATION_API_KEY",
            args.moderation_api_key.clone(),
        ),
        ("JJONGAL_MODERATION_MODEL", args.moderation_model.clone()),
        ("JJONGAL_VOICE_BASE_URL", args.voice_base_url.clone()),
        ("JJONGAL_VOICE_API_KEY", args.voice_api_key.clone()),
        ("JJONGAL_VOICE_MODEL", args.voice_model.clone()),
        ("JJONGAL_STT_BASE_URL", args.stt_base_url.clone()),
        ("JJONGAL_STT_API_KEY", args.stt_api_key.clone()),
        ("JJONGAL_STT_MODEL", args.stt_model.clone()),
    ];
    let empty: Vec<String> = settings
        .iter()
        .filter(|(name, value)| {
            // Blank secrets are judged by their entropy instead (and refused there).
            let blank = |v: &str| {
                if name.ends_with("SECRET") {
                    v.is_empty()
                } else {
                    v.trim().is_empty()
                }
            };
            value.as_deref().is_some_and(blank)
        })
        .map(|(name, _)| {
            let flag = name
                .trim_start_matches("JJONGAL_")
                .to_lowercase()
                .replace('_', "-");
            format!("{name} (--{flag})")
        })
        .collect();
    if !empty.is_empty() {
        bail!(
            "{} {} set but empty: give a value, or unset it to use the default",
            empty.join(", "),
            if empty.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

/// Estimated entropy of a secret, in bits: its length times the Shannon entropy of its
/// own byte distribution. Generous to real random secrets (48 random base64url bytes:
/// about 250), damning for repeats and patterns (32 spaces: 0; `aaaa…`: 0).
pub(crate) fn estimated_entropy_bits(secret: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in secret {
        counts[b as usize] += 1;
    }
    let n = secret.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

/// The least estimated entropy a production secret must have (32 random hex characters
/// estimate about 115 bits, hardly ever below 100; 32 spaces 0, `abab…` 1 bit a byte).
pub(crate) const MIN_SECRET_ENTROPY_BITS: f64 = 80.0;

/// Whether `secret` is a shorter piece repeated (`passwordpassword…`), whatever its
/// byte distribution suggests.
fn is_repetition(secret: &[u8]) -> bool {
    (1..=secret.len() / 2).any(|period| {
        secret.len().is_multiple_of(period) && secret.chunks(period).all(|c| c == &secret[..period])
    })
}

fn required_secret(name: &str, value: Option<&str>) -> anyhow::Result<Secret> {
    match value {
        None | Some("") => bail!("{name} is required in production mode"),
        Some(v) if v.len() < MIN_SECRET_BYTES => {
            bail!("{name} must be at least {MIN_SECRET_BYTES} bytes in production mode")
        }
        Some(v)
            if estimated_entropy_bits(v.as_bytes()) < MIN_SECRET_ENTROPY_BITS
                || is_repetition(v.as_bytes()) =>
        {
            bail!(
                "{name} is too predictable for production mode (repeated or patterned \
                 characters); generate one, e.g. `openssl rand -base64 48`"
            )
        }
        Some(v) => Ok(Secret::new(v.as_bytes().to_vec())),
    }
}

/// Reads `<data dir>/secrets/<name>`, creating it with fresh random bytes if missing.
/// Creation is atomic (write a private temp file, then hard-link it into place, which
/// fails if another process won the race), so concurrent starters agree on one secret.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let dir = data_dir.join("secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    restrict_permissions(&dir, 0o700);
    let path = dir.join(name);
    if !path.exists() {
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, URL_SAFE_NO_PAD.encode(bytes))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        restrict_permissions(&tmp, 0o600);
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(e).with_context(|| format!("cannot create {}", path.display()));
        }
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    if text.len() < MIN_SECRET_BYTES {
        bail!(
            "{} holds fewer than {MIN_SECRET_BYTES} bytes",
            path.display()
        );
    }
    Ok(Secret::new(text.as_bytes().to_vec()))
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_read_or_refused_never_guessed() {
        for (given, read) in [
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("Postgres://u@h/db", "postgres://u@h/db"),
            ("POSTGRESQL://u@h/db", "postgresql://u@h/db"),
            ("sqlite://data/x.db", "sqlite://data/x.db"),
            ("./data/jjongal.db", "./data/jjongal.db"),
            ("/var/lib/jjongal.db", "/var/lib/jjongal.db"),
            ("jjongal.db", "jjongal.db"),
        ] {
            assert_eq!(database_url(given).unwrap(), read, "{given}");
        }
        for bad in [
            "\"postgres://u@h/db\"",
            " postgres://u@h/db",
            "'postgres://u@h/db'",
            "1postgres://u@h/db",
            "postgres:/u@h/db",
            "postgres:u@h",
            "mysql://u@h/db",
            "http://x",
        ] {
            assert!(database_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_dirs_that_hold_the_data_dir_are_found() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        assert!(media_holds(d, d));
        assert!(media_holds(Path::new("/"), d));
        assert!(media_holds(d.parent().unwrap(), d));
        assert!(!media_holds(&d.join("media"), d));
        // Not there yet, and `..` back into the data dir.
        assert!(media_holds(&d.join("media/.."), d));
        assert!(media_holds(&d.join("new/deeper/../.."), d));
    }

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

    #[test]
    fn secret_entropy_tells_random_from_repeated() {
        assert_eq!(estimated_entropy_bits(&[b' '; 32]), 0.0);
        assert!(estimated_entropy_bits("abab".repeat(10).as_bytes()) < MIN_SECRET_ENTROPY_BITS);
        assert!(is_repetition("password".repeat(4).as_bytes()));
        assert!(!is_repetition(b"0123456789abcdef0123456789abcdef-a"));
        // What development mode generates (48 random bytes, base64url) always passes.
        for _ in 0..200 {
            let mut bytes = [0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            let secret = URL_SAFE_NO_PAD.encode(bytes);
            assert!(
                estimated_entropy_bits(secret.as_bytes()) > 200.0,
                "{secret}"
            );
        }
        // 32 random hex characters (openssl rand -hex 16) pass too.
        for _ in 0..200 {
            let mut bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                estimated_entropy_bits(hex.as_bytes()) >= MIN_SECRET_ENTROPY_BITS,
                "{hex}"
            );
        }
    }
}
