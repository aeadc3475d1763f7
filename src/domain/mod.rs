//! Domain services: the rules. Every door (REST, GraphQL, WebSocket) reaches data only
//! through here, so authorisation cannot be skipped.
//!
//! [`Domain`] is the shared context (pool, keys, media, events, providers, settings);
//! each aggregate has its service, a view of it: [`Accounts`], [`Stories`],
//! [`Conversations`], [`Voices`] and [`Ops`] (`domain.stories().story(viewer, id)`). A
//! service holds the aggregate's rules and ownership checks; its SQL is in `store`.

pub(crate) mod account_cache;
pub mod accounts;
pub(crate) mod book;
pub mod conversations;
pub(crate) mod cursor;
pub(crate) mod export;
pub(crate) mod ops;
pub mod retention;
pub mod stories;
pub(crate) mod tokens;
pub(crate) mod voices;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::events::{Event, Events};
use crate::media::MediaStore;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::store::Pool;
use crate::vocabulary::{StoryId, UserId};
use cursor::CursorCodec;
use tokens::TokenKeys;

/// How often `/readyz` may write its probe row.
const READINESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Shared handle to the domain services.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Authenticated accounts, for a moment (dropped as they change, on every process).
    accounts: Arc<account_cache::AccountCache>,
    keys: TokenKeys,
    cursors: CursorCodec,
    media: MediaStore,
    events: Events,
    providers: Providers,
    metrics: Metrics,
    passwords: accounts::PasswordWork,
    /// Woken when a story becomes pending, so the local worker starts at once.
    work: Notify,
    /// The last readiness probe (a database write) and when it ran: `/readyz` probes
    /// at most once a few seconds, however often it is asked.
    readiness: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), bool>)>>,
    config: Config,
}

impl Domain {
    pub fn new(config: Config, pool: Pool, events: Events, providers: Providers) -> Domain {
        let accounts = Arc::new(account_cache::AccountCache::new(config.account_cache_ttl));
        let follower = Arc::downgrade(&accounts);
        let bus = events.clone();
        tokio::spawn(async move { account_cache::AccountCache::follow(follower, &bus).await });
        Domain {
            inner: Arc::new(Inner {
                accounts,
                keys: TokenKeys::new(&config.jwt_secret),
                cursors: CursorCodec::new(&config.jwt_secret),
                media: MediaStore::new(
                    config.media_dir.clone(),
                    config.media_secret.clone(),
                    config.public_url.clone(),
                    config.media_url_ttl,
                ),
                passwords: accounts::PasswordWork::new(
                    config.password_hash_concurrency,
                    config.password_hash_queue,
                ),
                pool,
                events,
                providers,
                metrics: Metrics::default(),
                work: Notify::new(),
                readiness: tokio::sync::Mutex::new(None),
                config,
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Whether the database answers and takes a write (`/readyz`). The probe writes, so
    /// it runs at most once every [`READINESS_EVERY`]; callers in between get its result.
    /// `Err(true)` when writes fail for lack of storage, `Err(false)` otherwise.
    pub(crate) async fn ready(&self) -> Result<(), bool> {
        let mut last = self.inner.readiness.lock().await;
        if let Some((at, result)) = *last
            && at.elapsed() < READINESS_EVERY
        {
            return result;
        }
        let result = self.inner.pool.ping().await.map_err(|e| {
            tracing::error!(error = %e, "readiness check failed");
            e.is_storage_full()
        });
        *last = Some((std::time::Instant::now(), result));
        result
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn account_cache(&self) -> &account_cache::AccountCache {
        &self.inner.accounts
    }

    pub(crate) fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    /// The account an access token names, checked by signature and expiry only (no
    /// database): what per-account rate limits key on.
    pub(crate) fn account_of_token(&self, token: &str) -> Option<UserId> {
        self.inner.keys.verify(token).ok()
    }

    /// How long a valid access token has left (zero once past its `exp`); `None` for a
    /// token that does not verify. Long-lived connections end when it runs out.
    pub(crate) fn token_time_left(&self, token: &str) -> Option<std::time::Duration> {
        let exp = self.inner.keys.expires_at(token)?;
        let left = exp - chrono::Utc::now().timestamp();
        Some(std::time::Duration::from_secs(left.max(0) as u64))
    }

    pub(crate) fn passwords(&self) -> &accounts::PasswordWork {
        &self.inner.passwords
    }

    pub(crate) fn cursors(&self) -> &CursorCodec {
        &self.inner.cursors
    }

    pub fn media(&self) -> &MediaStore {
        &self.inner.media
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub(crate) fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Resolves when new work may be waiting (or at once if a wake-up is pending).
    pub(crate) async fn work_available(&self) {
        self.inner.work.notified().await
    }

    /// How many live subscriptions to every change this process serves (story and
    /// typing subscriptions, the operators' views): for tests that must know theirs is
    /// listening before they make a change.
    pub fn live_subscriptions(&self) -> usize {
        self.events().subscribers()
    }

    pub(crate) fn signal_work(&self) {
        self.inner.work.notify_one();
    }

    /// Publishes `event` to every process; one that changes an account
    /// ([`Event::changed_account`]) first drops this process's copy of it, so requests
    /// here see the change at once (other processes drop theirs when the event arrives).
    pub(crate) async fn announce(&self, event: Event) {
        if let Some(user) = event.changed_account() {
            self.account_cache().forget(user);
        }
        self.events().publish(event).await;
    }

    pub(crate) async fn story_changed(&self, id: StoryId) {
        self.events().publish(Event::Story { id }).await;
    }
}

/// Declares the per-aggregate services: each a view of the [`Domain`] (which it derefs
/// to, for the shared context), made by the method of the same name.
macro_rules! services {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)+) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy)]
            pub struct $name<'a>(&'a Domain);

            impl std::ops::Deref for $name<'_> {
                type Target = Domain;
                fn deref(&self) -> &Domain {
                    self.0
                }
            }
        )+

        impl Domain {
            $(
                pub fn $method(&self) -> $name<'_> {
                    $name(self)
                }
            )+
        }
    };
}

services! {
    /// Sign-up, login, token rotation and logout, the current user, account deletion.
    Accounts => accounts;
    /// The story library: creating, reading, listing, renaming, deleting, retrying; and
    /// the generation worker's writes.
    Stories => stories;
    /// Conversations with the guide: starting, talking, ending, reading, deleting.
    Conversations => conversations;
    /// Voice samples and the cloned voice.
    Voices => voices;
    /// The operators' audited view across accounts, and role changes.
    Ops => ops;
    /// The retention policy's purge (docs/privacy.md, *Retention*).
    Retention => retention;
    /// The guardian's export of the family's data.
    Exports => exports;
    /// A completed story as an EPUB 3 picture book.
    Books => books;
}

/// Counts Unicode scalar values, the unit of every text limit in the contract.
pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Largest page any listing serves.
pub(crate) const MAX_PAGE_SIZE: i32 = 100;

/// Checks a requested page size (1–100); returns it as a query limit. (The REST facade
/// checks `page_size` itself, so this message speaks GraphQL.)
pub(crate) fn page_limit(first: i32) -> crate::error::AppResult<i64> {
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(crate::error::AppError::validation(format!(
            "`first`는 1~{MAX_PAGE_SIZE} 사이여야 합니다."
        )));
    }
    Ok(i64::from(first))
}

/// An internal failure with what was being done; its text goes only to the log.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> crate::error::AppError {
    crate::error::AppError::Internal(anyhow::anyhow!("{what}: {e}"))
}
