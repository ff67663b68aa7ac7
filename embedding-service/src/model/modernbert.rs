//! ModernBERT (gte-modernbert, nomic-modernbert class), as transformers'
//! `ModernBertModel` computes it, on both backends:
//!
//! - embeddings `LN(tok_embeddings[id])`, no positions there;
//! - per layer, pre-norm: `x += Wo·attn(rope(Q), rope(K), V)` over
//!   `Wqkv·LN_attn(x)` (layer 0 has no `attn_norm`: identity), then
//!   `x += Wo_mlp·(gelu(a) ⊙ g)` where `a | g = Wi·LN_mlp(x)` (GeGLU);
//! - a final LN. Layer norms and linears have no biases (`norm_bias`,
//!   `attention_bias`, `mlp_bias` false; other settings are refused).
//!
//! Attention is global on layers `i % global_attn_every_n_layers == 0`
//! (rotary θ = `global_rope_theta`) and local elsewhere: query `i` sees keys
//! with `|i − j| ≤ local_attention / 2` (rotary θ = `local_rope_theta`).
//! transformers 5 writes the thetas under `rope_parameters` (`full_attention`,
//! `sliding_attention`) and the layer kinds as `layer_types`; both spellings
//! are read.
//!
//! The fused CPU encoder ([`FusedModernBert`]) packs sequences as `fused.rs`
//! does; the candle graph is candle-transformers' `modernbert::ModernBert`
//! (f32 only: its masks are f32, so half precision is refused at load).

use super::fused::{load_linear_t, load_vec, SendPtr};
use super::kernels::{self, Keys};
use super::linear::{Linear, Precision};
use super::spec::{usize_field, ModelSpec};
use super::ModelError;
use super::PackedBatch;
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::modernbert;
use rayon::prelude::*;
use serde_json::Value;

/// ModernBERT's numbers from `config.json`, in either transformers' spelling.
#[derive(Debug, Clone)]
pub struct ModernBertShape {
    pub hidden: usize,
    pub heads: usize,
    pub inter: usize,
    pub layers: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f64,
    pub global_theta: f64,
    pub local_theta: f64,
    /// `local_attention`: the window is `local_attention / 2` on each side.
    pub local_attention: usize,
    /// Per layer: true for global (full) attention.
    pub global: Vec<bool>,
}

impl ModernBertShape {
    /// Reads and checks the config. Errors: biases or an activation other
    /// than erf-GELU (not computed here), missing fields.
    pub fn read(spec: &ModelSpec) -> Result<Self, ModelError> {
        let c = &spec.config;
        for k in ["norm_bias", "attention_bias", "mlp_bias"] {
            if c.get(k).and_then(Value::as_bool).unwrap_or(false) {
                return Err(ModelError::UnsupportedArchitecture(format!(
                    "{} with `{k}: true` (ModernBERT is computed without biases)",
                    spec.architecture_name
                )));
            }
        }
        match c
            .get("hidden_activation")
            .and_then(Value::as_str)
            .unwrap_or("gelu")
        {
            "gelu" => {}
            other => {
                return Err(ModelError::Config(format!(
                    "ModernBERT hidden_activation `{other}` is not supported (gelu is)"
                )))
            }
        }
        let layers = usize_field(c, "num_hidden_layers")?;
        let theta = |old: &str, new: &str, default: f64| {
            c.get(old)
                .and_then(Value::as_f64)
                .or_else(|| {
                    c.get("rope_parameters")
                        .and_then(|r| r.get(new))
                        .and_then(|r| r.get("rope_theta"))
                        .and_then(Value::as_f64)
                })
                .unwrap_or(default)
        };
        let every = usize_field(c, "global_attn_every_n_layers")
            .unwrap_or(3)
            .max(1);
        let global: Vec<bool> = match c.get("layer_types").and_then(Value::as_array) {
            Some(types) if types.len() == layers => types
                .iter()
                .map(|t| t.as_str() != Some("sliding_attention"))
                .collect(),
            _ => (0..layers).map(|i| i % every == 0).collect(),
        };
        let hidden = spec.hidden_size;
        let heads = usize_field(c, "num_attention_heads")?;
        if heads == 0 || !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "hidden_size {hidden} must split into {heads} heads of even size"
            )));
        }
        Ok(Self {
            hidden,
            heads,
            inter: usize_field(c, "intermediate_size")?,
            layers,
            vocab: usize_field(c, "vocab_size")?,
            max_positions: usize_field(c, "max_position_embeddings")?,
            eps: c
                .get("norm_eps")
                .or_else(|| c.get("layer_norm_eps"))
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
            global_theta: theta("global_rope_theta", "full_attention", 160_000.0),
            local_theta: theta("local_rope_theta", "sliding_attention", 10_000.0),
            local_attention: usize_field(c, "local_attention").unwrap_or(128),
            global,
        })
    }
}

/// Tensors may be stored under `model.` (masked-LM checkpoints) or with no
/// prefix (`ModernBertModel`); returns a builder with no prefix.
fn unprefixed(vb: VarBuilder<'static>) -> VarBuilder<'static> {
    if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
        vb.pp("model")
    } else {
        vb
    }
}

struct Layer {
    /// None on layer 0 (identity).
    attn_norm: Option<Vec<f32>>,
    /// `[hidden × 3·hidden]`, Q | K | V columns.
    wqkv: Linear,
    wo: Linear,
    mlp_norm: Vec<f32>,
    /// `[hidden × 2·inter]`: GELU input | gate columns.
    wi: Linear,
    /// `[inter × hidden]`
    wo_mlp: Linear,
}

/// A loaded ModernBERT for the fused CPU path.
pub struct FusedModernBert {
    s: ModernBertShape,
    embed: Vec<f32>,
    embed_norm: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    /// `θ^(−2i/d)` for global and local layers.
    inv_freq_global: Vec<f32>,
    inv_freq_local: Vec<f32>,
}

/// `x = LN(x) · g` (no bias), rows of `g.len()`.
fn layer_norm(x: &mut [f32], g: &[f32], eps: f32) {
    let h = g.len();
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (v, w) in row.iter_mut().zip(g) {
            *v = (*v - mean) * inv * w;
        }
    }
}

fn inv_freq(theta: f64, d: usize) -> Vec<f32> {
    (0..d / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32))
        .collect()
}

impl FusedModernBert {
    pub fn load(spec: &ModelSpec, precision: Precision) -> Result<Self, ModelError> {
        let s = ModernBertShape::read(spec)?;
        let path = spec
            .files
            .file("model.safetensors")
            .ok_or_else(|| ModelError::Source("model.safetensors missing".into()))?;
        // SAFETY: read-only mapping of an immutable model file, copied out below.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[path], candle_core::DType::F32, &Device::Cpu)?
        };
        let vb = unprefixed(vb);
        let (h, i) = (s.hidden, s.inter);
        let mut layers = Vec::with_capacity(s.layers);
        for l in 0..s.layers {
            let lb = vb.pp(format!("layers.{l}"));
            layers.push(Layer {
                attn_norm: if lb.contains_tensor("attn_norm.weight") {
                    Some(load_vec(&lb, &[h], "attn_norm.weight")?)
                } else {
                    None
                },
                wqkv: Linear::new(
                    load_linear_t(&lb, 3 * h, h, "attn.Wqkv.weight")?,
                    h,
                    3 * h,
                    precision,
                ),
                wo: Linear::new(load_linear_t(&lb, h, h, "attn.Wo.weight")?, h, h, precision),
                mlp_norm: load_vec(&lb, &[h], "mlp_norm.weight")?,
                wi: Linear::new(
                    load_linear_t(&lb, 2 * i, h, "mlp.Wi.weight")?,
                    h,
                    2 * i,
                    precision,
                ),
                wo_mlp: Linear::new(load_linear_t(&lb, h, i, "mlp.Wo.weight")?, i, h, precision),
            });
        }
        let d = h / s.heads;
        Ok(Self {
            embed: load_vec(&vb, &[s.vocab, h], "embeddings.tok_embeddings.weight")?,
            embed_norm: load_vec(&vb, &[h], "embeddings.norm.weight")?,
            final_norm: load_vec(&vb, &[h], "final_norm.weight")?,
            inv_freq_global: inv_freq(s.global_theta, d),
            inv_freq_local: inv_freq(s.local_theta, d),
            layers,
            s,
        })
    }

    /// Last hidden state `[tokens × hidden]`, rows in packed order.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let s = &self.s;
        let (h, inter) = (s.hidden, s.inter);
        let d = h / s.heads;
        let eps = s.eps as f32;
        let t = batch.ids.len();
        if let Some(&len) = batch.lens.iter().max() {
            if len > s.max_positions {
                return Err(ModelError::Input(format!(
                    "sequence of {len} tokens exceeds {} positions",
                    s.max_positions
                )));
            }
        }
        let mut x = vec![0f32; t * h];
        for (row, &id) in batch.ids.iter().enumerate() {
            let id = id as usize;
            if id >= s.vocab {
                return Err(ModelError::Input(format!("token id {id} out of range")));
            }
            x[row * h..(row + 1) * h].copy_from_slice(&self.embed[id * h..(id + 1) * h]);
        }
        x.par_chunks_mut(h * 32)
            .for_each(|c| layer_norm(c, &self.embed_norm, eps));
        let pos: Vec<usize> = batch.lens.iter().flat_map(|&l| 0..l).collect();
        let starts: Vec<usize> = batch
            .lens
            .iter()
            .scan(0, |acc, &l| {
                let st = *acc;
                *acc += l;
                Some(st)
            })
            .collect();
        let zeros = vec![0f32; (3 * h).max(2 * inter)];
        let mut normed = vec![0f32; t * h];
        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut tmp = vec![0f32; t * h];
        let mut wi = vec![0f32; t * 2 * inter];
        let mut act = vec![0f32; t * inter];
        for (li, layer) in self.layers.iter().enumerate() {
            normed.copy_from_slice(&x);
            if let Some(g) = &layer.attn_norm {
                normed
                    .par_chunks_mut(h * 32)
                    .for_each(|c| layer_norm(c, g, eps));
            }
            layer.wqkv.forward(&normed, t, &zeros[..3 * h], &mut qkv);
            let (freq, keys) = if s.global[li] {
                (&self.inv_freq_global, Keys::All)
            } else {
                (&self.inv_freq_local, Keys::Window(s.local_attention / 2))
            };
            qkv.par_chunks_mut(3 * h)
                .zip(pos.par_iter())
                .for_each(|(row, &p)| {
                    for hd in 0..2 * s.heads {
                        rope(&mut row[hd * d..(hd + 1) * d], p, freq);
                    }
                });
            self.attention(&qkv, &batch.lens, &starts, keys, &mut ctx);
            layer.wo.forward(&ctx, t, &zeros[..h], &mut tmp);
            x.par_iter_mut()
                .zip(tmp.par_iter())
                .for_each(|(a, b)| *a += b);
            normed.copy_from_slice(&x);
            normed
                .par_chunks_mut(h * 32)
                .for_each(|c| layer_norm(c, &layer.mlp_norm, eps));
            layer.wi.forward(&normed, t, &zeros[..2 * inter], &mut wi);
            act.par_chunks_mut(inter)
                .zip(wi.par_chunks(2 * inter))
                .for_each(|(a, w)| {
                    a.copy_from_slice(&w[..inter]);
                    kernels::gelu_erf(a);
                    for (o, g) in a.iter_mut().zip(&w[inter..]) {
                        *o *= g;
                    }
                });
            layer.wo_mlp.forward(&act, t, &zeros[..h], &mut tmp);
            x.par_iter_mut()
                .zip(tmp.par_iter())
                .for_each(|(a, b)| *a += b);
        }
        x.par_chunks_mut(h * 32)
            .for_each(|c| layer_norm(c, &self.final_norm, eps));
        Ok(x)
    }

    fn attention(
        &self,
        qkv: &[f32],
        lens: &[usize],
        starts: &[usize],
        keys: Keys,
        ctx: &mut [f32],
    ) {
        let h = self.s.hidden;
        let heads = self.s.heads;
        let d = h / heads;
        let stride = 3 * h;
        let scale = 1.0 / (d as f32).sqrt();
        let out = SendPtr(ctx.as_mut_ptr());
        let out_len = ctx.len();
        (0..lens.len() * heads).into_par_iter().for_each_init(
            Vec::new,
            |scores: &mut Vec<f32>, task| {
                let (sq, hd) = (task / heads, task % heads);
                let (len, start) = (lens[sq], starts[sq]);
                if scores.len() < kernels::attention_scratch(len, d) {
                    scores.resize(kernels::attention_scratch(len, d), 0.0);
                }
                let base = start * stride + hd * d;
                // SAFETY: task (sq, hd) writes only rows start..start+len,
                // columns hd*d..(hd+1)*d of ctx; tasks are disjoint, and the
                // slice stays inside ctx.
                let o = unsafe {
                    let off = start * h + hd * d;
                    let n = (len - 1) * h + d;
                    debug_assert!(off + n <= out_len);
                    std::slice::from_raw_parts_mut(out.get().add(off), n)
                };
                kernels::attention_head(
                    qkv,
                    base,
                    base + h,
                    base + 2 * h,
                    stride,
                    len,
                    d,
                    scale,
                    o,
                    h,
                    scores,
                    &[],
                    keys,
                );
            },
        );
    }
}

/// Rotates one head's values for position `p` (`rotate_half`), angles in f32.
fn rope(v: &mut [f32], p: usize, inv_freq: &[f32]) {
    let half = v.len() / 2;
    for (i, &f) in inv_freq.iter().enumerate() {
        let (sin, cos) = (p as f32 * f).sin_cos();
        let (a, b) = (v[i], v[i + half]);
        v[i] = a * cos - b * sin;
        v[i + half] = b * cos + a * sin;
    }
}

/// ModernBERT on the candle graph: candle-transformers' model, f32 only.
pub struct ModernBertGraph {
    model: modernbert::ModernBert,
}

impl ModernBertGraph {
    /// Errors: half precision (refused), biases, missing tensors.
    pub fn load(vb: VarBuilder<'static>, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s = ModernBertShape::read(spec)?;
        if vb.dtype() != candle_core::DType::F32 {
            return Err(ModelError::Device(format!(
                "{} (ModernBERT) runs in f32 only on the candle graph; use dtype f32",
                spec.architecture_name
            )));
        }
        let every = usize_field(&spec.config, "global_attn_every_n_layers")
            .unwrap_or(3)
            .max(1);
        if s.global
            .iter()
            .enumerate()
            .any(|(i, &g)| g != (i % every == 0))
        {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{} with layer_types other than global every {every} layers",
                spec.architecture_name
            )));
        }
        let cfg = modernbert::Config {
            vocab_size: s.vocab,
            hidden_size: s.hidden,
            num_hidden_layers: s.layers,
            num_attention_heads: s.heads,
            intermediate_size: s.inter,
            max_position_embeddings: s.max_positions,
            layer_norm_eps: s.eps,
            pad_token_id: spec.pad_token_id(),
            global_attn_every_n_layers: every,
            global_rope_theta: s.global_theta,
            local_attention: s.local_attention,
            local_rope_theta: s.local_theta,
            classifier_config: None,
        };
        // candle-transformers reads `model.`-prefixed names.
        let vb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
            vb
        } else {
            vb.rename_f(|n| n.strip_prefix("model.").unwrap_or(n).to_string())
        };
        Ok(Self {
            model: modernbert::ModernBert::load(vb, &cfg)?,
        })
    }

    /// `ids`, `mask`: `[batch × longest]`. Returns `[batch × longest × hidden]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.model.forward(ids, mask)?)
    }
}
