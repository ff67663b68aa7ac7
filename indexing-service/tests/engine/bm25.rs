//! Keyword search: BM25 scores against an independent implementation
//! (`bm25s`, method "lucene", in float64, fed our tokens; fixture made by
//! `scripts/bm25_reference.py` from 3,000 WordNet glosses), and scores that
//! do not depend on how the points are split into segments, on deletes,
//! or on a vacuum.

use crate::storage::config;
use indexing_service::collection::{Collection, NewPoint, ReadParts, ScoredPoint, Storage};
use indexing_service::text::bm25::Bm25Params;
use indexing_service::text::{StemmerLanguage, TextIndexSettings};
use serde_json::Value;
use shared::wire::indexing::{Metric, PointId};
use std::collections::HashMap;
use std::sync::Arc;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bm25");
const NONE: ReadParts = ReadParts {
    vector: false,
    payload: false,
};
const TOP: usize = 30;

fn lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{FIXTURE}/{name}"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/reference.json")).unwrap())
        .unwrap()
}

/// A collection of `docs` (id = line number; a small vector each) with
/// the given text settings and flush threshold, every build finished.
fn load(
    storage: &Storage,
    name: &str,
    text: TextIndexSettings,
    flush: usize,
    docs: &[(u64, &str)],
) -> Arc<Collection> {
    let mut cfg = config(name, 4, Metric::Cosine, flush);
    cfg.text_index = text;
    let c = storage.create(cfg).unwrap();
    for chunk in docs.chunks(100) {
        c.upsert(
            chunk
                .iter()
                .map(|&(id, text)| NewPoint {
                    id: Some(PointId::Num(id)),
                    vector: vec![1.0, (id % 7) as f32, (id % 11) as f32, 0.5],
                    payload: None,
                    content: Some(text.to_string()),
                })
                .collect(),
        )
        .unwrap();
    }
    c.wait_idle();
    c
}

fn num(p: &ScoredPoint) -> u64 {
    match p.point.id {
        PointId::Num(n) => n,
        _ => unreachable!("numeric ids"),
    }
}

fn search(c: &Collection, q: &str) -> Vec<(u64, f32)> {
    c.search_text(q, TOP, None, None, NONE)
        .unwrap()
        .iter()
        .map(|p| (num(p), p.score))
        .collect()
}

/// Our top-30 against the reference's: the same scores rank by rank, and
/// each document we return has the reference's score for it (a document
/// tied with the last one kept may differ from the reference's pick).
fn assert_matches_reference(c: &Collection, queries: &[String], top: &[Value], what: &str) {
    let mut compared = 0;
    for (q, want) in queries.iter().zip(top) {
        let want: Vec<(u64, f64)> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let by_doc: HashMap<u64, f64> = want.iter().copied().collect();
        let got = search(c, q);
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: `{q}`: {} hits, the reference {}",
            got.len(),
            want.len()
        );
        let last = want.last().map_or(0.0, |w| w.1);
        for (i, ((doc, score), (_, ref_score))) in got.iter().zip(&want).enumerate() {
            let s = f64::from(*score);
            assert!(
                (s - ref_score).abs() <= 1e-4,
                "{what}: `{q}` rank {i}: score {s}, reference {ref_score}"
            );
            match by_doc.get(doc) {
                Some(r) => assert!((s - r).abs() <= 1e-4, "{what}: `{q}` doc {doc}: {s} vs {r}"),
                None => assert!(
                    (s - last).abs() <= 1e-4,
                    "{what}: `{q}`: doc {doc} ({s}) is not in the reference's top {TOP}"
                ),
            }
            compared += 1;
        }
    }
    assert!(compared > 3000, "{what}: only {compared} scores compared");
}

#[test]
fn bm25_scores_equal_the_reference_in_one_segment_and_in_many() {
    let corpus = lines("corpus.txt");
    let queries = lines("queries.txt");
    let reference = reference();
    let settings = reference["settings"].as_array().unwrap();
    let docs: Vec<(u64, &str)> = corpus
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u64, d.as_str()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    for (si, s) in settings.iter().enumerate() {
        let text = TextIndexSettings {
            enabled: true,
            k1: s["k1"].as_f64().unwrap() as f32,
            b: s["b"].as_f64().unwrap() as f32,
            stemmer: s["stemmer"]
                .as_str()
                .map(|l| serde_json::from_value::<StemmerLanguage>(l.into()).unwrap()),
        };
        let top = s["top"].as_array().unwrap();
        assert_eq!(top.len(), queries.len());
        // All in the appendable segment.
        let one = load(
            &storage,
            &format!("one{si}"),
            text.clone(),
            1_000_000,
            &docs,
        );
        assert_eq!(one.info().sealed_segments, 0);
        assert_matches_reference(&one, &queries, top, "one appendable segment");
        // Sealed in segments of 250, memory-mapped text indexes.
        let many = load(&storage, &format!("many{si}"), text.clone(), 250, &docs);
        assert!(many.info().sealed_segments >= 5, "{:?}", many.info());
        assert_matches_reference(&many, &queries, top, "sealed segments");
        // Reopened from disk: the same answers.
        drop(many);
    }
    drop(storage);
    let storage = Storage::open(dir.path()).unwrap();
    let many = storage.get("many0").unwrap();
    assert_matches_reference(
        &many,
        &queries,
        settings[0]["top"].as_array().unwrap(),
        "sealed segments, reopened",
    );
    // A query's own k1 / b score as a collection made with them does.
    let p = Bm25Params { k1: 0.9, b: 0.4 };
    let made = load(
        &storage,
        "k09",
        TextIndexSettings {
            k1: 0.9,
            b: 0.4,
            ..TextIndexSettings::default()
        },
        1_000_000,
        &docs,
    );
    for q in &queries {
        let a = many.search_text(q, TOP, None, Some(p), NONE).unwrap();
        let b = search(&made, q);
        assert_eq!(a.len(), b.len());
        for (x, (_, y)) in a.iter().zip(&b) {
            assert!(
                (x.score - y).abs() <= 1e-5 * y.max(1.0),
                "`{q}`: {} vs {y}",
                x.score
            );
        }
    }
}

#[test]
fn scores_do_not_depend_on_segments_deletes_or_vacuum() {
    let corpus = lines("corpus.txt");
    let queries = lines("queries.txt");
    let docs: Vec<(u64, &str)> = corpus
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u64, d.as_str()))
        .collect();
    let kept: Vec<(u64, &str)> = docs.iter().copied().filter(|(i, _)| i % 3 != 0).collect();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let text = TextIndexSettings::default();
    // The reference: one segment holding only the kept documents.
    let fresh = load(&storage, "fresh", text.clone(), 1_000_000, &kept);
    // Many segments holding all, then a third deleted (some of them in the
    // appendable segment), searched before and after the vacuum.
    let mut cfg_docs = docs.clone();
    cfg_docs.rotate_left(1000);
    let mixed = load(&storage, "mixed", text, 400, &cfg_docs);
    let doomed: Vec<PointId> = docs
        .iter()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, _)| PointId::Num(*i))
        .collect();
    assert!(mixed.info().appendable_points > 0, "some points unsealed");
    let same = |a: &Collection, b: &Collection, what: &str| {
        let mut n = 0;
        for q in &queries {
            let (x, y) = (search(a, q), search(b, q));
            assert_eq!(x.len(), y.len(), "{what}: `{q}`");
            for ((dx, sx), (dy, sy)) in x.iter().zip(&y) {
                assert!(
                    (sx - sy).abs() <= 1e-5 * sx.abs().max(1.0),
                    "{what}: `{q}`: {sx} vs {sy}"
                );
                // Equal scores may come in either order; distinct ones not.
                if (sx - sy).abs() > 1e-6 {
                    assert_eq!(dx, dy, "{what}: `{q}`");
                }
                n += 1;
            }
        }
        assert!(n > 1000, "{what}: only {n} hits compared");
    };
    mixed.delete(doomed).unwrap();
    same(
        &fresh,
        &mixed,
        "deleted slots in sealed and appendable segments",
    );
    mixed.vacuum().unwrap();
    mixed.flush().unwrap();
    same(&fresh, &mixed, "after vacuum and flush");
}
