//! What snapshots need from collections: a consistent copy of one
//! collection's files while writes go on ([`Collection::freeze_into`]), the
//! switch of a restored collection directory into place
//! ([`Storage::replace_with`]), and the clean-up of what an interrupted
//! snapshot or restore left behind ([`recover_leftovers`], run by the
//! writer at open).
//!
//! Consistency of a frozen copy at operation `L`:
//! - `checkpoint` is held for the whole copy, so the worker neither swaps
//!   segments, rewrites a deleted bitmap, writes the manifest nor cuts the
//!   WAL meanwhile: the sealed segments are exactly those the manifest
//!   lists, and the WAL keeps every op after its `persisted_op` `P`.
//! - `L` is the WAL's last op read under `state` (appends happen under its
//!   write lock). Sealed segment files never change; `deleted.bin` is
//!   replaced by rename at checkpoints only, and the one on disk holds the
//!   deletes of ops `<= P` and perhaps some later ones, all `<= L` (it was
//!   written before `L` was read). WAL ops are blind writes, so replaying
//!   `P+1..=L` over it gives the state at `L` exactly.
//! - The copy holds hard links to the segment files (copies where the
//!   file system refuses links), the manifest, `collection.json`, and a
//!   new WAL with exactly the ops `P+1..=L`, re-encoded.
//!
//! Writes are never blocked: only the background worker waits for the copy.
//!
//! Restore switch (under the name's admin lock): the open collection is
//! closed, its directory renamed to `.replaced-<unique>-<name>`, the staged
//! directory renamed to `<name>`, then the old one is removed. At open,
//! [`recover_leftovers`] finishes an interrupted switch: a `.replaced-`
//! directory whose name has no collection is renamed back (the restore did
//! not happen), otherwise it is removed (the restore had happened). Staged
//! directories are `.creating-` ones, which the open removes anyway.

use super::manager::unique;
use super::{Collection, CollectionConfig, CollectionError, Manifest, Result, Storage};
use crate::storage::codec::encode_op;
use crate::storage::fsutil::{sync_dir, write_synced};
use crate::storage::io_err;
use crate::storage::segment::SealedSegment;
use crate::storage::wal::{Wal, WalTail};
use crate::storage::StorageError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory under the data directory that holds snapshot files:
/// `<data_dir>/snapshots/<collection>/*.snapshot` for collections,
/// `<data_dir>/snapshots/*.snapshot` for the whole storage.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Environment variable of the test hook [`test_pause`]: `stage:ms`
/// pairs separated by commas (`archive:3000,switch:3000`). Unset in
/// production; tests use it to SIGKILL a process at a chosen moment.
pub const TEST_PAUSE_ENV: &str = "INDEXING_SNAPSHOT_TEST_PAUSE";

/// Sleeps for the milliseconds [`TEST_PAUSE_ENV`] gives `stage`, if any
/// (stages: `archive`, half-way through writing a snapshot file;
/// `extract`, after a restore verified its files; `switch`, between moving
/// the old collection aside and moving the restored one in).
pub fn test_pause(stage: &str) {
    let Ok(v) = std::env::var(TEST_PAUSE_ENV) else {
        return;
    };
    for part in v.split(',') {
        if let Some((s, ms)) = part.split_once(':') {
            if s.trim() == stage {
                if let Ok(ms) = ms.trim().parse::<u64>() {
                    tracing::warn!("test pause at snapshot stage `{stage}` for {ms} ms");
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
        }
    }
}

/// What [`Collection::freeze_into`] copied.
#[derive(Debug, Clone)]
pub struct FrozenView {
    pub config: CollectionConfig,
    /// The last op the copy holds (`L`).
    pub operation: u64,
    /// The manifest's `persisted_op` (`P`): the copy's WAL holds `P+1..=L`.
    pub persisted_op: u64,
}

/// Hard-links `src` to `dst`, or copies it when the file system refuses.
fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map_err(io_err(dst))?;
    std::fs::File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dst))?;
    Ok(())
}

impl Collection {
    /// Writes a consistent copy of this collection at its last op into
    /// `stage` (absent or empty, on the data directory's file system):
    /// `collection.json`, `manifest.json`, `segments/<id>/` (hard links),
    /// `wal/` (ops `persisted_op+1..=operation`), every file and directory
    /// fsynced. See the module docs for why the copy is consistent.
    /// Errors: `ReadOnly` on a follower, storage errors.
    pub fn freeze_into(&self, stage: &Path) -> Result<FrozenView> {
        let wal = self.writable()?;
        let m = self.inner.checkpoint.lock();
        let last = {
            let _st = self.inner.state.read();
            wal.last_op()
        };
        let seg_out = stage.join("segments");
        std::fs::create_dir_all(&seg_out).map_err(io_err(&seg_out))?;
        for &sid in &m.segments {
            let name = SealedSegment::dir_name(sid);
            let src = self.inner.segments_dir().join(&name);
            let dst = seg_out.join(&name);
            std::fs::create_dir_all(&dst).map_err(io_err(&dst))?;
            for e in std::fs::read_dir(&src).map_err(io_err(&src))? {
                let e = e.map_err(io_err(&src))?;
                let file = e.file_name().to_string_lossy().to_string();
                if file.starts_with('.') || !e.file_type().map_err(io_err(&src))?.is_file() {
                    continue;
                }
                link_or_copy(&e.path(), &dst.join(&file))?;
            }
            sync_dir(&dst)?;
        }
        sync_dir(&seg_out)?;
        let manifest = Manifest {
            format_version: m.format_version.max(super::COLLECTION_FORMAT_VERSION),
            segments: m.segments.clone(),
            persisted_op: m.persisted_op,
            next_segment_id: m.next_segment_id,
            payload_schema: m.payload_schema.clone(),
        };
        write_synced(
            &stage.join("manifest.json"),
            &serde_json::to_vec_pretty(&manifest).expect("JSON"),
        )?;
        write_synced(
            &stage.join("collection.json"),
            &serde_json::to_vec_pretty(&self.inner.config).expect("JSON"),
        )?;
        let out = Wal::open(&stage.join("wal"), m.persisted_op, |_, _| Ok(()))?;
        let mut tail = WalTail::new(&self.inner.dir.join("wal"), m.persisted_op);
        let mut buf = Vec::new();
        let mut copied = m.persisted_op;
        let polled = tail.poll(|op, o| {
            if op <= last {
                buf.clear();
                encode_op(&o, &mut buf);
                let n = out.append(&buf)?;
                debug_assert_eq!(n, op, "the copy keeps op numbers");
                copied = op;
            }
            Ok(())
        })?;
        if polled.behind || copied < last {
            return Err(StorageError::Corrupt {
                path: self.inner.dir.join("wal"),
                message: format!(
                    "the log holds ops through {copied} only; the snapshot needs {last}"
                ),
            }
            .into());
        }
        out.sync_all()?;
        drop(out);
        drop(m);
        sync_dir(stage)?;
        Ok(FrozenView {
            config: self.inner.config.clone(),
            operation: last,
            persisted_op: manifest.persisted_op,
        })
    }
}

impl Storage {
    /// `<data_dir>/snapshots`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.data_dir().join(SNAPSHOTS_DIR)
    }

    /// A fresh directory name to stage a restore of `name` in (under
    /// `collections/`, so the switch is a rename; removed at the next open
    /// when left behind).
    pub fn restore_stage(&self, name: &str) -> PathBuf {
        self.root.join(format!(".creating-{name}-{}", unique()))
    }

    /// Makes the complete collection directory `staged` (made by a
    /// restore, with `collection.json` naming `name`) the collection
    /// `name`, replacing the one there (open, damaged or absent). Crash-safe
    /// (see the module docs). Requests that race with the switch may see
    /// `NotFound` for a moment; writes to the old collection that race
    /// with it are replaced with the rest of it. Errors: `ReadOnly` on a
    /// follower, `InvalidName`, the open of the restored collection fails
    /// (the old one is put back and served again), storage errors.
    pub fn replace_with(&self, name: &str, staged: &Path) -> Result<Arc<Collection>> {
        self.writable()?;
        super::validate_name(name)?;
        let admin = self.admin_lock(name);
        let _admin = admin.lock();
        let dir = self.root.join(name);
        let old = self.collections.write().remove(name);
        if let Some(c) = old {
            c.close();
        }
        let aside = self.root.join(format!(".replaced-{}-{name}", unique()));
        let had_old = dir.exists();
        if had_old {
            std::fs::rename(&dir, &aside).map_err(io_err(&aside))?;
            sync_dir(&self.root)?;
        }
        test_pause("switch");
        let put_back = |err: CollectionError| -> CollectionError {
            if had_old {
                if dir.exists() {
                    let trash = self.root.join(format!(".trash-{name}-{}", unique()));
                    let _ = std::fs::rename(&dir, &trash);
                    let _ = std::fs::remove_dir_all(&trash);
                }
                if std::fs::rename(&aside, &dir).is_ok() {
                    let _ = sync_dir(&self.root);
                    self.reopen_after_failed_switch(name, &dir);
                }
            }
            err
        };
        if let Err(e) = std::fs::rename(staged, &dir) {
            return Err(put_back(io_err(&dir)(e).into()));
        }
        if let Err(e) = sync_dir(&self.root) {
            return Err(put_back(e.into()));
        }
        let c = match Collection::open(&dir) {
            Ok(c) => Arc::new(c),
            Err(e) => return Err(put_back(e)),
        };
        self.damaged.lock().remove(name);
        self.collections.write().insert(name.to_string(), c.clone());
        if had_old {
            let _ = std::fs::remove_dir_all(&aside);
        }
        Ok(c)
    }

    /// Serves the collection at `dir` again after a switch was undone.
    fn reopen_after_failed_switch(&self, name: &str, dir: &Path) {
        match Collection::open(dir) {
            Ok(c) => {
                self.collections
                    .write()
                    .insert(name.to_string(), Arc::new(c));
            }
            Err(err) => {
                self.damaged
                    .lock()
                    .insert(name.to_string(), err.to_string());
            }
        }
    }
}

/// Finishes what an interrupted restore or snapshot left in the data
/// directory whose `collections/` is `root` (the writer, at open): a
/// `.replaced-<unique>-<name>` directory goes back to `<name>` when that
/// has no collection, else is removed; `snapshots/` loses its staging
/// directories (`.stage-*`), unfinished files (`.*.tmp`, uploads) and
/// checksum files without their snapshot. Failures are logged, never fatal.
pub(super) fn recover_leftovers(root: &Path) {
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().to_string();
            let Some(rest) = file.strip_prefix(".replaced-") else {
                continue;
            };
            // `<pid>-<nanos>-<n>-<name>`
            let Some(name) = rest.splitn(4, '-').nth(3) else {
                continue;
            };
            if super::validate_name(name).is_err() {
                continue;
            }
            let target = root.join(name);
            if target.join("collection.json").exists() {
                let _ = std::fs::remove_dir_all(e.path());
            } else {
                let _ = std::fs::remove_dir_all(&target);
                match std::fs::rename(e.path(), &target) {
                    Ok(()) => tracing::warn!(
                        collection = %name,
                        "an interrupted restore was undone: the collection is as before it"
                    ),
                    Err(err) => tracing::error!(
                        collection = %name,
                        "cannot undo an interrupted restore: {err}"
                    ),
                }
                let _ = sync_dir(root);
            }
        }
    }
    let Some(data_dir) = root.parent() else {
        return;
    };
    let snaps = data_dir.join(SNAPSHOTS_DIR);
    clean_snapshot_dir(&snaps);
    if let Ok(rd) = std::fs::read_dir(&snaps) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && !e.file_name().to_string_lossy().starts_with('.')
            {
                clean_snapshot_dir(&e.path());
            }
        }
    }
}

/// Removes the leftovers of one snapshot directory (see
/// [`recover_leftovers`]).
fn clean_snapshot_dir(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if file.starts_with(".stage-") {
            let _ = std::fs::remove_dir_all(&path);
        } else if file.starts_with('.') && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        } else if let Some(snap) = file.strip_suffix(".sha256") {
            if !dir.join(snap).exists() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
