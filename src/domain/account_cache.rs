//! Authenticated accounts kept in memory for a moment, so an authenticated read needs no
//! database trip for its account check (on PostgreSQL that trip was one of a read's
//! three). Correct across processes: every change of an account row that its readers see
//! — deletion, role, voice — drops the entry here at once, and on every other process
//! when its event arrives (PostgreSQL's LISTEN/NOTIFY); a notification that is missed
//! (the listener reconnecting) is bounded by the entries' lifetime,
//! `JJONGAL_ACCOUNT_CACHE_TTL_MS`.
//!
//! A read racing a change cannot put the old row back: every drop advances a
//! generation, and a row read before the latest drop is not kept.
//!
//! An account in use is read again before its entry expires: the first request to find
//! it in the second half of its lifetime reads it (and puts it back fresh) while the
//! others are still served. Without that, every request arriving while the read of an
//! expired entry was on its way read the account too: on PostgreSQL under load, where
//! a read waits for a pooled connection, up to a dozen reads per expiry (in the load
//! benchmark, 1.4 statements per `GET /stories/{id}` instead of 1.0). A failed re-read
//! fails its request, as a read of an expired entry would; the entry then expires.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use super::accounts::User;
use crate::events::Events;
use crate::vocabulary::UserId;

struct Entry {
    user: User,
    at: Instant,
    /// A request is reading the account again.
    refreshing: AtomicBool,
}

/// Accounts held at most (a full cache starts over: a burst of new accounts costs one
/// read each, never memory).
const CAPACITY: usize = 10_000;

pub(crate) struct AccountCache {
    ttl: Duration,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<UserId, Entry>,
    /// Advanced by every drop.
    generation: u64,
}

impl AccountCache {
    pub(crate) fn new(ttl: Duration) -> AccountCache {
        AccountCache {
            ttl,
            state: RwLock::new(State::default()),
        }
    }

    /// The account, when it was read less than the lifetime ago and not changed since —
    /// except for the first caller to find it in the second half of its lifetime, who is
    /// to read it again and [`AccountCache::put`] it.
    pub(crate) fn get(&self, id: UserId) -> Option<User> {
        let state = self.state.read().expect("account cache lock");
        let entry = state.entries.get(&id)?;
        let age = entry.at.elapsed();
        if age >= self.ttl
            || (age >= self.ttl / 2 && !entry.refreshing.swap(true, Ordering::Relaxed))
        {
            return None;
        }
        Some(entry.user.clone())
    }

    /// Where the drops stand: taken before reading an account from the database.
    pub(crate) fn generation(&self) -> u64 {
        self.state.read().expect("account cache lock").generation
    }

    /// Keeps `user`, read from the database when the drops stood at `generation`,
    /// unless one happened since (its row may be older than that change).
    pub(crate) fn put(&self, user: User, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut state = self.state.write().expect("account cache lock");
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= CAPACITY {
            state.entries.clear();
        }
        let entry = Entry {
            user,
            at: Instant::now(),
            refreshing: AtomicBool::new(false),
        };
        state.entries.insert(entry.user.id, entry);
    }

    /// Drops `id`'s entry: its row changed.
    pub(crate) fn forget(&self, id: UserId) {
        let mut state = self.state.write().expect("account cache lock");
        state.entries.remove(&id);
        state.generation += 1;
    }

    /// Drops every entry (changes may have been missed).
    pub(crate) fn forget_all(&self) {
        let mut state = self.state.write().expect("account cache lock");
        state.entries.clear();
        state.generation += 1;
    }

    /// Drops entries as the events of every process say their accounts changed, until
    /// the event bus closes; events missed by this follower drop everything.
    pub(crate) async fn follow(cache: std::sync::Weak<AccountCache>, events: &Events) {
        let mut changes = events.subscribe();
        loop {
            let event = changes.recv().await;
            let Some(cache) = cache.upgrade() else { return };
            match event {
                Ok(event) => {
                    if let Some(user) = event.changed_account() {
                        cache.forget(user);
                    }
                }
                Err(RecvError::Lagged(_)) => cache.forget_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::accounts::Role;

    fn user(id: UserId, name: &str) -> User {
        User {
            id,
            login_id: "family".into(),
            name: name.into(),
            age: 6,
            role: Role::Member,
            created_at: chrono::Utc::now(),
            voice_id: None,
        }
    }

    #[test]
    fn a_row_read_before_a_change_is_not_kept() {
        let cache = AccountCache::new(Duration::from_secs(60));
        let id = UserId::random();
        let seen = cache.generation();
        // The account changes while the old row is being read.
        cache.forget(id);
        cache.put(user(id, "old"), seen);
        assert!(cache.get(id).is_none());
        // Read after the change: kept.
        cache.put(user(id, "new"), cache.generation());
        assert_eq!(cache.get(id).unwrap().name, "new");
        cache.forget(id);
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn one_caller_reads_an_ageing_entry_again_while_the_others_are_served() {
        let cache = AccountCache::new(Duration::from_millis(600));
        let id = UserId::random();
        cache.put(user(id, "a"), cache.generation());
        assert!(cache.get(id).is_some());
        std::thread::sleep(Duration::from_millis(310));
        // Past half its lifetime: the first caller is told to read it again...
        assert!(cache.get(id).is_none());
        // ...the others are served meanwhile...
        assert_eq!(cache.get(id).unwrap().name, "a");
        assert_eq!(cache.get(id).unwrap().name, "a");
        // ...and the row read again starts a new lifetime.
        cache.put(user(id, "b"), cache.generation());
        assert_eq!(cache.get(id).unwrap().name, "b");
        assert_eq!(cache.get(id).unwrap().name, "b");
    }

    #[test]
    fn entries_live_no_longer_than_the_lifetime() {
        let cache = AccountCache::new(Duration::from_millis(200));
        let id = UserId::random();
        cache.put(user(id, "a"), cache.generation());
        assert!(cache.get(id).is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(cache.get(id).is_none());
        // A lifetime of zero keeps nothing.
        let off = AccountCache::new(Duration::ZERO);
        off.put(user(id, "a"), off.generation());
        assert!(off.get(id).is_none());
    }
}
