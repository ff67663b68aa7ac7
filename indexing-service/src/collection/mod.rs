//! Collections: the write path (validate → WAL → apply → acknowledge), the
//! read path (snapshot segments → search each → merge; dense, keyword and
//! fused queries), flushing, vacuum and restart.
//!
//! Layout of a collection directory:
//!
//! | path | content |
//! |---|---|
//! | `collection.json` | [`CollectionConfig`] with `format_version` |
//! | `manifest.json` | live sealed segments, `persisted_op`, `next_segment_id`, `payload_schema` (replaced atomically) |
//! | `wal/` | the write-ahead log (`storage::wal`) |
//! | `segments/<id>/` | sealed segments (`storage::segment`) |
//!
//! Invariants:
//! - Nothing is acknowledged before its WAL record is durable (with
//!   `fsync: always`). WAL append and apply happen under the state write
//!   lock, so WAL order is apply order.
//! - Every effect of the ops `<= persisted_op` is in the segments the
//!   manifest lists and in their deleted bitmaps; the WAL keeps every op
//!   after it. Bitmaps may run ahead of `persisted_op`: WAL ops are blind
//!   writes (see `storage::codec`), so replaying them over a newer bitmap
//!   gives the same state.
//! - A point lives in at most one segment slot that is not deleted; the id
//!   map points at it. Payload updates move the point (copy-on-write), so
//!   sealed segments never change except for their deleted bitmaps.
//! - Readers take a snapshot of the segment list and release the state lock
//!   before scanning; sealed segments are searched without locks. Count,
//!   scroll, get and delete-by-filter walk the id map in chunks of
//!   [`SCAN_CHUNK`] entries, each copied out under a brief read lock and
//!   evaluated after it is released; no scan holds `state`.
//! - One worker thread per collection builds sealed segments (in freeze
//!   order), checkpoints, vacuums and drops fully deleted segments; writes
//!   and searches never wait for it. Deletes wake it when a sealed segment
//!   crosses `vacuum.deleted_ratio`.
//!
//! Where each part lives:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the error enum, the point types, `Collection` and `Shared`, flush / vacuum / wait / statistics |
//! | `config` | `CollectionConfig` (`collection.json`): defaults, validation, reading |
//! | `holder` | the segment set and id map (`State`, `Seg`, `Loc`), assembling it from a manifest |
//! | `update` | the write path: upsert, delete (by id, by filter), payload updates, applying a logged op |
//! | `read` | get, count, scroll, dense search, keyword (BM25) search, hydration of hits |
//! | `query` | the Query API's trees: prefetch, fusion (RRF, DBSF), re-scoring |
//! | `field_index` | the payload schema (indexed fields, in the manifest) and changes to it |
//! | `optimizer` | the worker: sealing and indexing, vacuum and merge, reindexing to the payload schema, checkpoints, idle indexing |
//! | `recovery` | create, open, the writer's recovery (tail repair, GC, replay) |
//! | `follower`, `snapshot`, `manager` | read replicas, snapshots, the set of collections |
//!
//! Lock order (checked in debug builds by `crate::lock_order`):
//! `jobs` → `checkpoint` → `state` → a mutable segment's `data` → the WAL's
//! locks. The worker takes `checkpoint`, then `state` briefly to swap
//! segments; nothing takes `checkpoint` while holding `state` (statistics
//! read `persisted_op` from an atomic). Jobs are queued after `state` is
//! released.

mod config;
mod field_index;
mod follower;
mod holder;
mod manager;
mod optimizer;
pub mod query;
mod read;
mod recovery;
mod snapshot;
mod update;
use config::*;
pub use config::{CollectionConfig, FlushThreshold, VacuumConfig};
pub use field_index::{FieldIndexInfo, MAX_INDEXED_FIELDS};
pub(crate) use follower::FileStamp;
pub use follower::{FollowStep, ReplicaStatus, Role};
use holder::*;
pub use manager::{validate_name, FollowReport, Storage};
pub use optimizer::IdleIndexing;
pub use read::{SHORT_SEARCH_SCAN_POINTS, SHORT_SEARCH_SEGMENTS};
use recovery::*;
pub use snapshot::{test_pause, FrozenView, SNAPSHOTS_DIR, TEST_PAUSE_ENV};
use update::*;

use crate::index::segment_index::{search_segment, IndexSettings, SearchParams, SegmentIndex};
use crate::index::{self, filter, TopK};
use crate::lock_order::{Level, OrderedMutex, OrderedRwLock};
use crate::storage::codec::{encode_op, Op, Payload, PointRecord};
use crate::storage::fsutil::atomic_write;
use crate::storage::segment::{Extra, MutableSegment, SealedSegment, SegmentId};
use crate::storage::wal::Wal;
use crate::storage::{io_err, StorageError};
use crate::text::bm25::{self, Bm25Params, QueryTerms};
use crate::text::{TextIndexSettings, Tokenizer};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use shared::config::FsyncMode;
use shared::wire::indexing::{Filter, Metric, PointId};
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const COLLECTION_FORMAT_VERSION: u32 = 1;

/// Entries of the id map copied out per brief read lock by scans (count,
/// scroll, delete by filter).
pub const SCAN_CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error("collection `{0}` not found")]
    NotFound(String),
    #[error("collection `{0}` already exists")]
    AlreadyExists(String),
    #[error("invalid collection name `{0}`: use 1-64 of A-Z a-z 0-9 _ -")]
    InvalidName(String),
    #[error("invalid collection settings: {0}")]
    InvalidConfig(String),
    /// `subject` names the vector: `point 3: vector`, `the query vector`.
    #[error("{subject} has {got} dimensions, the collection has {expected}")]
    DimensionMismatch {
        subject: String,
        expected: usize,
        got: usize,
    },
    #[error("{0}")]
    InvalidVector(String),
    #[error("{0}")]
    InvalidPayload(String),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidId(String),
    /// A payload index request that cannot be met (field name, count).
    #[error("{0}")]
    InvalidFieldIndex(String),
    /// A query tree that cannot run (see `query::check_tree`).
    #[error("{0}")]
    InvalidQuery(String),
    /// A keyword search on a collection without a text index.
    #[error(
        "collection `{0}` has no text index (it was made before keyword search, or with \
         `text_index.enabled: false`), so keyword and hybrid search cannot run on it; \
         use a dense search, or copy the points into a new collection"
    )]
    NoTextIndex(String),
    #[error("point {0} not found")]
    PointNotFound(PointId),
    /// The collection exists but its files are damaged; it was not opened.
    #[error("collection `{name}` is damaged and was not opened: {reason}")]
    Damaged { name: String, reason: String },
    /// A write reached a replica that follows the writer (it only reads).
    #[error("this replica follows the writer and does not write ({0}); send writes to the writer")]
    ReadOnly(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T> = std::result::Result<T, CollectionError>;

/// A point as read back. What a read did not ask for (see [`ReadParts`])
/// is empty: `vector` is `[]`, `payload` and `content` are None.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Option<Payload>,
    pub content: Option<String>,
}

/// Which parts of a point a read copies out: the vector, and the payload
/// with the content. Leaving a part out saves its copy (a vector is
/// `dimension` floats; a sealed segment's payload is parsed from JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadParts {
    /// Copy the vector (`dimension` floats).
    pub vector: bool,
    /// Copy the payload and the content (parsed from JSON on sealed
    /// segments).
    pub payload: bool,
}

impl ReadParts {
    /// Vector, payload and content.
    pub const ALL: Self = Self {
        vector: true,
        payload: true,
    };
    /// Payload and content, no vector.
    pub const PAYLOAD: Self = Self {
        vector: false,
        payload: true,
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub point: StoredPoint,
    /// Similarity (cosine, dot) or distance (euclidean).
    pub score: f32,
}

/// A point to write; `id` None means "generate a UUID".
#[derive(Debug, Clone)]
pub struct NewPoint {
    pub id: Option<PointId>,
    pub vector: Vec<f32>,
    pub payload: Option<serde_json::Value>,
    pub content: Option<String>,
}

enum Job {
    Build(SegmentId, u64),
    Vacuum,
    /// Bring every sealed segment's payload indexes to the schema.
    Reindex,
}

struct Shared {
    dir: PathBuf,
    config: CollectionConfig,
    /// The log this process appends to; None on a follower.
    wal: Option<Wal>,
    /// A follower's position in the writer's files (lock level `Follow`);
    /// None on the writer.
    follow: Option<OrderedMutex<follower::Follow>>,
    /// A follower's last applied op (the writer reads its WAL instead).
    applied_op: AtomicU64,
    /// Lock level `State`.
    state: OrderedRwLock<State>,
    /// Serialises checkpoints and segment swaps done by the worker. Lock
    /// level `Checkpoint`: never taken while `state` is held.
    checkpoint: OrderedMutex<Manifest>,
    /// The manifest's `persisted_op`, readable without `checkpoint`.
    persisted_op: AtomicU64,
    /// A vacuum job is queued and has not started yet.
    vacuum_queued: AtomicBool,
    /// The ticket of the last job the worker finished.
    progress: (Mutex<u64>, Condvar),
    stop: AtomicBool,
    /// When the last write was applied (idle indexing waits for a pause).
    writes: optimizer::WriteClock,
}

/// The worker's queue (None once closed) and the last ticket handed out.
type JobQueue = (Option<crossbeam_channel::Sender<(u64, Job)>>, u64);

/// A collection: cheap to share (`Arc` inside), closed on drop.
pub struct Collection {
    inner: Arc<Shared>,
    /// Job queue of the worker, with the last ticket handed out (lock
    /// level `Jobs`).
    jobs: OrderedMutex<JobQueue>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Statistics for `GET /collections/{name}`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    pub points: usize,
    pub segments: usize,
    pub sealed_segments: usize,
    pub building_segments: usize,
    /// Sealed segments with an index (small ones are only scanned).
    pub indexed_segments: usize,
    pub appendable_points: usize,
    pub wal_bytes: u64,
    pub persisted_op: u64,
    pub last_op: u64,
}

pub fn new_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Shared {
    fn segments_dir(&self) -> PathBuf {
        self.dir.join("segments")
    }

    /// The log of a writer; only the writer's own paths (checkpoint,
    /// worker) call it, and a follower starts no worker.
    fn writer_wal(&self) -> &Wal {
        self.wal
            .as_ref()
            .expect("only a writer checkpoints (a follower has no worker)")
    }

    /// The last op in this replica's state: the WAL's last op on the
    /// writer, the last applied op on a follower.
    fn last_op(&self) -> u64 {
        match &self.wal {
            Some(w) => w.last_op(),
            None => self.applied_op.load(Ordering::Acquire),
        }
    }

    fn apply(&self, st: &mut State, op_num: u64, op: Op) -> Applied {
        apply_op(&self.config, st, op_num, op)
    }

    fn freeze(&self, st: &mut State, op_num: u64) -> Job {
        freeze(&self.config, st, op_num)
    }
}

impl Collection {
    pub fn config(&self) -> &CollectionConfig {
        &self.inner.config
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The WAL to append to. Errors: `ReadOnly` on a follower.
    fn writable(&self) -> Result<&Wal> {
        self.inner
            .wal
            .as_ref()
            .ok_or_else(|| CollectionError::ReadOnly(format!("collection `{}`", self.name())))
    }

    /// Queues a job; returns its ticket.
    fn send(&self, j: Job) -> u64 {
        let mut g = self.jobs.lock();
        g.1 += 1;
        let t = g.1;
        if let Some(tx) = &g.0 {
            let _ = tx.send((t, j));
        }
        t
    }

    /// Seals the appendable segment (if it holds anything) and waits until
    /// the background worker has built it and checkpointed.
    pub fn flush(&self) -> Result<()> {
        let wal = self.writable()?;
        let job = {
            let mut st = self.inner.state.write();
            if st.appendable.data.read().ids.is_empty() {
                None
            } else {
                let last = wal.last_op();
                Some(self.inner.freeze(&mut st, last))
            }
        };
        if let Some(j) = job {
            let t = self.send(j);
            self.wait_for(t);
        }
        Ok(())
    }

    /// Runs the vacuum/merge pass now and waits for it.
    pub fn vacuum(&self) -> Result<()> {
        self.writable()?;
        let t = self.send(Job::Vacuum);
        self.wait_for(t);
        Ok(())
    }

    /// Waits until the worker has finished the job with this ticket (and
    /// so every job before it).
    fn wait_for(&self, ticket: u64) {
        let (lock, cv) = &self.inner.progress;
        let mut g = lock.lock();
        while *g < ticket && !self.inner.stop.load(Ordering::Relaxed) {
            cv.wait_for(&mut g, Duration::from_millis(200));
        }
    }

    /// Waits until no frozen segment waits for its build.
    pub fn wait_idle(&self) {
        loop {
            if self.inner.state.read().frozen.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Statistics, from a brief read of the segment list; never waits for
    /// the background worker (`persisted_op` is read from an atomic).
    pub fn info(&self) -> CollectionInfo {
        let (points, segments, sealed, building, indexed, appendable) = {
            let st = self.inner.state.read();
            let sealed = st
                .segments
                .values()
                .filter(|s| matches!(s, Seg::Sealed(..)))
                .count();
            let indexed = st
                .segments
                .values()
                .filter(|s| matches!(s, Seg::Sealed(_, i) if i.vector.is_some()))
                .count();
            (
                st.ids.len(),
                st.segments.len(),
                sealed,
                st.frozen.len(),
                indexed,
                st.appendable.clone(),
            )
        };
        CollectionInfo {
            points,
            segments,
            sealed_segments: sealed,
            building_segments: building,
            indexed_segments: indexed,
            appendable_points: appendable.live(),
            wal_bytes: match &self.inner.wal {
                Some(w) => w.size_bytes(),
                None => follower::wal_bytes(&self.inner.dir),
            },
            persisted_op: self.inner.persisted_op.load(Ordering::Acquire),
            last_op: self.inner.last_op(),
        }
    }

    /// Bytes on disk of the whole collection.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| match e.file_type() {
                            Ok(t) if t.is_dir() => walk(&e.path()),
                            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.inner.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stops the background threads and syncs the WAL. Idempotent.
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.jobs.lock().0.take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if let Some(w) = &self.inner.wal {
            let _ = w.sync_all();
        }
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        self.close();
    }
}
