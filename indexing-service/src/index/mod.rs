//! The index layer: distance kernels, payload filters, exact scan, HNSW,
//! scalar (SQ8) and product quantization, IVF-PQ, and per-segment index management
//! (`segment_index`).

pub mod distance;
pub mod filter;
pub mod hnsw;
pub mod payload_index;
pub mod pq;
pub mod segment_index;
pub mod sq;

use shared::wire::indexing::Metric;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Internal score, higher is closer: similarity for cosine/dot, negated
/// squared distance for euclidean.
#[inline]
pub fn score(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => distance::dot(q, v),
        Metric::Euclidean => -distance::l2_sq(q, v),
    }
}

/// The score users see: similarity for cosine/dot, distance for euclidean.
pub fn user_score(metric: Metric, s: f32) -> f32 {
    match metric {
        Metric::Euclidean => (-s).max(0.0).sqrt(),
        _ => s,
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Scored<T: Copy> {
    pub score: f32,
    pub item: T,
}

impl<T: Copy> PartialEq for Scored<T> {
    fn eq(&self, o: &Self) -> bool {
        self.score.total_cmp(&o.score) == Ordering::Equal
    }
}
impl<T: Copy> Eq for Scored<T> {}
impl<T: Copy> PartialOrd for Scored<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: Copy> Ord for Scored<T> {
    // Reversed: the heap's top is the worst kept candidate.
    fn cmp(&self, o: &Self) -> Ordering {
        o.score.total_cmp(&self.score)
    }
}

/// Keeps the best `k` by score.
pub struct TopK<T: Copy> {
    k: usize,
    heap: BinaryHeap<Scored<T>>,
}

impl<T: Copy> TopK<T> {
    /// Keeps at most `k` items. Memory grows with the items pushed, not
    /// with `k`: at most `TopK::PREALLOCATED` slots are reserved up front,
    /// so any `k` (even `usize::MAX`) is safe to pass.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(Self::PREALLOCATED)),
        }
    }

    /// Slots reserved up front at most (the heap grows past them on push).
    pub const PREALLOCATED: usize = 1 << 12;
    #[inline]
    pub fn push(&mut self, score: f32, item: T) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Scored { score, item });
        } else if score > self.heap.peek().unwrap().score {
            self.heap.pop();
            self.heap.push(Scored { score, item });
        }
    }
    /// Whether `push(score, _)` would keep the item now: fewer than `k`
    /// kept, or `score` beats the worst kept.
    #[inline]
    pub fn would_keep(&self, score: f32) -> bool {
        self.k > 0
            && (self.heap.len() < self.k || score > self.heap.peek().map_or(f32::MIN, |w| w.score))
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<(T, f32)> {
        let mut v: Vec<_> = self.heap.into_vec();
        v.sort_by(|a, b| b.score.total_cmp(&a.score));
        v.into_iter().map(|s| (s.item, s.score)).collect()
    }
}

/// Exact scan over `n` row-major vectors of `dim`.
pub fn exact_scan(
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, f32)> {
    let mut top = TopK::new(k);
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        if accept(i as u32) {
            top.push(score(metric, query, v), i as u32);
        }
    }
    top.into_sorted()
}

/// Exact scan over the rows `rows` (offsets into `vectors`, each below
/// `vectors.len() / dim`): the best `k`, best first.
pub fn exact_scan_rows(
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    rows: &[u32],
) -> Vec<(u32, f32)> {
    let mut top = TopK::new(k);
    for &i in rows {
        let v = &vectors[i as usize * dim..(i as usize + 1) * dim];
        top.push(score(metric, query, v), i);
    }
    top.into_sorted()
}
