//! The Query API (`POST /collections/{name}/query`, in the shape of
//! Qdrant's): a tree of queries whose leaves search one index (dense
//! vectors or BM25 over the document text) and whose inner nodes fuse
//! their `prefetch` results (`rrf`, `dbsf`) or re-score them with a dense
//! query. Also the `mode` of `POST /search`.

use crate::wire::indexing::{json_kind, Consistency, Filter};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Most `prefetch` entries in one node.
pub const MAX_PREFETCH: usize = 16;
/// Most levels of `prefetch` below the query (a query whose prefetches
/// have prefetches of their own uses 2).
pub const MAX_QUERY_DEPTH: usize = 3;
/// Most queries (nodes) in one request.
pub const MAX_QUERY_NODES: usize = 64;
/// Default `limit` of a query and of each prefetch, as in Qdrant.
pub const DEFAULT_QUERY_LIMIT: usize = 10;
/// Default `k` of reciprocal rank fusion (Cormack, Clarke & Büttcher 2009).
pub const DEFAULT_RRF_K: f32 = 60.0;

/// How `POST /search` ranks: `dense` (the default: nearest vectors),
/// `keyword` (BM25 over the stored `content`; needs a text `query`) or
/// `hybrid` (both, fused by reciprocal rank; needs a text `query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Dense,
    Keyword,
    Hybrid,
}

/// Which index a query searches: `dense` (the vectors; the default) or
/// `bm25` (the full-text index of `content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Using {
    #[default]
    Dense,
    Bm25,
}

/// How prefetched result lists are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FusionKind {
    /// Reciprocal rank fusion: `Σ 1 / (k + rank)`, rank from 1, `k` 60.
    Rrf,
    /// Distribution-based score fusion: each list's scores mapped from
    /// `[mean − 3σ, mean + 3σ]` onto `[0, 1]` (clipped), then summed.
    Dbsf,
}

/// One query of the tree, as read from JSON:
/// - an array of numbers or a base64 string: the nearest vectors;
/// - `{"nearest": <vector>}`: the same;
/// - `{"text": "..."}`: by `using`, the text embedded by the collection's
///   model (dense) or its BM25 terms (`using: "bm25"`);
/// - `{"fusion": "rrf" | "dbsf"}`, `{"rrf": {"k": 60}}`: fuse `prefetch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QueryInput {
    Vector(Vec<f32>),
    Text { text: String },
    Fusion { fusion: FusionKind },
    Rrf { rrf: RrfParams },
}

/// Parameters of reciprocal rank fusion.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RrfParams {
    /// The rank constant, 1 to 1000 (default 60).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<f32>,
}

const QUERY_FORMS: &str = "a query is a vector (an array of numbers or base64), \
     {\"nearest\": <vector>}, {\"text\": \"...\"}, {\"fusion\": \"rrf\" | \"dbsf\"} \
     or {\"rrf\": {\"k\": 60}}";

impl<'de> Deserialize<'de> for QueryInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let vector = |v: serde_json::Value| -> Result<Vec<f32>, D::Error> {
            crate::wire::vector::deserialize_opt(v)
                .map_err(D::Error::custom)?
                .ok_or_else(|| D::Error::custom(QUERY_FORMS))
        };
        match v {
            serde_json::Value::Array(_) => Ok(Self::Vector(vector(v)?)),
            // A string is a base64 vector; text goes in {"text": ...}.
            serde_json::Value::String(_) => vector(v).map(Self::Vector).map_err(|e| {
                D::Error::custom(format!(
                    "{e} (a string `query` is a base64 vector; for text give {{\"text\": \"...\"}})"
                ))
            }),
            serde_json::Value::Object(mut o) => {
                if o.len() != 1 {
                    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
                    return Err(D::Error::custom(format!(
                        "{QUERY_FORMS}; got an object with keys {keys:?}"
                    )));
                }
                let (key, val) = o
                    .iter_mut()
                    .next()
                    .map(|(k, v)| (k.clone(), v.take()))
                    .unwrap();
                match key.as_str() {
                    "nearest" => Ok(Self::Vector(vector(val)?)),
                    "text" => match val {
                        serde_json::Value::String(text) => Ok(Self::Text { text }),
                        other => Err(D::Error::custom(format!(
                            "`text` is a string; got {}",
                            json_kind(&other)
                        ))),
                    },
                    "fusion" => serde_json::from_value(val.clone())
                        .map(|fusion| Self::Fusion { fusion })
                        .map_err(|_| {
                            D::Error::custom(format!("`fusion` is \"rrf\" or \"dbsf\"; got {val}"))
                        }),
                    "rrf" => serde_json::from_value(val)
                        .map(|rrf| Self::Rrf { rrf })
                        .map_err(|e| D::Error::custom(format!("`rrf`: {e}"))),
                    other => Err(D::Error::custom(format!(
                        "{QUERY_FORMS}; got an object with key `{other}`"
                    ))),
                }
            }
            other => Err(D::Error::custom(format!(
                "{QUERY_FORMS}; got {}",
                json_kind(&other)
            ))),
        }
    }
}

impl utoipa::PartialSchema for QueryInput {
    fn schema() -> RefOr<Schema> {
        let obj = |key: &str, inner: RefOr<Schema>, doc: &str| {
            ObjectBuilder::new()
                .property(key, inner)
                .required(key)
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
                .description(Some(doc))
        };
        OneOfBuilder::new()
            .item(<crate::wire::vector::VectorInput as utoipa::PartialSchema>::schema())
            .item(obj(
                "nearest",
                <crate::wire::vector::VectorInput as utoipa::PartialSchema>::schema(),
                "The nearest vectors to this one.",
            ))
            .item(obj(
                "text",
                ObjectBuilder::new().schema_type(Type::String).into(),
                "Text: embedded by the collection's model (`using: dense`), or its BM25 terms (`using: bm25`).",
            ))
            .item(obj(
                "fusion",
                RefOr::Ref(utoipa::openapi::Ref::from_schema_name("FusionKind")),
                "Fuse the `prefetch` results.",
            ))
            .item(obj(
                "rrf",
                RefOr::Ref(utoipa::openapi::Ref::from_schema_name("RrfParams")),
                "Reciprocal rank fusion of the `prefetch` results with rank constant `k`.",
            ))
            .description(Some(
                "A vector, `{\"nearest\": vector}`, `{\"text\": \"...\"}`, `{\"fusion\": \"rrf\" | \"dbsf\"}` or `{\"rrf\": {\"k\": 60}}`.",
            ))
            .into()
    }
}

impl ToSchema for QueryInput {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "FusionKind".into(),
            <FusionKind as utoipa::PartialSchema>::schema(),
        ));
        schemas.push((
            "RrfParams".into(),
            <RrfParams as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// Search parameters of a dense query.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// HNSW beam width, 1 to 4096 (default: the collection's `hnsw.ef`).
    #[serde(default, alias = "hnsw_ef")]
    #[schema(minimum = 1, maximum = 4096)]
    pub ef: Option<usize>,
    /// IVF lists to scan, 1 to 65536.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    pub nprobe: Option<usize>,
    /// Brute force over every point.
    #[serde(default)]
    pub exact: Option<bool>,
}

/// BM25 parameters of a keyword query (default: the collection's).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bm25Input {
    /// Term-frequency saturation, 0 to 10.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    pub k1: Option<f32>,
    /// Length normalisation, 0 to 1.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub b: Option<f32>,
}

/// One node of the query tree: searched alone when it has no `prefetch`,
/// else its `query` fuses or re-scores what its prefetches return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Prefetch {
    /// Queries run first (at most 16 per query, at most 3 levels of
    /// `prefetch` below the root, 64 queries in all); their results are
    /// what `query` fuses or re-scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion, max_items = 16)]
    pub prefetch: Vec<Prefetch>,
    pub query: Option<QueryInput>,
    /// The index a vector or text `query` searches (default `dense`).
    #[serde(default)]
    pub using: Option<Using>,
    /// Points must match this (and every enclosing query's filter).
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Results kept, 1 to 1000 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub params: Option<QueryParams>,
    #[serde(default)]
    pub bm25: Option<Bm25Input>,
    /// Drop results scoring worse than this (below it for similarities and
    /// BM25, above it for euclidean distances).
    #[serde(default)]
    pub score_threshold: Option<f32>,
}

/// `POST /collections/{name}/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "prefetch": [
        {"query": {"text": "a dog"}, "using": "dense", "limit": 50},
        {"query": {"text": "a dog"}, "using": "bm25", "limit": 50}
    ],
    "query": {"fusion": "rrf"},
    "limit": 10
}))]
pub struct QueryRequest {
    /// Queries run first (at most 16 per query, at most 3 levels of
    /// `prefetch` below this one, 64 queries in all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub prefetch: Vec<Prefetch>,
    /// What ranks the answer: a dense or BM25 query, or a fusion of
    /// `prefetch` (required with `prefetch`).
    pub query: Option<QueryInput>,
    #[serde(default)]
    pub using: Option<Using>,
    /// Applies to this query and to every prefetch.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Results, 1 to 1000 (default 10). `top_k` is read as `limit`.
    #[serde(default, alias = "top_k")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Results skipped first (default 0; `offset + limit` at most 1000).
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub params: Option<QueryParams>,
    #[serde(default)]
    pub bm25: Option<Bm25Input>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    /// Include each point's stored vector (default false).
    #[serde(default)]
    pub with_vector: Option<bool>,
    /// Include each point's `content` and `metadata` (default true).
    #[serde(default)]
    pub with_payload: Option<bool>,
    /// Read-your-writes, as in `SearchRequest.consistency`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

/// The answer of `POST /collections/{name}/query`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    /// Best first. Scores are the root query's: similarity (cosine, dot)
    /// or distance (euclidean) for a dense query, BM25 for a `bm25` one,
    /// the fused score for a fusion.
    pub points: Vec<crate::wire::indexing::SearchHit>,
    /// Time the query took in the service, in milliseconds (3 decimals).
    #[serde(serialize_with = "crate::wire::indexing::millis_3")]
    pub took_ms: f64,
}

impl QueryRequest {
    /// This request as the root node of its tree.
    pub fn root(&self) -> Prefetch {
        Prefetch {
            prefetch: self.prefetch.clone(),
            query: self.query.clone(),
            using: self.using,
            filter: self.filter.clone(),
            limit: Some(self.limit.unwrap_or(DEFAULT_QUERY_LIMIT) + self.offset.unwrap_or(0)),
            params: self.params,
            bm25: self.bm25,
            score_threshold: self.score_threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<QueryInput, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn every_query_form_reads() {
        assert_eq!(q("[1, 2]").unwrap(), QueryInput::Vector(vec![1.0, 2.0]));
        assert_eq!(
            q(r#"{"nearest": [0.5]}"#).unwrap(),
            QueryInput::Vector(vec![0.5])
        );
        assert_eq!(q(r#""AACAPw==""#).unwrap(), QueryInput::Vector(vec![1.0]));
        assert_eq!(
            q(r#"{"text": "a dog"}"#).unwrap(),
            QueryInput::Text {
                text: "a dog".into()
            }
        );
        assert_eq!(
            q(r#"{"fusion": "dbsf"}"#).unwrap(),
            QueryInput::Fusion {
                fusion: FusionKind::Dbsf
            }
        );
        assert_eq!(
            q(r#"{"rrf": {"k": 10}}"#).unwrap(),
            QueryInput::Rrf {
                rrf: RrfParams { k: Some(10.0) }
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(q(r#"{"fusion": "max"}"#)
            .unwrap_err()
            .contains("\"rrf\" or \"dbsf\""));
        assert!(q(r#"{"text": 3}"#)
            .unwrap_err()
            .contains("`text` is a string"));
        assert!(q(r#"{"vector": [1]}"#)
            .unwrap_err()
            .contains("key `vector`"));
        assert!(q(r#"{"text": "a", "fusion": "rrf"}"#)
            .unwrap_err()
            .contains("keys"));
        assert!(q("3").unwrap_err().contains("got a number"));
        assert!(q(r#"["x"]"#).is_err());
        let e = serde_json::from_str::<QueryRequest>(r#"{"query": [1], "usin": "dense"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("usin"), "{e}");
    }
}
