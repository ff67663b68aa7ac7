//! Route handlers: extract, validate, one domain call, map the result.
//!
//! Every size a client controls is checked against `shared::wire::limits`
//! by one `check_*` helper per request type before anything is embedded,
//! read or written: a 422 `invalid_request` whose message names the field
//! and the bound. The schema attributes on the wire types state the same
//! numbers (a test compares the generated document with the constants).

use super::new_collection::{collection_config, defaults_for, requested_index};
use super::point_path::{PointGet, PointGetQuery, PointIdQuery, PointPath};
use super::{ApiError, AppState};
use crate::collection::{
    Collection, CollectionError, CollectionInfo, IdleIndexing, NewPoint, ReadParts, ScoredPoint,
    StoredPoint,
};
use crate::index::segment_index::{
    HnswSettings, IndexKind, IndexSettings, IvfSettings, Quantization, SearchParams,
};
use crate::text::TextIndexSettings;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shared::config::FsyncMode;
use shared::http::ApiJson;
use shared::wire::indexing::*;
use shared::wire::limits::{self, check_len, check_range};
use shared::wire::query::SearchMode;
use shared::{ErrorBody, ErrorCode};
use std::sync::Arc;
use std::time::Instant;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) type Res<T> = Result<Json<T>, ErrorBody>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "indexing-service",
        description = "Collections of vectors with metadata: store by text or vector, filtered top-k search, CRUD."
    ),
    components(schemas(
        ErrorBody,
        ErrorCode,
        Condition,
        FieldCondition,
        Range,
        Metric,
        PointId
    ))
)]
struct ApiDoc;

/// Runs storage work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Invalid(ErrorCode::Internal, format!("worker failed: {e}")))?
}

/// Embeds texts through the embedding service, in as many calls as its
/// limits need (all succeed or nothing is returned); vectors in input
/// order. `field(i)` names the request field of text `i` in errors.
/// Errors: 413 `payload_too_large` naming the field when one text cannot
/// fit a call; the embedding service's rejection; 503 when unreachable.
pub(super) async fn embed(
    s: &AppState,
    model: Option<&str>,
    texts: Vec<String>,
    field: impl Fn(usize) -> String,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let t0 = Instant::now();
    let r = s.embedder.embed_all_for(model, texts).await;
    let outcome = if r.is_ok() { "ok" } else { "error" };
    s.metrics
        .embed_calls
        .with_label_values(&[outcome])
        .observe(t0.elapsed().as_secs_f64());
    if let Err(e) = &r {
        let kind = match e {
            shared::client::ClientError::Unavailable(_) => "unavailable",
            shared::client::ClientError::Rejected { .. } => "rejected",
            shared::client::ClientError::Protocol(_) => "protocol",
            shared::client::ClientError::TooLarge { .. } => "too_large",
        };
        s.metrics.embed_errors.with_label_values(&[kind]).inc();
    }
    match r {
        Err(shared::client::ClientError::TooLarge {
            index,
            bytes,
            limit,
        }) => Err(ApiError::Invalid(
            ErrorCode::PayloadTooLarge,
            format!(
                "`{}` is {bytes} bytes as JSON, over the embedding service's limit of \
                 {limit} bytes per request",
                field(index)
            ),
        )),
        r => Ok(r?),
    }
}

/// The collection `/embed` or `/search` names (none: the service's
/// `default_collection`), looked up without creating anything.
enum Target {
    Existing(Arc<Collection>),
    /// The default collection, not made yet: created once the request has
    /// succeeded up to the write (see [`create_default`]).
    MissingDefault(String),
}

impl Target {
    /// The embedding model of the collection (alias or id; `None`: the
    /// embedding service's default): the collection's own, or for the
    /// default collection not made yet, `indexing.embedding_model`.
    fn embedding_model(&self, s: &AppState) -> Option<String> {
        match self {
            Target::Existing(c) => c.config().embedding_model.clone(),
            Target::MissingDefault(_) => s.config.embedding_model.clone(),
        }
    }
}

/// Resolves `name`. Errors: 404 `not_found` for an unknown name other than
/// the default collection's (also before anything is embedded); 422 for an
/// invalid name; 503 for a damaged collection.
fn target(s: &AppState, name: Option<String>) -> Result<Target, ApiError> {
    let name = name.unwrap_or_else(|| s.config.default_collection.clone());
    match s.storage.get(&name) {
        Ok(c) => Ok(Target::Existing(c)),
        Err(CollectionError::NotFound(_)) if name == s.config.default_collection => {
            Ok(Target::MissingDefault(name))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the default collection `name` with `dimension` (the model's) and
/// the settings of [`collection_config`]; one created meanwhile by another
/// request is returned as is. Errors: storage errors.
async fn create_default(
    s: &AppState,
    name: String,
    dimension: usize,
) -> Result<Arc<Collection>, ApiError> {
    let cfg = collection_config(&s.config, &defaults_for(&name), dimension);
    let st = s.storage.clone();
    blocking(move || match st.create(cfg) {
        Err(CollectionError::AlreadyExists(_)) => Ok(st.get(&name)?),
        r => Ok(r?),
    })
    .await
}

fn payload_value(
    p: Option<serde_json::Map<String, serde_json::Value>>,
) -> Option<serde_json::Value> {
    p.map(serde_json::Value::Object)
}

/// The parts a request asks for: `with_vector` (default false) and
/// `with_payload` (default `payload_default`).
pub(super) fn parts(
    with_vector: Option<bool>,
    with_payload: Option<bool>,
    payload_default: bool,
) -> ReadParts {
    ReadParts {
        vector: with_vector.unwrap_or(false),
        payload: with_payload.unwrap_or(payload_default),
    }
}

/// A hit on the wire; the collection left out what `parts` did not ask for.
pub(super) fn hit(h: ScoredPoint, parts: ReadParts) -> SearchHit {
    SearchHit {
        id: h.point.id,
        score: h.score,
        content: h.point.content,
        metadata: payload_value(h.point.payload),
        vector: parts.vector.then_some(h.point.vector),
    }
}

/// A point on the wire; the collection left out what `parts` did not ask for.
fn point_out(p: StoredPoint, parts: ReadParts) -> PointOutput {
    PointOutput {
        id: p.id,
        content: p.content,
        metadata: payload_value(p.payload),
        vector: parts.vector.then_some(p.vector),
    }
}

/// Default `top_k` of a search.
pub(super) const DEFAULT_TOP_K: usize = 10;
/// Default scroll page size.
const DEFAULT_SCROLL_LIMIT: usize = 100;

/// `top_k`, `ef` and `nprobe` of one search, and on a route that names
/// the collection in its path (`path`), a body `collection` that agrees
/// with it; `at` prefixes the field names (`searches[3].` inside a batch).
/// Errors: 422 naming the field and bound, or both collection names.
fn check_search(req: &SearchRequest, at: &str, path: Option<&str>) -> Result<(), ApiError> {
    let field = |name: &str| format!("{at}{name}");
    if let (Some(body), Some(path)) = (req.collection.as_deref(), path) {
        if body != path {
            return Err(ApiError::invalid(format!(
                "`{}` is `{body}` but the path names collection `{path}`; leave it out \
                 (the path chooses the collection)",
                field("collection")
            )));
        }
    }
    if let Some(k) = req.top_k {
        check_range(&field("top_k"), k, limits::MIN_TOP_K, limits::MAX_TOP_K)
            .map_err(ApiError::invalid)?;
    }
    if let Some(ef) = req.ef {
        check_range(&field("ef"), ef, limits::MIN_EF, limits::MAX_EF).map_err(ApiError::invalid)?;
    }
    if let Some(np) = req.nprobe {
        check_range(&field("nprobe"), np, limits::MIN_NPROBE, limits::MAX_NPROBE)
            .map_err(ApiError::invalid)?;
    }
    let mode = req.mode.unwrap_or_default();
    if mode != SearchMode::Dense {
        let name = match mode {
            SearchMode::Keyword => "keyword",
            _ => "hybrid",
        };
        if req.vector.is_some() {
            return Err(ApiError::invalid(format!(
                "`{}` is `{name}`, which searches by the text `{}`; leave out `{}`",
                field("mode"),
                field("query"),
                field("vector")
            )));
        }
        if req.query.is_none() {
            return Err(ApiError::invalid(format!(
                "`{}` is `{name}`: give the text to search for in `{}`",
                field("mode"),
                field("query")
            )));
        }
    }
    Ok(())
}

/// The number of searches and each one's sizes. Errors: 422 naming the
/// field (`searches`, `searches[i].ef`, ...) and the bound.
fn check_batch_search(req: &BatchSearchRequest, path: &str) -> Result<(), ApiError> {
    check_len("searches", req.searches.len(), limits::MAX_BATCH_SEARCHES)
        .map_err(ApiError::invalid)?;
    for (i, r) in req.searches.iter().enumerate() {
        check_search(r, &format!("searches[{i}]."), Some(path))?;
    }
    Ok(())
}

/// Documents per `/embed` (1..=`MAX_EMBED_DOCUMENTS`). Errors: 422
/// `empty_input` when none, `invalid_request` naming `documents` when too many.
fn check_embed(docs: &[Document]) -> Result<(), ApiError> {
    if docs.is_empty() {
        return Err(ApiError::Invalid(
            ErrorCode::EmptyInput,
            "`documents` must not be empty".into(),
        ));
    }
    check_len("documents", docs.len(), limits::MAX_EMBED_DOCUMENTS).map_err(ApiError::invalid)
}

/// Points per upsert. Errors: 422 naming `points` and the bound.
fn check_upsert(req: &UpsertPointsRequest) -> Result<(), ApiError> {
    check_len("points", req.points.len(), limits::MAX_UPSERT_POINTS).map_err(ApiError::invalid)
}

/// Ids per retrieve. Errors: 422 naming `ids` and the bound.
fn check_get(req: &GetPointsRequest) -> Result<(), ApiError> {
    check_len("ids", req.ids.len(), limits::MAX_GET_IDS).map_err(ApiError::invalid)
}

/// Ids per delete. Errors: 422 naming `ids` and the bound.
fn check_delete(req: &DeletePointsRequest) -> Result<(), ApiError> {
    match &req.ids {
        Some(ids) => check_len("ids", ids.len(), limits::MAX_DELETE_IDS).map_err(ApiError::invalid),
        None => Ok(()),
    }
}

/// The scroll page size. Errors: 422 naming `limit` and the bound.
fn check_scroll(req: &ScrollRequest) -> Result<(), ApiError> {
    match req.limit {
        Some(l) => check_range(
            "limit",
            l,
            limits::MIN_SCROLL_LIMIT,
            limits::MAX_SCROLL_LIMIT,
        )
        .map_err(ApiError::invalid),
        None => Ok(()),
    }
}

/// `dimension`, `flush_threshold.*` and the index settings (`hnsw.*`,
/// `ivf.*`, `quantization.*`) of a new collection, all before the embedding
/// service is asked for a default dimension. What depends on the dimension
/// (PQ `subvectors` dividing it) is checked when the collection is created.
/// Errors: 422 naming the field and the bound.
fn check_create(req: &CreateCollectionRequest) -> Result<(), ApiError> {
    if let Some(d) = req.dimension {
        check_range("dimension", d, limits::MIN_DIMENSION, limits::MAX_DIMENSION)
            .map_err(ApiError::invalid)?;
    }
    if let Some(t) = req.flush_threshold {
        if let Some(v) = t.vectors {
            check_range(
                "flush_threshold.vectors",
                v,
                limits::MIN_FLUSH_VECTORS,
                limits::MAX_FLUSH_VECTORS,
            )
            .map_err(ApiError::invalid)?;
        }
        if let Some(b) = t.bytes {
            check_range(
                "flush_threshold.bytes",
                b,
                limits::MIN_FLUSH_BYTES,
                limits::MAX_FLUSH_BYTES,
            )
            .map_err(ApiError::invalid)?;
        }
    }
    if let Some(s) = req.max_segment_size {
        check_range(
            "max_segment_size",
            s,
            limits::MIN_MAX_SEGMENT_SIZE_KB,
            limits::MAX_MAX_SEGMENT_SIZE_KB,
        )
        .map_err(ApiError::invalid)?;
    }
    if let Some(i) = &req.idle_indexing {
        i.validate().map_err(ApiError::invalid)?;
    }
    if let Some(t) = &req.text_index {
        t.validate().map_err(ApiError::invalid)?;
    }
    requested_index(req)
        .check_bounds()
        .map_err(ApiError::invalid)
}

/// The query vector of a search: `vector`, or `query` embedded (both are
/// taken out of `req`). Errors: 422 when both or neither are given;
/// embedding errors.
async fn query_vector(
    s: &AppState,
    model: Option<&str>,
    req: &mut SearchRequest,
) -> Result<Vec<f32>, ApiError> {
    match (req.vector.take(), req.query.take()) {
        (Some(v), None) => Ok(v),
        (None, Some(q)) => Ok(embed(s, model, vec![q], |_| "query".into())
            .await?
            .remove(0)),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "give `query` (text) or `vector`, not both",
        )),
        (None, None) => Err(ApiError::invalid("give `query` (text) or `vector`")),
    }
}

/// One search; the caller has run `check_search` on `req`. `with_payload`
/// defaults to `payload_default` (true on this service's own routes,
/// false on Qdrant's path, as Qdrant does).
async fn run_search(
    s: &AppState,
    c: Arc<Collection>,
    mut req: SearchRequest,
    payload_default: bool,
) -> Result<SearchResponse, ApiError> {
    let t0 = Instant::now();
    let by_text = req.query.is_some();
    let model = c.config().embedding_model.clone();
    let mode = req.mode.unwrap_or_default();
    if mode != SearchMode::Dense {
        let text = req.query.clone().expect("check_search: a text query");
        let vector = match mode {
            SearchMode::Hybrid => Some(query_vector(s, model.as_deref(), &mut req).await?),
            _ => None,
        };
        let node = super::query::mode_tree(mode, &text, vector, &req)
            .expect("keyword and hybrid are trees");
        let parts = parts(req.with_vector, req.with_payload, payload_default);
        let hits = match super::query::run_tree(s, c, node, parts).await {
            // Say where a hybrid query's dimension comes from.
            Err(ApiError::Collection(CollectionError::DimensionMismatch {
                expected, got, ..
            })) => {
                return Err(ApiError::from(CollectionError::DimensionMismatch {
                    subject: "the text `query`, embedded by the model, gives a vector that".into(),
                    expected,
                    got,
                }))
            }
            r => r?,
        };
        return Ok(SearchResponse {
            results: hits.into_iter().map(|h| hit(h, parts)).collect(),
            took_ms: t0.elapsed().as_secs_f64() * 1000.0,
        });
    }
    let vector = query_vector(s, model.as_deref(), &mut req).await?;
    match search_vector(s, c, vector, req, t0, payload_default).await {
        // Say where a text query's dimension comes from.
        Err(ApiError::Collection(CollectionError::DimensionMismatch { expected, got, .. }))
            if by_text =>
        {
            Err(ApiError::from(CollectionError::DimensionMismatch {
                subject: "the text `query`, embedded by the model, gives a vector that".into(),
                expected,
                got,
            }))
        }
        r => r,
    }
}

/// One search for `vector` (the query resolved), timed from `t0`; the
/// collection search alone is observed in `index_search_duration_seconds`.
async fn search_vector(
    s: &AppState,
    c: Arc<Collection>,
    vector: Vec<f32>,
    req: SearchRequest,
    t0: Instant,
    payload_default: bool,
) -> Result<SearchResponse, ApiError> {
    let k = req.top_k.unwrap_or(DEFAULT_TOP_K);
    let params = SearchParams {
        ef: req.ef,
        nprobe: req.nprobe,
        exact: req.exact.unwrap_or(false),
    };
    let filter = req.filter;
    let parts = parts(req.with_vector, req.with_payload, payload_default);
    let timer = s.metrics.search.clone();
    // A short search runs here: handing it to a blocking thread and
    // waking this one again costs more CPU than the search itself.
    let short = c.is_short_search(&params, filter.is_some());
    let run = move || {
        let t = Instant::now();
        let hits = c.search_parts(&vector, k, filter.as_ref(), params, parts);
        timer.observe(t.elapsed().as_secs_f64());
        Ok(hits?)
    };
    let hits = if short { run()? } else { blocking(run).await? };
    Ok(SearchResponse {
        results: hits.into_iter().map(|h| hit(h, parts)).collect(),
        took_ms: t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Store documents by text: embeds them, then writes them in one operation.
/// Many documents are embedded in as many calls as the embedding service's
/// limits need; a failed call writes nothing. `collection` defaults to the
/// service's `default_collection`, created on first use (only once the
/// embedding succeeded); any other name must exist (404).
#[utoipa::path(post, path = "/embed", tag = "documents", request_body = EmbedDocumentsRequest,
    responses(
        (status = 200, body = EmbedDocumentsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "Embedding service unavailable, storage refusing writes, or the collection damaged; nothing was written", body = ErrorBody),
    ))]
async fn embed_documents(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedDocumentsRequest>,
) -> Res<EmbedDocumentsResponse> {
    let single = req.content.is_some();
    let docs = match (req.content, req.documents) {
        (Some(content), None) => vec![Document {
            content,
            metadata: req.metadata,
            id: req.id,
        }],
        (None, Some(d)) if req.metadata.is_none() && req.id.is_none() => d,
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "`metadata` and `id` go inside each document when `documents` is given",
            )
            .into())
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give `content` or `documents`, not both").into())
        }
        (None, None) => {
            return Err(ApiError::invalid("give `content` (one document) or `documents`").into())
        }
    };
    check_embed(&docs)?;
    let target = target(&s, req.collection)?;
    let texts: Vec<String> = docs.iter().map(|d| d.content.clone()).collect();
    let field = |i: usize| match i {
        _ if single => "content".to_string(),
        i => format!("documents[{i}].content"),
    };
    let model = target.embedding_model(&s);
    let vectors = embed(&s, model.as_deref(), texts, field).await?;
    let c = match target {
        Target::Existing(c) => c,
        Target::MissingDefault(name) => {
            let dim = vectors.first().map_or(0, Vec::len);
            create_default(&s, name, dim).await?
        }
    };
    let points: Vec<NewPoint> = docs
        .into_iter()
        .zip(vectors)
        .map(|(d, v)| NewPoint {
            id: d.id,
            vector: v,
            payload: d.metadata,
            content: Some(d.content),
        })
        .collect();
    let name = c.name().to_string();
    let (_, ids) = blocking(move || Ok(c.upsert(points)?)).await?;
    Ok(Json(EmbedDocumentsResponse {
        collection: name,
        ids,
    }))
}

/// Search by text (`query`) or `vector`, best first. `collection` defaults
/// to the service's `default_collection` (created on first use, empty);
/// any other name must exist (404).
#[utoipa::path(post, path = "/search", tag = "documents", request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn search(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Res<SearchResponse> {
    check_search(&req, "", None)?;
    let name = match target(&s, req.collection.clone())? {
        Target::Existing(c) => return Ok(Json(run_search(&s, c, req, true).await?)),
        Target::MissingDefault(name) => name,
    };
    // The default collection, not made yet: make it only for a search
    // that would succeed on it (a text query embedded, a vector of the
    // model's dimension).
    let t0 = Instant::now();
    let mut req = req;
    let by_text = req.query.is_some();
    let query_text = req.query.clone();
    let model = s.config.embedding_model.clone();
    let vector = query_vector(&s, model.as_deref(), &mut req).await?;
    let dim = if by_text {
        vector.len()
    } else {
        s.embedder
            .model_info(model.as_deref())
            .await
            .map_err(ApiError::from)?
            .dimension
    };
    if vector.len() != dim {
        return Err(ApiError::from(CollectionError::DimensionMismatch {
            subject: "the query vector".into(),
            expected: dim,
            got: vector.len(),
        })
        .into());
    }
    let c = create_default(&s, name, dim).await?;
    if req.mode.is_some_and(|m| m != SearchMode::Dense) {
        req.query = req.query.or(query_text);
        return Ok(Json(run_search(&s, c, req, true).await?));
    }
    Ok(Json(search_vector(&s, c, vector, req, t0, true).await?))
}

/// `POST /collections`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "my_collection", "dimension": 4, "metric": "cosine"}))]
pub struct CreateCollectionRequest {
    /// 1 to 64 of `A-Z a-z 0-9 _ -`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// 1 to 65536. Default: the embedding model's dimension.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    pub dimension: Option<usize>,
    #[serde(default)]
    pub metric: Option<Metric>,
    #[serde(default)]
    pub index: Option<IndexKind>,
    #[serde(default)]
    pub hnsw: Option<HnswSettings>,
    #[serde(default)]
    pub ivf: Option<IvfSettings>,
    #[serde(default)]
    pub quantization: Option<Quantization>,
    #[serde(default)]
    pub flush_threshold: Option<FlushThresholdInput>,
    #[serde(default)]
    pub fsync: Option<FsyncMode>,
    /// Seal and index the appendable segment once writes pause for
    /// `idle_ms` and it holds `indexing_threshold` live points (default
    /// 1,000 points after 5,000 ms; `indexing_threshold: 0` turns it off).
    #[serde(default)]
    pub idle_indexing: Option<IdleIndexing>,
    /// The largest sealed segment, in KiB of vectors (`dimension × 4`
    /// bytes per point), as Qdrant's `max_segment_size`: the appendable
    /// segment is sealed on reaching it (a segment exceeds it only by the
    /// points of the request that filled it), merges never exceed it. Bounds
    /// the memory and time of one segment's build. Default 2,000,000
    /// (about 1.3 million 384-dimension points); 1 to 1,073,741,824.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub max_segment_size: Option<usize>,
    /// The embedding service's model that embeds this collection's texts
    /// (`content`, text `query`): an alias or id its `GET /v1/models`
    /// lists. Default: `indexing.embedding_model`, else the embedding
    /// service's default model. The collection's `dimension` defaults to
    /// this model's, and must equal it when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "sentence-transformers/all-MiniLM-L6-v2")]
    pub embedding_model: Option<String>,
    /// The full-text index of each point's `content`, for keyword (BM25)
    /// and hybrid search: on by default with `k1` 1.2, `b` 0.75 and no
    /// stemmer. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_index: Option<TextIndexSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionDescription {
    pub name: String,
    pub dimension: usize,
    pub metric: Metric,
    /// Index settings: the kind and only the settings that apply to it.
    pub index: IndexDescription,
    /// The appendable segment is sealed and indexed after this many vectors.
    pub flush_threshold_vectors: usize,
    /// The appendable segment is also sealed and indexed once writes
    /// pause (see the create request's `idle_indexing`).
    pub idle_indexing: IdleIndexing,
    /// The largest sealed segment, in KiB of vectors (see the create
    /// request).
    pub max_segment_size: usize,
    /// The full-text index of `content` (keyword search); `enabled: false`
    /// when the collection has none.
    pub text_index: TextIndexSettings,
    /// Indexed payload fields (`PUT /collections/{name}/index`): each
    /// one's type and the points of sealed segments holding a value its
    /// index holds (the appendable segment is scanned, not indexed).
    pub payload_schema: std::collections::BTreeMap<String, PayloadSchemaInfo>,
    /// Live points.
    pub points: usize,
    /// Segments: sealed ones and the appendable one.
    pub segments: usize,
    /// Segments sealed (immutable, memory-mapped files).
    pub sealed_segments: usize,
    /// Segments sealed and waiting for (or in) their index build.
    pub building_segments: usize,
    /// Sealed segments whose index is built.
    pub indexed_segments: usize,
    /// Points in the appendable segment (searched by exact scan).
    pub appendable_points: usize,
    /// Bytes in the write-ahead log (operations not yet in sealed segments).
    pub wal_bytes: u64,
    /// Bytes of the collection's directory on disk.
    pub disk_bytes: u64,
    /// Number of the last operation written to the write-ahead log (each
    /// upsert, delete or payload change is one operation; see `operation`
    /// in upsert answers).
    pub last_operation: u64,
    /// Operations up to this number are in sealed segment files on disk,
    /// so the write-ahead log no longer needs them: a restart replays only
    /// `persisted_operation + 1 ..= last_operation` from the log. Every
    /// acknowledged operation is durable either way (the log is synced per
    /// `fsync`); the gap is how much a restart has to replay.
    pub persisted_operation: u64,
    /// The embedding service's model that embeds this collection's texts;
    /// absent: the embedding service's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
}

/// One indexed payload field of a collection's description.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PayloadSchemaInfo {
    pub data_type: crate::index::payload_index::PayloadFieldType,
    /// Points of sealed segments holding at least one indexed value
    /// (deleted points included until a vacuum).
    pub points: u64,
}

/// A collection's index settings as described: the settings of other index
/// kinds are left out (`flat` has no `hnsw`, `ivf` or `quantization`;
/// `hnsw` no `ivf`; `ivf_pq` no `hnsw`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = IndexSettings)]
pub struct IndexDescription {
    /// `hnsw`, `ivf_pq` or `flat`.
    pub kind: IndexKind,
    /// HNSW graph settings (kind `hnsw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub hnsw: Option<HnswSettings>,
    /// IVF list settings (kind `ivf_pq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ivf: Option<IvfSettings>,
    /// How vectors are stored for traversal (kinds `hnsw` and `ivf_pq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub quantization: Option<Quantization>,
    /// Segments with fewer points are only scanned.
    pub min_points: usize,
    /// Filtered queries matching less than this share of a segment scan.
    pub exact_scan_below: f32,
}

impl From<IndexSettings> for IndexDescription {
    fn from(i: IndexSettings) -> Self {
        let (hnsw, ivf) = match i.kind {
            IndexKind::Hnsw => (true, false),
            IndexKind::IvfPq => (false, true),
            IndexKind::Flat => (false, false),
        };
        Self {
            kind: i.kind,
            hnsw: hnsw.then_some(i.hnsw),
            ivf: ivf.then_some(i.ivf),
            quantization: (i.kind != IndexKind::Flat).then_some(i.quantization),
            min_points: i.min_points,
            exact_scan_below: i.exact_scan_below,
        }
    }
}

fn describe(c: &Collection) -> CollectionDescription {
    let cfg = c.config();
    let i: CollectionInfo = c.info();
    CollectionDescription {
        name: cfg.name.clone(),
        dimension: cfg.dimension,
        metric: cfg.metric,
        index: cfg.index.into(),
        flush_threshold_vectors: cfg.flush_threshold.vectors,
        idle_indexing: cfg.idle_indexing,
        max_segment_size: cfg.max_segment_size,
        text_index: cfg.text_index.clone(),
        payload_schema: c
            .payload_schema()
            .into_iter()
            .map(|(f, i)| {
                (
                    f,
                    PayloadSchemaInfo {
                        data_type: i.data_type,
                        points: i.points,
                    },
                )
            })
            .collect(),
        points: i.points,
        segments: i.segments,
        sealed_segments: i.sealed_segments,
        building_segments: i.building_segments,
        indexed_segments: i.indexed_segments,
        appendable_points: i.appendable_points,
        wal_bytes: i.wal_bytes,
        disk_bytes: c.disk_bytes(),
        last_operation: i.last_op,
        persisted_operation: i.persisted_op,
        embedding_model: cfg.embedding_model.clone(),
    }
}

/// Create a collection.
#[utoipa::path(post, path = "/collections", tag = "collections", request_body = CreateCollectionRequest,
    responses(
        (status = 201, body = CollectionDescription),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn create_collection(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateCollectionRequest>,
) -> Result<(StatusCode, Json<CollectionDescription>), ErrorBody> {
    check_create(&req)?;
    let model = req
        .embedding_model
        .clone()
        .or_else(|| s.config.embedding_model.clone());
    let dim = match (req.dimension, &req.embedding_model) {
        (Some(d), None) => d,
        // The model's dimension; a named model must also be served and
        // agree with a given dimension.
        (d, _) => {
            let m = s
                .embedder
                .model_info(model.as_deref())
                .await
                .map_err(ApiError::from)?;
            match d {
                Some(d) if d != m.dimension => {
                    return Err(ApiError::Invalid(
                        ErrorCode::DimensionMismatch,
                        format!(
                            "`dimension` is {d} but the embedding model `{}` gives vectors of \
                             {}; leave `dimension` out to use the model's",
                            m.alias, m.dimension
                        ),
                    )
                    .into())
                }
                _ => m.dimension,
            }
        }
    };
    let cfg = collection_config(&s.config, &req, dim);
    let st = s.storage.clone();
    let c = blocking(move || Ok(st.create(cfg)?)).await?;
    Ok((StatusCode::CREATED, Json(describe(&c))))
}

/// List collections.
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, body = Vec<CollectionDescription>), (status = 401, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn list_collections(State(s): State<AppState>) -> Res<Vec<CollectionDescription>> {
    let st = s.storage.clone();
    Ok(Json(
        blocking(move || Ok(st.list().iter().map(|c| describe(c)).collect())).await?,
    ))
}

/// A collection's settings, points, segments and index build state.
#[utoipa::path(get, path = "/collections/{name}", tag = "collections", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")),
    responses((status = 200, body = CollectionDescription), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "The collection is damaged", body = ErrorBody)))]
async fn get_collection(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Res<CollectionDescription> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    Ok(Json(blocking(move || Ok(describe(&c))).await?))
}

/// Delete a collection and its data.
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "The disk refuses the removal", body = ErrorBody)))]
async fn delete_collection(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ErrorBody> {
    let st = s.storage.clone();
    blocking(move || Ok(st.delete(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Insert or replace points; points with `content` and no `vector` are embedded (in as many calls as the embedding service's limits need; a failed call writes nothing).
#[utoipa::path(put, path = "/collections/{name}/points", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = UpsertPointsRequest,
    responses(
        (status = 200, body = UpsertPointsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn upsert_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpsertPointsRequest>,
) -> Res<UpsertPointsResponse> {
    check_upsert(&req)?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let mut to_embed = Vec::new();
    for (i, p) in req.points.iter().enumerate() {
        match (&p.vector, &p.content) {
            (None, Some(t)) => to_embed.push((i, t.clone())),
            (None, None) => {
                return Err(
                    ApiError::invalid(format!("point {i} needs a `vector` or `content`")).into(),
                )
            }
            _ => {}
        }
    }
    let mut vectors: Vec<Option<Vec<f32>>> = req.points.iter().map(|p| p.vector.clone()).collect();
    if !to_embed.is_empty() {
        let texts = to_embed.iter().map(|(_, t)| t.clone()).collect();
        let field = |k: usize| format!("points[{}].content", to_embed[k].0);
        let model = c.config().embedding_model.clone();
        let embedded = embed(&s, model.as_deref(), texts, field).await?;
        for ((i, _), v) in to_embed.into_iter().zip(embedded) {
            vectors[i] = Some(v);
        }
    }
    let points: Vec<NewPoint> = req
        .points
        .into_iter()
        .zip(vectors)
        .map(|(p, v)| NewPoint {
            id: p.id,
            vector: v.expect("every point has a vector now"),
            payload: p.metadata,
            content: p.content,
        })
        .collect();
    let (operation, ids) = blocking(move || Ok(c.upsert(points)?)).await?;
    Ok(Json(UpsertPointsResponse { ids, operation }))
}

/// How `{id}` in a point path is read (the OpenAPI description of the
/// parameter; the rule is `PointId::from_path`).
const ID_PATH_DOC: &str = "Point id. The canonical decimal form of an unsigned 64-bit integer \
(digits only, no sign, no leading zeros, at most 18446744073709551615) is an integer id; \
anything else (`007`, `+7`, `-1`, `18446744073709551616`, a UUID) is a string id. \
Percent-encode reserved characters (`a%2Fb` is the string `a/b`). With `?id_type=string` \
any segment is a string id (`/points/424242?id_type=string` is the string \"424242\"); \
with `?id_type=integer` it must be an integer. Or use the body routes \
(`POST /collections/{name}/points` with `ids`, `POST .../points/delete`), which take any id as JSON.";

/// One point, by default with its vector and payload (`?with_vector=false`,
/// `?with_payload=false` leave them out); 404 when absent. An all-digit
/// string id needs `?id_type=string`; see the `id` parameter.
#[utoipa::path(get, path = "/collections/{name}/points/{id}", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"), ("id" = String, Path, description = ID_PATH_DOC, min_length = 1, example = "1"), PointGetQuery),
    responses((status = 200, body = PointOutput), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "The collection is damaged", body = ErrorBody)))]
async fn get_point(State(s): State<AppState>, q: PointGet) -> Res<PointOutput> {
    let PointGet { name, id, .. } = q;
    // Qdrant's single-point read returns the vector too.
    let parts = parts(Some(q.with_vector.unwrap_or(true)), q.with_payload, true);
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let p = blocking(move || {
        let mut v = c.get_parts(std::slice::from_ref(&id), parts)?;
        v.pop().ok_or(ApiError::Collection(
            crate::collection::CollectionError::PointNotFound(id),
        ))
    })
    .await?;
    Ok(Json(point_out(p, parts)))
}

/// Set (or with `merge`, merge into) a point's metadata; the vector is untouched. See the `id` parameter for how the id is read.
#[utoipa::path(patch, path = "/collections/{name}/points/{id}", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"), ("id" = String, Path, description = ID_PATH_DOC, min_length = 1, example = "1"), PointIdQuery), request_body = PatchPointRequest,
    responses(
        (status = 200, body = PointOutput),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn patch_point(
    State(s): State<AppState>,
    PointPath { name, id }: PointPath,
    ApiJson(req): ApiJson<PatchPointRequest>,
) -> Res<PointOutput> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let p = blocking(move || {
        c.set_payload(
            std::slice::from_ref(&id),
            req.metadata,
            req.merge.unwrap_or(false),
        )?;
        c.get_parts(std::slice::from_ref(&id), ReadParts::PAYLOAD)?
            .pop()
            .ok_or(ApiError::Collection(
                crate::collection::CollectionError::PointNotFound(id),
            ))
    })
    .await?;
    Ok(Json(point_out(p, ReadParts::PAYLOAD)))
}

/// Delete one point. See the `id` parameter for how the id is read.
#[utoipa::path(delete, path = "/collections/{name}/points/{id}", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"), ("id" = String, Path, description = ID_PATH_DOC, min_length = 1, example = "1"), PointIdQuery),
    responses((status = 200, body = DeletePointsResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_point(
    State(s): State<AppState>,
    PointPath { name, id }: PointPath,
) -> Res<DeletePointsResponse> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let deleted = blocking(move || Ok(c.delete(vec![id])?)).await?;
    Ok(Json(DeletePointsResponse { deleted }))
}

/// Points by id (integer or string ids as JSON), in the order asked;
/// absent ids are left out.
#[utoipa::path(post, path = "/collections/{name}/points", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = GetPointsRequest,
    responses(
        (status = 200, body = GetPointsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn get_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<GetPointsRequest>,
) -> Res<GetPointsResponse> {
    check_get(&req)?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let parts = parts(req.with_vector, req.with_payload, true);
    let points = blocking(move || Ok(c.get_parts(&req.ids, parts)?)).await?;
    Ok(Json(GetPointsResponse {
        points: points.into_iter().map(|p| point_out(p, parts)).collect(),
    }))
}

/// Delete points by ids or by filter.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = DeletePointsRequest,
    responses(
        (status = 200, body = DeletePointsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn delete_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<DeletePointsRequest>,
) -> Res<DeletePointsResponse> {
    check_delete(&req)?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let deleted = match (req.ids, req.filter) {
        (Some(ids), None) => blocking(move || Ok(c.delete(ids)?)).await?,
        (None, Some(f)) => blocking(move || Ok(c.delete_by_filter(&f)?)).await?,
        _ => return Err(ApiError::invalid("give `ids` or `filter`").into()),
    };
    Ok(Json(DeletePointsResponse { deleted }))
}

/// Page through points in id order; stable under concurrent writes.
#[utoipa::path(post, path = "/collections/{name}/points/scroll", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = ScrollRequest,
    responses(
        (status = 200, body = ScrollResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "The collection is damaged", body = ErrorBody),
    ))]
async fn scroll_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScrollRequest>,
) -> Res<ScrollResponse> {
    check_scroll(&req)?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let limit = req.limit.unwrap_or(DEFAULT_SCROLL_LIMIT);
    let parts = parts(req.with_vector, req.with_payload, true);
    let (points, next) = blocking(move || {
        Ok(c.scroll_parts(req.filter.as_ref(), limit, req.cursor.as_ref(), parts)?)
    })
    .await?;
    Ok(Json(ScrollResponse {
        points: points.into_iter().map(|p| point_out(p, parts)).collect(),
        next_cursor: next,
    }))
}

/// Count points (matching a filter).
#[utoipa::path(post, path = "/collections/{name}/points/count", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = CountRequest,
    responses(
        (status = 200, body = CountResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "The collection is damaged", body = ErrorBody),
    ))]
async fn count_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<CountRequest>,
) -> Res<CountResponse> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let count = blocking(move || Ok(c.count(req.filter.as_ref())?)).await?;
    Ok(Json(CountResponse { count }))
}

/// Search one collection by text or vector.
#[utoipa::path(post, path = "/collections/{name}/search", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn search_collection(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Res<SearchResponse> {
    check_search(&req, "", Some(&name))?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    Ok(Json(run_search(&s, c, req, true).await?))
}

/// Search one collection by text or vector, at Qdrant's path: the same
/// request and answer as `/collections/{name}/search`, except that
/// `with_payload` defaults to false, as in Qdrant.
#[utoipa::path(post, path = "/collections/{name}/points/search", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn search_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Res<SearchResponse> {
    check_search(&req, "", Some(&name))?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    Ok(Json(run_search(&s, c, req, false).await?))
}

/// Several searches in one call, answered in order.
#[utoipa::path(post, path = "/collections/{name}/search/batch", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`; `documents` is the default collection, made by the first `POST /embed` or `POST /search`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = BatchSearchRequest,
    responses(
        (status = 200, body = BatchSearchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn search_batch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<BatchSearchRequest>,
) -> Res<BatchSearchResponse> {
    check_batch_search(&req, &name)?;
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let mut results = Vec::with_capacity(req.searches.len());
    for r in req.searches {
        results.push(run_search(&s, c.clone(), r, true).await?);
    }
    Ok(Json(BatchSearchResponse { results }))
}

#[derive(Serialize, Deserialize, ToSchema)]
struct Status {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, description = "Up", body = Status, example = json!({"status": "ok"}))))]
async fn health() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
        detail: None,
    })
}

/// Data opened and the embedding service reachable.
#[utoipa::path(get, path = "/ready", tag = "service", responses(
    (status = 200, description = "Ready", body = Status, example = json!({"status": "ready"})),
    (status = 503, description = "The embedding service cannot be reached", body = Status,
        example = json!({"status": "embedding_unavailable", "detail": "embedding service unavailable: connection refused"})),
))]
async fn ready(State(s): State<AppState>) -> (StatusCode, Json<Status>) {
    match s.embedder.info().await {
        Ok(_) => (
            StatusCode::OK,
            Json(Status {
                status: "ready".into(),
                detail: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Status {
                status: "embedding_unavailable".into(),
                detail: Some(e.to_string()),
            }),
        ),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", body = String), (status = 401, body = ErrorBody)))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = s.storage.clone();
    let m = s.metrics.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let cs = st.list();
        m.collections.set(cs.len() as i64);
        m.collections_damaged.set(st.damaged().len() as i64);
        let infos: Vec<CollectionInfo> = cs.iter().map(|c| c.info()).collect();
        m.points.set(infos.iter().map(|i| i.points as i64).sum());
        m.segments
            .set(infos.iter().map(|i| i.segments as i64).sum());
        m.wal_bytes
            .set(infos.iter().map(|i| i.wal_bytes as i64).sum());
    })
    .await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    s.metrics
        .requests
        .with_label_values(&[&route, resp.status().as_str()])
        .inc();
    s.metrics
        .latency
        .with_label_values(&[&route])
        .observe(t0.elapsed().as_secs_f64());
    resp
}

/// The OpenAPI document of every route (no state needed).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_with_spec().1
}

fn routes_with_spec() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(embed_documents))
        .routes(routes!(search))
        .routes(routes!(create_collection, list_collections))
        .routes(routes!(get_collection, delete_collection))
        .routes(routes!(upsert_points, get_points))
        .routes(routes!(get_point, patch_point, delete_point))
        .routes(routes!(delete_points))
        .routes(routes!(scroll_points))
        .routes(routes!(count_points))
        .routes(routes!(search_collection))
        .routes(routes!(search_points))
        .routes(routes!(search_batch))
        .routes(routes!(super::query::query_points))
        .routes(routes!(super::query::query_points_qdrant))
        .routes(routes!(super::field_index::create_field_index))
        .routes(routes!(super::field_index::delete_field_index))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .merge(super::snapshots::routes())
        .merge(shared::http::root_routes(
            "indexing-service",
            env!("CARGO_PKG_VERSION"),
        ))
        .split_for_parts();
    super::spec::finish(&mut spec);
    (api, spec)
}

/// The router, with `/openapi.json` and Swagger UI at `/docs`.
pub fn router(state: AppState) -> axum::Router {
    let (api, spec) = routes_with_spec();
    // Replication sits inside authentication, the body limit, JSON errors,
    // CORS and the access log: a follower forwards or waits only for
    // requests the service would take, and its answers (forwarded ones
    // included) carry a request id and an access-log line.
    let api = api.layer(axum::middleware::from_fn_with_state(
        state.replica.clone(),
        crate::replication::middleware::layer,
    ));
    shared::http::with_spec_docs_and_auth(
        api,
        spec,
        "indexing-service",
        state.config.api_key.as_deref(),
        state.config.body_limit_bytes,
        &state.config.http,
    )
    .layer(axum::middleware::from_fn_with_state(state.clone(), track))
    .with_state(state)
}
