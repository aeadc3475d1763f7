//! A story's chapters kept in memory under the story's revision, so a read that finds the
//! story row unchanged needs no chapter rows from the database.
//!
//! The revision is the database's own count of changes to a story's chapters (a trigger on
//! `chapters`, migration 16), read with the story row on every request. An entry is
//! served only for the revision it was read at; any change to a chapter — by this process
//! or another — moves the revision, and the next read reads the chapters again. Nothing is
//! invalidated by messages, so nothing can be missed: a cached read is as fresh as the row
//! read with it (or newer: chapters read after their row may be). Access is checked on
//! that fresh row too, before anything cached is served. A revision is at least the
//! change's time in microseconds, so it does not repeat after a restore brings back older
//! rows or migration 16 runs again (while the clock moves forward).
//!
//! Bounded by bytes (`JJONGAL_STORY_CACHE_MB`); the oldest entries go first. On
//! PostgreSQL a page of stories whose chapters are all cached is one statement instead of
//! two, and a cached story is read as its row alone instead of a row per chapter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::stories::Joined;
use super::types::StoryId;

/// What an entry costs beyond its chapters (the map's and the queue's share, the shared
/// slice's header).
const ENTRY_OVERHEAD: usize = 160;
/// What the allocator adds to each string a chapter holds (up to six: title, words, and
/// two files' path and content type), beyond its bytes.
const PER_STRING: usize = 16;

/// Chapters by story, each under the revision it was read at.
pub struct ChapterCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<StoryId, Entry>,
    /// Stories in the order their entries were put (an id whose entry was replaced or
    /// evicted may appear again; `Entry::stamp` tells which one is current).
    order: VecDeque<(StoryId, u64)>,
    bytes: usize,
    stamps: u64,
}

struct Entry {
    revision: i64,
    chapters: Arc<[Joined]>,
    bytes: usize,
    stamp: u64,
}

impl ChapterCache {
    /// A cache holding at most `budget` bytes of chapters (0: none).
    pub fn new(budget: usize) -> ChapterCache {
        ChapterCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The revision `story`'s chapters are cached at, if they are.
    pub(crate) fn revision_of(&self, story: StoryId) -> Option<i64> {
        self.lock().entries.get(&story).map(|e| e.revision)
    }

    /// `story`'s chapters as they were at `revision`, if they are cached at it.
    pub(crate) fn get(&self, story: StoryId, revision: i64) -> Option<Arc<[Joined]>> {
        match self.lock().entries.get(&story) {
            Some(e) if e.revision == revision => Some(e.chapters.clone()),
            _ => None,
        }
    }

    /// Keeps `chapters` as `story`'s at `revision` (read with the row that showed it), in
    /// place of any older entry; the oldest entries go while over budget.
    pub(crate) fn put(&self, story: StoryId, revision: i64, chapters: Vec<Joined>) {
        let bytes = ENTRY_OVERHEAD + chapters.iter().map(size_of_chapter).sum::<usize>();
        let mut inner = self.lock();
        let inner = &mut *inner;
        if bytes > self.budget {
            // Too big to keep: nor is an older entry kept in its place.
            if let Some(old) = inner.entries.remove(&story) {
                inner.bytes -= old.bytes;
            }
            return;
        }
        let chapters: Arc<[Joined]> = chapters.into();
        if let Some(old) = inner.entries.get(&story)
            && old.revision > revision
        {
            // A slower reader's older chapters never replace newer ones.
            return;
        }
        inner.stamps += 1;
        let stamp = inner.stamps;
        let entry = Entry {
            revision,
            chapters,
            bytes,
            stamp,
        };
        if let Some(old) = inner.entries.insert(story, entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        inner.order.push_back((story, stamp));
        while inner.bytes > self.budget {
            let Some((id, stamp)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&id).is_some_and(|e| e.stamp == stamp)
                && let Some(gone) = inner.entries.remove(&id)
            {
                inner.bytes -= gone.bytes;
            }
        }
        // Replaced entries leave stale ids in the queue; drop them once they outnumber
        // the live ones, so the queue stays proportional to the cache.
        if inner.order.len() > 2 * inner.entries.len() + 64 {
            let entries = &inner.entries;
            inner
                .order
                .retain(|(id, stamp)| entries.get(id).is_some_and(|e| e.stamp == *stamp));
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every step above keeps
        // the map, the queue and the count agreeing before the next can fail).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn size_of_chapter((text, image, audio): &Joined) -> usize {
    let media = |m: &Option<super::stories::MediaColumns>| {
        m.as_ref()
            .map_or(0, |(_, path, kind)| path.len() + kind.len())
    };
    size_of::<Joined>()
        + 6 * PER_STRING
        + text.content.len()
        + text.title.len()
        + media(image)
        + media(audio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::models::ChapterText;
    use crate::vocabulary::{ChapterId, MediaFileId};

    fn chapters(story: StoryId, words: &str) -> Vec<Joined> {
        (1..=3)
            .map(|n| {
                let text = ChapterText {
                    id: ChapterId::random(),
                    story_id: story,
                    chapter_number: n,
                    title: format!("{n}장"),
                    content: format!("{words} {n}"),
                };
                let image = Some((
                    MediaFileId::random(),
                    format!("a/{n}.png"),
                    "image/png".into(),
                ));
                (text, image, None)
            })
            .collect()
    }

    fn words(cached: &[Joined]) -> Vec<String> {
        cached.iter().map(|(t, _, _)| t.content.clone()).collect()
    }

    #[test]
    fn an_entry_is_served_only_at_its_revision() {
        let cache = ChapterCache::new(1 << 20);
        let story = StoryId::random();
        assert!(cache.get(story, 0).is_none());
        cache.put(story, 3, chapters(story, "옛날"));
        assert_eq!(cache.revision_of(story), Some(3));
        assert_eq!(
            words(&cache.get(story, 3).unwrap()),
            ["옛날 1", "옛날 2", "옛날 3"]
        );
        assert!(
            cache.get(story, 4).is_none(),
            "another revision is never served"
        );
        assert!(cache.get(story, 2).is_none());
        cache.put(story, 4, chapters(story, "새로"));
        assert_eq!(words(&cache.get(story, 4).unwrap())[0], "새로 1");
        // An older read arriving late does not put its chapters back.
        cache.put(story, 3, chapters(story, "옛날"));
        assert_eq!(cache.revision_of(story), Some(4));
        assert!(cache.get(story, 3).is_none());
    }

    #[test]
    fn the_budget_holds_and_the_oldest_go_first() {
        let one = ENTRY_OVERHEAD
            + chapters(StoryId::random(), "가나다")
                .iter()
                .map(size_of_chapter)
                .sum::<usize>();
        let cache = ChapterCache::new(3 * one);
        let ids: Vec<StoryId> = (0..5).map(|_| StoryId::random()).collect();
        for id in &ids {
            cache.put(*id, 1, chapters(*id, "가나다"));
            assert!(cache.bytes() <= 3 * one);
        }
        assert!(cache.get(ids[0], 1).is_none() && cache.get(ids[1], 1).is_none());
        assert!(ids[2..].iter().all(|id| cache.get(*id, 1).is_some()));
        // Replacing entries many times keeps the bookkeeping bounded and exact.
        for revision in 2..500 {
            cache.put(ids[4], revision, chapters(ids[4], "가나다"));
        }
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.lock().order.len() <= 2 * 3 + 64);
        assert!(
            cache.get(ids[2], 1).is_some(),
            "replacing one entry evicts no other"
        );
        // Chapters too big for the budget are not kept, nor are the story's older ones.
        cache.put(ids[2], 2, chapters(ids[2], &"가".repeat(one)));
        assert!(cache.get(ids[2], 2).is_none() && cache.revision_of(ids[2]).is_none());
        assert_eq!(cache.bytes(), 2 * one);
        // A cache of no bytes keeps nothing.
        let none = ChapterCache::new(0);
        none.put(ids[0], 1, chapters(ids[0], "가"));
        assert!(none.get(ids[0], 1).is_none() && none.bytes() == 0);
    }
}
