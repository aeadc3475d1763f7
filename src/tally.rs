//! Counts of open things per key — connections per client address, sockets per account —
//! each held by a ticket that gives its place back when dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Open things per key.
pub(crate) struct Tally<K: Eq + Hash>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Eq + Hash> Clone for Tally<K> {
    fn clone(&self) -> Self {
        Tally(self.0.clone())
    }
}

impl<K: Eq + Hash> Default for Tally<K> {
    fn default() -> Self {
        Tally(Arc::default())
    }
}

/// One counted place; uncounted when dropped.
pub(crate) struct Ticket<K: Eq + Hash> {
    tally: Tally<K>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone> Tally<K> {
    /// A place for `key` unless it holds `max` already.
    pub(crate) fn admit(&self, key: K, max: usize) -> Option<Ticket<K>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(key.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Ticket {
            tally: self.clone(),
            key: Some(key),
        })
    }

    /// How many places `key` holds.
    #[cfg(test)]
    fn count(&self, key: &K) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

impl<K: Eq + Hash> Drop for Ticket<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut map = self.tally.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_key_and_given_back() {
        let open = Tally::default();
        let first = open.admit("a", 2).unwrap();
        let second = open.admit("a", 2).unwrap();
        assert!(open.admit("a", 2).is_none());
        assert_eq!(open.count(&"a"), 2);
        assert!(open.admit("b", 2).is_some());
        drop(first);
        let third = open.admit("a", 2);
        assert!(third.is_some());
        drop((second, third));
        assert!(open.admit("c", 0).is_none());
        assert!(open.is_empty());
    }
}
