//! Idle indexing: the background worker seals the appendable segment once
//! writes have paused, so a collection that never reaches its flush
//! threshold still gets an index (Qdrant's `indexing_threshold`).
//!
//! Without it, a collection loaded with fewer points than
//! `flush_threshold.vectors` (20,000 by default) keeps them all in the
//! appendable segment, and every search is an exact scan for as long as
//! nobody writes more. With it, after `idle_ms` without a write the worker
//! freezes the appendable segment, builds its sealed form and index, and
//! swaps it in (the same build as a flush), when it holds at least
//! `indexing_threshold` live points and at least the index's `min_points`.
//! Searches keep answering from the frozen segment meanwhile; writes go to
//! a new appendable segment. Many small sealed segments made this way are
//! merged by the vacuum pass (`vacuum.max_segments`).
//!
//! Only the writer does this (a follower applies the writer's seals); the
//! check runs on the worker thread when no job arrived for the idle time,
//! under the usual lock order (`checkpoint` → `state`).

use super::{Job, Result, Shared};
use crate::index::segment_index::IndexKind;
use serde::{Deserialize, Serialize};
use shared::wire::limits::{self, check_range};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `idle_indexing` in `collection.json` (and in the create-collection
/// request).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdleIndexing {
    /// Fewest live points in the appendable segment worth sealing and
    /// indexing once writes pause (the index's `min_points` applies too;
    /// at or above `flush_threshold.vectors` the flush always comes
    /// first); 0 turns idle indexing off. Default 1,000; at most
    /// 10,000,000. `flat` collections have no index and are never sealed
    /// this way.
    #[schema(minimum = 0, maximum = 10000000)]
    pub indexing_threshold: usize,
    /// How long, in milliseconds, no write must have arrived first
    /// (default 5,000; 100 to 3,600,000). Longer than the pause between
    /// batches of a bulk load, so a load is not cut into small segments.
    #[schema(minimum = 100, maximum = 3600000)]
    pub idle_ms: u64,
}

impl Default for IdleIndexing {
    fn default() -> Self {
        Self {
            indexing_threshold: 1000,
            idle_ms: 5000,
        }
    }
}

impl IdleIndexing {
    /// Errors: a message naming the field and its bounds when `idle_ms` is
    /// outside 100..=3,600,000 or `indexing_threshold` above 10,000,000
    /// (the largest flush threshold).
    pub fn validate(&self) -> std::result::Result<(), String> {
        check_range("idle_indexing.idle_ms", self.idle_ms, 100, 3_600_000)?;
        check_range(
            "idle_indexing.indexing_threshold",
            self.indexing_threshold,
            0,
            limits::MAX_FLUSH_VECTORS,
        )
    }
}

/// When writes were last seen, as milliseconds since a fixed start.
pub(super) struct WriteClock {
    start: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl WriteClock {
    /// A clock whose last write is now (a reopened collection waits the
    /// idle time before indexing what it replayed).
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Shared {
    /// How long the worker waits for a job before it checks for idle
    /// indexing: a quarter of the idle time, so a pause is noticed within
    /// 1.25 × `idle_ms`; an hour when idle indexing is off.
    pub(super) fn idle_wait(&self) -> Duration {
        let idle = &self.config.idle_indexing;
        if idle.indexing_threshold == 0 || self.wal.is_none() {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis((idle.idle_ms / 4).max(25))
        }
    }

    /// Seals and indexes the appendable segment when writes have paused for
    /// `idle_ms` and it holds enough live points; does nothing otherwise.
    /// Called only from the worker. Errors: those of the build.
    pub(super) fn index_if_idle(&self) -> Result<()> {
        let idle = &self.config.idle_indexing;
        let index = &self.config.index;
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        if idle.indexing_threshold == 0
            || index.kind == IndexKind::Flat
            || self.stop.load(Ordering::Relaxed)
            || self.writes.quiet_for() < Duration::from_millis(idle.idle_ms)
        {
            return Ok(());
        }
        let need = idle.indexing_threshold.max(index.min_points).max(1);
        let job = {
            let mut st = self.state.write();
            let live = st.appendable.data.read().live;
            // A frozen segment still waiting means the worker has queued
            // work: let it run first.
            if live < need || !st.frozen.is_empty() {
                None
            } else {
                // Appends happen under this lock: last_op is the last op
                // the frozen segment holds.
                Some(self.freeze(&mut st, wal.last_op()))
            }
        };
        if let Some(Job::Build(id, op)) = job {
            tracing::info!(collection = %self.config.name, segment = id, "writes paused: indexing the appendable segment");
            self.build(id, op)?;
            self.vacuum()?;
        }
        Ok(())
    }
}
