//! Three API rules, through the in-process router:
//!
//! - Text in bulk: any number of documents (up to the request bound) is
//!   embedded in calls that respect the embedding service's limits (texts
//!   per call, body bytes), a bounded number at once, stored in order; one
//!   failed call writes nothing. A fake embedding service on a local port
//!   enforces small limits and counts the calls.
//! - Collections: only the default collection is created implicitly, and
//!   only once the request's embedding succeeded; any other unknown name is
//!   a 404. Implicit and explicit collections get the same settings.
//! - Point ids in URL paths: the canonical decimal form of a u64 is an
//!   integer id, anything else a string id; `?id_type=string` reaches any
//!   string id; `POST /collections/{name}/points` retrieves by ids.

use crate::http::{app_on, call};
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use indexing_service::api::AppState;
use serde_json::{json, Value};
use shared::config::{FsyncMode, IndexingConfig, WalConfig};
use shared::wire::embedding::{EmbedRequest, InfoResponse};
use shared::wire::limits;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The fake service's limits: small, so that splitting happens.
const FAKE_MAX_BATCH: usize = 7;
const FAKE_BODY_LIMIT: usize = 2048;
const FAKE_DIM: usize = 4;

/// What the fake embedding service saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    texts: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Calls refused for breaking a limit (must stay 0).
    over_limit: AtomicUsize,
    max_body: AtomicUsize,
}

/// The fake's vector of a text: deterministic, never zero.
fn fake_vector(text: &str) -> Vec<f32> {
    let h = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    vec![
        1.0 + text.len() as f32,
        (h % 1000) as f32,
        ((h >> 20) % 1000) as f32,
        1.0,
    ]
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// An embedding service on 127.0.0.1 that enforces at most
/// `FAKE_MAX_BATCH` texts and `FAKE_BODY_LIMIT` body bytes per call,
/// answers 500 for a text holding "poison" and 422 `input_too_long` for
/// one holding "reject". Returns its URL and what it saw.
async fn fake_embedding_service() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let info = InfoResponse {
        model_id: "fake".into(),
        model_source: "test".into(),
        architecture: "none".into(),
        dimension: FAKE_DIM,
        max_seq_length: 128,
        pooling: "mean".into(),
        normalize: false,
        device: "cpu".into(),
        dtype: "f32".into(),
        backend: "fake".into(),
        max_batch_tokens: 1024,
        max_client_batch_size: FAKE_MAX_BATCH,
        max_concurrent_requests: 64,
        body_limit_bytes: Some(FAKE_BODY_LIMIT),
        version: "0".into(),
        models: Vec::new(),
    };
    let s2 = seen.clone();
    let app = Router::new()
        .route("/info", get(move || async move { axum::Json(info) }))
        .route(
            "/embed",
            post(move |body: Bytes| {
                let seen = s2.clone();
                async move {
                    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                    seen.max_body.fetch_max(body.len(), Ordering::SeqCst);
                    seen.calls.fetch_add(1, Ordering::SeqCst);
                    // Long enough for calls to overlap.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    let err = |status: u16, code: &str| {
                        (
                            StatusCode::from_u16(status).unwrap(),
                            axum::Json(json!({"error": {"code": code, "message": code}})),
                        )
                    };
                    if body.len() > FAKE_BODY_LIMIT {
                        seen.over_limit.fetch_add(1, Ordering::SeqCst);
                        return err(413, "payload_too_large");
                    }
                    let req: EmbedRequest = serde_json::from_slice(&body).unwrap();
                    let texts = req.inputs.into_texts().expect("texts");
                    if texts.len() > FAKE_MAX_BATCH {
                        seen.over_limit.fetch_add(1, Ordering::SeqCst);
                        return err(422, "too_many_inputs");
                    }
                    if texts.iter().any(|t| t.contains("poison")) {
                        return err(500, "internal");
                    }
                    if texts.iter().any(|t| t.contains("reject")) {
                        return err(422, "input_too_long");
                    }
                    seen.texts.fetch_add(texts.len(), Ordering::SeqCst);
                    let v: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t)).collect();
                    (StatusCode::OK, axum::Json(json!(v)))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A service config for tests: the given embedding service, no retries.
fn config(dir: &Path, embedding_url: &str) -> IndexingConfig {
    IndexingConfig {
        data_dir: dir.to_path_buf(),
        embedding_service_url: embedding_url.into(),
        embedding_retries: 0,
        embedding_timeout_ms: 5_000,
        wal: WalConfig {
            fsync: FsyncMode::Never,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn app_with(cfg: IndexingConfig) -> (Router, AppState) {
    let st = indexing_service::state(cfg).expect("state");
    (indexing_service::app(st.clone()), st)
}

/// Texts of mixed lengths and characters; some long enough that the body
/// limit, not the count, closes a call.
fn text(i: usize) -> String {
    match i % 10 {
        0..=2 => format!("document {i} {}", "long words ".repeat(80)),
        3 => format!("caf\u{e9} \u{1f600} \"quoted\" \\ {i}"),
        7 => format!("line\nbreak\t{i}"),
        _ => format!("document {i}"),
    }
}

async fn count(app: &Router, name: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        &format!("/collections/{name}/points/count"),
        Some(json!({})),
    )
    .await
}

async fn exists(app: &Router, name: &str) -> bool {
    let (s, b) = call(app, Method::GET, &format!("/collections/{name}"), None).await;
    assert!(
        s == StatusCode::OK || s == StatusCode::NOT_FOUND,
        "{s}: {b}"
    );
    s == StatusCode::OK
}

/// Retrieves `ids` (with vectors) through the body route.
async fn fetch(app: &Router, name: &str, ids: Value) -> Vec<Value> {
    let (s, b) = call(
        app,
        Method::POST,
        &format!("/collections/{name}/points"),
        Some(json!({"ids": ids, "with_vector": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["points"].as_array().unwrap().clone()
}

#[track_caller]
fn assert_vector(point: &Value, text: &str) {
    let got: Vec<f32> = serde_json::from_value(point["vector"].clone()).unwrap();
    let want = normalized(&fake_vector(text));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{point} vs {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_documents_in_one_embed_are_split_and_stored_in_order() {
    let (url, seen) = fake_embedding_service().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with(config(dir.path(), &url));
    let n = 5_000;
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "content": text(i), "metadata": {"i": i}}))
        .collect();
    let (s, b) = call(
        &app,
        Method::POST,
        "/embed",
        Some(json!({"documents": docs})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["collection"], "documents");
    let ids: Vec<u64> = serde_json::from_value(b["ids"].clone()).unwrap();
    assert_eq!(ids, (0..n as u64).collect::<Vec<_>>(), "ids in input order");

    let calls = seen.calls.load(Ordering::SeqCst);
    assert_eq!(
        seen.over_limit.load(Ordering::SeqCst),
        0,
        "a call broke a limit"
    );
    assert_eq!(
        seen.texts.load(Ordering::SeqCst),
        n,
        "each text embedded once"
    );
    // Three long texts in every ten: the body limit closes some calls
    // before the count limit does.
    assert!(calls > n.div_ceil(FAKE_MAX_BATCH), "{calls} calls");
    assert!(seen.max_body.load(Ordering::SeqCst) <= FAKE_BODY_LIMIT);
    let in_flight = seen.max_in_flight.load(Ordering::SeqCst);
    eprintln!("{n} documents: {calls} embedding calls, at most {in_flight} at once");
    assert!(
        (2..=shared::client::DEFAULT_MAX_IN_FLIGHT).contains(&in_flight),
        "calls in flight at once: {in_flight}"
    );

    assert_eq!(count(&app, "documents").await.1["count"], n);
    let all: Vec<u64> = (0..n as u64).collect();
    let points = fetch(&app, "documents", json!(all)).await;
    assert_eq!(points.len(), n);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p["id"], i, "order");
        assert_eq!(p["content"], text(i));
        assert_eq!(p["metadata"]["i"], i);
        assert_vector(p, &text(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_with_content_is_split_too_and_keeps_given_vectors() {
    let (url, seen) = fake_embedding_service().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with(config(dir.path(), &url));
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections",
        Some(json!({"name": "mixed"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["dimension"], FAKE_DIM, "the model's dimension");
    let n = 3_000;
    // Every third point brings its own vector (not embedded).
    let points: Vec<Value> = (0..n)
        .map(|i| match i % 3 {
            0 => json!({"id": i, "vector": [0.0, 0.0, 1.0, 0.0], "content": text(i)}),
            _ => json!({"id": i, "content": text(i)}),
        })
        .collect();
    let (s, b) = call(
        &app,
        Method::PUT,
        "/collections/mixed/points",
        Some(json!({ "points": points })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(seen.over_limit.load(Ordering::SeqCst), 0);
    assert_eq!(seen.texts.load(Ordering::SeqCst), n - n.div_ceil(3));
    let all: Vec<u64> = (0..n as u64).collect();
    let got = fetch(&app, "mixed", json!(all)).await;
    assert_eq!(got.len(), n);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p["id"], i);
        if i % 3 == 0 {
            assert_eq!(p["vector"], json!([0.0, 0.0, 1.0, 0.0]));
        } else {
            assert_vector(p, &text(i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_chunk_writes_nothing_and_creates_nothing() {
    let (url, seen) = fake_embedding_service().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with(config(dir.path(), &url));
    let docs = |bad: &str, at: usize| -> Vec<Value> {
        (0..2_000)
            .map(|i| {
                let t = if i == at {
                    format!("{bad} {i}")
                } else {
                    text(i)
                };
                json!({"id": i, "content": t})
            })
            .collect()
    };
    // A failing call late in the list (500: unavailable), or a rejection
    // (422 passed on): the default collection is not created.
    for (bad, at, status, code) in [
        ("poison", 1_999, 503, "embedding_unavailable"),
        ("poison", 0, 503, "embedding_unavailable"),
        ("reject", 1_234, 422, "input_too_long"),
    ] {
        let (s, b) = call(
            &app,
            Method::POST,
            "/embed",
            Some(json!({"documents": docs(bad, at)})),
        )
        .await;
        assert_eq!(
            (s.as_u16(), b["error"]["code"].as_str()),
            (status, Some(code)),
            "{b}"
        );
        assert!(!exists(&app, "documents").await, "{bad} at {at} created it");
    }
    // Into an existing collection: nothing written either.
    let (s, _) = call(
        &app,
        Method::POST,
        "/collections",
        Some(json!({"name": "c"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for (bad, at) in [("poison", 1_500), ("reject", 3)] {
        let (s, _) = call(
            &app,
            Method::POST,
            "/embed",
            Some(json!({"documents": docs(bad, at), "collection": "c"})),
        )
        .await;
        assert!(s.is_client_error() || s.is_server_error());
        let points: Vec<Value> = docs(bad, at)
            .into_iter()
            .map(|mut d| {
                d["id"] = json!(d["id"].as_u64().unwrap() + 10_000);
                d
            })
            .collect();
        let (s, _) = call(
            &app,
            Method::PUT,
            "/collections/c/points",
            Some(json!({ "points": points })),
        )
        .await;
        assert!(s.is_client_error() || s.is_server_error());
        assert_eq!(count(&app, "c").await.1["count"], 0, "{bad}: partial write");
    }

    // One text too big for any call: 413 naming it, before any call.
    let before = seen.calls.load(Ordering::SeqCst);
    let big = "x".repeat(FAKE_BODY_LIMIT);
    let (s, b) = call(
        &app,
        Method::POST,
        "/embed",
        Some(json!({"documents": [{"content": "fine"}, {"content": "fine"}, {"content": big}]})),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`documents[2].content`") && msg.contains("2048"),
        "{msg}"
    );
    let (s, b) = call(&app, Method::POST, "/embed", Some(json!({"content": big}))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`content`"),
        "{b}"
    );
    let (s, b) = call(
        &app,
        Method::PUT,
        "/collections/c/points",
        Some(json!({"points": [{"vector": [1.0, 0.0, 0.0, 0.0]}, {"content": "ok"}, {"content": big}]})),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`points[2].content`"),
        "{b}"
    );
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections/c/search",
        Some(json!({ "query": big })),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        before,
        "no call was made"
    );
    assert!(!exists(&app, "documents").await);
    assert_eq!(count(&app, "c").await.1["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_default_collection_is_created_implicitly() {
    let (url, seen) = fake_embedding_service().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with(config(dir.path(), &url));
    let doc = json!({"content": "a frankfurter served hot", "id": 1});

    // A misspelled name: 404 on /embed (nothing embedded) and /search alike.
    let mut body = doc.clone();
    body["collection"] = json!("documnets");
    let (s, b) = call(&app, Method::POST, "/embed", Some(body)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("documnets"),
        "{b}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0, "embedded for nothing");
    for q in [
        json!({"query": "hot dog"}),
        json!({"vector": [1.0, 0.0, 0.0, 0.0]}),
    ] {
        let mut q = q;
        q["collection"] = json!("documnets");
        let (s, _) = call(&app, Method::POST, "/search", Some(q)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, _) = call(
        &app,
        Method::POST,
        "/embed",
        Some(json!({"documents": [doc.clone()], "collection": "other"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!exists(&app, "documnets").await && !exists(&app, "other").await);
    // An invalid name is a 422, not a new collection.
    let (s, _) = call(
        &app,
        Method::POST,
        "/embed",
        Some(json!({"content": "x", "collection": "bad name!"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // /search on the missing default: a vector of the wrong dimension is a
    // 422 and creates nothing; a good search creates it, empty.
    let (s, b) = call(
        &app,
        Method::POST,
        "/search",
        Some(json!({"vector": [1.0, 2.0]})),
    )
    .await;
    assert_eq!(b["error"]["code"], "dimension_mismatch", "{s} {b}");
    assert!(!exists(&app, "documents").await);
    let (s, b) = call(
        &app,
        Method::POST,
        "/search",
        Some(json!({"query": "poison"})),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(!exists(&app, "documents").await);
    let (s, b) = call(
        &app,
        Method::POST,
        "/search",
        Some(json!({"query": "hot dog"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["results"], json!([]));
    assert!(
        exists(&app, "documents").await,
        "the default is created on first use"
    );

    // /embed into the default, implicitly or by its name.
    let dir2 = tempfile::tempdir().unwrap();
    let (app2, _) = app_with(config(dir2.path(), &url));
    let (s, b) = call(&app2, Method::POST, "/embed", Some(doc.clone())).await;
    assert_eq!(
        (s, b["collection"].as_str()),
        (StatusCode::OK, Some("documents")),
        "{b}"
    );
    let dir3 = tempfile::tempdir().unwrap();
    let (app3, _) = app_with(config(dir3.path(), &url));
    let mut body = doc.clone();
    body["collection"] = json!("documents");
    let (s, _) = call(&app3, Method::POST, "/embed", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "the default named explicitly");
    assert_eq!(count(&app3, "documents").await.1["count"], 1);
    // Also with a configured default name.
    let dir4 = tempfile::tempdir().unwrap();
    let (app4, _) = app_with(IndexingConfig {
        default_collection: "kb".into(),
        ..config(dir4.path(), &url)
    });
    let (s, b) = call(&app4, Method::POST, "/embed", Some(doc.clone())).await;
    assert_eq!(
        (s, b["collection"].as_str()),
        (StatusCode::OK, Some("kb")),
        "{b}"
    );
    let mut body = doc.clone();
    body["collection"] = json!("documents");
    let (s, _) = call(&app4, Method::POST, "/embed", Some(body)).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "`documents` is not the default here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_service_down_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The harness's embedding address points nowhere.
    let (app, _) = app_on(dir.path());
    for (uri, body) in [
        ("/embed", json!({"content": "x", "id": 1})),
        ("/embed", json!({"documents": [{"content": "x"}]})),
        ("/search", json!({"query": "x"})),
        ("/search", json!({"vector": [1.0, 0.0]})),
    ] {
        let (s, b) = call(&app, Method::POST, uri, Some(body.clone())).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{uri} {body}: {b}");
        assert_eq!(b["error"]["code"], "embedding_unavailable");
        assert!(!exists(&app, "documents").await, "{uri} {body} created it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_and_explicit_collections_get_the_same_settings() {
    let (url, _) = fake_embedding_service().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = IndexingConfig {
        wal: WalConfig {
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 1234,
        },
        flush_threshold: shared::config::FlushThreshold {
            vectors: 777,
            bytes: 99_999,
        },
        ..config(dir.path(), &url)
    };
    let (app, st) = app_with(cfg);
    let (s, b) = call(&app, Method::POST, "/embed", Some(json!({"content": "x"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections",
        Some(json!({"name": "explicit"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let implicit = st.storage.get("documents").unwrap().config().clone();
    let explicit = st.storage.get("explicit").unwrap().config().clone();
    assert_eq!(implicit.fsync, FsyncMode::Interval);
    assert_eq!(implicit.fsync_interval_ms, 1234);
    assert_eq!(implicit.flush_threshold.vectors, 777);
    assert_eq!(implicit.flush_threshold.bytes, 99_999);
    assert_eq!(implicit.dimension, FAKE_DIM);
    let mut renamed = explicit.clone();
    renamed.name = implicit.name.clone();
    assert_eq!(renamed, implicit, "made alike whichever way");
    // Request values still win on the explicit route.
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections",
        Some(
            json!({"name": "tuned", "dimension": 3, "metric": "dot", "fsync": "always",
                    "flush_threshold": {"vectors": 5}, "index": "flat"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let t = st.storage.get("tuned").unwrap().config().clone();
    assert_eq!(
        (
            t.dimension,
            t.fsync,
            t.fsync_interval_ms,
            t.flush_threshold.vectors,
            t.flush_threshold.bytes
        ),
        (3, FsyncMode::Always, 1234, 5, 99_999)
    );
    assert_eq!(t.metric, shared::wire::indexing::Metric::Dot);
}

/// Points whose ids look alike: integers and strings that a lax path rule
/// would confuse.
fn tricky_ids() -> Vec<Value> {
    vec![
        json!(7),
        json!("007"),
        json!("7"),
        json!(424242),
        json!("424242"),
        json!(0),
        json!("0"),
        json!(u64::MAX),
        json!("18446744073709551616"),
        json!("+7"),
        json!("-7"),
        json!("a/b"),
        json!("with space"),
        json!("caf\u{e9}"),
        json!("7b0c5a8e-0d1c-4a51-9d2e-3f1f2b0c9a11"),
        json!("100%"),
    ]
}

/// A collection `p` (dimension 2) holding every id of [`tricky_ids`], each
/// with its id (as JSON text) in the payload under `key`.
async fn tricky_collection(app: &Router) {
    let (s, b) = call(
        app,
        Method::POST,
        "/collections",
        Some(json!({"name": "p", "dimension": 2, "metric": "euclidean", "fsync": "never"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let points: Vec<Value> = tricky_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "vector": [i as f32, 1.0], "metadata": {"key": id.to_string()}}))
        .collect();
    let (s, b) = call(
        app,
        Method::PUT,
        "/collections/p/points",
        Some(json!({ "points": points })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_ids_follow_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_on(dir.path());
    tricky_collection(&app).await;
    // path (after /collections/p/points/) → the id it reaches.
    for (path, want) in [
        ("7", json!(7)),
        ("007", json!("007")),
        ("7?id_type=string", json!("7")),
        ("7?id_type=integer", json!(7)),
        ("7?id_type=auto", json!(7)),
        ("424242", json!(424242)),
        ("424242?id_type=string", json!("424242")),
        ("0", json!(0)),
        ("0?id_type=string", json!("0")),
        ("18446744073709551615", json!(u64::MAX)),
        ("18446744073709551616", json!("18446744073709551616")),
        ("+7", json!("+7")),
        ("%2B7", json!("+7")),
        ("-7", json!("-7")),
        ("a%2Fb", json!("a/b")),
        ("with%20space", json!("with space")),
        ("caf%C3%A9", json!("caf\u{e9}")),
        (
            "7b0c5a8e-0d1c-4a51-9d2e-3f1f2b0c9a11",
            json!("7b0c5a8e-0d1c-4a51-9d2e-3f1f2b0c9a11"),
        ),
        ("100%25", json!("100%")),
    ] {
        let (s, b) = call(
            &app,
            Method::GET,
            &format!("/collections/p/points/{path}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        assert_eq!(b["id"], want, "{path}");
        assert_eq!(b["metadata"]["key"], want.to_string(), "{path}");
    }
    // Not there, or refused with a message naming the parameter.
    for path in ["0007", "8", "%20", "with+space", "x?id_type=string"] {
        let (s, b) = call(
            &app,
            Method::GET,
            &format!("/collections/p/points/{path}"),
            None,
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}: {b}"
        );
    }
    let long = "x".repeat(limits::MAX_STRING_ID_BYTES + 1);
    for (path, names) in [
        ("007?id_type=integer", "`id`"),
        ("18446744073709551616?id_type=integer", "`id`"),
        ("-1?id_type=integer", "`id`"),
        ("7?id_type=number", "`id_type`"),
        ("7?idtype=string", "`id_type`"),
        (long.as_str(), "`id`"),
        ("%FF", "`id`"),
    ] {
        let (s, b) = call(
            &app,
            Method::GET,
            &format!("/collections/p/points/{path}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        assert_eq!(b["error"]["code"], "invalid_request", "{path}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(names),
            "{path}: {b}"
        );
    }
    // An empty id segment names no point.
    let (s, b) = call(&app, Method::GET, "/collections/p/points/", None).await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::METHOD_NOT_ALLOWED,
        "{s} {b}"
    );
    assert!(b.get("id").is_none());

    // PATCH and DELETE read the path the same way: "007" is not 7.
    let (s, b) = call(
        &app,
        Method::PATCH,
        "/collections/p/points/007",
        Some(json!({"metadata": {"patched": true}, "merge": true})),
    )
    .await;
    assert_eq!((s, &b["id"]), (StatusCode::OK, &json!("007")), "{b}");
    let (s, b) = call(&app, Method::DELETE, "/collections/p/points/007", None).await;
    assert_eq!((s, &b["deleted"]), (StatusCode::OK, &json!(1)), "{b}");
    let (s, b) = call(
        &app,
        Method::DELETE,
        "/collections/p/points/424242?id_type=string",
        None,
    )
    .await;
    assert_eq!((s, &b["deleted"]), (StatusCode::OK, &json!(1)), "{b}");
    let (s, b) = call(&app, Method::DELETE, "/collections/p/points/a%2Fb", None).await;
    assert_eq!((s, &b["deleted"]), (StatusCode::OK, &json!(1)), "{b}");
    let left = fetch(&app, "p", json!([7, "007", 424242, "424242", "a/b"])).await;
    let left: Vec<&Value> = left.iter().map(|p| &p["id"]).collect();
    assert_eq!(
        left,
        vec![&json!(7), &json!(424242)],
        "only the string ids went"
    );
    let (s, b) = call(&app, Method::GET, "/collections/p/points/7", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b["metadata"].get("patched").is_none(),
        "the integer 7 was patched: {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_are_retrieved_by_ids_in_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_on(dir.path());
    tricky_collection(&app).await;
    let ids = json!([
        424242,
        "424242",
        "missing",
        7,
        "007",
        7,
        u64::MAX,
        "with space"
    ]);
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections/p/points",
        Some(json!({ "ids": ids })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let got: Vec<Value> = b["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p.get("vector").is_none(), "no vector unless asked: {p}");
            assert_eq!(p["metadata"]["key"], p["id"].to_string());
            p["id"].clone()
        })
        .collect();
    assert_eq!(
        got,
        vec![
            json!(424242),
            json!("424242"),
            json!(7),
            json!("007"),
            json!(7),
            json!(u64::MAX),
            json!("with space")
        ],
        "in the order asked, absent ids left out"
    );
    let with = fetch(&app, "p", json!(["007"])).await;
    assert_eq!(with[0]["vector"], json!([1.0, 1.0]));
    assert!(fetch(&app, "p", json!([])).await.is_empty());

    // Bounds and errors.
    let many: Vec<u64> = (0..limits::MAX_GET_IDS as u64 + 1).collect();
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections/p/points",
        Some(json!({ "ids": many })),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`ids`") && msg.contains("10000") && msg.contains("10001"),
        "{msg}"
    );
    let (s, b) = call(
        &app,
        Method::POST,
        "/collections/p/points",
        Some(json!({ "ids": &many[..limits::MAX_GET_IDS] })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "at the bound");
    assert_eq!(b["points"].as_array().unwrap().len(), 2, "0 and 7 exist");
    let (s, _) = call(
        &app,
        Method::POST,
        "/collections/nope/points",
        Some(json!({"ids": [1]})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for bad in [
        json!({"ids": [1], "wat": 1}),
        json!({"ids": [-1]}),
        json!({"ids": [1.5]}),
        json!({}),
    ] {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/p/points",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
    }
}

#[test]
fn openapi_documents_the_id_rule_and_the_retrieve_route() {
    let spec = serde_json::to_value(indexing_service::api::openapi()).unwrap();
    let points = &spec["paths"]["/collections/{name}/points"];
    assert!(
        points["put"].is_object() && points["post"].is_object(),
        "{points}"
    );
    let one = &spec["paths"]["/collections/{name}/points/{id}"];
    for method in ["get", "patch", "delete"] {
        let params = one[method]["parameters"].as_array().unwrap();
        let id = params.iter().find(|p| p["name"] == "id").unwrap();
        let d = id["description"].as_str().unwrap();
        assert!(
            d.contains("leading zeros") && d.contains("id_type=string"),
            "{d}"
        );
        let t = params
            .iter()
            .find(|p| p["name"] == "id_type")
            .unwrap_or_else(|| panic!("{method} lacks id_type"));
        assert_eq!(t["in"], "query");
        let t = t.to_string();
        assert!(
            t.contains("string") && t.contains("integer") && t.contains("auto"),
            "{t}"
        );
    }
}
