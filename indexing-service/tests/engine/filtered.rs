//! Filtered search keeps its promise on every index path: `min(top_k,
//! matching live points)` results, all of them matching, and recall@10 ≥
//! 0.95 against exact filtered search at default settings, at 1%, 10% and
//! 50% selectivity, with the matching points either scattered uniformly or
//! in clusters of their own far from the queries (where a graph's or an
//! inverted file's neighbourhood of the query holds no match at all).
//!
//! Generated clustered data (fixed, printed seed; `STORAGE_SEED` replays
//! another): two sealed, indexed segments and an appendable tail.
//! `filtered_recall_table` (ignored; run with `--ignored --nocapture`)
//! prints the table of `docs/BENCHMARKS.md` on a larger collection.

use indexing_service::collection::{
    Collection, CollectionConfig, FlushThreshold, NewPoint, Storage, VacuumConfig,
};
use indexing_service::index::segment_index::{
    IndexKind, IndexSettings, Quantization, SearchParams,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde_json::json;
use shared::wire::indexing::{Filter, Metric, PointId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

const DIM: usize = 32;

fn seed() -> u64 {
    let s = std::env::var("STORAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4321);
    eprintln!("filtered seed = {s}");
    s
}

/// Points with two tags: `s`, uniform in 0..100 (the scattered layout),
/// and `f`, the group of the point: 0 for the half of the points the
/// queries come from (8 clusters), 1 for a far cluster of 1% of the
/// points, 10 for another of 9%, 50 for three more holding 40%. So
/// `f` in 1..=1, 1..=10 and 1..=50 select 1%, 10% and 50% of the points,
/// each set a cluster (or clusters) of its own that no query is near.
struct Data {
    base: Vec<Vec<f32>>,
    s: Vec<u32>,
    f: Vec<u32>,
    queries: Vec<Vec<f32>>,
}

fn data(seed: u64, n: usize, nq: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, 0.25).unwrap();
    let centre =
        |rng: &mut StdRng| -> Vec<f32> { (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let near: Vec<Vec<f32>> = (0..8).map(|_| centre(&mut rng)).collect();
    let far1 = centre(&mut rng);
    let far10 = centre(&mut rng);
    let far50: Vec<Vec<f32>> = (0..3).map(|_| centre(&mut rng)).collect();
    let around = |c: &[f32], rng: &mut StdRng| -> Vec<f32> {
        c.iter().map(|x| x + noise.sample(rng)).collect()
    };
    let mut groups: Vec<u32> = (0..n)
        .map(|i| match i * 100 / n {
            0 => 1,
            1..=9 => 10,
            10..=49 => 50,
            _ => 0,
        })
        .collect();
    groups.shuffle(&mut rng);
    let mut base = Vec::with_capacity(n);
    let mut s = Vec::with_capacity(n);
    for &g in &groups {
        let c = match g {
            0 => &near[rng.gen_range(0..near.len())],
            1 => &far1,
            10 => &far10,
            _ => &far50[rng.gen_range(0..far50.len())],
        };
        base.push(around(c, &mut rng));
        s.push(rng.gen_range(0..100));
    }
    let queries = (0..nq)
        .map(|_| around(&near[rng.gen_range(0..near.len())], &mut rng))
        .collect();
    Data {
        base,
        s,
        f: groups,
        queries,
    }
}

/// The collection: points `0..n`, sealed in segments of `segment` (each
/// indexed: `min_points` is below it), then `tail` more points left in
/// the appendable segment. Vacuum only drops segments deleted entirely,
/// so deletes stay in the indexed segments.
fn build(
    dir: &std::path::Path,
    index: IndexSettings,
    metric: Metric,
    d: &Data,
    segment: usize,
    tail: usize,
) -> (Storage, Arc<Collection>) {
    let s = Storage::open(dir).unwrap();
    let mut cfg = CollectionConfig::new("f", DIM, metric);
    cfg.flush_threshold = FlushThreshold {
        vectors: segment,
        bytes: 1 << 30,
    };
    cfg.vacuum = VacuumConfig {
        deleted_ratio: 1.0,
        max_segments: 64,
    };
    cfg.index = index;
    let c = s.create(cfg).unwrap();
    let n = d.base.len();
    let sealed = n - tail;
    let point = |i: usize| NewPoint {
        id: Some(PointId::Num(i as u64)),
        vector: d.base[i].clone(),
        payload: Some(json!({"s": d.s[i], "f": d.f[i]})),
        content: None,
    };
    for start in (0..sealed).step_by(segment) {
        c.upsert((start..(start + segment).min(sealed)).map(point).collect())
            .unwrap();
        c.flush().unwrap();
        c.wait_idle();
    }
    c.upsert((sealed..n).map(point).collect()).unwrap();
    c.wait_idle();
    let info = c.info();
    let want = sealed.div_ceil(segment);
    assert_eq!(info.sealed_segments, want, "{info:?}");
    assert_eq!(
        info.indexed_segments,
        if index.kind == IndexKind::Flat {
            0
        } else {
            want
        },
        "every sealed segment is indexed: {info:?}"
    );
    assert_eq!(info.appendable_points, tail, "{info:?}");
    (s, c)
}

fn filter(v: serde_json::Value) -> Filter {
    serde_json::from_value(v).unwrap()
}

/// One filter of the matrix: its layout, share, the filter, and which
/// points (by index into `Data`) it matches.
struct Case {
    layout: &'static str,
    share: u32,
    filter: Filter,
    matches: fn(&Data, usize) -> bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            layout: "far cluster",
            share: 1,
            filter: filter(json!({"must": [{"key": "f", "match": 1}]})),
            matches: |d, i| d.f[i] == 1,
        },
        Case {
            layout: "far cluster",
            share: 10,
            filter: filter(json!({"must": [{"key": "f", "range": {"gte": 1, "lte": 10}}]})),
            matches: |d, i| (1..=10).contains(&d.f[i]),
        },
        Case {
            layout: "far cluster",
            share: 50,
            filter: filter(json!({"must": [{"key": "f", "range": {"gte": 1}}]})),
            matches: |d, i| d.f[i] >= 1,
        },
        Case {
            layout: "scattered",
            share: 1,
            filter: filter(json!({"must": [{"key": "s", "range": {"lt": 1}}]})),
            matches: |d, i| d.s[i] < 1,
        },
        Case {
            layout: "scattered",
            share: 10,
            filter: filter(json!({"must": [{"key": "s", "range": {"lt": 10}}]})),
            matches: |d, i| d.s[i] < 10,
        },
        Case {
            layout: "scattered",
            share: 50,
            filter: filter(json!({"must": [{"key": "s", "range": {"lt": 50}}]})),
            matches: |d, i| d.s[i] < 50,
        },
    ]
}

fn ids(c: &Collection, q: &[f32], k: usize, f: &Filter, p: SearchParams) -> Vec<PointId> {
    c.search_with(q, k, Some(f), p)
        .unwrap()
        .into_iter()
        .map(|h| h.point.id)
        .collect()
}

fn num(id: &PointId) -> usize {
    match id {
        PointId::Num(n) => *n as usize,
        other => panic!("unexpected id {other:?}"),
    }
}

const EXACT: SearchParams = SearchParams {
    ef: None,
    nprobe: None,
    exact: true,
};

/// Recall@10 of default search against exact filtered search over
/// `queries`, and the default search's queries/s. Every answer has
/// `min(k, live)` matching points, for `k` = 10 and `k_big`.
fn check_case(
    name: &str,
    c: &Collection,
    d: &Data,
    case: &Case,
    live: &dyn Fn(usize) -> bool,
    k_big: usize,
) -> (f64, f64) {
    let matching = (0..d.base.len())
        .filter(|&i| live(i) && (case.matches)(d, i))
        .count();
    let label = format!("{name}, {} {}%", case.layout, case.share);
    let mut hits = 0;
    let mut total = 0;
    let mut secs = 0.0;
    for (qi, q) in d.queries.iter().enumerate() {
        let want: HashSet<PointId> = ids(c, q, 10, &case.filter, EXACT).into_iter().collect();
        assert_eq!(want.len(), 10.min(matching), "{label}: exact search");
        let t = Instant::now();
        let got = ids(c, q, 10, &case.filter, SearchParams::default());
        secs += t.elapsed().as_secs_f64();
        assert_eq!(
            got.len(),
            10.min(matching),
            "{label}, query {qi}: {} results of top_k 10 ({matching} points match)",
            got.len()
        );
        for g in &got {
            let i = num(g);
            assert!(
                live(i) && (case.matches)(d, i),
                "{label}: point {i} does not match"
            );
        }
        hits += got.iter().filter(|g| want.contains(g)).count();
        total += want.len();
    }
    // A top_k past what the collection holds: every match, each once.
    for q in d.queries.iter().take(3) {
        let got = ids(c, q, k_big, &case.filter, SearchParams::default());
        let distinct: HashSet<&PointId> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "{label}: duplicates");
        assert_eq!(
            got.len(),
            k_big.min(matching),
            "{label}: {} results of top_k {k_big} ({matching} points match)",
            got.len()
        );
    }
    let recall = hits as f64 / total as f64;
    (recall, d.queries.len() as f64 / secs)
}

fn kinds() -> Vec<(&'static str, IndexSettings)> {
    vec![
        ("hnsw+sq8", IndexSettings::default()),
        (
            "hnsw f32",
            IndexSettings {
                quantization: Quantization::None,
                ..Default::default()
            },
        ),
        (
            "hnsw+pq",
            IndexSettings {
                quantization: Quantization::Pq {
                    subvectors: 16,
                    oversampling: 4.0,
                },
                ..Default::default()
            },
        ),
        (
            "ivf_pq",
            IndexSettings {
                kind: IndexKind::IvfPq,
                quantization: Quantization::Pq {
                    subvectors: 16,
                    oversampling: 4.0,
                },
                ..Default::default()
            },
        ),
        (
            "flat",
            IndexSettings {
                kind: IndexKind::Flat,
                ..Default::default()
            },
        ),
    ]
}

/// Every case of one index kind: counts and recall, then again after
/// deleting most matching points of the far layout (the deleted stay in
/// the index and are rejected during the traversal).
fn matrix(name: &str, settings: IndexSettings) {
    let seed = seed();
    let d = data(seed, 6_300, 30);
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = build(dir.path(), settings, Metric::Cosine, &d, 3_000, 300);
    for case in cases() {
        let (r, _) = check_case(name, &c, &d, &case, &|_| true, 200);
        eprintln!("{name} {} {}%: recall@10 {r:.4}", case.layout, case.share);
        assert!(
            r >= 0.95,
            "{name}, {} {}%: recall@10 {r:.4}",
            case.layout,
            case.share
        );
    }
    // Deletes: all but every 20th point of the 10% far group (f = 10).
    let gone: Vec<usize> = (0..d.base.len())
        .filter(|&i| d.f[i] == 10 && i % 20 != 0)
        .collect();
    c.delete(gone.iter().map(|&i| PointId::Num(i as u64)).collect())
        .unwrap();
    let gone: HashSet<usize> = gone.into_iter().collect();
    let live = |i: usize| !gone.contains(&i);
    for case in cases().into_iter().filter(|c| c.layout == "far cluster") {
        let (r, _) = check_case(name, &c, &d, &case, &live, 200);
        eprintln!(
            "{name} {} {}% after deletes: recall@10 {r:.4}",
            case.layout, case.share
        );
        assert!(r >= 0.95, "{name} after deletes: recall@10 {r:.4}");
    }
}

/// The default: HNSW traversed on SQ8 codes.
#[test]
fn filtered_hnsw_sq8() {
    matrix("hnsw+sq8", kinds()[0].1);
}

#[test]
fn filtered_hnsw_f32() {
    matrix("hnsw f32", kinds()[1].1);
}

#[test]
fn filtered_hnsw_pq() {
    matrix("hnsw+pq", kinds()[2].1);
}

#[test]
fn filtered_ivf_pq() {
    matrix("ivf_pq", kinds()[3].1);
}

#[test]
fn filtered_flat() {
    matrix("flat", kinds()[4].1);
}

/// A case that once answered 0: IVF-PQ at its default settings, 3,000 points in one
/// sealed segment, the 300 matching points a cluster of their own away
/// from every query: `top_k` 20 returns 20 (it returned none when the
/// `nprobe` nearest lists held no match), under both metrics. Then every
/// index kind of the matrix on the same data: 20 results, recall@20 ≥
/// 0.95 against exact filtered search.
#[test]
fn ivf_pq_3000_points_300_far_matches_returns_top_k() {
    let seed = seed();
    // Groups of `data`: f = 1 or 10 is 10% of the points.
    let d = data(seed, 3_000, 20);
    let f = filter(json!({"must": [{"key": "f", "range": {"gte": 1, "lte": 10}}]}));
    let default_ivf = IndexSettings {
        kind: IndexKind::IvfPq,
        ..Default::default()
    };
    for (name, settings) in [("ivf_pq default", default_ivf)].into_iter().chain(kinds()) {
        for metric in [Metric::Cosine, Metric::Euclidean] {
            let dir = tempfile::tempdir().unwrap();
            let (_s, c) = build(dir.path(), settings, metric, &d, 3_000, 0);
            let (mut hits, mut total) = (0, 0);
            for q in &d.queries {
                let want: HashSet<PointId> = ids(&c, q, 20, &f, EXACT).into_iter().collect();
                let got = ids(&c, q, 20, &f, SearchParams::default());
                assert_eq!(
                    got.len(),
                    20,
                    "{name} {metric:?}: {} of top_k 20",
                    got.len()
                );
                hits += got.iter().filter(|g| want.contains(g)).count();
                total += want.len();
            }
            let r = hits as f64 / total as f64;
            eprintln!("{name} {metric:?}: 3,000 points, 300 far matches, recall@20 {r:.4}");
            // The default PQ, dimension / 8 = 4 bytes per 32-d vector, is
            // too coarse for a recall floor even unfiltered (about 0.8 on
            // this data): its count is asserted, its recall printed.
            if name != "ivf_pq default" {
                assert!(r >= 0.95, "{name} {metric:?}: recall@20 {r:.4}");
            }
        }
    }
}

/// The table of `docs/BENCHMARKS.md`: recall@10 against exact filtered
/// search and queries/s (one thread, through `Collection::search_with`,
/// payloads parsed for the filter) per index kind, layout and selectivity,
/// on 40,000 points in 4 sealed segments of 10,000.
///
/// `cargo test -p indexing-service --test engine filtered_recall_table -- --ignored --nocapture`
#[test]
#[ignore]
fn filtered_recall_table() {
    let seed = seed();
    let d = data(seed, 40_000, 100);
    println!("| index | layout | 1% recall@10 | 1% q/s | 10% recall@10 | 10% q/s | 50% recall@10 | 50% q/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, settings) in kinds() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, c) = build(dir.path(), settings, Metric::Cosine, &d, 10_000, 0);
        for layout in ["far cluster", "scattered"] {
            let mut row = format!("| {name} | {layout} |");
            for case in cases().into_iter().filter(|c| c.layout == layout) {
                let (r, qps) = check_case(name, &c, &d, &case, &|_| true, 10);
                row += &format!(" {r:.3} | {qps:.0} |");
            }
            println!("{row}");
        }
    }
}
