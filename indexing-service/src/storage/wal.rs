//! The write-ahead log.
//!
//! Files `wal/<first_op, 20 digits>.wal`, each a sequence of records:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | len | `u32` LE | length of `body` |
//! | crc | `u32` LE | CRC32 of `op` bytes followed by `body` |
//! | op | `u64` LE | operation number, strictly increasing across files |
//! | body | `len` bytes | an operation (`codec`) |
//!
//! Invariants:
//! - A record is acknowledged only after `sync_to(op)` returned (with
//!   `fsync: always`); concurrent writers share one fsync (group commit:
//!   whoever fsyncs covers every record written before the fsync began).
//! - On open, only a tail that is really torn is cut off: an incomplete or
//!   checksum-failing record of the newest file after which no valid record
//!   follows (a crash in the middle of an append leaves exactly that). A bad
//!   record followed by a valid one is damage, not a torn write: opening
//!   fails with `Corrupt` naming the file and byte offset, and nothing is
//!   truncated. Damage in an older file is always an error. Cutting damage
//!   would silently drop acknowledged writes.
//! - After a failed write or fsync the log is poisoned and refuses appends
//!   (`Poisoned`, whose message carries the OS reason but no path): the page
//!   cache may have dropped the data, so pretending would lie. The first
//!   failing append answers `Poisoned` too.
//!
//! Locks: `sync_lock` (level `WalSync`) before `inner` (`WalFile`); the
//! poison flag is a leaf. Callers may hold the collection's `state` lock
//! while appending (see `crate::lock_order`).
//! - `truncate_through(p)` deletes only whole files whose every record has
//!   `op <= p`; the newest file is never deleted.
//! - Op numbers are consecutive: each append takes the last op + 1, and a
//!   reopened log continues after the last op it holds (or the checkpoint).
//!   So the file holding op `n` is the one with the largest first op `<= n`.
//!
//! Readers ([`WalTail`], a follower's view of a log another process
//! appends to) only read: they never repair, truncate or create anything.
//! They stop before an incomplete or checksum-failing record (a record
//! still being written, or a torn tail the next writer will cut) and read
//! it again on the next poll; rotation and truncation behind them are
//! followed by file name.

use super::codec::{decode_op, Op};
use super::{io_err, Result, StorageError};
use crate::lock_order::{Level, OrderedMutex};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const HEADER: usize = 16;
/// Larger records are refused (and treated as corruption when read).
pub const MAX_RECORD: usize = 512 * 1024 * 1024;
/// A new file is started past this size.
const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

struct Inner {
    file: Arc<File>,
    size: u64,
    next_op: u64,
    written_op: u64,
    /// (first op, path), oldest first; the last is the one appended to.
    files: Vec<(u64, PathBuf)>,
    buf: Vec<u8>,
}

pub struct Wal {
    dir: PathBuf,
    inner: OrderedMutex<Inner>,
    sync_lock: OrderedMutex<()>,
    synced_op: AtomicU64,
    poisoned: Mutex<Option<String>>,
}

fn file_name(first_op: u64) -> String {
    format!("{first_op:020}.wal")
}

/// The log's files as (first op, path), oldest first.
fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let first = name.strip_suffix(".wal")?.parse::<u64>().ok()?;
            Some((first, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One whole, checksum-valid record at the start of `rest`: (op, body,
/// bytes taken). None when the record is incomplete or fails its checksum.
fn whole_record(rest: &[u8]) -> Option<(u64, &[u8], usize)> {
    if rest.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if len > MAX_RECORD || rest.len() < HEADER + len {
        return None;
    }
    if crc32fast::hash(&rest[8..HEADER + len]) != crc {
        return None;
    }
    let op = u64::from_le_bytes(rest[8..16].try_into().unwrap());
    Some((op, &rest[HEADER..HEADER + len], HEADER + len))
}

/// What one [`WalTail::poll`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailPoll {
    /// Records handed to `apply`.
    pub applied: usize,
    /// The next op is no longer in the log (the writer checkpointed and
    /// truncated past it, or the log was replaced): the reader must start
    /// again from the manifest.
    pub behind: bool,
    /// Modification time of the file the last record came from: an upper
    /// bound on when that record was written (follower lag).
    pub written_at: Option<std::time::SystemTime>,
}

/// A read-only follower of a log that another process appends to: reads
/// records from an op number on, across rotation, and waits at a record
/// that is not whole yet. Never writes to the log's directory.
#[derive(Debug)]
pub struct WalTail {
    dir: PathBuf,
    next_op: u64,
    /// (first op, path, byte position) of the file being read.
    at: Option<(u64, PathBuf, u64)>,
}

impl WalTail {
    /// A reader of `dir` whose next record is the one after `after`.
    pub fn new(dir: &Path, after: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            next_op: after + 1,
            at: None,
        }
    }

    /// The last op handed to `apply` (or the starting point).
    pub fn last_op(&self) -> u64 {
        self.next_op - 1
    }

    /// Hands every whole record from the next op on to `apply`, in order,
    /// then returns. Errors: `Io` reading the directory or a file (a file
    /// removed meanwhile is not an error: the reader looks again), `Corrupt`
    /// when a record does not decode or `apply` fails.
    pub fn poll(&mut self, mut apply: impl FnMut(u64, Op) -> Result<()>) -> Result<TailPoll> {
        let mut out = TailPoll::default();
        let mut files = list_files(&self.dir)?;
        loop {
            // The file holding next_op: the newest whose first op <= it.
            let Some(idx) = files.iter().rposition(|(f, _)| *f <= self.next_op) else {
                // Every file starts after next_op: the ops before are gone.
                out.behind = !files.is_empty();
                return Ok(out);
            };
            let (first, path) = files[idx].clone();
            let pos = match &self.at {
                Some((f, p, pos)) if *f == first && *p == path => *pos,
                _ => 0,
            };
            let (data, mtime) = match read_from(&path, pos) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Truncated behind us: look at the directory again.
                    self.at = None;
                    files = list_files(&self.dir)?;
                    if files.iter().all(|(_, p)| *p != path) {
                        continue;
                    }
                    return Ok(out);
                }
                Err(e) => return Err(io_err(&path)(e)),
            };
            let mut used = 0usize;
            let mut stuck = false;
            while used < data.len() {
                let Some((op, body, n)) = whole_record(&data[used..]) else {
                    stuck = true;
                    break;
                };
                if op > self.next_op {
                    // A hole: the ops in between are gone.
                    out.behind = true;
                    self.at = Some((first, path, pos + used as u64));
                    return Ok(out);
                }
                if op == self.next_op {
                    let decoded = decode_op(body).map_err(|m| StorageError::Corrupt {
                        path: path.clone(),
                        message: format!("{m} at byte {}", pos + used as u64),
                    })?;
                    apply(op, decoded)?;
                    self.next_op += 1;
                    out.applied += 1;
                    out.written_at = mtime;
                }
                used += n;
            }
            self.at = Some((first, path.clone(), pos + used as u64));
            // A file is complete once a newer one exists (rotation syncs
            // and closes it first), and the listing predates the read.
            match files.get(idx + 1).map(|(f, _)| *f) {
                Some(f) if !stuck && f <= self.next_op => continue,
                Some(_) if !stuck => {
                    // Read to its end, yet the next file starts later.
                    out.behind = true;
                    return Ok(out);
                }
                _ => return Ok(out),
            }
        }
    }

    /// The op of the last whole record in the log, without applying
    /// anything (how far the writer has got). Errors: `Io`.
    pub fn peek_last_op(&self) -> Result<u64> {
        let files = list_files(&self.dir)?;
        let Some((first, path)) = files.last() else {
            return Ok(self.last_op());
        };
        let pos = match &self.at {
            Some((f, p, pos)) if f == first && p == path => *pos,
            _ => 0,
        };
        let data = match read_from(path, pos) {
            Ok((d, _)) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self.last_op()),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut last = self.last_op().max(first.saturating_sub(1));
        let mut used = 0;
        while let Some((op, _, n)) = whole_record(&data[used..]) {
            last = last.max(op);
            used += n;
        }
        Ok(last)
    }
}

/// The bytes of `path` from `pos` on, and the file's modification time.
fn read_from(path: &Path, pos: u64) -> std::io::Result<(Vec<u8>, Option<std::time::SystemTime>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if meta.len() <= pos {
        return Ok((Vec::new(), meta.modified().ok()));
    }
    f.seek(SeekFrom::Start(pos))?;
    let mut buf = Vec::with_capacity((meta.len() - pos) as usize);
    f.read_to_end(&mut buf)?;
    Ok((buf, meta.modified().ok()))
}

impl Wal {
    /// Opens or creates the log in `dir` and hands every record with
    /// `op > after` to `apply`, in order. Repairs a torn tail.
    pub fn open(
        dir: &Path,
        after: u64,
        mut apply: impl FnMut(u64, Op) -> Result<()>,
    ) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut files = list_files(dir)?;
        let mut last_op = after;
        let mut prev_op = 0u64;
        let n = files.len();
        for (i, (_, path)) in files.iter().enumerate() {
            let data = std::fs::read(path).map_err(io_err(path))?;
            let mut pos = 0usize;
            let newest = i + 1 == n;
            while pos < data.len() {
                let bad = |msg: &str| StorageError::Corrupt {
                    path: path.clone(),
                    message: format!("{msg} at byte {pos}"),
                };
                let rest = &data[pos..];
                let torn = if rest.len() < HEADER {
                    Some("torn header")
                } else {
                    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
                    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
                    if len > MAX_RECORD {
                        Some("impossible record length")
                    } else if rest.len() < HEADER + len {
                        Some("torn record")
                    } else if crc32fast::hash(&rest[8..HEADER + len]) != crc {
                        Some("checksum mismatch")
                    } else {
                        None
                    }
                };
                if let Some(why) = torn {
                    if !newest {
                        return Err(bad(why));
                    }
                    if let Some((at, op)) = next_valid_record(&data, pos, prev_op) {
                        return Err(StorageError::Corrupt {
                            path: path.clone(),
                            message: format!(
                                "damaged record at byte {pos} ({why}); a valid record (op {op}) \
                                 follows at byte {at}, so this is damage, not a torn write; \
                                 the log was left as it is"
                            ),
                        });
                    }
                    tracing::warn!(
                        "{}: {why} at byte {pos}; cutting the tail off",
                        path.display()
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    f.set_len(pos as u64).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                    break;
                }
                let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
                let op = u64::from_le_bytes(rest[8..16].try_into().unwrap());
                if op <= prev_op {
                    return Err(bad(&format!("op {op} after {prev_op}")));
                }
                prev_op = op;
                if op > after {
                    let decoded = decode_op(&rest[HEADER..HEADER + len]).map_err(|m| bad(&m))?;
                    apply(op, decoded)?;
                }
                last_op = last_op.max(op);
                pos += HEADER + len;
            }
        }
        let next_op = last_op + 1;
        if files.is_empty() {
            let p = dir.join(file_name(next_op));
            File::create(&p).map_err(io_err(&p))?;
            super::fsutil::sync_dir(dir)?;
            files.push((next_op, p));
        }
        let cur = files.last().unwrap().1.clone();
        let file = OpenOptions::new()
            .append(true)
            .open(&cur)
            .map_err(io_err(&cur))?;
        let size = file.metadata().map_err(io_err(&cur))?.len();
        Ok(Wal {
            dir: dir.to_path_buf(),
            inner: OrderedMutex::new(
                Level::WalFile,
                Inner {
                    file: Arc::new(file),
                    size,
                    next_op,
                    written_op: last_op,
                    files,
                    buf: Vec::new(),
                },
            ),
            sync_lock: OrderedMutex::new(Level::WalSync, ()),
            synced_op: AtomicU64::new(last_op),
            poisoned: Mutex::new(None),
        })
    }

    fn check(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(m) => Err(StorageError::Poisoned(m.clone())),
            None => Ok(()),
        }
    }

    /// Poisons the log and returns the error callers see: `Poisoned` with
    /// the OS reason (no path; the log line has the whole error).
    fn poison(&self, e: StorageError) -> StorageError {
        tracing::error!("WAL failure, refusing further writes: {e}");
        let reason = match &e {
            StorageError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        *self.poisoned.lock() = Some(reason.clone());
        StorageError::Poisoned(reason)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.lock().is_some()
    }

    /// Appends one record and returns its op number. Not durable until
    /// `sync_to(op)`. Callers serialise appends with applying (the
    /// collection's write lock) so WAL order is apply order.
    pub fn append(&self, body: &[u8]) -> Result<u64> {
        self.check()?;
        if body.len() > MAX_RECORD {
            return Err(StorageError::Corrupt {
                path: self.dir.clone(),
                message: "operation too large for one WAL record".into(),
            });
        }
        let mut g = self.inner.lock();
        if g.size > ROTATE_BYTES {
            self.rotate(&mut g)?;
        }
        let op = g.next_op;
        let mut buf = std::mem::take(&mut g.buf);
        buf.clear();
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&op.to_le_bytes());
        buf.extend_from_slice(body);
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let path = g.files.last().unwrap().1.clone();
        let res = (&*g.file).write_all(&buf);
        g.buf = buf;
        if let Err(e) = res {
            return Err(self.poison(io_err(path)(e)));
        }
        g.size += (HEADER + body.len()) as u64;
        g.next_op = op + 1;
        g.written_op = op;
        Ok(op)
    }

    /// Makes every record up to `op` durable. Concurrent callers share one
    /// fsync.
    pub fn sync_to(&self, op: u64) -> Result<()> {
        if self.synced_op.load(Ordering::Acquire) >= op {
            return Ok(());
        }
        let _g = self.sync_lock.lock();
        if self.synced_op.load(Ordering::Acquire) >= op {
            return Ok(());
        }
        self.check()?;
        let (file, target, path) = {
            let i = self.inner.lock();
            (
                i.file.clone(),
                i.written_op,
                i.files.last().unwrap().1.clone(),
            )
        };
        if let Err(e) = file.sync_data() {
            return Err(self.poison(io_err(path)(e)));
        }
        self.synced_op.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs everything written so far.
    pub fn sync_all(&self) -> Result<()> {
        let op = self.inner.lock().written_op;
        self.sync_to(op)
    }

    fn rotate(&self, g: &mut Inner) -> Result<()> {
        let old = g.files.last().unwrap().1.clone();
        if let Err(e) = g.file.sync_data() {
            return Err(self.poison(io_err(old)(e)));
        }
        self.synced_op.fetch_max(g.written_op, Ordering::AcqRel);
        let p = self.dir.join(file_name(g.next_op));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| self.poison(io_err(&p)(e)))?;
        if let Err(e) = super::fsutil::sync_dir(&self.dir) {
            return Err(self.poison(e));
        }
        g.file = Arc::new(f);
        g.size = 0;
        g.files.push((g.next_op, p));
        Ok(())
    }

    /// Deletes the files whose records all have `op <= through`. Starts a
    /// new file first when the current one holds such records.
    pub fn truncate_through(&self, through: u64) -> Result<()> {
        let mut g = self.inner.lock();
        if g.size > 0 && g.written_op <= through {
            self.rotate(&mut g)?;
        }
        let mut keep_from = 0;
        for i in 0..g.files.len().saturating_sub(1) {
            // Every op in file i is < first op of file i+1.
            if g.files[i + 1].0 <= through + 1 {
                let p = &g.files[i].1;
                std::fs::remove_file(p).map_err(io_err(p))?;
                keep_from = i + 1;
            } else {
                break;
            }
        }
        g.files.drain(..keep_from);
        Ok(())
    }

    /// The number of the last op appended (durable or not).
    pub fn last_op(&self) -> u64 {
        self.inner.lock().written_op
    }

    /// Bytes in all live WAL files.
    pub fn size_bytes(&self) -> u64 {
        let g = self.inner.lock();
        g.files
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The first position after `from` where a whole record with a valid
/// checksum and an op number after `prev_op` starts, with that op. Used to
/// tell a torn tail (nothing valid follows) from damage (something does).
/// Cheap: the op number must be plausible (each record takes at least
/// `HEADER` bytes) before a checksum is computed.
fn next_valid_record(data: &[u8], from: usize, prev_op: u64) -> Option<(usize, u64)> {
    let mut p = from + 1;
    while p + HEADER <= data.len() {
        let len = u32::from_le_bytes(data[p..p + 4].try_into().unwrap()) as usize;
        let op = u64::from_le_bytes(data[p + 8..p + 16].try_into().unwrap());
        let max_op = prev_op + 1 + ((p - from) / HEADER) as u64;
        if len <= MAX_RECORD && p + HEADER + len <= data.len() && op > prev_op && op <= max_op {
            let crc = u32::from_le_bytes(data[p + 4..p + 8].try_into().unwrap());
            if crc32fast::hash(&data[p + 8..p + HEADER + len]) == crc {
                return Some((p, op));
            }
        }
        p += 1;
    }
    None
}
