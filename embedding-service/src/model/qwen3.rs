//! Qwen3 / Qwen3-Embedding on the candle graph: candle-transformers'
//! `qwen3::Model` (RMSNorm, rotary positions, grouped-query attention with
//! per-head q/k RMSNorm, SwiGLU, causal attention), returning the final
//! normed hidden state; the pipeline then pools (Qwen3-Embedding: the last
//! token) and normalises as for any family.
//!
//! Padding: the batch is padded on the right. Attention is causal, so a real
//! token never sees the padding after it and its positions are `0..len`
//! whatever the padding; the padding rows are never pooled. This is the same
//! function sentence-transformers computes with its left padding.
//!
//! The candle-transformers model keeps a key/value cache inside; each batch
//! runs on a clone of the freshly loaded model (tensors are shared, the cache
//! starts empty), so batches do not see each other.

use super::spec::ModelSpec;
use super::ModelError;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::qwen3;
use serde_json::Value;

/// A loaded Qwen3 decoder.
pub struct Qwen3Graph {
    model: qwen3::Model,
}

/// `config.json` as candle-transformers reads it: transformers 5 moved
/// `rope_theta` under `rope_parameters`, and leaves out defaults
/// (`head_dim` = hidden / heads, no sliding window, no attention bias).
fn config(spec: &ModelSpec) -> Result<qwen3::Config, ModelError> {
    let mut c = spec.config.clone();
    let o = c
        .as_object_mut()
        .ok_or_else(|| ModelError::Config("config.json is not an object".into()))?;
    if !o.contains_key("rope_theta") {
        let theta = o
            .get("rope_parameters")
            .and_then(|r| r.get("rope_theta"))
            .cloned()
            .unwrap_or(Value::from(1_000_000.0));
        o.insert("rope_theta".into(), theta);
    }
    if !o.contains_key("head_dim") {
        let h = o.get("hidden_size").and_then(Value::as_u64).unwrap_or(0);
        let n = o
            .get("num_attention_heads")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        o.insert("head_dim".into(), Value::from(h / n.max(1)));
    }
    for (k, v) in [
        ("attention_bias", Value::from(false)),
        ("sliding_window", Value::Null),
        ("max_window_layers", Value::from(0)),
        ("tie_word_embeddings", Value::from(false)),
        ("use_sliding_window", Value::from(false)),
        ("hidden_act", Value::from("silu")),
    ] {
        o.entry(k).or_insert(v);
    }
    serde_json::from_value(c).map_err(|e| ModelError::Config(format!("config.json: {e}")))
}

impl Qwen3Graph {
    /// Loads the decoder; tensors may be stored under `model.` (a causal-LM
    /// checkpoint) or without a prefix (`Qwen3Model`, as Qwen3-Embedding).
    pub fn load(vb: VarBuilder<'static>, spec: &ModelSpec) -> Result<Self, ModelError> {
        let cfg = config(spec)?;
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb
        } else {
            vb.rename_f(|name| name.strip_prefix("model.").unwrap_or(name).to_string())
        };
        Ok(Self {
            model: qwen3::Model::new(&cfg, vb)?,
        })
    }

    /// `ids`: `[batch × longest]`, right-padded. Returns the final normed
    /// hidden state `[batch × longest × hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        let mut fresh = self.model.clone();
        Ok(fresh.forward(ids, 0)?)
    }
}
