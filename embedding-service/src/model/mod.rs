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
pub mod dense;
pub mod encoder_graph;
pub mod fused;
pub mod fused_qwen3;
pub mod int8;
pub mod kernels;
pub mod layout;
pub mod linear;
pub mod modernbert;
pub mod pooling;
pub mod qwen3;
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
    #[error("unsupported model family: {0} (supported: BertModel and its family — MiniLM, BGE, E5, GTE —, XLMRobertaModel / RobertaModel with absolute positions, MPNetModel, DistilBertModel, ModernBertModel, Qwen3Model)")]
    UnsupportedArchitecture(String),
    #[error("device: {0}")]
    Device(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid model input: {0}")]
    Input(String),
    /// The accelerator could not allocate memory for this batch (a CUDA
    /// `CUDA_ERROR_OUT_OF_MEMORY` or cuBLAS `CUBLAS_STATUS_ALLOC_FAILED`).
    /// Nothing is left allocated or poisoned: a smaller batch may succeed.
    #[error("the accelerator is out of memory: {0}")]
    OutOfMemory(String),
    #[error("candle: {0}")]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for ModelError {
    /// Sorts device out-of-memory errors into [`ModelError::OutOfMemory`];
    /// everything else stays a candle error.
    fn from(e: candle_core::Error) -> Self {
        if is_out_of_memory(&e) {
            let msg = e.to_string();
            ModelError::OutOfMemory(msg.lines().next().unwrap_or_default().to_string())
        } else {
            ModelError::Candle(e)
        }
    }
}

/// Whether a candle error is the device running out of memory. With the
/// `cuda` feature the typed cudarc errors are matched (driver
/// `CUDA_ERROR_OUT_OF_MEMORY`, cuBLAS `CUBLAS_STATUS_ALLOC_FAILED`) through
/// candle's wrappers (backtrace, context, path); any build also recognises
/// their names in the message, for errors that reach us as text.
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } | E::Context { inner, .. } | E::WithPath { inner, .. } => {
            return is_out_of_memory(inner)
        }
        #[cfg(feature = "cuda")]
        E::Cuda(inner) => {
            use candle_core::cuda_backend::cudarc::{cublas, driver};
            use candle_core::cuda_backend::CudaError;
            use driver::result::DriverError;
            match inner.downcast_ref::<CudaError>() {
                Some(CudaError::Cuda(DriverError(code)))
                    if *code == driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY =>
                {
                    return true
                }
                Some(CudaError::Cublas(cublas::result::CublasError(status)))
                    if *status == cublas::sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED =>
                {
                    return true
                }
                _ => {}
            }
        }
        _ => {}
    }
    let msg = e.to_string();
    msg.contains("CUDA_ERROR_OUT_OF_MEMORY") || msg.contains("CUBLAS_STATUS_ALLOC_FAILED")
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

    /// Sequences `range` of this batch as a batch of their own (same order).
    /// Panics when `range` is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> PackedBatch {
        let start: usize = self.lens[..range.start].iter().sum();
        let lens = self.lens[range].to_vec();
        let end = start + lens.iter().sum::<usize>();
        PackedBatch {
            ids: self.ids[start..end].to_vec(),
            type_ids: self.type_ids[start..end].to_vec(),
            lens,
        }
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

/// Wraps an encoder so that a device out-of-memory error costs a slower
/// batch, not the batch's requests: the batch is encoded again in two halves,
/// each half split again on the same error, down to single sequences. Only a
/// single sequence that still does not fit returns
/// [`ModelError::OutOfMemory`]. Any other error, and success, pass through
/// unchanged; the output is the same `[lens.len() × dimension]` rows, in the
/// batch's order, whatever splits happened.
///
/// Batches arrive sorted by length, so the first half holds the shorter
/// sequences and pads less. What was allocated for a failed attempt is freed
/// when its tensors drop, before the halves run.
pub struct SplitOnOom {
    inner: Box<dyn Encoder>,
    /// Forward passes that failed for memory and were split (for the log).
    pub splits: u64,
}

impl SplitOnOom {
    pub fn new(inner: Box<dyn Encoder>) -> Self {
        Self { inner, splits: 0 }
    }

    /// `tokens`: per-token states (`encode_tokens`) instead of pooled
    /// vectors; both lay their rows out in packed order, so the halves'
    /// outputs concatenate to the whole batch's.
    fn encode_split(&mut self, batch: &PackedBatch, tokens: bool) -> Result<Vec<f32>, ModelError> {
        let result = if tokens {
            self.inner.encode_tokens(batch)
        } else {
            self.inner.encode(batch)
        };
        match result {
            Err(ModelError::OutOfMemory(msg)) if batch.lens.len() > 1 => {
                self.splits += 1;
                let n = batch.lens.len();
                tracing::warn!(
                    sequences = n,
                    padded_tokens = batch.padded_tokens(),
                    "device out of memory ({msg}); retrying the batch in two halves \
                     (lower embedding.max_batch_tokens if this repeats)"
                );
                let mut out = self.encode_split(&batch.slice(0..n / 2), tokens)?;
                out.extend(self.encode_split(&batch.slice(n / 2..n), tokens)?);
                Ok(out)
            }
            Err(ModelError::OutOfMemory(msg)) => Err(ModelError::OutOfMemory(format!(
                "a single sequence of {} tokens does not fit: {msg}",
                batch.max_len()
            ))),
            other => other,
        }
    }
}

impl Encoder for SplitOnOom {
    fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        self.encode_split(batch, false)
    }

    fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
        self.encode_split(batch, true)
    }
}

pub struct Model {
    pub spec: ModelSpec,
    pub tokenizer: tokenizers::Tokenizer,
    pub encoder: Box<dyn Encoder>,
    pub device: String,
    pub dtype: DType,
    pub backend: Backend,
}

/// Picks the device the config asks for; `auto` tries CUDA, Metal, then
/// CPU (a device that is not built in or not usable is skipped). An explicit
/// `cuda`/`metal` that cannot be had is a [`ModelError::Device`] naming why:
/// not built in, or no usable driver/device (with the driver's error).
pub fn select_device(spec: DeviceSpec) -> Result<Device, ModelError> {
    let dev = |r: candle_core::Result<Device>, what: &str| {
        r.map_err(|e| ModelError::Device(format!("{what}: {e}")))
    };
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) if !cfg!(feature = "cuda") => Err(ModelError::Device(format!(
            "cuda:{n}: this build has no CUDA support (build with `--features cuda`)"
        ))),
        DeviceSpec::Cuda(n) => dev(
            Device::new_cuda(n),
            &format!("cuda:{n}: no usable NVIDIA driver or GPU"),
        ),
        DeviceSpec::Metal if !cfg!(feature = "metal") => Err(ModelError::Device(
            "metal: this build has no Metal support (build with `--features metal`)".into(),
        )),
        DeviceSpec::Metal => dev(Device::new_metal(0), "metal: no usable Metal device"),
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
    // int8 runs on the fused CPU encoder only: `auto` means the CPU for it,
    // even where a GPU is present.
    let device = match (cfg.dtype, cfg.device) {
        (DType::Int8, DeviceSpec::Auto) => Device::Cpu,
        _ => select_device(cfg.device)?,
    };
    let backend = match cfg.backend {
        Backend::Auto
            if fused::supports(&device)
                && fused::computes(spec.architecture)
                && matches!(cfg.dtype, DType::F32 | DType::Int8) =>
        {
            Backend::Fused
        }
        Backend::Auto => Backend::Candle,
        Backend::Fused if !fused::supports(&device) => {
            return Err(ModelError::Device(format!(
                "backend `fused` runs on the CPU only, the device is {}",
                device_name(&device)
            )))
        }
        Backend::Fused if !fused::computes(spec.architecture) => {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{} ({}) on the fused CPU encoder; use backend `candle` (or `auto`), \
                 which computes it",
                spec.architecture_name,
                spec.architecture.family_name()
            )))
        }
        Backend::Fused if matches!(cfg.dtype, DType::F16 | DType::Bf16) => {
            return Err(ModelError::Device(
                "backend `fused` computes in f32 or int8; half precision (f16/bf16) \
                 is for the candle graph on a GPU"
                    .into(),
            ))
        }
        b => b,
    };
    if cfg.dtype == DType::Int8 && backend != Backend::Fused {
        return Err(ModelError::Device(format!(
            "dtype int8 runs on the fused CPU encoder (device cpu, backend `fused` or \
             `auto`); here the device is {} with backend `candle`",
            device_name(&device)
        )));
    }
    if device.is_cpu() && matches!(cfg.dtype, DType::F16 | DType::Bf16) {
        return Err(ModelError::Device(
            "half precision (f16/bf16) is for GPUs; use dtype f32 (or int8) on the CPU".into(),
        ));
    }
    if cfg.dtype == DType::Int8 && !int8::has_vnni() {
        tracing::warn!(
            "dtype int8: this CPU has no AVX-512 VNNI, so int8 runs a portable kernel \
             that is slower than f32 here; use dtype f32 on this machine"
        );
    }
    let encoder: Box<dyn Encoder> = match backend {
        Backend::Fused => {
            let precision = match cfg.dtype {
                DType::Int8 => linear::Precision::Int8,
                _ => linear::Precision::F32,
            };
            Box::new(candle_backend::FusedEncoder::load(
                &spec, &device, precision,
            )?)
        }
        _ => Box::new(SplitOnOom::new(Box::new(
            candle_backend::CandleEncoder::load(&spec, &device, cfg.dtype)?,
        ))),
    };
    let encoder = dense::DenseHead::wrap(encoder, &spec)?;
    Ok(Model {
        spec,
        tokenizer,
        encoder,
        device: device_name(&device),
        dtype: cfg.dtype,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails like a GPU with room for `budget` padded tokens; otherwise
    /// returns `[len, first id]` per sequence, so order can be checked.
    struct BudgetEncoder {
        budget: usize,
    }

    impl Encoder for BudgetEncoder {
        fn encode(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
            if batch.padded_tokens() > self.budget {
                return Err(ModelError::from(
                    candle_core::Error::Msg(
                        "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
                    )
                    .bt(),
                ));
            }
            let mut out = Vec::new();
            let mut row = 0;
            for &len in &batch.lens {
                out.extend([len as f32, batch.ids[row] as f32]);
                row += len;
            }
            Ok(out)
        }

        /// Per token: `[len of its sequence, its id]`, under the same budget.
        fn encode_tokens(&mut self, batch: &PackedBatch) -> Result<Vec<f32>, ModelError> {
            if batch.padded_tokens() > self.budget {
                return Err(ModelError::OutOfMemory("out of memory".into()));
            }
            let mut out = Vec::new();
            let mut row = 0;
            for &len in &batch.lens {
                for id in &batch.ids[row..row + len] {
                    out.extend([len as f32, *id as f32]);
                }
                row += len;
            }
            Ok(out)
        }
    }

    fn batch(lens: &[usize]) -> PackedBatch {
        let mut b = PackedBatch::default();
        for (i, &len) in lens.iter().enumerate() {
            let ids: Vec<u32> = (0..len as u32).map(|t| 1000 * i as u32 + t).collect();
            b.push(&ids, &vec![0; len]);
        }
        b
    }

    fn expected(lens: &[usize]) -> Vec<f32> {
        lens.iter()
            .enumerate()
            .flat_map(|(i, &len)| [len as f32, 1000.0 * i as f32])
            .collect()
    }

    #[test]
    fn slice_keeps_sequences_whole() {
        let b = batch(&[2, 3, 4]);
        let s = b.slice(1..3);
        assert_eq!(s.lens, vec![3, 4]);
        assert_eq!(s.ids, vec![1000, 1001, 1002, 2000, 2001, 2002, 2003]);
        assert_eq!(s.type_ids.len(), 7);
        assert_eq!(b.slice(0..0).lens, Vec::<usize>::new());
    }

    #[test]
    fn out_of_memory_is_typed_through_candle_wrappers() {
        let oom = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        assert!(is_out_of_memory(&oom));
        let wrapped = oom.bt().context("forward pass");
        assert!(is_out_of_memory(&wrapped));
        assert!(matches!(
            ModelError::from(wrapped),
            ModelError::OutOfMemory(_)
        ));
        let cublas = candle_core::Error::Msg("CublasError(CUBLAS_STATUS_ALLOC_FAILED)".into());
        assert!(matches!(
            ModelError::from(cublas),
            ModelError::OutOfMemory(_)
        ));
        let other = candle_core::Error::Msg("shape mismatch in matmul".into());
        assert!(!is_out_of_memory(&other));
        assert!(matches!(ModelError::from(other), ModelError::Candle(_)));
    }

    #[test]
    fn a_batch_over_the_memory_is_split_until_it_fits() {
        // Sorted by length like the batcher's batches; room for 20 padded
        // tokens. 8 × 16 = 128 fails; halves 4 × 6 = 24 and 4 × 16 = 64
        // fail; quarters [3, 4], [5, 6], [8, 10] fit and [12, 16] = 32 is
        // split once more into single sequences.
        let lens = [3, 4, 5, 6, 8, 10, 12, 16];
        let mut enc = SplitOnOom::new(Box::new(BudgetEncoder { budget: 20 }));
        let out = enc.encode(&batch(&lens)).unwrap();
        assert_eq!(out, expected(&lens), "every row, in the batch's order");
        assert_eq!(enc.splits, 4);
    }

    #[test]
    fn a_batch_that_fits_runs_once() {
        let lens = [3, 4, 5];
        let mut enc = SplitOnOom::new(Box::new(BudgetEncoder { budget: 1000 }));
        assert_eq!(enc.encode(&batch(&lens)).unwrap(), expected(&lens));
        assert_eq!(enc.splits, 0);
    }

    #[test]
    fn a_single_sequence_that_does_not_fit_is_out_of_memory_and_the_encoder_stays_usable() {
        let mut enc = SplitOnOom::new(Box::new(BudgetEncoder { budget: 10 }));
        // Four sequences; the longest (20 tokens) cannot fit even alone.
        match enc.encode(&batch(&[2, 3, 4, 20])) {
            Err(ModelError::OutOfMemory(m)) => {
                assert!(m.contains("single sequence of 20 tokens"), "{m}")
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
        // The next batch is served as usual.
        assert_eq!(enc.encode(&batch(&[2, 3])).unwrap(), expected(&[2, 3]));
    }

    /// Per-token outputs split the same way and keep the packed row order.
    #[test]
    fn token_states_split_and_keep_order() {
        let mut whole = BudgetEncoder { budget: usize::MAX };
        let want = whole.encode_tokens(&batch(&[1, 2, 3, 4])).unwrap();
        let mut enc = SplitOnOom::new(Box::new(BudgetEncoder { budget: 4 }));
        assert_eq!(enc.encode_tokens(&batch(&[1, 2, 3, 4])).unwrap(), want);
        assert!(enc.splits >= 2);
    }

    /// Other errors are not retried.
    struct Broken(usize);
    impl Encoder for Broken {
        fn encode(&mut self, _: &PackedBatch) -> Result<Vec<f32>, ModelError> {
            self.0 += 1;
            Err(ModelError::Input(format!("call {}", self.0)))
        }
        fn encode_tokens(&mut self, b: &PackedBatch) -> Result<Vec<f32>, ModelError> {
            self.encode(b)
        }
    }

    #[test]
    fn other_errors_pass_through_unsplit() {
        let mut enc = SplitOnOom::new(Box::new(Broken(0)));
        match enc.encode(&batch(&[2, 3, 4, 5])) {
            Err(ModelError::Input(m)) => assert_eq!(m, "call 1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(enc.splits, 0);
    }
}
