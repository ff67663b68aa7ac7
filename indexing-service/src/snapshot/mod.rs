//! Snapshots: files that hold a consistent copy of one collection or of
//! every collection, made while writes go on, listed, downloaded, deleted,
//! and restored (format: [`format`], `docs/SNAPSHOTS.md`).
//!
//! Files live in `<data_dir>/snapshots/<collection>/` (collection
//! snapshots) and `<data_dir>/snapshots/` (storage snapshots), each
//! `<name>.snapshot` beside `<name>.snapshot.sha256` (its SHA-256 in
//! `sha256sum` format). Any replica that sees the data directory lists and
//! serves them; only the writer makes, deletes and restores.
//!
//! Crash safety:
//! - Create: the collection is frozen into `.stage-<unique>/` (hard links,
//!   see `Collection::freeze_into`), the archive written to
//!   `.<name>.snapshot.tmp` and fsynced, the checksum file written
//!   atomically, then the archive renamed to its name and the directory
//!   fsynced. Only `*.snapshot` files are listed, so a kill at any moment
//!   lists nothing half-made; the writer's next open removes the leftovers.
//! - Restore: the file is verified while it is extracted into a staging
//!   directory under `collections/`; only a complete, verified copy is
//!   switched in (`Storage::replace_with`), so a damaged file or a kill
//!   before the switch leaves the collection as it was.

pub mod format;

use crate::collection::{test_pause, CollectionError, Storage, SNAPSHOTS_DIR};
use crate::storage::StorageError;
use format::{CollectionEntry, SnapshotKind, SnapshotManifest};
use shared::wire::snapshot::{RecoverSnapshotResponse, SnapshotDescription};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors of snapshot work.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot of that name (404).
    #[error("snapshot `{0}` not found")]
    NotFound(String),
    /// The file is damaged, truncated, not a snapshot, or not the
    /// checksum asked for; nothing was restored (422 `snapshot_invalid`).
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// The request cannot be served as asked (422 `invalid_request`).
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("I/O error on {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Which snapshots: of one collection, or of the whole storage.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Collection(&'a str),
    Storage,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io(path.to_path_buf(), e)
}

/// A unique suffix for staging and temporary names.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `name` can be a snapshot file name: `A-Z a-z 0-9 _ - .`, not
/// starting with a dot, ending in `.snapshot`, at most 200 bytes.
pub fn valid_snapshot_name(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".snapshot")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `s` is 64 hex digits.
fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The snapshots of one storage (cheap: paths only).
pub struct Snapshots<'a> {
    storage: &'a Storage,
}

impl<'a> Snapshots<'a> {
    pub fn new(storage: &'a Storage) -> Self {
        Self { storage }
    }

    /// The directory of a scope's snapshot files.
    pub fn dir(&self, scope: Scope) -> PathBuf {
        let root = self.storage.data_dir().join(SNAPSHOTS_DIR);
        match scope {
            Scope::Collection(name) => root.join(name),
            Scope::Storage => root,
        }
    }

    /// The collection must exist (open or damaged) or have a snapshot
    /// directory. Errors: `InvalidName`, `NotFound`.
    fn check_scope(&self, scope: Scope) -> Result<(), SnapshotError> {
        if let Scope::Collection(name) = scope {
            match self.storage.get(name) {
                Ok(_) | Err(CollectionError::Damaged { .. }) => {}
                Err(CollectionError::NotFound(_)) if self.dir(scope).is_dir() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Makes a snapshot of one collection (or, with `Scope::Storage`, of
    /// every open collection, each consistent at its own last op) while
    /// writes go on. Blocking (reads every byte once for checksums and
    /// once into the archive). Errors: `NotFound`, `ReadOnly` on a
    /// follower, storage and I/O errors (nothing is listed then).
    pub fn create(&self, scope: Scope) -> Result<SnapshotDescription, SnapshotError> {
        if !self.storage.is_writer() {
            return Err(
                CollectionError::ReadOnly("snapshots are made by the writer".into()).into(),
            );
        }
        let collections = match scope {
            Scope::Collection(name) => vec![self.storage.get(name)?],
            Scope::Storage => self.storage.list(),
        };
        let dir = self.dir(scope);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let stage = dir.join(format!(".stage-{}", unique()));
        let result = self.create_in(scope, &collections, &dir, &stage);
        let _ = std::fs::remove_dir_all(&stage);
        result
    }

    fn create_in(
        &self,
        scope: Scope,
        collections: &[std::sync::Arc<crate::collection::Collection>],
        dir: &Path,
        stage: &Path,
    ) -> Result<SnapshotDescription, SnapshotError> {
        let now = chrono::Utc::now();
        let created_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut trees = Vec::new();
        for c in collections {
            let tree = stage.join(c.name());
            let view = c.freeze_into(&tree)?;
            trees.push((
                CollectionEntry {
                    name: c.name().to_string(),
                    operation: view.operation,
                    persisted_op: view.persisted_op,
                    config: view.config,
                },
                tree,
            ));
        }
        let (kind, prefix, op) = match scope {
            Scope::Collection(name) => (
                SnapshotKind::Collection,
                name.to_string(),
                trees.first().map(|t| t.0.operation).unwrap_or(0),
            ),
            Scope::Storage => (SnapshotKind::Storage, "storage".to_string(), 0),
        };
        let stamp = now.format("%Y-%m-%d-%H-%M-%S-%3f");
        let mut name = match scope {
            Scope::Collection(_) => format!("{prefix}-{stamp}-{op}.snapshot"),
            Scope::Storage => format!("{prefix}-{stamp}.snapshot"),
        };
        let mut n = 1;
        while dir.join(&name).exists() {
            n += 1;
            name = format!("{}-{n}.snapshot", name.trim_end_matches(".snapshot"));
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let written =
            format::write_archive(out, kind, &created_at, &trees, || test_pause("archive"));
        let (size, checksum) = match written {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(SnapshotError::Io(tmp, e));
            }
        };
        let path = dir.join(&name);
        crate::storage::fsutil::atomic_write(
            &dir.join(format!("{name}.sha256")),
            format!("{checksum}  {name}\n").as_bytes(),
        )?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        crate::storage::fsutil::sync_dir(dir)?;
        tracing::info!(snapshot = %name, bytes = size, "snapshot written");
        let d = self.describe(&path, &name)?;
        debug_assert_eq!((d.size, &d.checksum), (size, &checksum));
        Ok(d)
    }

    /// The description of one snapshot file: size and time from the file,
    /// checksum from its `.sha256` file (computed when that is missing).
    fn describe(&self, path: &Path, name: &str) -> Result<SnapshotDescription, SnapshotError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SnapshotError::NotFound(name.to_string()),
            _ => SnapshotError::Io(path.to_path_buf(), e),
        })?;
        let side = path.with_file_name(format!("{name}.sha256"));
        let checksum = match std::fs::read_to_string(&side) {
            Ok(s) if s.len() >= 64 && valid_sha256(&s[..64]) => s[..64].to_ascii_lowercase(),
            _ => format::sha256_file(path).map_err(io(path))?.0,
        };
        let created: chrono::DateTime<chrono::Utc> = meta
            .modified()
            .map(Into::into)
            .unwrap_or_else(|_| chrono::Utc::now());
        Ok(SnapshotDescription {
            name: name.to_string(),
            creation_time: created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            size: meta.len(),
            checksum,
        })
    }

    /// Every complete snapshot of the scope, oldest first. Errors:
    /// `NotFound` (no such collection and no snapshot directory), I/O.
    pub fn list(&self, scope: Scope) -> Result<Vec<SnapshotDescription>, SnapshotError> {
        self.check_scope(scope)?;
        let dir = self.dir(scope);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::Io(dir, e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !valid_snapshot_name(&name) || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            match self.describe(&e.path(), &name) {
                Ok(d) => out.push(d),
                Err(SnapshotError::NotFound(_)) => {} // deleted meanwhile
                Err(err) => return Err(err),
            }
        }
        out.sort_by(|a, b| {
            (a.creation_time.as_str(), a.name.as_str())
                .cmp(&(b.creation_time.as_str(), b.name.as_str()))
        });
        Ok(out)
    }

    /// The path and description of one snapshot (for a download).
    /// Errors: `NotFound` (also for a name that cannot be a snapshot).
    pub fn find(
        &self,
        scope: Scope,
        snapshot: &str,
    ) -> Result<(PathBuf, SnapshotDescription), SnapshotError> {
        self.check_scope(scope)?;
        if !valid_snapshot_name(snapshot) {
            return Err(SnapshotError::NotFound(
                snapshot.chars().take(200).collect(),
            ));
        }
        let path = self.dir(scope).join(snapshot);
        let d = self.describe(&path, snapshot)?;
        Ok((path, d))
    }

    /// Deletes one snapshot file and its checksum file. Errors:
    /// `NotFound`, `ReadOnly` on a follower, I/O.
    pub fn delete(&self, scope: Scope, snapshot: &str) -> Result<(), SnapshotError> {
        if !self.storage.is_writer() {
            return Err(
                CollectionError::ReadOnly("snapshots are deleted by the writer".into()).into(),
            );
        }
        let (path, _) = self.find(scope, snapshot)?;
        std::fs::remove_file(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SnapshotError::NotFound(snapshot.to_string()),
            _ => SnapshotError::Io(path.clone(), e),
        })?;
        let _ = std::fs::remove_file(path.with_file_name(format!("{snapshot}.sha256")));
        let _ = crate::storage::fsutil::sync_dir(&self.dir(scope));
        Ok(())
    }

    /// Where an upload for collection `name` is written before it is
    /// restored (removed afterwards; a leftover is removed at the writer's
    /// next open).
    pub fn upload_path(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        crate::collection::validate_name(name)?;
        let dir = self.dir(Scope::Collection(name));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir.join(format!(".upload-{}.tmp", unique())))
    }

    /// Resolves a `location`: an absolute path, a `file://` URL, or the
    /// bare name of one of `name`'s snapshots. Errors: `BadRequest` for
    /// other URLs and relative paths, `NotFound` for a bare name that is
    /// not a snapshot.
    pub fn resolve_location(&self, name: &str, location: &str) -> Result<PathBuf, SnapshotError> {
        let loc = location.trim();
        if let Some(p) = loc.strip_prefix("file://") {
            if !p.starts_with('/') {
                return Err(SnapshotError::BadRequest(format!(
                    "`location` `{loc}`: a file URL needs an absolute path (file:///...)"
                )));
            }
            return Ok(PathBuf::from(p));
        }
        if loc.contains("://") {
            return Err(SnapshotError::BadRequest(format!(
                "`location` `{loc}`: only paths on the server and file:// URLs are read; upload \
                 the file to `/collections/{name}/snapshots/upload` instead"
            )));
        }
        if loc.starts_with('/') {
            return Ok(PathBuf::from(loc));
        }
        if valid_snapshot_name(loc) {
            return Ok(self.dir(Scope::Collection(name)).join(loc));
        }
        Err(SnapshotError::BadRequest(format!(
            "`location` `{loc}` is neither an absolute path, a file:// URL nor the name of one \
             of this collection's snapshots"
        )))
    }

    /// Restores collection `name` from the snapshot file at `file`:
    /// checks `checksum` (SHA-256 of the whole file) when given, verifies
    /// and extracts the file into a staging directory, then switches it in
    /// (see the module docs). The snapshot must hold exactly one
    /// collection; it may have had another name. Errors: `Invalid`
    /// (damaged, truncated, wrong checksum, several collections),
    /// `BadRequest` (unreadable file, malformed checksum), `ReadOnly` on a
    /// follower, storage errors; the collection is unchanged on any error.
    pub fn recover_collection(
        &self,
        name: &str,
        file: &Path,
        checksum: Option<&str>,
        known_sha256: Option<&str>,
    ) -> Result<RecoverSnapshotResponse, SnapshotError> {
        crate::collection::validate_name(name)?;
        if !self.storage.is_writer() {
            return Err(
                CollectionError::ReadOnly("snapshots are restored by the writer".into()).into(),
            );
        }
        if !file.is_file() {
            return Err(SnapshotError::BadRequest(format!(
                "no snapshot file at `{}` on the server",
                file.display()
            )));
        }
        if let Some(want) = checksum {
            let want = want.trim().to_ascii_lowercase();
            if !valid_sha256(&want) {
                return Err(SnapshotError::BadRequest(
                    "`checksum` must be a SHA-256 of 64 hex digits".into(),
                ));
            }
            let got = match known_sha256 {
                Some(s) => s.to_string(),
                None => format::sha256_file(file).map_err(io(file))?.0,
            };
            if got != want {
                return Err(SnapshotError::Invalid(format!(
                    "the file's SHA-256 is {got}, not the checksum given ({want}); nothing was \
                     restored"
                )));
            }
        }
        let stage = self.storage.restore_stage(name);
        let result = self.extract_and_switch(name, file, &stage);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&stage);
        }
        result
    }

    fn extract_and_switch(
        &self,
        name: &str,
        file: &Path,
        stage: &Path,
    ) -> Result<RecoverSnapshotResponse, SnapshotError> {
        let mut count = 0;
        let manifest: SnapshotManifest = format::extract(file, |_| {
            count += 1;
            if count > 1 {
                return Err(SnapshotError::Invalid(
                    "the snapshot holds several collections (a storage snapshot); restore it \
                     with `indexing-service restore-snapshot`"
                        .into(),
                ));
            }
            Ok(stage.to_path_buf())
        })?;
        let Some(entry) = manifest.collections.first() else {
            return Err(SnapshotError::Invalid(
                "the snapshot holds no collection".into(),
            ));
        };
        let mut config = entry.config.clone();
        config.name = name.to_string();
        config
            .validate()
            .map_err(|e| SnapshotError::Invalid(format!("its collection config: {e}")))?;
        crate::storage::fsutil::atomic_write(
            &stage.join("collection.json"),
            &serde_json::to_vec_pretty(&config).expect("JSON"),
        )?;
        test_pause("extract");
        let c = self.storage.replace_with(name, stage)?;
        tracing::info!(collection = %name, operation = entry.operation, "collection restored from a snapshot");
        Ok(RecoverSnapshotResponse {
            collection: name.to_string(),
            source_collection: entry.name.clone(),
            operation: entry.operation,
            points: c.count(None)? as u64,
        })
    }
}

/// Restores every collection of a snapshot file (storage or collection
/// snapshot) into the data directory `data_dir`, which no process may hold
/// (the command-line `restore-snapshot`): each collection in the file
/// replaces the one of its name (or `rename` for a one-collection file);
/// others are left alone. Returns what was restored. Errors: as
/// [`Snapshots::recover_collection`], and `Locked` when a service runs on
/// the directory.
pub fn restore_into_data_dir(
    data_dir: &Path,
    file: &Path,
    rename: Option<&str>,
) -> Result<Vec<RecoverSnapshotResponse>, SnapshotError> {
    let storage = Storage::open(data_dir)?;
    let mut stages: Vec<(String, CollectionEntry, PathBuf)> = Vec::new();
    let extracted = format::extract(file, |c| {
        let target = match rename {
            Some(r) => r.to_string(),
            None => c.name.clone(),
        };
        if rename.is_some() && !stages.is_empty() {
            return Err(SnapshotError::BadRequest(
                "`--collection` renames a one-collection snapshot only".into(),
            ));
        }
        let stage = storage.restore_stage(&target);
        stages.push((target, c.clone(), stage.clone()));
        Ok(stage)
    });
    if let Err(e) = extracted {
        for (_, _, s) in &stages {
            let _ = std::fs::remove_dir_all(s);
        }
        return Err(e);
    }
    let mut out = Vec::new();
    for (target, entry, stage) in stages {
        let mut config = entry.config.clone();
        config.name = target.clone();
        crate::storage::fsutil::atomic_write(
            &stage.join("collection.json"),
            &serde_json::to_vec_pretty(&config).expect("JSON"),
        )?;
        let c = storage.replace_with(&target, &stage)?;
        out.push(RecoverSnapshotResponse {
            collection: target,
            source_collection: entry.name.clone(),
            operation: entry.operation,
            points: c.count(None)? as u64,
        });
    }
    storage.close();
    Ok(out)
}
