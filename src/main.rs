//! The `jjongal` command: `serve` (default), `migrate`, `users`, `providers check`,
//! `voices retry-deletions`, `purge`, `talk`, `print-schema`, `print-openapi`.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use jjongal::app::{self, Application};
use jjongal::config::{Config, ConfigArgs};
use jjongal::domain::Domain;
use jjongal::domain::accounts::{Role, SignUp};
use jjongal::events::Events;
use jjongal::store::{self, Pool};

/// mimalloc: per-thread heaps, no global arena locks (glibc malloc was a third of a story
/// page's CPU in the load benchmark's profile).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "jjongal",
    version,
    about = "Jjongal (쫑알쫑알) story service",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Check the configured AI providers: one minimal real call each (exit 1 if any
    /// fails).
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Cloned voices the voice provider did not confirm deleted.
    Voices {
        #[command(subcommand)]
        command: VoicesCommand,
    },
    /// Run the retention purge now (the server also runs it every
    /// JJONGAL_PURGE_INTERVAL_SECS) and print what it deleted.
    Purge,
    /// Talk on the conversation socket from a shell: each line of standard input is what
    /// the child says; at its end the conversation ends and asks for its story.
    Talk {
        /// The server, as a client reaches it (plain http:// only: a development server).
        #[arg(long, default_value = "http://localhost:8000")]
        server: String,
        /// An access token (`access_token` from `POST /api/v1/auth/token`).
        #[arg(long, env = "JJONGAL_ACCESS_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long)]
        child_name: String,
        #[arg(long)]
        age: u32,
        /// Comma-separated, e.g. `공룡,바다`.
        #[arg(long, value_delimiter = ',')]
        interests: Vec<String>,
        /// End without asking for the conversation's story.
        #[arg(long)]
        no_story: bool,
    },
    /// Print the GraphQL schema (SDL).
    PrintSchema,
    /// Print the REST facade's OpenAPI 3.1 document (JSON), as served at `/openapi.json`.
    PrintOpenapi,
}

#[derive(Subcommand)]
enum ProvidersCommand {
    /// Call every configured provider once and print, per capability, OK or the
    /// provider's own error (URL, status, code). The image check makes one picture.
    Check,
}

#[derive(Subcommand)]
enum VoicesCommand {
    /// Ask the voice provider again to delete every voice still pending deletion.
    RetryDeletions {
        /// Settle the ones the provider still does not confirm (deleted by other means,
        /// or impossible to delete): they are recorded as `forced`.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an account; the password is read from standard input.
    Create {
        /// Login id (3–64 characters of [A-Za-z0-9._-]).
        login_id: String,
        /// The child's name.
        #[arg(long)]
        name: String,
        /// The child's age (1–19).
        #[arg(long)]
        age: i32,
        /// `member` (default) or `operator`.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Grant or withdraw the operator role (takes effect at once).
    SetRole {
        login_id: String,
        /// `member` or `operator`.
        role: String,
    },
}

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas
/// (`madvise(MADV_HUGEPAGE)`, which this kernel's default `madvise` mode grants), so every
/// 2 MiB region it touched stayed resident whole: with them, an open, idle conversation
/// socket cost 120 KiB of RSS instead of 61 KiB (the conversation benchmark; see
/// docs/performance.md). The flag also covers faults already advised, and C code.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    // TLS for provider calls uses rustls with the ring provider.
    jjongal::providers::http::install_tls();
    let cli = Cli::parse();
    jjongal::telemetry::init(&cli.config.log, cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintSchema => {
            print!("{}", jjongal::graphql::sdl());
            Ok(())
        }
        Command::PrintOpenapi => {
            let public_url = cli.config.public_url.trim_end_matches('/');
            let document = jjongal::rest::openapi::document_json(public_url);
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Command::Serve => serve(Config::resolve(cli.config)?).await,
        Command::Talk {
            server,
            token,
            child_name,
            age,
            interests,
            no_story,
        } => {
            jjongal::talk::run(jjongal::talk::Talk {
                server,
                token,
                child_name,
                age,
                interests,
                story: !no_story,
            })
            .await
        }
        Command::Migrate => {
            let config = Config::resolve(cli.config)?;
            let applied = store::migrate(&config.database_url).await?;
            tracing::info!(migrations = ?applied, "database is up to date");
            Ok(())
        }
        Command::Providers {
            command: ProvidersCommand::Check,
        } => {
            let config = Config::resolve(cli.config)?;
            let lines = jjongal::providers::check::check_all(&config.providers, None).await;
            for line in &lines {
                println!("{line}");
            }
            println!("\nwhere a family's data goes:");
            for flow in jjongal::providers::data_map::data_map_here(&config.providers) {
                println!("{flow}");
            }
            if lines.iter().all(|l| l.ok()) {
                Ok(())
            } else {
                bail!("a provider check failed")
            }
        }
        Command::Purge => {
            let domain = cli_domain(Config::resolve(cli.config)?).await?;
            let purged = domain
                .retention()
                .purge_now(&format!("command-{}", std::process::id()))
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            println!(
                "purged: {} conversations, {} spoken replies' audio, {} voice samples",
                purged.conversations, purged.reply_audio, purged.voice_samples
            );
            Ok(())
        }
        Command::Voices {
            command: VoicesCommand::RetryDeletions { force },
        } => {
            let domain = cli_domain(Config::resolve(cli.config)?).await?;
            let outcomes = domain
                .voices()
                .retry_voice_deletions(force)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            if outcomes.is_empty() {
                println!("no voice deletions are pending");
            }
            for o in &outcomes {
                println!(
                    "{} (account {}): {}{}",
                    o.voice_id,
                    o.owner_id,
                    o.status,
                    o.error
                        .as_deref()
                        .map(|e| format!(" — {e}"))
                        .unwrap_or_default()
                );
            }
            if outcomes.iter().any(|o| o.status == "pending") {
                bail!("some voices are still at the provider")
            }
            Ok(())
        }
        Command::Users {
            command: UsersCommand::SetRole { login_id, role },
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("the role must be `member` or `operator`");
            };
            let domain = cli_domain(Config::resolve(cli.config)?).await?;
            let user = domain
                .ops()
                .set_role(&login_id, role)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            println!("{} is now {}", user.login_id, role.as_str());
            Ok(())
        }
        Command::Users {
            command:
                UsersCommand::Create {
                    login_id,
                    name,
                    age,
                    role,
                },
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be `member` or `operator`");
            };
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let domain = cli_domain(Config::resolve(cli.config)?).await?;
            let user = domain
                .accounts()
                .create_user(
                    SignUp {
                        login_id,
                        password,
                        name,
                        age,
                        guardian_consent: true,
                    },
                    role,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
            println!("created user {} ({})", user.login_id, user.id);
            Ok(())
        }
    }
}

/// The domain for one-off CLI commands (migrated database, one connection).
async fn cli_domain(config: Config) -> anyhow::Result<Domain> {
    store::migrate(&config.database_url).await?;
    let pool = Pool::connect(&config.database_url, 1).await?;
    // A one-off command listens for no events: its shutdown switch is dropped at once.
    let events = Events::start(
        pool.clone(),
        &config.database_url,
        jjongal::shutdown::ShutdownSwitch::new().handle(),
    )
    .await?;
    let providers = jjongal::providers::Providers::from_config(&config.providers);
    Ok(Domain::new(config, pool, events, providers))
}

/// An error as the operator at the command line reads it: with its internal cause.
fn describe(e: jjongal::error::AppError) -> String {
    let public = e.into_public();
    match public.cause {
        Some(cause) => format!("{}: {} ({cause})", public.code, public.message),
        None => format!("{}: {}", public.code, public.message),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config).await?;
    tracing::info!(address = %application.local_addr(), metrics = %application.metrics_addr(), "listening");
    application.run_until(app::shutdown_signal()).await
}
