//! Encoders: the fused CPU encoder and the generic candle graph, both ending
//! in the same pooling code.
//!
//! The candle path pads each batch to its longest sequence (batches arrive
//! sorted by length, so little is padded), runs candle-transformers'
//! `BertModel` or `XLMRobertaModel` on the configured device and dtype
//! (f32, f16 or bf16 weights and activations), and pools only the real rows
//! of each sequence. On the CPU the pooling runs on the host; on a GPU it
//! runs on the device in f32 ([`pool_on_device`]), so only `batch ×
//! hidden` floats cross to the host instead of `batch × length × hidden`.
//!
//! Errors: a device allocation failure surfaces as
//! [`ModelError::OutOfMemory`] (see `From<candle_core::Error>`); the model
//! wraps this encoder in [`super::SplitOnOom`] so such a batch is retried in
//! halves.

use super::encoder_graph::EncoderGraph;
use super::fused::{FusedBert, FusedShape, Positions};
use super::fused_qwen3::FusedQwen3;
use super::layout::Layout;
use super::linear::Precision;
use super::modernbert::{FusedModernBert, ModernBertGraph};
use super::qwen3::Qwen3Graph;
use super::spec::{Architecture, ModelSpec};
use super::{Encoder, ModelError, PackedBatch, Pooling};
use candle_core::{DType as CDType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};
use shared::config::DType;

pub(super) fn var_builder(
    spec: &ModelSpec,
    dtype: CDType,
    device: &Device,
) -> Result<VarBuilder<'static>, ModelError> {
    let path = spec
        .files
        .file("model.safetensors")
        .ok_or_else(|| ModelError::Source("model.safetensors missing".into()))?;
    // SAFETY: the weights file is memory-mapped read-only; it must not be
    // modified while the service runs (model files are immutable snapshots).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device)? };
    Ok(vb)
}

/// Finds the prefix under which the encoder's tensors are stored.
pub(super) fn with_prefix(vb: VarBuilder<'static>) -> VarBuilder<'static> {
    for p in ["bert", "roberta", "mpnet", "distilbert", "model"] {
        if vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")) {
            return vb.pp(p);
        }
    }
    vb
}

fn pool_packed(pooling: Pooling, hidden: &[f32], h: usize, lens: &[usize]) -> Vec<f32> {
    let mut out = vec![0f32; lens.len() * h];
    let mut row = 0;
    for (i, &len) in lens.iter().enumerate() {
        pooling.pool(
            &hidden[row * h..(row + len) * h],
            h,
            &mut out[i * h..(i + 1) * h],
        );
        row += len;
    }
    out
}

/// The fused CPU model of a family.
enum FusedModel {
    /// The post-layer-norm encoders (BERT, XLM-RoBERTa, MPNet, DistilBERT).
    Encoder(FusedBert),
    /// The Qwen3 decoder.
    Qwen3(FusedQwen3),
    ModernBert(FusedModernBert),
}

impl FusedModel {
    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        match self {
            FusedModel::Encoder(m) => m.forward(batch),
            FusedModel::Qwen3(m) => m.forward(batch),
            FusedModel::ModernBert(m) => m.forward(batch),
        }
    }
}

pub struct FusedEncoder {
    model: FusedModel,
    pooling: Pooling,
    hidden: usize,
}

impl FusedEncoder {
    /// Loads the fused CPU model of `spec`'s family, its linear layers in
    /// `precision`.
    pub fn load(
        spec: &ModelSpec,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, ModelError> {
        let own = match spec.architecture {
            Architecture::Qwen3 => Some(FusedModel::Qwen3(FusedQwen3::load(spec, precision)?)),
            Architecture::ModernBert => Some(FusedModel::ModernBert(FusedModernBert::load(
                spec, precision,
            )?)),
            _ => None,
        };
        if let Some(model) = own {
            return Ok(Self {
                model,
                pooling: spec.pooling,
                hidden: spec.hidden_size,
            });
        }
        let s = spec.shape()?;
        let shape = FusedShape {
            hidden: s.hidden,
            heads: s.heads,
            inter: s.inter,
            layers: s.layers,
            eps: s.eps as f32,
            act: s.act,
            vocab: s.vocab,
            max_positions: s.max_positions,
            type_vocab: s.type_vocab,
            positions: Positions::of(spec),
            relative_buckets: s.relative_buckets,
            layout: Layout::of(spec.architecture),
            precision,
        };
        let vb = with_prefix(var_builder(spec, CDType::F32, device)?);
        Ok(Self {
            model: FusedModel::Encoder(FusedBert::load(vb, &shape)?),
            pooling: spec.pooling,
            hidden: spec.hidden_size,
        })
    }
}

impl Encoder for FusedEncoder {
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let hidden = self.model.forward(batch)?;
        Ok(pool_packed(self.pooling, &hidden, self.hidden, &batch.lens))
    }

    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        self.model.forward(batch)
    }
}

/// Pools a padded `[batch, len, hidden]` tensor on its own device, in f32,
/// into `[batch, hidden]`; sequence `i` has `lens[i]` real rows, the rest
/// is padding. Same results as [`Pooling::pool`] over the real rows.
pub fn pool_on_device(
    pooling: Pooling,
    hidden: &Tensor,
    lens: &[usize],
) -> candle_core::Result<Tensor> {
    let (b, l, h) = hidden.dims3()?;
    let device = hidden.device();
    let hidden = hidden.to_dtype(CDType::F32)?;
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::LastToken => {
            let rows: Vec<u32> = lens
                .iter()
                .enumerate()
                .map(|(i, &len)| (i * l + len - 1) as u32)
                .collect();
            let rows = Tensor::from_vec(rows, b, device)?;
            hidden.reshape((b * l, h))?.index_select(&rows, 0)
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mask: Vec<f32> = lens
                .iter()
                .flat_map(|&len| (0..l).map(move |t| if t < len { 1.0 } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (b, l, 1), device)?;
            let sums = hidden.broadcast_mul(&mask)?.sum(1)?;
            let div: Vec<f32> = lens
                .iter()
                .map(|&len| match pooling {
                    Pooling::Mean => len as f32,
                    _ => (len as f32).sqrt(),
                })
                .collect();
            sums.broadcast_div(&Tensor::from_vec(div, (b, 1), device)?)
        }
        Pooling::Max => {
            // Padding rows get -inf added, so they never win the max.
            let bias: Vec<f32> = lens
                .iter()
                .flat_map(|&len| (0..l).map(move |t| if t < len { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            let bias = Tensor::from_vec(bias, (b, l, 1), device)?;
            hidden.broadcast_add(&bias)?.max(1)
        }
    }
}

enum Graph {
    Bert(bert::BertModel),
    XlmRoberta(xlm_roberta::XLMRobertaModel),
    /// MPNet and DistilBERT, which candle-transformers lacks (MPNet) or
    /// computes with tanh-GELU where transformers uses erf (DistilBERT).
    Encoder(EncoderGraph),
    Qwen3(Qwen3Graph),
    ModernBert(ModernBertGraph),
}

pub struct CandleEncoder {
    graph: Graph,
    device: Device,
    pooling: Pooling,
    hidden: usize,
    pad_id: u32,
}

impl CandleEncoder {
    pub fn load(spec: &ModelSpec, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let cdt = match dtype {
            DType::F32 => CDType::F32,
            DType::F16 => CDType::F16,
            DType::Bf16 => CDType::BF16,
            DType::Int8 => {
                return Err(ModelError::Device(
                    "dtype int8 runs on the fused CPU encoder, not the candle graph".into(),
                ))
            }
        };
        let vb = var_builder(spec, cdt, device)?;
        let pad_id = spec.pad_token_id();
        let graph = match spec.architecture {
            Architecture::Bert => {
                let cfg: bert::Config = serde_json::from_value(spec.config.clone())
                    .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
                Graph::Bert(bert::BertModel::load(vb, &cfg)?)
            }
            Architecture::XlmRoberta => {
                let cfg: xlm_roberta::Config = serde_json::from_value(spec.config.clone())
                    .map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
                let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
                    vb.pp("roberta")
                } else {
                    vb
                };
                Graph::XlmRoberta(xlm_roberta::XLMRobertaModel::new(&cfg, vb)?)
            }
            Architecture::MpNet | Architecture::DistilBert => {
                Graph::Encoder(EncoderGraph::load(with_prefix(vb), spec)?)
            }
            Architecture::Qwen3 => Graph::Qwen3(Qwen3Graph::load(vb, spec)?),
            Architecture::ModernBert => Graph::ModernBert(ModernBertGraph::load(vb, spec)?),
        };
        Ok(Self {
            graph,
            device: device.clone(),
            pooling: spec.pooling,
            hidden: spec.hidden_size,
            pad_id,
        })
    }
}

impl CandleEncoder {
    /// The graph over the batch padded to its longest sequence (pad id,
    /// type 0, mask 0 past each sequence's end): the last hidden state,
    /// `[sequences × longest × hidden]`, in the model's dtype, on the device.
    fn forward_padded(&self, batch: &PackedBatch) -> Result<Tensor, ModelError> {
        let (b, l) = (batch.lens.len(), batch.max_len());
        let mut ids = vec![self.pad_id; b * l];
        let mut types = vec![0u32; b * l];
        let mut mask = vec![0u32; b * l];
        let mut row = 0;
        for (i, &len) in batch.lens.iter().enumerate() {
            ids[i * l..i * l + len].copy_from_slice(&batch.ids[row..row + len]);
            types[i * l..i * l + len].copy_from_slice(&batch.type_ids[row..row + len]);
            mask[i * l..i * l + len].fill(1);
            row += len;
        }
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let types = Tensor::from_vec(types, (b, l), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let hidden = match &self.graph {
            Graph::Bert(m) => m.forward(&ids, &types, Some(&mask))?,
            Graph::XlmRoberta(m) => m.forward(&ids, &mask, &types, None, None, None)?,
            Graph::Encoder(m) => m.forward(&ids, &batch.lens)?,
            Graph::Qwen3(m) => m.forward(&ids)?,
            Graph::ModernBert(m) => m.forward(&ids, &mask)?,
        };
        Ok(hidden)
    }
}

impl Encoder for CandleEncoder {
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let (b, l) = (batch.lens.len(), batch.max_len());
        let hidden = self.forward_padded(batch)?;
        let h = self.hidden;
        if !self.device.is_cpu() {
            let pooled = pool_on_device(self.pooling, &hidden, &batch.lens)?;
            return Ok(pooled.flatten_all()?.to_vec1()?);
        }
        let hidden: Vec<f32> = hidden.to_dtype(CDType::F32)?.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; b * h];
        for (i, &len) in batch.lens.iter().enumerate() {
            let rows = &hidden[i * l * h..(i * l + len) * h];
            self.pooling.pool(rows, h, &mut out[i * h..(i + 1) * h]);
        }
        Ok(out)
    }

    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let l = batch.max_len();
        let hidden = self.forward_padded(batch)?;
        let hidden: Vec<f32> = hidden.to_dtype(CDType::F32)?.flatten_all()?.to_vec1()?;
        // Only the real rows of each sequence, packed back to back.
        let h = self.hidden;
        let mut out = Vec::with_capacity(batch.ids.len() * h);
        for (i, &len) in batch.lens.iter().enumerate() {
            out.extend_from_slice(&hidden[i * l * h..(i * l + len) * h]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device pooling (run here on the CPU device) equals host pooling over
    /// the real rows, for every mode, with padding of varied length.
    #[test]
    fn device_pooling_matches_host_pooling() {
        let (l, h) = (5usize, 3usize);
        let lens = [1usize, 3, 5, 2];
        let b = lens.len();
        let data: Vec<f32> = (0..b * l * h)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let hidden = Tensor::from_vec(data.clone(), (b, l, h), &Device::Cpu).unwrap();
        for pooling in [
            Pooling::Cls,
            Pooling::Mean,
            Pooling::Max,
            Pooling::MeanSqrtLen,
            Pooling::LastToken,
        ] {
            let got: Vec<f32> = pool_on_device(pooling, &hidden, &lens)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut want = vec![0f32; b * h];
            for (i, &len) in lens.iter().enumerate() {
                pooling.pool(
                    &data[i * l * h..(i * l + len) * h],
                    h,
                    &mut want[i * h..(i + 1) * h],
                );
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{pooling:?}: {got:?} vs {want:?}");
            }
        }
    }

    /// Half-precision activations are pooled in f32.
    #[test]
    fn device_pooling_reads_half_precision() {
        let hidden = Tensor::from_vec(vec![1f32, 2., 3., 4.], (1, 2, 2), &Device::Cpu)
            .unwrap()
            .to_dtype(CDType::F16)
            .unwrap();
        let got = pool_on_device(Pooling::Mean, &hidden, &[2]).unwrap();
        assert_eq!(got.dtype(), CDType::F32);
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![2.0, 3.0]
        );
    }
}
