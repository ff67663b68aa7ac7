//! File-system hygiene: atomic replacement of small files and the exclusive
//! lock on the data directory (whoever holds it is the writer).

use super::{io_err, Result, StorageError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically: a reader (or a restart after a
/// crash) sees the old content or the new, never a mix. Writes a temp file
/// in the same directory, fsyncs it, renames it over `path`, fsyncs the dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic_write needs a parent directory");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("file name").to_string_lossy()
    ));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// fsyncs a directory so renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes a whole new file and fsyncs it (for files in a directory that is
/// renamed into place afterwards).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// An exclusive advisory lock (`flock`) on `<dir>/.lock`, held for the life
/// of the value. A second process (or a second open in this one) fails at
/// once. The kernel releases it when the holder dies, even by SIGKILL: that
/// is how a follower learns that the writer is gone.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

impl DirLock {
    /// Takes the lock or fails with `Locked` when another holder has it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::try_acquire(dir)?.ok_or_else(|| StorageError::Locked(dir.to_path_buf()))
    }

    /// Takes the lock if it is free: `Ok(None)` when another holder has it.
    /// An existing lock file is opened read-only (`flock` needs no write
    /// access), so a process that does not get the lock has written
    /// nothing; the file is created (with the directory) only when missing.
    pub fn try_acquire(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(".lock");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file, path })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }
}
