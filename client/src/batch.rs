//! Splitting points into upsert requests that the server accepts: at most
//! `max_points` points (the server takes at most 10,000 per request) and
//! at most `max_bytes` bytes of JSON body (the server's `body_limit_bytes`,
//! 32 MiB by default).
//!
//! Invariant: every batch but one holding a single oversized point is
//! within both bounds, and the points keep their order.

use shared::wire::indexing::PointInput;

/// Most points in one `PUT /collections/{name}/points` (the server's bound).
pub const MAX_POINTS_PER_REQUEST: usize = 10_000;

/// Default byte budget of one request body: a quarter of the server's
/// default 32 MiB `body_limit_bytes`, so a few requests in flight stay
/// modest in memory on both sides.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Bounds of one upsert request.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most points per request: 1 to [`MAX_POINTS_PER_REQUEST`].
    pub max_points: usize,
    /// Most bytes of JSON body per request (the envelope
    /// `{"points":[...]}` included).
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_points: 256,
            max_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

/// The JSON size of one point inside `{"points":[...]}`, its separating
/// comma included.
pub fn point_bytes(p: &PointInput) -> usize {
    serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0) + 1
}

/// Splits `points` into batches within `limits` (order kept). A point
/// larger than `max_bytes` on its own goes alone in its batch: the server
/// then says why it refuses it.
pub fn split_batches(points: Vec<PointInput>, limits: BatchLimits) -> Vec<Vec<PointInput>> {
    let max_points = limits.max_points.clamp(1, MAX_POINTS_PER_REQUEST);
    // `{"points":[` and `]}`.
    const ENVELOPE: usize = 13;
    let mut out = Vec::new();
    let mut cur: Vec<PointInput> = Vec::new();
    let mut bytes = ENVELOPE;
    for p in points {
        let n = point_bytes(&p);
        if !cur.is_empty() && (cur.len() >= max_points || bytes + n > limits.max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = ENVELOPE;
        }
        bytes += n;
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::indexing::{PointId, UpsertPointsRequest};

    fn point(i: u64, text_len: usize) -> PointInput {
        PointInput {
            id: Some(PointId::Num(i)),
            vector: None,
            content: Some("x".repeat(text_len)),
            metadata: None,
        }
    }

    #[test]
    fn batches_respect_count_and_bytes_and_keep_order() {
        let pts: Vec<_> = (0..1000)
            .map(|i| point(i, (i as usize % 37) * 50))
            .collect();
        let limits = BatchLimits {
            max_points: 64,
            max_bytes: 20_000,
        };
        let batches = split_batches(pts, limits);
        let mut next = 0u64;
        for b in &batches {
            assert!(b.len() <= 64);
            let body = serde_json::to_vec(&UpsertPointsRequest { points: b.clone() }).unwrap();
            assert!(body.len() <= 20_000, "{} bytes", body.len());
            for p in b {
                assert_eq!(p.id, Some(PointId::Num(next)));
                next += 1;
            }
        }
        assert_eq!(next, 1000);
        // Only bytes bound here: more than 1000/64 batches.
        assert!(batches.len() > 16);
    }

    #[test]
    fn an_oversized_point_travels_alone() {
        let pts = vec![point(0, 10), point(1, 5000), point(2, 10)];
        let b = split_batches(
            pts,
            BatchLimits {
                max_points: 100,
                max_bytes: 1000,
            },
        );
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }
}
