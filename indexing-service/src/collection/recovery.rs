//! Opening a collection: the directory at creation, the manifest, and
//! the writer's recovery (tail repair, garbage collection of unlisted
//! segments, WAL replay, the worker's start).

use super::*;
use crate::index::payload_index::PayloadFieldType;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format_version: u32,
    pub(super) segments: Vec<SegmentId>,
    pub(super) persisted_op: u64,
    pub(super) next_segment_id: SegmentId,
    /// Payload fields with an index, and the type of each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) payload_schema: BTreeMap<String, PayloadFieldType>,
}

/// Reads `manifest.json` (an empty manifest when there is none yet).
/// Errors: `Io`, `Corrupt`.
pub(super) fn read_manifest(dir: &Path) -> Result<Manifest> {
    let man_path = dir.join("manifest.json");
    match std::fs::read(&man_path) {
        Ok(b) => Ok(
            serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt {
                path: man_path.clone(),
                message: e.to_string(),
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
            format_version: COLLECTION_FORMAT_VERSION,
            ..Default::default()
        }),
        Err(e) => Err(io_err(&man_path)(e).into()),
    }
}

/// One past the largest segment id among the directories of `seg_dir`
/// (listed or not, `.tmp` included), so new ids never reuse a name.
pub(super) fn max_segment_dir(seg_dir: &Path) -> Result<SegmentId> {
    let mut max_seen = 0;
    match std::fs::read_dir(seg_dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Ok(n) = name.trim_end_matches(".tmp").parse::<u64>() {
                    max_seen = max_seen.max(n + 1);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(seg_dir)(e).into()),
    }
    Ok(max_seen)
}

impl Collection {
    /// Creates a new collection directory and opens it. Errors:
    /// `InvalidConfig`, `AlreadyExists` when `dir` holds a collection,
    /// storage errors. (`Storage::create` adds crash safety by building the
    /// directory under a temporary name.)
    pub fn create(dir: &Path, config: CollectionConfig) -> Result<Self> {
        config.validate()?;
        if dir.join("collection.json").exists() {
            return Err(CollectionError::AlreadyExists(config.name.clone()));
        }
        Self::init_dir(dir, &config)?;
        Self::open(dir)
    }

    /// Lays out a new, empty collection in `dir`: `segments/`, an empty
    /// WAL, `collection.json`, every entry fsynced, so that renaming `dir`
    /// into place makes a complete collection appear at once.
    pub fn init_dir(dir: &Path, config: &CollectionConfig) -> Result<()> {
        config.validate()?;
        let segs = dir.join("segments");
        std::fs::create_dir_all(&segs).map_err(io_err(&segs))?;
        drop(Wal::open(&dir.join("wal"), 0, |_, _| Ok(()))?);
        atomic_write(
            &dir.join("collection.json"),
            &serde_json::to_vec_pretty(config).unwrap(),
        )?;
        crate::storage::fsutil::sync_dir(&segs)?;
        crate::storage::fsutil::sync_dir(dir)?;
        Ok(())
    }

    /// Opens a collection as its writer (see [`Collection::recover`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::recover(dir)
    }

    /// Opens a collection as its writer, which must hold the data
    /// directory's lock: manifest → memory-map sealed segments → remove
    /// segment directories the manifest does not list (leftovers of a
    /// crash) → replay the WAL past `persisted_op`, cutting a torn tail →
    /// start the background worker → serve. Rebuilds nothing. Errors:
    /// `Version`, `Corrupt`, `Io` from any file.
    pub fn recover(dir: &Path) -> Result<Self> {
        let config = read_config(dir)?;
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(io_err(&seg_dir))?;
        let manifest = read_manifest(dir)?;
        // Directories the manifest does not list are leftovers of a crash.
        let listed: HashSet<String> = manifest
            .segments
            .iter()
            .map(|&i| SealedSegment::dir_name(i))
            .collect();
        let max_seen = max_segment_dir(&seg_dir)?;
        for e in std::fs::read_dir(&seg_dir)
            .map_err(io_err(&seg_dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if !listed.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let mut sealed = Vec::new();
        for &sid in &manifest.segments {
            sealed.push(open_sealed(&config, &seg_dir, sid)?);
        }
        let state = assemble_state(&config, &manifest, sealed, max_seen);
        let persisted = manifest.persisted_op;
        let mut jobs = Vec::new();
        // Replay into the state before it is shared.
        let mut state = state;
        let wal = Wal::open(&dir.join("wal"), persisted, |op, o| {
            jobs.extend(apply_op(&config, &mut state, op, o).build);
            Ok(())
        })?;
        let shared_state = OrderedRwLock::new(Level::State, state);
        let inner = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            wal: Some(wal),
            follow: None,
            applied_op: AtomicU64::new(0),
            state: shared_state,
            checkpoint: OrderedMutex::new(Level::Checkpoint, manifest),
            persisted_op: AtomicU64::new(persisted),
            // The vacuum pass queued below covers whatever replay deleted.
            vacuum_queued: AtomicBool::new(true),
            progress: (Mutex::new(0), Condvar::new()),
            stop: AtomicBool::new(false),
            writes: optimizer::WriteClock::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ticket = 0;
        // Reindex: a field added just before a crash may lack its index in
        // some sealed segments.
        for j in jobs.into_iter().chain([Job::Vacuum, Job::Reindex]) {
            ticket += 1;
            let _ = tx.send((ticket, j));
        }
        let mut threads = Vec::new();
        {
            let s = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("segments-{}", s.config.name))
                    .spawn(move || s.worker(rx))
                    .map_err(io_err(dir))?,
            );
        }
        if inner.config.fsync == FsyncMode::Interval {
            let s = inner.clone();
            let every = Duration::from_millis(s.config.fsync_interval_ms.max(1));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wal-sync-{}", s.config.name))
                    .spawn(move || {
                        while !s.stop.load(Ordering::Relaxed) {
                            std::thread::sleep(every);
                            let _ = s.writer_wal().sync_all();
                        }
                    })
                    .map_err(io_err(dir))?,
            );
        }
        Ok(Self {
            inner,
            jobs: OrderedMutex::new(Level::Jobs, (Some(tx), ticket)),
            threads: Mutex::new(threads),
        })
    }
}
