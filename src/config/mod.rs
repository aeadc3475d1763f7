//! One typed configuration, from flags and `JJONGAL_*` environment variables.
//! Secrets are wrapped in [`Secret`] so they never reach logs, `Debug` or `--help`.
//!
//! - [`args`]: the flags and variables as clap reads them ([`ConfigArgs`]);
//! - here: the resolved [`Config`] and the checks that refuse an unsafe production;
//! - [`secrets`]: the signing secrets (required, strong and distinct in production;
//!   generated once in development);
//! - [`providers`]: the AI providers' settings and base URLs;
//! - [`network`]: rate limits, trusted proxies and CORS origins;
//! - [`paths`]: the database URL and where media may live.

mod args;
mod network;
mod paths;
mod providers;
mod secrets;

pub use args::{ConfigArgs, NonBlank};
pub use ipnet::IpNet;
#[cfg(test)]
pub(crate) use network::parse_network;
use network::{gateway_config, parse_origins};
use paths::database_url;
use paths::media_holds;
use providers::providers_config;
pub use providers::{
    ChatParams, ProviderConfig, ProvidersConfig, TemperatureParam, TokenLimitParam,
};
pub use secrets::Secret;
use secrets::secrets;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use secrecy::ExposeSecret;

/// Minimum length of the JWT and media secrets in production.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

/// How long voice samples are kept (`JJONGAL_RETAIN_VOICE_SAMPLES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SampleRetention {
    /// Deleted once the voice is cloned (they are of no further use).
    UntilCloned,
    /// Kept until the guardian deletes the voice or withdraws the consent.
    UntilDeleted,
}

/// What the purge job keeps, and how often it runs (docs/privacy.md, *Retention*).
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Ended conversations (with their messages and spoken replies) unchanged for longer
    /// are deleted.
    pub conversations: Duration,
    /// Spoken replies of ended conversations older than this lose their audio.
    pub reply_audio: Duration,
    pub voice_samples: SampleRetention,
    /// How often one purge runs (once per interval across processes).
    pub purge_interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
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
    /// Bytes of stories' chapters kept between reads (`JJONGAL_STORY_CACHE_MB`).
    pub story_cache_bytes: usize,
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
    pub retention: RetentionConfig,
    /// One export per account per this long.
    pub export_interval: Duration,
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
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
        let database_url = match &args.database_url {
            Some(url) => database_url(url.expose_secret())?,
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
            retention: RetentionConfig {
                conversations: Duration::from_secs(
                    u64::from(args.retain_conversations_days) * 86_400,
                ),
                reply_audio: Duration::from_secs(u64::from(args.retain_reply_audio_days) * 86_400),
                voice_samples: args.retain_voice_samples,
                purge_interval: Duration::from_secs(args.purge_interval_secs),
            },
            export_interval: Duration::from_secs(args.export_interval_secs),
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
            story_cache_bytes: (args.story_cache_mb as usize) << 20,
            refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl),
            media_url_ttl: Duration::from_secs(args.media_url_ttl),
            database_pool_size: args.database_pool_size as usize,
        })
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
    let too_wide = |net: &IpNet| match net.addr() {
        IpAddr::V4(_) => net.prefix_len() < 8,
        IpAddr::V6(_) => net.prefix_len() < 32,
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
