//! One embedding-service process serving two models (the test model as
//! `minilm`, the default, and the tiny XLM-RoBERTa fixture as `xlmr`), set
//! up from the environment (`EMBEDDING__MODELS__N__...`), with:
//! - the indexing service using both: one collection per model (its
//!   `embedding_model`), texts stored and searched in each with that
//!   model, its dimension taken from the model, a wrong one refused;
//! - OpenAI's SDK choosing the model with `model=`, from many threads at
//!   once, checked against each model's reference embeddings
//!   (`tests/python/multi_model_clients.py`, run through `scripts/test.sh`).
//!
//! The process's resident memory is printed beside that of one model alone.

use e2e_tests::{bin, free_port, workspace_root, Proc};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Where `embedding-service fetch-model` keeps the default model.
fn minilm_dir() -> PathBuf {
    let out = std::process::Command::new(bin("embedding-service"))
        .arg("fetch-model")
        .current_dir(workspace_root())
        .output()
        .expect("run embedding-service fetch-model");
    assert!(
        out.status.success(),
        "fetch-model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn fixtures() -> PathBuf {
    workspace_root().join("embedding-service/tests/fixtures")
}

fn post(c: &Client, url: &str, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

/// The embedding service serving `models` (`(alias, dir)`, the first the
/// default), started from the environment as an operator would.
fn embedding_with(models: &[(&str, PathBuf)]) -> Proc {
    let port = free_port();
    let p = port.to_string();
    let mut env: Vec<(String, String)> = vec![
        ("EMBEDDING__PORT".into(), p),
        ("EMBEDDING__HOST".into(), "127.0.0.1".into()),
    ];
    for (i, (alias, dir)) in models.iter().enumerate() {
        env.push((format!("EMBEDDING__MODELS__{i}__ALIAS"), alias.to_string()));
        env.push((
            format!("EMBEDDING__MODELS__{i}__PATH"),
            dir.to_string_lossy().into(),
        ));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut e = Proc::spawn("embedding-service", port, &env);
    e.wait_healthy(Duration::from_secs(180));
    e
}

/// `process_resident_memory_bytes` of the service at `url`, in MiB.
fn rss_mib(c: &Client, url: &str) -> f64 {
    let m = c
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = m
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))
        .expect("process_resident_memory_bytes");
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() / (1024.0 * 1024.0)
}

/// The embedding of `text` in a reference file.
fn reference_vector(file: &std::path::Path, text: &str) -> Vec<f64> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["text"] == text)
        .map(|v| {
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .unwrap_or_else(|| panic!("{text:?} not in {}", file.display()))
}

#[test]
fn two_models_in_one_process_serve_two_collections_and_the_openai_sdk() {
    let minilm = minilm_dir();
    let xlmr = fixtures().join("tiny-xlm-roberta/model");
    let c = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    // Memory: one model alone, then both, each after the same requests.
    let warm = |url: &str| {
        let batch = vec!["a cat sat on the mat"; 32];
        for model in ["minilm", "xlmr"] {
            let (s, _) = post(
                &c,
                &format!("{url}/v1/embeddings"),
                json!({"input": batch, "model": model}),
            );
            assert!(s == 200 || s == 404, "{s}");
        }
    };
    let alone = embedding_with(&[("minilm", minilm.clone())]);
    warm(&alone.url);
    let rss_one = rss_mib(&c, &alone.url);
    drop(alone);
    let emb = embedding_with(&[("minilm", minilm.clone()), ("xlmr", xlmr.clone())]);
    warm(&emb.url);
    let rss_two = rss_mib(&c, &emb.url);
    eprintln!("resident memory: minilm alone {rss_one:.1} MiB; minilm + xlmr {rss_two:.1} MiB");

    let models: Value = c
        .get(format!("{}/v1/models", emb.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "minilm");
    assert_eq!(models["data"][1]["id"], "xlmr");

    // The indexing service: a collection per model.
    let data = std::env::temp_dir().join(format!("multi-model-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let p = port.to_string();
    let d = data.to_string_lossy().to_string();
    let mut idx = Proc::spawn(
        "indexing-service",
        port,
        &[
            ("INDEXING__PORT", &p),
            ("INDEXING__HOST", "127.0.0.1"),
            ("INDEXING__DATA_DIR", &d),
            ("EMBEDDING_SERVICE_URL", &emb.url),
        ],
    );
    idx.wait_healthy(Duration::from_secs(60));
    let base = idx.url.clone();
    for (name, model, dim) in [("english", "minilm", 384), ("tiny", "xlmr", 32)] {
        let (s, v) = post(
            &c,
            &format!("{base}/collections"),
            json!({"name": name, "embedding_model": model}),
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["dimension"], dim, "the model's dimension: {v}");
        assert_eq!(v["embedding_model"], model);
    }
    // A model the embedding service does not serve, a dimension that is
    // not the model's.
    let (s, v) = post(
        &c,
        &format!("{base}/collections"),
        json!({"name": "nope", "embedding_model": "e5"}),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`minilm`, `xlmr`"),
        "{v}"
    );
    let (s, v) = post(
        &c,
        &format!("{base}/collections"),
        json!({"name": "wrong", "embedding_model": "xlmr", "dimension": 384}),
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("dimension_mismatch")),
        "{v}"
    );

    // Texts of the XLM-R reference into both collections, each embedded
    // by its own model.
    let xlmr_ref = fixtures().join("tiny-xlm-roberta/reference.jsonl");
    let texts: Vec<String> = std::fs::read_to_string(&xlmr_ref)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| !t.trim().is_empty())
        .take(20)
        .collect();
    for name in ["english", "tiny"] {
        let docs: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"content": t, "id": i as u64 + 1}))
            .collect();
        let (s, v) = post(
            &c,
            &format!("{base}/embed"),
            json!({"collection": name, "documents": docs}),
        );
        assert_eq!(s, 200, "{name}: {v}");
    }
    // The tiny collection holds XLM-R's vectors: its reference vector of a
    // text finds that text first, at cosine 1.
    let probe = texts.iter().position(|t| t.len() > 20).unwrap();
    let want = reference_vector(&xlmr_ref, &texts[probe]);
    let (s, v) = post(
        &c,
        &format!("{base}/search"),
        json!({"collection": "tiny", "vector": want, "top_k": 1}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["id"], probe as u64 + 1, "{v}");
    assert!(v["results"][0]["score"].as_f64().unwrap() > 0.9999, "{v}");
    // A text query is embedded by each collection's own model.
    for name in ["english", "tiny"] {
        let (s, v) = post(
            &c,
            &format!("{base}/search"),
            json!({"collection": name, "query": texts[probe], "top_k": 1}),
        );
        assert_eq!(s, 200, "{name}: {v}");
        assert_eq!(v["results"][0]["id"], probe as u64 + 1, "{name}: {v}");
        assert!(
            v["results"][0]["score"].as_f64().unwrap() > 0.9999,
            "{name}: {v}"
        );
    }
    drop(idx);
    std::fs::remove_dir_all(&data).ok();

    // OpenAI's SDK with `model=`, many threads at once.
    match std::env::var("E2E_PYTHON") {
        Ok(py) => {
            let out = std::process::Command::new(py)
                .arg(workspace_root().join("tests/python/multi_model_clients.py"))
                .arg(&emb.url)
                .arg(fixtures().join("all-MiniLM-L6-v2.jsonl"))
                .arg(&xlmr_ref)
                .env("NO_PROXY", "127.0.0.1,localhost")
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "OpenAI SDK check failed:\n{text}");
            assert!(text.contains("all checks passed"), "{text}");
            eprintln!("{text}");
        }
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run this through scripts/test.sh"
            );
            eprintln!("OpenAI SDK part skipped: run through scripts/test.sh");
        }
    }
    // Still healthy after all that.
    let s = c
        .get(format!("{}/health", emb.url))
        .send()
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 200);
}
