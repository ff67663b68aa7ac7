//! Bodies of the collection routes as the client reads and sends them.
//! Point, search, scroll, count and snapshot bodies are `shared`'s wire
//! types (re-exported at the crate root); these mirror the indexing
//! service's collection request and description (defined in the service's
//! API layer), reading unknown fields leniently so a newer server still
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
