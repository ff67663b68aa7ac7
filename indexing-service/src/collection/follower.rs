//! A collection opened by a follower: a read-only view of the files another
//! process (the writer, holding the data directory's lock) keeps writing.
//!
//! [`Collection::load`] is the reader's open, beside the writer's
//! [`Collection::recover`]: it reads `collection.json` and the manifest,
//! maps the sealed segments the manifest lists and replays the WAL past the
//! manifest's `persisted_op` into a private appendable segment. It never
//! repairs, truncates, removes or creates anything: no worker, no WAL
//! writer, no garbage collection of unlisted directories (they may be the
//! writer's builds in progress).
//!
//! [`Collection::follow_step`] then keeps the view current:
//! - new WAL records are read from the last applied op on
//!   (`storage::wal::WalTail`: rotation and truncation behind the reader
//!   are followed, a record still being written is read on a later poll)
//!   and applied with the same `apply_op` as the writer's, under a brief
//!   `state` write lock;
//! - when `manifest.json` changes (a segment was sealed, vacuumed or
//!   merged), or the next op is no longer in the log, the state is rebuilt
//!   from the new manifest and swapped in whole. Segments already open are
//!   reused (opening verifies every byte) with their deleted bitmaps read
//!   again from disk; readers of the old state keep the old view.
//!
//! Consistency: the follower's state after applying op `n` equals the
//! writer's after op `n` (WAL ops are blind writes, bitmaps that run ahead
//! of `persisted_op` replay to the same state, see the module docs of
//! `collection`). Records are read from the page cache, so an op can be
//! visible on a follower a moment before the writer's fsync returns;
//! losing it would need the whole host to fail, which takes every
//! replica of this host with it.
//!
//! Races with the writer are retried, never repaired: a segment removed
//! between reading the manifest and opening it, or WAL files truncated
//! before the replay reached them, make the load start again from the
//! manifest (which, by the writer's order: segment files, bitmaps,
//! manifest, then WAL truncation, always describes what the log lacks).
//!
//! Lock order: `follow` (level `Follow`) before `state`; the file reads of
//! a poll happen under `follow` only.

use super::{
    apply_op, assemble_state, max_segment_dir, open_sealed, read_config, read_manifest, Collection,
    Manifest, Result, SealedPart, Shared, State,
};
use crate::lock_order::{Level, OrderedMutex, OrderedRwLock};
use crate::storage::segment::SegmentId;
use crate::storage::wal::WalTail;
use crate::storage::StorageError;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Loads tried in a row before a race with the writer is reported.
const LOAD_ATTEMPTS: usize = 50;

/// What this process is for a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the data directory's lock: appends, builds, checkpoints.
    Writer,
    /// Reads the writer's files and applies its log; writes nothing.
    Follower,
}

/// Where a collection's view stands against the writer's log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplicaStatus {
    pub role: Role,
    /// The last op applied to this replica's state.
    pub applied_operation: u64,
    /// The last whole op in the log (the writer's progress as this replica
    /// can see it).
    pub writer_operation: u64,
    /// `writer_operation - applied_operation`.
    pub lag_operations: u64,
    /// Milliseconds between the last applied record's write (its WAL
    /// file's modification time) and its application; 0 on the writer.
    pub lag_ms: u64,
}

/// Identity of a file as last seen: inode, size, modification time. A
/// file replaced by `atomic_write` gets a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of `path`, None when it does not exist (or cannot be read).
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }
}

/// A follower's position in the writer's files.
pub(super) struct Follow {
    tail: WalTail,
    /// The manifest the state was built from.
    manifest: Option<FileStamp>,
    /// Sealed segments open now, by id (reused by the next reload).
    opened: BTreeMap<SegmentId, SealedPart>,
}

/// What one [`Collection::follow_step`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FollowStep {
    /// Records applied.
    pub applied: usize,
    /// The state was rebuilt from a new manifest.
    pub reloaded: bool,
    /// How long the last applied record waited (from its WAL file's
    /// modification time to now).
    pub lag: Option<Duration>,
}

/// Bytes in the WAL files of the collection in `dir` (read-only).
pub(super) fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Builds the state from the manifest on disk and the WAL after it,
/// reusing the segments in `follow.opened`. Retries (from the manifest)
/// when the writer removed a listed segment or truncated the log under
/// the load. Returns the state and the manifest's `persisted_op`.
fn load_state(
    dir: &Path,
    config: &super::CollectionConfig,
    follow: &mut Follow,
) -> Result<(State, u64)> {
    let man_path = dir.join("manifest.json");
    let seg_dir = dir.join("segments");
    let mut last_err: Option<super::CollectionError> = None;
    for attempt in 0..LOAD_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(2 * attempt as u64));
        }
        let stamp = FileStamp::of(&man_path);
        let manifest: Manifest = match read_manifest(dir) {
            Ok(m) => m,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        let mut sealed = Vec::with_capacity(manifest.segments.len());
        let mut failed = None;
        for &sid in &manifest.segments {
            let part = match follow.opened.get(&sid) {
                Some((_, s, idx)) => s
                    .reopen()
                    .map(|s| (sid, Arc::new(s), idx.clone()))
                    .map_err(Into::into),
                None => open_sealed(config, &seg_dir, sid),
            };
            match part {
                Ok(p) => sealed.push(p),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            if FileStamp::of(&man_path) != stamp {
                // The writer moved on (a vacuum removed the segment).
                last_err = Some(e);
                continue;
            }
            return Err(e);
        }
        let max_seen = max_segment_dir(&seg_dir)?;
        let opened: BTreeMap<SegmentId, SealedPart> = sealed
            .iter()
            .map(|(sid, s, i)| (*sid, (*sid, s.clone(), i.clone())))
            .collect();
        let mut state = assemble_state(config, &manifest, sealed, max_seen);
        let mut tail = WalTail::new(&dir.join("wal"), manifest.persisted_op);
        let polled = tail.poll(|op, o| {
            apply_op(config, &mut state, op, o);
            Ok(())
        })?;
        if polled.behind {
            // Truncated past the manifest we read: a newer one exists.
            last_err = Some(
                StorageError::Corrupt {
                    path: dir.join("wal"),
                    message: format!(
                        "the log no longer holds op {} after the manifest's persisted op",
                        manifest.persisted_op + 1
                    ),
                }
                .into(),
            );
            continue;
        }
        follow.tail = tail;
        follow.manifest = stamp;
        follow.opened = opened;
        return Ok((state, manifest.persisted_op));
    }
    Err(last_err.unwrap_or_else(|| {
        StorageError::Corrupt {
            path: dir.to_path_buf(),
            message: "the writer's files kept changing while loading".into(),
        }
        .into()
    }))
}

impl Collection {
    /// Opens a collection as a follower: a read-only view of the files
    /// the writer keeps writing (see the module docs). Starts no thread
    /// and writes nothing; [`Collection::follow_step`] keeps it current.
    /// Errors: `Version`, `Corrupt`, `Io` (a race with the writer is
    /// retried first).
    pub fn load(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?;
        let mut follow = Follow {
            tail: WalTail::new(&dir.join("wal"), 0),
            manifest: None,
            opened: BTreeMap::new(),
        };
        let (state, persisted) = load_state(dir, &config, &mut follow)?;
        let applied = follow.tail.last_op();
        let inner = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            wal: None,
            follow: Some(OrderedMutex::new(Level::Follow, follow)),
            applied_op: AtomicU64::new(applied),
            state: OrderedRwLock::new(Level::State, state),
            checkpoint: OrderedMutex::new(Level::Checkpoint, Manifest::default()),
            persisted_op: AtomicU64::new(persisted),
            vacuum_queued: AtomicBool::new(false),
            progress: (Mutex::new(0), Condvar::new()),
            stop: AtomicBool::new(false),
            writes: super::optimizer::WriteClock::new(),
        });
        Ok(Self {
            inner,
            jobs: OrderedMutex::new(Level::Jobs, (None, 0)),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// This replica's role for the collection.
    pub fn role(&self) -> Role {
        if self.inner.wal.is_some() {
            Role::Writer
        } else {
            Role::Follower
        }
    }

    /// The last op applied to this replica's state (on the writer: the
    /// last op appended).
    pub fn applied_op(&self) -> u64 {
        self.inner.last_op()
    }

    /// A follower's step: rebuilds the state when the manifest changed (or
    /// the log moved past it), else applies the records written since the
    /// last step. Does nothing on the writer. Errors: `Io`, `Corrupt` (the
    /// view stays as it was and the next step tries again).
    pub fn follow_step(&self) -> Result<FollowStep> {
        let Some(f) = &self.inner.follow else {
            return Ok(FollowStep::default());
        };
        let mut f = f.lock();
        let dir = &self.inner.dir;
        let mut step = FollowStep::default();
        if FileStamp::of(&dir.join("manifest.json")) == f.manifest {
            let mut ops = Vec::new();
            let polled = f.tail.poll(|n, op| {
                ops.push((n, op));
                Ok(())
            })?;
            if !polled.behind {
                if !ops.is_empty() {
                    let mut st = self.inner.state.write();
                    for (n, op) in ops {
                        apply_op(&self.inner.config, &mut st, n, op);
                    }
                    drop(st);
                    step.applied = polled.applied;
                    step.lag = polled
                        .written_at
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                }
                self.inner
                    .applied_op
                    .store(f.tail.last_op(), Ordering::Release);
                return Ok(step);
            }
        }
        let before = f.tail.last_op();
        let (state, persisted) = load_state(dir, &self.inner.config, &mut f)?;
        let old = std::mem::replace(&mut *self.inner.state.write(), state);
        drop(old);
        self.inner.persisted_op.store(persisted, Ordering::Release);
        let now = f.tail.last_op();
        self.inner.applied_op.store(now, Ordering::Release);
        step.reloaded = true;
        step.applied = now.saturating_sub(before) as usize;
        Ok(step)
    }

    /// Role, applied op and the writer's op as far as the log shows it.
    /// `lag_ms` is left 0 here (the follower loop measures it per step).
    pub fn replica_status(&self) -> ReplicaStatus {
        let applied = self.inner.last_op();
        let writer = match &self.inner.follow {
            None => applied,
            Some(f) => f.lock().tail.peek_last_op().unwrap_or(applied).max(applied),
        };
        ReplicaStatus {
            role: self.role(),
            applied_operation: applied,
            writer_operation: writer,
            lag_operations: writer - applied,
            lag_ms: 0,
        }
    }
}
