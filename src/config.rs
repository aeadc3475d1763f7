//! One typed configuration, from flags and `JJONGAL_*` environment variables.
//! Secrets are wrapped in [`Secret`] so they never reach logs, `Debug` or `--help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, ValueEnum};
use rand::RngCore;

/// Minimum length of the JWT and media secrets in production.
pub const MIN_SECRET_BYTES: usize = 32;

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
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Address the public HTTP listener binds.
    #[arg(
        long,
        env = "JJONGAL_BIND",
        default_value = "0.0.0.0:8000",
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
    /// Lifetime of access tokens, in seconds (`expires_in`).
    #[arg(long, env = "JJONGAL_ACCESS_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86_400), global = true)]
    pub access_token_ttl: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "JJONGAL_REFRESH_TOKEN_TTL", default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(300..), global = true)]
    pub refresh_token_ttl: u64,
    /// Lifetime of signed media URLs, in seconds (rounded up to a whole minute).
    #[arg(long, env = "JJONGAL_MEDIA_URL_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=604_800), global = true)]
    pub media_url_ttl: u64,
    /// Maximum number of pooled database connections.
    #[arg(long, env = "JJONGAL_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub database_pool_size: u32,
}

/// A secret value: never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
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
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub media_url_ttl: Duration,
    pub database_pool_size: usize,
}

impl Config {
    /// Resolves flags into a runnable configuration: creates the data directory, and in
    /// development generates (or reuses) secrets kept in it.
    pub fn resolve(args: ConfigArgs) -> anyhow::Result<Config> {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
        let database_url = args.database_url.clone().unwrap_or_else(|| {
            args.data_dir
                .join("jjongal.db")
                .to_string_lossy()
                .into_owned()
        });
        let public_url = args.public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("JJONGAL_PUBLIC_URL must be an http(s) URL");
        }
        let (jwt_secret, media_secret) = match args.environment {
            Environment::Production => {
                let jwt = required_secret("JJONGAL_JWT_SECRET", args.jwt_secret.as_deref())?;
                let media = required_secret("JJONGAL_MEDIA_SECRET", args.media_secret.as_deref())?;
                if jwt.expose() == media.expose() {
                    bail!("JJONGAL_MEDIA_SECRET must differ from JJONGAL_JWT_SECRET");
                }
                (jwt, media)
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
                (jwt, media)
            }
        };
        Ok(Config {
            bind: args.bind,
            database_url,
            media_dir: args
                .media_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("media")),
            data_dir: args.data_dir,
            public_url,
            jwt_secret,
            media_secret,
            metrics_bind: args.metrics_bind,
            environment: args.environment,
            allow_signup: args.allow_signup,
            access_token_ttl: Duration::from_secs(args.access_token_ttl),
            refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl),
            media_url_ttl: Duration::from_secs(args.media_url_ttl),
            database_pool_size: args.database_pool_size as usize,
        })
    }
}

fn required_secret(name: &str, value: Option<&str>) -> anyhow::Result<Secret> {
    match value {
        None | Some("") => bail!("{name} is required in production mode"),
        Some(v) if v.len() < MIN_SECRET_BYTES => {
            bail!("{name} must be at least {MIN_SECRET_BYTES} bytes in production mode")
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
