//! Segments: the mutable one that takes writes (in memory, rebuilt from the
//! WAL after a restart) and sealed ones (immutable files, memory-mapped).
//!
//! Sealed segment directory `segments/<id, 10 digits>/`, format version 3:
//!
//! | file | content | checked by |
//! |---|---|---|
//! | `meta.json` | `{"format_version": 2, "id", "dim", "count", "files": {name: {"bytes", "crc32"}}, "checksum"}` | `checksum` |
//! | `vectors.f32` | `count × dim` f32 LE, row-major; memory-mapped (page-aligned) | `files` |
//! | `ids.bin` | `count` point ids (`codec` id encoding) | `files` |
//! | `payload.idx`, `content.idx` | `count + 1` u64 LE offsets into the `.dat` file | `files` |
//! | `payload.dat` | per point its payload object in MessagePack (empty: no payload), so a filter check reads no text | `files` |
//! | `content.dat` | per point its content: empty for none, else the byte 1 and the UTF-8 text | `files` |
//! | `text.bin` | the inverted index of the points' `content` for keyword search (`text::inverted`); present when the collection indexes text | `files` |
//! | `pidx-<hex of the field name>.bin` | one payload index per indexed field (`index::payload_index`), written with the segment or added by deriving a new segment from it ([`SealedSegment::derive`]: the other files hard-linked) | `files` |
//! | `deleted.bin` | bitset of deleted offsets, `⌈count/64⌉` u64 LE words, then the CRC-32 of those words (u32 LE); the only file rewritten after sealing (atomically, at checkpoints) | its trailer |
//! | `hnsw.bin`, `sq8.bin`, `pq.bin`, `ivf.bin` | the index layer's files (`index::segment_index`), written by the hook of [`SealedSegment::write`]; which ones exist depends on the index settings | `files` |
//!
//! Integrity: `files` lists every file of the directory but `meta.json` and
//! `deleted.bin` with its size and CRC-32 (IEEE, `crc32fast`), computed
//! after the hook ran. `checksum` is the CRC-32 of the canonical JSON of
//! `meta.json` without the `checksum` key (compact, keys sorted), so the
//! layout inside the object does not matter but every value does (and the
//! file must start with `{` and end with `}`: bytes added or cut around the
//! object are refused); it is checked before `format_version` is
//! interpreted, so a damaged version number reads as damage. [`SealedSegment::open`] checks all of it before any
//! byte is served: a size or CRC mismatch, a listed file that is missing
//! or a file that is not listed is `StorageError::Corrupt` whose path is
//! that file (so it names the segment and the file). CRCs cover whole
//! files, so the error does not say where in the file the damage is.
//!
//! Cost: opening reads every byte of the segment once, with `pread` into a
//! small buffer rather than through the memory maps, so a freshly opened
//! (or freshly written) segment's vectors are in the page cache but not in
//! the process's resident memory until searches touch them. CRC-32 runs at
//! 6.6-8.2 GB/s on one core of this project's 2-core development machine
//! (AMD EPYC, PCLMULQDQ; files over 16 MiB are hashed in chunks on the
//! rayon pool, which adds little there: it is memory-bound), and opening a
//! 1M-vector, 384-dimension segment (1.57 GB, no index) took 0.23 s with
//! its pages in the page cache, against near zero for mapping it
//! unverified. Add the SQ8 codes and graph (about 0.5 GB more, so about
//! 0.3 s in all) and, when the pages are not cached, the time to read the
//! files from disk once (they then stay cached for the searches that
//! follow). The collection opens every segment it has just written, so a
//! flush or vacuum pays this once too. Measured by
//! `SEGMENT_BENCH_POINTS=1000000 cargo test -p indexing-service --lib
//! checksum_cost -- --ignored --nocapture`.
//!
//! Format 2 (older data directories): payload and content together in
//! `records.idx` / `records.dat` (per point a JSON object `{"p": payload or
//! null, "c": content or null}`) instead of the four `payload.*` /
//! `content.*` files; it opens as before, and a filter check there decodes
//! the whole record. Format 1: format 2 without `files`, `checksum` and
//! the `deleted.bin` trailer. Such segments still open, but unverified (an
//! info line is logged once per process); their `deleted.bin` keeps the
//! format-1 layout when rewritten. A segment that a vacuum rewrites comes
//! out in format 3; one derived from it ([`SealedSegment::derive`]) keeps
//! its format.
//!
//! A segment is written into `<id>.tmp/` by streaming its points (each
//! file through a buffer with a running CRC-32; the writer keeps no copy of
//! the vectors or records), every file fsynced, then the directory is
//! renamed into place and the parent fsynced. Only the
//! manifest makes it live; directories the manifest does not list are
//! removed on open.

use super::codec::{put_id, Payload, PointRecord, Reader};
use super::fsutil::{atomic_write, sync_dir, write_synced};
use super::{io_err, Result, StorageError};
use crate::lock_order::{Level, OrderedRwLock};
use crate::text::inverted::{self, MutableText, SealedText};
use crate::text::Tokenizer;
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shared::wire::indexing::PointId;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

#[cfg(not(target_endian = "little"))]
compile_error!("segment files are little-endian and memory-mapped as native f32");

pub type SegmentId = u64;
/// The format this build writes.
pub const SEGMENT_FORMAT_VERSION: u32 = 3;
/// The oldest format this build opens (format 1: no checksums, opened
/// unverified).
pub const SEGMENT_FORMAT_MIN: u32 = 1;

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
    /// The set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, word)| {
            let mut bits = word.load(Ordering::Relaxed);
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
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
    /// Tokenizes each point's `content` into `MutableData::text`; None
    /// when the collection does not index text.
    pub tokenizer: Option<Tokenizer>,
    /// Lock level `SegmentData`: taken after the collection's `state`.
    pub data: OrderedRwLock<MutableData>,
}

/// Append-only byte records: record `i` is `bytes[offsets[i]..offsets[i +
/// 1]]`. One allocation for all records, so a point's payload costs its
/// encoded bytes and 8 bytes of offset, not a tree of small allocations.
#[derive(Clone, Debug)]
pub struct RecordArena {
    offsets: Vec<u64>,
    bytes: Vec<u8>,
}

impl Default for RecordArena {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            bytes: Vec::new(),
        }
    }
}

impl RecordArena {
    pub fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.offsets.push(self.bytes.len() as u64);
    }
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Record `i`. Panics when `i >= len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// A payload as a segment stores it: MessagePack of the object, empty for
/// none (format 3's `payload.dat` record).
pub fn encode_payload(p: Option<&Payload>, out: &mut Vec<u8>) {
    if let Some(p) = p {
        rmp_serde::encode::write(out, p).expect("MessagePack to a Vec");
    }
}

/// Content as a segment stores it: empty for none, else the byte 1 and the
/// UTF-8 text (format 3's `content.dat` record).
pub fn encode_content(c: Option<&str>, out: &mut Vec<u8>) {
    if let Some(c) = c {
        out.push(1);
        out.extend_from_slice(c.as_bytes());
    }
}

/// The text of a record of [`encode_content`], borrowed; None for none
/// (or a record that does not decode).
pub fn content_text(b: &[u8]) -> Option<&str> {
    match b.split_first() {
        Some((1, text)) => std::str::from_utf8(text).ok(),
        _ => None,
    }
}

/// A slot's payload and content records ([`encode_payload`],
/// [`encode_content`]), borrowed from a segment's maps or encoded anew.
pub type StoredRecords<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// One point as [`SealedSegment::write`] takes it: the payload and content
/// as their stored records ([`encode_payload`], [`encode_content`]).
#[derive(Clone, Copy)]
pub struct PointRef<'a> {
    pub id: &'a PointId,
    pub vector: &'a [f32],
    pub payload: &'a [u8],
    pub content: &'a [u8],
    pub deleted: bool,
}

/// Reads a record of [`encode_payload`]. Errors: the decoder's message.
pub fn decode_payload(b: &[u8]) -> std::result::Result<Option<Payload>, String> {
    if b.is_empty() {
        return Ok(None);
    }
    rmp_serde::from_slice(b)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Reads a record of [`encode_content`]. Errors: a bad tag, not UTF-8.
pub fn decode_content(b: &[u8]) -> std::result::Result<Option<String>, &'static str> {
    match b.split_first() {
        None => Ok(None),
        Some((1, text)) => std::str::from_utf8(text)
            .map(|t| Some(t.to_string()))
            .map_err(|_| "not UTF-8"),
        Some(_) => Err("bad tag"),
    }
}

/// The appendable segment's arrays. `vectors`, `ids`, `payloads` and
/// `contents` are behind `Arc` so that the build of a frozen segment (which
/// takes no more appends) reads them without copying and without holding
/// the lock; appends go only to the appendable segment, whose arrays
/// nobody else holds, so `Arc::make_mut` there never copies. Payloads and
/// contents are kept encoded as a sealed segment's records are (one
/// allocation each, decoded when read).
#[derive(Default)]
pub struct MutableData {
    /// `len × dim` f32, row-major.
    pub vectors: Arc<Vec<f32>>,
    pub ids: Arc<Vec<PointId>>,
    /// [`encode_payload`] records, one per slot.
    pub payloads: Arc<RecordArena>,
    /// [`encode_content`] records, one per slot.
    pub contents: Arc<RecordArena>,
    pub deleted: Vec<bool>,
    pub live: usize,
    /// Vector and payload bytes appended (for the flush threshold).
    pub bytes: usize,
    /// The inverted index of the slots' `content` (empty when the segment
    /// has no tokenizer).
    pub text: MutableText,
}

impl MutableSegment {
    /// An empty segment; `tokenizer` indexes each point's `content` for
    /// keyword search (None: no text index).
    pub fn new(id: SegmentId, dim: usize, tokenizer: Option<Tokenizer>) -> Self {
        Self {
            id,
            dim,
            tokenizer,
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
        if let Some(t) = &self.tokenizer {
            d.text.push(t, p.content.as_deref());
        }
        Arc::make_mut(&mut d.vectors).extend_from_slice(&p.vector);
        Arc::make_mut(&mut d.ids).push(p.id);
        let mut buf = Vec::new();
        encode_payload(p.payload.as_ref(), &mut buf);
        Arc::make_mut(&mut d.payloads).push(&buf);
        buf.clear();
        encode_content(p.content.as_deref(), &mut buf);
        Arc::make_mut(&mut d.contents).push(&buf);
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

impl MutableData {
    /// The payload of slot `off`, decoded. Panics when `off` is out of
    /// range (records this segment encoded always decode).
    pub fn payload(&self, off: usize) -> Option<Payload> {
        decode_payload(self.payloads.get(off)).expect("a payload this segment encoded")
    }

    /// The payload and content of slot `off`, decoded.
    pub fn extra(&self, off: usize) -> Extra {
        Extra {
            payload: self.payload(off),
            content: decode_content(self.contents.get(off)).expect("content this segment encoded"),
        }
    }
}

/// The little-endian bytes of `v` (the platform is little-endian, checked
/// at compile time).
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: any f32 is 4 initialised bytes; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// Size and CRC-32 of one segment file, as recorded in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

impl FileSum {
    fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            crc32: crc32(bytes),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format_version: u32,
    id: SegmentId,
    dim: usize,
    count: usize,
    /// Every file of the directory but `meta.json` and `deleted.bin`
    /// (format 2; empty and absent in format 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, FileSum>,
    /// CRC-32 of the canonical form of the rest (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<u32>,
}

/// Chunk size of the parallel CRC: large enough that combining is free,
/// small enough that a 1.5 GB file spreads over every core.
const CRC_CHUNK: usize = 16 << 20;

/// CRC-32 (IEEE, `crc32fast`: PCLMULQDQ/VPCLMULQDQ where the CPU has them)
/// of `bytes`. Files over 16 MiB are hashed in 16 MiB chunks on the rayon
/// pool and the chunk CRCs combined, so the result equals
/// `crc32fast::hash(bytes)`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_chunked(bytes, CRC_CHUNK)
}

fn crc32_chunked(bytes: &[u8], chunk: usize) -> u32 {
    if bytes.len() <= chunk {
        return crc32fast::hash(bytes);
    }
    let parts: Vec<crc32fast::Hasher> = bytes
        .par_chunks(chunk)
        .map(|c| {
            let mut h = crc32fast::Hasher::new();
            h.update(c);
            h
        })
        .collect();
    let mut all = crc32fast::Hasher::new();
    for p in &parts {
        all.combine(p);
    }
    all.finalize()
}

/// Writes `v` as compact JSON with object keys sorted (recursively), so the
/// bytes depend only on the content, not on how a file was laid out.
fn canonical_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("JSON to a Vec");
                out.push(b':');
                canonical_json(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(x, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("JSON to a Vec"),
    }
}

/// The checksum of `meta.json`: CRC-32 of the canonical JSON of the object
/// without its `checksum` key.
fn meta_checksum(obj: &serde_json::Map<String, serde_json::Value>) -> u32 {
    let mut rest = obj.clone();
    rest.remove("checksum");
    let mut out = Vec::new();
    canonical_json(&serde_json::Value::Object(rest), &mut out);
    crc32fast::hash(&out)
}

impl Meta {
    /// Pretty JSON with `checksum` filled in.
    fn to_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.checksum = None;
        let serde_json::Value::Object(mut obj) = serde_json::to_value(&m).expect("meta to JSON")
        else {
            unreachable!("Meta serializes to an object")
        };
        let sum = meta_checksum(&obj);
        obj.insert("checksum".into(), sum.into());
        serde_json::to_vec_pretty(&serde_json::Value::Object(obj)).expect("JSON to a Vec")
    }

    /// Parses and checks `meta.json`: the checksum first (when present), so
    /// a damaged `format_version` reads as damage, not as a newer format.
    /// Errors: `Corrupt` naming `meta.json` when it does not parse, its
    /// checksum does not match, or a format-2 file lacks the checksum;
    /// `Version` when the format is not one this build reads.
    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |message: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        // Exactly one object, nothing around it: the writer adds no
        // whitespace outside the braces, so any byte added there is damage.
        if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
            return Err(corrupt(
                "does not start with `{` and end with `}` (bytes added or cut)".into(),
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(obj) = &v else {
            return Err(corrupt("not a JSON object".into()));
        };
        let checked = match obj.get("checksum") {
            None => false,
            Some(stored) => {
                let computed = meta_checksum(obj);
                if stored.as_u64() != Some(computed as u64) {
                    return Err(corrupt(format!(
                        "checksum mismatch (stored {stored}, computed {computed})"
                    )));
                }
                true
            }
        };
        let version = obj
            .get("format_version")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| corrupt("format_version is missing or not a number".into()))?;
        if !(SEGMENT_FORMAT_MIN as u64..=SEGMENT_FORMAT_VERSION as u64).contains(&version) {
            return Err(StorageError::Version {
                path: path.to_path_buf(),
                found: version.min(u32::MAX as u64) as u32,
                expected: SEGMENT_FORMAT_VERSION,
            });
        }
        let meta: Meta = serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))?;
        if meta.format_version >= 2 && !checked {
            return Err(corrupt("the checksum field is missing".into()));
        }
        if meta.format_version >= 2 && !meta.files.contains_key(VECTORS) {
            return Err(corrupt(format!("{VECTORS} is not listed")));
        }
        Ok(meta)
    }
}

const META: &str = "meta.json";
const VECTORS: &str = "vectors.f32";
const IDS: &str = "ids.bin";
const REC_IDX: &str = "records.idx";
const REC_DAT: &str = "records.dat";
const PAYLOAD_IDX: &str = "payload.idx";
const PAYLOAD_DAT: &str = "payload.dat";
const CONTENT_IDX: &str = "content.idx";
const CONTENT_DAT: &str = "content.dat";

/// One record file pair: `count + 1` u64 LE offsets (`idx`) into `dat`.
#[derive(Clone)]
struct RecordFile {
    idx: Option<Arc<Mmap>>,
    dat: Option<Arc<Mmap>>,
    dat_name: &'static str,
}

impl RecordFile {
    /// Maps and verifies `idx_name` / `dat_name` of a segment of `count`
    /// slots. Errors: `Io`, `Corrupt` (checksum, or the offsets' size).
    fn open(
        dir: &Path,
        meta: &Meta,
        idx_name: &'static str,
        dat_name: &'static str,
    ) -> Result<Self> {
        let idx = map(&dir.join(idx_name))?;
        verify_file(dir, meta, idx_name)?;
        if idx.as_ref().map_or(0, |m| m.len()) != (meta.count + 1) * 8 {
            return Err(StorageError::Corrupt {
                path: dir.join(idx_name),
                message: format!("{idx_name} has the wrong size"),
            });
        }
        let dat = map(&dir.join(dat_name))?;
        verify_file(dir, meta, dat_name)?;
        Ok(Self { idx, dat, dat_name })
    }

    /// The bytes of slot `off`. Errors: `Corrupt` when its offsets do not
    /// fit the data file.
    fn get(&self, dir: &Path, off: usize) -> Result<&[u8]> {
        let idx = self
            .idx
            .as_ref()
            .expect("checked on open: count + 1 offsets");
        let at = |i: usize| u64::from_le_bytes(idx[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
        let (s, e) = (at(off), at(off + 1));
        let dat: &[u8] = mapped(&self.dat);
        if s > e || e > dat.len() {
            return Err(StorageError::Corrupt {
                path: dir.join(self.dat_name),
                message: format!("record {off} out of bounds"),
            });
        }
        Ok(&dat[s..e])
    }
}

/// Where a segment keeps payloads and texts.
#[derive(Clone)]
enum Records {
    /// Formats 1 and 2: one JSON object `{"p", "c"}` per slot.
    Json(RecordFile),
    /// Format 3: the payload (MessagePack of the object; empty: none) and
    /// the content (empty: none; else `1` and the UTF-8 bytes) apart, so a
    /// filter check reads only the payload.
    Split {
        payload: RecordFile,
        content: RecordFile,
    },
}

/// Appends slot records to an offsets file and a data file, streamed.
struct RecordWriter {
    idx: Sink,
    dat: Sink,
}

impl RecordWriter {
    fn create(dir: &Path, idx: &str, dat: &str) -> Result<Self> {
        Ok(Self {
            idx: Sink::create(dir, idx)?,
            dat: Sink::create(dir, dat)?,
        })
    }
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.idx.put(&self.dat.bytes.to_le_bytes())?;
        self.dat.put(bytes)
    }
    fn finish(mut self, files: &mut BTreeMap<String, FileSum>) -> Result<()> {
        self.idx.put(&self.dat.bytes.to_le_bytes())?;
        self.idx.finish(files)?;
        self.dat.finish(files)
    }
}

/// One segment file written as it goes (buffered), its size and CRC-32
/// kept, so the writer holds no copy of what it wrote.
struct Sink {
    name: String,
    path: PathBuf,
    out: std::io::BufWriter<File>,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl Sink {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(Self {
            name: name.to_string(),
            out: std::io::BufWriter::with_capacity(1 << 20, f),
            path,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        })
    }
    fn put(&mut self, b: &[u8]) -> Result<()> {
        use std::io::Write;
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b).map_err(io_err(&self.path))
    }
    /// Flushes and fsyncs the file and records its sum in `files`.
    fn finish(self, files: &mut BTreeMap<String, FileSum>) -> Result<()> {
        let f = self.out.into_inner().map_err(|e| StorageError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&self.path))?;
        files.insert(
            self.name,
            FileSum {
                bytes: self.bytes,
                crc32: self.crc.finalize(),
            },
        );
        Ok(())
    }
}

/// The size and CRC-32 of the file at `path`, read with `pread` in chunks
/// (on the rayon pool for files over 16 MiB), not through a memory map: the
/// pages stay in the page cache and do not count in the process's RSS.
/// Equals `FileSum::of` of the file's bytes. Errors: `Io`.
fn file_sum(path: &Path) -> Result<FileSum> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let chunks = (len.div_ceil(CRC_CHUNK as u64) as usize).max(1);
    let parts: Vec<std::io::Result<crc32fast::Hasher>> = (0..chunks)
        .into_par_iter()
        .map(|i| {
            let start = i as u64 * CRC_CHUNK as u64;
            let end = (start + CRC_CHUNK as u64).min(len);
            let mut buf = vec![0u8; (1 << 20).min((end - start) as usize)];
            let mut h = crc32fast::Hasher::new();
            let mut at = start;
            while at < end {
                let n = buf.len().min((end - at) as usize);
                f.read_exact_at(&mut buf[..n], at)?;
                h.update(&buf[..n]);
                at += n as u64;
            }
            Ok(h)
        })
        .collect();
    let mut all = crc32fast::Hasher::new();
    for p in parts {
        all.combine(&p.map_err(io_err(path))?);
    }
    Ok(FileSum {
        bytes: len,
        crc32: all.finalize(),
    })
}

const DELETED: &str = "deleted.bin";
/// The text index (`text::inverted`).
pub const TEXT: &str = "text.bin";

/// `deleted.bin` as written by format `version`: the words, and in format 2
/// a trailing CRC-32 of them.
fn deleted_bytes(bits: &AtomicBits, version: u32) -> Vec<u8> {
    let mut b = bits.to_bytes();
    if version >= 2 {
        let sum = crc32fast::hash(&b);
        b.extend_from_slice(&sum.to_le_bytes());
    }
    b
}

/// An immutable, memory-mapped segment.
pub struct SealedSegment {
    pub id: SegmentId,
    pub dir: PathBuf,
    pub dim: usize,
    pub count: usize,
    format_version: u32,
    vectors: Option<Arc<Mmap>>,
    /// Point id per offset (shared by the copies [`SealedSegment::reopen`]
    /// makes).
    pub ids: Arc<Vec<PointId>>,
    records: Records,
    pub deleted: AtomicBits,
    /// The inverted index of the points' `content`, mapped from
    /// `text.bin`; None when the segment was written without one.
    pub text: Option<SealedText>,
}

fn map(path: &Path) -> Result<Option<Arc<Mmap>>> {
    let f = File::open(path).map_err(io_err(path))?;
    if f.metadata().map_err(io_err(path))?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: segment files are immutable once renamed into place; nothing
    // writes to them while they are mapped.
    Ok(Some(Arc::new(
        unsafe { Mmap::map(&f) }.map_err(io_err(path))?,
    )))
}

/// The mapped bytes, empty for an empty file.
fn mapped(m: &Option<Arc<Mmap>>) -> &[u8] {
    m.as_deref().map_or(&[], |m| &m[..])
}

/// Reads and checks `dir/deleted.bin` of a segment of `count` points in
/// format `version`. Errors: `Io`, `Corrupt` (size or trailing CRC).
fn read_deleted(dir: &Path, version: u32, count: usize) -> Result<AtomicBits> {
    let corrupt = |m: String| StorageError::Corrupt {
        path: dir.join(DELETED),
        message: m,
    };
    let del_path = dir.join(DELETED);
    let mut del = std::fs::read(&del_path).map_err(io_err(&del_path))?;
    if version >= 2 {
        let words = count.div_ceil(64) * 8;
        if del.len() != words + 4 {
            return Err(corrupt(format!(
                "{DELETED} has {} bytes, expected {} ({} bitmap bytes and a 4-byte CRC-32)",
                del.len(),
                words + 4,
                words
            )));
        }
        let stored = u32::from_le_bytes(del[words..].try_into().unwrap());
        let got = crc32fast::hash(&del[..words]);
        if stored != got {
            return Err(corrupt(format!(
                "{DELETED} fails its checksum (CRC-32 {got:#010x}, stored {stored:#010x})"
            )));
        }
        del.truncate(words);
    }
    AtomicBits::from_bytes(count, &del)
        .ok_or_else(|| corrupt(format!("{DELETED} has the wrong size")))
}

/// Checks `bytes` (the whole content of `dir/name`) against what
/// `meta.json` recorded. Errors: `Corrupt` naming the file when the size or
/// the CRC differs. Format 1 (`files` empty) checks nothing.
fn verify(dir: &Path, meta: &Meta, name: &str, bytes: &[u8]) -> Result<()> {
    check_sum(dir, meta, name, || Ok(FileSum::of(bytes)))
}

/// [`verify`] for a file that is memory-mapped: reads it with `pread`
/// ([`file_sum`]) so that checking it does not fault its pages into the
/// process (a freshly opened segment costs no RSS for its vectors).
fn verify_file(dir: &Path, meta: &Meta, name: &str) -> Result<()> {
    check_sum(dir, meta, name, || file_sum(&dir.join(name)))
}

fn check_sum(
    dir: &Path,
    meta: &Meta,
    name: &str,
    sum: impl FnOnce() -> Result<FileSum>,
) -> Result<()> {
    if meta.format_version < 2 {
        return Ok(());
    }
    let path = dir.join(name);
    let Some(want) = meta.files.get(name) else {
        return Err(StorageError::Corrupt {
            path,
            message: format!("{name} is not listed in {META}"),
        });
    };
    let got = sum()?;
    if got.bytes != want.bytes {
        return Err(StorageError::Corrupt {
            path,
            message: format!(
                "{name} has {} bytes, {META} records {}",
                got.bytes, want.bytes
            ),
        });
    }
    if got.crc32 != want.crc32 {
        return Err(StorageError::Corrupt {
            path,
            message: format!(
                "{name} fails its checksum (CRC-32 {:#010x}, {META} records {:#010x})",
                got.crc32, want.crc32
            ),
        });
    }
    Ok(())
}

/// Writes `meta` into the temporary directory `tmp` (every other file of
/// the segment already written and fsynced), fsyncs it, renames it to
/// `fin` (replacing a leftover) and fsyncs `parent`: the segment exists
/// under its final name only whole. Returns `fin`. Errors: `Io`.
fn publish(parent: &Path, tmp: &Path, fin: &Path, meta: &Meta) -> Result<PathBuf> {
    write_synced(&tmp.join(META), &meta.to_bytes())?;
    sync_dir(tmp)?;
    let _ = std::fs::remove_dir_all(fin);
    std::fs::rename(tmp, fin).map_err(io_err(fin))?;
    sync_dir(parent)?;
    Ok(fin.to_path_buf())
}

static V1_NOTICE: Once = Once::new();

impl SealedSegment {
    pub fn dir_name(id: SegmentId) -> String {
        format!("{id:010}")
    }

    /// Writes a segment into `<parent>/<id>.tmp` and renames it to
    /// `<parent>/<id>`. `points` yields each point's id, vector, stored
    /// records and deleted flag, and is streamed to the files (buffered; nothing of it is kept but the
    /// `content` references for the text index), so writing holds no copy
    /// of the vectors or payloads. `tokenizer`, when given, indexes each
    /// point's `content` into `text.bin`.
    ///
    /// `hook` runs on the temp directory and all vectors (row-major) before
    /// the rename (the index layer writes its files there): `vectors` when
    /// the caller holds them contiguously in the order of `points` (they
    /// are not copied), else a memory map of the written `vectors.f32`
    /// (unmapped after the hook). Every file the hook leaves is checksummed
    /// into `meta.json` with the segment's own (read back with `pread`,
    /// not mapped), so a segment directory is complete and verifiable
    /// whenever it exists under its final name. Returns the final
    /// directory. Errors: `Io` from any write, or whatever `hook` returns.
    #[allow(clippy::too_many_arguments)]
    pub fn write<'a>(
        parent: &Path,
        id: SegmentId,
        dim: usize,
        points: impl Iterator<Item = PointRef<'a>>,
        tokenizer: Option<&Tokenizer>,
        vectors: Option<&[f32]>,
        hook: impl FnOnce(&Path, &[f32]) -> Result<()>,
    ) -> Result<PathBuf> {
        let fin = parent.join(Self::dir_name(id));
        let tmp = parent.join(format!("{}.tmp", Self::dir_name(id)));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut files = BTreeMap::new();
        let mut vec_out = Sink::create(&tmp, VECTORS)?;
        let mut ids = Sink::create(&tmp, IDS)?;
        let mut payloads = RecordWriter::create(&tmp, PAYLOAD_IDX, PAYLOAD_DAT)?;
        let mut contents = RecordWriter::create(&tmp, CONTENT_IDX, CONTENT_DAT)?;
        let mut buf = Vec::new();
        let mut deleted_offsets = Vec::new();
        let mut count = 0usize;
        let mut texts: Vec<Option<&'a str>> = Vec::new();
        for p in points {
            if tokenizer.is_some() {
                texts.push(content_text(p.content));
            }
            debug_assert_eq!(p.vector.len(), dim);
            vec_out.put(f32_bytes(p.vector))?;
            buf.clear();
            put_id(&mut buf, p.id);
            ids.put(&buf)?;
            payloads.push(p.payload)?;
            contents.push(p.content)?;
            if p.deleted {
                deleted_offsets.push(count);
            }
            count += 1;
        }
        drop(buf);
        let bits = AtomicBits::new(count);
        for o in deleted_offsets {
            bits.set(o);
        }
        vec_out.finish(&mut files)?;
        ids.finish(&mut files)?;
        payloads.finish(&mut files)?;
        contents.finish(&mut files)?;
        if let Some(tok) = tokenizer {
            let bytes = inverted::write_sealed(tok, texts.drain(..));
            write_synced(&tmp.join(TEXT), &bytes)?;
            files.insert(TEXT.to_string(), FileSum::of(&bytes));
        }
        drop(texts);
        match vectors {
            Some(v) => {
                debug_assert_eq!(v.len(), count * dim);
                hook(&tmp, v)?
            }
            None => {
                let m = map(&tmp.join(VECTORS))?;
                let v: &[f32] = match &m {
                    // SAFETY: as `SealedSegment::vectors`: page-aligned,
                    // count × dim × 4 bytes just written, little-endian.
                    Some(m) => unsafe {
                        std::slice::from_raw_parts(m.as_ptr() as *const f32, count * dim)
                    },
                    None => &[],
                };
                hook(&tmp, v)?;
            }
        }
        // The hook's files (the index layer's), read back once.
        for e in std::fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let e = e.map_err(io_err(&tmp))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if files.contains_key(&name) || !e.file_type().map_err(io_err(e.path()))?.is_file() {
                continue;
            }
            files.insert(name, file_sum(&e.path())?);
        }
        write_synced(
            &tmp.join(DELETED),
            &deleted_bytes(&bits, SEGMENT_FORMAT_VERSION),
        )?;
        let meta = Meta {
            format_version: SEGMENT_FORMAT_VERSION,
            id,
            dim,
            count,
            files,
            checksum: None,
        };
        publish(parent, &tmp, &fin, &meta)
    }

    /// Opens a segment directory: checks `meta.json`, then every file it
    /// lists (size and CRC-32, the index layer's files included, so
    /// `SegmentIndex::open` maps only verified bytes) and `deleted.bin`
    /// (its trailing CRC), maps the files, reads ids and the deleted
    /// bitmap. Builds nothing. Reads every byte of the segment once (see
    /// the module docs for the cost). Format-1 segments carry no checksums
    /// and are opened unverified (logged once per process).
    ///
    /// Errors: `Corrupt` whose path is the damaged file (so it names the
    /// segment and the file) when a size or checksum does not match, a
    /// listed file is missing, a file is not listed, or the content is
    /// inconsistent; `Version` for a format this build does not read;
    /// `Io` when a file cannot be read.
    pub fn open(dir: &Path) -> Result<Self> {
        let corrupt = |name: &str, m: String| StorageError::Corrupt {
            path: dir.join(name),
            message: m,
        };
        let meta_path = dir.join(META);
        let meta = Meta::parse(
            &meta_path,
            &std::fs::read(&meta_path).map_err(io_err(&meta_path))?,
        )?;
        if meta.format_version < 2 {
            V1_NOTICE.call_once(|| {
                tracing::info!(
                    "segment {} has format version {} (no checksums): opened unverified; \
                     segments rewritten by a flush or vacuum carry checksums \
                     (logged once per process)",
                    dir.display(),
                    meta.format_version
                )
            });
        } else {
            // Every file present is listed, and every listed file present.
            let mut seen = BTreeSet::new();
            for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
                let e = e.map_err(io_err(dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                // Dot files are `atomic_write` temporaries, never read.
                if name == META || name == DELETED || name.starts_with('.') {
                    continue;
                }
                if !meta.files.contains_key(&name) {
                    return Err(corrupt(
                        &name,
                        format!("{name} is not listed in {META}; refusing unverified files"),
                    ));
                }
                seen.insert(name);
            }
            if let Some(name) = meta.files.keys().find(|n| !seen.contains(*n)) {
                return Err(corrupt(
                    name,
                    format!("{name} is missing (listed in {META})"),
                ));
            }
        }
        let vectors = map(&dir.join(VECTORS))?;
        verify_file(dir, &meta, VECTORS)?;
        let vlen = vectors.as_ref().map_or(0, |m| m.len());
        if vlen != meta.count * meta.dim * 4 {
            return Err(corrupt(
                VECTORS,
                format!(
                    "{VECTORS} has {vlen} bytes, expected {}",
                    meta.count * meta.dim * 4
                ),
            ));
        }
        let ids_path = dir.join(IDS);
        let raw = std::fs::read(&ids_path).map_err(io_err(&ids_path))?;
        verify(dir, &meta, IDS, &raw)?;
        let mut r = Reader::new(&raw);
        let mut ids = Vec::with_capacity(meta.count);
        for _ in 0..meta.count {
            ids.push(r.id().map_err(|e| corrupt(IDS, format!("{IDS}: {e}")))?);
        }
        let records = if meta.format_version >= 3 {
            Records::Split {
                payload: RecordFile::open(dir, &meta, PAYLOAD_IDX, PAYLOAD_DAT)?,
                content: RecordFile::open(dir, &meta, CONTENT_IDX, CONTENT_DAT)?,
            }
        } else {
            Records::Json(RecordFile::open(dir, &meta, REC_IDX, REC_DAT)?)
        };
        let deleted = read_deleted(dir, meta.format_version, meta.count)?;
        let text_path = dir.join(TEXT);
        let text =
            if meta.files.contains_key(TEXT) || (meta.format_version < 2 && text_path.exists()) {
                let m = map(&text_path)?;
                verify_file(dir, &meta, TEXT)?;
                let bytes: Arc<dyn AsRef<[u8]> + Send + Sync> = match m {
                    Some(m) => m,
                    None => Arc::new(Vec::new()),
                };
                Some(
                    SealedText::open(bytes, meta.count)
                        .map_err(|e| corrupt(TEXT, format!("{TEXT}: {e}")))?,
                )
            } else {
                None
            };
        // The rest (the index layer's files): verified here, before
        // `SegmentIndex::open` maps them.
        for name in meta.files.keys() {
            if [
                VECTORS,
                IDS,
                REC_IDX,
                REC_DAT,
                PAYLOAD_IDX,
                PAYLOAD_DAT,
                CONTENT_IDX,
                CONTENT_DAT,
                TEXT,
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            verify_file(dir, &meta, name)?;
        }
        Ok(Self {
            id: meta.id,
            dir: dir.to_path_buf(),
            dim: meta.dim,
            count: meta.count,
            format_version: meta.format_version,
            vectors,
            ids: Arc::new(ids),
            records,
            deleted,
            text,
        })
    }

    /// Writes a copy of this segment as segment `id` in `parent` with
    /// components changed: every file but those `drop` names (and
    /// `meta.json`, `deleted.bin`) is hard-linked (segment files never
    /// change once written, so the copy shares their bytes), `add`'s files
    /// are written (replacing a linked file of the same name), the deleted
    /// bitmap is the current one, and `meta.json` lists the result with
    /// the checksums (linked files keep theirs). Written in `<id>.tmp/`,
    /// fsynced and renamed into place like [`SealedSegment::write`]; the
    /// slots are the same, so offsets carry over. Returns the new
    /// directory. Errors: `Io`; `Corrupt` when this segment's `meta.json`
    /// no longer reads; a format-1 segment (no checksums) is refused as
    /// `Corrupt` too: rewrite it with a vacuum first.
    pub fn derive(
        &self,
        parent: &Path,
        id: SegmentId,
        drop: impl Fn(&str) -> bool,
        add: &[(String, Vec<u8>)],
    ) -> Result<PathBuf> {
        let meta_path = self.dir.join(META);
        let old = Meta::parse(
            &meta_path,
            &std::fs::read(&meta_path).map_err(io_err(&meta_path))?,
        )?;
        if old.format_version < 2 {
            return Err(StorageError::Corrupt {
                path: meta_path,
                message: "a format-1 segment cannot be derived (no checksums)".into(),
            });
        }
        let fin = parent.join(Self::dir_name(id));
        let tmp = parent.join(format!("{}.tmp", Self::dir_name(id)));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut files = BTreeMap::new();
        for (name, sum) in &old.files {
            if drop(name) || add.iter().any(|(n, _)| n == name) {
                continue;
            }
            let to = tmp.join(name);
            std::fs::hard_link(self.dir.join(name), &to).map_err(io_err(&to))?;
            files.insert(name.clone(), *sum);
        }
        for (name, bytes) in add {
            write_synced(&tmp.join(name), bytes)?;
            files.insert(name.clone(), FileSum::of(bytes));
        }
        // The copy keeps the layout of the files it links, so its format.
        write_synced(
            &tmp.join(DELETED),
            &deleted_bytes(&self.deleted, old.format_version),
        )?;
        let meta = Meta {
            format_version: old.format_version,
            id,
            dim: self.dim,
            count: self.count,
            files,
            checksum: None,
        };
        publish(parent, &tmp, &fin, &meta)
    }

    /// The names of this segment's files that `meta.json` lists (none for
    /// format 1).
    pub fn listed_files(&self) -> Vec<String> {
        let meta_path = self.dir.join(META);
        std::fs::read(&meta_path)
            .ok()
            .and_then(|b| Meta::parse(&meta_path, &b).ok())
            .map(|m| m.files.into_keys().collect())
            .unwrap_or_default()
    }

    /// Another view of this segment with the deleted bitmap read again from
    /// `deleted.bin` (as the writer last persisted it): the maps and ids
    /// are shared, nothing else is read or checked again, nothing is
    /// written. A follower uses it when the manifest changes, so that its
    /// replay of the log starts from the persisted bitmap while readers of
    /// the previous view keep theirs. Errors: `Io`, `Corrupt` as `open`.
    pub fn reopen(&self) -> Result<Self> {
        Ok(Self {
            id: self.id,
            dir: self.dir.clone(),
            dim: self.dim,
            count: self.count,
            format_version: self.format_version,
            vectors: self.vectors.clone(),
            ids: self.ids.clone(),
            records: self.records.clone(),
            deleted: read_deleted(&self.dir, self.format_version, self.count)?,
            text: self.text.clone(),
        })
    }

    /// The on-disk format of this segment (1: no checksums; 2: checksums).
    pub fn format_version(&self) -> u32 {
        self.format_version
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

    /// The payload and content of slot `off`. Errors: `Corrupt` naming
    /// the record file when the record does not decode.
    pub fn extra(&self, off: usize) -> Result<Extra> {
        match &self.records {
            Records::Json(r) => self.decode_json(r, off),
            Records::Split { .. } => Ok(Extra {
                payload: self.payload(off)?,
                content: self.content(off)?,
            }),
        }
    }

    /// The payload and content records of slot `off` as format 3 stores
    /// them ([`encode_payload`], [`encode_content`]): borrowed from the
    /// maps in format 3, encoded from the JSON record in formats 1 and 2.
    /// Errors: `Corrupt`.
    pub fn records(&self, off: usize) -> Result<StoredRecords<'_>> {
        match &self.records {
            Records::Split { payload, content } => Ok((
                Cow::Borrowed(payload.get(&self.dir, off)?),
                Cow::Borrowed(content.get(&self.dir, off)?),
            )),
            Records::Json(r) => {
                let e = self.decode_json(r, off)?;
                let (mut p, mut c) = (Vec::new(), Vec::new());
                encode_payload(e.payload.as_ref(), &mut p);
                encode_content(e.content.as_deref(), &mut c);
                Ok((Cow::Owned(p), Cow::Owned(c)))
            }
        }
    }

    /// The payload of slot `off`, without reading its content (format 3;
    /// older formats decode the whole record). Errors: `Corrupt`.
    pub fn payload(&self, off: usize) -> Result<Option<Payload>> {
        match &self.records {
            Records::Json(r) => Ok(self.decode_json(r, off)?.payload),
            Records::Split { payload, .. } => {
                decode_payload(payload.get(&self.dir, off)?).map_err(|err| StorageError::Corrupt {
                    path: self.dir.join(PAYLOAD_DAT),
                    message: format!("record {off}: {err}"),
                })
            }
        }
    }

    /// The content of slot `off`. Errors: `Corrupt`.
    pub fn content(&self, off: usize) -> Result<Option<String>> {
        match &self.records {
            Records::Json(r) => Ok(self.decode_json(r, off)?.content),
            Records::Split { content, .. } => {
                decode_content(content.get(&self.dir, off)?).map_err(|m| StorageError::Corrupt {
                    path: self.dir.join(CONTENT_DAT),
                    message: format!("record {off}: {m}"),
                })
            }
        }
    }

    fn decode_json(&self, r: &RecordFile, off: usize) -> Result<Extra> {
        serde_json::from_slice(r.get(&self.dir, off)?).map_err(|err| StorageError::Corrupt {
            path: self.dir.join(REC_DAT),
            message: format!("record {off}: {err}"),
        })
    }

    /// Persists the deleted bitmap (atomically), in the segment's own
    /// format (with its trailing CRC-32 from format 2). Errors: `Io`.
    pub fn persist_deleted(&self) -> Result<()> {
        atomic_write(
            &self.dir.join(DELETED),
            &deleted_bytes(&self.deleted, self.format_version),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    type Point = (PointId, Vec<f32>, Extra, bool);

    const DIM: usize = 4;

    fn sample(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let id = if i % 3 == 0 {
                    PointId::Str(format!("s{i}"))
                } else {
                    PointId::Num(i as u64)
                };
                let v = (0..DIM).map(|d| (i * DIM + d) as f32 * 0.5 - 3.0).collect();
                let mut p = Payload::new();
                p.insert("i".into(), i.into());
                let extra = Extra {
                    payload: Some(p),
                    content: (i % 2 == 0).then(|| format!("text {i}")),
                };
                (id, v, extra, i % 5 == 1)
            })
            .collect()
    }

    /// `pts` with payload and content encoded as a segment stores them.
    type Stored = (PointId, Vec<f32>, Vec<u8>, Vec<u8>, bool);

    fn stored(pts: &[Point]) -> Vec<Stored> {
        pts.iter()
            .map(|(i, v, e, d)| {
                let (mut p, mut c) = (Vec::new(), Vec::new());
                encode_payload(e.payload.as_ref(), &mut p);
                encode_content(e.content.as_deref(), &mut c);
                (i.clone(), v.clone(), p, c, *d)
            })
            .collect()
    }

    /// The points of `stored` as the writer takes them.
    fn refs(stored: &[Stored]) -> impl Iterator<Item = PointRef<'_>> {
        stored.iter().map(|(i, v, pl, c, d)| PointRef {
            id: i,
            vector: v,
            payload: pl,
            content: c,
            deleted: *d,
        })
    }

    /// Writes `pts` as segment `id`; the hook leaves `index_files` in the
    /// temp dir, as the index layer does.
    fn write(
        parent: &Path,
        id: SegmentId,
        pts: &[Point],
        index_files: &[(&str, &[u8])],
    ) -> PathBuf {
        SealedSegment::write(
            parent,
            id,
            DIM,
            refs(&stored(pts)),
            Some(&Tokenizer::new(None)),
            None,
            |tmp, _| {
                for (name, bytes) in index_files {
                    write_synced(&tmp.join(name), bytes)?;
                }
                Ok(())
            },
        )
        .unwrap()
    }

    /// Everything a reader can get out of a segment.
    fn contents(s: &SealedSegment) -> Vec<Point> {
        (0..s.count)
            .map(|o| {
                (
                    s.ids[o].clone(),
                    s.vector(o).to_vec(),
                    s.extra(o).unwrap(),
                    s.deleted.get(o),
                )
            })
            .collect()
    }

    fn expect_corrupt(dir: &Path, file: &str, what: &str) {
        match SealedSegment::open(dir) {
            Ok(_) => panic!("{what}: {file} damaged, yet the segment opened"),
            Err(e @ StorageError::Corrupt { .. }) => {
                let StorageError::Corrupt { path, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(path, &dir.join(file), "{what}: {e}");
                assert!(e.to_string().contains(file), "{what}: {e}");
            }
            Err(e) => panic!("{what}: expected Corrupt naming {file}, got {e}"),
        }
    }

    /// The damage every file must be refused for.
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;

    fn damages(len: usize) -> Vec<(String, Damage)> {
        let mut d: Vec<(String, Damage)> = Vec::new();
        let mut at: Vec<usize> = vec![0, len / 2, len.saturating_sub(1)];
        at.dedup();
        for i in at.into_iter().filter(|&i| i < len) {
            for mask in [0x01u8, 0x80] {
                d.push((
                    format!("byte {i} ^ {mask:#04x}"),
                    Box::new(move |b: &mut Vec<u8>| b[i] ^= mask),
                ));
            }
        }
        if len > 0 {
            d.push((
                "truncated by one byte".into(),
                Box::new(|b| b.truncate(b.len() - 1)),
            ));
            d.push(("emptied".into(), Box::new(|b| b.clear())));
        }
        d.push(("one byte appended".into(), Box::new(|b| b.push(0))));
        d.push((
            "one zero word appended".into(),
            Box::new(|b| b.extend([0; 8])),
        ));
        d
    }

    #[test]
    fn an_undamaged_segment_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let pts = sample(150);
        let dir = write(t.path(), 7, &pts, &[("hnsw.bin", b"graph words")]);
        let s = SealedSegment::open(&dir).unwrap();
        assert_eq!((s.id, s.dim, s.count, s.format_version()), (7, DIM, 150, 3));
        // The payload reads without the content.
        assert_eq!(s.payload(4).unwrap(), pts[4].2.payload);
        assert_eq!(s.content(4).unwrap().as_deref(), Some("text 4"));
        assert_eq!(s.content(3).unwrap(), None);
        assert_eq!(contents(&s), pts);
        // The text index is mapped, not rebuilt: "text 4" is slot 4's.
        use crate::text::inverted::TextSource;
        let text = s.text.as_ref().expect("written with a tokenizer");
        let mut hits = Vec::new();
        text.postings("4", &mut |d, tf| hits.push((d, tf)));
        assert_eq!(hits, [(4, 1)]);
        assert_eq!(text.totals(), (75, 150));
        // Deletes persisted at a checkpoint carry their own checksum.
        assert!(s.deleted.set(0) && s.deleted.set(149));
        s.persist_deleted().unwrap();
        let again = SealedSegment::open(&dir).unwrap();
        assert!(again.deleted.get(0) && again.deleted.get(149));
        assert_eq!(again.live(), s.live());
        // An empty segment too.
        let empty = write(t.path(), 8, &[], &[]);
        let e = SealedSegment::open(&empty).unwrap();
        assert_eq!((e.count, e.vectors().len(), e.live()), (0, 0, 0));
    }

    #[test]
    fn a_derived_segment_shares_files_and_changes_components() {
        let t = tempfile::tempdir().unwrap();
        let pts = sample(60);
        let dir = write(
            t.path(),
            3,
            &pts,
            &[("hnsw.bin", b"graph"), ("pidx-61.bin", b"old")],
        );
        let s = SealedSegment::open(&dir).unwrap();
        s.deleted.set(5);
        let new = s
            .derive(
                t.path(),
                4,
                |n| n == "pidx-61.bin",
                &[("pidx-62.bin".to_string(), b"new".to_vec())],
            )
            .unwrap();
        let d = SealedSegment::open(&new).unwrap();
        assert_eq!(d.id, 4);
        let mut want = contents(&s);
        want[5].3 = true;
        assert_eq!(contents(&d), want, "same slots, current deletes");
        assert!(!new.join("pidx-61.bin").exists());
        assert_eq!(std::fs::read(new.join("pidx-62.bin")).unwrap(), b"new");
        assert_eq!(std::fs::read(new.join("hnsw.bin")).unwrap(), b"graph");
        let mut listed = d.listed_files();
        listed.sort();
        assert!(listed.contains(&"pidx-62.bin".to_string()) && listed.contains(&TEXT.to_string()));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(new.join(VECTORS)).unwrap().ino(),
            std::fs::metadata(dir.join(VECTORS)).unwrap().ino(),
            "vectors are hard-linked, not copied"
        );
    }

    #[test]
    fn every_damaged_file_is_refused_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let pts = sample(200);
        let graph: Vec<u8> = (0..4096u32).flat_map(|w| w.to_le_bytes()).collect();
        let codes: Vec<u8> = (0..800u32).map(|i| i as u8).collect();
        let dir = write(
            t.path(),
            1,
            &pts,
            &[("hnsw.bin", &graph), ("sq8.bin", &codes)],
        );
        // Deletes rewritten after sealing must be covered as well.
        let s = SealedSegment::open(&dir).unwrap();
        s.deleted.set(3);
        s.persist_deleted().unwrap();
        let want = contents(&s);
        drop(s);
        for file in [
            VECTORS,
            IDS,
            PAYLOAD_IDX,
            PAYLOAD_DAT,
            CONTENT_IDX,
            CONTENT_DAT,
            DELETED,
            TEXT,
            "hnsw.bin",
            "sq8.bin",
        ] {
            let path = dir.join(file);
            let orig = std::fs::read(&path).unwrap();
            for (what, damage) in damages(orig.len()) {
                let mut b = orig.clone();
                damage(&mut b);
                std::fs::write(&path, &b).unwrap();
                expect_corrupt(&dir, file, &format!("{file} {what}"));
            }
            std::fs::write(&path, &orig).unwrap();
        }
        let s = SealedSegment::open(&dir).unwrap();
        assert_eq!(contents(&s), want, "restored files open as before");
    }

    #[test]
    fn every_single_bit_flip_in_meta_json_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = write(t.path(), 2, &sample(20), &[("pq.bin", b"codes")]);
        let path = dir.join(META);
        let orig = std::fs::read(&path).unwrap();
        // Every bit of the file, through the parser (no file I/O) ...
        for i in 0..orig.len() {
            for bit in 0..8 {
                let mut b = orig.clone();
                b[i] ^= 1 << bit;
                match Meta::parse(&path, &b) {
                    Err(StorageError::Corrupt { path: p, .. }) => assert_eq!(p, path),
                    Err(e) => panic!("byte {i} bit {bit}: expected Corrupt, got {e}"),
                    Ok(m) => panic!("byte {i} bit {bit}: accepted as {m:?}"),
                }
            }
        }
        // ... and the usual damage through `open`.
        for (what, damage) in damages(orig.len()) {
            let mut b = orig.clone();
            damage(&mut b);
            std::fs::write(&path, &b).unwrap();
            expect_corrupt(&dir, META, &what);
        }
        // Whitespace around the object is refused too (it is not ours).
        for (what, b) in [
            ("space appended", [&orig[..], b" "].concat()),
            ("newline appended", [&orig[..], b"\n"].concat()),
            ("space prepended", [b" ", &orig[..]].concat()),
        ] {
            std::fs::write(&path, &b).unwrap();
            expect_corrupt(&dir, META, what);
        }
        // Layout inside does not matter, content does: compact JSON of the same
        // values opens.
        let v: serde_json::Value = serde_json::from_slice(&orig).unwrap();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        SealedSegment::open(&dir).unwrap();
        // A value changed together with a checksum computed the wrong way
        // (over the file's bytes) is still refused.
        let mut v = v;
        v["count"] = 19.into();
        v["checksum"] = crc32fast::hash(&serde_json::to_vec(&v).unwrap()).into();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        expect_corrupt(&dir, META, "count changed");
    }

    #[test]
    fn missing_and_unlisted_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = write(t.path(), 3, &sample(30), &[("hnsw.bin", b"graph")]);
        // A listed file that is gone (the index would silently vanish).
        std::fs::rename(dir.join("hnsw.bin"), t.path().join("hnsw.bin")).unwrap();
        expect_corrupt(&dir, "hnsw.bin", "listed file missing");
        std::fs::rename(t.path().join("hnsw.bin"), dir.join("hnsw.bin")).unwrap();
        for file in [
            VECTORS,
            IDS,
            PAYLOAD_IDX,
            PAYLOAD_DAT,
            CONTENT_IDX,
            CONTENT_DAT,
        ] {
            let b = std::fs::read(dir.join(file)).unwrap();
            std::fs::remove_file(dir.join(file)).unwrap();
            expect_corrupt(&dir, file, "listed file missing");
            std::fs::write(dir.join(file), b).unwrap();
        }
        // A file nobody checksummed (the index layer would map it).
        std::fs::write(dir.join("pq.bin"), b"unverified").unwrap();
        expect_corrupt(&dir, "pq.bin", "unlisted file");
        std::fs::remove_file(dir.join("pq.bin")).unwrap();
        // Missing meta.json or deleted.bin: an I/O error naming it.
        for file in [META, DELETED] {
            let b = std::fs::read(dir.join(file)).unwrap();
            std::fs::remove_file(dir.join(file)).unwrap();
            let e = SealedSegment::open(&dir).err().expect("opened without it");
            assert!(e.to_string().contains(file), "{e}");
            std::fs::write(dir.join(file), b).unwrap();
        }
        // A temp file left by an interrupted `atomic_write` is ignored.
        std::fs::write(dir.join(".deleted.bin.tmp"), b"half").unwrap();
        SealedSegment::open(&dir).unwrap();
    }

    #[test]
    fn a_newer_format_is_a_version_error() {
        let t = tempfile::tempdir().unwrap();
        let dir = write(t.path(), 4, &sample(5), &[]);
        let path = dir.join(META);
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["format_version"] = (SEGMENT_FORMAT_VERSION + 1).into();
        let sum = meta_checksum(v.as_object().unwrap());
        v["checksum"] = sum.into();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        match SealedSegment::open(&dir) {
            Err(StorageError::Version {
                found: 4,
                expected: 3,
                path: p,
            }) => assert_eq!(p, path),
            other => panic!("expected a version error, got {:?}", other.err()),
        }
    }

    /// A format-1 segment as the previous build wrote it: no `files`, no
    /// `checksum`, `deleted.bin` without its trailer.
    fn write_v1(parent: &Path, id: SegmentId, pts: &[Point]) -> PathBuf {
        let dir = parent.join(SealedSegment::dir_name(id));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut vectors, mut ids, mut idx, mut dat) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let bits = AtomicBits::new(pts.len());
        for (o, (pid, v, extra, del)) in pts.iter().enumerate() {
            vectors.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            put_id(&mut ids, pid);
            idx.extend_from_slice(&(dat.len() as u64).to_le_bytes());
            serde_json::to_writer(&mut dat, extra).unwrap();
            if *del {
                bits.set(o);
            }
        }
        idx.extend_from_slice(&(dat.len() as u64).to_le_bytes());
        let meta =
            serde_json::json!({"format_version": 1, "id": id, "dim": DIM, "count": pts.len()});
        for (name, bytes) in [
            (META, serde_json::to_vec_pretty(&meta).unwrap()),
            (VECTORS, vectors),
            (IDS, ids),
            (REC_IDX, idx),
            (REC_DAT, dat),
            (DELETED, bits.to_bytes()),
            ("hnsw.bin", b"graph".to_vec()),
        ] {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn a_format_1_segment_still_opens_unverified() {
        let t = tempfile::tempdir().unwrap();
        let pts = sample(100);
        let dir = write_v1(t.path(), 9, &pts);
        let s = SealedSegment::open(&dir).unwrap();
        assert_eq!((s.id, s.count, s.format_version()), (9, 100, 1));
        assert_eq!(contents(&s), pts);
        // Its bitmap is rewritten in the format-1 layout (no trailer).
        s.deleted.set(0);
        s.persist_deleted().unwrap();
        assert_eq!(std::fs::metadata(dir.join(DELETED)).unwrap().len(), 2 * 8);
        let again = SealedSegment::open(&dir).unwrap();
        assert!(again.deleted.get(0));
        assert_eq!(again.live(), s.live());
        // Its structure is still checked where that is free.
        let b = std::fs::read(dir.join(VECTORS)).unwrap();
        std::fs::write(dir.join(VECTORS), &b[..b.len() - 1]).unwrap();
        expect_corrupt(&dir, VECTORS, "format 1, truncated");
    }

    #[test]
    fn chunked_crc_equals_the_plain_crc() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 63, 64, 65, 128, 200, 1000] {
            assert_eq!(
                crc32_chunked(&bytes[..len], 64),
                crc32fast::hash(&bytes[..len]),
                "{len} bytes"
            );
        }
        assert_eq!(crc32(&bytes), crc32fast::hash(&bytes));
    }

    #[test]
    fn file_sums_read_in_chunks_equal_the_plain_crc() {
        let t = tempfile::tempdir().unwrap();
        // 0, 1 byte, one chunk exactly, and three chunks (the last short).
        for len in [0, 1, CRC_CHUNK, 2 * CRC_CHUNK + 12_345] {
            let bytes: Vec<u8> = (0..len as u64).map(|i| (i * 31 % 251) as u8).collect();
            let path = t.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            let got = file_sum(&path).unwrap();
            assert_eq!(got.bytes, len as u64);
            assert_eq!(got.crc32, crc32fast::hash(&bytes), "{len} bytes");
        }
    }

    /// The hook sees the same vectors whether the caller hands them over
    /// or the writer maps the file it streamed, and both ways write the
    /// same files.
    #[test]
    fn streamed_segments_match_with_and_without_caller_vectors() {
        let t = tempfile::tempdir().unwrap();
        let pts = sample(300);
        let all: Vec<f32> = pts.iter().flat_map(|p| p.1.clone()).collect();
        let mut seen = Vec::new();
        for (id, given) in [(1, Some(all.as_slice())), (2, None)] {
            let mut got = Vec::new();
            let dir = SealedSegment::write(
                t.path(),
                id,
                DIM,
                refs(&stored(&pts)),
                Some(&Tokenizer::new(None)),
                given,
                |_, v| {
                    got = v.to_vec();
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got, all, "segment {id}: the hook's vectors");
            let s = SealedSegment::open(&dir).unwrap();
            assert_eq!(contents(&s), pts);
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name() != META)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            files.sort();
            seen.push(files);
        }
        assert_eq!(seen[0], seen[1]);
    }

    /// Checksum throughput and the open time of a large segment:
    /// `SEGMENT_BENCH_POINTS=1000000 cargo test -p indexing-service --lib
    /// checksum_cost -- --ignored --nocapture` (384 dims; writes about
    /// 1.5 GB under the temp dir).
    #[test]
    #[ignore]
    fn checksum_cost() {
        let n: usize = std::env::var("SEGMENT_BENCH_POINTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let dim = 384;
        let buf: Vec<u8> = (0..n * dim * 4)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        let gb = buf.len() as f64 / 1e9;
        for _ in 0..2 {
            let t = Instant::now();
            let one = crc32fast::hash(&buf);
            let s1 = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let all = crc32(&buf);
            let sp = t.elapsed().as_secs_f64();
            assert_eq!(one, all);
            eprintln!(
                "CRC-32 of {gb:.2} GB: one thread {:.1} GB/s ({s1:.3} s), chunked on {} threads {:.1} GB/s ({sp:.3} s)",
                gb / s1,
                rayon::current_num_threads(),
                gb / sp
            );
        }
        drop(buf);
        let t = tempfile::tempdir().unwrap();
        let vectors: Vec<f32> = (0..n * dim).map(|i| (i % 997) as f32 * 0.001).collect();
        let ids: Vec<PointId> = (0..n as u64).map(PointId::Num).collect();
        let w = Instant::now();
        let dir = SealedSegment::write(
            t.path(),
            1,
            dim,
            (0..n).map(|i| PointRef {
                id: &ids[i],
                vector: &vectors[i * dim..(i + 1) * dim],
                payload: &[],
                content: &[],
                deleted: false,
            }),
            None,
            Some(&vectors),
            |_, _| Ok(()),
        )
        .unwrap();
        eprintln!("wrote {n} × {dim} in {:.2} s", w.elapsed().as_secs_f64());
        drop(vectors);
        for _ in 0..2 {
            let o = Instant::now();
            let s = SealedSegment::open(&dir).unwrap();
            eprintln!(
                "open (page cache warm, all files verified): {:.3} s for {:.2} GB",
                o.elapsed().as_secs_f64(),
                s.disk_bytes() as f64 / 1e9
            );
        }
    }
}
