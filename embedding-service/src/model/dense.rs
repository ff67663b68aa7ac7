//! sentence-transformers `Dense` modules (projection heads) after pooling.
//!
//! [`DenseHead`] wraps either encoder: it pools as the inner encoder does,
//! then applies each Dense module in order, `y = act(W·x + b)`, on the host
//! in f32 (a `[batch × in] · [in × out]` product per module, small beside
//! the transformer). Normalisation, when the pipeline lists it, is applied
//! after it by the caller, as sentence-transformers orders its modules.

use super::spec::{DenseActivation, DenseSpec, ModelSpec};
use super::{kernels, Encoder, ModelError, PackedBatch};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

/// One loaded Dense module: `weight` row-major `[out × in]`.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    in_features: usize,
    out_features: usize,
    activation: DenseActivation,
}

impl Dense {
    /// Reads `{path}/model.safetensors` (`linear.weight`, `linear.bias`).
    fn load(spec: &ModelSpec, d: &DenseSpec) -> Result<Self, ModelError> {
        let file = spec
            .files
            .file(&format!("{}/model.safetensors", d.path))
            .ok_or_else(|| {
                ModelError::Source(format!(
                    "Dense module {}/ has no model.safetensors (only safetensors weights are read)",
                    d.path
                ))
            })?;
        // SAFETY: read-only mapping of an immutable model file, copied out below.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu)? };
        let weight = vb
            .get((d.out_features, d.in_features), "linear.weight")?
            .flatten_all()?
            .to_vec1()?;
        let bias = if d.bias {
            vb.get(d.out_features, "linear.bias")?.to_vec1()?
        } else {
            vec![0.0; d.out_features]
        };
        Ok(Self {
            weight,
            bias,
            in_features: d.in_features,
            out_features: d.out_features,
            activation: d.activation,
        })
    }

    /// `rows` vectors of `in_features` → `rows` vectors of `out_features`.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() / self.in_features * self.out_features);
        for row in x.chunks_exact(self.in_features) {
            for (w, b) in self.weight.chunks_exact(self.in_features).zip(&self.bias) {
                out.push(kernels::dot(row, w) + b);
            }
        }
        match self.activation {
            DenseActivation::Identity => {}
            DenseActivation::Tanh => out.iter_mut().for_each(|v| *v = v.tanh()),
            DenseActivation::Relu => kernels::relu(&mut out),
            DenseActivation::Gelu => kernels::gelu_erf(&mut out),
            DenseActivation::Sigmoid => out.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
        out
    }
}

/// An encoder followed by the pipeline's Dense modules.
pub struct DenseHead {
    inner: Box<dyn Encoder>,
    modules: Vec<Dense>,
}

impl DenseHead {
    /// Wraps `inner` with `spec.dense` (returns `inner` itself when the
    /// pipeline has no Dense module). Errors: missing or misshapen weights.
    pub fn wrap(inner: Box<dyn Encoder>, spec: &ModelSpec) -> Result<Box<dyn Encoder>, ModelError> {
        if spec.dense.is_empty() {
            return Ok(inner);
        }
        let modules = spec
            .dense
            .iter()
            .map(|d| Dense::load(spec, d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(Self { inner, modules }))
    }
}

impl Encoder for DenseHead {
    /// Pooled vectors through every Dense module: `[lens.len() × dimension]`.
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        let mut x = self.inner.encode(batch)?;
        for m in &self.modules {
            x = m.apply(&x);
        }
        Ok(x)
    }

    /// Token states come from the transformer, before pooling and the Dense
    /// modules (sentence-transformers' `token_embeddings`), so their width is
    /// the hidden size, not the pipeline's dimension: refused here.
    fn encode_tokens(&mut self, _batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        Err(ModelError::Input(
            "token embeddings are not served for a model with a Dense head \
             (their width differs from the sentence vectors')"
                .into(),
        ))
    }
}
