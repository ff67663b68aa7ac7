//! Replicas on one data directory: one writer, followers that read its
//! files, automatic takeover.
//!
//! Every replica runs the same binary and config. Whoever holds the data
//! directory's lock (`<data_dir>/.lock`, `flock`) is the writer and
//! publishes where it can be reached in `<data_dir>/writer.json`
//! (`{"url", "pid", "hostname"}`, replaced atomically; `url` is
//! `indexing.advertise_url`, default `http://<hostname>:<port>`). The
//! others are followers (`collection::Storage::open_replica`):
//! - a follower thread applies the writer's WAL and reloads on manifest
//!   changes every `replication.follow_poll_ms` (`Storage::follow`), and
//!   tries the lock every `replication.lock_retry_ms`. The kernel drops
//!   the lock of a dead process (even after SIGKILL), so the first
//!   follower to get it recovers every collection (tail repair, replay)
//!   and becomes the writer (`Storage::try_promote`), then publishes
//!   `writer.json`;
//! - [`middleware`] forwards every write (any route but GET/HEAD/OPTIONS
//!   and the POST reads: searches, scroll, count, get by ids) to the
//!   writer and returns its answer unchanged; when the writer cannot be
//!   reached the answer is 503 `writer_unavailable` with `Retry-After`;
//! - reads are eventual by default. A read that names an operation
//!   (`consistency: {"after": <op>}` in the body of search, scroll, count
//!   and get-by-ids, or the `x-consistency-after` header on any read)
//!   waits until this replica has applied that op of the collection, at
//!   most `replication.consistency_timeout_ms` (then 504
//!   `consistency_timeout`). Every successful write answer carries the
//!   header `x-operation`: the collection's last op once the write was
//!   applied, the value to pass as `after`.
//!
//! Role, applied op, the writer's op and lag are in `GET /metrics`
//! (`index_replica_*`) and in the `replication` object of
//! `GET /collections/{name}`.

pub mod middleware;

use crate::collection::{FileStamp, ReplicaStatus, Role, Storage};
use crate::storage::fsutil::atomic_write;
use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};
use shared::config::IndexingConfig;
use shared::{ErrorBody, ErrorCode};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The file, in the data directory, where the writer publishes its address.
pub const WRITER_FILE: &str = "writer.json";

/// What `writer.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriterInfo {
    /// Base URL other replicas forward writes to.
    pub url: String,
    pub pid: u32,
    pub hostname: String,
}

/// Errors of this layer, each one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The writer cannot be reached (none yet, taking over, or down).
    #[error("{0}")]
    WriterUnavailable(String),
    /// `consistency.after` was not reached in time.
    #[error("{0}")]
    ConsistencyTimeout(String),
    /// A malformed `consistency` field or `x-consistency-after` header.
    #[error("{0}")]
    Invalid(String),
    /// A request body over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// A request body that did not arrive within the body read timeout.
    #[error("{0}")]
    BodyTimeout(String),
}

impl ReplicationError {
    /// The error body and status, with `Retry-After: 1` on 503.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let retry = matches!(self, ReplicationError::WriterUnavailable(_));
        let code = match &self {
            ReplicationError::WriterUnavailable(_) => ErrorCode::WriterUnavailable,
            ReplicationError::ConsistencyTimeout(_) => ErrorCode::ConsistencyTimeout,
            ReplicationError::Invalid(_) => ErrorCode::InvalidRequest,
            ReplicationError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ReplicationError::BodyTimeout(_) => ErrorCode::RequestTimeout,
        };
        let mut resp = ErrorBody::new(code, self.to_string()).into_response();
        if retry {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// Prometheus series of this layer (rendered after the service's own).
struct ReplicaMetrics {
    registry: Registry,
    role: IntGauge,
    applied: IntGaugeVec,
    writer_op: IntGaugeVec,
    lag_ops: IntGaugeVec,
    lag_ms: IntGauge,
    apply_lag: Histogram,
    forwarded: IntCounterVec,
    waits: IntCounterVec,
    promotions: IntCounter,
    reloads: IntCounter,
}

impl ReplicaMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let role = IntGauge::new(
            "index_replica_is_writer",
            "1 when this replica holds the data directory's lock (the writer), 0 on a follower",
        )
        .unwrap();
        let per = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["collection"]).unwrap()
        };
        let applied = per(
            "index_replica_applied_operation",
            "Last WAL operation applied by this replica",
        );
        let writer_op = per(
            "index_replica_writer_operation",
            "Last whole WAL operation in the writer's log as this replica sees it",
        );
        let lag_ops = per(
            "index_replica_lag_operations",
            "Operations in the writer's log not yet applied by this replica",
        );
        let lag_ms = IntGauge::new(
            "index_replica_lag_ms",
            "Milliseconds the last applied WAL record waited before a follower applied it",
        )
        .unwrap();
        let apply_lag = Histogram::with_opts(
            HistogramOpts::new(
                "index_replica_apply_lag_seconds",
                "Per follower step that applied records: time from the newest record's write to its application",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap()),
        )
        .unwrap();
        let forwarded = IntCounterVec::new(
            Opts::new(
                "index_replica_forwarded_total",
                "Writes a follower forwarded to the writer, by outcome",
            ),
            &["outcome"],
        )
        .unwrap();
        let waits = IntCounterVec::new(
            Opts::new(
                "index_replica_consistency_waits_total",
                "Reads that named an operation, by outcome (ready, waited, timeout)",
            ),
            &["outcome"],
        )
        .unwrap();
        let promotions = IntCounter::new(
            "index_replica_promotions_total",
            "Times this process took over as the writer",
        )
        .unwrap();
        let reloads = IntCounter::new(
            "index_replica_changes_total",
            "Follower catalog and manifest changes applied (collections loaded, dropped, reloaded)",
        )
        .unwrap();
        for c in [
            Box::new(role.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(applied.clone()),
            Box::new(writer_op.clone()),
            Box::new(lag_ops.clone()),
            Box::new(lag_ms.clone()),
            Box::new(apply_lag.clone()),
            Box::new(forwarded.clone()),
            Box::new(waits.clone()),
            Box::new(promotions.clone()),
            Box::new(reloads.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            role,
            applied,
            writer_op,
            lag_ops,
            lag_ms,
            apply_lag,
            forwarded,
            waits,
            promotions,
            reloads,
        }
    }
}

/// This process's part in the replica set: role, the writer's address,
/// the follower thread, read-your-writes waits. Cheap to share.
pub struct Replica {
    storage: Arc<Storage>,
    config: Arc<IndexingConfig>,
    advertise_url: String,
    client: reqwest::Client,
    /// Bumped whenever a follower step applied or changed something.
    progress: tokio::sync::watch::Sender<u64>,
    metrics: ReplicaMetrics,
    /// Last lag measured by the follower thread, in milliseconds.
    last_lag_ms: AtomicU64,
    /// `writer.json` as last read, with its stamp.
    writer_cache: Mutex<Option<(Option<FileStamp>, Option<WriterInfo>)>>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// This host's name: `HOSTNAME`, else the kernel's.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Replica {
    /// The replica over `storage` (opened by `Storage::open_replica`).
    /// Call [`Replica::start`] to publish the writer's address or start
    /// following.
    pub fn new(storage: Arc<Storage>, config: Arc<IndexingConfig>) -> anyhow::Result<Arc<Self>> {
        let advertise_url = config
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", hostname(), config.port))
            .trim_end_matches('/')
            .to_string();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_millis(config.replication.forward_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| anyhow::anyhow!("forwarding client: {e}"))?;
        let (progress, _) = tokio::sync::watch::channel(0u64);
        Ok(Arc::new(Self {
            storage,
            config,
            advertise_url,
            client,
            progress,
            metrics: ReplicaMetrics::new(),
            last_lag_ms: AtomicU64::new(0),
            writer_cache: Mutex::new(None),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        }))
    }

    /// The writer publishes its address; a follower starts its thread
    /// (follow the log, try the lock, take over). Errors: the thread
    /// cannot be started.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        if self.storage.is_writer() {
            self.publish();
            return Ok(());
        }
        tracing::info!(
            "data directory {} is locked by another process: following its writer",
            self.storage.data_dir().display()
        );
        let weak = Arc::downgrade(self);
        let h = std::thread::Builder::new()
            .name("replica-follow".into())
            .spawn(move || follow_loop(weak))?;
        *self.thread.lock() = Some(h);
        Ok(())
    }

    /// Stops the follower thread (if any) and waits for it.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// This process's role now.
    pub fn role(&self) -> Role {
        if self.storage.is_writer() {
            Role::Writer
        } else {
            Role::Follower
        }
    }

    /// The URL this replica publishes when it is the writer.
    pub fn advertise_url(&self) -> &str {
        &self.advertise_url
    }

    fn writer_path(&self) -> PathBuf {
        self.storage.data_dir().join(WRITER_FILE)
    }

    /// Writes `writer.json` (only the lock holder calls this).
    fn publish(&self) {
        let info = WriterInfo {
            url: self.advertise_url.clone(),
            pid: std::process::id(),
            hostname: hostname(),
        };
        let bytes = serde_json::to_vec_pretty(&info).expect("JSON");
        match atomic_write(&self.writer_path(), &bytes) {
            Ok(()) => tracing::info!(
                "writer for {} at {}",
                self.storage.data_dir().display(),
                info.url
            ),
            Err(e) => tracing::error!("cannot publish the writer's address: {e}"),
        }
    }

    /// The writer's address from `writer.json` (re-read when it changes).
    pub fn writer(&self) -> Option<WriterInfo> {
        let path = self.writer_path();
        let stamp = FileStamp::of(&path);
        let mut cache = self.writer_cache.lock();
        if let Some((s, info)) = &*cache {
            if *s == stamp && stamp.is_some() {
                return info.clone();
            }
        }
        let info = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<WriterInfo>(&b).ok());
        *cache = Some((stamp, info.clone()));
        info
    }

    /// The status of collection `c` with the last measured lag.
    pub fn status_of(&self, c: &crate::collection::Collection) -> ReplicaStatus {
        let mut s = c.replica_status();
        if s.role == Role::Follower {
            s.lag_ms = self.last_lag_ms.load(Ordering::Relaxed);
        }
        s
    }

    /// Waits until this replica has applied op `after` of collection
    /// `name`, at most `replication.consistency_timeout_ms`. Returns at
    /// once on the writer (it applied every op it acknowledged), and when
    /// the collection exists neither here nor on disk (the handler then
    /// answers 404). Errors: `ConsistencyTimeout` naming both ops.
    pub async fn wait_applied(&self, name: &str, after: u64) -> Result<(), ReplicationError> {
        let timeout = Duration::from_millis(self.config.replication.consistency_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut waited = false;
        loop {
            let mut rx = self.progress.subscribe();
            if self.storage.is_writer() {
                break;
            }
            let applied = match self.storage.get(name) {
                Ok(c) => Some(c.applied_op()),
                Err(_) => None,
            };
            match applied {
                Some(a) if a >= after => break,
                None if !self
                    .storage
                    .data_dir()
                    .join("collections")
                    .join(name)
                    .join("collection.json")
                    .exists() =>
                {
                    break
                }
                _ => {}
            }
            waited = true;
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                self.metrics.waits.with_label_values(&["timeout"]).inc();
                let have = match applied {
                    Some(a) => format!("it has applied operation {a}"),
                    None => "it has not loaded the collection yet".into(),
                };
                return Err(ReplicationError::ConsistencyTimeout(format!(
                    "this replica did not reach operation {after} of collection `{name}` within \
                     {} ms ({have}); retry, or read from the writer",
                    timeout.as_millis()
                )));
            }
        }
        self.metrics
            .waits
            .with_label_values(&[if waited { "waited" } else { "ready" }])
            .inc();
        Ok(())
    }

    /// This layer's series in Prometheus text format (per-collection
    /// gauges refreshed now).
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        m.role.set(i64::from(self.storage.is_writer()));
        m.applied.reset();
        m.writer_op.reset();
        m.lag_ops.reset();
        for c in self.storage.list() {
            let s = c.replica_status();
            let n = c.name();
            m.applied
                .with_label_values(&[n])
                .set(s.applied_operation as i64);
            m.writer_op
                .with_label_values(&[n])
                .set(s.writer_operation as i64);
            m.lag_ops
                .with_label_values(&[n])
                .set(s.lag_operations as i64);
        }
        m.lag_ms
            .set(self.last_lag_ms.load(Ordering::Relaxed) as i64);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("UTF-8")
    }

    fn bump(&self) {
        self.progress.send_modify(|v| *v += 1);
    }
}

/// The follower thread: follow, try the lock, take over; ends when the
/// replica is dropped or shut down, or once this process is the writer.
fn follow_loop(weak: Weak<Replica>) {
    let mut last_try = Instant::now();
    loop {
        let Some(r) = weak.upgrade() else { return };
        if r.stop.load(Ordering::Acquire) || r.storage.is_writer() {
            return;
        }
        let poll = Duration::from_millis(r.config.replication.follow_poll_ms);
        let retry = Duration::from_millis(r.config.replication.lock_retry_ms);
        let report = r.storage.follow();
        if let Some(l) = report.lag {
            r.metrics.apply_lag.observe(l.as_secs_f64());
            r.last_lag_ms.store(l.as_millis() as u64, Ordering::Relaxed);
        }
        if report.changed > 0 {
            r.metrics.reloads.inc_by(report.changed as u64);
        }
        if report.applied > 0 || report.changed > 0 {
            r.bump();
        }
        if last_try.elapsed() >= retry {
            last_try = Instant::now();
            let t0 = Instant::now();
            match r.storage.try_promote() {
                Ok(true) => {
                    r.publish();
                    r.metrics.promotions.inc();
                    r.last_lag_ms.store(0, Ordering::Relaxed);
                    r.bump();
                    tracing::info!(
                        "took over as the writer (recovery took {} ms)",
                        t0.elapsed().as_millis()
                    );
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::error!("taking over as the writer failed (will retry): {e}"),
            }
        }
        drop(r);
        std::thread::sleep(poll);
    }
}
