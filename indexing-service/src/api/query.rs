//! HTTP for the Query API (`POST /collections/{name}/query`, and Qdrant's
//! path `…/points/query`) and the `mode` of `POST /search`: checks the
//! request, embeds the text of dense queries (all in one call), then runs
//! the tree in `collection::query`.

use super::handlers::{blocking, embed, hit, parts, Res, DEFAULT_TOP_K};
use super::{ApiError, AppState};
use crate::collection::query::{Fusion, NodeQuery, QueryNode, Scoring};
use crate::collection::{Collection, ReadParts, ScoredPoint};
use crate::index::segment_index::SearchParams;
use crate::text::bm25::Bm25Params;
use axum::extract::{Path, State};
use axum::Json;
use shared::http::ApiJson;
use shared::wire::indexing::{Filter, SearchRequest};
use shared::wire::limits::{self, check_range};
use shared::wire::query::*;
use shared::ErrorBody;
use std::sync::Arc;
use std::time::Instant;

/// Query points: one dense or BM25 search, or several (`prefetch`) fused
/// by reciprocal rank (`rrf`) or distribution-based score fusion (`dbsf`),
/// or re-scored by a dense or BM25 query. Text in a dense query is
/// embedded by the collection's model.
#[utoipa::path(post, path = "/collections/{name}/query", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn query_points(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Res<QueryResponse> {
    Ok(Json(run(&s, &name, req).await?))
}

/// The Query API at Qdrant's path: the same request and answer as
/// `/collections/{name}/query`.
#[utoipa::path(post, path = "/collections/{name}/points/query", tag = "points", params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")), request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn query_points_qdrant(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Res<QueryResponse> {
    Ok(Json(run(&s, &name, req).await?))
}

async fn run(s: &AppState, name: &str, req: QueryRequest) -> Result<QueryResponse, ApiError> {
    let t0 = Instant::now();
    if let Some(l) = req.limit {
        check_range("limit", l, limits::MIN_TOP_K, limits::MAX_TOP_K).map_err(ApiError::invalid)?;
    }
    if let Some(o) = req.offset {
        let l = req.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if o.saturating_add(l) > limits::MAX_TOP_K {
            return Err(ApiError::invalid(format!(
                "`offset` + `limit` must be at most {}, got {o} + {l}",
                limits::MAX_TOP_K
            )));
        }
    }
    let root = req.root();
    let mut nodes = 0;
    check_node(&root, "", 0, &mut nodes)?;
    let c = s.storage.get(name).map_err(ApiError::from)?;
    let node = resolve(s, &c, &root).await?;
    let parts = parts(req.with_vector, req.with_payload, true);
    let hits = run_tree(s, c, node, parts).await?;
    Ok(QueryResponse {
        points: hits
            .into_iter()
            .skip(req.offset.unwrap_or(0))
            .map(|h| hit(h, parts))
            .collect(),
        took_ms: t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Runs a resolved tree on the blocking pool.
pub(super) async fn run_tree(
    s: &AppState,
    c: Arc<Collection>,
    node: QueryNode,
    parts: ReadParts,
) -> Result<Vec<ScoredPoint>, ApiError> {
    let timer = s.metrics.search.clone();
    blocking(move || {
        let t = Instant::now();
        let hits = c.query(&node, parts);
        timer.observe(t.elapsed().as_secs_f64());
        Ok(hits?)
    })
    .await
}

/// Checks one node of the tree at `at` (`prefetch[1].` ...), `depth`
/// levels of `prefetch` below the root, counting nodes. Errors: 422 naming
/// the field and the fault.
fn check_node(n: &Prefetch, at: &str, depth: usize, nodes: &mut usize) -> Result<(), ApiError> {
    let field = |f: &str| format!("{at}{f}");
    *nodes += 1;
    if *nodes > MAX_QUERY_NODES {
        return Err(ApiError::invalid(format!(
            "a query holds at most {MAX_QUERY_NODES} queries in all (prefetches included)"
        )));
    }
    if depth > MAX_QUERY_DEPTH {
        return Err(ApiError::invalid(format!(
            "`{}` is nested more than {MAX_QUERY_DEPTH} levels of `prefetch` deep",
            at.trim_end_matches('.')
        )));
    }
    limits::check_len(&field("prefetch"), n.prefetch.len(), MAX_PREFETCH)
        .map_err(ApiError::invalid)?;
    if let Some(l) = n.limit {
        check_range(&field("limit"), l, limits::MIN_TOP_K, limits::MAX_TOP_K)
            .map_err(ApiError::invalid)?;
    }
    if let Some(p) = n.params {
        if let Some(ef) = p.ef {
            check_range(&field("params.ef"), ef, limits::MIN_EF, limits::MAX_EF)
                .map_err(ApiError::invalid)?;
        }
        if let Some(np) = p.nprobe {
            check_range(
                &field("params.nprobe"),
                np,
                limits::MIN_NPROBE,
                limits::MAX_NPROBE,
            )
            .map_err(ApiError::invalid)?;
        }
    }
    if let Some(b) = n.bm25 {
        crate::text::check_bm25(
            b.k1.unwrap_or(crate::text::DEFAULT_K1),
            b.b.unwrap_or(crate::text::DEFAULT_B),
            &field("bm25."),
        )
        .map_err(ApiError::invalid)?;
    }
    if let Some(t) = n.score_threshold {
        if !t.is_finite() {
            return Err(ApiError::invalid(format!(
                "`{}` must be a finite number",
                field("score_threshold")
            )));
        }
    }
    if let Some(f) = &n.filter {
        crate::index::filter::validate(f)
            .map_err(|e| ApiError::invalid(format!("`{}`: {e}", field("filter"))))?;
    }
    let using = n.using.unwrap_or_default();
    match (&n.query, n.prefetch.is_empty()) {
        (None, true) => {
            return Err(ApiError::invalid(format!(
                "give `{}`: a vector, {{\"text\": \"...\"}}, or with `prefetch` a fusion",
                field("query")
            )))
        }
        (None, false) => {
            return Err(ApiError::invalid(format!(
                "give `{}` to say how the `prefetch` results are combined: \
                 {{\"fusion\": \"rrf\"}}, {{\"fusion\": \"dbsf\"}}, or a vector or text to re-score them",
                field("query")
            )))
        }
        (Some(QueryInput::Fusion { .. } | QueryInput::Rrf { .. }), true) => {
            return Err(ApiError::invalid(format!(
                "`{}` is a fusion, which combines the results of `prefetch`; give `{}`",
                field("query"),
                field("prefetch")
            )))
        }
        (Some(QueryInput::Fusion { .. } | QueryInput::Rrf { .. }), false) if n.using.is_some() => {
            return Err(ApiError::invalid(format!(
                "`{}` names the index a vector or text query searches; `{}` is a fusion, \
                 which searches none: leave `using` out",
                field("using"),
                field("query")
            )))
        }
        (Some(QueryInput::Rrf { rrf }), false) => {
            if let Some(k) = rrf.k {
                if !(k.is_finite() && (1.0..=1000.0).contains(&k)) {
                    return Err(ApiError::invalid(format!(
                        "`{}` must be between 1 and 1000, got {k}",
                        field("query.rrf.k")
                    )));
                }
            }
        }
        (Some(QueryInput::Vector(_)), _) if using == Using::Bm25 => {
            return Err(ApiError::invalid(format!(
                "`{}` is a vector, but `{}` is `bm25`, which takes {{\"text\": \"...\"}}",
                field("query"),
                field("using")
            )))
        }
        _ => {}
    }
    let bm25_query = using == Using::Bm25 && matches!(n.query, Some(QueryInput::Text { .. }));
    if n.bm25.is_some() && !bm25_query {
        return Err(ApiError::invalid(format!(
            "`{}` sets BM25 parameters, for a text query with `using: \"bm25\"`; this query is not one",
            field("bm25")
        )));
    }
    for (i, p) in n.prefetch.iter().enumerate() {
        check_node(p, &format!("{at}prefetch[{i}]."), depth + 1, nodes)?;
    }
    Ok(())
}

/// Turns a checked request tree into a query tree, embedding the text of
/// every dense query in one call to the embedding service. Errors:
/// embedding errors (422/413/503).
async fn resolve(s: &AppState, c: &Collection, root: &Prefetch) -> Result<QueryNode, ApiError> {
    let mut texts: Vec<(String, String)> = Vec::new();
    collect_texts(root, "", &mut texts);
    let vectors = if texts.is_empty() {
        Vec::new()
    } else {
        let model = c.config().embedding_model.clone();
        let fields: Vec<String> = texts.iter().map(|(f, _)| f.clone()).collect();
        embed(
            s,
            model.as_deref(),
            texts.into_iter().map(|(_, t)| t).collect(),
            |i| fields[i].clone(),
        )
        .await?
    };
    Ok(build(root, &mut vectors.into_iter()))
}

/// The texts of dense queries, in tree order, with their field names.
fn collect_texts(n: &Prefetch, at: &str, out: &mut Vec<(String, String)>) {
    if let (Some(QueryInput::Text { text }), Using::Dense) = (&n.query, n.using.unwrap_or_default())
    {
        out.push((format!("{at}query.text"), text.clone()));
    }
    for (i, p) in n.prefetch.iter().enumerate() {
        collect_texts(p, &format!("{at}prefetch[{i}]."), out);
    }
}

/// Builds the node, taking embedded vectors from `vectors` in the order
/// [`collect_texts`] listed their texts.
fn build(n: &Prefetch, vectors: &mut impl Iterator<Item = Vec<f32>>) -> QueryNode {
    let using = n.using.unwrap_or_default();
    let params = n.params.unwrap_or_default();
    let dense = |vector: Vec<f32>| Scoring::Dense {
        vector,
        params: SearchParams {
            ef: params.ef,
            nprobe: params.nprobe,
            exact: params.exact.unwrap_or(false),
        },
    };
    let bm25 = n.bm25.map(|b| Bm25Params {
        k1: b.k1.unwrap_or(crate::text::DEFAULT_K1),
        b: b.b.unwrap_or(crate::text::DEFAULT_B),
    });
    let query = match n.query.clone().expect("checked: every node has a query") {
        QueryInput::Vector(v) => NodeQuery::Score(dense(v)),
        QueryInput::Text { text } => match using {
            Using::Dense => {
                NodeQuery::Score(dense(vectors.next().expect("one vector per dense text")))
            }
            Using::Bm25 => NodeQuery::Score(Scoring::Bm25 { text, params: bm25 }),
        },
        QueryInput::Fusion {
            fusion: FusionKind::Rrf,
        } => NodeQuery::Fuse(Fusion::Rrf { k: DEFAULT_RRF_K }),
        QueryInput::Fusion {
            fusion: FusionKind::Dbsf,
        } => NodeQuery::Fuse(Fusion::Dbsf),
        QueryInput::Rrf { rrf } => NodeQuery::Fuse(Fusion::Rrf {
            k: rrf.k.unwrap_or(DEFAULT_RRF_K),
        }),
    };
    let prefetch = n.prefetch.iter().map(|p| build(p, vectors)).collect();
    QueryNode {
        prefetch,
        query,
        filter: n.filter.clone(),
        limit: n.limit.unwrap_or(DEFAULT_QUERY_LIMIT),
        score_threshold: n.score_threshold,
    }
}

/// Depth of each list a `hybrid` search fuses: enough below the top for
/// reciprocal rank fusion to find points ranked well in one list only.
pub(super) fn hybrid_depth(top_k: usize) -> usize {
    top_k.max(50)
}

/// A `keyword` or `hybrid` search of `POST /search` (and the collection
/// search routes) as a query tree: BM25 alone, or BM25 and the dense
/// `vector` (the embedded text) fused by RRF. `None` for `dense`.
pub(super) fn mode_tree(
    mode: SearchMode,
    text: &str,
    vector: Option<Vec<f32>>,
    req: &SearchRequest,
) -> Option<QueryNode> {
    let k = req.top_k.unwrap_or(DEFAULT_TOP_K);
    let filter: Option<Filter> = req.filter.clone();
    let bm25 = |limit: usize| QueryNode {
        prefetch: Vec::new(),
        query: NodeQuery::Score(Scoring::Bm25 {
            text: text.to_string(),
            params: None,
        }),
        filter: None,
        limit,
        score_threshold: None,
    };
    match mode {
        SearchMode::Dense => None,
        SearchMode::Keyword => Some(QueryNode { filter, ..bm25(k) }),
        SearchMode::Hybrid => {
            let depth = hybrid_depth(k);
            let dense = QueryNode {
                prefetch: Vec::new(),
                query: NodeQuery::Score(Scoring::Dense {
                    vector: vector.expect("hybrid embeds the text"),
                    params: SearchParams {
                        ef: req.ef,
                        nprobe: req.nprobe,
                        exact: req.exact.unwrap_or(false),
                    },
                }),
                filter: None,
                limit: depth,
                score_threshold: None,
            };
            Some(QueryNode {
                prefetch: vec![dense, bm25(depth)],
                query: NodeQuery::Fuse(Fusion::Rrf { k: DEFAULT_RRF_K }),
                filter,
                limit: k,
                score_threshold: None,
            })
        }
    }
}
