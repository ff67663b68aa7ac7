//! The set of collections under one data directory.
//!
//! `<data_dir>/.lock` (flock), `<data_dir>/collections/<name>/` each.
//! Names are `[A-Za-z0-9_-]{1,64}`: nothing else reaches the file system.
//!
//! Roles: the process holding the lock is the writer ([`Storage::open`],
//! or [`Storage::open_replica`] when the lock was free); the others open
//! as followers ([`Storage::open_replica`]): every collection loaded
//! read-only (`Collection::load`), kept current by [`Storage::follow`]
//! (collections the writer creates or deletes appear and disappear), and
//! promoted by [`Storage::try_promote`] once the lock is free (the writer
//! died; the kernel drops a dead process's `flock`). A follower writes
//! nothing into the data directory; its create and delete answer
//! `ReadOnly`.
//!
//! Invariants:
//! - Create and delete of one name are serialised by a per-name admin lock
//!   (lock level `Admin`, taken before the catalog's `Catalog` level).
//! - Crash-safe: a collection is built in `.creating-<name>-<n>/` (config,
//!   empty WAL, segment directory, all fsynced) and renamed into place; a
//!   deleted one is renamed to a unique `.trash-<name>-<n>/` before its
//!   files are removed. Both renames are atomic and followed by an fsync of
//!   `collections/`, and leftovers of either kind are removed at open, so a
//!   kill at any moment leaves the whole collection or nothing.
//! - A collection that fails to open (damaged files) is kept aside as
//!   damaged with its reason; every other collection is served, and
//!   requests to the damaged one answer `Damaged`.

use super::{Collection, CollectionConfig, CollectionError, Result};
use crate::lock_order::{Level, OrderedMutex, OrderedRwLock};
use crate::storage::fsutil::{sync_dir, DirLock};
use crate::storage::io_err;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CollectionError::InvalidName(
            name.chars().take(80).collect(),
        ))
    }
}

/// A unique suffix for temporary and trash directory names.
pub(super) fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What one [`Storage::follow`] did.
#[derive(Debug, Default, Clone)]
pub struct FollowReport {
    /// WAL records applied, over all collections.
    pub applied: usize,
    /// Collections loaded, reloaded from a new manifest, or dropped.
    pub changed: usize,
    /// The longest wait of a record applied in this step.
    pub lag: Option<std::time::Duration>,
}

/// Collections by name, with the ones that could not be opened.
pub struct Storage {
    data_dir: PathBuf,
    pub(super) root: PathBuf,
    /// The data directory's lock, held by the writer (leaf lock).
    lock: Mutex<Option<DirLock>>,
    writer: AtomicBool,
    /// A follower's loaded collection directories: name → inode (a name
    /// deleted and created again is a new directory). Leaf lock.
    loaded: Mutex<HashMap<String, u64>>,
    /// Lock level `Catalog`.
    pub(super) collections: OrderedRwLock<BTreeMap<String, Arc<Collection>>>,
    /// Collections whose files are damaged: name → reason (no paths).
    pub(super) damaged: Mutex<BTreeMap<String, String>>,
    /// Per-name admin locks (level `Admin`); the map itself is a leaf lock.
    admin: Mutex<HashMap<String, Arc<OrderedMutex<()>>>>,
}

impl Storage {
    /// Locks `data_dir` and opens every collection in it. A second process
    /// on the same directory fails here at once. A collection that fails
    /// to open is logged and kept aside as damaged; the others are served.
    /// Errors: `Locked`, or I/O errors on the data directory itself.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let lock = DirLock::acquire(data_dir)?;
        Self::open_writer(data_dir, lock)
    }

    /// Opens `data_dir` as the writer when its lock is free, else as a
    /// follower (see the module docs). Errors: I/O errors on the data
    /// directory itself.
    pub fn open_replica(data_dir: &Path) -> Result<Self> {
        match DirLock::try_acquire(data_dir)? {
            Some(lock) => Self::open_writer(data_dir, lock),
            None => Ok(Self::open_follower(data_dir)),
        }
    }

    /// A follower over `data_dir`: every collection loaded read-only.
    fn open_follower(data_dir: &Path) -> Self {
        let s = Self {
            data_dir: data_dir.to_path_buf(),
            root: data_dir.join("collections"),
            lock: Mutex::new(None),
            writer: AtomicBool::new(false),
            loaded: Mutex::new(HashMap::new()),
            collections: OrderedRwLock::new(Level::Catalog, BTreeMap::new()),
            damaged: Mutex::new(BTreeMap::new()),
            admin: Mutex::new(HashMap::new()),
        };
        s.follow();
        s
    }

    /// Whether this process holds the lock (and so writes).
    pub fn is_writer(&self) -> bool {
        self.writer.load(Ordering::Acquire)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn open_writer(data_dir: &Path, lock: DirLock) -> Result<Self> {
        let (map, damaged) = Self::recover_all(&data_dir.join("collections"))?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            root: data_dir.join("collections"),
            lock: Mutex::new(Some(lock)),
            writer: AtomicBool::new(true),
            loaded: Mutex::new(HashMap::new()),
            collections: OrderedRwLock::new(Level::Catalog, map),
            damaged: Mutex::new(damaged),
            admin: Mutex::new(HashMap::new()),
        })
    }

    /// The writer's open of `root` (lock held): removes leftovers of
    /// interrupted creates and deletes, recovers every collection.
    #[allow(clippy::type_complexity)]
    fn recover_all(
        root: &Path,
    ) -> Result<(BTreeMap<String, Arc<Collection>>, BTreeMap<String, String>)> {
        let root = root.to_path_buf();
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        super::snapshot::recover_leftovers(&root);
        let mut map = BTreeMap::new();
        let mut damaged = BTreeMap::new();
        for e in std::fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".trash-") || name.starts_with(".creating-") {
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            if validate_name(&name).is_err() || !e.path().join("collection.json").exists() {
                continue;
            }
            match Collection::open(&e.path()) {
                Ok(c) => {
                    map.insert(name, Arc::new(c));
                }
                Err(err) => {
                    tracing::error!(
                        collection = %name,
                        "collection not opened, its files are damaged: {err}"
                    );
                    damaged.insert(name, damage_reason(&err, &root));
                }
            }
        }
        Ok((map, damaged))
    }

    /// Takes the lock when it is free and becomes the writer: every
    /// collection is recovered (torn WAL tails cut, the WAL replayed,
    /// leftovers removed, workers started) and swapped in for its
    /// follower view. Returns whether this call promoted. Nothing
    /// acknowledged is lost: it was in the fsynced WAL. Errors: I/O errors
    /// on the data directory (the lock is released again).
    pub fn try_promote(&self) -> Result<bool> {
        if self.is_writer() {
            return Ok(false);
        }
        let Some(lock) = DirLock::try_acquire(&self.data_dir)? else {
            return Ok(false);
        };
        let (map, damaged) = Self::recover_all(&self.root)?;
        let old = std::mem::replace(&mut *self.collections.write(), map);
        *self.damaged.lock() = damaged;
        *self.lock.lock() = Some(lock);
        self.loaded.lock().clear();
        self.writer.store(true, Ordering::Release);
        drop(old);
        Ok(true)
    }

    /// A follower's step: loads collections the writer created, drops the
    /// ones it deleted, and brings every loaded one up to the writer's log
    /// (`Collection::follow_step`). Failures are logged and tried again on
    /// the next step. Does nothing on the writer.
    pub fn follow(&self) -> FollowReport {
        let mut report = FollowReport::default();
        if self.is_writer() {
            return report;
        }
        // Directories with a collection now: name → inode.
        let mut on_disk: BTreeMap<String, u64> = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if validate_name(&name).is_err() || !e.path().join("collection.json").exists() {
                    continue;
                }
                if let Ok(m) = std::fs::metadata(e.path()) {
                    use std::os::unix::fs::MetadataExt;
                    on_disk.insert(name, m.ino());
                }
            }
        }
        let loaded = self.loaded.lock().clone();
        for (name, ino) in &loaded {
            if on_disk.get(name) != Some(ino) {
                self.collections.write().remove(name);
                self.loaded.lock().remove(name);
                report.changed += 1;
            }
        }
        self.damaged
            .lock()
            .retain(|name, _| on_disk.contains_key(name));
        for (name, ino) in &on_disk {
            if self.loaded.lock().get(name) == Some(ino) {
                continue;
            }
            match Collection::load(&self.root.join(name)) {
                Ok(c) => {
                    self.collections.write().insert(name.clone(), Arc::new(c));
                    self.loaded.lock().insert(name.clone(), *ino);
                    self.damaged.lock().remove(name);
                    report.changed += 1;
                }
                Err(err) => {
                    let reason = damage_reason(&err, &self.root);
                    let mut d = self.damaged.lock();
                    if d.get(name) != Some(&reason) {
                        tracing::warn!(collection = %name, "follower cannot load the collection (will retry): {err}");
                    }
                    d.insert(name.clone(), reason);
                }
            }
        }
        for c in self.list() {
            match c.follow_step() {
                Ok(step) => {
                    report.applied += step.applied;
                    if step.reloaded {
                        report.changed += 1;
                    }
                    if let Some(l) = step.lag {
                        report.lag = Some(report.lag.map_or(l, |r| r.max(l)));
                    }
                }
                Err(err) => {
                    tracing::warn!(collection = %c.name(), "follower step failed (will retry): {err}");
                }
            }
        }
        report
    }

    /// Errors: `ReadOnly` on a follower.
    pub(super) fn writable(&self) -> Result<()> {
        if self.is_writer() {
            Ok(())
        } else {
            Err(CollectionError::ReadOnly(
                "collections are created and deleted by the writer".into(),
            ))
        }
    }

    pub(super) fn admin_lock(&self, name: &str) -> Arc<OrderedMutex<()>> {
        self.admin
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(OrderedMutex::new(Level::Admin, ())))
            .clone()
    }

    /// Creates a collection, crash-safely (see the module docs).
    /// Errors: `InvalidName`, `InvalidConfig`, `AlreadyExists` (also for a
    /// damaged collection of that name), storage errors (nothing is left
    /// behind when one happens).
    pub fn create(&self, config: CollectionConfig) -> Result<Arc<Collection>> {
        self.writable()?;
        validate_name(&config.name)?;
        config.validate()?;
        let admin = self.admin_lock(&config.name);
        let _admin = admin.lock();
        let name = config.name.clone();
        if self.collections.read().contains_key(&name) || self.damaged.lock().contains_key(&name) {
            return Err(CollectionError::AlreadyExists(name));
        }
        let dir = self.root.join(&name);
        if dir.exists() {
            // Not in the catalog and not damaged: a directory without a
            // config (never made live). Move it out of the way.
            self.discard(&dir)?;
        }
        let tmp = self.root.join(format!(".creating-{name}-{}", unique()));
        let made = Collection::init_dir(&tmp, &config)
            .and_then(|_| std::fs::rename(&tmp, &dir).map_err(|e| io_err(&dir)(e).into()))
            .and_then(|_| sync_dir(&self.root).map_err(Into::into));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let c = match Collection::open(&dir) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let _ = self.discard(&dir);
                return Err(e);
            }
        };
        self.collections.write().insert(name, c.clone());
        Ok(c)
    }

    /// The open collection of that name. Errors: `InvalidName`,
    /// `NotFound`, `Damaged` (it exists but could not be opened).
    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        validate_name(name)?;
        if let Some(c) = self.collections.read().get(name) {
            return Ok(c.clone());
        }
        match self.damaged.lock().get(name) {
            Some(reason) => Err(CollectionError::Damaged {
                name: name.into(),
                reason: reason.clone(),
            }),
            None => Err(CollectionError::NotFound(name.into())),
        }
    }

    /// Every open collection, by name.
    pub fn list(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Collections that could not be opened: (name, reason).
    pub fn damaged(&self) -> Vec<(String, String)> {
        self.damaged
            .lock()
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect()
    }

    /// Removes a collection (a damaged one too): out of the catalog, threads
    /// stopped, directory renamed to a unique trash name (atomic for
    /// readers of the disk), then deleted. When the rename fails the
    /// collection is reopened and stays. Errors: `InvalidName`, `NotFound`,
    /// storage errors.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.writable()?;
        validate_name(name)?;
        let admin = self.admin_lock(name);
        let _admin = admin.lock();
        let dir = self.root.join(name);
        let open = self.collections.write().remove(name);
        match open {
            Some(c) => {
                c.close();
                drop(c);
                if let Err(e) = self.discard(&dir) {
                    // Still whole on disk: serve it again.
                    match Collection::open(&dir) {
                        Ok(c) => {
                            self.collections.write().insert(name.into(), Arc::new(c));
                        }
                        Err(err) => {
                            self.damaged
                                .lock()
                                .insert(name.into(), damage_reason(&err, &self.root));
                        }
                    }
                    return Err(e);
                }
            }
            None => {
                if self.damaged.lock().get(name).is_none() {
                    return Err(CollectionError::NotFound(name.into()));
                }
                self.discard(&dir)?;
                self.damaged.lock().remove(name);
            }
        }
        Ok(())
    }

    /// Renames `dir` to a unique trash name, fsyncs `collections/`, then
    /// removes it (leftovers are removed at the next open).
    fn discard(&self, dir: &Path) -> Result<()> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let trash = self.root.join(format!(".trash-{name}-{}", unique()));
        std::fs::rename(dir, &trash).map_err(io_err(&trash))?;
        sync_dir(&self.root)?;
        let _ = std::fs::remove_dir_all(&trash);
        Ok(())
    }

    /// Closes every collection (stops workers, syncs WALs).
    pub fn close(&self) {
        for c in self.list() {
            c.close();
        }
    }
}

/// What a user is told about a damaged collection: the error with the data
/// directory's part of paths removed.
fn damage_reason(err: &CollectionError, root: &Path) -> String {
    let text = err.to_string();
    let prefix = format!("{}/", root.display());
    text.replace(&prefix, "")
}
