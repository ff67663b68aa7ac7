//! The one lock order of the indexing service, checked where locks are
//! taken.
//!
//! Every lock that can be held while another is taken is an [`OrderedMutex`]
//! or [`OrderedRwLock`] with a [`Level`]. A thread may only take a lock whose
//! level is strictly higher than every level it already holds, so no cycle
//! (no deadlock between these locks) can form. In builds with debug
//! assertions (every `cargo test` build) each acquisition checks this and
//! panics with both lock names on a violation; release builds compile the
//! check away and the wrappers are plain `parking_lot` locks.
//!
//! The order, outermost first (also in ARCHITECTURE.md):
//!
//! | level | lock | what it guards |
//! |---|---|---|
//! | 1 `Admin` | `Storage::admin` | create / delete of collections (one at a time) |
//! | 2 `Catalog` | `Storage::collections` | the name → collection map |
//! | 3 `Jobs` | `Collection::jobs` | the background worker's queue |
//! | 4 `Follow` | `Shared::follow` | a follower's position in the writer's files (WAL reader, manifest seen, open segments) |
//! | 5 `Checkpoint` | `Shared::checkpoint` | the manifest; segment swaps by the worker |
//! | 6 `State` | `Shared::state` | segment list, id map, appendable segment |
//! | 7 `SegmentData` | `MutableSegment::data` | one appendable segment's arrays |
//! | 8 `WalSync` | `Wal::sync_lock` | one fsync at a time (group commit) |
//! | 9 `WalFile` | `Wal::inner` | the WAL file being appended to |
//!
//! Leaf locks (never held while any other lock is taken): the WAL's poison
//! flag, the worker's progress counter, the collection's thread handles,
//! the storage's data-directory lock slot and a follower's map of loaded
//! collection directories.

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::ops::{Deref, DerefMut};

/// Lock levels; a thread takes locks in increasing level only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Admin = 1,
    Catalog = 2,
    Jobs = 3,
    Follow = 4,
    Checkpoint = 5,
    State = 6,
    SegmentData = 7,
    WalSync = 8,
    WalFile = 9,
}

#[cfg(debug_assertions)]
mod held {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        static HELD: RefCell<Vec<Level>> = const { RefCell::new(Vec::new()) };
    }

    /// Panics when `level` is not above every level this thread holds.
    pub fn enter(level: Level) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(&top) = h.iter().max() {
                assert!(
                    top < level,
                    "lock order violation: taking {level:?} while holding {top:?} \
                     (see indexing_service::lock_order)"
                );
            }
            h.push(level);
        });
    }

    pub fn exit(level: Level) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&l| l == level) {
                h.remove(i);
            }
        });
    }
}

#[cfg(not(debug_assertions))]
mod held {
    use super::Level;
    #[inline(always)]
    pub fn enter(_: Level) {}
    #[inline(always)]
    pub fn exit(_: Level) {}
}

/// A guard that also records its level for the order check.
pub struct Held<G> {
    guard: G,
    level: Level,
}

impl<G> Held<G> {
    fn new(level: Level, take: impl FnOnce() -> G) -> Self {
        held::enter(level);
        Held {
            guard: take(),
            level,
        }
    }
}

impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        held::exit(self.level);
    }
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

/// A `parking_lot::Mutex` with a place in the lock order.
pub struct OrderedMutex<T> {
    level: Level,
    inner: Mutex<T>,
}

impl<T> OrderedMutex<T> {
    pub fn new(level: Level, value: T) -> Self {
        Self {
            level,
            inner: Mutex::new(value),
        }
    }

    /// Locks; panics (debug builds) when the order would be broken.
    pub fn lock(&self) -> Held<MutexGuard<'_, T>> {
        Held::new(self.level, || self.inner.lock())
    }
}

/// A `parking_lot::RwLock` with a place in the lock order.
pub struct OrderedRwLock<T> {
    level: Level,
    inner: RwLock<T>,
}

impl<T> OrderedRwLock<T> {
    pub fn new(level: Level, value: T) -> Self {
        Self {
            level,
            inner: RwLock::new(value),
        }
    }

    /// Shared lock; panics (debug builds) when the order would be broken.
    /// A thread never takes the same lock twice, not even for reading
    /// (parking_lot's fair locks would deadlock behind a waiting writer).
    pub fn read(&self) -> Held<RwLockReadGuard<'_, T>> {
        Held::new(self.level, || self.inner.read())
    }

    /// Exclusive lock; panics (debug builds) when the order would be broken.
    pub fn write(&self) -> Held<RwLockWriteGuard<'_, T>> {
        Held::new(self.level, || self.inner.write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_order_is_allowed() {
        let a = OrderedMutex::new(Level::Checkpoint, 1);
        let b = OrderedRwLock::new(Level::State, 2);
        let _ga = a.lock();
        let _gb = b.write();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order violation: taking Checkpoint while holding State")]
    fn the_deadlock_order_is_caught() {
        // The order that once deadlocked: state, then checkpoint.
        let a = OrderedMutex::new(Level::Checkpoint, 1);
        let b = OrderedRwLock::new(Level::State, 2);
        let _gb = b.read();
        let _ga = a.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lock order violation")]
    fn taking_one_level_twice_is_caught() {
        let b = OrderedRwLock::new(Level::State, 2);
        let _g1 = b.read();
        let _g2 = b.read();
    }

    #[test]
    fn released_locks_do_not_count() {
        let a = OrderedMutex::new(Level::Checkpoint, 1);
        let b = OrderedRwLock::new(Level::State, 2);
        drop(b.read());
        let _ga = a.lock();
        let _gb = b.read();
    }
}
