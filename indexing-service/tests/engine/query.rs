//! The Query API and `mode` on search, through the real router: BM25 and
//! dense leaves, fusion (checked against RRF and DBSF computed here from
//! the two lists), filters that reach every prefetch, re-scoring, and
//! the requests it refuses.

use crate::http::{app_on, call, rt};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

const DOCS: &[(u64, &str, [f32; 4], &str)] = &[
    (
        1,
        "the dog barks at the mailman",
        [1.0, 0.0, 0.0, 0.0],
        "pets",
    ),
    (
        2,
        "a cat sleeps on the warm mat",
        [0.9, 0.1, 0.0, 0.0],
        "pets",
    ),
    (
        3,
        "dogs and cats can live together",
        [0.0, 1.0, 0.0, 0.0],
        "pets",
    ),
    (
        4,
        "hot dog with mustard in a bun",
        [0.0, 0.0, 1.0, 0.0],
        "food",
    ),
    (
        5,
        "a bun of bread, baked warm",
        [0.0, 0.0, 0.9, 0.1],
        "food",
    ),
    (
        6,
        "the stock market fell on monday",
        [0.0, 0.0, 0.0, 1.0],
        "news",
    ),
    (
        7,
        "dog dog dog: a dog show report",
        [0.5, 0.5, 0.0, 0.0],
        "news",
    ),
    (
        8,
        "mustard seeds and a yellow flower",
        [0.1, 0.0, 0.5, 0.5],
        "food",
    ),
];

fn setup(app: &axum::Router, rt: &tokio::runtime::Runtime, name: &str, text_index: Value) {
    rt.block_on(async {
        let (st, b) = call(
            app,
            Method::POST,
            "/collections",
            Some(
                json!({"name": name, "dimension": 4, "metric": "cosine", "text_index": text_index}),
            ),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        let points: Vec<Value> = DOCS
            .iter()
            .map(|(id, text, v, tag)| {
                json!({"id": id, "content": text, "vector": v, "metadata": {"tag": tag}})
            })
            .collect();
        let (st, b) = call(
            app,
            Method::PUT,
            &format!("/collections/{name}/points"),
            Some(json!({"points": points})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    });
}

fn ids_scores(b: &Value, key: &str) -> Vec<(u64, f64)> {
    b[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` in {b}"))
        .iter()
        .map(|h| (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
        .collect()
}

#[test]
fn query_api_leaves_fusion_filters_and_rescoring() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _st) = app_on(dir.path());
    let rt = rt();
    setup(&app, &rt, "q", json!({}));
    rt.block_on(async {
        let q = |body: Value| {
            let app = app.clone();
            async move { call(&app, Method::POST, "/collections/q/query", Some(body)).await }
        };
        // BM25 alone: the documents holding "dog" (not "dogs": no stemmer),
        // best first; the one saying it four times first.
        let (st, b) = q(json!({"query": {"text": "dog"}, "using": "bm25"})).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let bm25 = ids_scores(&b, "points");
        let ids: Vec<u64> = bm25.iter().map(|p| p.0).collect();
        assert_eq!(ids[0], 7);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, [1, 4, 7]);
        assert!(bm25.windows(2).all(|w| w[0].1 >= w[1].1) && bm25.iter().all(|p| p.1 > 0.0));
        assert_eq!(b["points"][0]["content"], "dog dog dog: a dog show report");
        // `mode: keyword` on a search is the same ranking.
        let (st, s) = call(
            &app,
            Method::POST,
            "/collections/q/search",
            Some(json!({"query": "dog", "mode": "keyword"})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{s}");
        assert_eq!(ids_scores(&s, "results"), bm25);
        // A dense leaf equals a plain search.
        let v = [0.7, 0.3, 0.1, 0.0];
        let (_, d) = q(json!({"query": v, "limit": 8})).await;
        let dense = ids_scores(&d, "points");
        let (_, s) = call(
            &app,
            Method::POST,
            "/collections/q/search",
            Some(json!({"vector": v, "top_k": 8})),
        )
        .await;
        assert_eq!(dense, ids_scores(&s, "results"));
        assert_eq!(dense.len(), 8);
        // RRF of the two, computed here.
        let (st, f) = q(json!({
            "prefetch": [
                {"query": {"nearest": v}, "limit": 8},
                {"query": {"text": "dog"}, "using": "bm25", "limit": 8}
            ],
            "query": {"fusion": "rrf"},
            "limit": 5
        }))
        .await;
        assert_eq!(st, StatusCode::OK, "{f}");
        let mut want: HashMap<u64, f64> = HashMap::new();
        for list in [&dense, &bm25] {
            for (rank, (id, _)) in list.iter().enumerate() {
                *want.entry(*id).or_default() += 1.0 / (60.0 + rank as f64 + 1.0);
            }
        }
        let fused = ids_scores(&f, "points");
        assert_eq!(fused.len(), 5);
        for (id, s) in &fused {
            assert!((s - want[id]).abs() < 1e-6, "rrf {id}: {s} vs {}", want[id]);
        }
        let mut best: Vec<f64> = want.values().copied().collect();
        best.sort_by(|a, b| b.total_cmp(a));
        let got: Vec<f64> = fused.iter().map(|p| p.1).collect();
        for (g, w) in got.iter().zip(&best) {
            assert!((g - w).abs() < 1e-6, "rrf order");
        }
        // `{"rrf": {"k": 1}}` changes the constant.
        let (_, f1) = q(json!({
            "prefetch": [
                {"query": v, "limit": 8},
                {"query": {"text": "dog"}, "using": "bm25", "limit": 8}
            ],
            "query": {"rrf": {"k": 1}},
        }))
        .await;
        let top = ids_scores(&f1, "points")[0];
        let expect: f64 = [&dense, &bm25]
            .iter()
            .filter_map(|l| l.iter().position(|p| p.0 == top.0))
            .map(|r| 1.0 / (1.0 + r as f64 + 1.0))
            .sum();
        assert!((top.1 - expect).abs() < 1e-6);
        // DBSF, computed here.
        let (st, f) = q(json!({
            "prefetch": [
                {"query": v, "limit": 8},
                {"query": {"text": "dog"}, "using": "bm25", "limit": 8}
            ],
            "query": {"fusion": "dbsf"},
            "limit": 8
        }))
        .await;
        assert_eq!(st, StatusCode::OK, "{f}");
        let mut want: HashMap<u64, f64> = HashMap::new();
        for list in [&dense, &bm25] {
            let n = list.len() as f64;
            let mean = list.iter().map(|p| p.1).sum::<f64>() / n;
            let sd = (list.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n).sqrt();
            for (id, s) in list.iter() {
                *want.entry(*id).or_default() +=
                    ((s - (mean - 3.0 * sd)) / (6.0 * sd)).clamp(0.0, 1.0);
            }
        }
        for (id, s) in ids_scores(&f, "points") {
            assert!((s - want[&id]).abs() < 1e-4, "dbsf {id}: {s} vs {}", want[&id]);
        }
        // The outer filter reaches every prefetch.
        let (_, f) = q(json!({
            "prefetch": [
                {"query": v, "limit": 8},
                {"query": {"text": "dog bun"}, "using": "bm25", "limit": 8}
            ],
            "query": {"fusion": "rrf"},
            "filter": {"must": [{"key": "tag", "match": "food"}]},
            "limit": 8
        }))
        .await;
        let pts = f["points"].as_array().unwrap();
        assert!(!pts.is_empty());
        assert!(pts.iter().all(|p| p["metadata"]["tag"] == "food"), "{f}");
        // A prefetch's own filter narrows that prefetch only.
        let (_, f) = q(json!({
            "prefetch": [
                {"query": v, "limit": 8, "filter": {"must": [{"key": "tag", "match": "news"}]}},
                {"query": {"text": "cat"}, "using": "bm25", "limit": 8}
            ],
            "query": {"fusion": "rrf"},
            "limit": 8
        }))
        .await;
        let mut ids: Vec<u64> = ids_scores(&f, "points").iter().map(|p| p.0).collect();
        ids.sort();
        assert_eq!(ids, [2, 6, 7], "news by vector, cat by text");
        // Re-scoring BM25 candidates with a vector: dense scores, dense order.
        let (_, r) = q(json!({
            "prefetch": [{"query": {"text": "dog bun"}, "using": "bm25", "limit": 8}],
            "query": v,
            "with_vector": true
        }))
        .await;
        let rescored = ids_scores(&r, "points");
        let mut ids: Vec<u64> = rescored.iter().map(|p| p.0).collect();
        ids.sort();
        assert_eq!(ids, [1, 4, 5, 7]);
        let by_dense: HashMap<u64, f64> = dense.iter().copied().collect();
        for (id, s) in &rescored {
            assert!((s - by_dense[id]).abs() < 1e-5);
        }
        assert!(rescored.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(r["points"][0]["vector"].as_array().unwrap().len(), 4);
        // Re-scoring dense candidates with BM25: only those candidates.
        let (_, r) = q(json!({
            "prefetch": [{"query": v, "limit": 2}],
            "query": {"text": "dog cat"},
            "using": "bm25"
        }))
        .await;
        let near2: Vec<u64> = dense[..2].iter().map(|p| p.0).collect();
        for (id, _) in ids_scores(&r, "points") {
            assert!(near2.contains(&id), "{id} not among {near2:?}");
        }
        // offset, score_threshold, with_payload false.
        let (_, all) = q(json!({"query": {"text": "dog"}, "using": "bm25"})).await;
        let (_, off) = q(json!({"query": {"text": "dog"}, "using": "bm25", "offset": 1, "limit": 2})).await;
        assert_eq!(ids_scores(&off, "points"), ids_scores(&all, "points")[1..3]);
        let cut = bm25[1].1;
        let (_, th) = q(json!({"query": {"text": "dog"}, "using": "bm25", "score_threshold": cut, "with_payload": false})).await;
        assert_eq!(ids_scores(&th, "points"), bm25[..2]);
        assert!(th["points"][0]["content"].is_null());
        // Qdrant's path answers the same.
        let (st, qd) = call(
            &app,
            Method::POST,
            "/collections/q/points/query",
            Some(json!({"query": {"text": "dog"}, "using": "bm25"})),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(ids_scores(&qd, "points"), bm25);
    });
}

#[test]
fn bad_queries_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _st) = app_on(dir.path());
    let rt = rt();
    setup(&app, &rt, "q", json!({}));
    setup(&app, &rt, "plain", json!({"enabled": false}));
    rt.block_on(async {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("q", json!({"query": {"fusion": "rrf"}}), "`query` is a fusion"),
            ("q", json!({"prefetch": [{"query": [1, 0, 0, 0]}]}), "give `query`"),
            ("q", json!({}), "give `query`"),
            ("q", json!({"query": [1, 0, 0, 0], "using": "bm25"}), "takes {\"text\""),
            ("q", json!({"query": {"text": "x"}, "using": "sparse"}), "using"),
            ("q", json!({"query": {"fusion": "max"}, "prefetch": [{"query": [1, 0, 0, 0]}]}), "\"rrf\" or \"dbsf\""),
            ("q", json!({"query": {"rrf": {"k": 0}}, "prefetch": [{"query": [1, 0, 0, 0]}]}), "query.rrf.k"),
            ("q", json!({"query": [1, 0, 0, 0], "limit": 0}), "limit"),
            ("q", json!({"query": [1, 0, 0, 0], "limit": 1001}), "limit"),
            ("q", json!({"query": [1, 0, 0, 0], "offset": 999, "limit": 10}), "offset"),
            ("q", json!({"query": [1, 0, 0]}), "3 dimensions"),
            ("q", json!({"query": {"text": "x"}, "using": "bm25", "bm25": {"b": 2}}), "bm25.b"),
            ("q", json!({"query": [1, 0, 0, 0], "params": {"ef": 0}}), "params.ef"),
            ("q", json!({"prefetch": [{"prefetch": [{"prefetch": [{"prefetch": [{"query": [1, 0, 0, 0]}], "query": {"fusion": "rrf"}}], "query": {"fusion": "rrf"}}], "query": {"fusion": "rrf"}}], "query": {"fusion": "rrf"}}), "`prefetch[0].prefetch[0].prefetch[0].prefetch[0]` is nested more than 3 levels"),
            ("q", json!({"query": "dog"}), "for text give {\"text\""),
            ("q", json!({"query": [1, 0, 0, 0], "filter": {"must": [{"key": "t", "match": {"any": ["a"], "foo": 1}}]}}), "got an object with keys"),
            ("q", json!({"query": [1, 0, 0, 0], "filter": {"must": [{"key": "t", "match": {"text": 3}}]}}), "`match.text` is a string"),
            ("q", json!({"query": [1, 0, 0, 0], "bm25": {"k1": 1}}), "`bm25` sets BM25 parameters"),
            ("q", json!({"prefetch": [{"query": [1, 0, 0, 0]}], "query": {"fusion": "rrf"}, "using": "bm25"}), "leave `using` out"),
            ("q", json!({"query": [1, 0, 0, 0], "filter": {"must": [{"key": "", "match": 1}]}}), "filter"),
            ("q", json!({"query": [1, 0, 0, 0], "wat": 1}), "wat"),
            ("plain", json!({"query": {"text": "dog"}, "using": "bm25"}), "no text index"),
        ];
        for (coll, body, want) in cases {
            let (st, b) = call(
                &app,
                Method::POST,
                &format!("/collections/{coll}/query"),
                Some(body.clone()),
            )
            .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
            let msg = b["error"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{body}: `{msg}` lacks `{want}`");
        }
        // Three levels of prefetch below the query are allowed.
        let (st, b) = call(
            &app,
            Method::POST,
            "/collections/q/query",
            Some(json!({"prefetch": [{"prefetch": [{"prefetch": [{"query": {"text": "dog"}, "using": "bm25"}], "query": {"fusion": "rrf"}}], "query": {"fusion": "rrf"}}], "query": {"fusion": "rrf"}})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["points"][0]["id"], 7);
        let (st, _) = call(&app, Method::POST, "/collections/nope/query", Some(json!({"query": [1, 0, 0, 0]}))).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        // `mode` needs a text query and no vector.
        for (body, want) in [
            (json!({"vector": [1, 0, 0, 0], "mode": "keyword"}), "leave out `vector`"),
            (json!({"mode": "hybrid"}), "give the text"),
            (json!({"query": "x", "mode": "sparse"}), "mode"),
        ] {
            let (st, b) = call(&app, Method::POST, "/collections/q/search", Some(body.clone())).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
            let msg = b["error"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{body}: `{msg}` lacks `{want}`");
        }
        // The collection describes its text index.
        let (_, d) = call(&app, Method::GET, "/collections/q", None).await;
        assert_eq!(d["text_index"], json!({"enabled": true, "k1": 1.2, "b": 0.75}));
        let (_, d) = call(&app, Method::GET, "/collections/plain", None).await;
        assert_eq!(d["text_index"]["enabled"], false);
        // Bad text index settings at creation.
        let (st, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "bad", "dimension": 4, "text_index": {"k1": -1}})),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["error"]["message"].as_str().unwrap().contains("text_index.k1"), "{b}");
    });
}
