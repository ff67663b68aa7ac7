//! Bodies of the collection and snapshot routes as the client reads and
//! sends them. Point, search, scroll and count bodies are `shared`'s wire
//! types (re-exported at the crate root); these mirror the indexing
//! service's collection description and Qdrant-shaped snapshot
//! descriptions, reading unknown fields leniently so a newer server still
//! decodes.

use serde::{Deserialize, Serialize};
use shared::wire::indexing::Metric;

/// `POST /collections`. Index settings beyond the kind are sent as given
/// (`extra`), so every server setting is reachable without a client change.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CreateCollection {
    /// 1 to 64 of `A-Z a-z 0-9 _ -`.
    pub name: String,
    /// Vector dimension, 1 to 65536; absent: the embedding model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
    /// `cosine` (default), `dot` or `euclidean`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// `hnsw` (default), `ivf_pq` or `flat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Further fields of the request (`hnsw`, `ivf`, `quantization`,
    /// `flush_threshold`, `fsync`), merged into the body.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /collections/{name}`: settings and statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionDescription {
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    /// Index settings as the server describes them.
    #[serde(default)]
    pub index: serde_json::Value,
    /// Live points.
    #[serde(default)]
    pub points: usize,
    #[serde(default)]
    pub segments: usize,
    #[serde(default)]
    pub sealed_segments: usize,
    #[serde(default)]
    pub indexed_segments: usize,
    /// Bytes of the collection's directory on disk.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Number of the last operation in the collection's WAL.
    #[serde(default)]
    pub last_operation: u64,
}

/// One snapshot file on the server (Qdrant's shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotDescription {
    /// File name, used in the download and delete routes.
    pub name: String,
    /// When it was made (RFC 3339), when the server says.
    #[serde(default)]
    pub creation_time: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// SHA-256 of the file, lower-case hex.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// `GET .../snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotDescription>,
}
