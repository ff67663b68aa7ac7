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
//!   `max_client_batch_size` × `max_seq_length` tokens.
//! - The batcher prepares one batch while the model runs the previous one
//!   (a rendezvous channel: the next batch is handed over when the model is
//!   free, and formed from everything queued at that moment).
//! - Texts of a request whose client has gone (its future was dropped) are
//!   dropped before the forward pass.
//! - Results return in input order whatever the batching did.

use crate::metrics::Metrics;
use crate::model::{Model, ModelError, PackedBatch};
use parking_lot::{Condvar, Mutex, RwLock};
use shared::config::EmbeddingConfig;
use shared::wire::embedding::Token;
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
    #[error("{got} inputs exceed max_client_batch_size = {max}")]
    TooManyInputs { got: usize, max: usize },
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
    #[error("the GPU has no memory free for this request's texts, even one at a time; retry later or send shorter texts")]
    OutOfMemory,
}

/// What a caller asks of one embedding request.
#[derive(Debug, Clone, Copy)]
pub struct EmbedOptions {
    pub normalize: Option<bool>,
    pub truncate: bool,
    pub dimensions: Option<usize>,
}

#[derive(Debug)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

/// Static facts about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
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
}

type Tokenized = Vec<(Vec<u32>, Vec<u32>)>;

enum TokenizeJob {
    Embed {
        texts: Vec<String>,
        truncate: bool,
        reply: oneshot::Sender<Result<Tokenized, EmbedError>>,
    },
    Tokens {
        texts: Vec<String>,
        add_special: bool,
        reply: oneshot::Sender<Result<Vec<Vec<Token>>, EmbedError>>,
    },
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Pending {
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
    tokenize_tx: RwLock<Option<crossbeam_channel::Sender<TokenizeJob>>>,
    queue: Arc<Queue>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_client_batch: usize,
    metrics: Arc<Metrics>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    /// Warms the model up (one forward pass), then starts the threads.
    pub fn start(
        mut model: Model,
        cfg: &EmbeddingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, EmbedError> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let inference_threads = if cfg.inference_threads == 0 {
            cores
        } else {
            cfg.inference_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(inference_threads)
            .thread_name(|i| format!("inference-{i}"))
            .build()
            .map_err(|e| EmbedError::Model(e.to_string()))?;
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
            model_id: model.spec.files.model_id.clone(),
            source: model.spec.files.source.clone(),
            architecture: model.spec.architecture_name.clone(),
            dimension: model.spec.hidden_size,
            max_seq_length: model.spec.max_seq_length,
            pooling: model.spec.pooling.name(),
            normalize: model.spec.normalize,
            device: model.device.clone(),
            dtype: format!("{:?}", model.dtype).to_lowercase(),
            backend: format!("{:?}", model.backend).to_lowercase(),
        };
        let tokenizer = Arc::new(model.tokenizer.clone());
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
                    .spawn(move || tokenizer_worker(rx, &tok, max_seq, &m))
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
            tokenize_tx: RwLock::new(Some(tok_tx)),
            queue,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
            max_concurrent: cfg.max_concurrent_requests,
            max_client_batch: cfg.max_client_batch_size,
            metrics,
            threads: Mutex::new(threads),
        }))
    }

    fn admit(&self, n: usize) -> Result<OwnedSemaphorePermit, EmbedError> {
        if n == 0 {
            return Err(EmbedError::EmptyInput);
        }
        if n > self.max_client_batch {
            return Err(EmbedError::TooManyInputs {
                got: n,
                max: self.max_client_batch,
            });
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

    /// Embeds texts; vectors come back in input order, post-processed per
    /// `opts` (dimensions cut, then normalised).
    pub async fn embed(
        &self,
        texts: Vec<String>,
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
        let n = texts.len();
        let _permit = self.admit(n)?;
        self.metrics.in_flight.inc();
        let _gauge = GaugeGuard(&self.metrics.in_flight);
        let (tx, rx) = oneshot::channel();
        self.send_job(TokenizeJob::Embed {
            texts,
            truncate: opts.truncate,
            reply: tx,
        })?;
        let tokenized = rx.await.map_err(|_| EmbedError::ShuttingDown)??;
        let tokens: usize = tokenized.iter().map(|(ids, _)| ids.len()).sum();

        let (tx, rx) = oneshot::channel();
        let pending = Arc::new(Pending {
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
        let mut vectors = rx.await.map_err(|_| EmbedError::ShuttingDown)??;
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
        self.metrics.texts.inc_by(n as u64);
        self.metrics.tokens.inc_by(tokens as u64);
        Ok(EmbedOutput { vectors, tokens })
    }

    /// Tokens of each text as the model sees them (truncated at
    /// `max_seq_length`).
    pub async fn tokenize(
        &self,
        texts: Vec<String>,
        add_special: bool,
    ) -> Result<Vec<Vec<Token>>, EmbedError> {
        let _permit = self.admit(texts.len())?;
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
    tok: &tokenizers::Tokenizer,
    max_seq: usize,
    metrics: &Metrics,
) {
    while let Ok(job) = rx.recv() {
        let t0 = Instant::now();
        match job {
            TokenizeJob::Embed {
                texts,
                truncate,
                reply,
            } => {
                if reply.is_closed() {
                    continue;
                }
                let mut out = Vec::with_capacity(texts.len());
                let mut err = None;
                for (index, text) in texts.iter().enumerate() {
                    match tok.encode(text.as_str(), true) {
                        Ok(enc) => {
                            if !truncate && !enc.get_overflowing().is_empty() {
                                err = Some(EmbedError::InputTooLong {
                                    index,
                                    max: max_seq,
                                });
                                break;
                            }
                            out.push((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()));
                        }
                        Err(e) => {
                            err = Some(EmbedError::Tokenizer(format!("input {index}: {e}")));
                            break;
                        }
                    }
                }
                metrics.tokenize_seconds.observe(t0.elapsed().as_secs_f64());
                let _ = reply.send(match err {
                    Some(e) => Err(e),
                    None => Ok(out),
                });
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
                        tok.encode(t.as_str(), add_special)
                            .map(|enc| tokens_of(t, &enc))
                            .map_err(|e| EmbedError::Tokenizer(format!("input {i}: {e}")))
                    })
                    .collect();
                let _ = reply.send(res);
            }
        }
    }
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
fn batcher(q: &Queue, budget: usize, tx: std::sync::mpsc::SyncSender<Prepared>, metrics: &Metrics) {
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
    pool: rayon::ThreadPool,
    rx: std::sync::mpsc::Receiver<Prepared>,
    dim: usize,
    metrics: &Metrics,
) {
    while let Ok(mut b) = rx.recv() {
        if b.entries
            .iter()
            .any(|e| e.req.cancelled.load(Ordering::Relaxed))
        {
            b.entries
                .retain(|e| !e.req.cancelled.load(Ordering::Relaxed));
            if b.entries.is_empty() {
                continue;
            }
            b.packed = pack(&b.entries);
        }
        let now = Instant::now();
        for e in &b.entries {
            metrics
                .queue_seconds
                .observe(now.duration_since(e.enqueued).as_secs_f64());
        }
        metrics.batch_size.observe(b.entries.len() as f64);
        metrics.batch_tokens.observe(b.packed.ids.len() as f64);
        let encoder = &mut model.encoder;
        let packed = &b.packed;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| encoder.encode(packed))
        }));
        metrics
            .inference_seconds
            .observe(now.elapsed().as_secs_f64());
        let pooled = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!("forward pass failed: {e}");
                let err = match e {
                    ModelError::OutOfMemory(_) => EmbedError::OutOfMemory,
                    e => EmbedError::Model(e.to_string()),
                };
                b.entries.iter().for_each(|en| en.req.fail(err.clone()));
                continue;
            }
            Err(_) => {
                tracing::error!("forward pass panicked");
                b.entries.iter().for_each(|en| {
                    en.req
                        .fail(EmbedError::Model("panic in forward pass".into()))
                });
                continue;
            }
        };
        for (i, e) in b.entries.into_iter().enumerate() {
            let v = pooled[i * dim..(i + 1) * dim].to_vec();
            e.req.slots.lock()[e.slot] = v;
            if e.req.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                let slots = std::mem::take(&mut *e.req.slots.lock());
                if let Some(tx) = e.req.reply.lock().take() {
                    let _ = tx.send(Ok(slots));
                }
            }
        }
    }
}
