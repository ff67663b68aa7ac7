//! The fused CPU encoder for Qwen3 / Qwen3-Embedding, as transformers'
//! `Qwen3Model` computes it: per layer
//! `x += O·attn(rope(qnorm(Q·rms(x))), rope(knorm(K·rms(x))), V·rms(x))` with
//! causal, grouped-query attention (`num_key_value_heads` shared by
//! `num_attention_heads / num_key_value_heads` query heads each), then
//! `x += Down·(silu(Gate·rms(x)) ⊙ Up·rms(x))`; a final RMSNorm. No biases.
//!
//! Sequences are packed back to back as in `fused.rs`; positions restart at
//! 0 for each sequence and attention is causal, so a sequence sees neither
//! padding nor its neighbours. Rotary angles are `position · θ^(−2i/d)`,
//! taken in f32 as transformers takes them; the two halves of each head are
//! rotated together (`rotate_half`).

use super::fused::{load_linear_t, load_vec, SendPtr};
use super::linear::{Linear, Precision};
use super::spec::{usize_field, ModelSpec};
use super::{kernels, ModelError, PackedBatch};
use candle_core::Device;
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde_json::Value;

struct Layer {
    norm1: Vec<f32>,
    /// `[hidden × (heads + 2·kv_heads)·d]`: Q | K | V columns.
    wqkv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    /// `[heads·d × hidden]`
    wo: Linear,
    norm2: Vec<f32>,
    /// `[hidden × 2·inter]`: gate | up columns.
    wgu: Linear,
    /// `[inter × hidden]`
    wdown: Linear,
}

/// A loaded Qwen3 decoder for the CPU.
pub struct FusedQwen3 {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inter: usize,
    eps: f32,
    vocab: usize,
    max_positions: usize,
    /// `θ^(−2i/d)`, `d/2` values.
    inv_freq: Vec<f32>,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
}

/// `x = x / sqrt(mean(x²) + eps) · w`, row by row (rows of `w.len()`).
fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

impl FusedQwen3 {
    /// Loads the weights (under `model.` or no prefix) as f32 on the CPU.
    pub fn load(spec: &ModelSpec, precision: Precision) -> Result<Self, ModelError> {
        let c = &spec.config;
        let path = spec
            .files
            .file("model.safetensors")
            .ok_or_else(|| ModelError::Source("model.safetensors missing".into()))?;
        // SAFETY: read-only mapping of an immutable model file, copied out below.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[path], candle_core::DType::F32, &Device::Cpu)?
        };
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let h = spec.hidden_size;
        let heads = usize_field(c, "num_attention_heads")?;
        let kv_heads = usize_field(c, "num_key_value_heads").unwrap_or(heads);
        let d = usize_field(c, "head_dim").unwrap_or(h / heads.max(1));
        let inter = usize_field(c, "intermediate_size")?;
        let vocab = usize_field(c, "vocab_size")?;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !d.is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "num_attention_heads {heads} must be a multiple of num_key_value_heads \
                 {kv_heads}, and head_dim {d} even"
            )));
        }
        let theta = c
            .get("rope_theta")
            .or_else(|| c.get("rope_parameters").and_then(|r| r.get("rope_theta")))
            .and_then(Value::as_f64)
            .unwrap_or(1_000_000.0);
        // As transformers: arange(0, d, 2).float() / d, in f32.
        let inv_freq = (0..d / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32))
            .collect();
        let (qd, kd) = (heads * d, kv_heads * d);
        let mut layers = Vec::new();
        for l in 0..usize_field(c, "num_hidden_layers")? {
            let lb = vb.pp(format!("layers.{l}"));
            let q = load_linear_t(&lb, qd, h, "self_attn.q_proj.weight")?;
            let k = load_linear_t(&lb, kd, h, "self_attn.k_proj.weight")?;
            let v = load_linear_t(&lb, kd, h, "self_attn.v_proj.weight")?;
            let n = qd + 2 * kd;
            let mut wqkv = vec![0f32; h * n];
            for r in 0..h {
                wqkv[r * n..r * n + qd].copy_from_slice(&q[r * qd..(r + 1) * qd]);
                wqkv[r * n + qd..r * n + qd + kd].copy_from_slice(&k[r * kd..(r + 1) * kd]);
                wqkv[r * n + qd + kd..(r + 1) * n].copy_from_slice(&v[r * kd..(r + 1) * kd]);
            }
            let g = load_linear_t(&lb, inter, h, "mlp.gate_proj.weight")?;
            let u = load_linear_t(&lb, inter, h, "mlp.up_proj.weight")?;
            let mut wgu = vec![0f32; h * 2 * inter];
            for r in 0..h {
                wgu[r * 2 * inter..r * 2 * inter + inter]
                    .copy_from_slice(&g[r * inter..(r + 1) * inter]);
                wgu[r * 2 * inter + inter..(r + 1) * 2 * inter]
                    .copy_from_slice(&u[r * inter..(r + 1) * inter]);
            }
            layers.push(Layer {
                norm1: load_vec(&lb, &[h], "input_layernorm.weight")?,
                wqkv: Linear::new(wqkv, h, n, precision),
                q_norm: load_vec(&lb, &[d], "self_attn.q_norm.weight")?,
                k_norm: load_vec(&lb, &[d], "self_attn.k_norm.weight")?,
                wo: Linear::new(
                    load_linear_t(&lb, h, qd, "self_attn.o_proj.weight")?,
                    qd,
                    h,
                    precision,
                ),
                norm2: load_vec(&lb, &[h], "post_attention_layernorm.weight")?,
                wgu: Linear::new(wgu, h, 2 * inter, precision),
                wdown: Linear::new(
                    load_linear_t(&lb, h, inter, "mlp.down_proj.weight")?,
                    inter,
                    h,
                    precision,
                ),
            });
        }
        Ok(Self {
            hidden: h,
            heads,
            kv_heads,
            head_dim: d,
            inter,
            eps: c
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6) as f32,
            vocab,
            max_positions: usize_field(c, "max_position_embeddings")?,
            inv_freq,
            embed: load_vec(&vb, &[vocab, h], "embed_tokens.weight")?,
            layers,
            norm: load_vec(&vb, &[h], "norm.weight")?,
        })
    }

    /// Runs the decoder; returns the final normed hidden state,
    /// `[tokens × hidden]`, rows in the batch's packed order.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let (h, d) = (self.hidden, self.head_dim);
        let t = batch.ids.len();
        let (qd, kd) = (self.heads * d, self.kv_heads * d);
        let stride = qd + 2 * kd;
        if let Some(&len) = batch.lens.iter().max() {
            if len > self.max_positions {
                return Err(ModelError::Input(format!(
                    "sequence of {len} tokens exceeds {} positions",
                    self.max_positions
                )));
            }
        }
        let mut x = vec![0f32; t * h];
        for (row, &id) in batch.ids.iter().enumerate() {
            let id = id as usize;
            if id >= self.vocab {
                return Err(ModelError::Input(format!("token id {id} out of range")));
            }
            x[row * h..(row + 1) * h].copy_from_slice(&self.embed[id * h..(id + 1) * h]);
        }
        // Position of each packed row within its sequence.
        let pos: Vec<usize> = batch.lens.iter().flat_map(|&l| 0..l).collect();
        let starts: Vec<usize> = batch
            .lens
            .iter()
            .scan(0, |acc, &l| {
                let s = *acc;
                *acc += l;
                Some(s)
            })
            .collect();
        let none = vec![0f32; stride.max(2 * self.inter).max(h)];
        let mut normed = vec![0f32; t * h];
        let mut qkv = vec![0f32; t * stride];
        let mut ctx = vec![0f32; t * qd];
        let mut tmp = vec![0f32; t * h];
        let mut gu = vec![0f32; t * 2 * self.inter];
        let mut act = vec![0f32; t * self.inter];
        for layer in &self.layers {
            normed.copy_from_slice(&x);
            normed
                .par_chunks_mut(h * 32)
                .for_each(|c| rms_norm(c, &layer.norm1, self.eps));
            layer.wqkv.forward(&normed, t, &none[..stride], &mut qkv);
            qkv.par_chunks_mut(stride)
                .zip(pos.par_iter())
                .for_each(|(row, &p)| {
                    for hd in 0..self.heads {
                        let q = &mut row[hd * d..(hd + 1) * d];
                        rms_norm(q, &layer.q_norm, self.eps);
                        self.rope(q, p);
                    }
                    for hd in 0..self.kv_heads {
                        let k = &mut row[qd + hd * d..qd + (hd + 1) * d];
                        rms_norm(k, &layer.k_norm, self.eps);
                        self.rope(k, p);
                    }
                });
            self.attention(&qkv, &batch.lens, &starts, &mut ctx);
            layer.wo.forward(&ctx, t, &none[..h], &mut tmp);
            x.par_iter_mut()
                .zip(tmp.par_iter())
                .for_each(|(a, b)| *a += b);
            normed.copy_from_slice(&x);
            normed
                .par_chunks_mut(h * 32)
                .for_each(|c| rms_norm(c, &layer.norm2, self.eps));
            layer
                .wgu
                .forward(&normed, t, &none[..2 * self.inter], &mut gu);
            let inter = self.inter;
            act.par_chunks_mut(inter)
                .zip(gu.par_chunks(2 * inter))
                .for_each(|(a, g)| {
                    for ((o, gate), up) in a.iter_mut().zip(&g[..inter]).zip(&g[inter..]) {
                        *o = gate / (1.0 + kernels::exp(-gate)) * up;
                    }
                });
            layer.wdown.forward(&act, t, &none[..h], &mut tmp);
            x.par_iter_mut()
                .zip(tmp.par_iter())
                .for_each(|(a, b)| *a += b);
        }
        x.par_chunks_mut(h * 32)
            .for_each(|c| rms_norm(c, &self.norm, self.eps));
        Ok(x)
    }

    /// Rotates one head's `d` values for position `p` (`rotate_half`).
    fn rope(&self, v: &mut [f32], p: usize) {
        let half = v.len() / 2;
        for (i, &f) in self.inv_freq.iter().enumerate() {
            let angle = p as f32 * f;
            let (sin, cos) = angle.sin_cos();
            let (a, b) = (v[i], v[i + half]);
            v[i] = a * cos - b * sin;
            v[i + half] = b * cos + a * sin;
        }
    }

    fn attention(&self, qkv: &[f32], lens: &[usize], starts: &[usize], ctx: &mut [f32]) {
        let d = self.head_dim;
        let (heads, group) = (self.heads, self.heads / self.kv_heads);
        let qd = heads * d;
        let kd = self.kv_heads * d;
        let stride = qd + 2 * kd;
        let scale = 1.0 / (d as f32).sqrt();
        let out = SendPtr(ctx.as_mut_ptr());
        let out_len = ctx.len();
        (0..lens.len() * heads).into_par_iter().for_each_init(
            Vec::new,
            |scores: &mut Vec<f32>, task| {
                let (s, hd) = (task / heads, task % heads);
                let (len, start) = (lens[s], starts[s]);
                if scores.len() < kernels::attention_scratch(len, d) {
                    scores.resize(kernels::attention_scratch(len, d), 0.0);
                }
                let base = start * stride;
                let kv = hd / group;
                // SAFETY: task (s, hd) writes only rows start..start+len,
                // columns hd*d..(hd+1)*d of ctx; tasks are disjoint, and the
                // slice stays inside ctx.
                let o = unsafe {
                    let off = start * qd + hd * d;
                    let n = (len - 1) * qd + d;
                    debug_assert!(off + n <= out_len);
                    std::slice::from_raw_parts_mut(out.get().add(off), n)
                };
                kernels::attention_head(
                    qkv,
                    base + hd * d,
                    base + qd + kv * d,
                    base + qd + kd + kv * d,
                    stride,
                    len,
                    d,
                    scale,
                    o,
                    qd,
                    scores,
                    &[],
                    kernels::Keys::Causal,
                );
            },
        );
    }
}
