//! The candle graph of the post-layer-norm encoder families that
//! candle-transformers lacks or computes differently from transformers:
//! MPNet (no candle-transformers module) and DistilBERT (candle-transformers
//! applies tanh-GELU where transformers' `gelu` is erf-GELU). Runs on any
//! candle device and dtype; the same function as the fused CPU encoder
//! (`fused.rs`), over a batch padded to its longest sequence.
//!
//! Per layer, as transformers' `MPNetLayer` / `TransformerBlock`:
//! `x = LN(x + O·softmax(Q·Kᵀ/√d + bias + mask)·V)`, `x = LN(x + W2·act(W1·x))`.
//! `bias` is MPNet's relative-position bias (`[heads × len × len]`, from
//! [`mpnet_bucket`] of key − query position, the same table for every
//! layer); `mask` is −∞ on padding keys.

use super::fused::Positions;
use super::layout::{mpnet_bucket, Layout, MPNET_RELATIVE_BIAS};
use super::spec::ModelSpec;
use super::{Activation, ModelError};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// A loaded MPNet or DistilBERT encoder on a candle device.
pub struct EncoderGraph {
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Activation,
    positions: Positions,
    /// MPNet's `[buckets × heads]` bias table, on the host in f32.
    relative_bias: Vec<f32>,
    relative_buckets: usize,
    dtype: DType,
    device: Device,
}

impl EncoderGraph {
    /// Loads the encoder from `vb` (already under the encoder's prefix).
    /// Errors: a missing or misshapen tensor names it.
    pub fn load(vb: VarBuilder, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s = spec.shape()?;
        let n = Layout::of(spec.architecture);
        let h = s.hidden;
        let e = vb.pp("embeddings");
        let token_type = if s.type_vocab > 0 {
            Some(candle_nn::embedding(
                s.type_vocab,
                h,
                e.pp("token_type_embeddings"),
            )?)
        } else {
            None
        };
        let relative_bias = if s.relative_buckets > 0 {
            vb.get((s.relative_buckets, s.heads), MPNET_RELATIVE_BIAS)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?
        } else {
            Vec::new()
        };
        let mut layers = Vec::with_capacity(s.layers);
        for l in 0..s.layers {
            let lb = vb.pp(n.layer(l));
            let lin = |name: &str, i: usize, o: usize| candle_nn::linear(i, o, lb.pp(name));
            let ln = |name: &str| candle_nn::layer_norm(h, s.eps, lb.pp(name));
            layers.push(Layer {
                q: lin(n.query, h, h)?,
                k: lin(n.key, h, h)?,
                v: lin(n.value, h, h)?,
                o: lin(n.attn_out, h, h)?,
                attn_norm: ln(n.attn_norm)?,
                ffn_in: lin(n.ffn_in, h, s.inter)?,
                ffn_out: lin(n.ffn_out, s.inter, h)?,
                ffn_norm: ln(n.ffn_norm)?,
            });
        }
        Ok(Self {
            word: candle_nn::embedding(s.vocab, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(s.max_positions, h, e.pp("position_embeddings"))?,
            token_type,
            norm: candle_nn::layer_norm(h, s.eps, e.pp("LayerNorm"))?,
            layers,
            heads: s.heads,
            act: s.act,
            positions: Positions::of(spec),
            relative_bias,
            relative_buckets: s.relative_buckets,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// `ids`: `[batch × longest]` token ids, sequence `i` real for its first
    /// `lens[i]` entries. Returns the last hidden state `[batch × longest ×
    /// hidden]` (rows past a sequence's end are padding, not meaningful).
    pub fn forward(&self, ids: &Tensor, lens: &[usize]) -> Result<Tensor, ModelError> {
        let (b, l) = ids.dims2()?;
        let host: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let mut pos = Vec::with_capacity(b * l);
        let mut scratch = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            self.positions.fill(&host[i * l..i * l + len], &mut scratch);
            pos.extend(scratch.iter().map(|&p| p as u32));
            // Padding slots: any valid row; they are masked as keys.
            pos.extend(std::iter::repeat_n(0u32, l - len));
        }
        let pos = Tensor::from_vec(pos, (b, l), &self.device)?;
        let mut x = self.word.forward(ids)?.add(&self.position.forward(&pos)?)?;
        if let Some(tt) = &self.token_type {
            x =
                x.broadcast_add(&tt.forward(&Tensor::zeros((b, l), DType::U32, &self.device)?)?)?;
        }
        let mut x = self.norm.forward(&x)?;

        // −∞ on padding keys: [b, 1, 1, l].
        let mask: Vec<f32> = lens
            .iter()
            .flat_map(|&len| (0..l).map(move |t| if t < len { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mut bias = Tensor::from_vec(mask, (b, 1, 1, l), &self.device)?.to_dtype(self.dtype)?;
        if self.relative_buckets > 0 {
            let heads = self.heads;
            let mut rel = vec![0f32; heads * l * l];
            for hd in 0..heads {
                for i in 0..l {
                    for j in 0..l {
                        let bucket = mpnet_bucket(j as i64 - i as i64, self.relative_buckets);
                        rel[(hd * l + i) * l + j] = self.relative_bias[bucket * heads + hd];
                    }
                }
            }
            let rel =
                Tensor::from_vec(rel, (1, heads, l, l), &self.device)?.to_dtype(self.dtype)?;
            bias = bias.broadcast_add(&rel)?;
        }

        let h = x.dim(2)?;
        let d = h / self.heads;
        let scale = 1.0 / (d as f64).sqrt();
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let q = split(layer.q.forward(&x)?)?;
            let k = split(layer.k.forward(&x)?)?;
            let v = split(layer.v.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, l, h))?
                .contiguous()?;
            x = layer.attn_norm.forward(&(layer.o.forward(&ctx)? + &x)?)?;
            let mid = layer.ffn_in.forward(&x)?;
            let mid = match self.act {
                Activation::GeluErf => mid.gelu_erf()?,
                Activation::GeluTanh => mid.gelu()?,
                Activation::Relu => mid.relu()?,
            };
            x = layer
                .ffn_norm
                .forward(&(layer.ffn_out.forward(&mid)? + &x)?)?;
        }
        Ok(x)
    }
}
