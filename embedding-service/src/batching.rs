//! The inference runtime: tokenizer pool → queue → batcher → model thread,
//! in the shape of text-embeddings-inference's loop.
//!
//! ```text
//! handler ─▶ tokenizer pool (N threads) ─▶ queue ─▶ batcher thread ─▶ model thread
//!    ▲                                                 (sort by length,     (forward pass,
//!    └──────────────── oneshot per request ◀────────── token budget)         pooling)
//! ```
//!
//! Invariants:
//! - No tokenization or forward pass runs on a tokio worker.
//! - A batch never exceeds `max_batch_tokens` (padded length × count) unless
//!   a single text alone does, which `max_seq_length` bounds.
//! - At most `max_concurrent_requests` requests are admitted; the rest get
//!   `Overloaded` at once. Queued memory is therefore bounded by that ×
//!   the largest per-request input cap (`max_client_batch_size`, or the
//!   caller's `max_inputs`: 2048 on `/v1/embeddings`) × `max_seq_length`
//!   tokens.
//! - The batcher prepares one batch while the model runs the previous one
//!   (a rendezvous channel: the next batch is handed over when the model is
//!   free, and formed from everything queued at that moment).
//! - Texts of a request whose client has gone (its future was dropped) are
//!   dropped before the forward pass.
//! - Results return in input order whatever the batching did.
//! - A batch may hold texts of requests that want pooled vectors and of
//!   requests that want every token's state (`/embed_all`); the model
//!   thread runs each kind as its own forward pass.
//! - Inputs are texts (the model's prompt prepended, then tokenised with
//!   truncation at `max_seq_length` from the requested end), token ids of
//!   the model's vocabulary (checked against it, cut the same way), or
//!   OpenAI token ids (`cl100k_base`), decoded to text first.
//! - One `Runtime` per served model: its own tokenizer pool, queue,
//!   batcher, model thread, admission bound (`max_concurrent_requests`)
//!   and token budget (`max_batch_tokens`). Runtimes share nothing but
//!   the rayon pool the forward passes run in ([`inference_pool`]), so
//!   two models' passes never use more threads than one's would.

use crate::metrics::ModelMetrics;
use crate::model::{Model, ModelError, ModelSpec, PackedBatch};
use parking_lot::{Condvar, Mutex, RwLock};
use shared::config::EmbeddingConfig;
use shared::wire::embedding::{Token, TruncationDirection};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Errors of the inference runtime, before they become HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("inputs must not be empty")]
    EmptyInput,
    /// More inputs than the route takes (`limit` names the bound).
    #[error("{got} inputs exceed {limit} = {max}")]
    TooManyInputs {
        got: usize,
        max: usize,
        limit: &'static str,
    },
    #[error("input {index} is longer than the model's max_seq_length of {max} tokens and truncate is false")]
    InputTooLong { index: usize, max: usize },
    #[error("dimensions must be between 1 and {max}, got {got}")]
    InvalidDimensions { got: usize, max: usize },
    #[error("too many requests in flight (max_concurrent_requests = {0}); retry later")]
    Overloaded(usize),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("forward pass failed: {0}")]
    Model(String),
    /// A request the model cannot take as it is: an unknown `prompt_name`,
    /// token ids outside the vocabulary, an empty list of token ids.
    #[error("{0}")]
    InvalidInput(String),
    #[error("the GPU has no memory free for this request's texts, even one at a time; retry later or send shorter texts")]
    OutOfMemory,
}

/// What a caller asks of one embedding request.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// L2-normalise; `None`: what the model's pipeline does.
    pub normalize: Option<bool>,
    /// Cut inputs longer than `max_seq_length` (else `InputTooLong`).
    pub truncate: bool,
    /// Which end is cut.
    pub truncation: TruncationDirection,
    /// A key of the model's prompts; `None`: its default prompt, if any.
    pub prompt_name: Option<String>,
    /// Keep the first N components (1..=dimension).
    pub dimensions: Option<usize>,
    /// Most inputs of this request; `None`: `max_client_batch_size`.
    pub max_inputs: Option<usize>,
}

impl Default for EmbedOptions {
    /// The sentence-transformers defaults: truncate at the right, the
    /// model's normalisation and default prompt, all dimensions.
    fn default() -> Self {
        Self {
            normalize: None,
            truncate: true,
            truncation: TruncationDirection::Right,
            prompt_name: None,
            dimensions: None,
            max_inputs: None,
        }
    }
}

/// One input of an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInput {
    /// A text: the prompt is prepended, then it is tokenised.
    Text(String),
    /// Token ids of the model's vocabulary, used as given (no special
    /// tokens added), cut at `max_seq_length` like a text.
    Ids(Vec<u32>),
    /// OpenAI token ids (`cl100k_base`, as tiktoken encodes): decoded to
    /// text, then treated as a text.
    OpenAiIds(Vec<u32>),
}

/// The encoding OpenAI's embedding models (and so tiktoken, for them) use.
pub const OPENAI_ENCODING: &str = "cl100k_base";

/// Vectors of one request, in input order, and the tokens it used.
#[derive(Debug)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

/// Every token's last hidden state, per input: `[input][token][dimension]`.
#[derive(Debug)]
pub struct TokenStates {
    pub states: Vec<Vec<Vec<f32>>>,
    pub tokens: usize,
}

/// Static facts about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The name requests pass as `model` (`embedding.models[].alias`).
    pub alias: String,
    pub model_id: String,
    pub source: String,
    pub architecture: String,
    pub dimension: usize,
    pub max_seq_length: usize,
    pub pooling: &'static str,
    pub normalize: bool,
    pub device: String,
    pub dtype: String,
    pub backend: String,
    /// When the model was loaded, in Unix seconds.
    pub created: u64,
    /// Rows of the word-embedding matrix (`vocab_size` of `config.json`):
    /// valid token ids are below it.
    pub vocab_size: usize,
    /// Token budget of one forward pass of this model.
    pub max_batch_tokens: usize,
    /// Requests of this model in flight at most; beyond it `Overloaded`.
    pub max_concurrent_requests: usize,
}

type Tokenized = Vec<(Vec<u32>, Vec<u32>)>;

enum TokenizeJob {
    Embed {
        inputs: Vec<ModelInput>,
        truncate: bool,
        truncation: TruncationDirection,
        prompt: Option<String>,
        reply: oneshot::Sender<Result<Tokenized, EmbedError>>,
    },
    Tokens {
        texts: Vec<String>,
        add_special: bool,
        reply: oneshot::Sender<Result<Vec<Vec<Token>>, EmbedError>>,
    },
    Decode {
        ids: Vec<Vec<u32>>,
        skip_special: bool,
        reply: oneshot::Sender<Result<Vec<String>, EmbedError>>,
    },
}

/// The tokenizer twice: truncating at the right (the default) and at the
/// left (`truncation_direction: Left`).
struct Tokenizers {
    right: tokenizers::Tokenizer,
    left: tokenizers::Tokenizer,
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Pending {
    /// Every token's state instead of one pooled vector per input.
    all_tokens: bool,
    slots: Mutex<Vec<Vec<f32>>>,
    remaining: AtomicUsize,
    reply: Mutex<Option<Reply>>,
    cancelled: AtomicBool,
}

impl Pending {
    fn fail(&self, e: EmbedError) {
        if let Some(tx) = self.reply.lock().take() {
            let _ = tx.send(Err(e));
        }
    }
}

/// Marks the request cancelled when the handler's future is dropped.
struct CancelOnDrop(Arc<Pending>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }
}

struct Entry {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    slot: usize,
    req: Arc<Pending>,
    enqueued: Instant,
}

#[derive(Default)]
struct QueueState {
    entries: VecDeque<Entry>,
    closed: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

struct Prepared {
    entries: Vec<Entry>,
    packed: PackedBatch,
}

pub struct Runtime {
    pub info: ModelInfo,
    /// The model's files as read (prompts, vocabulary size).
    spec: ModelSpec,
    tokenize_tx: RwLock<Option<crossbeam_channel::Sender<TokenizeJob>>>,
    queue: Arc<Queue>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_client_batch: usize,
    metrics: Arc<ModelMetrics>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The rayon pool forward passes run in: `inference_threads` threads (0:
/// one per core). One per process, shared by every served model.
/// Errors: the threads cannot be spawned.
pub fn inference_pool(cfg: &EmbeddingConfig) -> Result<Arc<rayon::ThreadPool>, EmbedError> {
    let threads = if cfg.inference_threads == 0 {
        cores()
    } else {
        cfg.inference_threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("inference-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| EmbedError::Model(e.to_string()))
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Runtime {
    /// Warms the model up (one forward pass), then starts the threads.
    /// `alias` is the name requests use for it; `cfg` is the config of
    /// this model (`ServedModel::embedding_config`: its own
    /// `max_batch_tokens` and `max_concurrent_requests`); forward passes
    /// run in `pool`. Errors: the warm-up pass or the tokenizer fails.
    pub fn start(
        mut model: Model,
        alias: &str,
        cfg: &EmbeddingConfig,
        metrics: ModelMetrics,
        pool: Arc<rayon::ThreadPool>,
    ) -> Result<Arc<Self>, EmbedError> {
        let metrics = Arc::new(metrics);
        let cores = cores();
        if cfg.warmup {
            let enc = model
                .tokenizer
                .encode("warm up the model with a short sentence", true)
                .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
            let mut b = PackedBatch::default();
            b.push(enc.get_ids(), enc.get_type_ids());
            b.push(enc.get_ids(), enc.get_type_ids());
            pool.install(|| model.encoder.encode(&b))
                .map_err(|e| EmbedError::Model(e.to_string()))?;
        }
        let info = ModelInfo {
            alias: alias.to_string(),
            model_id: model.spec.files.model_id.clone(),
            source: model.spec.files.source.clone(),
            architecture: model.spec.architecture_name.clone(),
            dimension: model.spec.dimension,
            max_seq_length: model.spec.max_seq_length,
            pooling: model.spec.pooling.name(),
            normalize: model.spec.normalize,
            device: model.device.clone(),
            dtype: format!("{:?}", model.dtype).to_lowercase(),
            backend: format!("{:?}", model.backend).to_lowercase(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            vocab_size: model
                .spec
                .config
                .get("vocab_size")
                .and_then(|v| v.as_u64())
                .map(|n| n as usize)
                .unwrap_or_else(|| model.tokenizer.get_vocab_size(true)),
            max_batch_tokens: cfg.max_batch_tokens,
            max_concurrent_requests: cfg.max_concurrent_requests,
        };
        let spec = model.spec.clone();
        let mut left = model.tokenizer.clone();
        let params = left
            .get_truncation()
            .cloned()
            .map(|p| tokenizers::TruncationParams {
                direction: tokenizers::TruncationDirection::Left,
                ..p
            });
        left.with_truncation(params)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let tokenizer = Arc::new(Tokenizers {
            right: model.tokenizer.clone(),
            left,
        });
        let vocab = info.vocab_size;
        let max_seq = info.max_seq_length;
        let (tok_tx, tok_rx) =
            crossbeam_channel::bounded::<TokenizeJob>(cfg.max_concurrent_requests);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            cv: Condvar::new(),
        });
        let mut threads = Vec::new();
        let workers = if cfg.tokenization_workers == 0 {
            cores
        } else {
            cfg.tokenization_workers
        };
        for i in 0..workers {
            let rx = tok_rx.clone();
            let tok = tokenizer.clone();
            let m = metrics.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tokenizer-{i}"))
                    .spawn(move || tokenizer_worker(rx, &tok, max_seq, vocab, &m))
                    .expect("spawn tokenizer thread"),
            );
        }
        let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Prepared>(0);
        {
            let q = queue.clone();
            let budget = cfg.max_batch_tokens;
            let m = metrics.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("batcher".into())
                    .spawn(move || batcher(&q, budget, batch_tx, &m))
                    .expect("spawn batcher thread"),
            );
        }
        {
            let m = metrics.clone();
            let dim = info.dimension;
            threads.push(
                std::thread::Builder::new()
                    .name("model".into())
                    .spawn(move || model_loop(model, pool, batch_rx, dim, &m))
                    .expect("spawn model thread"),
            );
        }
        Ok(Arc::new(Self {
            info,
            spec,
            tokenize_tx: RwLock::new(Some(tok_tx)),
            queue,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
            max_concurrent: cfg.max_concurrent_requests,
            max_client_batch: cfg.max_client_batch_size,
            metrics,
            threads: Mutex::new(threads),
        }))
    }

    /// Checks the count of inputs against `max` (`None`: the configured
    /// `max_client_batch_size`) and takes a permit, or `Overloaded`.
    fn admit(&self, n: usize, max: Option<usize>) -> Result<OwnedSemaphorePermit, EmbedError> {
        let (max, limit) = match max {
            Some(m) => (m, "the route's limit of inputs per request"),
            None => (self.max_client_batch, "max_client_batch_size"),
        };
        if n == 0 {
            return Err(EmbedError::EmptyInput);
        }
        if n > max {
            return Err(EmbedError::TooManyInputs { got: n, max, limit });
        }
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| EmbedError::Overloaded(self.max_concurrent))
    }

    fn send_job(&self, job: TokenizeJob) -> Result<(), EmbedError> {
        let guard = self.tokenize_tx.read();
        let tx = guard.as_ref().ok_or(EmbedError::ShuttingDown)?;
        tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => EmbedError::Overloaded(self.max_concurrent),
            crossbeam_channel::TrySendError::Disconnected(_) => EmbedError::ShuttingDown,
        })
    }

    /// Whether `name` names this model: its alias, its id, or the id's
    /// part after the last `/` (`all-MiniLM-L6-v2`).
    pub fn serves(&self, name: &str) -> bool {
        let id = &self.info.model_id;
        name == self.info.alias || name == id || Some(name) == id.rsplit('/').next()
    }

    /// The text of the prompt `name` (`None`: the model's default
    /// prompt); an unknown name is `InvalidInput` naming the known ones.
    pub fn prompt(&self, name: Option<&str>) -> Result<Option<String>, EmbedError> {
        self.spec
            .prompt(name)
            .map(|p| p.map(str::to_owned))
            .map_err(EmbedError::InvalidInput)
    }

    /// Embeds inputs; vectors come back in input order, post-processed per
    /// `opts` (dimensions cut, then normalised).
    pub async fn embed(
        &self,
        inputs: Vec<ModelInput>,
        opts: EmbedOptions,
    ) -> Result<EmbedOutput, EmbedError> {
        if let Some(d) = opts.dimensions {
            if d == 0 || d > self.info.dimension {
                return Err(EmbedError::InvalidDimensions {
                    got: d,
                    max: self.info.dimension,
                });
            }
        }
        let (mut vectors, tokens) = self.run(inputs, &opts, false).await?;
        let normalize = opts.normalize.unwrap_or(self.info.normalize);
        for v in vectors.iter_mut() {
            if let Some(d) = opts.dimensions {
                v.truncate(d);
            }
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
        Ok(EmbedOutput { vectors, tokens })
    }

    /// Every token's last hidden state (no pooling, no normalisation), per
    /// input in input order; `opts.normalize` and `opts.dimensions` are
    /// not used.
    pub async fn embed_tokens(
        &self,
        inputs: Vec<ModelInput>,
        opts: EmbedOptions,
    ) -> Result<TokenStates, EmbedError> {
        let dim = self.info.dimension;
        let (flat, tokens) = self.run(inputs, &opts, true).await?;
        let states = flat
            .into_iter()
            .map(|rows| rows.chunks_exact(dim).map(<[f32]>::to_vec).collect())
            .collect();
        Ok(TokenStates { states, tokens })
    }

    /// Tokenises, queues and awaits one request: per input, the pooled
    /// vector, or (`all_tokens`) its token states row-major.
    async fn run(
        &self,
        inputs: Vec<ModelInput>,
        opts: &EmbedOptions,
        all_tokens: bool,
    ) -> Result<(Vec<Vec<f32>>, usize), EmbedError> {
        let n = inputs.len();
        let _permit = self.admit(n, opts.max_inputs)?;
        let prompt = self.prompt(opts.prompt_name.as_deref())?;
        self.metrics.in_flight.inc();
        let _gauge = GaugeGuard(&self.metrics.in_flight);
        let (tx, rx) = oneshot::channel();
        self.send_job(TokenizeJob::Embed {
            inputs,
            truncate: opts.truncate,
            truncation: opts.truncation,
            prompt,
            reply: tx,
        })?;
        let tokenized = rx.await.map_err(|_| EmbedError::ShuttingDown)??;
        let tokens: usize = tokenized.iter().map(|(ids, _)| ids.len()).sum();

        let (tx, rx) = oneshot::channel();
        let pending = Arc::new(Pending {
            all_tokens,
            slots: Mutex::new(vec![Vec::new(); n]),
            remaining: AtomicUsize::new(n),
            reply: Mutex::new(Some(tx)),
            cancelled: AtomicBool::new(false),
        });
        let _cancel = CancelOnDrop(pending.clone());
        {
            let now = Instant::now();
            let mut st = self.queue.state.lock();
            if st.closed {
                return Err(EmbedError::ShuttingDown);
            }
            for (slot, (ids, type_ids)) in tokenized.into_iter().enumerate() {
                st.entries.push_back(Entry {
                    ids,
                    type_ids,
                    slot,
                    req: pending.clone(),
                    enqueued: now,
                });
            }
            self.metrics.queue_size.set(st.entries.len() as i64);
        }
        self.queue.cv.notify_one();
        let out = rx.await.map_err(|_| EmbedError::ShuttingDown)??;
        self.metrics.texts.inc_by(n as u64);
        self.metrics.tokens.inc_by(tokens as u64);
        Ok((out, tokens))
    }

    /// Texts of token ids of the model's vocabulary, one per list; with
    /// `skip_special`, special tokens are left out. An id outside the
    /// vocabulary is `InvalidInput`.
    pub async fn decode(
        &self,
        ids: Vec<Vec<u32>>,
        skip_special: bool,
    ) -> Result<Vec<String>, EmbedError> {
        let _permit = self.admit(ids.len(), None)?;
        let (tx, rx) = oneshot::channel();
        self.send_job(TokenizeJob::Decode {
            ids,
            skip_special,
            reply: tx,
        })?;
        rx.await.map_err(|_| EmbedError::ShuttingDown)?
    }

    /// Tokens of each text as the model sees them (truncated at
    /// `max_seq_length`).
    pub async fn tokenize(
        &self,
        texts: Vec<String>,
        add_special: bool,
        prompt_name: Option<&str>,
    ) -> Result<Vec<Vec<Token>>, EmbedError> {
        let _permit = self.admit(texts.len(), None)?;
        let texts = match self.prompt(prompt_name)? {
            Some(p) => texts.into_iter().map(|t| format!("{p}{t}")).collect(),
            None => texts,
        };
        let (tx, rx) = oneshot::channel();
        self.send_job(TokenizeJob::Tokens {
            texts,
            add_special,
            reply: tx,
        })?;
        rx.await.map_err(|_| EmbedError::ShuttingDown)?
    }

    /// Stops the threads after the queue drains. Call once HTTP has stopped.
    pub fn shutdown(&self) {
        self.tokenize_tx.write().take();
        self.queue.state.lock().closed = true;
        self.queue.cv.notify_all();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

struct GaugeGuard<'a>(&'a prometheus::IntGauge);
impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn tokenizer_worker(
    rx: crossbeam_channel::Receiver<TokenizeJob>,
    tok: &Tokenizers,
    max_seq: usize,
    vocab: usize,
    metrics: &ModelMetrics,
) {
    while let Ok(job) = rx.recv() {
        let t0 = Instant::now();
        match job {
            TokenizeJob::Embed {
                inputs,
                truncate,
                truncation,
                prompt,
                reply,
            } => {
                if reply.is_closed() {
                    continue;
                }
                let cut = Cut {
                    tok: match truncation {
                        TruncationDirection::Left => &tok.left,
                        TruncationDirection::Right => &tok.right,
                    },
                    truncate,
                    truncation,
                    max_seq,
                    vocab,
                    prompt: prompt.as_deref(),
                };
                let res = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(index, input)| cut.encode(index, input))
                    .collect();
                metrics.tokenize_seconds.observe(t0.elapsed().as_secs_f64());
                let _ = reply.send(res);
            }
            TokenizeJob::Tokens {
                texts,
                add_special,
                reply,
            } => {
                let res = texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        tok.right
                            .encode(t.as_str(), add_special)
                            .map(|enc| tokens_of(t, &enc))
                            .map_err(|e| EmbedError::Tokenizer(format!("input {i}: {e}")))
                    })
                    .collect();
                let _ = reply.send(res);
            }
            TokenizeJob::Decode {
                ids,
                skip_special,
                reply,
            } => {
                let res = ids
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| {
                        check_vocab(ids, vocab, &format!("ids[{i}]"))?;
                        tok.right
                            .decode(ids, skip_special)
                            .map_err(|e| EmbedError::Tokenizer(format!("ids[{i}]: {e}")))
                    })
                    .collect();
                let _ = reply.send(res);
            }
        }
    }
}

/// How one request's inputs become model token ids.
struct Cut<'a> {
    /// The tokenizer truncating from `truncation`'s end.
    tok: &'a tokenizers::Tokenizer,
    truncate: bool,
    truncation: TruncationDirection,
    max_seq: usize,
    vocab: usize,
    prompt: Option<&'a str>,
}

impl Cut<'_> {
    fn encode(&self, index: usize, input: ModelInput) -> Result<(Vec<u32>, Vec<u32>), EmbedError> {
        let text = match input {
            ModelInput::Text(t) => t,
            ModelInput::OpenAiIds(ids) => openai_text(&ids, index)?,
            ModelInput::Ids(mut ids) => {
                if ids.is_empty() {
                    return Err(EmbedError::InvalidInput(format!(
                        "input {index} is an empty list of token ids"
                    )));
                }
                check_vocab(&ids, self.vocab, &format!("input {index}"))?;
                if ids.len() > self.max_seq {
                    if !self.truncate {
                        return Err(EmbedError::InputTooLong {
                            index,
                            max: self.max_seq,
                        });
                    }
                    match self.truncation {
                        TruncationDirection::Right => ids.truncate(self.max_seq),
                        TruncationDirection::Left => {
                            ids.drain(..ids.len() - self.max_seq);
                        }
                    }
                }
                let types = vec![0; ids.len()];
                return Ok((ids, types));
            }
        };
        let text = match self.prompt {
            Some(p) => format!("{p}{text}"),
            None => text,
        };
        let enc = self
            .tok
            .encode(text.as_str(), true)
            .map_err(|e| EmbedError::Tokenizer(format!("input {index}: {e}")))?;
        if !self.truncate && !enc.get_overflowing().is_empty() {
            return Err(EmbedError::InputTooLong {
                index,
                max: self.max_seq,
            });
        }
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }
}

/// `InvalidInput` naming the first id of `ids` at or above `vocab`.
fn check_vocab(ids: &[u32], vocab: usize, at: &str) -> Result<(), EmbedError> {
    match ids.iter().position(|&id| id as usize >= vocab) {
        None => Ok(()),
        Some(j) => Err(EmbedError::InvalidInput(format!(
            "{at}: token id {} (position {j}) is outside the model's vocabulary \
             (ids 0 to {})",
            ids[j],
            vocab.saturating_sub(1)
        ))),
    }
}

/// The text of OpenAI token ids (`cl100k_base`). Ids cut in the middle of
/// a character (a client that split a long text into chunks) decode to
/// U+FFFD, as tiktoken's own `decode` does.
/// Errors: an empty list (as for the model's own ids), an id outside
/// the encoding (its range is stated).
fn openai_text(ids: &[u32], index: usize) -> Result<String, EmbedError> {
    if ids.is_empty() {
        return Err(EmbedError::InvalidInput(format!(
            "input {index} is an empty list of token ids"
        )));
    }
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let bytes = bpe.decode_bytes(ids).map_err(|e| {
        let j = ids.iter().position(|&t| t == e.token).unwrap_or(0);
        EmbedError::InvalidInput(format!(
            "input {index}: {} (position {j}) is not a token id of {OPENAI_ENCODING} (ordinary ids 0 to \
             100256, special tokens 100257 to 100260 and 100276), the encoding OpenAI clients \
             (tiktoken) use for embedding models",
            e.token
        ))
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn tokens_of(text: &str, enc: &tokenizers::Encoding) -> Vec<Token> {
    let special = enc.get_special_tokens_mask();
    enc.get_ids()
        .iter()
        .zip(enc.get_tokens())
        .zip(enc.get_offsets())
        .enumerate()
        .map(|(i, ((&id, tok), &(s, e)))| {
            let is_special = special.get(i).copied().unwrap_or(0) == 1;
            let text_of = if is_special {
                tok.clone()
            } else {
                text.get(s..e).unwrap_or(tok).to_string()
            };
            Token {
                id,
                text: text_of,
                special: is_special,
                start: (!is_special).then_some(s),
                stop: (!is_special).then_some(e),
            }
        })
        .collect()
}

/// Forms batches from everything queued: drops cancelled texts, sorts by
/// length, cuts under the token budget, and hands each batch to the model
/// thread (blocking until it is free).
fn batcher(
    q: &Queue,
    budget: usize,
    tx: std::sync::mpsc::SyncSender<Prepared>,
    metrics: &ModelMetrics,
) {
    loop {
        let mut window: Vec<Entry> = {
            let mut st = q.state.lock();
            while st.entries.is_empty() && !st.closed {
                q.cv.wait(&mut st);
            }
            if st.entries.is_empty() && st.closed {
                return;
            }
            let w = st.entries.drain(..).collect();
            metrics.queue_size.set(0);
            w
        };
        window.retain(|e| !e.req.cancelled.load(Ordering::Relaxed));
        window.sort_by_key(|e| e.ids.len());
        let mut cur: Vec<Entry> = Vec::new();
        let mut cur_max = 0;
        let mut batches = Vec::new();
        for e in window {
            let m = cur_max.max(e.ids.len());
            if !cur.is_empty() && (cur.len() + 1) * m > budget {
                batches.push(std::mem::take(&mut cur));
                cur_max = 0;
            }
            cur_max = cur_max.max(e.ids.len());
            cur.push(e);
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        for entries in batches {
            let packed = pack(&entries);
            if tx.send(Prepared { entries, packed }).is_err() {
                return;
            }
        }
    }
}

fn pack(entries: &[Entry]) -> PackedBatch {
    let mut p = PackedBatch::default();
    for e in entries {
        p.push(&e.ids, &e.type_ids);
    }
    p
}

fn model_loop(
    mut model: Model,
    pool: Arc<rayon::ThreadPool>,
    rx: std::sync::mpsc::Receiver<Prepared>,
    dim: usize,
    metrics: &ModelMetrics,
) {
    while let Ok(b) = rx.recv() {
        let mut entries = b.entries;
        let cancelled = entries
            .iter()
            .any(|e| e.req.cancelled.load(Ordering::Relaxed));
        if cancelled {
            entries.retain(|e| !e.req.cancelled.load(Ordering::Relaxed));
        }
        let mixed =
            entries.iter().any(|e| e.req.all_tokens) && entries.iter().any(|e| !e.req.all_tokens);
        if !mixed {
            let all_tokens = entries.first().is_some_and(|e| e.req.all_tokens);
            let packed = if cancelled { pack(&entries) } else { b.packed };
            run_group(&mut model, &pool, entries, packed, all_tokens, dim, metrics);
            continue;
        }
        let (tokens, pooled): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.req.all_tokens);
        for (group, all_tokens) in [(pooled, false), (tokens, true)] {
            let packed = pack(&group);
            run_group(&mut model, &pool, group, packed, all_tokens, dim, metrics);
        }
    }
}

/// One forward pass over `entries` (all of one kind): pooled vectors, or
/// every token's state; each result goes to its request's slot.
fn run_group(
    model: &mut Model,
    pool: &rayon::ThreadPool,
    entries: Vec<Entry>,
    packed: PackedBatch,
    all_tokens: bool,
    dim: usize,
    metrics: &ModelMetrics,
) {
    if entries.is_empty() {
        return;
    }
    let now = Instant::now();
    for e in &entries {
        metrics
            .queue_seconds
            .observe(now.duration_since(e.enqueued).as_secs_f64());
    }
    metrics.batch_size.observe(entries.len() as f64);
    metrics.batch_tokens.observe(packed.ids.len() as f64);
    let encoder = &mut model.encoder;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| {
            if all_tokens {
                encoder.encode_tokens(&packed)
            } else {
                encoder.encode(&packed)
            }
        })
    }));
    metrics
        .inference_seconds
        .observe(now.elapsed().as_secs_f64());
    let out = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!("forward pass failed: {e}");
            let err = match e {
                ModelError::OutOfMemory(_) => EmbedError::OutOfMemory,
                e => EmbedError::Model(e.to_string()),
            };
            entries.iter().for_each(|en| en.req.fail(err.clone()));
            return;
        }
        Err(_) => {
            tracing::error!("forward pass panicked");
            entries.iter().for_each(|en| {
                en.req
                    .fail(EmbedError::Model("panic in forward pass".into()))
            });
            return;
        }
    };
    let mut row = 0;
    for (i, e) in entries.into_iter().enumerate() {
        let v = if all_tokens {
            let len = packed.lens[i];
            let v = out[row * dim..(row + len) * dim].to_vec();
            row += len;
            v
        } else {
            out[i * dim..(i + 1) * dim].to_vec()
        };
        e.req.slots.lock()[e.slot] = v;
        if e.req.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let slots = std::mem::take(&mut *e.req.slots.lock());
            if let Some(tx) = e.req.reply.lock().take() {
                let _ = tx.send(Ok(slots));
            }
        }
    }
}
