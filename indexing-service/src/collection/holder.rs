//! The segment holder: the set of segments (sealed and appendable), the
//! id map that points each live point at its slot, and how the state is
//! assembled from the sealed segments a manifest lists.

use super::*;
use crate::index::payload_index::{self, FieldIndex, FieldIndexes, PayloadFieldType};

#[derive(Clone)]
pub(super) enum Seg {
    Mutable(Arc<MutableSegment>),
    /// A sealed segment and its indexes.
    Sealed(Arc<SealedSegment>, Indexes),
}

/// A sealed segment's indexes: the vector index (none when small or
/// `flat`) and the payload indexes of the fields indexed when it was
/// written.
#[derive(Clone)]
pub(super) struct Indexes {
    pub(super) vector: Option<Arc<SegmentIndex>>,
    pub(super) payload: Arc<FieldIndexes>,
}

/// Opens the indexes in a sealed segment's directory (files `SealedSegment::open`
/// verified). Errors: `Corrupt` naming the file that does not read.
pub(super) fn open_indexes(
    config: &CollectionConfig,
    sdir: &Path,
    s: &SealedSegment,
) -> Result<Indexes> {
    let vector = SegmentIndex::open(sdir, &config.index, config.dimension)
        .map_err(|message| StorageError::Corrupt {
            path: sdir.to_path_buf(),
            message,
        })?
        .map(Arc::new);
    let mut payload = FieldIndexes {
        slots: s.count,
        ..Default::default()
    };
    for name in s.listed_files() {
        let Some(field) = payload_index::field_of(&name) else {
            continue;
        };
        let path = sdir.join(&name);
        let f = std::fs::File::open(&path).map_err(io_err(&path))?;
        // SAFETY: segment files never change once renamed into place.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(&path))?;
        let idx =
            FieldIndex::open(Arc::new(map), s.count).map_err(|message| StorageError::Corrupt {
                path: path.clone(),
                message: format!("{name}: {message}"),
            })?;
        payload.by_field.insert(field, idx);
    }
    Ok(Indexes {
        vector,
        payload: Arc::new(payload),
    })
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
    /// The payload fields to index (as the manifest lists them); sealed
    /// segments written before a field was added get its index from the
    /// worker's reindex job.
    pub(super) payload_schema: BTreeMap<String, PayloadFieldType>,
}

impl State {
    /// The sealed segments, in id order.
    pub(super) fn sealed(&self) -> Vec<Arc<SealedSegment>> {
        self.segments
            .values()
            .filter_map(|s| match s {
                Seg::Sealed(s, _) => Some(s.clone()),
                Seg::Mutable(_) => None,
            })
            .collect()
    }
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
pub(super) type SealedPart = (SegmentId, Arc<SealedSegment>, Indexes);

/// Opens (and verifies) sealed segment `sid` and its index. Writes nothing.
pub(super) fn open_sealed(
    config: &CollectionConfig,
    seg_dir: &Path,
    sid: SegmentId,
) -> Result<SealedPart> {
    let sdir = seg_dir.join(SealedSegment::dir_name(sid));
    let s = Arc::new(SealedSegment::open(&sdir)?);
    let idx = open_indexes(config, &sdir, &s)?;
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
        payload_schema: manifest.payload_schema.clone(),
    }
}
