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

impl Wal {
    /// Opens or creates the log in `dir` and hands every record with
    /// `op > after` to `apply`, in order. Repairs a torn tail.
    pub fn open(
        dir: &Path,
        after: u64,
        mut apply: impl FnMut(u64, Op) -> Result<()>,
    ) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
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
