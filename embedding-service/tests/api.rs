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

/// Every reference text, one request each, against the float64 reference;
/// then all texts in mixed-length batches against the single-text vectors.
async fn parity(st: &AppState) {
    let refs = reference();
    assert!(refs.len() >= 278);
    let mut singles = Vec::new();
    let mut worst = (1.0f64, String::new());
    for r in refs {
        let (s, v) = call(st, "POST", "/embed", Some(json!({"inputs": r.text}))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let got = vecs(&v).remove(0);
        assert_eq!(got.len(), 384);
        let c = cosine(&got, &r.embedding);
        if c < worst.0 {
            worst = (c, r.text.chars().take(60).collect());
        }
        assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", r.text);
        let norm: f64 = got.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised per modules.json");
        singles.push(got);
    }
    eprintln!("parity: worst cosine {:.9} ({:?})", worst.0, worst.1);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_fused_cpu_encoder() {
    let st = state_with(|c| c.backend = Backend::Auto).await;
    let (_, info) = call(&st, "GET", "/info", None).await;
    if info["device"] == "cpu" {
        assert_eq!(info["backend"], "fused");
    }
    parity(&st).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_candle_graph() {
    let st = state_with(|c| c.backend = Backend::Candle).await;
    let (_, info) = call(&st, "GET", "/info", None).await;
    assert_eq!(info["backend"], "candle");
    parity(&st).await;
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
