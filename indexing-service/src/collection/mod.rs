//! Collections: the write path (validate → WAL → apply → acknowledge), the
//! read path (snapshot segments → search each → merge), flushing, vacuum
//! and restart.
//!
//! Layout of a collection directory:
//!
//! | path | content |
//! |---|---|
//! | `collection.json` | [`CollectionConfig`] with `format_version` |
//! | `manifest.json` | live sealed segments, `persisted_op`, `next_segment_id` (replaced atomically) |
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
//! Lock order (checked in debug builds by `crate::lock_order`):
//! `jobs` → `checkpoint` → `state` → a mutable segment's `data` → the WAL's
//! locks. The worker takes `checkpoint`, then `state` briefly to swap
//! segments; nothing takes `checkpoint` while holding `state` (statistics
//! read `persisted_op` from an atomic). Jobs are queued after `state` is
//! released.

mod follower;
mod manager;
mod optimizer;
pub mod query;
mod snapshot;
pub(crate) use follower::FileStamp;
pub use follower::{FollowStep, ReplicaStatus, Role};
pub use manager::{validate_name, FollowReport, Storage};
pub use optimizer::IdleIndexing;
pub use snapshot::{test_pause, FrozenView, SNAPSHOTS_DIR, TEST_PAUSE_ENV};

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

/// When the appendable segment is sealed (the same type as the service's
/// `indexing.flush_threshold`).
pub use shared::config::FlushThreshold;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VacuumConfig {
    /// Rewrite a sealed segment once this share of its points is deleted.
    pub deleted_ratio: f64,
    /// Merge the smallest sealed segments when there are more than this many.
    pub max_segments: usize,
}

impl Default for VacuumConfig {
    fn default() -> Self {
        Self {
            deleted_ratio: 0.2,
            max_segments: 8,
        }
    }
}

/// Settings of one collection, persisted in `collection.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionConfig {
    pub format_version: u32,
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    #[serde(default)]
    pub flush_threshold: FlushThreshold,
    #[serde(default)]
    pub vacuum: VacuumConfig,
    /// Sealing and indexing the appendable segment once writes pause
    /// (see `optimizer`).
    #[serde(default)]
    pub idle_indexing: IdleIndexing,
    /// Index settings, interpreted by the index layer.
    #[serde(default)]
    pub index: IndexSettings,
    /// Largest payload (as JSON) of one point.
    #[serde(default = "default_payload_limit")]
    pub max_payload_bytes: usize,
    #[serde(default = "default_fsync")]
    pub fsync: FsyncMode,
    #[serde(default = "default_interval")]
    pub fsync_interval_ms: u64,
    /// The embedding service's model that embeds this collection's texts
    /// (alias or id); `None`: the service's default at the time of the
    /// call. Absent from collections made before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// The full-text index of `content` (keyword search). Collections made
    /// before it have none (their segments hold no `text.bin`).
    #[serde(default = "TextIndexSettings::absent")]
    pub text_index: TextIndexSettings,
}

fn default_payload_limit() -> usize {
    1 << 20
}
fn default_fsync() -> FsyncMode {
    FsyncMode::Always
}
fn default_interval() -> u64 {
    100
}

impl CollectionConfig {
    pub fn new(name: &str, dimension: usize, metric: Metric) -> Self {
        Self {
            format_version: COLLECTION_FORMAT_VERSION,
            name: name.into(),
            dimension,
            metric,
            flush_threshold: FlushThreshold::default(),
            vacuum: VacuumConfig::default(),
            idle_indexing: IdleIndexing::default(),
            index: IndexSettings::default(),
            max_payload_bytes: default_payload_limit(),
            fsync: FsyncMode::Always,
            fsync_interval_ms: 100,
            embedding_model: None,
            text_index: TextIndexSettings::default(),
        }
    }

    /// The tokenizer of the text index; None when the collection has none.
    pub fn tokenizer(&self) -> Option<Tokenizer> {
        self.text_index.tokenizer()
    }

    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.dimension == 0 || self.dimension > 65_536 {
            return Err(CollectionError::InvalidConfig(format!(
                "dimension must be 1..=65536, got {}",
                self.dimension
            )));
        }
        if self.flush_threshold.vectors == 0 {
            return Err(CollectionError::InvalidConfig(
                "flush_threshold.vectors must be at least 1".into(),
            ));
        }
        self.index
            .validate(self.dimension)
            .map_err(CollectionError::InvalidConfig)?;
        self.idle_indexing
            .validate()
            .map_err(CollectionError::InvalidConfig)?;
        self.text_index
            .validate()
            .map_err(CollectionError::InvalidConfig)?;
        if !(self.vacuum.deleted_ratio > 0.0 && self.vacuum.deleted_ratio <= 1.0) {
            return Err(CollectionError::InvalidConfig(
                "vacuum.deleted_ratio must be in (0, 1]".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    segments: Vec<SegmentId>,
    persisted_op: u64,
    next_segment_id: SegmentId,
}

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

#[derive(Clone)]
enum Seg {
    Mutable(Arc<MutableSegment>),
    /// A sealed segment and its index (none when small or `flat`).
    Sealed(Arc<SealedSegment>, Option<Arc<SegmentIndex>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    seg: SegmentId,
    off: u32,
}

/// Most segments a search may visit and still count as short
/// ([`Collection::is_short_search`]).
pub const SHORT_SEARCH_SEGMENTS: usize = 16;
/// Most appendable points (scanned exactly) a search may meet and still
/// count as short: about 40 µs of 384-dimensional dot products.
pub const SHORT_SEARCH_SCAN_POINTS: usize = 2_000;

struct State {
    segments: BTreeMap<SegmentId, Seg>,
    appendable: Arc<MutableSegment>,
    ids: BTreeMap<PointId, Loc>,
    next_segment_id: SegmentId,
    /// Frozen segments waiting for their build, oldest first, with the last
    /// op they contain.
    frozen: Vec<(SegmentId, u64)>,
}

enum Job {
    Build(SegmentId, u64),
    Vacuum,
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

/// Marks a slot deleted; returns the sealed segment it was in, if any.
fn delete_at(st: &State, loc: Loc) -> Option<Arc<SealedSegment>> {
    match st.segments.get(&loc.seg) {
        Some(Seg::Mutable(m)) => {
            m.delete(loc.off);
            None
        }
        Some(Seg::Sealed(s, _)) => {
            s.deleted.set(loc.off as usize);
            Some(s.clone())
        }
        None => {
            debug_assert!(false, "id map points at a missing segment");
            None
        }
    }
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

    /// Builds the segment's index into its temp directory (the hook of
    /// `SealedSegment::write`).
    fn build_index(
        &self,
        dir: &Path,
        vectors: &[f32],
        out: &mut Option<SegmentIndex>,
    ) -> std::result::Result<(), StorageError> {
        let c = &self.config;
        *out = SegmentIndex::build(dir, &c.index, c.metric, vectors, c.dimension).map_err(
            |message| StorageError::Corrupt {
                path: dir.to_path_buf(),
                message: format!("index build: {message}"),
            },
        )?;
        Ok(())
    }

    /// Writes every sealed segment's bitmap, then the manifest, then cuts
    /// the WAL. Called only from the worker. When nothing waits for a build
    /// and the appendable segment holds no slot, every op so far is in the
    /// sealed segments and their bitmaps, so `persisted_op` moves to the
    /// last op and the WAL is cut through it (deletes do not keep the log
    /// growing).
    fn checkpoint(&self, m: &mut Manifest, persisted_op: u64) -> Result<()> {
        let (sealed, next, quiet_op): (Vec<Arc<SealedSegment>>, SegmentId, u64) = {
            let st = self.state.read();
            let sealed = st
                .segments
                .values()
                .filter_map(|s| match s {
                    Seg::Sealed(s, _) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            // Appends happen under the write lock: last_op is consistent
            // with what this read lock sees.
            let quiet = st.frozen.is_empty() && st.appendable.data.read().ids.is_empty();
            let quiet_op = if quiet {
                self.writer_wal().last_op()
            } else {
                0
            };
            (sealed, st.next_segment_id, quiet_op)
        };
        for s in &sealed {
            s.persist_deleted()?;
        }
        m.format_version = COLLECTION_FORMAT_VERSION;
        m.segments = sealed.iter().map(|s| s.id).collect();
        m.persisted_op = m.persisted_op.max(persisted_op).max(quiet_op);
        m.next_segment_id = m.next_segment_id.max(next);
        atomic_write(
            &self.dir.join("manifest.json"),
            &serde_json::to_vec_pretty(m).unwrap(),
        )?;
        self.persisted_op.store(m.persisted_op, Ordering::Release);
        self.writer_wal().truncate_through(m.persisted_op)?;
        Ok(())
    }

    fn build(&self, id: SegmentId, freeze_op: u64) -> Result<()> {
        let seg = match self.state.read().segments.get(&id) {
            Some(Seg::Mutable(m)) => m.clone(),
            _ => return Ok(()),
        };
        // Snapshot under the lock, then write and index without it: writers
        // may keep deleting from this segment meanwhile (carried over below).
        let (ids, vectors, extras, snap_deleted) = {
            let d = seg.data.read();
            (
                d.ids.clone(),
                d.vectors.clone(),
                d.extras.clone(),
                d.deleted.clone(),
            )
        };
        let dim = self.config.dimension;
        let mut built = None;
        let path = SealedSegment::write(
            &self.segments_dir(),
            id,
            dim,
            (0..ids.len()).map(|i| {
                (
                    &ids[i],
                    &vectors[i * dim..(i + 1) * dim],
                    &extras[i],
                    snap_deleted[i],
                )
            }),
            self.config.tokenizer().as_ref(),
            |tmp, v| self.build_index(tmp, v, &mut built),
        )?;
        drop((ids, vectors, extras));
        let built = built.map(Arc::new);
        let sealed = Arc::new(SealedSegment::open(&path)?);
        let mut m = self.checkpoint.lock();
        {
            let mut st = self.state.write();
            // Deletes that landed while the files were written.
            let d = seg.data.read();
            for (i, (&now, &then)) in d.deleted.iter().zip(&snap_deleted).enumerate() {
                if now && !then {
                    sealed.deleted.set(i);
                }
            }
            drop(d);
            st.segments.insert(id, Seg::Sealed(sealed, built));
            st.frozen.retain(|(f, _)| *f != id);
        }
        self.checkpoint(&mut m, freeze_op)?;
        Ok(())
    }

    /// Rewrites sealed segments with many deleted points, or merges the
    /// smallest when there are too many; segments with no live point left
    /// are dropped without writing anything. Returns whether it did
    /// anything.
    fn vacuum(&self) -> Result<bool> {
        let v = &self.config.vacuum;
        let sealed: Vec<Arc<SealedSegment>> = self
            .state
            .read()
            .segments
            .values()
            .filter_map(|s| match s {
                Seg::Sealed(s, _) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let mut pick: Vec<Arc<SealedSegment>> = sealed
            .iter()
            .filter(|s| {
                s.count > 0 && (s.count - s.live()) as f64 / s.count as f64 >= v.deleted_ratio
            })
            .cloned()
            .collect();
        if sealed.len() > v.max_segments {
            let mut by_size = sealed.clone();
            by_size.sort_by_key(|s| s.live());
            for s in by_size.into_iter().take(sealed.len() - v.max_segments + 1) {
                if !pick.iter().any(|p| p.id == s.id) {
                    pick.push(s);
                }
            }
        }
        if pick.is_empty() || (pick.len() == 1 && pick[0].live() == pick[0].count) {
            return Ok(false);
        }
        let mut m = self.checkpoint.lock();
        // Live points as of now (later deletes are carried over below).
        // Deleted slots never come back to life, so a segment with no live
        // point now has none later either.
        let mut moved: Vec<(SegmentId, u32)> = Vec::new();
        let mut extras = Vec::new();
        for s in &pick {
            for off in 0..s.count {
                if !s.deleted.get(off) {
                    moved.push((s.id, off as u32));
                    extras.push(s.extra(off)?);
                }
            }
        }
        let by_id: BTreeMap<SegmentId, &Arc<SealedSegment>> =
            pick.iter().map(|s| (s.id, s)).collect();
        let rewritten = if moved.is_empty() {
            None
        } else {
            let new_id = {
                let mut st = self.state.write();
                let id = st.next_segment_id;
                st.next_segment_id += 1;
                id
            };
            let mut built = None;
            let path = SealedSegment::write(
                &self.segments_dir(),
                new_id,
                self.config.dimension,
                moved.iter().zip(&extras).map(|(&(sid, off), e)| {
                    let s = by_id[&sid];
                    (&s.ids[off as usize], s.vector(off as usize), e, false)
                }),
                self.config.tokenizer().as_ref(),
                |tmp, vectors| self.build_index(tmp, vectors, &mut built),
            )?;
            drop(extras);
            Some((
                new_id,
                Arc::new(SealedSegment::open(&path)?),
                built.map(Arc::new),
            ))
        };
        {
            let mut st = self.state.write();
            if let Some((new_id, new_seg, built)) = rewritten {
                self.swap_in_moved(&mut st, &moved, &by_id, new_id, new_seg, built);
            }
            for s in &pick {
                st.segments.remove(&s.id);
            }
        }
        let p = m.persisted_op;
        self.checkpoint(&mut m, p)?;
        drop(m);
        for s in &pick {
            let _ = std::fs::remove_dir_all(&s.dir);
        }
        tracing::debug!(collection = %self.config.name, "vacuumed {} segments ({} live points kept)", pick.len(), moved.len());
        Ok(true)
    }

    /// Points the id map at the rewritten copies of `moved` (in order) and
    /// makes the new segment live; copies of points deleted or replaced
    /// meanwhile are marked deleted in it. Called under `state`'s write
    /// lock.
    fn swap_in_moved(
        &self,
        st: &mut State,
        moved: &[(SegmentId, u32)],
        by_id: &BTreeMap<SegmentId, &Arc<SealedSegment>>,
        new_id: SegmentId,
        new_seg: Arc<SealedSegment>,
        built: Option<Arc<SegmentIndex>>,
    ) {
        for (new_off, &(sid, off)) in moved.iter().enumerate() {
            let s = by_id[&sid];
            let id = &s.ids[off as usize];
            if s.deleted.get(off as usize) {
                new_seg.deleted.set(new_off);
            } else if st.ids.get(id) == Some(&Loc { seg: sid, off }) {
                st.ids.insert(
                    id.clone(),
                    Loc {
                        seg: new_id,
                        off: new_off as u32,
                    },
                );
            } else {
                new_seg.deleted.set(new_off);
            }
        }
        st.segments.insert(new_id, Seg::Sealed(new_seg, built));
    }

    /// Runs jobs in order; after each, publishes its ticket as done.
    /// When no job arrives for the idle time, checks for idle indexing.
    fn worker(self: Arc<Self>, rx: crossbeam_channel::Receiver<(u64, Job)>) {
        let idle = self.idle_wait();
        loop {
            let (ticket, job) = match rx.recv_timeout(idle) {
                Ok(j) => j,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.logged("idle indexing", || self.index_if_idle());
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.logged("background segment work", || match job {
                Job::Build(id, op) => self.build(id, op).and_then(|_| self.vacuum().map(|_| ())),
                Job::Vacuum => {
                    self.vacuum_queued.store(false, Ordering::Release);
                    self.vacuum().map(|_| ())
                }
            });
            *self.progress.0.lock() = ticket;
            self.progress.1.notify_all();
        }
    }

    /// Runs one piece of the worker's work; an error or a panic is logged
    /// (as `what` failed / panicked) and the worker goes on, so its
    /// progress advances and nobody waits on it forever.
    fn logged(&self, what: &str, work: impl FnOnce() -> Result<()>) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(collection = %self.config.name, "{what} failed: {e}"),
            Err(_) => tracing::error!(collection = %self.config.name, "{what} panicked"),
        }
    }
}

impl Collection {
    /// Creates a new collection directory and opens it. Errors:
    /// `InvalidConfig`, `AlreadyExists` when `dir` holds a collection,
    /// storage errors. (`Storage::create` adds crash safety by building the
    /// directory under a temporary name.)
    pub fn create(dir: &Path, config: CollectionConfig) -> Result<Self> {
        config.validate()?;
        if dir.join("collection.json").exists() {
            return Err(CollectionError::AlreadyExists(config.name.clone()));
        }
        Self::init_dir(dir, &config)?;
        Self::open(dir)
    }

    /// Lays out a new, empty collection in `dir`: `segments/`, an empty
    /// WAL, `collection.json`, every entry fsynced, so that renaming `dir`
    /// into place makes a complete collection appear at once.
    pub fn init_dir(dir: &Path, config: &CollectionConfig) -> Result<()> {
        config.validate()?;
        let segs = dir.join("segments");
        std::fs::create_dir_all(&segs).map_err(io_err(&segs))?;
        drop(Wal::open(&dir.join("wal"), 0, |_, _| Ok(()))?);
        atomic_write(
            &dir.join("collection.json"),
            &serde_json::to_vec_pretty(config).unwrap(),
        )?;
        crate::storage::fsutil::sync_dir(&segs)?;
        crate::storage::fsutil::sync_dir(dir)?;
        Ok(())
    }

    /// Opens a collection as its writer (see [`Collection::recover`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::recover(dir)
    }

    /// Opens a collection as its writer, which must hold the data
    /// directory's lock: manifest → memory-map sealed segments → remove
    /// segment directories the manifest does not list (leftovers of a
    /// crash) → replay the WAL past `persisted_op`, cutting a torn tail →
    /// start the background worker → serve. Rebuilds nothing. Errors:
    /// `Version`, `Corrupt`, `Io` from any file.
    pub fn recover(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?;
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io_err(&seg_dir))?;
        let manifest = read_manifest(dir)?;
        // Directories the manifest does not list are leftovers of a crash.
        let listed: HashSet<String> = manifest
            .segments
            .iter()
            .map(|&i| SealedSegment::dir_name(i))
            .collect();
        let max_seen = max_segment_dir(&seg_dir)?;
        for e in std::fs::read_dir(&seg_dir)
            .map_err(io_err(&seg_dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if !listed.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let mut sealed = Vec::new();
        for &sid in &manifest.segments {
            sealed.push(open_sealed(&config, &seg_dir, sid)?);
        }
        let state = assemble_state(&config, &manifest, sealed, max_seen);
        let persisted = manifest.persisted_op;
        let mut jobs = Vec::new();
        // Replay into the state before it is shared.
        let mut state = state;
        let wal = Wal::open(&dir.join("wal"), persisted, |op, o| {
            jobs.extend(apply_op(&config, &mut state, op, o).build);
            Ok(())
        })?;
        let shared_state = OrderedRwLock::new(Level::State, state);
        let inner = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            wal: Some(wal),
            follow: None,
            applied_op: AtomicU64::new(0),
            state: shared_state,
            checkpoint: OrderedMutex::new(Level::Checkpoint, manifest),
            persisted_op: AtomicU64::new(persisted),
            // The vacuum pass queued below covers whatever replay deleted.
            vacuum_queued: AtomicBool::new(true),
            progress: (Mutex::new(0), Condvar::new()),
            stop: AtomicBool::new(false),
            writes: optimizer::WriteClock::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ticket = 0;
        for j in jobs.into_iter().chain([Job::Vacuum]) {
            ticket += 1;
            let _ = tx.send((ticket, j));
        }
        let mut threads = Vec::new();
        {
            let s = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("segments-{}", s.config.name))
                    .spawn(move || s.worker(rx))
                    .map_err(io_err(dir))?,
            );
        }
        if inner.config.fsync == FsyncMode::Interval {
            let s = inner.clone();
            let every = Duration::from_millis(s.config.fsync_interval_ms.max(1));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wal-sync-{}", s.config.name))
                    .spawn(move || {
                        while !s.stop.load(Ordering::Relaxed) {
                            std::thread::sleep(every);
                            let _ = s.writer_wal().sync_all();
                        }
                    })
                    .map_err(io_err(dir))?,
            );
        }
        Ok(Self {
            inner,
            jobs: OrderedMutex::new(Level::Jobs, (Some(tx), ticket)),
            threads: Mutex::new(threads),
        })
    }

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

    /// Checks and normalises points before anything is written.
    fn prepare(&self, points: Vec<NewPoint>) -> Result<Vec<PointRecord>> {
        let c = &self.inner.config;
        points
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                if p.vector.len() != c.dimension {
                    return Err(CollectionError::DimensionMismatch {
                        subject: format!("point {index}: vector"),
                        expected: c.dimension,
                        got: p.vector.len(),
                    });
                }
                if let Some(i) = p.vector.iter().position(|x| !x.is_finite()) {
                    return Err(CollectionError::InvalidVector(format!(
                        "point {index}: component {i} is not a finite 32-bit float (NaN, infinite, or beyond ±3.4e38)"
                    )));
                }
                let mut vector = p.vector;
                check_magnitude(c.metric, &vector, &format!("point {index}"))?;
                if c.metric == Metric::Cosine && !index::distance::normalize(&mut vector) {
                    return Err(CollectionError::InvalidVector(format!(
                        "point {index}: a zero vector has no direction under cosine"
                    )));
                }
                let payload = self.check_payload(index, p.payload)?;
                let id = match p.id {
                    Some(PointId::Str(s)) if s.is_empty() || s.len() > 256 => {
                        return Err(CollectionError::InvalidId(format!(
                            "point {index}: string ids must be 1-256 bytes"
                        )))
                    }
                    Some(id) => id,
                    None => PointId::Str(new_uuid()),
                };
                Ok(PointRecord {
                    id,
                    vector,
                    payload,
                    content: p.content,
                })
            })
            .collect()
    }

    fn check_payload(&self, index: usize, p: Option<serde_json::Value>) -> Result<Option<Payload>> {
        match p {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Object(m)) => {
                let size = serde_json::to_vec(&m)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > self.inner.config.max_payload_bytes {
                    return Err(CollectionError::InvalidPayload(format!(
                        "point {index}: payload is {size} bytes, the limit is {}",
                        self.inner.config.max_payload_bytes
                    )));
                }
                Ok(Some(m))
            }
            Some(_) => Err(CollectionError::InvalidPayload(format!(
                "point {index}: payload must be a JSON object"
            ))),
        }
    }

    /// WAL → apply → (fsync) → acknowledge. Blocking.
    fn write(&self, op: Op) -> Result<u64> {
        Ok(self.write_with(|_| Ok(Some(op)))?.expect("an op was given"))
    }

    /// The one write path: under the state write lock, `decide` looks at the
    /// current state and returns the op to log (or None: nothing to do);
    /// the op is appended to the WAL, applied, and, after the lock is
    /// released, made durable (`fsync: always`) before returning its number.
    fn write_with(&self, decide: impl FnOnce(&State) -> Result<Option<Op>>) -> Result<Option<u64>> {
        let wal = self.writable()?;
        let mut buf = Vec::new();
        let (num, applied) = {
            let mut st = self.inner.state.write();
            let Some(op) = decide(&st)? else {
                return Ok(None);
            };
            encode_op(&op, &mut buf);
            let num = wal.append(&buf)?;
            let applied = self.inner.apply(&mut st, num, op);
            self.inner.writes.touch();
            (num, applied)
        };
        // Jobs are queued with `state` released (lock order: jobs first).
        if let Some(j) = applied.build {
            self.send(j);
        }
        if applied.vacuum && !self.inner.vacuum_queued.swap(true, Ordering::AcqRel) {
            self.send(Job::Vacuum);
        }
        if self.inner.config.fsync == FsyncMode::Always {
            wal.sync_to(num)?;
        }
        Ok(Some(num))
    }

    /// Inserts or replaces points by id. Returns the op number and the ids.
    pub fn upsert(&self, points: Vec<NewPoint>) -> Result<(u64, Vec<PointId>)> {
        let recs = self.prepare(points)?;
        let ids = recs.iter().map(|r| r.id.clone()).collect();
        if recs.is_empty() {
            return Ok((self.inner.last_op(), ids));
        }
        Ok((self.write(Op::Upsert(recs))?, ids))
    }

    /// Deletes points by id; returns how many existed.
    pub fn delete(&self, ids: Vec<PointId>) -> Result<usize> {
        let n = {
            let st = self.inner.state.read();
            ids.iter()
                .collect::<HashSet<_>>()
                .into_iter()
                .filter(|i| st.ids.contains_key(i))
                .count()
        };
        if !ids.is_empty() {
            self.write(Op::Delete(ids))?;
        }
        Ok(n)
    }

    /// Deletes every point matching the filter (logged as the ids it
    /// matched); returns how many. The filter is evaluated chunk by chunk
    /// without holding `state`; under the write lock only what changed
    /// since is looked at again: candidates whose slot moved, and slots
    /// written after the walk began (appendable segments past the length
    /// they had, and segments that did not exist). So the delete is exact
    /// at the moment it is logged, and a large delete does not stall
    /// writers or readers for the length of a scan.
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<usize> {
        self.writable()?;
        let filter = filter::CompiledFilter::new(filter).map_err(CollectionError::InvalidFilter)?;
        // Segments as the walk begins: sealed ones never gain slots;
        // appendable ones only past their current length.
        let before: BTreeMap<SegmentId, Option<usize>> = {
            let st = self.inner.state.read();
            st.segments
                .iter()
                .map(|(&sid, s)| match s {
                    Seg::Mutable(m) => (sid, Some(m.data.read().ids.len())),
                    Seg::Sealed(..) => (sid, None),
                })
                .collect()
        };
        let mut cands: Vec<(PointId, Loc)> = Vec::new();
        let mut cursor: Option<PointId> = None;
        loop {
            let chunk = self.id_chunk(cursor.as_ref(), SCAN_CHUNK);
            let Some(last) = chunk.last() else { break };
            cursor = Some(last.0.clone());
            for (id, loc, seg) in chunk {
                match self.read_slot(&seg, loc.off, ReadParts::PAYLOAD)? {
                    Some((e, _)) if filter.matches(e.payload.as_ref()) => cands.push((id, loc)),
                    // Replaced meanwhile: its new slot is looked at below.
                    None => cands.push((id, loc)),
                    Some(_) => {}
                }
            }
        }
        let mut n = 0;
        self.write_with(|st| {
            let mut ids: Vec<PointId> = Vec::new();
            let mut seen: HashSet<PointId> = HashSet::new();
            let matches_at = |loc: Loc| -> Result<bool> {
                Ok(filter.matches(self.extra_at(st, loc)?.payload.as_ref()))
            };
            for (id, loc) in cands {
                match st.ids.get(&id) {
                    // Unchanged slot: it matched when read (a slot read
                    // as deleted is never pointed at again).
                    Some(&now) if now == loc && seen.insert(id.clone()) => ids.push(id),
                    Some(&now) if now != loc && matches_at(now)? && seen.insert(id.clone()) => {
                        ids.push(id)
                    }
                    _ => {}
                }
            }
            // Slots written after the walk began.
            for (&sid, seg) in &st.segments {
                let from = match before.get(&sid) {
                    Some(None) => continue,
                    Some(Some(len)) => *len,
                    None => 0,
                };
                let slot_ids: Vec<PointId> = match seg {
                    Seg::Mutable(m) => m.data.read().ids.get(from..).unwrap_or(&[]).to_vec(),
                    Seg::Sealed(s, _) => s.ids.get(from..).unwrap_or(&[]).to_vec(),
                };
                for (i, id) in slot_ids.into_iter().enumerate() {
                    let loc = Loc {
                        seg: sid,
                        off: (from + i) as u32,
                    };
                    if st.ids.get(&id) == Some(&loc) && !seen.contains(&id) && matches_at(loc)? {
                        seen.insert(id.clone());
                        ids.push(id);
                    }
                }
            }
            n = ids.len();
            Ok((!ids.is_empty()).then_some(Op::Delete(ids)))
        })?;
        Ok(n)
    }

    /// Sets (or with `merge`, merges into) the payload of existing points,
    /// without touching vectors. Logged as upserts of the resulting points.
    pub fn set_payload(
        &self,
        ids: &[PointId],
        payload: serde_json::Value,
        merge: bool,
    ) -> Result<u64> {
        let new = self.check_payload(0, Some(payload))?.unwrap_or_default();
        let num = self.write_with(|st| {
            let mut recs = Vec::with_capacity(ids.len());
            for id in ids {
                let loc = *st
                    .ids
                    .get(id)
                    .ok_or_else(|| CollectionError::PointNotFound(id.clone()))?;
                let p = self.point_at(st, id.clone(), loc)?;
                let payload = if merge {
                    let mut m = p.payload.unwrap_or_default();
                    m.extend(new.clone());
                    m
                } else {
                    new.clone()
                };
                let size = serde_json::to_vec(&payload)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > self.inner.config.max_payload_bytes {
                    return Err(CollectionError::InvalidPayload(format!(
                        "payload of {id} would be {size} bytes, over the limit"
                    )));
                }
                recs.push(PointRecord {
                    id: id.clone(),
                    vector: p.vector,
                    payload: Some(payload),
                    content: p.content,
                });
            }
            Ok(Some(Op::Upsert(recs)))
        })?;
        Ok(num.expect("set_payload always logs an op"))
    }

    fn extra_at(&self, st: &State, loc: Loc) -> Result<Extra> {
        match st.segments.get(&loc.seg) {
            Some(Seg::Mutable(m)) => Ok(m.data.read().extras[loc.off as usize].clone()),
            Some(Seg::Sealed(s, _)) => Ok(s.extra(loc.off as usize)?),
            None => Err(StorageError::Corrupt {
                path: self.inner.dir.clone(),
                message: "id map points at a missing segment".into(),
            }
            .into()),
        }
    }

    fn point_at(&self, st: &State, id: PointId, loc: Loc) -> Result<StoredPoint> {
        let extra = self.extra_at(st, loc)?;
        let dim = self.inner.config.dimension;
        let vector = match st.segments.get(&loc.seg) {
            Some(Seg::Mutable(m)) => {
                m.data.read().vectors[loc.off as usize * dim..(loc.off as usize + 1) * dim].to_vec()
            }
            Some(Seg::Sealed(s, _)) => s.vector(loc.off as usize).to_vec(),
            None => unreachable!("checked by extra_at"),
        };
        Ok(StoredPoint {
            id,
            vector,
            payload: extra.payload,
            content: extra.content,
        })
    }

    /// The segment a slot lives in, and the current location of `id`
    /// (under a brief read lock).
    fn resolve(&self, id: &PointId) -> Option<(Loc, Seg)> {
        let st = self.inner.state.read();
        let loc = *st.ids.get(id)?;
        st.segments.get(&loc.seg).map(|s| (loc, s.clone()))
    }

    /// Up to `limit` entries of the id map after `after`, each with its
    /// segment, copied out under a brief read lock.
    fn id_chunk(&self, after: Option<&PointId>, limit: usize) -> Vec<(PointId, Loc, Seg)> {
        let st = self.inner.state.read();
        let start = match after {
            Some(c) => Bound::Excluded(c.clone()),
            None => Bound::Unbounded,
        };
        st.ids
            .range((start, Bound::Unbounded))
            .take(limit)
            .filter_map(|(id, loc)| {
                st.segments
                    .get(&loc.seg)
                    .map(|s| (id.clone(), *loc, s.clone()))
            })
            .collect()
    }

    /// Reads a slot with no collection lock held: None when the slot was
    /// deleted (or replaced) since it was looked up. Sealed slots never
    /// change; vacuum leaves the old segment's files intact while anyone
    /// holds it.
    /// Only the `parts` asked for are copied (the others come back empty).
    fn read_slot(
        &self,
        seg: &Seg,
        off: u32,
        parts: ReadParts,
    ) -> Result<Option<(Extra, Vec<f32>)>> {
        let dim = self.inner.config.dimension;
        let o = off as usize;
        match seg {
            Seg::Mutable(m) => {
                let d = m.data.read();
                if d.deleted[o] {
                    return Ok(None);
                }
                let v = if parts.vector {
                    d.vectors[o * dim..(o + 1) * dim].to_vec()
                } else {
                    Vec::new()
                };
                let e = if parts.payload {
                    d.extras[o].clone()
                } else {
                    Extra::default()
                };
                Ok(Some((e, v)))
            }
            Seg::Sealed(s, _) => {
                if s.deleted.get(o) {
                    return Ok(None);
                }
                let v = if parts.vector {
                    s.vector(o).to_vec()
                } else {
                    Vec::new()
                };
                let e = if parts.payload {
                    s.extra(o)?
                } else {
                    Extra::default()
                };
                Ok(Some((e, v)))
            }
        }
    }

    /// The current value of `id`, found at `seg`/`off` or, when that slot
    /// was replaced meanwhile, wherever the id map points now. None when
    /// the point was deleted.
    fn read_point(
        &self,
        id: &PointId,
        mut seg: Seg,
        mut off: u32,
        parts: ReadParts,
    ) -> Result<Option<(Extra, Vec<f32>)>> {
        // A slot is replaced only by a newer write; a few rounds always
        // suffice unless the point is rewritten continuously.
        for _ in 0..8 {
            if let Some(x) = self.read_slot(&seg, off, parts)? {
                return Ok(Some(x));
            }
            match self.resolve(id) {
                Some((loc, s)) => {
                    seg = s;
                    off = loc.off;
                }
                None => return Ok(None),
            }
        }
        // Still moving: read it under the lock once.
        let st = self.inner.state.read();
        match st.ids.get(id) {
            Some(&loc) => {
                let p = self.point_at(&st, id.clone(), loc)?;
                let extra = if parts.payload {
                    Extra {
                        payload: p.payload,
                        content: p.content,
                    }
                } else {
                    Extra::default()
                };
                let vector = if parts.vector { p.vector } else { Vec::new() };
                Ok(Some((extra, vector)))
            }
            None => Ok(None),
        }
    }

    /// Points by id with every part; missing ids are skipped. See
    /// [`Collection::get_parts`].
    pub fn get(&self, ids: &[PointId]) -> Result<Vec<StoredPoint>> {
        self.get_parts(ids, ReadParts::ALL)
    }

    /// Points by id, with the `parts` asked for (the others left empty);
    /// missing ids are skipped. The id map is read under a brief lock, the
    /// points after it is released.
    pub fn get_parts(&self, ids: &[PointId], parts: ReadParts) -> Result<Vec<StoredPoint>> {
        let found: Vec<(PointId, Loc, Seg)> = {
            let st = self.inner.state.read();
            ids.iter()
                .filter_map(|id| {
                    let loc = *st.ids.get(id)?;
                    st.segments
                        .get(&loc.seg)
                        .map(|s| (id.clone(), loc, s.clone()))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(found.len());
        for (id, loc, seg) in found {
            if let Some((extra, vector)) = self.read_point(&id, seg, loc.off, parts)? {
                out.push(StoredPoint {
                    id,
                    vector,
                    payload: extra.payload,
                    content: extra.content,
                });
            }
        }
        Ok(out)
    }

    /// Points (matching the filter), counted. Without a filter, the size of
    /// the id map; with one, a chunked walk that never holds `state` while
    /// evaluating.
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        let Some(f) = filter else {
            return Ok(self.inner.state.read().ids.len());
        };
        let f = filter::CompiledFilter::new(f).map_err(CollectionError::InvalidFilter)?;
        let mut n = 0;
        let mut cursor: Option<PointId> = None;
        loop {
            let chunk = self.id_chunk(cursor.as_ref(), SCAN_CHUNK);
            let Some(last) = chunk.last() else {
                return Ok(n);
            };
            cursor = Some(last.0.clone());
            for (id, loc, seg) in chunk {
                if let Some((e, _)) = self.read_point(&id, seg, loc.off, ReadParts::PAYLOAD)? {
                    if f.matches(e.payload.as_ref()) {
                        n += 1;
                    }
                }
            }
        }
    }

    /// A page of points in id order after `cursor`; the next cursor is the
    /// last id returned when more may follow. Stable under concurrent
    /// writes: a point present for the whole scroll is returned once.
    /// Walks the id map in chunks; `state` is never held while reading.
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        limit: usize,
        cursor: Option<&PointId>,
    ) -> Result<(Vec<StoredPoint>, Option<PointId>)> {
        self.scroll_parts(filter, limit, cursor, ReadParts::ALL)
    }

    /// [`Collection::scroll`] with only the `parts` asked for copied out
    /// (a filter still reads the payload to decide, then drops it).
    pub fn scroll_parts(
        &self,
        filter: Option<&Filter>,
        limit: usize,
        cursor: Option<&PointId>,
        parts: ReadParts,
    ) -> Result<(Vec<StoredPoint>, Option<PointId>)> {
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let mut out: Vec<StoredPoint> = Vec::new();
        let mut after: Option<PointId> = cursor.cloned();
        loop {
            let want = if filter.is_some() {
                SCAN_CHUNK
            } else {
                (limit - out.len() + 1).min(SCAN_CHUNK)
            };
            let chunk = self.id_chunk(after.as_ref(), want);
            let Some(last) = chunk.last() else {
                return Ok((out, None));
            };
            after = Some(last.0.clone());
            let read = ReadParts {
                vector: parts.vector,
                payload: parts.payload || filter.is_some(),
            };
            for (id, loc, seg) in chunk {
                let Some((e, vector)) = self.read_point(&id, seg, loc.off, read)? else {
                    continue;
                };
                if !filter
                    .as_ref()
                    .is_none_or(|f| f.matches(e.payload.as_ref()))
                {
                    continue;
                }
                if out.len() == limit {
                    let next = out.last().map(|p| p.id.clone());
                    return Ok((out, next));
                }
                let e = if parts.payload { e } else { Extra::default() };
                out.push(StoredPoint {
                    id,
                    vector,
                    payload: e.payload,
                    content: e.content,
                });
            }
        }
    }

    /// Whether a search with `params` (`filtered`: with a payload filter)
    /// is short enough to run on the caller's thread, even an async
    /// runtime's: not exact, no filter, every sealed segment indexed, at
    /// most [`SHORT_SEARCH_SEGMENTS`] segments and at most
    /// [`SHORT_SEARCH_SCAN_POINTS`] appendable points to scan. Such a
    /// search is one graph or list traversal per segment (tens to a few
    /// hundred microseconds), less than the hand-off to a blocking thread
    /// costs; the answer is the same wherever it runs.
    pub fn is_short_search(&self, params: &SearchParams, filtered: bool) -> bool {
        if params.exact || filtered {
            return false;
        }
        let st = self.inner.state.read();
        st.segments.len() <= SHORT_SEARCH_SEGMENTS
            && st.segments.values().all(|s| match s {
                Seg::Sealed(_, idx) => idx.is_some(),
                Seg::Mutable(m) => m.live() <= SHORT_SEARCH_SCAN_POINTS,
            })
    }

    /// Top-k over every segment with default search parameters.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_with(query, k, filter, SearchParams::default())
    }

    /// Top-k over every segment: sealed ones through their index (exact
    /// with `params.exact`), the appendable one by scan; deleted points
    /// skipped, the filter applied during traversal. Scores: similarity
    /// (cosine, dot) or distance (euclidean).
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        params: SearchParams,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_parts(query, k, filter, params, ReadParts::ALL)
    }

    /// [`Collection::search_with`], copying only the `parts` asked for
    /// into the hits (the others left empty).
    pub fn search_parts(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        params: SearchParams,
        parts: ReadParts,
    ) -> Result<Vec<ScoredPoint>> {
        let c = &self.inner.config;
        let q = self.prepare_query(query)?;
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let filter = filter.as_ref();
        let segs: Vec<Seg> = self.inner.state.read().segments.values().cloned().collect();
        let mut top: TopK<(SegmentId, u32)> = TopK::new(k);
        for s in &segs {
            match s {
                Seg::Sealed(s, idx) => {
                    let accept = |off: u32| {
                        !s.deleted.get(off as usize)
                            && filter.is_none_or(|f| {
                                s.extra(off as usize)
                                    .is_ok_and(|e| f.matches(e.payload.as_ref()))
                            })
                    };
                    let hits = search_segment(
                        idx.as_deref(),
                        &c.index,
                        c.metric,
                        s.vectors(),
                        c.dimension,
                        &q,
                        k,
                        params,
                        filter.is_some(),
                        &accept,
                    );
                    for (off, sc) in hits {
                        top.push(sc, (s.id, off));
                    }
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let accept = |off: u32| {
                        !d.deleted[off as usize]
                            && filter
                                .is_none_or(|f| f.matches(d.extras[off as usize].payload.as_ref()))
                    };
                    for (off, sc) in
                        index::exact_scan(c.metric, &d.vectors, c.dimension, &q, k, &accept)
                    {
                        top.push(sc, (m.id, off));
                    }
                }
            }
        }
        let metric = c.metric;
        self.hydrate(&segs, top.into_sorted(), parts, |sc| {
            index::user_score(metric, sc)
        })
    }

    /// A query vector checked (dimension, finite components, magnitude)
    /// and, under cosine, normalised. Errors: `DimensionMismatch`,
    /// `InvalidVector`.
    fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        let c = &self.inner.config;
        if query.len() != c.dimension {
            return Err(CollectionError::DimensionMismatch {
                subject: "the query vector".into(),
                expected: c.dimension,
                got: query.len(),
            });
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(CollectionError::InvalidVector(
                "the query has a component that is not a finite 32-bit float (NaN, infinite, or beyond ±3.4e38)".into(),
            ));
        }
        let mut q = query.to_vec();
        check_magnitude(c.metric, &q, "the query")?;
        if c.metric == Metric::Cosine && !index::distance::normalize(&mut q) {
            return Err(CollectionError::InvalidVector(
                "a zero query vector has no direction under cosine".into(),
            ));
        }
        Ok(q)
    }

    /// The hits `top` ((segment, slot), internal score), best first, as
    /// points with the `parts` asked for; a point met twice (replaced
    /// while the search ran) is kept once, at its better rank. `score`
    /// turns an internal score into the user's. Errors: `Storage` when a
    /// sealed record cannot be read.
    fn hydrate(
        &self,
        segs: &[Seg],
        top: Vec<((SegmentId, u32), f32)>,
        parts: ReadParts,
        score: impl Fn(f32) -> f32,
    ) -> Result<Vec<ScoredPoint>> {
        let dim = self.inner.config.dimension;
        let by_id: BTreeMap<SegmentId, &Seg> = segs
            .iter()
            .map(|s| match s {
                Seg::Sealed(x, _) => (x.id, s),
                Seg::Mutable(x) => (x.id, s),
            })
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for ((sid, off), sc) in top {
            let o = off as usize;
            let (id, vector, extra) = match by_id[&sid] {
                Seg::Sealed(s, _) => (
                    s.ids[o].clone(),
                    if parts.vector {
                        s.vector(o).to_vec()
                    } else {
                        Vec::new()
                    },
                    if parts.payload {
                        s.extra(o)?
                    } else {
                        Extra::default()
                    },
                ),
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    (
                        d.ids[o].clone(),
                        if parts.vector {
                            d.vectors[o * dim..(o + 1) * dim].to_vec()
                        } else {
                            Vec::new()
                        },
                        if parts.payload {
                            d.extras[o].clone()
                        } else {
                            Extra::default()
                        },
                    )
                }
            };
            if seen.insert(id.clone()) {
                out.push(ScoredPoint {
                    point: StoredPoint {
                        id,
                        vector,
                        payload: extra.payload,
                        content: extra.content,
                    },
                    score: score(sc),
                });
            }
        }
        Ok(out)
    }

    /// Top-`k` by BM25 over the points' `content`, best first; scores are
    /// BM25 (≥ 0, see `text::bm25`) with the collection-wide statistics of
    /// the live points, so they do not depend on the segmentation. Only
    /// points holding a query term are hits (fewer than `k` when fewer
    /// do; none for a query without a token). `params` overrides the
    /// collection's `k1` / `b`; `filter` is applied to each scored point.
    ///
    /// Errors: `NoTextIndex` when the collection has no text index;
    /// `InvalidFilter`; `Storage` when a record cannot be read.
    pub fn search_text(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        params: Option<Bm25Params>,
        parts: ReadParts,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_text_among(query, k, filter, params, parts, None)
    }

    /// [`Collection::search_text`] over the points whose ids are in
    /// `only` (all when None); the statistics stay the collection's.
    pub(crate) fn search_text_among(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        params: Option<Bm25Params>,
        parts: ReadParts,
        only: Option<&HashSet<PointId>>,
    ) -> Result<Vec<ScoredPoint>> {
        let c = &self.inner.config;
        let Some(tok) = c.tokenizer() else {
            return Err(CollectionError::NoTextIndex(c.name.clone()));
        };
        let params = params.unwrap_or(Bm25Params {
            k1: c.text_index.k1,
            b: c.text_index.b,
        });
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let filter = filter.as_ref();
        let terms = QueryTerms::new(tok.tokenize(query));
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let segs: Vec<Seg> = self.inner.state.read().segments.values().cloned().collect();
        // Two passes: statistics over every segment, then scores. An
        // appendable segment's data is read-locked in each pass alone (one
        // `SegmentData` lock at a time); a write landing between the two
        // passes is seen by the second only, as by a search just after it.
        let mut stats = bm25::Stats::new(&terms);
        for s in &segs {
            match s {
                Seg::Sealed(s, _) => {
                    if let Some(t) = &s.text {
                        stats.add_segment(
                            t,
                            s.deleted.ones().map(|d| d as u32),
                            &|d| s.deleted.get(d as usize),
                            &terms,
                        );
                    }
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let deleted = d
                        .deleted
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| **x)
                        .map(|(i, _)| i as u32);
                    stats.add_segment(&d.text, deleted, &|o| d.deleted[o as usize], &terms);
                }
            }
        }
        let mut top: TopK<(SegmentId, u32)> = TopK::new(k);
        for s in &segs {
            match s {
                Seg::Sealed(s, _) => {
                    let Some(t) = &s.text else { continue };
                    let accept = |off: u32| {
                        !s.deleted.get(off as usize)
                            && only.is_none_or(|o| o.contains(&s.ids[off as usize]))
                            && filter.is_none_or(|f| {
                                s.extra(off as usize)
                                    .is_ok_and(|e| f.matches(e.payload.as_ref()))
                            })
                    };
                    bm25::score_segment(t, &terms, &stats, params, &accept, &mut |off, sc| {
                        top.push(sc, (s.id, off))
                    });
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let accept = |off: u32| {
                        !d.deleted[off as usize]
                            && only.is_none_or(|o| o.contains(&d.ids[off as usize]))
                            && filter
                                .is_none_or(|f| f.matches(d.extras[off as usize].payload.as_ref()))
                    };
                    bm25::score_segment(
                        &d.text,
                        &terms,
                        &stats,
                        params,
                        &accept,
                        &mut |off, sc| top.push(sc, (m.id, off)),
                    );
                }
            }
        }
        self.hydrate(&segs, top.into_sorted(), parts, |sc| sc)
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
                .filter(|s| matches!(s, Seg::Sealed(_, Some(_))))
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

/// Reads and checks `collection.json`. Errors: `Io`, `Corrupt`, `Version`.
fn read_config(dir: &Path) -> Result<CollectionConfig> {
    let cfg_path = dir.join("collection.json");
    let config: CollectionConfig = serde_json::from_slice(
        &std::fs::read(&cfg_path).map_err(io_err(&cfg_path))?,
    )
    .map_err(|e| StorageError::Corrupt {
        path: cfg_path.clone(),
        message: e.to_string(),
    })?;
    if config.format_version != COLLECTION_FORMAT_VERSION {
        return Err(StorageError::Version {
            path: cfg_path,
            found: config.format_version,
            expected: COLLECTION_FORMAT_VERSION,
        }
        .into());
    }
    Ok(config)
}

/// Reads `manifest.json` (an empty manifest when there is none yet).
/// Errors: `Io`, `Corrupt`.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let man_path = dir.join("manifest.json");
    match std::fs::read(&man_path) {
        Ok(b) => Ok(
            serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt {
                path: man_path.clone(),
                message: e.to_string(),
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
            format_version: COLLECTION_FORMAT_VERSION,
            ..Default::default()
        }),
        Err(e) => Err(io_err(&man_path)(e).into()),
    }
}

/// One past the largest segment id among the directories of `seg_dir`
/// (listed or not, `.tmp` included), so new ids never reuse a name.
fn max_segment_dir(seg_dir: &Path) -> Result<SegmentId> {
    let mut max_seen = 0;
    match std::fs::read_dir(seg_dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Ok(n) = name.trim_end_matches(".tmp").parse::<u64>() {
                    max_seen = max_seen.max(n + 1);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(seg_dir)(e).into()),
    }
    Ok(max_seen)
}

/// A sealed segment and its index, as listed in a manifest.
type SealedPart = (SegmentId, Arc<SealedSegment>, Option<Arc<SegmentIndex>>);

/// Opens (and verifies) sealed segment `sid` and its index. Writes nothing.
fn open_sealed(config: &CollectionConfig, seg_dir: &Path, sid: SegmentId) -> Result<SealedPart> {
    let sdir = seg_dir.join(SealedSegment::dir_name(sid));
    let s = Arc::new(SealedSegment::open(&sdir)?);
    let idx = SegmentIndex::open(&sdir, &config.index, config.dimension)
        .map_err(|message| StorageError::Corrupt {
            path: sdir.clone(),
            message,
        })?
        .map(Arc::new);
    Ok((sid, s, idx))
}

/// The in-memory state over the sealed segments a manifest lists, with a
/// new, empty appendable segment; the WAL past `persisted_op` is replayed
/// into it by the caller.
fn assemble_state(
    config: &CollectionConfig,
    manifest: &Manifest,
    sealed: Vec<SealedPart>,
    max_seen: SegmentId,
) -> State {
    let mut segments = BTreeMap::new();
    let mut ids: BTreeMap<PointId, Loc> = BTreeMap::new();
    for (sid, s, idx) in sealed {
        for (off, pid) in s.ids.iter().enumerate() {
            if s.deleted.get(off) {
                continue;
            }
            if let Some(prev) = ids.insert(
                pid.clone(),
                Loc {
                    seg: sid,
                    off: off as u32,
                },
            ) {
                // Not expected; keep the newer segment's copy.
                if let Some(Seg::Sealed(p, _)) = segments.get(&prev.seg) {
                    p.deleted.set(prev.off as usize);
                }
            }
        }
        segments.insert(sid, Seg::Sealed(s, idx));
    }
    let next = manifest
        .next_segment_id
        .max(max_seen)
        .max(manifest.segments.iter().max().map_or(0, |m| m + 1));
    let appendable = Arc::new(MutableSegment::new(
        next,
        config.dimension,
        config.tokenizer(),
    ));
    segments.insert(next, Seg::Mutable(appendable.clone()));
    State {
        segments,
        appendable,
        ids,
        next_segment_id: next + 1,
        frozen: Vec::new(),
    }
}

/// Refuses vectors whose scores could overflow f32 under `dot` and
/// `euclidean` (norm above `distance::MAX_NORM`); cosine normalises any
/// finite non-zero vector exactly, so it has no bound. Errors:
/// `InvalidVector` naming `what` and the norm.
fn check_magnitude(metric: Metric, v: &[f32], what: &str) -> Result<()> {
    if metric == Metric::Cosine {
        return Ok(());
    }
    let n = index::distance::norm_f64(v);
    if n > index::distance::MAX_NORM {
        return Err(CollectionError::InvalidVector(format!(
            "{what}: the vector's length is {n:e}, above the limit of {:e} for the {} metric: \
             scores of such vectors overflow 32-bit floats; scale the vectors down",
            index::distance::MAX_NORM,
            match metric {
                Metric::Dot => "dot",
                _ => "euclidean",
            }
        )));
    }
    Ok(())
}

/// What applying one op asks of the background worker.
struct Applied {
    /// The appendable segment reached its flush threshold and was frozen.
    build: Option<Job>,
    /// A sealed segment crossed `vacuum.deleted_ratio` (or lost its last
    /// live point).
    vacuum: bool,
}

/// Applies one logged op to the in-memory state (live writes and WAL
/// replay alike). Freezes the appendable segment at its flush threshold;
/// replaces it with an empty one when deletes left nothing live in it (so
/// its memory comes back without a seal).
fn apply_op(config: &CollectionConfig, st: &mut State, op_num: u64, op: Op) -> Applied {
    let mut touched: Vec<Arc<SealedSegment>> = Vec::new();
    let deleted_some = matches!(op, Op::Delete(_));
    match op {
        Op::Upsert(points) => {
            for p in points {
                if let Some(old) = st.ids.get(&p.id).copied() {
                    touched.extend(delete_at(st, old));
                }
                let id = p.id.clone();
                let off = st.appendable.push(p);
                st.ids.insert(
                    id,
                    Loc {
                        seg: st.appendable.id,
                        off,
                    },
                );
            }
        }
        Op::Delete(ids) => {
            for id in ids {
                if let Some(loc) = st.ids.remove(&id) {
                    touched.extend(delete_at(st, loc));
                }
            }
        }
    }
    let ratio = config.vacuum.deleted_ratio;
    let vacuum = touched.iter().any(|s| {
        let dead = s.count - s.live();
        s.count > 0 && (dead == s.count || dead as f64 / s.count as f64 >= ratio)
    });
    let (n, live, bytes) = {
        let d = st.appendable.data.read();
        (d.ids.len(), d.live, d.bytes)
    };
    if deleted_some && n > 0 && live == 0 {
        // Nothing in the id map points here any more: start afresh, under a
        // new id (a scan that noted this segment's length must not take
        // the new one's slots for old ones).
        let fresh = Arc::new(MutableSegment::new(
            st.next_segment_id,
            config.dimension,
            config.tokenizer(),
        ));
        st.next_segment_id += 1;
        st.segments.remove(&st.appendable.id);
        st.segments.insert(fresh.id, Seg::Mutable(fresh.clone()));
        st.appendable = fresh;
        return Applied {
            build: None,
            vacuum,
        };
    }
    let t = &config.flush_threshold;
    Applied {
        build: (n >= t.vectors || bytes >= t.bytes).then(|| freeze(config, st, op_num)),
        vacuum,
    }
}

/// Seals the appendable segment (it stays searchable) and starts a new one.
fn freeze(config: &CollectionConfig, st: &mut State, op_num: u64) -> Job {
    let id = st.appendable.id;
    st.frozen.push((id, op_num));
    let next = Arc::new(MutableSegment::new(
        st.next_segment_id,
        config.dimension,
        config.tokenizer(),
    ));
    st.next_segment_id += 1;
    st.segments.insert(next.id, Seg::Mutable(next.clone()));
    st.appendable = next;
    Job::Build(id, op_num)
}
