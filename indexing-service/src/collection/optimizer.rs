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

use super::*;
use super::{Job, Result, Shared};
use crate::index::payload_index::{self, PayloadFieldType};
use crate::index::segment_index::IndexKind;
use crate::storage::segment::{decode_payload, PointRef, RecordArena};
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

impl Shared {
    /// Builds the segment's index into its temp directory (the hook of
    /// `SealedSegment::write`) and drops it: the collection maps the files
    /// once the segment is published (`open_indexes`), so the codes and
    /// graph are page cache, not heap, like those of a reopened segment.
    pub(super) fn build_index(
        &self,
        dir: &Path,
        vectors: &[f32],
    ) -> std::result::Result<(), StorageError> {
        let c = &self.config;
        SegmentIndex::build(dir, &c.index, c.metric, vectors, c.dimension).map_err(|message| {
            StorageError::Corrupt {
                path: dir.to_path_buf(),
                message: format!("index build: {message}"),
            }
        })?;
        Ok(())
    }

    /// Writes every sealed segment's bitmap, then the manifest, then cuts
    /// the WAL. Called only from the worker. When nothing waits for a build
    /// and the appendable segment holds no slot, every op so far is in the
    /// sealed segments and their bitmaps, so `persisted_op` moves to the
    /// last op and the WAL is cut through it (deletes do not keep the log
    /// growing).
    pub(super) fn checkpoint(&self, m: &mut Manifest, persisted_op: u64) -> Result<()> {
        let (sealed, next, quiet_op): (Vec<Arc<SealedSegment>>, SegmentId, u64) = {
            let st = self.state.read();
            let sealed = st.sealed();
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

    pub(super) fn build(&self, id: SegmentId, freeze_op: u64) -> Result<()> {
        let seg = match self.state.read().segments.get(&id) {
            Some(Seg::Mutable(m)) => m.clone(),
            _ => return Ok(()),
        };
        // A frozen segment takes no more appends: share its arrays (no
        // copy) and write and index without the lock. Writers may keep
        // deleting from it meanwhile (carried over below).
        let (ids, vectors, payloads, contents, snap_deleted) = {
            let d = seg.data.read();
            (
                d.ids.clone(),
                d.vectors.clone(),
                d.payloads.clone(),
                d.contents.clone(),
                d.deleted.clone(),
            )
        };
        let dim = self.config.dimension;
        let schema = self.state.read().payload_schema.clone();
        let path = SealedSegment::write(
            &self.segments_dir(),
            id,
            dim,
            (0..ids.len()).map(|i| PointRef {
                id: &ids[i],
                vector: &vectors[i * dim..(i + 1) * dim],
                payload: payloads.get(i),
                content: contents.get(i),
                deleted: snap_deleted[i],
            }),
            self.config.tokenizer().as_ref(),
            Some(&vectors),
            |tmp, v| {
                self.build_index(tmp, v)?;
                write_payload_indexes(tmp, &schema, ids.len(), |i| {
                    decode_payload(payloads.get(i)).expect("a payload the segment encoded")
                })
            },
        )?;
        drop((ids, vectors, payloads, contents));
        let sealed = Arc::new(SealedSegment::open(&path)?);
        let built = open_indexes(&self.config, &path, &sealed)?;
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
    /// are dropped without writing anything. What it writes is one
    /// segment of at most `max_segment_points` live points: picked
    /// segments that would exceed it wait for a later pass (the smallest
    /// go first), and when no two segments fit together, there are more
    /// than `vacuum.max_segments`. Returns whether it did anything.
    pub(super) fn vacuum(&self) -> Result<bool> {
        let v = &self.config.vacuum;
        let cap = self.config.max_segment_points();
        let sealed = self.state.read().sealed();
        let mut dirty: Vec<Arc<SealedSegment>> = sealed
            .iter()
            .filter(|s| {
                s.count > 0 && (s.count - s.live()) as f64 / s.count as f64 >= v.deleted_ratio
            })
            .cloned()
            .collect();
        dirty.sort_by_key(|s| s.live());
        // Segments with nothing live cost nothing to write; the first
        // other one is always taken (a rewrite only shrinks it).
        let mut pick: Vec<Arc<SealedSegment>> = Vec::new();
        let mut live = 0usize;
        for s in dirty {
            if s.live() == 0 || pick.iter().all(|p| p.live() == 0) || live + s.live() <= cap {
                live += s.live();
                pick.push(s);
            }
        }
        if sealed.len() > v.max_segments {
            let mut by_size = sealed.clone();
            by_size.sort_by_key(|s| s.live());
            let want = sealed.len() - v.max_segments + 1;
            for (merged, s) in by_size.into_iter().enumerate() {
                if merged >= want {
                    break;
                }
                if pick.iter().any(|p| p.id == s.id) {
                    continue;
                }
                if live + s.live() > cap {
                    break;
                }
                live += s.live();
                pick.push(s);
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
        let (mut payloads, mut contents) = (RecordArena::default(), RecordArena::default());
        for s in &pick {
            for off in 0..s.count {
                if !s.deleted.get(off) {
                    moved.push((s.id, off as u32));
                    let (p, c) = s.records(off)?;
                    payloads.push(&p);
                    contents.push(&c);
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
            let schema = self.state.read().payload_schema.clone();
            let path = SealedSegment::write(
                &self.segments_dir(),
                new_id,
                self.config.dimension,
                moved.iter().enumerate().map(|(i, &(sid, off))| {
                    let s = by_id[&sid];
                    PointRef {
                        id: &s.ids[off as usize],
                        vector: s.vector(off as usize),
                        payload: payloads.get(i),
                        content: contents.get(i),
                        deleted: false,
                    }
                }),
                self.config.tokenizer().as_ref(),
                None,
                |tmp, vectors| {
                    self.build_index(tmp, vectors)?;
                    write_payload_indexes(tmp, &schema, moved.len(), |i| {
                        decode_payload(payloads.get(i)).expect("a payload encoded above")
                    })
                },
            )?;
            drop((payloads, contents));
            let seg = Arc::new(SealedSegment::open(&path)?);
            let built = open_indexes(&self.config, &path, &seg)?;
            Some((new_id, seg, built))
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
    pub(super) fn swap_in_moved(
        &self,
        st: &mut State,
        moved: &[(SegmentId, u32)],
        by_id: &BTreeMap<SegmentId, &Arc<SealedSegment>>,
        new_id: SegmentId,
        new_seg: Arc<SealedSegment>,
        built: Indexes,
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
    pub(super) fn worker(self: Arc<Self>, rx: crossbeam_channel::Receiver<(u64, Job)>) {
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
                Job::Reindex => self.reindex(),
            });
            *self.progress.0.lock() = ticket;
            self.progress.1.notify_all();
        }
    }

    /// Runs one piece of the worker's work; an error or a panic is logged
    /// (as `what` failed / panicked) and the worker goes on, so its
    /// progress advances and nobody waits on it forever.
    pub(super) fn logged(&self, what: &str, work: impl FnOnce() -> Result<()>) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(collection = %self.config.name, "{what} failed: {e}"),
            Err(_) => tracing::error!(collection = %self.config.name, "{what} panicked"),
        }
    }

    /// Gives every sealed segment the payload indexes of the schema and no
    /// others: a segment that differs is derived into a new one (its files
    /// hard-linked, the indexes it lacks built from its payloads, those the
    /// schema dropped left out; same slots), swapped in like a vacuum's
    /// rewrite, and the manifest checkpointed. Writes and searches go on
    /// meanwhile; deletes that land during the build are carried over.
    pub(super) fn reindex(&self) -> Result<()> {
        loop {
            let (schema, target) = {
                let st = self.state.read();
                let target = st.segments.values().find_map(|s| match s {
                    Seg::Sealed(seg, ix) => {
                        let have: Vec<&String> = ix.payload.by_field.keys().collect();
                        let want: Vec<&String> = st.payload_schema.keys().collect();
                        let same_types = ix
                            .payload
                            .by_field
                            .iter()
                            .all(|(f, i)| st.payload_schema.get(f) == Some(&i.ty));
                        (have != want || !same_types).then(|| (seg.clone(), ix.clone()))
                    }
                    Seg::Mutable(_) => None,
                });
                (st.payload_schema.clone(), target)
            };
            let Some((seg, ix)) = target else {
                return Ok(());
            };
            let mut payloads = Vec::with_capacity(seg.count);
            for off in 0..seg.count {
                payloads.push(seg.payload(off)?);
            }
            let missing: BTreeMap<String, PayloadFieldType> = schema
                .iter()
                .filter(|(f, t)| ix.payload.by_field.get(*f).is_none_or(|i| i.ty != **t))
                .map(|(f, t)| (f.clone(), *t))
                .collect();
            let add: Vec<(String, Vec<u8>)> = missing
                .iter()
                .map(|(f, t)| {
                    (
                        payload_index::file_name(f),
                        payload_index::build(*t, f, seg.count, |i| payloads[i].as_ref()),
                    )
                })
                .collect();
            drop(payloads);
            let new_id = {
                let mut st = self.state.write();
                let id = st.next_segment_id;
                st.next_segment_id += 1;
                id
            };
            let path = seg.derive(
                &self.segments_dir(),
                new_id,
                |name| {
                    payload_index::field_of(name)
                        .is_some_and(|f| !schema.contains_key(&f) || missing.contains_key(&f))
                },
                &add,
            )?;
            let new_seg = Arc::new(SealedSegment::open(&path)?);
            let payload = open_indexes(&self.config, &path, &new_seg)?.payload;
            // The vector index is the same files: share the open one.
            let built = Indexes {
                vector: ix.vector.clone(),
                payload,
            };
            let moved: Vec<(SegmentId, u32)> = (0..seg.count as u32).map(|o| (seg.id, o)).collect();
            let by_id: BTreeMap<SegmentId, &Arc<SealedSegment>> = [(seg.id, &seg)].into();
            let mut m = self.checkpoint.lock();
            {
                let mut st = self.state.write();
                if !st.segments.contains_key(&seg.id) {
                    // A vacuum replaced it meanwhile: try again.
                    drop(st);
                    drop(m);
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
                self.swap_in_moved(&mut st, &moved, &by_id, new_id, new_seg, built);
                st.segments.remove(&seg.id);
            }
            let p = m.persisted_op;
            self.checkpoint(&mut m, p)?;
            drop(m);
            let _ = std::fs::remove_dir_all(&seg.dir);
            tracing::debug!(collection = %self.config.name, "segment {} re-indexed as {new_id}", seg.id);
        }
    }
}

/// Writes the payload index of each field of `schema` into a segment's
/// temporary directory `dir`, from the payloads of its `n` slots.
fn write_payload_indexes(
    dir: &Path,
    schema: &BTreeMap<String, PayloadFieldType>,
    n: usize,
    payload: impl Fn(usize) -> Option<Payload>,
) -> std::result::Result<(), StorageError> {
    for (field, ty) in schema {
        let bytes = payload_index::build(*ty, field, n, &payload);
        crate::storage::fsutil::write_synced(&dir.join(payload_index::file_name(field)), &bytes)?;
    }
    Ok(())
}
