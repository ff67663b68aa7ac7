//! embedding-service integration tests: the real model, driven through the
//! router (`app(state)`) without a socket.
//!
//! The model is found as the service finds it (default config: the hf-hub
//! cache, filled by the fetch step that the test command runs first), or in
//! the directory named by `EMBEDDING__MODEL__PATH`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use embedding_service::{app, AppState};
use serde_json::{json, Value};
use shared::config::{Backend, Config, EmbeddingConfig};
use std::sync::OnceLock;
use tower::ServiceExt;

fn config() -> EmbeddingConfig {
    Config::load_from(None, std::env::vars())
        .expect("config")
        .embedding
}

async fn state_with(f: impl FnOnce(&mut EmbeddingConfig)) -> AppState {
    let mut c = config();
    f(&mut c);
    let st = AppState::new(c);
    let s2 = st.clone();
    tokio::task::spawn_blocking(move || s2.load_blocking())
        .await
        .unwrap()
        .expect("model loads (run `embedding-service fetch-model` first)");
    st
}

async fn call(st: &AppState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    raw(st, b.body(body).unwrap()).await
}

async fn raw(st: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

struct Reference {
    text: String,
    embedding: Vec<f64>,
}

fn reference() -> &'static [Reference] {
    static R: OnceLock<Vec<Reference>> = OnceLock::new();
    R.get_or_init(|| {
        let text = include_str!("fixtures/all-MiniLM-L6-v2.jsonl");
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Reference {
                    text: v["text"].as_str().unwrap().to_string(),
                    embedding: v["embedding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect(),
                }
            })
            .collect()
    })
}

fn vecs(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    d / (na * nb)
}

/// Every reference text, one request each, against the float64 reference
/// at cosine ≥ 0.9999; then all texts in mixed-length batches against the
/// single-text vectors.
async fn parity(st: &AppState) {
    parity_at(st, 0.9999).await;
}

/// [`parity`] with the per-text floor `min`; returns the worst and the mean
/// cosine to the reference.
async fn parity_at(st: &AppState, min: f64) -> (f64, f64) {
    let refs = reference();
    assert!(refs.len() >= 278);
    let mut singles = Vec::new();
    let mut worst = (1.0f64, String::new());
    let mut sum = 0f64;
    for r in refs {
        let (s, v) = call(st, "POST", "/embed", Some(json!({"inputs": r.text}))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let got = vecs(&v).remove(0);
        assert_eq!(got.len(), 384);
        let c = cosine(&got, &r.embedding);
        if c < worst.0 {
            worst = (c, r.text.chars().take(60).collect());
        }
        assert!(c >= min, "cosine {c} < {min} for {:?}", r.text);
        sum += c;
        let norm: f64 = got.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised per modules.json");
        singles.push(got);
    }
    let mean = sum / refs.len() as f64;
    eprintln!(
        "parity: worst cosine {:.9} ({:?}), mean {mean:.9}",
        worst.0, worst.1
    );
    // Mixed lengths in one request: the long texts and one-letter ones together.
    for (chunk_i, chunk) in refs.chunks(100).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let (s, v) = call(st, "POST", "/embed", Some(json!({"inputs": texts}))).await;
        assert_eq!(s, StatusCode::OK);
        for (i, got) in vecs(&v).iter().enumerate() {
            let c = cosine(got, &singles[chunk_i * 100 + i]);
            assert!(
                c >= 0.99999,
                "batched vs single cosine {c} for {:?}",
                chunk[i].text
            );
        }
    }
    (worst.0, mean)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_fused_cpu_encoder() {
    let st = state_with(|c| c.backend = Backend::Auto).await;
    let (_, info) = call(&st, "GET", "/info", None).await;
    if info["device"] == "cpu" {
        assert_eq!(info["backend"], "fused");
    }
    parity(&st).await;
    token_states_pool_to_the_vectors(&st).await;
}

/// `dtype: int8` (int8 linear layers on the fused encoder): every text
/// within the stated parity of the float64 reference, and a text's vector
/// the same whatever it is batched with (activation scales are per token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_int8_fused_cpu_encoder() {
    let st = state_with(|c| {
        c.device = shared::config::DeviceSpec::Cpu;
        c.dtype = shared::config::DType::Int8;
    })
    .await;
    let (_, info) = call(&st, "GET", "/info", None).await;
    assert_eq!(
        (info["backend"].as_str(), info["dtype"].as_str()),
        (Some("fused"), Some("int8"))
    );
    // Measured: worst 0.99421 (the one-letter text "I"), mean 0.99886.
    let (_, mean) = parity_at(&st, 0.993).await;
    assert!(mean >= 0.998, "mean cosine {mean} < 0.998");
    token_states_pool_to_the_vectors(&st).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_candle_graph() {
    let st = state_with(|c| c.backend = Backend::Candle).await;
    let (_, info) = call(&st, "GET", "/info", None).await;
    assert_eq!(info["backend"], "candle");
    parity(&st).await;
    token_states_pool_to_the_vectors(&st).await;
}

/// `/embed_all` of texts of different lengths in one batch (padded on the
/// candle graph): each input's rows are its own tokens, and their mean is
/// its `/embed` vector (MiniLM pools by mean).
async fn token_states_pool_to_the_vectors(st: &AppState) {
    let texts = [
        "hot dog",
        "a much longer sentence about the migration of birds",
        "x",
    ];
    let (s, all) = call(st, "POST", "/embed_all", Some(json!({"inputs": texts}))).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    for (i, t) in texts.iter().enumerate() {
        let (_, toks) = call(st, "POST", "/tokenize", Some(json!({"inputs": t}))).await;
        let rows: Vec<Vec<f64>> = all[i].as_array().unwrap().iter().map(floats).collect();
        assert_eq!(rows.len(), toks[0].as_array().unwrap().len(), "{t}");
        assert!(rows.iter().all(|r| r.len() == 384));
        let mean: Vec<f64> = (0..384)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64)
            .collect();
        let pooled = embed_one(st, json!({"inputs": t})).await;
        assert!(cosine(&mean, &pooled) > 0.99999, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_semantics() {
    let st = state_with(|_| {}).await;
    let (s, v) = call(&st, "GET", "/health", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, info) = call(&st, "GET", "/info", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["dimension"], 384);
    assert_eq!(info["max_seq_length"], 256);
    assert_eq!(info["pooling"], "mean");
    assert_eq!(info["normalize"], true);

    // Order is kept whatever the batcher does.
    let texts = [
        "a much longer sentence about the migration of birds in autumn",
        "dog",
        "a cat",
    ];
    let (_, many) = call(&st, "POST", "/embed", Some(json!({"inputs": texts}))).await;
    let many = vecs(&many);
    for (i, t) in texts.iter().enumerate() {
        let (_, one) = call(&st, "POST", "/embed", Some(json!({"inputs": t}))).await;
        assert!(cosine(&vecs(&one)[0], &many[i]) > 0.99999);
    }

    // normalize=false returns the raw pooled vector: same direction, other norm.
    let (_, raw_v) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": "dog", "normalize": false})),
    )
    .await;
    let raw_v = vecs(&raw_v).remove(0);
    let n: f64 = raw_v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((n - 1.0).abs() > 1e-3, "raw norm {n}");
    assert!(cosine(&raw_v, &many[1]) > 0.99999);

    // dimensions: first N, re-normalised.
    let (s, d) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": "dog", "dimensions": 64})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let d = vecs(&d).remove(0);
    assert_eq!(d.len(), 64);
    assert!((d.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-5);
    assert!(cosine(&d, &many[1][..64]) > 0.99999);

    // Empty string: embeds as the special tokens alone, like sentence-transformers.
    let (s, e) = call(&st, "POST", "/embed", Some(json!({"inputs": ""}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(vecs(&e)[0].len(), 384);

    // /embed/batch, the original design's shape.
    let (s, b) = call(
        &st,
        "POST",
        "/embed/batch",
        Some(json!({"texts": ["dog", "a cat"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["dimension"], 384);
    assert_eq!(b["model"], info["model_id"]);
    assert!(cosine(&vecs(&b["embeddings"])[0], &many[1]) > 0.99999);

    // OpenAI-compatible, float and base64.
    let (s, o) = call(
        &st,
        "POST",
        "/v1/embeddings",
        Some(json!({"input": ["dog", "a cat"], "model": "m"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["object"], "list");
    assert_eq!(o["model"], "m");
    assert_eq!(o["data"][1]["index"], 1);
    assert!(o["usage"]["prompt_tokens"].as_u64().unwrap() >= 5);
    let f: Vec<f64> = o["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let (_, o64) = call(
        &st,
        "POST",
        "/v1/embeddings",
        Some(json!({"input": "dog", "encoding_format": "base64"})),
    )
    .await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(o64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let dec: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let f32s: Vec<f32> = f.iter().map(|x| *x as f32).collect();
    assert!(dec == f32s, "base64 and float encodings differ");

    // /tokenize: the model's view, with special tokens.
    let (s, t) = call(&st, "POST", "/tokenize", Some(json!({"inputs": "Hot dog"}))).await;
    assert_eq!(s, StatusCode::OK);
    let toks: Vec<&str> = t[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert_eq!(toks, ["[CLS]", "Hot", "dog", "[SEP]"]);

    // Truncation at max_seq_length (256), not the tokenizer file's 128.
    let long = "word ".repeat(600);
    let (s, t) = call(&st, "POST", "/tokenize", Some(json!({"inputs": long}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t[0].as_array().unwrap().len(), 256);

    // Spec and docs.
    let (s, spec) = call(&st, "GET", "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/embed",
        "/embed/batch",
        "/v1/embeddings",
        "/tokenize",
        "/info",
        "/health",
        "/metrics",
    ] {
        assert!(spec["paths"][p].is_object(), "spec lacks {p}");
    }
    assert!(spec["paths"]["/embed"]["post"]["responses"]["422"].is_object());
    let (s, page) = call(&st, "GET", "/docs", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("swagger-ui-bundle.js"));
    let (s, _) = call(&st, "GET", "/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(s, StatusCode::OK);

    // Metrics count what happened.
    let (s, m) = call(&st, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("embed_batch_size_bucket"), "{m}");
    assert!(m.contains("embed_tokens_total"));
    assert!(m.contains(r#"route="/embed""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let st = state_with(|c| {
        c.max_client_batch_size = 8;
        c.body_limit_bytes = 64 * 1024;
    })
    .await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"inputs": []}), 422, "empty_input"),
        (json!({"inputs": ["a", 3]}), 422, "invalid_request"),
        (json!({"inputs": 3}), 422, "invalid_request"),
        (json!({"texts": ["a"]}), 422, "invalid_request"),
        (json!({"inputs": vec!["a"; 9]}), 422, "too_many_inputs"),
        (
            json!({"inputs": "word ".repeat(400), "truncate": false}),
            422,
            "input_too_long",
        ),
        (
            json!({"inputs": "a", "dimensions": 0}),
            422,
            "invalid_dimensions",
        ),
        (
            json!({"inputs": "a", "dimensions": 385}),
            422,
            "invalid_dimensions",
        ),
        (
            json!({"inputs": "a", "dimensions": -1}),
            422,
            "invalid_request",
        ),
    ];
    for (body, status, want) in cases {
        let (s, v) = call(&st, "POST", "/embed", Some(body.clone())).await;
        assert_eq!(s.as_u16(), status, "{body} → {v}");
        assert_eq!(code(&v), want, "{body} → {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The same long text with truncation (the default) is fine.
    let (s, _) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": "word ".repeat(400)})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let req = |ct: &str, body: Vec<u8>| {
        Request::post("/embed")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap()
    };
    let (s, v) = raw(
        &st,
        req("application/json", b"{\"inputs\": [\"a\"".to_vec()),
    )
    .await;
    assert_eq!((s.as_u16(), code(&v).as_str()), (400, "invalid_json"));
    let (s, v) = raw(&st, req("text/plain", b"{\"inputs\": \"a\"}".to_vec())).await;
    assert_eq!(
        (s.as_u16(), code(&v).as_str()),
        (415, "unsupported_media_type")
    );
    let big = serde_json::to_vec(&json!({"inputs": "x".repeat(100_000)})).unwrap();
    let (s, v) = raw(&st, req("application/json", big)).await;
    assert_eq!((s.as_u16(), code(&v).as_str()), (413, "payload_too_large"));
    let (s, v) = call(&st, "GET", "/nope", None).await;
    assert_eq!((s.as_u16(), code(&v).as_str()), (404, "not_found"));

    // The service still works after all that.
    let (s, _) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": "still alive"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_429_not_a_queue() {
    let st = state_with(|c| c.max_concurrent_requests = 1).await;
    let long: Vec<String> = (0..32)
        .map(|i| format!("{i} {}", "a long text about many things ".repeat(20)))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let st = st.clone();
        let body = json!({"inputs": long});
        tasks.push(tokio::spawn(async move {
            call(&st, "POST", "/embed", Some(body)).await
        }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(v["error"]["code"], "overloaded");
                overloaded += 1
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(ok >= 1 && overloaded >= 1, "ok {ok}, 429s {overloaded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_everything_but_health() {
    let st = state_with(|c| c.api_key = Some("s3cret".into())).await;
    let (s, v) = call(&st, "POST", "/embed", Some(json!({"inputs": "a"}))).await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = call(&st, "GET", "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    let req = Request::post("/embed")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from(r#"{"inputs":"a"}"#))
        .unwrap();
    let (s, _) = raw(&st, req).await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = std::env::temp_dir().join(format!("arch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "hidden_size": 8, "max_position_embeddings": 8}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), "").unwrap();
    let mut c = config();
    c.model.path = Some(dir.clone());
    let err = match embedding_service::model::load(&c) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded an unsupported model"),
    };
    assert!(err.contains("GPT2LMHeadModel"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// The real router behind the shared serving loop, with small connection
/// limits: a stalled request head is dropped after the header timeout, and
/// a stalled body gets 408 `request_timeout` after the body timeout. No model
/// is needed: the body is read before the handler looks for one.
#[test]
fn slow_clients_are_cut_off_by_the_served_router() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let limits = [
        ("EMBEDDING__HTTP__HEADER_READ_TIMEOUT_MS", "400"),
        ("EMBEDDING__HTTP__BODY_READ_TIMEOUT_MS", "400"),
        ("EMBEDDING__HTTP__IDLE_TIMEOUT_MS", "60000"),
    ];
    let c = Config::load_from(
        None,
        limits.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap()
    .embedding;
    let server_limits = shared::http::ServerLimits::from(&c.http);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(shared::http::serve(
        listener,
        app(AppState::new(c)),
        server_limits,
        std::future::pending(),
    ));
    let limit = Duration::from_millis(400);
    let margin = Duration::from_millis(1500);
    // Reads until the server closes the connection; (what came, when).
    let until_closed = |s: &mut std::net::TcpStream, t0: Instant| {
        s.set_read_timeout(Some(limit + margin)).unwrap();
        let mut got = Vec::new();
        let closed = loop {
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        let took = t0.elapsed();
        assert!(closed, "still open after {took:?}");
        assert!(took >= limit.mul_f64(0.8), "closed early, after {took:?}");
        String::from_utf8_lossy(&got).into_owned()
    };

    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    s.write_all(b"POST /embed HTTP/1.1\r\nHost: test\r\nContent-Ty")
        .unwrap();
    let got = until_closed(&mut s, t0);
    assert!(!got.contains(" 200 "), "{got}");

    for path in ["/embed", "/v1/embeddings", "/tokenize"] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"inputs\":"
        )
        .unwrap();
        let got = until_closed(&mut s, t0);
        assert!(got.starts_with("HTTP/1.1 408"), "{path}: {got}");
        let body: Value = serde_json::from_str(got.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout", "{path}: {body}");
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

async fn embed_one(st: &AppState, body: Value) -> Vec<f64> {
    let (s, v) = call(st, "POST", "/embed", Some(body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{body} → {v}");
    vecs(&v).remove(0)
}

/// Asserts a 422 whose message holds every one of `want`.
async fn refused(st: &AppState, uri: &str, body: Value, want: &[&str]) {
    let (s, v) = call(st, "POST", uri, Some(body.clone())).await;
    assert_eq!(s.as_u16(), 422, "{uri} {body} → {v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    for w in want {
        assert!(msg.contains(w), "{uri} {body}: {msg:?} lacks {w:?}");
    }
}

/// text-embeddings-inference's routes: `POST /`, token-id inputs, the
/// truncation direction, `/embed_all`, `/decode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_routes() {
    let st = state_with(|_| {}).await;
    // POST / is POST /embed.
    let body = json!({"inputs": ["hot dog", "a cat"], "normalize": false});
    let (s1, root) = call(&st, "POST", "/", Some(body.clone())).await;
    let (s2, embed) = call(&st, "POST", "/embed", Some(body)).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{root}");
    assert_eq!(root, embed);

    // Token ids of the model's vocabulary embed as the text they came from.
    let (_, toks) = call(
        &st,
        "POST",
        "/tokenize",
        Some(json!({"inputs": "a cat sat on the mat"})),
    )
    .await;
    let ids: Vec<u64> = toks[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids[0], *ids.last().unwrap()), (101, 102), "[CLS] … [SEP]");
    let text = embed_one(&st, json!({"inputs": "a cat sat on the mat"})).await;
    let by_ids = embed_one(&st, json!({"inputs": ids})).await;
    assert!(cosine(&text, &by_ids) > 0.99999);
    let (s, mixed) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": [ids, "a cat sat on the mat"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mixed = vecs(&mixed);
    assert!(cosine(&mixed[0], &mixed[1]) > 0.99999);

    // /decode round trip, with and without special tokens.
    let (s, d) = call(&st, "POST", "/decode", Some(json!({"ids": ids}))).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d, json!(["a cat sat on the mat"]));
    let (_, d) = call(
        &st,
        "POST",
        "/decode",
        Some(json!({"ids": [ids, [101, 102]], "skip_special_tokens": false})),
    )
    .await;
    assert_eq!(
        d,
        json!(["[CLS] a cat sat on the mat [SEP]", "[CLS] [SEP]"])
    );

    // Out of the vocabulary (30522 ids) and other bad ids: 422, named.
    for uri in ["/embed", "/"] {
        refused(
            &st,
            uri,
            json!({"inputs": [[101, 30522, 102]]}),
            &["30522", "outside the model's vocabulary", "0 to 30521"],
        )
        .await;
    }
    refused(
        &st,
        "/embed_all",
        json!({"inputs": [[]]}),
        &["empty list of token ids"],
    )
    .await;
    refused(
        &st,
        "/decode",
        json!({"ids": [[5, 99999]]}),
        &["99999", "vocabulary"],
    )
    .await;
    refused(
        &st,
        "/decode",
        json!({"ids": "1 2"}),
        &["an array of token ids"],
    )
    .await;

    // truncation_direction: Right keeps the head, Left keeps the tail.
    let long = format!("{}dog", "cat ".repeat(400));
    let head = embed_one(&st, json!({"inputs": "cat ".repeat(254)})).await;
    let tail = embed_one(&st, json!({"inputs": format!("{}dog", "cat ".repeat(253))})).await;
    let right = embed_one(
        &st,
        json!({"inputs": long, "truncation_direction": "Right"}),
    )
    .await;
    let left = embed_one(&st, json!({"inputs": long, "truncation_direction": "Left"})).await;
    let default = embed_one(&st, json!({"inputs": long})).await;
    assert!(cosine(&right, &head) > 0.99999);
    assert!(cosine(&left, &tail) > 0.99999);
    assert!(
        cosine(&left, &right) < 0.9999,
        "left and right cut differently"
    );
    assert!(cosine(&default, &right) > 0.99999, "right is the default");
    // Token ids over max_seq_length are cut the same way.
    let long_ids: Vec<u64> = std::iter::once(101)
        .chain(std::iter::repeat_n(4937, 400))
        .chain([3899, 102])
        .collect();
    let (s, v) = call(
        &st,
        "POST",
        "/embed_all",
        Some(json!({"inputs": [long_ids], "truncation_direction": "left"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0].as_array().unwrap().len(), 256);
    refused(
        &st,
        "/embed",
        json!({"inputs": long_ids, "truncate": false}),
        &["max_seq_length"],
    )
    .await;
    refused(
        &st,
        "/embed",
        json!({"inputs": long, "truncate": false, "truncation_direction": "Left"}),
        &["max_seq_length"],
    )
    .await;

    // /embed_all: tokens × hidden, and their mean is the pooled vector.
    let (s, all) = call(
        &st,
        "POST",
        "/embed_all",
        Some(json!({"inputs": ["Hot dog", "a cat sat"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let shapes: Vec<(usize, usize)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let rows = t.as_array().unwrap();
            (rows.len(), rows[0].as_array().unwrap().len())
        })
        .collect();
    assert_eq!(
        shapes,
        [(4, 384), (5, 384)],
        "[CLS] Hot dog [SEP]; [CLS] a cat sat [SEP]"
    );
    let rows: Vec<Vec<f64>> = all[0].as_array().unwrap().iter().map(floats).collect();
    let mean: Vec<f64> = (0..384)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64)
        .collect();
    let pooled = embed_one(&st, json!({"inputs": "Hot dog"})).await;
    assert!(
        cosine(&mean, &pooled) > 0.99999,
        "mean pooling of /embed_all = /embed"
    );
    // States are not normalised, and the two sequences of a batch differ.
    let n: f64 = rows[1].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((n - 1.0).abs() > 0.01, "raw state norm {n}");

    // Wrong shapes are named, with the accepted ones.
    for body in [
        json!({"inputs": 5}),
        json!({"inputs": {"a": 1}}),
        json!({"inputs": true}),
    ] {
        refused(
            &st,
            "/embed",
            body,
            &["inputs", "must be a string, an array of strings, an array of token ids, or an array of token-id arrays"],
        )
        .await;
    }
    refused(
        &st,
        "/embed",
        json!({"inputs": ["a", 1]}),
        &["element 1 is a number"],
    )
    .await;
    refused(
        &st,
        "/embed",
        json!({"inputs": "a", "truncation_direction": "up"}),
        &["truncation_direction"],
    )
    .await;
    refused(
        &st,
        "/embed",
        json!({"inputs": "a", "prompt_name": "query"}),
        &["`query`", "defines no prompts"],
    )
    .await;
    refused(
        &st,
        "/tokenize",
        json!({"inputs": {"a": 1}}),
        &["must be a string or an array of strings; got an object"],
    )
    .await;
}

/// OpenAI's `/v1/embeddings`: token-id input (cl100k_base, what tiktoken
/// sends), 2048 inputs, its own body limit, `/v1/models`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_token_ids_models_and_limits() {
    let st = state_with(|c| {
        c.max_client_batch_size = 8;
        c.body_limit_bytes = 64 * 1024;
    })
    .await;
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    let texts = [
        "hot dog",
        "a frankfurter served in a long bun",
        "naïve café ☕",
    ];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| bpe.encode_ordinary(t)).collect();
    let emb = |o: &Value, i: usize| floats(&o["data"][i]["embedding"]);
    let (s, by_text) = call(&st, "POST", "/v1/embeddings", Some(json!({"input": texts}))).await;
    assert_eq!(s, StatusCode::OK, "{by_text}");
    let (s, by_ids) = call(&st, "POST", "/v1/embeddings", Some(json!({"input": ids}))).await;
    assert_eq!(s, StatusCode::OK, "{by_ids}");
    for i in 0..3 {
        assert!(
            cosine(&emb(&by_text, i), &emb(&by_ids, i)) > 0.99999,
            "input {i}"
        );
    }
    assert_eq!(by_text["usage"], by_ids["usage"]);
    let (_, one) = call(
        &st,
        "POST",
        "/v1/embeddings",
        Some(json!({"input": ids[1]})),
    )
    .await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert!(cosine(&emb(&one, 0), &emb(&by_text, 1)) > 0.99999);

    // Out of cl100k_base, mixed kinds, wrong shapes: 422, named.
    refused(
        &st,
        "/v1/embeddings",
        json!({"input": [[9, 100300]]}),
        &["100300", "cl100k_base", "0 to 100256"],
    )
    .await;
    // An empty token list is refused as on the TEI routes, not embedded as "".
    for input in [json!([[]]), json!([[9, 10], []])] {
        refused(
            &st,
            "/v1/embeddings",
            json!({"input": input}),
            &["empty list of token ids"],
        )
        .await;
    }
    refused(
        &st,
        "/v1/embeddings",
        json!({"input": [[9, 10], "text"]}),
        &["cannot be mixed"],
    )
    .await;
    refused(
        &st,
        "/v1/embeddings",
        json!({"input": {"a": 1}}),
        &["input", "got an object", "an array of token-id arrays"],
    )
    .await;

    // 2048 inputs, beyond max_client_batch_size (8 here); 2049 is refused.
    let many: Vec<String> = (0..2048).map(|i| format!("{i}")).collect();
    let (s, v) = call(&st, "POST", "/v1/embeddings", Some(json!({"input": many}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"][2047]["index"], 2047);
    let (s, v) = call(&st, "POST", "/embed", Some(json!({"inputs": vec!["a"; 9]}))).await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (422, Some("too_many_inputs"))
    );
    let mut over = many.clone();
    over.push("x".into());
    let (s, v) = call(&st, "POST", "/v1/embeddings", Some(json!({"input": over}))).await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (422, Some("too_many_inputs")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("2048"));

    // A body over the service's limit (64 KiB here) but within OpenAI's:
    // 20,000 token ids, cut at max_seq_length like a text.
    let long: Vec<u32> = bpe.encode_ordinary(&"hello ".repeat(20_000));
    let body = json!({"input": [long]});
    assert!(body.to_string().len() > 64 * 1024);
    let (s, v) = call(&st, "POST", "/v1/embeddings", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 256);
    let (s, _) = call(
        &st,
        "POST",
        "/embed",
        Some(json!({"inputs": "hello ".repeat(20_000)})),
    )
    .await;
    assert_eq!(s.as_u16(), 413);

    // /v1/models in OpenAI's shapes.
    let (s, m) = call(&st, "GET", "/v1/models", None).await;
    assert_eq!(s, StatusCode::OK);
    let id = m["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["object"], "model");
    assert!(m["data"][0]["created"].as_u64().unwrap() > 1_600_000_000);
    let short = id.rsplit('/').next().unwrap().to_string();
    for asked in [id.replace('/', "%2F"), short] {
        let (s, one) = call(&st, "GET", &format!("/v1/models/{asked}"), None).await;
        assert_eq!(s, StatusCode::OK, "{asked}: {one}");
        assert_eq!(one, m["data"][0]);
    }
    let (s, v) = call(&st, "GET", "/v1/models/text-embedding-3-small", None).await;
    assert_eq!(
        (s.as_u16(), v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
}

/// A model directory at `dir` linking every file of the test model but
/// `config_sentence_transformers.json`, written as `prompts`.
fn model_with_prompts(dir: &std::path::Path, prompts: Value) {
    let src = embedding_service::model::source::resolve(&config().model)
        .expect("model files")
        .dir;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "config_sentence_transformers.json" {
            let target = std::fs::canonicalize(e.path()).unwrap();
            std::os::unix::fs::symlink(target, dir.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(
        dir.join("config_sentence_transformers.json"),
        prompts.to_string(),
    )
    .unwrap();
}

/// Prompts from `config_sentence_transformers.json`, applied as
/// sentence-transformers applies them: the prompt text before the input,
/// the default prompt when none is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_from_the_model_config() {
    let dir = std::env::temp_dir().join(format!("prompts-model-{}", std::process::id()));
    model_with_prompts(
        &dir,
        json!({"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}),
    );
    let st = state_with(|c| c.model.path = Some(dir.clone())).await;
    let plain = state_with(|_| {}).await;
    let want_query = embed_one(&plain, json!({"inputs": "query: what is a hot dog"})).await;
    let want_passage = embed_one(&plain, json!({"inputs": "passage: what is a hot dog"})).await;
    let bare = embed_one(&plain, json!({"inputs": "what is a hot dog"})).await;
    let named = embed_one(
        &st,
        json!({"inputs": "what is a hot dog", "prompt_name": "passage"}),
    )
    .await;
    let default = embed_one(&st, json!({"inputs": "what is a hot dog"})).await;
    assert!(cosine(&named, &want_passage) > 0.99999);
    assert!(
        cosine(&default, &want_query) > 0.99999,
        "default_prompt_name applies"
    );
    assert!(
        cosine(&default, &bare) < 0.9999,
        "the prompt changes the vector"
    );
    // The same on /v1/embeddings (default prompt) and /tokenize.
    let (_, o) = call(
        &st,
        "POST",
        "/v1/embeddings",
        Some(json!({"input": "what is a hot dog"})),
    )
    .await;
    assert!(cosine(&floats(&o["data"][0]["embedding"]), &want_query) > 0.99999);
    let (_, t) = call(
        &st,
        "POST",
        "/tokenize",
        Some(json!({"inputs": "hot dog", "prompt_name": "passage"})),
    )
    .await;
    let words: Vec<&str> = t[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["[CLS]", "passage", ":", "hot", "dog", "[SEP]"]);
    // An unknown name is a 422 naming the known ones.
    refused(
        &st,
        "/embed",
        json!({"inputs": "x", "prompt_name": "document"}),
        &["`document`", "`passage`, `query`"],
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
}
