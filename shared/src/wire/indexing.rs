//! Wire types of the indexing service that the storage layer shares:
//! point ids, distance metrics and the payload filter language.

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
