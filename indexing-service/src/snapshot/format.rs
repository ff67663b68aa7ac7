//! The snapshot file: a POSIX tar archive (the `tar` crate) whose first
//! entry is `snapshot.json` ([`SnapshotManifest`]), followed by every file
//! of every collection it holds under `collections/<name>/` (the layout of
//! a collection directory: `collection.json`, `manifest.json`,
//! `segments/<id>/…`, `wal/…`). Documented in `docs/SNAPSHOTS.md`.
//!
//! Verification on read ([`extract`]): the manifest's own checksum, its
//! format and version; then every entry must be a regular file listed in
//! the manifest, seen once, at a plain relative path, with the listed size
//! and SHA-256; and every listed file must be present. Files are written
//! into the caller's staging directories and fsynced as they come; nothing
//! outside them is touched, so a refused file leaves everything as it was.

use super::SnapshotError;
use crate::collection::CollectionConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// `format` of every snapshot manifest.
pub const FORMAT: &str = "indexing-service-snapshot";
/// The version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the manifest entry (always the first).
pub const MANIFEST: &str = "snapshot.json";
/// Largest manifest read, in bytes.
const MAX_MANIFEST: u64 = 256 * 1024 * 1024;

/// What a snapshot file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// One collection (`/collections/{name}/snapshots`).
    Collection,
    /// Every collection of the storage (`/snapshots`).
    Storage,
}

/// One collection inside a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionEntry {
    pub name: String,
    /// The last operation the snapshot holds of it.
    pub operation: u64,
    /// Its manifest's `persisted_op`: the WAL in the snapshot holds
    /// `persisted_op+1..=operation`.
    pub persisted_op: u64,
    /// Its `collection.json`.
    pub config: CollectionConfig,
}

/// Size and SHA-256 of one file in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Bytes.
    pub size: u64,
    /// SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    pub kind: SnapshotKind,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub collections: Vec<CollectionEntry>,
    /// Archive path (`collections/<name>/<path>`) → size and SHA-256.
    pub files: BTreeMap<String, FileEntry>,
    /// SHA-256 of this manifest serialised as compact JSON with this field
    /// empty (`""`).
    pub manifest_sha256: String,
}

impl SnapshotManifest {
    fn digest(&self) -> String {
        let mut m = self.clone();
        m.manifest_sha256 = String::new();
        hex::encode(Sha256::digest(serde_json::to_vec(&m).expect("JSON")))
    }

    /// Sets `manifest_sha256`.
    pub fn seal(&mut self) {
        self.manifest_sha256 = self.digest();
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W: Write> {
    pub inner: W,
    pub hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and size of a file, read once in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Every regular file under `dir`, as paths relative to it with `/`,
/// sorted.
fn walk(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let t = e.file_type()?;
            let r = rel.join(e.file_name());
            if t.is_dir() {
                stack.push(r);
            } else if t.is_file() {
                out.push(r.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the archive of `trees` (collection entry, staged directory) to
/// `out`: the manifest, then each file. `pause` runs half-way (a test
/// hook). Returns the bytes written and their SHA-256 (hex). Errors: I/O.
pub fn write_archive(
    out: std::fs::File,
    kind: SnapshotKind,
    created_at: &str,
    trees: &[(CollectionEntry, PathBuf)],
    pause: impl Fn(),
) -> std::io::Result<(u64, String)> {
    let mut files = BTreeMap::new();
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    for (c, dir) in trees {
        for rel in walk(dir)? {
            let path = dir.join(&rel);
            let (sha256, size) = sha256_file(&path)?;
            let name = format!("collections/{}/{rel}", c.name);
            files.insert(name.clone(), FileEntry { size, sha256 });
            sources.push((name, path));
        }
    }
    let mut manifest = SnapshotManifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind,
        created_at: created_at.into(),
        collections: trees.iter().map(|(c, _)| c.clone()).collect(),
        files,
        manifest_sha256: String::new(),
    };
    manifest.seal();
    let man = serde_json::to_vec_pretty(&manifest).expect("JSON");
    let w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let mut b = tar::Builder::new(w);
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    };
    b.append_data(&mut header(man.len() as u64), MANIFEST, &man[..])?;
    let half = sources.len() / 2;
    for (i, (name, path)) in sources.iter().enumerate() {
        if i == half {
            b.get_mut().flush()?;
            pause();
        }
        let f = std::fs::File::open(path)?;
        let size = manifest.files[name].size;
        b.append_data(&mut header(size), name, f.take(size))?;
    }
    let mut w = b.into_inner()?;
    w.flush()?;
    let size = w.written;
    let sha = hex::encode(w.hasher.finalize());
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((size, sha))
}

fn invalid(msg: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(msg.into())
}

/// A relative path of plain components only (no `..`, no root, no `.`).
fn safe_rel(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(p.to_path_buf())
}

/// Reads the archive at `src`, verifying it (see the module docs), and
/// writes each collection's files under `dest(collection entry)`; each
/// destination is created and every file and directory in it fsynced.
/// Returns the manifest. Errors: `Invalid` naming what is wrong (damaged,
/// truncated, not a snapshot, wrong format version), `Io` writing.
pub fn extract(
    src: &Path,
    mut dest: impl FnMut(&CollectionEntry) -> Result<PathBuf, SnapshotError>,
) -> Result<SnapshotManifest, SnapshotError> {
    let f = std::fs::File::open(src)
        .map_err(|e| SnapshotError::BadRequest(format!("cannot open the snapshot file: {e}")))?;
    let mut ar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
    let truncated = |e: std::io::Error| {
        invalid(format!(
            "the snapshot file is truncated or is not a tar archive ({e})"
        ))
    };
    let mut entries = ar.entries().map_err(truncated)?;
    let first = entries
        .next()
        .ok_or_else(|| invalid("the snapshot file is empty or is not a tar archive"))?
        .map_err(truncated)?;
    let mut first = first;
    let path = first
        .path()
        .map_err(truncated)?
        .to_string_lossy()
        .to_string();
    if path != MANIFEST {
        return Err(invalid(format!(
            "the snapshot file does not start with `{MANIFEST}` (found `{path}`): not a snapshot \
             of this service"
        )));
    }
    if first.size() > MAX_MANIFEST {
        return Err(invalid(format!("`{MANIFEST}` is implausibly large")));
    }
    let mut bytes = Vec::new();
    first.read_to_end(&mut bytes).map_err(truncated)?;
    let manifest: SnapshotManifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("`{MANIFEST}` is damaged: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!(
            "`{MANIFEST}` has format `{}`, expected `{FORMAT}`",
            manifest.format
        )));
    }
    if manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "snapshot format version {} is not supported (this build reads version \
             {FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    if manifest.digest() != manifest.manifest_sha256 {
        return Err(invalid(format!(
            "`{MANIFEST}` is damaged: its checksum does not match its content"
        )));
    }
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for c in &manifest.collections {
        if crate::collection::validate_name(&c.name).is_err() {
            return Err(invalid(format!(
                "`{MANIFEST}` names an invalid collection `{}`",
                c.name
            )));
        }
        let d = dest(c)?;
        std::fs::create_dir_all(&d).map_err(|e| SnapshotError::Io(d.clone(), e))?;
        dirs.insert(c.name.clone(), d);
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut made_dirs: BTreeSet<PathBuf> = dirs.values().cloned().collect();
    for entry in entries {
        let mut entry = entry.map_err(truncated)?;
        let name = entry
            .path()
            .map_err(truncated)?
            .to_string_lossy()
            .to_string();
        let Some(want) = manifest.files.get(&name) else {
            return Err(invalid(format!(
                "`{name}` is in the snapshot file but not in `{MANIFEST}`"
            )));
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(invalid(format!("`{name}` is not a regular file")));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(format!("`{name}` appears twice")));
        }
        let target = name
            .strip_prefix("collections/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(c, rel)| Some((dirs.get(c)?, safe_rel(rel)?)))
            .map(|(d, rel)| d.join(rel))
            .ok_or_else(|| invalid(format!("`{name}` is not a path a snapshot may hold")))?;
        if entry.size() != want.size {
            return Err(invalid(format!(
                "`{name}` is {} bytes in the archive; `{MANIFEST}` says {}",
                entry.size(),
                want.size
            )));
        }
        let parent = target.parent().expect("under a collection").to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| SnapshotError::Io(parent.clone(), e))?;
        made_dirs.insert(parent);
        let out =
            std::fs::File::create(&target).map_err(|e| SnapshotError::Io(target.clone(), e))?;
        let mut w = HashingWriter::new(out);
        std::io::copy(&mut entry, &mut w).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                invalid(format!("the snapshot file is truncated inside `{name}`"))
            } else {
                truncated(e)
            }
        })?;
        if w.written != want.size {
            return Err(invalid(format!(
                "the snapshot file is truncated inside `{name}` ({} of {} bytes)",
                w.written, want.size
            )));
        }
        let got = hex::encode(w.hasher.finalize());
        if got != want.sha256 {
            return Err(invalid(format!(
                "`{name}` is damaged: its SHA-256 is {got}, `{MANIFEST}` says {}",
                want.sha256
            )));
        }
        w.inner
            .sync_all()
            .map_err(|e| SnapshotError::Io(target.clone(), e))?;
    }
    let missing: Vec<&String> = manifest
        .files
        .keys()
        .filter(|k| !seen.contains(*k))
        .collect();
    if let Some(first) = missing.first() {
        return Err(invalid(format!(
            "the snapshot file is truncated or incomplete: {} of the {} files `{MANIFEST}` lists \
             are missing (the first: `{first}`)",
            missing.len(),
            manifest.files.len()
        )));
    }
    for d in made_dirs.iter().rev() {
        crate::storage::fsutil::sync_dir(d)?;
    }
    Ok(manifest)
}
