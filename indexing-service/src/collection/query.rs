//! The Query API's evaluation: a tree whose leaves search one index (dense
//! vectors, or BM25 over the document text) and whose inner nodes fuse the
//! lists their `prefetch` children return (reciprocal rank fusion,
//! distribution-based score fusion) or re-score their union with a dense
//! or BM25 query. After Qdrant's Query API (`prefetch`, `query`, `fusion`).
//!
//! What holds:
//! - A node's filter is its own and every enclosing node's, all required
//!   (the outer filter narrows every prefetch, as in Qdrant).
//! - Every list is best first. Fused scores are higher-better whatever
//!   the metric: RRF reads only ranks; DBSF reads euclidean distances
//!   negated.
//! - Text is resolved before this layer: a dense query arrives as a
//!   vector (the API embeds text first); a BM25 query as text.

use super::{Collection, CollectionError, ReadParts, Result, ScoredPoint};
use crate::index::segment_index::SearchParams;
use crate::text::bm25::Bm25Params;
use shared::wire::indexing::{Condition, Filter, Metric, PointId};
use std::collections::{HashMap, HashSet};

/// What scores the points of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Scoring {
    /// Nearest to `vector` (dimension of the collection).
    Dense {
        vector: Vec<f32>,
        params: SearchParams,
    },
    /// BM25 of `text` over `content`; `params` None: the collection's.
    Bm25 {
        text: String,
        params: Option<Bm25Params>,
    },
}

/// How a node combines its children's lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// `Σ 1 / (k + rank)` over the lists a point is in, rank from 1
    /// (Cormack, Clarke & Büttcher 2009).
    Rrf { k: f32 },
    /// Each list's scores mapped linearly from `[μ − 3σ, μ + 3σ]` onto
    /// `[0, 1]` and clipped (a list whose scores are all equal maps to
    /// 0.5), then summed over the lists a point is in.
    Dbsf,
}

/// A node's query.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeQuery {
    /// Score the points: the whole collection for a leaf, the union of
    /// the children's results for an inner node (a re-score).
    Score(Scoring),
    /// Fuse the children's lists (inner nodes only).
    Fuse(Fusion),
}

/// One node of a query tree.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryNode {
    pub prefetch: Vec<QueryNode>,
    pub query: NodeQuery,
    pub filter: Option<Filter>,
    /// Results kept (≥ 1).
    pub limit: usize,
    /// Drop results worse than this (below for similarities, BM25 and
    /// fused scores; above for euclidean distances).
    pub score_threshold: Option<f32>,
}

/// A node's results, best first, and whether its scores are distances
/// (lower is better).
struct Ranked {
    hits: Vec<ScoredPoint>,
    lower_is_better: bool,
}

/// `outer` and `own`, both required.
fn and(outer: Option<&Filter>, own: Option<&Filter>) -> Option<Filter> {
    match (outer, own) {
        (None, None) => None,
        (Some(f), None) | (None, Some(f)) => Some(f.clone()),
        (Some(a), Some(b)) => Some(Filter {
            must: vec![Condition::Filter(a.clone()), Condition::Filter(b.clone())],
            should: Vec::new(),
            must_not: Vec::new(),
        }),
    }
}

/// Fuses `lists` (each best first); the result is best first, ties by
/// first appearance. Points are told apart by id.
pub fn fuse(lists: &[(Vec<ScoredPoint>, bool)], how: Fusion) -> Vec<ScoredPoint> {
    let mut score: HashMap<PointId, f64> = HashMap::new();
    let mut first: Vec<ScoredPoint> = Vec::new();
    let mut add = |p: &ScoredPoint, s: f64| {
        let e = score.entry(p.point.id.clone()).or_insert_with(|| {
            first.push(p.clone());
            0.0
        });
        *e += s;
    };
    for (hits, lower_is_better) in lists {
        match how {
            Fusion::Rrf { k } => {
                for (rank, p) in hits.iter().enumerate() {
                    add(p, 1.0 / (f64::from(k) + rank as f64 + 1.0));
                }
            }
            Fusion::Dbsf => {
                let vals: Vec<f64> = hits
                    .iter()
                    .map(|p| {
                        let s = f64::from(p.score);
                        if *lower_is_better {
                            -s
                        } else {
                            s
                        }
                    })
                    .collect();
                if vals.is_empty() {
                    continue;
                }
                let n = vals.len() as f64;
                let mean = vals.iter().sum::<f64>() / n;
                let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                for (p, v) in hits.iter().zip(&vals) {
                    let norm = if sd > 0.0 {
                        ((v - (mean - 3.0 * sd)) / (6.0 * sd)).clamp(0.0, 1.0)
                    } else {
                        0.5
                    };
                    add(p, norm);
                }
            }
        }
    }
    let mut out: Vec<(usize, ScoredPoint)> = first.into_iter().enumerate().collect();
    for (_, p) in &mut out {
        p.score = score[&p.point.id] as f32;
    }
    out.sort_by(|(ia, a), (ib, b)| b.score.total_cmp(&a.score).then(ia.cmp(ib)));
    out.into_iter().map(|(_, p)| p).collect()
}

impl Collection {
    /// Runs a query tree and returns the root's results, best first, with
    /// the `parts` asked for. Scores: the root query's (similarity or
    /// distance for dense, BM25, or the fused score).
    ///
    /// Errors: `InvalidQuery` for a tree [`check_tree`] refuses;
    /// `DimensionMismatch` / `InvalidVector` for a dense query;
    /// `NoTextIndex` for BM25 on a collection without a text index;
    /// `InvalidFilter`; `Storage` when a record cannot be read.
    pub fn query(&self, root: &QueryNode, parts: ReadParts) -> Result<Vec<ScoredPoint>> {
        check_tree(root)?;
        let mut hits = self.run_node(root, None, parts)?.hits;
        if !parts.vector {
            for h in &mut hits {
                h.point.vector = Vec::new();
            }
        }
        Ok(hits)
    }

    fn run_node(&self, n: &QueryNode, outer: Option<&Filter>, parts: ReadParts) -> Result<Ranked> {
        let filter = and(outer, n.filter.as_ref());
        let metric = self.config().metric;
        let mut ranked = if n.prefetch.is_empty() {
            match &n.query {
                NodeQuery::Score(Scoring::Dense { vector, params }) => Ranked {
                    hits: self.search_parts(vector, n.limit, filter.as_ref(), *params, parts)?,
                    lower_is_better: metric == Metric::Euclidean,
                },
                NodeQuery::Score(Scoring::Bm25 { text, params }) => Ranked {
                    hits: self.search_text(text, n.limit, filter.as_ref(), *params, parts)?,
                    lower_is_better: false,
                },
                NodeQuery::Fuse(_) => unreachable!("check_tree refuses a fusion without prefetch"),
            }
        } else {
            // A dense re-score needs the candidates' vectors.
            let child_parts = match &n.query {
                NodeQuery::Score(Scoring::Dense { .. }) => ReadParts {
                    vector: true,
                    ..parts
                },
                _ => parts,
            };
            let mut lists = Vec::with_capacity(n.prefetch.len());
            for c in &n.prefetch {
                let r = self.run_node(c, filter.as_ref(), child_parts)?;
                lists.push((r.hits, r.lower_is_better));
            }
            match &n.query {
                NodeQuery::Fuse(how) => Ranked {
                    hits: fuse(&lists, *how),
                    lower_is_better: false,
                },
                NodeQuery::Score(Scoring::Dense { vector, .. }) => {
                    let q = self.prepare_query(vector)?;
                    let mut seen = HashSet::new();
                    let mut hits: Vec<ScoredPoint> = Vec::new();
                    for p in lists.into_iter().flat_map(|(h, _)| h) {
                        if seen.insert(p.point.id.clone()) {
                            hits.push(p);
                        }
                    }
                    for h in &mut hits {
                        let s = crate::index::score(metric, &q, &h.point.vector);
                        h.score = crate::index::user_score(metric, s);
                    }
                    let lower = metric == Metric::Euclidean;
                    hits.sort_by(|a, b| {
                        if lower {
                            a.score.total_cmp(&b.score)
                        } else {
                            b.score.total_cmp(&a.score)
                        }
                    });
                    Ranked {
                        hits,
                        lower_is_better: lower,
                    }
                }
                NodeQuery::Score(Scoring::Bm25 { text, params }) => {
                    let ids: HashSet<PointId> = lists
                        .iter()
                        .flat_map(|(h, _)| h.iter().map(|p| p.point.id.clone()))
                        .collect();
                    Ranked {
                        hits: self.search_text_among(
                            text,
                            n.limit,
                            filter.as_ref(),
                            *params,
                            child_parts,
                            Some(&ids),
                        )?,
                        lower_is_better: false,
                    }
                }
            }
        };
        if let Some(t) = n.score_threshold {
            let lower = ranked.lower_is_better;
            ranked
                .hits
                .retain(|h| if lower { h.score <= t } else { h.score >= t });
        }
        ranked.hits.truncate(n.limit);
        Ok(ranked)
    }
}

/// Checks a tree's shape: every limit is at least 1 and a fusion has
/// `prefetch` to fuse. Errors: `InvalidQuery` naming the fault.
pub fn check_tree(n: &QueryNode) -> Result<()> {
    if n.limit == 0 {
        return Err(CollectionError::InvalidQuery(
            "`limit` must be at least 1".into(),
        ));
    }
    if n.prefetch.is_empty() && matches!(n.query, NodeQuery::Fuse(_)) {
        return Err(CollectionError::InvalidQuery(
            "a fusion combines the results of `prefetch`; give `prefetch` with it".into(),
        ));
    }
    n.prefetch.iter().try_for_each(check_tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::StoredPoint;

    fn hit(id: u64, score: f32) -> ScoredPoint {
        ScoredPoint {
            point: StoredPoint {
                id: PointId::Num(id),
                vector: Vec::new(),
                payload: None,
                content: None,
            },
            score,
        }
    }

    fn ids(v: &[ScoredPoint]) -> Vec<u64> {
        v.iter()
            .map(|p| match p.point.id {
                PointId::Num(n) => n,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn rrf_sums_reciprocal_ranks() {
        let a = vec![hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)];
        let b = vec![hit(3, 12.0), hit(4, 5.0), hit(1, 1.0)];
        let f = fuse(&[(a, false), (b, false)], Fusion::Rrf { k: 60.0 });
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, 1 seen first); 2: 1/62; 4: 1/62.
        assert_eq!(ids(&f), [1, 3, 2, 4]);
        assert!((f[0].score - (1.0 / 61.0 + 1.0 / 63.0) as f32).abs() < 1e-7);
        assert!((f[2].score - 1.0 / 62.0).abs() < 1e-7);
    }

    #[test]
    fn dbsf_normalises_each_list_and_reads_distances_negated() {
        // Distances: 0.1 is the best.
        let a = vec![hit(1, 0.1), hit(2, 0.5), hit(3, 0.9)];
        let f = fuse(&[(a, true)], Fusion::Dbsf);
        assert_eq!(ids(&f), [1, 2, 3]);
        assert!((f[1].score - 0.5).abs() < 1e-6, "the mean maps to 0.5");
        let same = vec![hit(7, 3.0), hit(8, 3.0)];
        let f = fuse(&[(same, false)], Fusion::Dbsf);
        assert_eq!(f.iter().map(|p| p.score).collect::<Vec<_>>(), [0.5, 0.5]);
        let f = fuse(&[(Vec::new(), false)], Fusion::Dbsf);
        assert!(f.is_empty());
    }

    #[test]
    fn fusion_without_prefetch_is_refused() {
        let n = QueryNode {
            prefetch: Vec::new(),
            query: NodeQuery::Fuse(Fusion::Dbsf),
            filter: None,
            limit: 10,
            score_threshold: None,
        };
        assert!(matches!(
            check_tree(&n),
            Err(CollectionError::InvalidQuery(_))
        ));
    }
}
