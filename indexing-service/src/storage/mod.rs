//! The storage layer: files and their formats. Nothing here knows about
//! collections' semantics; `collection` composes these pieces.
//!
//! | module | what it owns |
//! |---|---|
//! | `fsutil` | `atomic_write` (temp file → write → fsync → rename → fsync dir) and the data-dir lock |
//! | `codec` | the binary encoding of WAL operations and point ids |
//! | `wal` | the write-ahead log: framed records, group commit, tail repair, truncation |
//! | `segment` | the mutable (appendable) segment in memory and the sealed, memory-mapped segment on disk |

pub mod codec;
pub mod fsutil;
pub mod segment;
pub mod wal;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt data in {path}: {message}")]
    Corrupt {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("data directory {0} is locked by another process")]
    Locked(std::path::PathBuf),
    #[error("unsupported format version {found} in {path} (this build reads {expected})")]
    Version {
        path: std::path::PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the write-ahead log failed ({0}); writes are refused until the service restarts")]
    Poisoned(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

pub(crate) fn io_err(
    path: impl Into<std::path::PathBuf>,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io { path, source }
}
