//! The segment holder: the set of segments (sealed and appendable), the
//! id map that points each live point at its slot, and how the state is
//! assembled from the sealed segments a manifest lists.

use super::*;

#[derive(Clone)]
pub(super) enum Seg {
    Mutable(Arc<MutableSegment>),
    /// A sealed segment and its index (none when small or `flat`).
    Sealed(Arc<SealedSegment>, Option<Arc<SegmentIndex>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) seg: SegmentId,
    pub(super) off: u32,
}

pub(super) struct State {
    pub(super) segments: BTreeMap<SegmentId, Seg>,
    pub(super) appendable: Arc<MutableSegment>,
    pub(super) ids: BTreeMap<PointId, Loc>,
    pub(super) next_segment_id: SegmentId,
    /// Frozen segments waiting for their build, oldest first, with the last
    /// op they contain.
    pub(super) frozen: Vec<(SegmentId, u64)>,
}

/// Marks a slot deleted; returns the sealed segment it was in, if any.
pub(super) fn delete_at(st: &State, loc: Loc) -> Option<Arc<SealedSegment>> {
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

/// A sealed segment and its index, as listed in a manifest.
pub(super) type SealedPart = (SegmentId, Arc<SealedSegment>, Option<Arc<SegmentIndex>>);

/// Opens (and verifies) sealed segment `sid` and its index. Writes nothing.
pub(super) fn open_sealed(
    config: &CollectionConfig,
    seg_dir: &Path,
    sid: SegmentId,
) -> Result<SealedPart> {
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
pub(super) fn assemble_state(
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
