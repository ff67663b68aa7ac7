//! Segments: the mutable one that takes writes (in memory, rebuilt from the
//! WAL after a restart) and sealed ones (immutable files, memory-mapped).
//!
//! Sealed segment directory `segments/<id, 10 digits>/`, format version 1:
//!
//! | file | content |
//! |---|---|
//! | `meta.json` | `{"format_version": 1, "id", "dim", "count"}` |
//! | `vectors.f32` | `count × dim` f32 LE, row-major; memory-mapped (page-aligned) |
//! | `ids.bin` | `count` point ids (`codec` id encoding) |
//! | `records.idx` | `count + 1` u64 LE offsets into `records.dat` |
//! | `records.dat` | per point a JSON object `{"p": payload or null, "c": content or null}` |
//! | `deleted.bin` | bitset of deleted offsets, u64 LE words; the only file rewritten after sealing (atomically, at checkpoints) |
//!
//! A segment is written into `<id>.tmp/`, every file fsynced, then the
//! directory is renamed into place and the parent fsynced. Only the
//! manifest makes it live; directories the manifest does not list are
//! removed on open.

use super::codec::{put_id, Payload, PointRecord, Reader};
use super::fsutil::{atomic_write, sync_dir, write_synced};
use super::{io_err, Result, StorageError};
use crate::lock_order::{Level, OrderedRwLock};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use shared::wire::indexing::PointId;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(target_endian = "little"))]
compile_error!("segment files are little-endian and memory-mapped as native f32");

pub type SegmentId = u64;
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

/// A fixed-size bitset whose bits can be set without a lock.
pub struct AtomicBits {
    words: Vec<AtomicU64>,
    len: usize,
}

impl AtomicBits {
    pub fn new(len: usize) -> Self {
        Self {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }
    pub fn from_bytes(len: usize, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(64) * 8 {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap())))
            .collect();
        Some(Self { words, len })
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words
            .iter()
            .flat_map(|w| w.load(Ordering::Acquire).to_le_bytes())
            .collect()
    }
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }
    /// Sets bit `i`; true when it was clear.
    pub fn set(&self, i: usize) -> bool {
        let m = 1u64 << (i % 64);
        self.words[i / 64].fetch_or(m, Ordering::AcqRel) & m == 0
    }
    pub fn count_ones(&self) -> usize {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones() as usize)
            .sum()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a point carries besides its vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    #[serde(rename = "p")]
    pub payload: Option<Payload>,
    #[serde(rename = "c")]
    pub content: Option<String>,
}

/// The appendable segment: append-only arrays plus a deleted flag per
/// offset. An upsert of an id already here appends and deletes the old slot.
pub struct MutableSegment {
    pub id: SegmentId,
    pub dim: usize,
    /// Lock level `SegmentData`: taken after the collection's `state`.
    pub data: OrderedRwLock<MutableData>,
}

#[derive(Default)]
pub struct MutableData {
    pub vectors: Vec<f32>,
    pub ids: Vec<PointId>,
    pub extras: Vec<Extra>,
    pub deleted: Vec<bool>,
    pub live: usize,
    /// Vector and payload bytes appended (for the flush threshold).
    pub bytes: usize,
}

impl MutableSegment {
    pub fn new(id: SegmentId, dim: usize) -> Self {
        Self {
            id,
            dim,
            data: OrderedRwLock::new(Level::SegmentData, MutableData::default()),
        }
    }

    pub fn push(&self, p: PointRecord) -> u32 {
        let mut d = self.data.write();
        let off = d.ids.len() as u32;
        let extra_bytes = p
            .payload
            .as_ref()
            .map(|pl| serde_json::to_string(pl).map(|s| s.len()).unwrap_or(0))
            .unwrap_or(0)
            + p.content.as_ref().map_or(0, |c| c.len());
        d.bytes += p.vector.len() * 4 + extra_bytes;
        d.vectors.extend_from_slice(&p.vector);
        d.ids.push(p.id);
        d.extras.push(Extra {
            payload: p.payload,
            content: p.content,
        });
        d.deleted.push(false);
        d.live += 1;
        off
    }

    /// Marks `off` deleted; true when it was live.
    pub fn delete(&self, off: u32) -> bool {
        let mut d = self.data.write();
        let was = !std::mem::replace(&mut d.deleted[off as usize], true);
        if was {
            d.live -= 1;
        }
        was
    }

    pub fn live(&self) -> usize {
        self.data.read().live
    }

    pub fn bytes(&self) -> usize {
        self.data.read().bytes
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    id: SegmentId,
    dim: usize,
    count: usize,
}

/// An immutable, memory-mapped segment.
pub struct SealedSegment {
    pub id: SegmentId,
    pub dir: PathBuf,
    pub dim: usize,
    pub count: usize,
    vectors: Option<Mmap>,
    pub ids: Vec<PointId>,
    rec_idx: Option<Mmap>,
    rec_dat: Option<Mmap>,
    pub deleted: AtomicBits,
}

fn map(path: &Path) -> Result<Option<Mmap>> {
    let f = File::open(path).map_err(io_err(path))?;
    if f.metadata().map_err(io_err(path))?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: segment files are immutable once renamed into place; nothing
    // writes to them while they are mapped.
    Ok(Some(unsafe { Mmap::map(&f) }.map_err(io_err(path))?))
}

impl SealedSegment {
    pub fn dir_name(id: SegmentId) -> String {
        format!("{id:010}")
    }

    /// Writes a segment into `<parent>/<id>.tmp` and renames it to
    /// `<parent>/<id>`. `points` yields (id, vector, extra, deleted).
    /// `hook` runs on the temp directory and all vectors before the rename
    /// (the index layer writes its files there), so a segment directory is
    /// complete whenever it exists under its final name.
    pub fn write<'a>(
        parent: &Path,
        id: SegmentId,
        dim: usize,
        points: impl Iterator<Item = (&'a PointId, &'a [f32], &'a Extra, bool)>,
        hook: impl FnOnce(&Path, &[f32]) -> Result<()>,
    ) -> Result<PathBuf> {
        let fin = parent.join(Self::dir_name(id));
        let tmp = parent.join(format!("{}.tmp", Self::dir_name(id)));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut vectors: Vec<f32> = Vec::new();
        let mut ids = Vec::new();
        let mut idx: Vec<u8> = Vec::new();
        let mut dat = Vec::new();
        let mut deleted_offsets = Vec::new();
        let mut count = 0usize;
        for (pid, v, extra, del) in points {
            debug_assert_eq!(v.len(), dim);
            vectors.extend_from_slice(v);
            put_id(&mut ids, pid);
            idx.extend_from_slice(&(dat.len() as u64).to_le_bytes());
            serde_json::to_writer(&mut dat, extra).expect("JSON to a Vec");
            if del {
                deleted_offsets.push(count);
            }
            count += 1;
        }
        idx.extend_from_slice(&(dat.len() as u64).to_le_bytes());
        let bits = AtomicBits::new(count);
        for o in deleted_offsets {
            bits.set(o);
        }
        let bytes: Vec<u8> = vectors.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_synced(&tmp.join("vectors.f32"), &bytes)?;
        drop(bytes);
        hook(&tmp, &vectors)?;
        write_synced(&tmp.join("ids.bin"), &ids)?;
        write_synced(&tmp.join("records.idx"), &idx)?;
        write_synced(&tmp.join("records.dat"), &dat)?;
        write_synced(&tmp.join("deleted.bin"), &bits.to_bytes())?;
        let meta = Meta {
            format_version: SEGMENT_FORMAT_VERSION,
            id,
            dim,
            count,
        };
        write_synced(
            &tmp.join("meta.json"),
            &serde_json::to_vec_pretty(&meta).unwrap(),
        )?;
        sync_dir(&tmp)?;
        let _ = std::fs::remove_dir_all(&fin);
        std::fs::rename(&tmp, &fin).map_err(io_err(&fin))?;
        sync_dir(parent)?;
        Ok(fin)
    }

    /// Opens a segment directory: maps the files, reads ids and the deleted
    /// bitmap. Builds nothing.
    pub fn open(dir: &Path) -> Result<Self> {
        let corrupt = |m: String| StorageError::Corrupt {
            path: dir.to_path_buf(),
            message: m,
        };
        let meta_path = dir.join("meta.json");
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(io_err(&meta_path))?)
                .map_err(|e| corrupt(format!("meta.json: {e}")))?;
        if meta.format_version != SEGMENT_FORMAT_VERSION {
            return Err(StorageError::Version {
                path: meta_path,
                found: meta.format_version,
                expected: SEGMENT_FORMAT_VERSION,
            });
        }
        let vectors = map(&dir.join("vectors.f32"))?;
        let vlen = vectors.as_ref().map_or(0, |m| m.len());
        if vlen != meta.count * meta.dim * 4 {
            return Err(corrupt(format!(
                "vectors.f32 has {vlen} bytes, expected {}",
                meta.count * meta.dim * 4
            )));
        }
        let ids_path = dir.join("ids.bin");
        let raw = std::fs::read(&ids_path).map_err(io_err(&ids_path))?;
        let mut r = Reader::new(&raw);
        let mut ids = Vec::with_capacity(meta.count);
        for _ in 0..meta.count {
            ids.push(r.id().map_err(|e| corrupt(format!("ids.bin: {e}")))?);
        }
        let rec_idx = map(&dir.join("records.idx"))?;
        if rec_idx.as_ref().map_or(0, |m| m.len()) != (meta.count + 1) * 8 {
            return Err(corrupt("records.idx has the wrong size".into()));
        }
        let rec_dat = map(&dir.join("records.dat"))?;
        let del_path = dir.join("deleted.bin");
        let del = std::fs::read(&del_path).map_err(io_err(&del_path))?;
        let deleted = AtomicBits::from_bytes(meta.count, &del)
            .ok_or_else(|| corrupt("deleted.bin has the wrong size".into()))?;
        Ok(Self {
            id: meta.id,
            dir: dir.to_path_buf(),
            dim: meta.dim,
            count: meta.count,
            vectors,
            ids,
            rec_idx,
            rec_dat,
            deleted,
        })
    }

    /// All vectors, row-major, straight from the map.
    pub fn vectors(&self) -> &[f32] {
        match &self.vectors {
            // SAFETY: the map is page-aligned (so f32-aligned), its length
            // was checked to be count × dim × 4 on open, and the platform is
            // little-endian (checked at compile time).
            Some(m) => unsafe {
                std::slice::from_raw_parts(m.as_ptr() as *const f32, self.count * self.dim)
            },
            None => &[],
        }
    }

    #[inline]
    pub fn vector(&self, off: usize) -> &[f32] {
        &self.vectors()[off * self.dim..(off + 1) * self.dim]
    }

    pub fn extra(&self, off: usize) -> Result<Extra> {
        let idx = self.rec_idx.as_ref().expect("records.idx checked on open");
        let at = |i: usize| u64::from_le_bytes(idx[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
        let (s, e) = (at(off), at(off + 1));
        let dat: &[u8] = self.rec_dat.as_deref().unwrap_or(&[]);
        if s > e || e > dat.len() {
            return Err(StorageError::Corrupt {
                path: self.dir.clone(),
                message: format!("record {off} out of bounds"),
            });
        }
        serde_json::from_slice(&dat[s..e]).map_err(|err| StorageError::Corrupt {
            path: self.dir.clone(),
            message: format!("record {off}: {err}"),
        })
    }

    /// Persists the deleted bitmap (atomically).
    pub fn persist_deleted(&self) -> Result<()> {
        atomic_write(&self.dir.join("deleted.bin"), &self.deleted.to_bytes())
    }

    pub fn live(&self) -> usize {
        self.count - self.deleted.count_ones()
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}
