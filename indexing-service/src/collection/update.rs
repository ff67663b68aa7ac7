//! The write path: validate, log, apply, acknowledge. Upserts, deletes
//! (by id and by filter), payload updates, and the application of one
//! logged op to the in-memory state (live writes and replay alike).

use super::*;

impl Collection {
    /// Checks and normalises points before anything is written.
    pub(super) fn prepare(&self, points: Vec<NewPoint>) -> Result<Vec<PointRecord>> {
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

    pub(super) fn check_payload(
        &self,
        index: usize,
        p: Option<serde_json::Value>,
    ) -> Result<Option<Payload>> {
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
    pub(super) fn write(&self, op: Op) -> Result<u64> {
        Ok(self.write_with(|_| Ok(Some(op)))?.expect("an op was given"))
    }

    /// The one write path: under the state write lock, `decide` looks at the
    /// current state and returns the op to log (or None: nothing to do);
    /// the op is appended to the WAL, applied, and, after the lock is
    /// released, made durable (`fsync: always`) before returning its number.
    pub(super) fn write_with(
        &self,
        decide: impl FnOnce(&State) -> Result<Option<Op>>,
    ) -> Result<Option<u64>> {
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
        self.writable()?;
        self.wait_for_builds();
        Ok((self.write(Op::Upsert(recs))?, ids))
    }

    /// Back-pressure on appends: blocks while at least two frozen
    /// segments wait for their build and together hold
    /// `FROZEN_BYTES_LIMIT` or more, so a load faster than the builds
    /// does not pile up frozen segments in memory (each is held until its
    /// sealed form is live). Small flushes never wait (their builds are
    /// short and their memory small); one frozen segment of any size
    /// never makes a writer wait. Returns when the worker has caught up
    /// or the collection is shutting down. Blocking.
    pub(super) fn wait_for_builds(&self) {
        let frozen_bytes = || {
            let st = self.inner.state.read();
            let bytes: usize = st
                .frozen
                .iter()
                .filter_map(|(id, _)| match st.segments.get(id) {
                    Some(Seg::Mutable(m)) => Some(m.data.read().bytes),
                    _ => None,
                })
                .sum();
            (st.frozen.len(), bytes)
        };
        loop {
            let (n, bytes) = frozen_bytes();
            if n < 2 || bytes < FROZEN_BYTES_LIMIT || self.inner.stop.load(Ordering::Relaxed) {
                return;
            }
            let (lock, cv) = &self.inner.progress;
            let mut g = lock.lock();
            cv.wait_for(&mut g, std::time::Duration::from_millis(200));
        }
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
        self.writable()?;
        self.wait_for_builds();
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
}

/// Refuses vectors whose scores could overflow f32 under `dot` and
/// `euclidean` (norm above `distance::MAX_NORM`); cosine normalises any
/// finite non-zero vector exactly, so it has no bound. Errors:
/// `InvalidVector` naming `what` and the norm.
pub(super) fn check_magnitude(metric: Metric, v: &[f32], what: &str) -> Result<()> {
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

/// Frozen segments' bytes (vectors and payloads, as counted for the flush
/// threshold) above which appends wait for builds (with two or more
/// frozen): 1 GiB.
pub(super) const FROZEN_BYTES_LIMIT: usize = 1 << 30;

/// What applying one op asks of the background worker.
pub(super) struct Applied {
    /// The appendable segment reached its flush threshold and was frozen.
    pub(super) build: Option<Job>,
    /// A sealed segment crossed `vacuum.deleted_ratio` (or lost its last
    /// live point).
    pub(super) vacuum: bool,
}

/// Applies one logged op to the in-memory state (live writes and WAL
/// replay alike). Freezes the appendable segment at its flush threshold;
/// replaces it with an empty one when deletes left nothing live in it (so
/// its memory comes back without a seal).
pub(super) fn apply_op(config: &CollectionConfig, st: &mut State, op_num: u64, op: Op) -> Applied {
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
    let full = n >= t.vectors || bytes >= t.bytes || n >= config.max_segment_points();
    Applied {
        build: full.then(|| freeze(config, st, op_num)),
        vacuum,
    }
}

/// Seals the appendable segment (it stays searchable) and starts a new one.
pub(super) fn freeze(config: &CollectionConfig, st: &mut State, op_num: u64) -> Job {
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
