//! Two models served at once by one process, over real HTTP (the served
//! router on a socket): the test model (`all-MiniLM-L6-v2`, found as the
//! other integration tests find it) as `minilm`, the default, and the tiny
//! random-weight XLM-RoBERTa fixture as `xlmr`.
//!
//! Requests to each model, from many clients at once, through TEI's
//! `/embed` and OpenAI's `/v1/embeddings` (with and without `model`),
//! must come back equal to that model's reference embeddings
//! (sentence-transformers / the float64 reference) text by text: a
//! mix-up between models shows as a wrong dimension, one between texts or
//! requests as a low cosine. Every request has a deadline, so a stalled
//! queue fails the test instead of hanging it; no speed is asserted.
//! `MULTI_MODEL_LOAD_SECS` sets how long the load runs (default 8).

use embedding_service::{app, AppState};
use serde_json::{json, Value};
use shared::config::{Config, EmbeddingConfig, ModelConfig, ServedModelConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn xlmr_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-xlm-roberta")
}

/// The service config of the other tests (environment included), with
/// its one model turned into the first entry of `models` (`minilm`), and
/// the tiny XLM-RoBERTa (`xlmr`) as the second.
fn two_models() -> EmbeddingConfig {
    let mut c = Config::load_from(None, std::env::vars())
        .expect("config")
        .embedding;
    let one = std::mem::take(&mut c.model);
    c.model = ModelConfig {
        cache_dir: one.cache_dir.clone(),
        ..ModelConfig::default()
    };
    c.models = vec![
        ServedModelConfig {
            id: Some(one.id),
            revision: Some(one.revision),
            path: one.path,
            alias: Some("minilm".into()),
            ..Default::default()
        },
        ServedModelConfig {
            path: Some(xlmr_dir().join("model")),
            alias: Some("xlmr".into()),
            ..Default::default()
        },
    ];
    c.host = "127.0.0.1".into();
    Config {
        embedding: c.clone(),
        indexing: Default::default(),
    }
    .validate()
    .expect("a valid two-model config");
    c
}

/// `(text, embedding)` lines of a reference file.
fn read_reference(path: &Path) -> Vec<(String, Vec<f64>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let e = v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (v["text"].as_str().unwrap().to_string(), e)
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    d / (na * nb)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A served instance on an ephemeral port, with its state.
struct Served {
    url: String,
    state: AppState,
    http: reqwest::Client,
}

/// Serves `cfg` on 127.0.0.1 (models not loaded yet: call `load`).
async fn serve(cfg: EmbeddingConfig) -> Served {
    let limits = shared::http::ServerLimits::from(&cfg.http);
    let state = AppState::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(shared::http::serve(
        listener,
        app(state.clone()),
        limits,
        std::future::pending(),
    ));
    Served {
        url,
        state,
        // The deadline of every request: past it the test fails as a stall.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    }
}

impl Served {
    async fn load(&self) -> anyhow::Result<()> {
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.load_blocking().map(drop))
            .await
            .unwrap()
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer (a stall?): {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }
}

/// What one client checks per model: its alias (`None`: sent without
/// `model`, so the default), its reference, its dimension.
struct Target {
    alias: Option<String>,
    counted_as: &'static str,
    refs: Arc<Vec<(String, Vec<f64>)>>,
    dim: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_in_one_process_answer_right_under_concurrent_load() {
    let svc = serve(two_models()).await;
    // Bound but not loaded: not healthy, and the routes say so.
    let (s, v) = svc.send("GET", "/health", None).await;
    assert_eq!((s, v["status"].as_str()), (503, Some("loading")));
    svc.load()
        .await
        .expect("both models load (run `embedding-service fetch-model` first)");
    let (s, _) = svc.send("GET", "/health", None).await;
    assert_eq!(s, 200, "healthy once every model is loaded");

    // `/v1/models` and `/info` list both, the default first.
    let (s, m) = svc.send("GET", "/v1/models", None).await;
    assert_eq!(s, 200, "{m}");
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["minilm", "xlmr"]);
    let (s, info) = svc.send("GET", "/info", None).await;
    assert_eq!(s, 200, "{info}");
    let models = info["models"].as_array().unwrap();
    let aliases: Vec<&str> = models
        .iter()
        .map(|m| m["alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, ["minilm", "xlmr"]);
    assert_eq!(models[0]["dimension"], 384);
    assert_eq!(models[1]["dimension"], 32);
    assert_eq!(models[1]["architecture"], "XLMRobertaModel");
    assert_eq!(
        models[1]["model_id"], "model",
        "a path model's id: its directory"
    );
    // TEI's own fields describe the default model.
    assert_eq!(info["dimension"], 384);
    assert_eq!(info["model_id"], models[0]["model_id"]);
    // By alias, or by id where that is unambiguous (a MiniLM served from
    // a directory also named `model` takes the id: the first model wins).
    let by_id = (models[0]["model_id"] != "model").then_some("model");
    for name in std::iter::once("xlmr").chain(by_id) {
        let (s, one) = svc.send("GET", &format!("/v1/models/{name}"), None).await;
        assert_eq!(
            (s, one["id"].as_str()),
            (200, Some("xlmr")),
            "{name}: {one}"
        );
    }

    // An unknown model is a 404 naming the served ones, on every route.
    for (path, body) in [
        ("/embed", json!({"inputs": "a", "model": "e5"})),
        ("/", json!({"inputs": "a", "model": "e5"})),
        ("/embed_all", json!({"inputs": "a", "model": "e5"})),
        ("/embed/batch", json!({"texts": ["a"], "model": "e5"})),
        ("/v1/embeddings", json!({"input": "a", "model": "e5"})),
        ("/tokenize", json!({"inputs": "a", "model": "e5"})),
        ("/decode", json!({"ids": [1, 2], "model": "e5"})),
    ] {
        let (s, v) = svc.send("POST", path, Some(body)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("model_not_found")),
            "{path}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("`e5`") && msg.contains("`minilm`, `xlmr`"),
            "{path}: {msg}"
        );
    }
    let (s, v) = svc.send("GET", "/v1/models/e5", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    // Per model: its own truncation (`max_seq_length`), its token states.
    let long = "word ".repeat(400);
    for (i, name) in [(0, None), (1, Some("xlmr"))] {
        let mut body = json!({"inputs": long});
        if let Some(n) = name {
            body["model"] = json!(n);
        }
        let (s, t) = svc.send("POST", "/tokenize", Some(body)).await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(
            json!(t[0].as_array().unwrap().len()),
            models[i]["max_seq_length"],
            "{name:?}"
        );
    }
    assert_ne!(models[0]["max_seq_length"], models[1]["max_seq_length"]);
    let (s, t) = svc
        .send(
            "POST",
            "/embed_all",
            Some(json!({"inputs": "hello", "model": "xlmr"})),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(floats(&t[0][0]).len(), 32);

    // The load: many clients, both models, both APIs, for a while.
    let minilm = Arc::new(read_reference(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-MiniLM-L6-v2.jsonl"),
    ));
    let xlmr = Arc::new(read_reference(&xlmr_dir().join("reference.jsonl")));
    let mut targets = vec![
        Target {
            alias: Some("minilm".into()),
            counted_as: "minilm",
            refs: minilm.clone(),
            dim: 384,
        },
        Target {
            alias: Some("xlmr".into()),
            counted_as: "xlmr",
            refs: xlmr.clone(),
            dim: 32,
        },
        Target {
            alias: None,
            counted_as: "minilm",
            refs: minilm,
            dim: 384,
        },
    ];
    // By the model's id, as OpenAI clients may name it.
    if let Some(id) = by_id {
        targets.push(Target {
            alias: Some(id.into()),
            counted_as: "xlmr",
            refs: xlmr,
            dim: 32,
        });
    }
    let targets = Arc::new(targets);
    let secs: u64 = std::env::var("MULTI_MODEL_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let svc = Arc::new(svc);
    let texts_sent: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
    let requests: Arc<Vec<AtomicUsize>> =
        Arc::new((0..targets.len()).map(|_| AtomicUsize::new(0)).collect());
    let clients = 16;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let svc = svc.clone();
        let targets = targets.clone();
        let texts_sent = texts_sent.clone();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut worst = 1.0f64;
            let mut round = 0usize;
            while Instant::now() < deadline {
                let which = (client + round) % targets.len();
                let t = &targets[which];
                // A few texts, spread over the reference, different per round.
                let n = 1 + (client * 7 + round * 3) % 6;
                let picks: Vec<usize> = (0..n)
                    .map(|k| (client * 31 + round * 17 + k * 13) % t.refs.len())
                    .collect();
                let texts: Vec<&str> = picks.iter().map(|&i| t.refs[i].0.as_str()).collect();
                let openai = (client + round / 4) % 2 == 1;
                let (path, mut body) = if openai {
                    ("/v1/embeddings", json!({"input": texts}))
                } else {
                    ("/embed", json!({"inputs": texts}))
                };
                if let Some(a) = &t.alias {
                    body["model"] = json!(a);
                }
                let (s, v) = svc.send("POST", path, Some(body)).await;
                assert_eq!(s, 200, "client {client} {path} {:?}: {v}", t.alias);
                let got: Vec<Vec<f64>> = if openai {
                    assert_eq!(
                        v["model"].as_str(),
                        Some(t.alias.as_deref().unwrap_or("minilm"))
                    );
                    v["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| floats(&d["embedding"]))
                        .collect()
                } else {
                    v.as_array().unwrap().iter().map(floats).collect()
                };
                assert_eq!(got.len(), picks.len());
                for (g, &i) in got.iter().zip(&picks) {
                    assert_eq!(
                        g.len(),
                        t.dim,
                        "{:?} answered with another model's dimension",
                        t.alias
                    );
                    let c = cosine(g, &t.refs[i].1);
                    worst = worst.min(c);
                    assert!(
                        c >= 0.9999,
                        "client {client}, {:?} via {path}: cosine {c} for {:?}",
                        t.alias,
                        t.refs[i].0
                    );
                }
                let model_index = usize::from(t.counted_as == "xlmr");
                texts_sent[model_index].fetch_add(picks.len(), Ordering::Relaxed);
                requests[which].fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
            worst
        }));
    }
    let mut worst = 1.0f64;
    for t in tasks {
        // A client stuck past every request deadline is a stall.
        let w = tokio::time::timeout(Duration::from_secs(secs + 300), t)
            .await
            .expect("a client stalled")
            .expect("a client failed");
        worst = worst.min(w);
    }
    let per_target: Vec<usize> = requests.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    eprintln!(
        "{clients} clients for {secs}s: requests per target (minilm, xlmr, default, by id) \
         {per_target:?}, texts (minilm, xlmr) {:?}, worst cosine {worst:.9}",
        [
            texts_sent[0].load(Ordering::Relaxed),
            texts_sent[1].load(Ordering::Relaxed)
        ]
    );
    assert!(
        per_target.iter().all(|&n| n >= 2),
        "every target was asked: {per_target:?}"
    );

    // The metrics count each model's texts apart: exactly what was sent
    // to it under load, plus the few single requests above.
    let (s, m) = svc.send("GET", "/metrics", None).await;
    assert_eq!(s, 200);
    let m = m.as_str().unwrap().to_string();
    let counted: HashMap<String, usize> = m
        .lines()
        .filter_map(|l| l.strip_prefix("embed_texts_total{model=\""))
        .map(|l| {
            let (alias, rest) = l.split_once('"').unwrap();
            (
                alias.to_string(),
                rest.rsplit(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counted.get("minilm").copied(),
        Some(texts_sent[0].load(Ordering::Relaxed)),
        "{m}"
    );
    // `/embed_all` with xlmr above counted one text too.
    assert_eq!(
        counted.get("xlmr").copied(),
        Some(texts_sent[1].load(Ordering::Relaxed) + 1),
        "{m}"
    );
    assert!(m.contains("embed_model_info{"), "{m}");
    assert!(m.contains("embed_batch_size_bucket{model=\"xlmr\""), "{m}");
}

/// A model that cannot load stops the start, named by alias and entry;
/// the service never reports healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_is_named() {
    let mut cfg = two_models();
    cfg.models[0] = ServedModelConfig {
        path: Some(xlmr_dir().join("model")),
        alias: Some("xlmr".into()),
        ..Default::default()
    };
    cfg.models[1] = ServedModelConfig {
        path: Some(xlmr_dir().join("no-such-model")),
        alias: Some("broken".into()),
        ..Default::default()
    };
    let svc = serve(cfg).await;
    let e = format!("{:#}", svc.load().await.unwrap_err());
    assert!(
        e.contains("model `broken` (embedding.models[1])") && e.contains("config.json"),
        "{e}"
    );
    let (s, _) = svc.send("GET", "/health", None).await;
    assert_eq!(s, 503);
}
