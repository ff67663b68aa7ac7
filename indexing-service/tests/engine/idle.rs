//! Idle indexing: a collection under its flush threshold gets a sealed,
//! indexed segment once writes pause, answers the same before and after,
//! keeps what it had across a reopen, and is left alone while writes keep
//! coming, below the threshold, or with idle indexing off.

use crate::storage::{config, pt};
use indexing_service::collection::{Collection, IdleIndexing, Storage};
use indexing_service::index::segment_index::SearchParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::wire::indexing::{Metric, PointId};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 16;

fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect()
}

fn create(s: &Storage, name: &str, idle: IdleIndexing) -> Arc<Collection> {
    // The flush threshold is far above what these tests write: only idle
    // indexing can seal.
    let mut cfg = config(name, DIM, Metric::Cosine, 100_000);
    cfg.idle_indexing = idle;
    s.create(cfg).unwrap()
}

fn load(c: &Collection, from: u64, vs: &[Vec<f32>]) {
    for (i, chunk) in vs.chunks(500).enumerate() {
        let pts = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| pt(from + (i * 500 + j) as u64, v.clone(), json!({"n": i})))
            .collect();
        c.upsert(pts).unwrap();
    }
}

fn ids(c: &Collection, q: &[f32], exact: bool) -> Vec<PointId> {
    let params = SearchParams {
        exact,
        ..Default::default()
    };
    c.search_with(q, 10, None, params)
        .unwrap()
        .into_iter()
        .map(|h| h.point.id)
        .collect()
}

/// Polls until `done` holds; fails after `limit` (a stalled worker).
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_paused_collection_is_sealed_and_indexed_and_answers_alike() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let idle = IdleIndexing {
        indexing_threshold: 1000,
        idle_ms: 300,
    };
    let c = create(&s, "idle", idle);
    let data = vectors(3000, 7);
    load(&c, 0, &data);
    let queries = vectors(20, 8);
    let before: Vec<_> = queries.iter().map(|q| ids(&c, q, true)).collect();
    // 3,000 appendable points are an exact scan: not short (the HTTP
    // layer sends it to a blocking thread).
    let plain = SearchParams::default();
    assert!(!c.is_short_search(&plain, false));
    wait_until(Duration::from_secs(60), "idle indexing", || {
        let i = c.info();
        i.indexed_segments == 1 && i.appendable_points == 0 && i.building_segments == 0
    });
    let i = c.info();
    assert_eq!(i.points, 3000);
    assert_eq!(i.sealed_segments, 1);
    // Indexed: a plain search is short; filtered or exact ones are not.
    assert!(c.is_short_search(&plain, false));
    assert!(!c.is_short_search(&plain, true));
    let exact = SearchParams {
        exact: true,
        ..Default::default()
    };
    assert!(!c.is_short_search(&exact, false));
    // The sealed segment's graph gives the exact answers on 3,000 points
    // at the default ef, and an exact scan gives the same as before.
    let mut same = 0;
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&ids(&c, q, true), want, "exact answers changed");
        same += ids(&c, q, false)
            .iter()
            .filter(|id| want.contains(id))
            .count();
    }
    assert!(same >= 198, "recall@10 of the new index: {same}/200");
    // New writes land in a new appendable segment; a pause seals them too.
    load(&c, 10_000, &vectors(1500, 9));
    wait_until(Duration::from_secs(60), "second idle indexing", || {
        let i = c.info();
        i.indexed_segments == 2 && i.appendable_points == 0
    });
    assert_eq!(c.info().points, 4500);
    let all: Vec<_> = queries.iter().map(|q| ids(&c, q, true)).collect();
    drop(c);
    drop(s);
    // Reopen: the segments are on disk, nothing is replayed into the
    // appendable segment.
    let s = Storage::open(dir.path()).unwrap();
    let c = s.get("idle").unwrap();
    let i = c.info();
    assert_eq!(
        (i.points, i.indexed_segments, i.appendable_points),
        (4500, 2, 0)
    );
    for (q, want) in queries.iter().zip(&all) {
        assert_eq!(&ids(&c, q, true), want, "answers changed across reopen");
    }
}

#[test]
fn no_seal_below_the_threshold_while_writing_or_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let small = create(
        &s,
        "small",
        IdleIndexing {
            indexing_threshold: 1000,
            idle_ms: 200,
        },
    );
    load(&small, 0, &vectors(999, 1));
    let off = create(
        &s,
        "off",
        IdleIndexing {
            indexing_threshold: 0,
            idle_ms: 200,
        },
    );
    load(&off, 0, &vectors(3000, 2));
    // Writes every 50 ms keep a collection busy: it is not sealed while
    // they last, however many points it holds.
    let busy = create(
        &s,
        "busy",
        IdleIndexing {
            indexing_threshold: 100,
            idle_ms: 400,
        },
    );
    let data = vectors(2000, 3);
    for (i, chunk) in data.chunks(50).enumerate() {
        let pts = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| pt((i * 50 + j) as u64, v.clone(), json!({})))
            .collect();
        busy.upsert(pts).unwrap();
        assert_eq!(busy.info().sealed_segments, 0, "sealed while writes came");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then it pauses and is sealed; the other two are still untouched
    // after many times their idle time.
    wait_until(Duration::from_secs(60), "idle indexing of `busy`", || {
        busy.info().indexed_segments == 1
    });
    std::thread::sleep(Duration::from_millis(1000));
    for (c, n) in [(&small, 999), (&off, 3000)] {
        let i = c.info();
        assert_eq!(
            (i.sealed_segments, i.appendable_points),
            (0, n),
            "{}",
            c.name()
        );
    }
}

#[test]
fn idle_ms_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let mut cfg = config("bad", DIM, Metric::Cosine, 1000);
    cfg.idle_indexing.idle_ms = 5;
    let Err(e) = s.create(cfg) else {
        panic!("idle_ms 5 was accepted");
    };
    let e = e.to_string();
    assert!(
        e.contains("`idle_indexing.idle_ms` must be between 100 and 3600000, got 5"),
        "{e}"
    );
    let mut cfg = config("bad2", DIM, Metric::Cosine, 1000);
    cfg.idle_indexing.indexing_threshold = 10_000_001;
    let Err(e) = s.create(cfg) else {
        panic!("indexing_threshold 10,000,001 was accepted");
    };
    assert!(
        e.to_string()
            .contains("`idle_indexing.indexing_threshold` must be between 0 and 10000000"),
        "{e}"
    );
}
