//! The set of collections under one data directory, which this process
//! locks exclusively for its lifetime.
//!
//! `<data_dir>/.lock` (flock), `<data_dir>/collections/<name>/` each.
//! Names are `[A-Za-z0-9_-]{1,64}`: nothing else reaches the file system.

use super::{Collection, CollectionConfig, CollectionError, Result};
use crate::storage::fsutil::{sync_dir, DirLock};
use crate::storage::io_err;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

pub struct Storage {
    root: PathBuf,
    _lock: DirLock,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
}

impl Storage {
    /// Locks `data_dir` and opens every collection in it. A second process
    /// on the same directory fails here at once.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let lock = DirLock::acquire(data_dir)?;
        let root = data_dir.join("collections");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        let mut map = BTreeMap::new();
        for e in std::fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".trash-") {
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            if validate_name(&name).is_err() || !e.path().join("collection.json").exists() {
                continue;
            }
            let c = Collection::open(&e.path())?;
            map.insert(name, Arc::new(c));
        }
        Ok(Self {
            root,
            _lock: lock,
            collections: RwLock::new(map),
        })
    }

    pub fn create(&self, config: CollectionConfig) -> Result<Arc<Collection>> {
        validate_name(&config.name)?;
        let mut map = self.collections.write();
        if map.contains_key(&config.name) {
            return Err(CollectionError::AlreadyExists(config.name));
        }
        let name = config.name.clone();
        let c = Arc::new(Collection::create(&self.root.join(&name), config)?);
        sync_dir(&self.root)?;
        map.insert(name, c.clone());
        Ok(c)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        validate_name(name)?;
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| CollectionError::NotFound(name.into()))
    }

    pub fn list(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Removes a collection: out of the map, threads stopped, directory
    /// renamed away (atomic for readers of the disk) and then deleted.
    pub fn delete(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let c = self
            .collections
            .write()
            .remove(name)
            .ok_or_else(|| CollectionError::NotFound(name.into()))?;
        c.close();
        let trash = self
            .root
            .join(format!(".trash-{name}-{}", std::process::id()));
        std::fs::rename(c.dir(), &trash).map_err(io_err(&trash))?;
        sync_dir(&self.root)?;
        let _ = std::fs::remove_dir_all(&trash);
        Ok(())
    }

    /// Closes every collection (stops workers, syncs WALs).
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.close();
        }
    }
}
