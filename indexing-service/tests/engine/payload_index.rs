//! Payload indexes: filtered searches answer the same with and without
//! them (against brute force), every sealed segment gets the index of a
//! field added later (and loses a dropped one), indexes survive a reopen
//! without a rebuild, and the HTTP routes in Qdrant's shape.

use crate::http::{app_on, call, rt};
use crate::storage::config;
use axum::http::{Method, StatusCode};
use indexing_service::collection::{Collection, NewPoint, ReadParts, Storage};
use indexing_service::index::payload_index::PayloadFieldType;
use indexing_service::index::segment_index::SearchParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::wire::indexing::{Filter, Metric, PointId};
use std::collections::BTreeSet;
use std::path::Path;

const DIM: usize = 8;

fn payload(rng: &mut StdRng, i: u64) -> Value {
    let tag = ["news", "sport", "arts", "tech"][rng.gen_range(0..4)];
    let n: Value = match rng.gen_range(0..4) {
        0 => json!(rng.gen_range(0..100)),
        1 => json!(rng.gen_range(0..100) as f64 + 0.5),
        2 => json!([rng.gen_range(0..100), rng.gen_range(0..100)]),
        _ => json!("n/a"),
    };
    let lang = ["en", "de"][rng.gen_range(0..2)];
    json!({"tag": tag, "n": n, "ok": i.is_multiple_of(3), "meta": {"lang": lang}})
}

/// A collection of `n` random points in segments of `flush` (HNSW on
/// segments of 1,000 or more).
fn load(
    storage: &Storage,
    name: &str,
    n: u64,
    flush: usize,
    seed: u64,
) -> Vec<(u64, Vec<f32>, Value)> {
    let c = storage
        .create(config(name, DIM, Metric::Cosine, flush))
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let pts: Vec<(u64, Vec<f32>, Value)> = (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
            (i, v, payload(&mut rng, i))
        })
        .collect();
    for chunk in pts.chunks(500) {
        c.upsert(
            chunk
                .iter()
                .map(|(i, v, p)| NewPoint {
                    id: Some(PointId::Num(*i)),
                    vector: v.clone(),
                    payload: Some(p.clone()),
                    content: None,
                })
                .collect(),
        )
        .unwrap();
    }
    c.flush().unwrap();
    pts
}

fn filters() -> Vec<Value> {
    vec![
        json!({"must": [{"key": "tag", "match": "news"}]}),
        json!({"must": [{"key": "tag", "match": {"any": ["arts", "tech"]}}, {"key": "ok", "match": true}]}),
        json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 12}}]}),
        json!({"must": [{"key": "n", "range": {"gt": 50}}], "must_not": [{"key": "tag", "match": "sport"}]}),
        json!({"should": [{"key": "n", "match": 7}, {"key": "n", "match": 7.5}]}),
        json!({"must": [{"key": "meta.lang", "match": "de"}, {"key": "n", "match": "n/a"}]}),
        json!({"must": [{"key": "tag", "match": "news"}, {"key": "unindexed", "match": 1}]}),
        json!({"must_not": [{"key": "ok", "match": false}]}),
        json!({"must": [{"key": "tag", "match": "arts"}, {"is_empty": {"key": "n"}}]}),
        json!({"must_not": [{"is_null": {"key": "tag"}}], "must": [{"key": "ok", "match": true}]}),
    ]
}

fn ids(hits: &[indexing_service::collection::ScoredPoint]) -> Vec<u64> {
    hits.iter()
        .map(|h| match h.point.id {
            PointId::Num(n) => n,
            _ => unreachable!(),
        })
        .collect()
}

fn index_all(c: &Collection) {
    for (f, t) in [
        ("tag", PayloadFieldType::Keyword),
        ("n", PayloadFieldType::Integer),
        ("ok", PayloadFieldType::Bool),
        ("meta.lang", PayloadFieldType::Keyword),
    ] {
        let ticket = c.create_field_index(f, t).unwrap();
        c.wait_field_indexes(ticket);
    }
}

fn pidx_files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for seg in std::fs::read_dir(dir.join("segments")).unwrap().flatten() {
        for f in std::fs::read_dir(seg.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with("pidx-") {
                out.insert(format!("{}/{name}", seg.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn indexed_and_unindexed_filtered_searches_agree_with_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let pts = load(&storage, "plain", 6000, 2500, 11);
    load(&storage, "indexed", 6000, 2500, 11);
    let plain = storage.get("plain").unwrap();
    let indexed = storage.get("indexed").unwrap();
    index_all(&indexed);
    assert!(indexed.info().sealed_segments >= 2);
    let mut rng = StdRng::seed_from_u64(5);
    let mut recall_sum = 0.0;
    let mut cases = 0;
    for f in filters() {
        let filter: Filter = serde_json::from_value(f.clone()).unwrap();
        let matching: Vec<&(u64, Vec<f32>, Value)> = pts
            .iter()
            .filter(|(_, _, p)| indexing_service::index::filter::matches(&filter, p.as_object()))
            .collect();
        assert_eq!(
            indexed.count(Some(&filter)).unwrap(),
            matching.len(),
            "{f}: count"
        );
        for _ in 0..10 {
            let q: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
            // Exact: both equal brute force.
            let exact = SearchParams {
                exact: true,
                ..Default::default()
            };
            let a = plain
                .search_parts(&q, 10, Some(&filter), exact, ReadParts::PAYLOAD)
                .unwrap();
            let b = indexed
                .search_parts(&q, 10, Some(&filter), exact, ReadParts::PAYLOAD)
                .unwrap();
            assert_eq!(ids(&a), ids(&b), "{f}: exact answers differ");
            let mut brute: Vec<(f32, u64)> = matching
                .iter()
                .map(|(i, v, _)| {
                    let nv: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let nq: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
                    (
                        v.iter().zip(&q).map(|(x, y)| x * y).sum::<f32>() / (nv * nq),
                        *i,
                    )
                })
                .collect();
            brute.sort_by(|x, y| y.0.total_cmp(&x.0));
            let want: Vec<u64> = brute.iter().take(10).map(|x| x.1).collect();
            assert_eq!(ids(&b), want, "{f}: exact vs brute force");
            // Indexed, planned: recall against brute force.
            let c = indexed
                .search_parts(
                    &q,
                    10,
                    Some(&filter),
                    SearchParams::default(),
                    ReadParts::PAYLOAD,
                )
                .unwrap();
            let got: BTreeSet<u64> = ids(&c).into_iter().collect();
            assert!(c.iter().all(|h| indexing_service::index::filter::matches(
                &filter,
                h.point.payload.as_ref()
            )));
            if !want.is_empty() {
                recall_sum +=
                    want.iter().filter(|i| got.contains(i)).count() as f64 / want.len() as f64;
                cases += 1;
            }
        }
    }
    let recall = recall_sum / cases as f64;
    eprintln!("indexed filtered recall@10 {recall:.3} over {cases} queries");
    assert!(recall >= 0.97, "recall {recall}");
}

#[test]
fn indexes_follow_the_schema_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("collections/c");
    {
        let storage = Storage::open(dir.path()).unwrap();
        load(&storage, "c", 3000, 1000, 3);
        let c = storage.get("c").unwrap();
        assert!(pidx_files(&cdir).is_empty());
        index_all(&c);
        let sealed = c.info().sealed_segments;
        assert!(sealed >= 3);
        // Every sealed segment has each field's index.
        assert_eq!(
            pidx_files(&cdir).len(),
            4 * sealed,
            "{:?}",
            pidx_files(&cdir)
        );
        let schema = c.payload_schema();
        assert_eq!(schema.len(), 4);
        assert_eq!(schema["tag"].points, 3000);
        assert_eq!(schema["ok"].data_type, PayloadFieldType::Bool);
        // Segments sealed after the field was added carry it from the start.
        let mut rng = StdRng::seed_from_u64(9);
        c.upsert(
            (5000..6000)
                .map(|i| NewPoint {
                    id: Some(PointId::Num(i)),
                    vector: (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(),
                    payload: Some(payload(&mut rng, i)),
                    content: None,
                })
                .collect(),
        )
        .unwrap();
        c.flush().unwrap();
        let sealed = c.info().sealed_segments;
        assert_eq!(pidx_files(&cdir).len(), 4 * sealed);
        // Dropping a field removes its files.
        let t = c.delete_field_index("meta.lang").unwrap();
        c.wait_field_indexes(t);
        assert_eq!(pidx_files(&cdir).len(), 3 * c.info().sealed_segments);
        assert!(!c.payload_schema().contains_key("meta.lang"));
    }
    // Reopen: the schema is back and the index files are mapped as they
    // are (the same files: nothing rebuilt).
    let before = pidx_files(&cdir);
    let storage = Storage::open(dir.path()).unwrap();
    let c = storage.get("c").unwrap();
    assert_eq!(c.payload_schema().len(), 3);
    c.wait_idle();
    assert_eq!(pidx_files(&cdir), before, "nothing rewritten at open");
    let f: Filter =
        serde_json::from_value(json!({"must": [{"key": "tag", "match": "news"}]})).unwrap();
    let hits = c.search(&[0.5; DIM], 20, Some(&f)).unwrap();
    assert_eq!(hits.len(), 20);
    assert!(hits
        .iter()
        .all(|h| h.point.payload.as_ref().unwrap()["tag"] == "news"));
    // Bad field names.
    assert!(c.create_field_index("", PayloadFieldType::Keyword).is_err());
    assert!(c
        .create_field_index(&"k".repeat(300), PayloadFieldType::Keyword)
        .is_err());
}

#[test]
fn http_routes_in_qdrants_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _st) = app_on(dir.path());
    let rt = rt();
    rt.block_on(async {
        let (st, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "h", "dimension": 2})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        let (st, b) = call(
            &app,
            Method::PUT,
            "/collections/h/points",
            Some(json!({"points": [
                {"id": 1, "vector": [1, 0], "metadata": {"tag": "a", "n": 1}},
                {"id": 2, "vector": [0, 1], "metadata": {"tag": "b", "n": 2.5}}
            ]})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (st, b) = call(
            &app,
            Method::PUT,
            "/collections/h/index?wait=true",
            Some(json!({"field_name": "tag", "field_schema": "keyword"})),
        )
        .await;
        assert_eq!((st, &b), (StatusCode::OK, &json!({"status": "completed"})));
        let (st, b) = call(
            &app,
            Method::PUT,
            "/collections/h/index",
            Some(json!({"field_name": "n", "field_schema": {"type": "float"}})),
        )
        .await;
        assert_eq!(
            (st, &b),
            (StatusCode::OK, &json!({"status": "acknowledged"}))
        );
        let (_, d) = call(&app, Method::GET, "/collections/h", None).await;
        assert_eq!(d["payload_schema"]["tag"]["data_type"], "keyword");
        assert_eq!(d["payload_schema"]["n"]["data_type"], "float");
        for (body, want) in [
            (
                json!({"field_name": "x", "field_schema": "datetime"}),
                "field_schema",
            ),
            (
                json!({"field_name": "x", "field_schema": {"type": "text"}}),
                "field_schema",
            ),
            (
                json!({"field_name": "", "field_schema": "keyword"}),
                "field_name",
            ),
            (json!({"field_name": "x"}), "field_schema"),
        ] {
            let (st, b) = call(
                &app,
                Method::PUT,
                "/collections/h/index",
                Some(body.clone()),
            )
            .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
            let msg = b["error"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{body}: {msg}");
        }
        for (path, want) in [
            (
                "/collections/h/index?wait=maybe",
                "`wait` is `true` or `false`",
            ),
            (
                "/collections/h/index?wiat=true",
                "unknown query parameter `wiat`",
            ),
        ] {
            let (st, b) = call(
                &app,
                Method::PUT,
                path,
                Some(json!({"field_name": "x", "field_schema": "keyword"})),
            )
            .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
            assert!(
                b["error"]["message"].as_str().unwrap().contains(want),
                "{b}"
            );
        }
        let (st, _) = call(
            &app,
            Method::PUT,
            "/collections/nope/index",
            Some(json!({"field_name": "x", "field_schema": "keyword"})),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, b) = call(
            &app,
            Method::DELETE,
            "/collections/h/index/tag?wait=true",
            None,
        )
        .await;
        assert_eq!((st, &b), (StatusCode::OK, &json!({"status": "completed"})));
        // Dropping a field without an index changes nothing.
        let (st, _) = call(&app, Method::DELETE, "/collections/h/index/never", None).await;
        assert_eq!(st, StatusCode::OK);
        let (_, d) = call(&app, Method::GET, "/collections/h", None).await;
        assert!(d["payload_schema"].get("tag").is_none());
        assert_eq!(d["payload_schema"]["n"]["data_type"], "float");
    });
}
