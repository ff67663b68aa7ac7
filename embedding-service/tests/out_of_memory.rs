//! The device out-of-memory path end to end, on the CPU: the real model
//! behind an encoder that fails the way a full GPU does (a typed
//! `ModelError::OutOfMemory`) above a token budget, under the service's own
//! `SplitOnOom`, driven through the router.
//!
//! Needs the model as the other integration tests do (the fetch step, or
//! `EMBEDDING__MODEL__PATH`).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use embedding_service::batching::{inference_pool, Runtime};
use embedding_service::model::{self, Encoder, ModelError, PackedBatch, SplitOnOom};
use embedding_service::registry::Models;
use embedding_service::{app, AppState};
use serde_json::{json, Value};
use shared::config::Config;
use tower::ServiceExt;

/// Room for `budget` padded tokens per forward pass; beyond it, the error a
/// CUDA allocation failure becomes.
struct FullGpu {
    inner: Box<dyn Encoder>,
    budget: usize,
}

impl Encoder for FullGpu {
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        if batch.padded_tokens() > self.budget {
            return Err(ModelError::OutOfMemory(format!(
                "DriverError(CUDA_ERROR_OUT_OF_MEMORY) for {} padded tokens",
                batch.padded_tokens()
            )));
        }
        self.inner.encode(batch)
    }

    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        if batch.padded_tokens() > self.budget {
            return Err(ModelError::OutOfMemory("CUDA_ERROR_OUT_OF_MEMORY".into()));
        }
        self.inner.encode_tokens(batch)
    }
}

struct Nothing;
impl Encoder for Nothing {
    fn encode(&mut self, _: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        unreachable!()
    }
    fn encode_tokens(&mut self, _: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        unreachable!()
    }
}

async fn state(budget: usize) -> AppState {
    let cfg = Config::load_from(None, std::env::vars())
        .expect("config")
        .embedding;
    let st = AppState::new(cfg.clone());
    let s2 = st.clone();
    tokio::task::spawn_blocking(move || {
        let mut m =
            model::load(&cfg).expect("model loads (run `embedding-service fetch-model` first)");
        let real = std::mem::replace(&mut m.encoder, Box::new(Nothing));
        m.encoder = Box::new(SplitOnOom::new(Box::new(FullGpu {
            inner: real,
            budget,
        })));
        let alias = cfg.served_models().remove(0).alias;
        let pool = inference_pool(&cfg).expect("pool");
        let rt =
            Runtime::start(m, &alias, &cfg, s2.metrics.for_model(&alias), pool).expect("runtime");
        let _ = s2.models.set(std::sync::Arc::new(Models::new(vec![rt])));
    })
    .await
    .unwrap();
    st
}

async fn embed(st: &AppState, inputs: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/embed")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "inputs": inputs }).to_string()))
        .unwrap();
    let resp = app(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
        .sum();
    let n = |v: &Vec<Value>| {
        v.iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt()
    };
    dot / (n(a) * n(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_memory_are_split_and_a_text_that_never_fits_is_503() {
    // Room for 96 padded tokens: one request of 40 texts (about 40 × 20)
    // cannot run whole and must be split; each text alone fits.
    let st = state(96).await;
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "sentence {i} about {} and the weather in the {} of the year",
                [
                    "dogs",
                    "the migration of birds",
                    "tea",
                    "a river crossing at dawn"
                ][i % 4],
                ["spring", "long dark months", "autumn"][i % 3]
            )
        })
        .collect();
    let (s, many) = embed(&st, json!(texts)).await;
    assert_eq!(s, StatusCode::OK, "{many}");
    let many = many.as_array().unwrap();
    assert_eq!(many.len(), 40);
    for (i, t) in texts.iter().enumerate().step_by(7) {
        let (s, one) = embed(&st, json!(t)).await;
        assert_eq!(s, StatusCode::OK);
        let c = cosine(&one[0], &many[i]);
        assert!(c > 0.99999, "text {i}: split batch vs alone cosine {c}");
    }

    // A text of 256 tokens does not fit even alone: 503 out_of_memory,
    // with a message for people and no internals.
    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let (s, body) = embed(&st, json!([long, "short"])).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "out_of_memory");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("GPU") && !msg.contains("DriverError"), "{msg}");

    // The model thread is alive and serves the next request.
    let (s, again) = embed(&st, json!(&texts[..3])).await;
    assert_eq!(s, StatusCode::OK);
    assert!(cosine(&again[1], &many[1]) > 0.99999);
}
