//! A collection's settings (`collection.json`): the config, its
//! defaults and validation, and reading it back.

use super::*;
use shared::wire::limits;

/// When the appendable segment is sealed (the same type as the service's
/// `indexing.flush_threshold`).
pub use shared::config::FlushThreshold;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VacuumConfig {
    /// Rewrite a sealed segment once this share of its points is deleted.
    pub deleted_ratio: f64,
    /// Merge the smallest sealed segments when there are more than this many.
    pub max_segments: usize,
}

impl Default for VacuumConfig {
    fn default() -> Self {
        Self {
            deleted_ratio: 0.2,
            max_segments: 8,
        }
    }
}

/// Settings of one collection, persisted in `collection.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionConfig {
    pub format_version: u32,
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    #[serde(default)]
    pub flush_threshold: FlushThreshold,
    #[serde(default)]
    pub vacuum: VacuumConfig,
    /// Sealing and indexing the appendable segment once writes pause
    /// (see `optimizer`).
    #[serde(default)]
    pub idle_indexing: IdleIndexing,
    /// The largest sealed segment, in KiB of vectors (Qdrant's
    /// `max_segment_size`; `dimension × 4` bytes per point): the
    /// appendable segment is sealed on reaching it even below its flush
    /// threshold (so a segment exceeds it only by the points of the request
    /// that reached it; a rewrite after deletes keeps such a segment
    /// whole), and merges never make a larger segment. It bounds the
    /// memory a seal needs and the time one graph build takes.
    #[serde(default = "default_max_segment_size")]
    pub max_segment_size: usize,
    /// Index settings, interpreted by the index layer.
    #[serde(default)]
    pub index: IndexSettings,
    /// Largest payload (as JSON) of one point.
    #[serde(default = "default_payload_limit")]
    pub max_payload_bytes: usize,
    #[serde(default = "default_fsync")]
    pub fsync: FsyncMode,
    #[serde(default = "default_interval")]
    pub fsync_interval_ms: u64,
    /// The embedding service's model that embeds this collection's texts
    /// (alias or id); `None`: the service's default at the time of the
    /// call. Absent from collections made before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// The full-text index of `content` (keyword search). Collections made
    /// before it have none (their segments hold no `text.bin`).
    #[serde(default = "TextIndexSettings::absent")]
    pub text_index: TextIndexSettings,
}

pub(super) fn default_max_segment_size() -> usize {
    limits::DEFAULT_MAX_SEGMENT_SIZE_KB
}

pub(super) fn default_payload_limit() -> usize {
    1 << 20
}
pub(super) fn default_fsync() -> FsyncMode {
    FsyncMode::Always
}
pub(super) fn default_interval() -> u64 {
    100
}

impl CollectionConfig {
    pub fn new(name: &str, dimension: usize, metric: Metric) -> Self {
        Self {
            format_version: COLLECTION_FORMAT_VERSION,
            name: name.into(),
            dimension,
            metric,
            flush_threshold: FlushThreshold::default(),
            vacuum: VacuumConfig::default(),
            idle_indexing: IdleIndexing::default(),
            max_segment_size: default_max_segment_size(),
            index: IndexSettings::default(),
            max_payload_bytes: default_payload_limit(),
            fsync: FsyncMode::Always,
            fsync_interval_ms: 100,
            embedding_model: None,
            text_index: TextIndexSettings::default(),
        }
    }

    /// The most points a sealed segment holds: `max_segment_size` KiB of
    /// `dimension × 4`-byte vectors, at least 1.
    pub fn max_segment_points(&self) -> usize {
        (self.max_segment_size.saturating_mul(1024) / (self.dimension.max(1) * 4)).max(1)
    }

    /// The tokenizer of the text index; None when the collection has none.
    pub fn tokenizer(&self) -> Option<Tokenizer> {
        self.text_index.tokenizer()
    }

    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.dimension == 0 || self.dimension > 65_536 {
            return Err(CollectionError::InvalidConfig(format!(
                "dimension must be 1..=65536, got {}",
                self.dimension
            )));
        }
        if self.flush_threshold.vectors == 0 {
            return Err(CollectionError::InvalidConfig(
                "flush_threshold.vectors must be at least 1".into(),
            ));
        }
        limits::check_range(
            "max_segment_size",
            self.max_segment_size,
            limits::MIN_MAX_SEGMENT_SIZE_KB,
            limits::MAX_MAX_SEGMENT_SIZE_KB,
        )
        .map_err(CollectionError::InvalidConfig)?;
        self.index
            .validate(self.dimension)
            .map_err(CollectionError::InvalidConfig)?;
        self.idle_indexing
            .validate()
            .map_err(CollectionError::InvalidConfig)?;
        self.text_index
            .validate()
            .map_err(CollectionError::InvalidConfig)?;
        if !(self.vacuum.deleted_ratio > 0.0 && self.vacuum.deleted_ratio <= 1.0) {
            return Err(CollectionError::InvalidConfig(
                "vacuum.deleted_ratio must be in (0, 1]".into(),
            ));
        }
        Ok(())
    }
}

/// Reads and checks `collection.json`. Errors: `Io`, `Corrupt`, `Version`.
pub(super) fn read_config(dir: &Path) -> Result<CollectionConfig> {
    let cfg_path = dir.join("collection.json");
    let config: CollectionConfig = serde_json::from_slice(
        &std::fs::read(&cfg_path).map_err(io_err(&cfg_path))?,
    )
    .map_err(|e| StorageError::Corrupt {
        path: cfg_path.clone(),
        message: e.to_string(),
    })?;
    if config.format_version != COLLECTION_FORMAT_VERSION {
        return Err(StorageError::Version {
            path: cfg_path,
            found: config.format_version,
            expected: COLLECTION_FORMAT_VERSION,
        }
        .into());
    }
    Ok(config)
}
