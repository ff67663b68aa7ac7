//! Encoders: the fused CPU encoder and the generic candle graph, both ending
//! in the same pooling code.
//!
//! The candle path pads each batch to its longest sequence (batches arrive
//! sorted by length, so little is padded), runs candle-transformers'
//! `BertModel` or `XLMRobertaModel` on the configured device and dtype, and
//! pools only the real rows of each sequence on the host.

use super::fused::{FusedBert, FusedShape, Positions};
use super::spec::{usize_field, Architecture, ModelSpec};
use super::{Encoder, ModelError, PackedBatch, Pooling};
use candle_core::{DType as CDType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};
use shared::config::DType;

fn var_builder(
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
fn with_prefix(vb: VarBuilder<'static>) -> VarBuilder<'static> {
    for p in ["bert", "roberta", "model"] {
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

pub struct FusedEncoder {
    model: FusedBert,
    pooling: Pooling,
    hidden: usize,
}

impl FusedEncoder {
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        let c = &spec.config;
        let shape = FusedShape {
            hidden: spec.hidden_size,
            heads: usize_field(c, "num_attention_heads")?,
            inter: usize_field(c, "intermediate_size")?,
            layers: usize_field(c, "num_hidden_layers")?,
            eps: c
                .get("layer_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-12) as f32,
            act: spec.activation()?,
            vocab: usize_field(c, "vocab_size")?,
            max_positions: usize_field(c, "max_position_embeddings")?,
            type_vocab: usize_field(c, "type_vocab_size").unwrap_or(2),
            positions: match spec.architecture {
                Architecture::Bert => Positions::Absolute,
                Architecture::XlmRoberta => Positions::Roberta {
                    pad: spec.pad_token_id(),
                },
            },
        };
        let vb = with_prefix(var_builder(spec, CDType::F32, device)?);
        Ok(Self {
            model: FusedBert::load(vb, &shape)?,
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

enum Graph {
    Bert(bert::BertModel),
    XlmRoberta(xlm_roberta::XLMRobertaModel),
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

impl Encoder for CandleEncoder {
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
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
        };
        let hidden: Vec<f32> = hidden.to_dtype(CDType::F32)?.flatten_all()?.to_vec1()?;
        let h = self.hidden;
        let mut out = vec![0f32; b * h];
        for (i, &len) in batch.lens.iter().enumerate() {
            let rows = &hidden[i * l * h..(i * l + len) * h];
            self.pooling.pool(rows, h, &mut out[i * h..(i + 1) * h]);
        }
        Ok(out)
    }

    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
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
        };
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
