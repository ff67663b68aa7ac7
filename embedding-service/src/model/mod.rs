//! The model: where its files come from, what sentence-transformers pipeline
//! they describe, and the encoders that run it.
//!
//! `load` turns an `EmbeddingConfig` into a [`Model`]: a tokenizer set up
//! the way sentence-transformers uses it (truncation at `max_seq_length`, no
//! fixed padding), a pooling mode, whether the pipeline normalises, and an
//! [`Encoder`] (the fused CPU encoder or the candle graph on any device).
//! Encoders take a [`PackedBatch`] and return one pooled vector per sequence;
//! request-level options (normalise, dimensions) are applied by the caller.

pub mod candle_backend;
pub mod fused;
pub mod kernels;
pub mod pooling;
pub mod source;
pub mod spec;

use candle_core::Device;
pub use pooling::Pooling;
use shared::config::{Backend, DType, DeviceSpec, EmbeddingConfig};
pub use spec::{Architecture, ModelSpec};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model files: {0}")]
    Source(String),
    #[error("model config: {0}")]
    Config(String),
    #[error("unsupported model family: {0} (supported: BertModel and its family — MiniLM, BGE, E5, GTE — and XLMRobertaModel / RobertaModel, with absolute positions)")]
    UnsupportedArchitecture(String),
    #[error("device: {0}")]
    Device(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid model input: {0}")]
    Input(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

/// Sequences laid back to back: sequence `i` is `lens[i]` tokens starting
/// after the sum of the previous lengths.
#[derive(Debug, Clone, Default)]
pub struct PackedBatch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub lens: Vec<usize>,
}

impl PackedBatch {
    pub fn push(&mut self, ids: &[u32], type_ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.type_ids.extend_from_slice(type_ids);
        self.lens.push(ids.len());
    }
    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }
    /// The token budget this batch uses: padded length × count.
    pub fn padded_tokens(&self) -> usize {
        self.max_len() * self.lens.len()
    }
}

/// Runs the transformer and pooling. Called only from the model thread.
pub trait Encoder: Send {
    /// One pooled (not normalised) vector per sequence, row-major
    /// `[lens.len() × dimension]`.
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError>;

    /// The last hidden state of every token, not pooled: row-major
    /// `[batch.ids.len() × dimension]`, rows in the batch's packed order
    /// (sequence `i`'s `lens[i]` rows follow those of the sequences before
    /// it; no padding rows).
    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError>;
}

pub struct Model {
    pub spec: ModelSpec,
    pub tokenizer: tokenizers::Tokenizer,
    pub encoder: Box<dyn Encoder>,
    pub device: String,
    pub dtype: DType,
    pub backend: Backend,
}

/// Picks the device the config asks for; `auto` tries CUDA, Metal, then CPU.
pub fn select_device(spec: DeviceSpec) -> Result<Device, ModelError> {
    let dev = |r: candle_core::Result<Device>, what: &str| {
        r.map_err(|e| ModelError::Device(format!("{what}: {e}")))
    };
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => dev(
            Device::new_cuda(n),
            &format!("cuda:{n} (built with the `cuda` feature?)"),
        ),
        DeviceSpec::Metal => dev(
            Device::new_metal(0),
            "metal (built with the `metal` feature?)",
        ),
        DeviceSpec::Auto => {
            if let Ok(d) = Device::new_cuda(0) {
                return Ok(d);
            }
            if let Ok(d) = Device::new_metal(0) {
                return Ok(d);
            }
            Ok(Device::Cpu)
        }
    }
}

pub fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Loads everything the config names. Blocking: call off the async runtime.
pub fn load(cfg: &EmbeddingConfig) -> Result<Model, ModelError> {
    let files = source::resolve(&cfg.model)?;
    let spec = spec::ModelSpec::read(&files)?;
    let tokenizer = spec.tokenizer()?;
    let device = select_device(cfg.device)?;
    let backend = match cfg.backend {
        Backend::Auto if fused::supports(&device) && cfg.dtype == DType::F32 => Backend::Fused,
        Backend::Auto => Backend::Candle,
        Backend::Fused if !fused::supports(&device) => {
            return Err(ModelError::Device(format!(
                "backend `fused` runs on the CPU only, the device is {}",
                device_name(&device)
            )))
        }
        Backend::Fused if cfg.dtype != DType::F32 => {
            return Err(ModelError::Device(
                "backend `fused` computes in f32 only".into(),
            ))
        }
        b => b,
    };
    if device.is_cpu() && cfg.dtype != DType::F32 {
        return Err(ModelError::Device(
            "half precision (f16/bf16) is for GPUs; use dtype f32 on the CPU".into(),
        ));
    }
    let encoder: Box<dyn Encoder> = match backend {
        Backend::Fused => Box::new(candle_backend::FusedEncoder::load(&spec, &device)?),
        _ => Box::new(candle_backend::CandleEncoder::load(
            &spec, &device, cfg.dtype,
        )?),
    };
    Ok(Model {
        spec,
        tokenizer,
        encoder,
        device: device_name(&device),
        dtype: cfg.dtype,
        backend,
    })
}
