//! Every size a client controls has a bound: each one just past its bound
//! is a 422 naming the field and the bound, each one at its bound is
//! accepted, the OpenAPI document states the same bounds, and settings
//! persisted before the bounds existed (an older `collection.json`) still
//! open and search without crashing. The router is driven in-process; the
//! embedding service is an unused address (only vector routes succeed).

use axum::http::{Method, StatusCode};
use indexing_service::collection::{CollectionConfig, FlushThreshold, NewPoint, Storage};
use indexing_service::index::segment_index::{
    IndexKind, IndexSettings, IvfSettings, Quantization, SearchParams,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::config::{FsyncMode, IndexingConfig};
use shared::wire::indexing::{Metric, PointId};
use shared::wire::limits;
use std::path::Path;

fn api_at(dir: &Path) -> axum::Router {
    let cfg = IndexingConfig {
        data_dir: dir.to_path_buf(),
        // Nothing listens here: routes that need embeddings answer 503.
        embedding_service_url: "http://127.0.0.1:9".into(),
        embedding_retries: 0,
        embedding_timeout_ms: 500,
        wal: shared::config::WalConfig {
            fsync: FsyncMode::Never,
            ..Default::default()
        },
        ..Default::default()
    };
    indexing_service::app(indexing_service::state(cfg).unwrap())
}

async fn call(app: &axum::Router, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    crate::http::call_raw(app, method, uri, Some(body.to_string())).await
}

async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::POST, uri, body).await
}

/// A 422 `invalid_request` whose message names `field` (in backticks) and
/// holds each of `bound_parts` (the bound's numbers).
#[track_caller]
fn assert_rejected(r: &(StatusCode, Value), field: &str, bound_parts: &[&str]) {
    let (status, body) = r;
    assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{field}: {body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("`{field}`")),
        "message does not name `{field}`: {msg}"
    );
    for p in bound_parts {
        assert!(msg.contains(p), "message lacks the bound {p}: {msg}");
    }
}

#[track_caller]
fn assert_ok(r: &(StatusCode, Value), what: &str) {
    assert!(r.0.is_success(), "{what}: {} {}", r.0, r.1);
}

/// A collection `name` of dimension 4 (euclidean) holding `n` points.
async fn collection_with_points(app: &axum::Router, name: &str, n: usize) {
    let r = post(
        app,
        "/collections",
        json!({"name": name, "dimension": 4, "metric": "euclidean", "fsync": "never"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let points: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 2.0, 3.0]}))
        .collect();
    let r = call(
        app,
        Method::PUT,
        &format!("/collections/{name}/points"),
        json!({ "points": points }),
    )
    .await;
    assert_ok(&r, "upsert");
}

#[tokio::test]
async fn search_sizes_are_bounded_on_both_search_routes() {
    let dir = tempfile::tempdir().unwrap();
    let app = api_at(dir.path());
    collection_with_points(&app, "s", 20).await;
    for (uri, base) in [
        (
            "/collections/s/search",
            json!({"vector": [1.0, 1.0, 2.0, 3.0]}),
        ),
        (
            "/search",
            json!({"vector": [1.0, 1.0, 2.0, 3.0], "collection": "s"}),
        ),
    ] {
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        // Once an allocation of 10^10 beams, and a capacity overflow at 2^62.
        let r = post(&app, uri, with("ef", json!(10_000_000_000u64))).await;
        assert_rejected(&r, "ef", &["1", "4096", "10000000000"]);
        assert_eq!(
            r.1["error"]["message"],
            "`ef` must be between 1 and 4096, got 10000000000"
        );
        let r = post(&app, uri, with("ef", json!(1u64 << 62))).await;
        assert_rejected(&r, "ef", &["4096", &(1u64 << 62).to_string()]);
        for bad in [0, limits::MAX_EF + 1] {
            let r = post(&app, uri, with("ef", json!(bad))).await;
            assert_rejected(&r, "ef", &["between 1 and 4096"]);
        }
        for good in [1, limits::MAX_EF] {
            let r = post(&app, uri, with("ef", json!(good))).await;
            assert_ok(&r, &format!("ef {good} on {uri}"));
            assert_eq!(r.1["results"].as_array().unwrap().len(), 10);
        }
        for bad in [0, limits::MAX_TOP_K + 1] {
            let r = post(&app, uri, with("top_k", json!(bad))).await;
            assert_rejected(&r, "top_k", &["between 1 and 1000"]);
        }
        let r = post(&app, uri, with("top_k", json!(limits::MAX_TOP_K))).await;
        assert_ok(&r, "top_k at the bound");
        assert_eq!(r.1["results"].as_array().unwrap().len(), 20);
        for bad in [0, limits::MAX_NPROBE + 1] {
            let r = post(&app, uri, with("nprobe", json!(bad))).await;
            assert_rejected(&r, "nprobe", &["between 1 and 65536"]);
        }
        let r = post(&app, uri, with("nprobe", json!(limits::MAX_NPROBE))).await;
        assert_ok(&r, "nprobe at the bound");
        // Beyond what the number type holds, or negative: still a 422.
        for raw in ["18446744073709551616", "-1", "1e30"] {
            let body = base.to_string().replace('}', &format!(", \"ef\": {raw}}}"));
            let r = crate::http::call_raw(&app, Method::POST, uri, Some(body)).await;
            assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "ef {raw}: {}", r.1);
        }
    }
}

#[tokio::test]
async fn batch_search_bounds_the_count_and_each_search() {
    let dir = tempfile::tempdir().unwrap();
    let app = api_at(dir.path());
    collection_with_points(&app, "b", 5).await;
    let one = json!({"vector": [0.0, 1.0, 2.0, 3.0], "top_k": 2});
    let searches = vec![one.clone(); limits::MAX_BATCH_SEARCHES];
    let r = post(
        &app,
        "/collections/b/search/batch",
        json!({ "searches": searches }),
    )
    .await;
    assert_ok(&r, "a full batch");
    assert_eq!(
        r.1["results"].as_array().unwrap().len(),
        limits::MAX_BATCH_SEARCHES
    );
    let searches = vec![one.clone(); limits::MAX_BATCH_SEARCHES + 1];
    let r = post(
        &app,
        "/collections/b/search/batch",
        json!({ "searches": searches }),
    )
    .await;
    assert_rejected(&r, "searches", &["100", "101"]);
    // Each search is checked, named by its place, before any runs.
    let mut bad = one.clone();
    bad["ef"] = json!(10_000_000_000u64);
    let r = post(
        &app,
        "/collections/b/search/batch",
        json!({"searches": [one.clone(), bad]}),
    )
    .await;
    assert_rejected(&r, "searches[1].ef", &["4096", "10000000000"]);
    let mut bad = one.clone();
    bad["top_k"] = json!(1001);
    let r = post(
        &app,
        "/collections/b/search/batch",
        json!({ "searches": [bad] }),
    )
    .await;
    assert_rejected(&r, "searches[0].top_k", &["1000"]);
    let mut bad = one.clone();
    bad["nprobe"] = json!(0);
    let r = post(
        &app,
        "/collections/b/search/batch",
        json!({ "searches": [bad] }),
    )
    .await;
    assert_rejected(&r, "searches[0].nprobe", &["65536"]);
}

#[tokio::test]
async fn collection_settings_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = api_at(dir.path());
    let big_bytes = limits::MAX_FLUSH_BYTES as u64;
    // (settings merged into the request, the field, accepted?)
    let cases: Vec<(Value, &str, bool)> = vec![
        (json!({"hnsw": {"ef": 10_000_000_000u64}}), "hnsw.ef", false),
        (json!({"hnsw": {"ef": 1u64 << 62}}), "hnsw.ef", false),
        (json!({"hnsw": {"ef": 0}}), "hnsw.ef", false),
        (json!({"hnsw": {"ef": 4097}}), "hnsw.ef", false),
        (json!({"hnsw": {"ef": 4096}}), "hnsw.ef", true),
        (json!({"hnsw": {"m": 1}}), "hnsw.m", false),
        (json!({"hnsw": {"m": 257}}), "hnsw.m", false),
        (json!({"hnsw": {"m": 10_000_000_000u64}}), "hnsw.m", false),
        (json!({"hnsw": {"m": 2}}), "hnsw.m", true),
        (json!({"hnsw": {"m": 256}}), "hnsw.m", true),
        (
            json!({"hnsw": {"ef_construction": 0}}),
            "hnsw.ef_construction",
            false,
        ),
        (
            json!({"hnsw": {"ef_construction": 4097}}),
            "hnsw.ef_construction",
            false,
        ),
        (
            json!({"hnsw": {"ef_construction": 4096}}),
            "hnsw.ef_construction",
            true,
        ),
        (
            json!({"index": "ivf_pq", "ivf": {"nlist": 65537}}),
            "ivf.nlist",
            false,
        ),
        (
            json!({"index": "ivf_pq", "ivf": {"nlist": 65536}}),
            "ivf.nlist",
            true,
        ),
        (
            json!({"index": "ivf_pq", "ivf": {"nprobe": 0}}),
            "ivf.nprobe",
            false,
        ),
        (
            json!({"index": "ivf_pq", "ivf": {"nprobe": 65537}}),
            "ivf.nprobe",
            false,
        ),
        (
            json!({"index": "ivf_pq", "ivf": {"nprobe": 65536}}),
            "ivf.nprobe",
            true,
        ),
        (
            json!({"quantization": {"type": "scalar", "oversampling": 0.5}}),
            "quantization.oversampling",
            false,
        ),
        (
            json!({"quantization": {"type": "scalar", "oversampling": 100.5}}),
            "quantization.oversampling",
            false,
        ),
        (
            json!({"quantization": {"type": "scalar", "oversampling": 100.0}}),
            "quantization.oversampling",
            true,
        ),
        (
            json!({"quantization": {"type": "pq", "oversampling": 101.0}}),
            "quantization.oversampling",
            false,
        ),
        (
            json!({"quantization": {"type": "pq", "subvectors": 65537}}),
            "quantization.subvectors",
            false,
        ),
        (
            json!({"quantization": {"type": "pq", "subvectors": 8, "oversampling": 1.0}}),
            "quantization.subvectors",
            true,
        ),
        (json!({"dimension": 0}), "dimension", false),
        (json!({"dimension": 65537}), "dimension", false),
        (json!({"dimension": 65536}), "dimension", true),
        (json!({"max_segment_size": 0}), "max_segment_size", false),
        (
            json!({"max_segment_size": (1u64 << 30) + 1}),
            "max_segment_size",
            false,
        ),
        (json!({"max_segment_size": 1}), "max_segment_size", true),
        (
            json!({"max_segment_size": 1u64 << 30}),
            "max_segment_size",
            true,
        ),
        (
            json!({"flush_threshold": {"vectors": 0}}),
            "flush_threshold.vectors",
            false,
        ),
        (
            json!({"flush_threshold": {"vectors": 10_000_001}}),
            "flush_threshold.vectors",
            false,
        ),
        (
            json!({"flush_threshold": {"vectors": 10_000_000}}),
            "flush_threshold.vectors",
            true,
        ),
        (
            json!({"flush_threshold": {"bytes": 0}}),
            "flush_threshold.bytes",
            false,
        ),
        (
            json!({"flush_threshold": {"bytes": big_bytes + 1}}),
            "flush_threshold.bytes",
            false,
        ),
        (
            json!({"flush_threshold": {"bytes": big_bytes}}),
            "flush_threshold.bytes",
            true,
        ),
    ];
    for (i, (settings, field, accepted)) in cases.into_iter().enumerate() {
        let name = format!("c{i}");
        let mut body = json!({"name": name, "dimension": 8, "fsync": "never"});
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = post(&app, "/collections", body.clone()).await;
        if accepted {
            assert_eq!(r.0, StatusCode::CREATED, "{body}: {}", r.1);
        } else {
            assert_rejected(&r, field, &["between"]);
            let g = call(
                &app,
                Method::GET,
                &format!("/collections/{name}"),
                json!({}),
            )
            .await;
            assert_eq!(g.0, StatusCode::NOT_FOUND, "{body} created a collection");
        }
    }
    // The example once accepted, message and all.
    let r = post(
        &app,
        "/collections",
        json!({"name": "x", "dimension": 8, "hnsw": {"ef": 10_000_000_000u64}}),
    )
    .await;
    assert_eq!(
        r.1["error"]["message"],
        "`hnsw.ef` must be between 1 and 4096, got 10000000000"
    );
    // PQ subvectors within the bound must still divide the dimension.
    let r = post(
        &app,
        "/collections",
        json!({"name": "y", "dimension": 8, "quantization": {"type": "pq", "subvectors": 3}}),
    )
    .await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`quantization.subvectors`"),
        "{}",
        r.1
    );
}

#[tokio::test]
async fn point_lists_and_pages_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = api_at(dir.path());
    let r = post(
        &app,
        "/collections",
        json!({"name": "p", "dimension": 2, "fsync": "never",
               "flush_threshold": {"vectors": limits::MAX_FLUSH_VECTORS}}),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let points = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": i, "vector": [i as f32, 1.0]}))
            .collect()
    };
    let r = call(
        &app,
        Method::PUT,
        "/collections/p/points",
        json!({"points": points(limits::MAX_UPSERT_POINTS + 1)}),
    )
    .await;
    assert_rejected(&r, "points", &["10000", "10001"]);
    let r = post(&app, "/collections/p/points/count", json!({})).await;
    assert_eq!(r.1["count"], 0, "a refused upsert wrote nothing");
    let r = call(
        &app,
        Method::PUT,
        "/collections/p/points",
        json!({"points": points(limits::MAX_UPSERT_POINTS)}),
    )
    .await;
    assert_ok(&r, "upsert at the bound");
    assert_eq!(
        r.1["ids"].as_array().unwrap().len(),
        limits::MAX_UPSERT_POINTS
    );

    for bad in [0, limits::MAX_SCROLL_LIMIT + 1] {
        let r = post(
            &app,
            "/collections/p/points/scroll",
            json!({ "limit": bad }),
        )
        .await;
        assert_rejected(&r, "limit", &["between 1 and 10000"]);
    }
    let r = post(
        &app,
        "/collections/p/points/scroll",
        json!({"limit": limits::MAX_SCROLL_LIMIT}),
    )
    .await;
    assert_ok(&r, "scroll at the bound");
    assert_eq!(
        r.1["points"].as_array().unwrap().len(),
        limits::MAX_SCROLL_LIMIT
    );

    let ids = |n: usize| -> Vec<u64> { (0..n as u64).collect() };
    let r = post(
        &app,
        "/collections/p/points/delete",
        json!({"ids": ids(limits::MAX_DELETE_IDS + 1)}),
    )
    .await;
    assert_rejected(&r, "ids", &["10000", "10001"]);
    let r = post(
        &app,
        "/collections/p/points/delete",
        json!({"ids": ids(limits::MAX_DELETE_IDS)}),
    )
    .await;
    assert_ok(&r, "delete at the bound");
    assert_eq!(r.1["deleted"], limits::MAX_DELETE_IDS);
}

#[tokio::test]
async fn embed_document_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = api_at(dir.path());
    let docs = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"content": format!("document {i}")}))
            .collect()
    };
    let r = post(
        &app,
        "/embed",
        json!({"documents": docs(limits::MAX_EMBED_DOCUMENTS + 1)}),
    )
    .await;
    assert_rejected(&r, "documents", &["10000", "10001"]);
    let r = post(&app, "/embed", json!({ "documents": [] })).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.1["error"]["code"], "empty_input");
    // At the bound the request passes the check and reaches the embedding
    // service, which is not running here.
    let r = post(
        &app,
        "/embed",
        json!({"documents": docs(limits::MAX_EMBED_DOCUMENTS)}),
    )
    .await;
    assert_eq!(r.0, StatusCode::SERVICE_UNAVAILABLE, "{}", r.1);
}

/// Settings written before the bounds existed: an older `collection.json`
/// with `ef`, `m`, `ef_construction`, `nlist`, `nprobe` and `oversampling`
/// far out of range. Every kind of index still opens, answers (exactly:
/// the clamped beams cover these small segments) and builds new segments.
#[test]
fn persisted_out_of_range_settings_still_open_build_and_search() {
    let mut rng = StdRng::seed_from_u64(11);
    let dim = 8;
    let n = 400;
    let vecs: Vec<Vec<f32>> = (0..2 * n)
        .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect();
    let queries: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect();
    let kinds: [(&str, IndexKind, Quantization); 4] = [
        ("sq8", IndexKind::Hnsw, Quantization::default()),
        ("f32", IndexKind::Hnsw, Quantization::None),
        (
            "pq",
            IndexKind::Hnsw,
            Quantization::Pq {
                subvectors: 4,
                oversampling: 4.0,
            },
        ),
        (
            "ivf",
            IndexKind::IvfPq,
            Quantization::Pq {
                subvectors: 4,
                oversampling: 4.0,
            },
        ),
    ];
    let pts = |range: std::ops::Range<usize>| -> Vec<NewPoint> {
        range
            .map(|i| NewPoint {
                id: Some(PointId::Num(i as u64)),
                vector: vecs[i].clone(),
                payload: Some(json!({"even": i % 2 == 0})),
                content: None,
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let st = Storage::open(dir.path()).unwrap();
        for (name, kind, quantization) in kinds {
            let mut cfg = CollectionConfig::new(name, dim, Metric::Euclidean);
            cfg.fsync = FsyncMode::Never;
            cfg.flush_threshold = FlushThreshold {
                vectors: 1_000_000,
                bytes: 1 << 30,
            };
            cfg.index = IndexSettings {
                kind,
                quantization,
                ivf: IvfSettings {
                    nlist: 8,
                    nprobe: 2,
                },
                min_points: 10,
                ..Default::default()
            };
            let c = st.create(cfg).unwrap();
            c.upsert(pts(0..n)).unwrap();
            c.flush().unwrap();
            assert_eq!(c.info().indexed_segments, 1, "{name}: index built");
        }
        st.close();
    }
    // What an older version could have written.
    for (name, ..) in kinds {
        let p = dir
            .path()
            .join("collections")
            .join(name)
            .join("collection.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let ix = &mut cfg["index"];
        ix["hnsw"] = json!({"m": 10_000_000_000u64, "ef_construction": 10_000_000_000u64,
                            "ef": 10_000_000_000u64});
        ix["ivf"] = json!({"nlist": 10_000_000_000u64, "nprobe": 1u64 << 62});
        if ix["quantization"]["type"] != "none" {
            ix["quantization"]["oversampling"] = json!(1e9);
        }
        std::fs::write(&p, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }
    let exact = SearchParams {
        exact: true,
        ..Default::default()
    };
    let ids = |v: Vec<indexing_service::collection::ScoredPoint>| -> Vec<PointId> {
        v.into_iter().map(|p| p.point.id).collect()
    };
    {
        let st = Storage::open(dir.path()).unwrap();
        for (name, ..) in kinds {
            let c = st.get(name).unwrap();
            assert_eq!(c.config().index.hnsw.ef, 10_000_000_000, "{name}");
            assert_eq!(c.info().indexed_segments, 1, "{name}: index opened");
            for q in &queries {
                let want = ids(c.search_with(q, 10, None, exact).unwrap());
                let got = ids(c.search_with(q, 10, None, SearchParams::default()).unwrap());
                assert_eq!(got, want, "{name}: the clamped beam covers the segment");
                // Unbounded per-call values through the collection API too.
                let wide = SearchParams {
                    ef: Some(1 << 62),
                    nprobe: Some(usize::MAX),
                    exact: false,
                };
                let all = ids(c.search_with(q, usize::MAX, None, wide).unwrap());
                let distinct: std::collections::HashSet<&PointId> = all.iter().collect();
                assert!(
                    all.len() >= 10 && all.len() <= n && distinct.len() == all.len(),
                    "{name}: {} results",
                    all.len()
                );
                let f: shared::wire::indexing::Filter =
                    serde_json::from_value(json!({"must": [{"key": "even", "match": true}]}))
                        .unwrap();
                let got = c.search_with(q, 10, Some(&f), wide).unwrap();
                assert_eq!(got.len(), 10, "{name}: filtered");
            }
            // A new segment is built under the persisted settings (m and
            // ef_construction clamped, nlist held to the points).
            c.upsert(pts(n..2 * n)).unwrap();
            c.flush().unwrap();
            assert_eq!(c.info().indexed_segments, 2, "{name}: second index built");
            for q in &queries {
                let want = ids(c.search_with(q, 10, None, exact).unwrap());
                let got = ids(c.search_with(q, 10, None, SearchParams::default()).unwrap());
                assert_eq!(got, want, "{name}: after a build with clamped settings");
            }
        }
        st.close();
    }
    // The same data behind the HTTP API: searches answer, the graph files
    // written under the clamped M open again.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = api_at(dir.path());
        for (name, ..) in kinds {
            let r = post(
                &app,
                &format!("/collections/{name}/search"),
                json!({"vector": queries[0], "top_k": 5}),
            )
            .await;
            assert_ok(&r, name);
            assert_eq!(r.1["results"].as_array().unwrap().len(), 5, "{name}");
        }
    });
}

/// The OpenAPI document states the bounds the handlers check (the schema
/// attributes take literals; this keeps them equal to the constants).
#[test]
fn openapi_states_the_same_bounds() {
    let spec = serde_json::to_value(indexing_service::api::openapi()).unwrap();
    let schemas = &spec["components"]["schemas"];
    // The property's schema: directly, or the non-null arm of a oneOf.
    let prop = |schema: &Value, field: &str| -> Value {
        let p = schema["properties"][field].clone();
        assert!(!p.is_null(), "no property {field} in {schema}");
        match p.get("oneOf").and_then(|o| o.as_array()) {
            Some(arms) => arms.iter().find(|a| a["type"] != "null").cloned().unwrap(),
            None => p,
        }
    };
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let range = |schema: &str, field: &str, min: f64, max: f64| {
        let p = prop(&schemas[schema], field);
        assert_eq!(num(&p["minimum"]), min, "{schema}.{field} minimum: {p}");
        assert_eq!(num(&p["maximum"]), max, "{schema}.{field} maximum: {p}");
    };
    let items_of = |schema: &Value, field: &str, max: usize| {
        let p = prop(schema, field);
        assert_eq!(p["maxItems"], json!(max), "{field} maxItems: {p}");
    };
    let items = |schema: &str, field: &str, max: usize| items_of(&schemas[schema], field, max);
    use limits::*;
    let f = |x: usize| x as f64;
    range("SearchRequest", "top_k", f(MIN_TOP_K), f(MAX_TOP_K));
    range("SearchRequest", "ef", f(MIN_EF), f(MAX_EF));
    range("SearchRequest", "nprobe", f(MIN_NPROBE), f(MAX_NPROBE));
    range(
        "ScrollRequest",
        "limit",
        f(MIN_SCROLL_LIMIT),
        f(MAX_SCROLL_LIMIT),
    );
    range("HnswSettings", "m", f(MIN_M), f(MAX_M));
    range(
        "HnswSettings",
        "ef_construction",
        f(MIN_EF_CONSTRUCTION),
        f(MAX_EF_CONSTRUCTION),
    );
    range("HnswSettings", "ef", f(MIN_EF), f(MAX_EF));
    range("IvfSettings", "nlist", f(MIN_NLIST), f(MAX_NLIST));
    range("IvfSettings", "nprobe", f(MIN_NPROBE), f(MAX_NPROBE));
    range(
        "CreateCollectionRequest",
        "dimension",
        f(MIN_DIMENSION),
        f(MAX_DIMENSION),
    );
    range(
        "FlushThresholdInput",
        "vectors",
        f(MIN_FLUSH_VECTORS),
        f(MAX_FLUSH_VECTORS),
    );
    range(
        "FlushThresholdInput",
        "bytes",
        f(MIN_FLUSH_BYTES),
        f(MAX_FLUSH_BYTES),
    );
    items("BatchSearchRequest", "searches", MAX_BATCH_SEARCHES);
    items("UpsertPointsRequest", "points", MAX_UPSERT_POINTS);
    // Delete: a oneOf of by-ids and by-filter; the ids arm carries the bound.
    let by_ids = &schemas["DeletePointsRequest"]["oneOf"][0];
    assert_eq!(by_ids["required"], json!(["ids"]), "{by_ids}");
    items_of(by_ids, "ids", MAX_DELETE_IDS);
    items("GetPointsRequest", "ids", MAX_GET_IDS);
    items("EmbedDocumentsRequest", "documents", MAX_EMBED_DOCUMENTS);
    // Quantization: a oneOf of tagged variants; both carry `oversampling`,
    // PQ also `subvectors`.
    let variants = schemas["Quantization"]["oneOf"].as_array().unwrap();
    let with_oversampling: Vec<&Value> = variants
        .iter()
        .filter(|v| !v["properties"]["oversampling"].is_null())
        .collect();
    assert_eq!(with_oversampling.len(), 2, "{}", schemas["Quantization"]);
    for v in with_oversampling {
        let p = prop(v, "oversampling");
        assert_eq!(num(&p["minimum"]), MIN_OVERSAMPLING as f64, "{p}");
        assert_eq!(num(&p["maximum"]), MAX_OVERSAMPLING as f64, "{p}");
    }
    let pq = variants
        .iter()
        .find(|v| !v["properties"]["subvectors"].is_null())
        .unwrap();
    let p = prop(pq, "subvectors");
    assert_eq!(num(&p["minimum"]), f(MIN_SUBVECTORS), "{p}");
    assert_eq!(num(&p["maximum"]), f(MAX_SUBVECTORS), "{p}");
}
