//! Wire types of the indexing service that the storage layer shares:
//! point ids, distance metrics and the payload filter language.
//!
//! Sizes a client controls carry their bounds in the schema; the numbers
//! are those of [`super::limits`], which the handlers check.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// What a collection name must match: 1 to 64 of `A-Z a-z 0-9 _ -`
/// (anything else is a 422 `invalid_request`).
pub const COLLECTION_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Longest string point id, in bytes (UTF-8); the shortest is 1.
pub const MAX_STRING_ID_BYTES: usize = 256;

/// External point id: an unsigned integer or a string (such as a UUID).
/// Ordered integers first, then strings; scroll pages follow this order.
///
/// Schema: `oneOf` an integer 0 to 2^64-1 (format `uint64`: beyond the
/// int64 range) and a string of 1 to 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Str(String),
}

impl<'de> Deserialize<'de> for PointId {
    /// Reads an unsigned 64-bit integer or a string; anything else is
    /// refused with a message that says what a point id is.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PointId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a point id: an unsigned integer (0 to 18446744073709551615) or a string",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PointId, E> {
                u64::try_from(v).map(PointId::Num).map_err(|_| {
                    E::custom(format!(
                        "a point id is an unsigned integer or a string; got the negative number {v}"
                    ))
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PointId, E> {
                Err(E::custom(format!(
                    "a point id is an unsigned integer or a string; got the number {v}"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PointId, E> {
                Ok(PointId::Str(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<PointId, E> {
                Ok(PointId::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for PointId {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::Custom("uint64".into())))
                    .minimum(Some(0usize))
                    .maximum(Some(u64::MAX as usize))
                    .description(Some("An unsigned 64-bit integer id.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_STRING_ID_BYTES))
                    .description(Some(
                        "A string id (such as a UUID) of 1 to 256 bytes of UTF-8.",
                    )),
            )
            .description(Some(
                "Point id: an unsigned 64-bit integer or a string of 1 to 256 bytes.",
            ))
            .into()
    }
}

impl ToSchema for PointId {}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Str(s) => f.write_str(s),
        }
    }
}

/// How a point id in a URL path (`/collections/{name}/points/{id}`) is
/// read, chosen by the query parameter `id_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// The canonical decimal form of a u64 (`0`, `7`, `18446744073709551615`:
    /// ASCII digits, no sign, no leading zero) is an integer id; anything
    /// else (`007`, `+7`, `-1`, `18446744073709551616`, a UUID) is a string id.
    #[default]
    Auto,
    /// Always a string id, e.g. the string `"424242"`.
    String,
    /// Always an integer id; the segment must be a canonical u64.
    Integer,
}

impl PointId {
    /// Reads a point id from a (percent-decoded) URL path segment under
    /// `id_type` (see [`IdType`]). Returns the id; Errors: a message naming
    /// `id` when the segment is empty or longer than
    /// [`super::limits::MAX_STRING_ID_BYTES`] bytes as a string id, or not a
    /// canonical u64 under [`IdType::Integer`].
    pub fn from_path(segment: &str, id_type: IdType) -> Result<PointId, String> {
        let canonical = !segment.is_empty()
            && segment.bytes().all(|b| b.is_ascii_digit())
            && (segment == "0" || !segment.starts_with('0'));
        let num = if canonical {
            segment.parse::<u64>().ok()
        } else {
            None
        };
        match (id_type, num) {
            (IdType::Auto | IdType::Integer, Some(n)) => Ok(PointId::Num(n)),
            (IdType::Integer, None) => Err(format!(
                "`id` must be an unsigned integer written without sign or leading zeros \
                 (0 to {}) when `id_type` is integer, got `{segment}`",
                u64::MAX
            )),
            (IdType::Auto | IdType::String, _) => {
                let max = super::limits::MAX_STRING_ID_BYTES;
                if segment.is_empty() || segment.len() > max {
                    Err(format!(
                        "`id` as a string id must be 1 to {max} bytes, got {}",
                        segment.len()
                    ))
                } else {
                    Ok(PointId::Str(segment.to_string()))
                }
            }
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

/// Deepest nesting of filters: the top-level filter is at depth 1, a filter
/// inside one of its conditions at depth 2, and so on.
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most conditions in one filter, counted over every level (a nested filter
/// counts as one condition, plus the conditions inside it).
pub const MAX_FILTER_CONDITIONS: usize = 1024;
/// Most values in one `{"any": [...]}` match.
pub const MAX_MATCH_ANY: usize = 1024;
/// Most match values in one filter, over every `match` (one value each, or
/// the length of its `any` list).
pub const MAX_FILTER_VALUES: usize = 4096;
/// Longest payload key in a condition, in bytes (UTF-8).
pub const MAX_FILTER_KEY_BYTES: usize = 256;

/// `{"must": [...], "should": [...], "must_not": [...]}`: every `must`
/// holds, at least one `should` holds (when any are given), no `must_not`
/// holds. Conditions are field conditions or nested filters.
///
/// Bounds (a filter past one is refused with `invalid_filter`, naming it):
/// nesting depth at most 16 (the top-level filter is depth 1); at most
/// 1,024 conditions in all levels together; at most 1,024 values in one
/// `match.any` and 4,096 match values in the whole filter; keys at most 256
/// bytes.
///
/// Numbers compare exactly: integers as integers (also beyond 2^53, up to
/// the 64-bit bounds), an integer against a float by their exact values
/// (`9007199254740993 > 9007199254740992.0`), floats as IEEE doubles.
///
/// Only a JSON object is a filter: an array (`[]`, `[null]`) is refused,
/// never read as an empty filter that matches everything.
#[derive(Debug, Clone, PartialEq, Default, Serialize, ToSchema)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub should: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not: Vec<Condition>,
}

/// How a filter is read: the same fields, refusing unknown ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterFields {
    #[serde(default)]
    must: Vec<Condition>,
    #[serde(default)]
    should: Vec<Condition>,
    #[serde(default)]
    must_not: Vec<Condition>,
}

/// The JSON kind of a value, for messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom(format!(
                "a filter is an object with `must`, `should` and/or `must_not` lists; got {}",
                json_kind(&v)
            )));
        }
        let f = FilterFields::deserialize(v).map_err(|e| {
            D::Error::custom(format!(
                "{e} (a filter has `must`, `should` and `must_not`)"
            ))
        })?;
        Ok(Filter {
            must: f.must,
            should: f.should,
            must_not: f.must_not,
        })
    }
}

/// One entry of `must`, `should` or `must_not`: a field condition
/// (`{"key", "match" | "range"}`) or a nested filter (at most 16 levels
/// deep). Anything else (an array, a string, an object with unknown
/// fields) is refused with a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Condition {
    Field(FieldCondition),
    /// `{"is_empty": {"key": "tags"}}`: the key is missing, null, or an
    /// empty array (no value but null at the key).
    IsEmpty {
        is_empty: KeyRef,
    },
    /// `{"is_null": {"key": "note"}}`: the key holds null.
    IsNull {
        is_null: KeyRef,
    },
    /// A nested filter (recursive).
    #[schema(no_recursion)]
    Filter(Filter),
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let Some(obj) = v.as_object() else {
            return Err(D::Error::custom(format!(
                "a condition is an object: {{\"key\": ..., \"match\" or \"range\": ...}} or a \
                 nested filter {{\"must\" / \"should\" / \"must_not\": [...]}}; got {}",
                json_kind(&v)
            )));
        };
        for (name, make) in [
            (
                "is_empty",
                (|k| Condition::IsEmpty { is_empty: k }) as fn(KeyRef) -> Condition,
            ),
            ("is_null", |k| Condition::IsNull { is_null: k }),
        ] {
            if let Some(inner) = obj.get(name) {
                if obj.len() != 1 {
                    return Err(D::Error::custom(format!(
                        "an `{name}` condition is {{\"{name}\": {{\"key\": \"...\"}}}} alone"
                    )));
                }
                return KeyRef::deserialize(inner.clone()).map(make).map_err(|e| {
                    D::Error::custom(format!("`{name}`: {e} (it takes {{\"key\": \"...\"}})"))
                });
            }
        }
        let field_like = ["key", "match", "range"]
            .iter()
            .any(|k| obj.contains_key(*k));
        let filter_like = ["must", "should", "must_not"]
            .iter()
            .any(|k| obj.contains_key(*k));
        if field_like && !filter_like {
            let key = obj
                .get("key")
                .and_then(|k| k.as_str())
                .map(|k| format!(" on `{k}`"))
                .unwrap_or_default();
            FieldCondition::deserialize(v)
                .map(Condition::Field)
                .map_err(|e| {
                    D::Error::custom(format!(
                        "condition{key}: {e} (a field condition has `key` and one of `match` or \
                     `range`; `range` takes `gt`, `gte`, `lt`, `lte` numbers)"
                    ))
                })
        } else if filter_like && !field_like {
            Filter::deserialize(v)
                .map(Condition::Filter)
                .map_err(|e| D::Error::custom(format!("nested filter: {e}")))
        } else if field_like {
            Err(D::Error::custom(
                "a condition is either a field condition (`key` with `match` or `range`) or a \
                 nested filter (`must` / `should` / `must_not`), not both",
            ))
        } else {
            let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
            Err(D::Error::custom(format!(
                "unknown condition with fields {keys:?}: a field condition has `key` and \
                 `match` or `range`; a nested filter has `must`, `should` or `must_not`"
            )))
        }
    }
}

/// The payload key of an `is_empty` / `is_null` condition (dotted for
/// nested keys, at most 256 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub key: String,
}

/// A condition on one payload key (at most 256 bytes). `key` may be dotted
/// (`meta.year`) to reach nested objects. When the value at the key is an
/// array, the condition holds when any element satisfies it. Exactly one of
/// `match` and `range` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    pub key: String,
    /// `"match": "news"` (a string, number or boolean: equal to it) or
    /// `"match": {"any": [...]}` (equal to one of at most 1,024 strings,
    /// numbers or booleans). Numbers are equal when their exact values are
    /// (`1` equals `1.0`; `9007199254740993` does not equal
    /// `9007199254740992`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
}

/// `"match": "news"` (a string, number or boolean), `"match": {"any": [...]}`
/// (at most [`MAX_MATCH_ANY`] strings, numbers or booleans) or
/// `"match": {"text": "..."}` (full-text: every word of the text is a word
/// of the string at the key; words are Unicode words, lower-cased).
///
/// Schema: `oneOf` a string, a number, a boolean, `{"any": [...]}` and
/// `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Match {
    Any { any: Vec<serde_json::Value> },
    Text { text: String },
    Value(serde_json::Value),
}

impl<'de> Deserialize<'de> for Match {
    /// Objects are `{"any": [...]}` or `{"text": "..."}` exactly (any other
    /// key is refused, by name); anything else is a value to equal (its
    /// kind is checked by the filter's validation).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let serde_json::Value::Object(o) = v else {
            return Ok(Match::Value(v));
        };
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        match (keys.as_slice(), o.values().next()) {
            (["any"], Some(serde_json::Value::Array(items))) => Ok(Match::Any { any: items.clone() }),
            (["any"], Some(other)) => Err(D::Error::custom(format!(
                "`match.any` is a list of strings, numbers or booleans; got {}",
                json_kind(other)
            ))),
            (["text"], Some(serde_json::Value::String(t))) => Ok(Match::Text { text: t.clone() }),
            (["text"], Some(other)) => Err(D::Error::custom(format!(
                "`match.text` is a string; got {}",
                json_kind(other)
            ))),
            _ => Err(D::Error::custom(format!(
                "`match` is a string, number or boolean, {{\"any\": [...]}} or {{\"text\": \"...\"}}; \
                 got an object with keys {keys:?}"
            ))),
        }
    }
}

/// Longest `match.text`, in bytes.
pub const MAX_MATCH_TEXT_BYTES: usize = 4096;

/// A string, number or boolean: the values `match` compares with.
fn match_value() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
}

impl utoipa::PartialSchema for Match {
    fn schema() -> RefOr<Schema> {
        match_value()
            .item(
                ObjectBuilder::new()
                    .property(
                        "any",
                        ArrayBuilder::new()
                            .items(match_value())
                            .max_items(Some(MAX_MATCH_ANY)),
                    )
                    .required("any")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                    .description(Some("Equal to one of at most 1,024 values.")),
            )
            .item(
                ObjectBuilder::new()
                    .property(
                        "text",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .max_length(Some(MAX_MATCH_TEXT_BYTES)),
                    )
                    .required("text")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                    .description(Some(
                        "Full text: every word of `text` (Unicode words, lower-cased) is a word of the string value.",
                    )),
            )
            .description(Some(
                "Equal to a string, number or boolean, or to one of `any`; or every word of `text` in a string value.",
            ))
            .into()
    }
}

impl ToSchema for Match {}

/// Numeric bounds on a payload number; every bound given must hold (none
/// given: any number). Bounds keep integers exact (`serde_json::Number`:
/// a `u64`, an `i64` or a finite `f64`), and compare exactly with payload
/// numbers: integers as integers, an integer against a float by their exact
/// values (`9007199254740993 > 9007199254740992.0`). Non-numbers at the key
/// never satisfy a range.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub gt: Option<serde_json::Number>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub gte: Option<serde_json::Number>,
    /// Less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub lt: Option<serde_json::Number>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub lte: Option<serde_json::Number>,
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
/// (`documents`), into `collection` (default: the service's
/// `default_collection`, `documents`, created on first use; any other name
/// must exist: 404 otherwise).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "content": "a frankfurter served hot in a long bun",
    "metadata": {"pos": "n", "year": 1900},
    "id": 1
}))]
pub struct EmbedDocumentsRequest {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub id: Option<PointId>,
    /// Many documents, 1 to 10000 (sent to the embedding service in as
    /// many calls as its limits need; all are stored, or none).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10000)]
    pub documents: Option<Vec<Document>>,
    /// Collection to store into (1 to 64 of `A-Z a-z 0-9 _ -`), made on
    /// first use with the model's dimension. Default: `documents`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedDocumentsResponse {
    pub collection: String,
    pub ids: Vec<PointId>,
}

/// `consistency` of a read: see [`SearchRequest::consistency`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    /// The operation number to wait for (from a write's `x-operation`).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub after: Option<u64>,
}

/// `POST /search` and `POST /collections/{name}/search`: by text (`query`)
/// or by `vector`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "hot dog", "top_k": 3}))]
pub struct SearchRequest {
    #[serde(default)]
    pub query: Option<String>,
    /// The query vector: an array of numbers, or base64 of its
    /// little-endian 32-bit floats (4 bytes each).
    #[serde(default, deserialize_with = "crate::wire::vector::deserialize_opt")]
    #[schema(value_type = Option<crate::wire::vector::VectorInput>)]
    pub vector: Option<Vec<f32>>,
    /// How many results: 1 to 1000 (default 10). Qdrant's name `limit` is
    /// read as `top_k`.
    #[serde(default, alias = "limit")]
    #[schema(minimum = 1, maximum = 1000)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub filter: Option<Filter>,
    /// How results are ranked: `dense` (default: nearest vectors),
    /// `keyword` (BM25 over the stored `content`) or `hybrid` (dense and
    /// BM25, fused by reciprocal rank: `Σ 1 / (60 + rank)` over the two
    /// lists, each searched `max(top_k, 50)` deep). `keyword` and `hybrid`
    /// need a text `query`; their scores are BM25 (≥ 0) and RRF scores.
    #[serde(default)]
    pub mode: Option<crate::wire::query::SearchMode>,
    /// On `/search`: the collection (1 to 64 of `A-Z a-z 0-9 _ -`;
    /// default: the service's `default_collection`, created on first use;
    /// any other name must exist: 404 otherwise). Ignored on
    /// `/collections/{name}/search`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
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
    /// Include each hit's stored vector (default false).
    #[serde(default)]
    pub with_vector: Option<bool>,
    /// Include each hit's `content` and `metadata` (when false both are
    /// null). Default true on `/search` and `/collections/{name}/search`;
    /// false on `/collections/{name}/points/search`, as in Qdrant.
    #[serde(default)]
    pub with_payload: Option<bool>,
    /// Read-your-writes: answer only once this replica has applied the
    /// collection's operation `after` (the `x-operation` header of a write's
    /// answer). A read replica waits for it, at most
    /// `indexing.replication.consistency_timeout_ms` (then 504
    /// `consistency_timeout`); the writer answers at once. Header
    /// `x-consistency-after` does the same on any read. Absent: eventual.
    /// Inside a batch's `searches` only the batch's own `consistency` counts.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: PointId,
    /// Similarity (cosine, dot: higher is closer) or distance (euclidean:
    /// lower is closer).
    pub score: f32,
    /// The stored text; null when the point has none or `with_payload` is
    /// false.
    pub content: Option<String>,
    /// The stored metadata; null when the point has none or
    /// `with_payload` is false.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The stored vector, only with `with_vector: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    /// Time the search took in the service, in milliseconds, rounded to
    /// 3 decimals (microseconds).
    #[serde(serialize_with = "millis_3")]
    pub took_ms: f64,
}

/// Milliseconds with at most 3 decimals, so `8.298506000000001` goes out
/// as `8.299`.
pub(crate) fn millis_3<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_millis(*ms))
}

/// `ms` rounded to 3 decimals (non-finite values pass through).
pub fn round_millis(ms: f64) -> f64 {
    if ms.is_finite() {
        (ms * 1000.0).round() / 1000.0
    } else {
        ms
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"searches": [{"query": "hot dog", "top_k": 3}, {"query": "a dog", "top_k": 1}]}))]
pub struct BatchSearchRequest {
    /// At most 100 searches, answered in order.
    #[schema(max_items = 100)]
    pub searches: Vec<SearchRequest>,
    /// Read-your-writes, as in `SearchRequest.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
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
    /// An array of numbers, or base64 of the vector's little-endian 32-bit
    /// floats (4 bytes each).
    #[serde(default, deserialize_with = "crate::wire::vector::deserialize_opt")]
    #[schema(value_type = Option<crate::wire::vector::VectorInput>)]
    pub vector: Option<Vec<f32>>,
    #[serde(default)]
    pub content: Option<String>,
    /// The point's payload (a JSON object). Qdrant's name `payload` is read
    /// as `metadata`.
    #[serde(default, alias = "payload")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"points": [
    {"id": 1, "content": "a frankfurter served hot in a long bun", "metadata": {"pos": "n"}},
    {"id": 2, "content": "a domestic animal that barks", "metadata": {"pos": "n"}}
]}))]
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
    /// The stored text; null when the point has none or `with_payload` is
    /// false.
    pub content: Option<String>,
    /// The stored metadata; null when the point has none or
    /// `with_payload` is false.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The stored vector, only when asked for (`with_vector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// `PATCH /collections/{name}/points/{id}`: set the metadata (replace), or
/// merge it into the existing one with `merge: true`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metadata": {"reviewed": true}, "merge": true}))]
pub struct PatchPointRequest {
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub merge: Option<bool>,
}

/// `POST /collections/{name}/points/delete`: by `ids` or by `filter`,
/// exactly one of them (the other absent or null).
///
/// Schema: `oneOf` two objects, `DeleteByIds` (`ids` required, at most
/// 10000) and `DeleteByFilter` (`filter` required).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePointsRequest {
    /// At most 10000 ids.
    #[serde(default)]
    pub ids: Option<Vec<PointId>>,
    #[serde(default)]
    pub filter: Option<Filter>,
}

/// `POST /collections/{name}/points`: the points with these ids (any id,
/// integer or string, as JSON), in the order asked; absent ids are left out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": [1, 2], "with_vector": false}))]
pub struct GetPointsRequest {
    /// At most 10000 ids.
    #[schema(max_items = 10000)]
    pub ids: Vec<PointId>,
    /// Include each point's vector (default false).
    #[serde(default)]
    pub with_vector: Option<bool>,
    /// Include each point's `content` and `metadata` (default true; when
    /// false both are null).
    #[serde(default)]
    pub with_payload: Option<bool>,
    /// Read-your-writes, as in `SearchRequest.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GetPointsResponse {
    pub points: Vec<PointOutput>,
}

impl utoipa::PartialSchema for DeletePointsRequest {
    #[allow(deprecated)] // `example` is what Swagger UI fills the body with.
    fn schema() -> RefOr<Schema> {
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let ids = ArrayBuilder::new()
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "PointId",
            )))
            .max_items(Some(super::limits::MAX_DELETE_IDS))
            .description(Some("The points to delete: at most 10000 ids."));
        let filter = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Filter"));
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .title(Some("DeleteByIds"))
                    .property("ids", ids)
                    .required("ids")
                    .property("filter", null())
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .item(
                ObjectBuilder::new()
                    .title(Some("DeleteByFilter"))
                    .property("filter", filter)
                    .required("filter")
                    .property("ids", null())
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .description(Some(
                "Delete by `ids` (at most 10000) or by `filter`: exactly one of them.",
            ))
            .example(Some(serde_json::json!({"ids": [2]})))
            .into()
    }
}

impl ToSchema for DeletePointsRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push(("PointId".into(), PointId::schema()));
        schemas.push(("Filter".into(), Filter::schema()));
        Filter::schemas(schemas);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletePointsResponse {
    pub deleted: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"limit": 10}))]
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
    /// Include each point's vector (default false).
    #[serde(default)]
    pub with_vector: Option<bool>,
    /// Include each point's `content` and `metadata` (default true; when
    /// false both are null). A `filter` applies either way.
    #[serde(default)]
    pub with_payload: Option<bool>,
    /// Read-your-writes, as in `SearchRequest.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScrollResponse {
    pub points: Vec<PointOutput>,
    /// Pass as `cursor` for the next page; null when this was the last.
    pub next_cursor: Option<PointId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"must": [{"key": "pos", "match": "n"}]}}))]
pub struct CountRequest {
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Read-your-writes, as in `SearchRequest.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(s: &str) -> Result<PointId, String> {
        PointId::from_path(s, IdType::Auto)
    }

    #[test]
    fn path_ids_are_integers_only_in_canonical_decimal_form() {
        let num = |n: u64| Ok(PointId::Num(n));
        let st = |s: &str| Ok(PointId::Str(s.to_string()));
        assert_eq!(auto("0"), num(0));
        assert_eq!(auto("7"), num(7));
        assert_eq!(auto("424242"), num(424_242));
        assert_eq!(auto("18446744073709551615"), num(u64::MAX));
        // Everything else is a string id, never silently a number.
        for s in [
            "007",
            "00",
            "+7",
            "-7",
            "-0",
            " 7",
            "7 ",
            "7.0",
            "1e3",
            "0x10",
            "18446744073709551616",
            "99999999999999999999999",
            "٣",
            "a/b",
            "caf\u{e9}",
            "7b0c5a8e-0d1c-4a51-9d2e-3f1f2b0c9a11",
        ] {
            assert_eq!(auto(s), st(s), "{s:?}");
        }
        assert!(auto("").unwrap_err().contains("`id`"));
        assert!(auto(&"x".repeat(257)).is_err());
        assert_eq!(auto(&"x".repeat(256)), st(&"x".repeat(256)));
    }

    #[test]
    fn id_type_forces_string_or_integer() {
        for s in ["7", "424242", "18446744073709551615", "007", "x"] {
            assert_eq!(
                PointId::from_path(s, IdType::String),
                Ok(PointId::Str(s.to_string()))
            );
        }
        assert_eq!(
            PointId::from_path("7", IdType::Integer),
            Ok(PointId::Num(7))
        );
        for s in ["007", "+7", "-1", "18446744073709551616", "x", ""] {
            let e = PointId::from_path(s, IdType::Integer).unwrap_err();
            assert!(e.contains("`id`") && e.contains("integer"), "{s:?}: {e}");
        }
        assert!(PointId::from_path("", IdType::String).is_err());
        let t: IdType = serde_json::from_str("\"string\"").unwrap();
        assert_eq!(t, IdType::String);
    }
}
