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

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use super::accounts::User;
use crate::events::{Event, Events};
use crate::store::types::UserId;

/// Accounts held at most (a full cache starts over: a burst of new accounts costs one
/// read each, never memory).
const CAPACITY: usize = 10_000;

pub(crate) struct AccountCache {
    ttl: Duration,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<UserId, (User, Instant)>,
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

    /// The account, when it was read less than the lifetime ago and not changed since.
    pub(crate) fn get(&self, id: UserId) -> Option<User> {
        let state = self.state.read().expect("account cache lock");
        let (user, at) = state.entries.get(&id)?;
        (at.elapsed() < self.ttl).then(|| user.clone())
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
        state.entries.insert(user.id, (user, Instant::now()));
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
                Ok(
                    Event::AccountGone { user }
                    | Event::AccountChanged { user }
                    | Event::AccountUpdated { user }
                    | Event::VoiceCloned { user, .. }
                    | Event::VoiceCloneFailed { user, .. },
                ) => cache.forget(user),
                Ok(_) => {}
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
    fn entries_live_no_longer_than_the_lifetime() {
        let cache = AccountCache::new(Duration::from_millis(30));
        let id = UserId::random();
        cache.put(user(id, "a"), cache.generation());
        assert!(cache.get(id).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(id).is_none());
        // A lifetime of zero keeps nothing.
        let off = AccountCache::new(Duration::ZERO);
        off.put(user(id, "a"), off.generation());
        assert!(off.get(id).is_none());
    }
}
