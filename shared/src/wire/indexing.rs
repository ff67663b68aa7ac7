//! Wire types of the indexing service that the storage layer shares:
//! point ids, distance metrics and the payload filter language.
//!
//! Sizes a client controls carry their bounds in the schema; the numbers
//! are those of [`super::limits`], which the handlers check.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// External point id: an unsigned integer or a string (such as a UUID).
/// Ordered integers first, then strings; scroll pages follow this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Str(String),
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (vectors are normalised at insert); higher is closer.
    #[default]
    Cosine,
    /// Dot product; higher is closer.
    Dot,
    /// Euclidean distance; lower is closer.
    Euclidean,
}

/// `{"must": [...], "should": [...], "must_not": [...]}`: every `must`
/// holds, at least one `should` holds (when any are given), no `must_not`
/// holds. Conditions are field conditions or nested filters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub should: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Condition {
    Field(FieldCondition),
    /// A nested filter (recursive).
    #[schema(no_recursion)]
    Filter(Filter),
}

/// A condition on one payload key. `key` may be dotted (`meta.year`) to reach
/// nested objects. When the value at the key is an array, the condition holds
/// when any element satisfies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub r#match: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
}

/// `"match": "news"` (a string, number or boolean) or `"match": {"any": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Match {
    Any { any: Vec<serde_json::Value> },
    Value(serde_json::Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

/// One document for `POST /embed`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The text to embed and store.
    pub content: String,
    /// A JSON object stored as the point's payload (filterable).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Point id; a UUID is generated when absent.
    #[serde(default)]
    pub id: Option<PointId>,
}

/// `POST /embed`: one document (`content`, `metadata`, `id`) or many
/// (`documents`), into `collection` (default `documents`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedDocumentsRequest {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub id: Option<PointId>,
    /// Many documents, 1 to 1000.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000)]
    pub documents: Option<Vec<Document>>,
    #[serde(default)]
    pub collection: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedDocumentsResponse {
    pub collection: String,
    pub ids: Vec<PointId>,
}

/// `POST /search` and `POST /collections/{name}/search`: by text (`query`)
/// or by `vector`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// How many results: 1 to 1000 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Ignored on `/collections/{name}/search`.
    #[serde(default)]
    pub collection: Option<String>,
    /// HNSW beam width for this query: 1 to 4096 (default: the
    /// collection's `hnsw.ef`; never below `top_k`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    pub ef: Option<usize>,
    /// IVF lists to scan for this query: 1 to 65536 (default: the
    /// collection's `ivf.nprobe`; never more than a segment has).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    pub nprobe: Option<usize>,
    /// Brute force over every point (for checking).
    #[serde(default)]
    pub exact: Option<bool>,
    #[serde(default)]
    pub with_vector: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: PointId,
    /// Similarity (cosine, dot: higher is closer) or distance (euclidean:
    /// lower is closer).
    pub score: f32,
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSearchRequest {
    /// At most 100 searches, answered in order.
    #[schema(max_items = 100)]
    pub searches: Vec<SearchRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchSearchResponse {
    pub results: Vec<SearchResponse>,
}

/// A point as sent by clients: a `vector`, or `content` to embed (or both:
/// the vector is stored and the content kept as text).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointInput {
    #[serde(default)]
    pub id: Option<PointId>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertPointsRequest {
    /// At most 10000 points.
    #[schema(max_items = 10000)]
    pub points: Vec<PointInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpsertPointsResponse {
    pub ids: Vec<PointId>,
    /// Operation number in the collection's WAL.
    pub operation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PointOutput {
    pub id: PointId,
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// `PATCH /collections/{name}/points/{id}`: set the metadata (replace), or
/// merge it into the existing one with `merge: true`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPointRequest {
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub merge: Option<bool>,
}

/// `POST /collections/{name}/points/delete`: by `ids` or by `filter`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePointsRequest {
    /// At most 10000 ids.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub ids: Option<Vec<PointId>>,
    #[serde(default)]
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletePointsResponse {
    pub deleted: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ScrollRequest {
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Page size: 1 to 10000 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<PointId>,
    #[serde(default)]
    pub with_vector: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScrollResponse {
    pub points: Vec<PointOutput>,
    /// Pass as `cursor` for the next page; null when this was the last.
    pub next_cursor: Option<PointId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    #[serde(default)]
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    pub count: usize,
}

/// When a collection's appendable segment is sealed and indexed; each
/// absent value comes from the service's `flush_threshold` config.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlushThresholdInput {
    /// Seal after this many vectors: 1 to 10000000.
    #[schema(minimum = 1, maximum = 10000000)]
    pub vectors: Option<usize>,
    /// ... or after this many bytes of vectors and payloads: 1 to
    /// 17179869184 (16 GiB).
    #[schema(minimum = 1, maximum = 17179869184u64)]
    pub bytes: Option<usize>,
}
