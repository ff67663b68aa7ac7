//! The fused CPU encoder for the post-layer-norm encoder families: BERT
//! (MiniLM, BGE, E5, GTE), XLM-RoBERTa (a position offset), MPNet (RoBERTa
//! positions plus a relative-position bias on the attention scores) and
//! DistilBERT (no token types); tensor names per family from
//! [`super::layout::Layout`].
//!
//! Why it exists: candle's generic graph spends most of a batch-32 pass
//! outside the large matrix products (per-head products, softmax, layer norm,
//! GELU and copies between them) and on padding. This encoder
//! - packs the sequences of a batch back to back (no padding at all: dense
//!   layers see exactly the real tokens, attention runs per sequence),
//! - fuses Q, K and V into one GEMM, adds biases inside the GEMM, and fuses
//!   residual + layer norm and the activation into single passes,
//! - runs GEMMs through the `gemm` crate (AVX-512/AVX2 kernels chosen at run
//!   time) and attention heads in parallel on the inference pool.
//!
//! Invariant: for the same token ids it computes the same function as the
//! candle graph (`candle_backend`), to float rounding; the parity tests hold
//! both to the float64 reference embeddings.

use super::kernels;
use super::layout::{mpnet_bucket, Layout, MPNET_RELATIVE_BIAS};
use super::linear::{Linear, Precision};
use super::{Activation, ModelError, PackedBatch};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

struct Layer {
    /// [hidden × 3·hidden], Q | K | V columns.
    wqkv: Linear,
    bqkv: Vec<f32>,
    /// [hidden × hidden]
    wo: Linear,
    bo: Vec<f32>,
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    /// [hidden × intermediate]
    w1: Linear,
    b1: Vec<f32>,
    /// [intermediate × hidden]
    w2: Linear,
    b2: Vec<f32>,
    ln2_g: Vec<f32>,
    ln2_b: Vec<f32>,
}

pub struct FusedBert {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: Activation,
    vocab: usize,
    max_positions: usize,
    positions: Positions,
    type_vocab: usize,
    /// MPNet's `[buckets × heads]` relative-position bias; empty for none.
    relative_bias: Vec<f32>,
    relative_buckets: usize,
    word: Vec<f32>,
    pos: Vec<f32>,
    tok_type: Vec<f32>,
    emb_ln_g: Vec<f32>,
    emb_ln_b: Vec<f32>,
    layers: Vec<Layer>,
}

/// Shape numbers the fused encoder needs from `config.json`.
pub struct FusedShape {
    pub hidden: usize,
    pub heads: usize,
    pub inter: usize,
    pub layers: usize,
    pub eps: f32,
    pub act: Activation,
    pub vocab: usize,
    pub max_positions: usize,
    /// Rows of the token-type table; 0: the family has none.
    pub type_vocab: usize,
    pub positions: Positions,
    /// MPNet's relative-position buckets; 0: no attention-score bias.
    pub relative_buckets: usize,
    pub layout: Layout,
    /// The precision of the linear layers.
    pub precision: Precision,
}

/// The token id MPNet's position ids skip (transformers' `MPNetEmbeddings`
/// fixes `padding_idx` at 1).
pub const MPNET_POSITION_PAD: u32 = 1;

/// How a token's position id is computed, as transformers computes it for
/// the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// BERT: `0, 1, 2, ...` for every token.
    Absolute,
    /// RoBERTa / XLM-RoBERTa (`create_position_ids_from_input_ids`): a token
    /// equal to `pad` gets position `pad`; every other token gets
    /// `pad + 1 + (number of non-pad tokens before it)`. So a literal pad
    /// token inside the text takes the pad position and does not advance the
    /// count for the tokens after it.
    Roberta { pad: u32 },
}

impl Positions {
    /// The rule of `spec`'s family: RoBERTa's for XLM-RoBERTa (offset by
    /// the pad id) and MPNet (transformers' `MPNetEmbeddings` hard-codes
    /// `padding_idx = 1`, whatever `pad_token_id` says), in order for the
    /// others.
    pub fn of(spec: &super::spec::ModelSpec) -> Self {
        use super::spec::Architecture as A;
        match spec.architecture {
            A::Bert | A::DistilBert | A::Qwen3 | A::ModernBert => Positions::Absolute,
            A::XlmRoberta => Positions::Roberta {
                pad: spec.pad_token_id(),
            },
            A::MpNet => Positions::Roberta {
                pad: MPNET_POSITION_PAD,
            },
        }
    }

    /// Position ids of one sequence, written into `out` (same length as `ids`).
    pub fn fill(self, ids: &[u32], out: &mut Vec<usize>) {
        out.clear();
        match self {
            Positions::Absolute => out.extend(0..ids.len()),
            Positions::Roberta { pad } => {
                let mut n = 0usize;
                out.extend(ids.iter().map(|&id| {
                    if id == pad {
                        pad as usize
                    } else {
                        n += 1;
                        pad as usize + n
                    }
                }));
            }
        }
    }
}

pub(super) fn load_vec(
    vb: &VarBuilder,
    shape: &[usize],
    name: &str,
) -> Result<Vec<f32>, ModelError> {
    let t = vb.get(shape, name)?.to_dtype(DType::F32)?;
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Loads a `[out × in]` linear weight as `[in × out]` (row-major), so a GEMM
/// reads it without a transposed pack.
pub(super) fn load_linear_t(
    vb: &VarBuilder,
    out: usize,
    inp: usize,
    name: &str,
) -> Result<Vec<f32>, ModelError> {
    let t: Tensor = vb.get((out, inp), name)?.to_dtype(DType::F32)?;
    Ok(t.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?)
}

impl FusedBert {
    pub fn load(vb: VarBuilder, s: &FusedShape) -> Result<Self, ModelError> {
        let (h, i) = (s.hidden, s.inter);
        let e = vb.pp("embeddings");
        let word = load_vec(&e, &[s.vocab, h], "word_embeddings.weight")?;
        let pos = load_vec(&e, &[s.max_positions, h], "position_embeddings.weight")?;
        let tok_type = if s.type_vocab > 0 {
            load_vec(&e, &[s.type_vocab, h], "token_type_embeddings.weight")?
        } else {
            Vec::new()
        };
        let emb_ln_g = load_vec(&e, &[h], "LayerNorm.weight")?;
        let emb_ln_b = load_vec(&e, &[h], "LayerNorm.bias")?;
        let relative_bias = if s.relative_buckets > 0 {
            load_vec(&vb, &[s.relative_buckets, s.heads], MPNET_RELATIVE_BIAS)?
        } else {
            Vec::new()
        };
        let n = &s.layout;
        let mut layers = Vec::with_capacity(s.layers);
        for l in 0..s.layers {
            let lb = vb.pp(n.layer(l));
            let w = |name: &str, o: usize, i: usize| {
                load_linear_t(&lb, o, i, &format!("{name}.weight"))
            };
            let b = |name: &str, o: usize| load_vec(&lb, &[o], &format!("{name}.bias"));
            let q = w(n.query, h, h)?;
            let k = w(n.key, h, h)?;
            let v = w(n.value, h, h)?;
            let mut wqkv = vec![0f32; h * 3 * h];
            for r in 0..h {
                wqkv[r * 3 * h..r * 3 * h + h].copy_from_slice(&q[r * h..(r + 1) * h]);
                wqkv[r * 3 * h + h..r * 3 * h + 2 * h].copy_from_slice(&k[r * h..(r + 1) * h]);
                wqkv[r * 3 * h + 2 * h..(r + 1) * 3 * h].copy_from_slice(&v[r * h..(r + 1) * h]);
            }
            let mut bqkv = b(n.query, h)?;
            bqkv.extend(b(n.key, h)?);
            bqkv.extend(b(n.value, h)?);
            let p = s.precision;
            layers.push(Layer {
                wqkv: Linear::new(wqkv, h, 3 * h, p),
                bqkv,
                wo: Linear::new(w(n.attn_out, h, h)?, h, h, p),
                bo: b(n.attn_out, h)?,
                ln1_g: load_vec(&lb, &[h], &format!("{}.weight", n.attn_norm))?,
                ln1_b: b(n.attn_norm, h)?,
                w1: Linear::new(w(n.ffn_in, i, h)?, h, i, p),
                b1: b(n.ffn_in, i)?,
                w2: Linear::new(w(n.ffn_out, h, i)?, i, h, p),
                b2: b(n.ffn_out, h)?,
                ln2_g: load_vec(&lb, &[h], &format!("{}.weight", n.ffn_norm))?,
                ln2_b: b(n.ffn_norm, h)?,
            });
        }
        if h % s.heads != 0 {
            return Err(ModelError::Config(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                s.heads
            )));
        }
        Ok(Self {
            hidden: h,
            heads: s.heads,
            inter: i,
            eps: s.eps,
            act: s.act,
            vocab: s.vocab,
            max_positions: s.max_positions,
            positions: s.positions,
            type_vocab: s.type_vocab,
            relative_bias,
            relative_buckets: s.relative_buckets,
            word,
            pos,
            tok_type,
            emb_ln_g,
            emb_ln_b,
            layers,
        })
    }

    /// Runs the encoder; returns the last hidden state, `[tokens × hidden]`,
    /// rows in the batch's packed order.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let h = self.hidden;
        let t = batch.ids.len();
        let mut x = vec![0f32; t * h];
        let mut tmp = vec![0f32; t * h];
        // Embeddings: x = word + type, tmp = position; then x = LN(x + tmp).
        let mut row = 0;
        let mut pos_ids = Vec::new();
        for &len in &batch.lens {
            self.positions
                .fill(&batch.ids[row..row + len], &mut pos_ids);
            if let Some(&last) = pos_ids.iter().max() {
                if last >= self.max_positions {
                    return Err(ModelError::Input(format!(
                        "sequence of {len} tokens exceeds {} positions",
                        self.max_positions
                    )));
                }
            }
            for &pp in &pos_ids {
                let id = batch.ids[row] as usize;
                // Families without token types ignore the tokenizer's.
                let tt = if self.type_vocab == 0 {
                    0
                } else {
                    batch.type_ids[row] as usize
                };
                if id >= self.vocab || (self.type_vocab > 0 && tt >= self.type_vocab) {
                    return Err(ModelError::Input(format!("token id {id} out of range")));
                }
                let xr = &mut x[row * h..(row + 1) * h];
                let w = &self.word[id * h..(id + 1) * h];
                if self.type_vocab == 0 {
                    xr.copy_from_slice(w);
                } else {
                    let ty = &self.tok_type[tt * h..(tt + 1) * h];
                    for ((o, a), b) in xr.iter_mut().zip(w).zip(ty) {
                        *o = a + b;
                    }
                }
                tmp[row * h..(row + 1) * h].copy_from_slice(&self.pos[pp * h..(pp + 1) * h]);
                row += 1;
            }
        }
        par_add_layer_norm(&mut x, &tmp, &self.emb_ln_g, &self.emb_ln_b, self.eps, h);

        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut mid = vec![0f32; t * self.inter];
        let starts: Vec<usize> = batch
            .lens
            .iter()
            .scan(0, |acc, &l| {
                let s = *acc;
                *acc += l;
                Some(s)
            })
            .collect();
        for layer in &self.layers {
            layer.wqkv.forward(&x, t, &layer.bqkv, &mut qkv);
            self.attention(&qkv, &batch.lens, &starts, &mut ctx);
            layer.wo.forward(&ctx, t, &layer.bo, &mut tmp);
            par_add_layer_norm(&mut x, &tmp, &layer.ln1_g, &layer.ln1_b, self.eps, h);
            layer.w1.forward(&x, t, &layer.b1, &mut mid);
            let act = self.act;
            mid.par_chunks_mut(16 * 1024).for_each(|c| match act {
                Activation::GeluErf => kernels::gelu_erf(c),
                Activation::GeluTanh => kernels::gelu_tanh(c),
                Activation::Relu => kernels::relu(c),
            });
            layer.w2.forward(&mid, t, &layer.b2, &mut tmp);
            par_add_layer_norm(&mut x, &tmp, &layer.ln2_g, &layer.ln2_b, self.eps, h);
        }
        Ok(x)
    }

    fn attention(&self, qkv: &[f32], lens: &[usize], starts: &[usize], ctx: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let stride = 3 * h;
        let heads = self.heads;
        let out = SendPtr(ctx.as_mut_ptr());
        let out_len = ctx.len();
        let (rel, buckets) = (&self.relative_bias, self.relative_buckets);
        (0..lens.len() * heads).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, bias): &mut (Vec<f32>, Vec<f32>), task| {
                let (s, hd) = (task / heads, task % heads);
                let (len, start) = (lens[s], starts[s]);
                if scores.len() < kernels::attention_scratch(len, d) {
                    scores.resize(kernels::attention_scratch(len, d), 0.0);
                }
                // MPNet: the bias of key j for query i is bias[j + len-1 - i].
                bias.clear();
                if buckets > 0 {
                    let off = len as i64 - 1;
                    bias.extend((-off..=off).map(|r| rel[mpnet_bucket(r, buckets) * heads + hd]));
                }
                let base = start * stride + hd * d;
                // SAFETY: task (s, hd) writes only rows start..start+len,
                // columns hd*d..(hd+1)*d of ctx; tasks are disjoint, and the
                // slice below stays inside ctx.
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
                    bias,
                    kernels::Keys::All,
                );
            },
        );
    }
}

#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

fn par_add_layer_norm(x: &mut [f32], r: &[f32], g: &[f32], b: &[f32], eps: f32, h: usize) {
    let rows_per = 32;
    x.par_chunks_mut(h * rows_per)
        .zip(r.par_chunks(h * rows_per))
        .for_each(|(xc, rc)| kernels::add_layer_norm(xc, rc, g, b, eps));
}

/// Whether the fused encoder computes `arch`: every family the spec
/// accepts (the post-layer-norm encoders here, Qwen3 in `fused_qwen3.rs`,
/// ModernBERT in `modernbert.rs`).
/// A family added to the spec for the candle graph only returns false here,
/// so that the fused backend refuses it by name.
pub fn computes(arch: super::spec::Architecture) -> bool {
    use super::spec::Architecture as A;
    matches!(
        arch,
        A::Bert | A::XlmRoberta | A::MpNet | A::DistilBert | A::Qwen3 | A::ModernBert
    )
}

/// The fused encoder runs on the CPU only.
pub fn supports(device: &Device) -> bool {
    device.is_cpu()
}
