//! One typed, validated configuration tree for both services.
//!
//! Layers, later wins: defaults in code → `config.yaml` (path from
//! `CONFIG_PATH`, default `./config.yaml`) → environment variables named after
//! the key path in upper case with `__` between levels
//! (`EMBEDDING__PORT=9001`, `EMBEDDING__MODEL__PATH=/models/minilm`,
//! `INDEXING__DATA_DIR=/data`). `EMBEDDING_SERVICE_URL` also sets
//! `indexing.embedding_service_url`. Environment values are read as YAML
//! scalars, so `9001` is a number and `true` a boolean.
//!
//! Invariant: a `Config` that `load` returns has passed `validate`; every
//! error names the key (`embedding.port: invalid type ...`). Unknown keys are
//! errors, so a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Where the file is looked for when `CONFIG_PATH` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "./config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub embedding: EmbeddingConfig,
    pub indexing: IndexingConfig,
}

/// `embedding:` — the embedding service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (8001).
    pub port: u16,
    /// When set, every call but `/health`, `/ready` and (with
    /// `http.public_docs`) the docs routes needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The one model served when `models` is empty (its alias is its id,
    /// or its directory's name for a `path`).
    pub model: ModelConfig,
    /// Several models served by one process, each with its own queue,
    /// batcher, model thread and admission bound; requests choose one by
    /// `model` (its alias, its id, or the id's part after the last `/`).
    /// The first is the default (TEI's `/info` describes it; requests
    /// without `model` go to it). Empty: `model` alone is served. Setting
    /// both `models` and a non-default `model` is an error. From the
    /// environment: `EMBEDDING__MODELS__0__PATH=/models/a`,
    /// `EMBEDDING__MODELS__1__ALIAS=b`, ... (entries by index), or
    /// `EMBEDDING__MODELS` as a YAML list (`[{id: a}, {path: /m, alias: b}]`).
    pub models: Vec<ServedModelConfig>,
    /// `auto | cpu | cuda | cuda:N | metal`. `auto` tries CUDA, Metal, then CPU.
    pub device: DeviceSpec,
    /// `f32 | f16 | bf16 | int8`. Half precision only on GPUs (the candle
    /// graph); int8 only on the CPU (the fused encoder).
    pub dtype: DType,
    /// `auto | fused | candle`. `fused` is the packed, fused CPU encoder for
    /// BERT-family models (no padding, fused kernels); `candle` is the generic
    /// candle graph (any device). `auto` picks `fused` on CPU when it can.
    pub backend: Backend,
    /// Token budget of one forward pass, counted as padded length × count.
    /// Bounds activation and attention memory; larger batches help
    /// throughput until the cores are saturated.
    pub max_batch_tokens: usize,
    /// Most texts in one request (422 `too_many_inputs` beyond it).
    pub max_client_batch_size: usize,
    /// Requests in flight (tokenizing, queued or running). Beyond it: 429 at
    /// once, never an unbounded queue. With `max_client_batch_size` and
    /// `body_limit_bytes` this bounds the memory of queued work.
    pub max_concurrent_requests: usize,
    /// Largest request body in bytes (413 beyond it).
    pub body_limit_bytes: usize,
    /// Tokenizer worker threads; 0 = one per core.
    pub tokenization_workers: usize,
    /// Threads for the forward pass; 0 = one per core.
    pub inference_threads: usize,
    /// Run one forward pass before reporting healthy.
    pub warmup: bool,
    /// On SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_timeout_secs: u64,
    pub http: HttpServerConfig,
    pub log: LogConfig,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8001,
            api_key: None,
            model: ModelConfig::default(),
            models: Vec::new(),
            device: DeviceSpec::Auto,
            dtype: DType::F32,
            backend: Backend::Auto,
            max_batch_tokens: 16384,
            max_client_batch_size: 256,
            max_concurrent_requests: 512,
            body_limit_bytes: 4 * 1024 * 1024,
            tokenization_workers: 0,
            inference_threads: 0,
            warmup: true,
            shutdown_timeout_secs: 30,
            http: HttpServerConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `embedding.model:` — which model and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Hugging Face model id, resolved through hf-hub's cache (downloading
    /// when online; with `HF_HUB_OFFLINE=1` only the cache is used).
    pub id: String,
    /// Hub revision (branch, tag or commit).
    pub revision: String,
    /// A local directory in Hugging Face layout; when set it wins over `id`.
    pub path: Option<PathBuf>,
    /// hf-hub cache directory; default `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            id: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: "main".into(),
            path: None,
            cache_dir: None,
        }
    }
}

/// One entry of `embedding.models:`: a model, the name requests use for
/// it, and the settings where it differs from the service's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServedModelConfig {
    /// Hugging Face model id (as `embedding.model.id`). `id` or `path` is
    /// required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Hub revision; default `main`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A local directory in Hugging Face layout; wins over `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// hf-hub cache directory; default as `embedding.model.cache_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// The name requests pass as `model`; unique among the entries.
    /// Default: `id`, or the last component of `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Default: `embedding.device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// Default: `embedding.dtype`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<DType>,
    /// Default: `embedding.backend`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// This model's token budget of one forward pass; default
    /// `embedding.max_batch_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<usize>,
    /// This model's requests in flight (its own 429 bound); default
    /// `embedding.max_concurrent_requests`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,
}

/// A served model with every setting decided: an entry of
/// `embedding.models` over the service's values, or `embedding.model`
/// alone (see [`EmbeddingConfig::served_models`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    /// The name requests pass as `model`.
    pub alias: String,
    /// Where the files come from.
    pub model: ModelConfig,
    pub device: DeviceSpec,
    pub dtype: DType,
    pub backend: Backend,
    /// Token budget of one forward pass (padded length × count).
    pub max_batch_tokens: usize,
    /// Requests of this model in flight; beyond it 429.
    pub max_concurrent_requests: usize,
}

impl ServedModel {
    /// The service config with this model's settings in place of the
    /// service-wide ones (`model`, `device`, `dtype`, `backend`,
    /// `max_batch_tokens`, `max_concurrent_requests`): what the model
    /// loader and one runtime read.
    pub fn embedding_config(&self, svc: &EmbeddingConfig) -> EmbeddingConfig {
        EmbeddingConfig {
            model: self.model.clone(),
            models: Vec::new(),
            device: self.device,
            dtype: self.dtype,
            backend: self.backend,
            max_batch_tokens: self.max_batch_tokens,
            max_concurrent_requests: self.max_concurrent_requests,
            ..svc.clone()
        }
    }
}

/// The default alias of a model: its id, or its directory's last component.
fn default_alias(id: &str, path: Option<&Path>) -> String {
    match path {
        Some(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string()),
        None => id.to_string(),
    }
}

impl EmbeddingConfig {
    /// Every served model in order, the default first: the entries of
    /// `models`, or `model` alone when that list is empty. Call on a
    /// validated config (an entry with neither `id` nor `path` gets an
    /// empty id here).
    pub fn served_models(&self) -> Vec<ServedModel> {
        if self.models.is_empty() {
            return vec![ServedModel {
                alias: default_alias(&self.model.id, self.model.path.as_deref()),
                model: self.model.clone(),
                device: self.device,
                dtype: self.dtype,
                backend: self.backend,
                max_batch_tokens: self.max_batch_tokens,
                max_concurrent_requests: self.max_concurrent_requests,
            }];
        }
        self.models
            .iter()
            .map(|m| {
                let id = m.id.clone().unwrap_or_default();
                ServedModel {
                    alias: m
                        .alias
                        .clone()
                        .unwrap_or_else(|| default_alias(&id, m.path.as_deref())),
                    model: ModelConfig {
                        id,
                        revision: m.revision.clone().unwrap_or_else(|| "main".into()),
                        path: m.path.clone(),
                        cache_dir: m.cache_dir.clone().or_else(|| self.model.cache_dir.clone()),
                    },
                    device: m.device.unwrap_or(self.device),
                    dtype: m.dtype.unwrap_or(self.dtype),
                    backend: m.backend.unwrap_or(self.backend),
                    max_batch_tokens: m.max_batch_tokens.unwrap_or(self.max_batch_tokens),
                    max_concurrent_requests: m
                        .max_concurrent_requests
                        .unwrap_or(self.max_concurrent_requests),
                }
            })
            .collect()
    }

    /// Checks `models`: each entry has an id or a path, a non-empty alias
    /// unique among them, and bounds like the service's; `model` is left
    /// at its default when `models` is set (one or the other).
    fn validate_models(&self) -> Result<(), ConfigError> {
        if self.models.is_empty() {
            return Ok(());
        }
        // `cache_dir` is shared: entries without their own use it.
        let single = ModelConfig {
            cache_dir: None,
            ..self.model.clone()
        };
        if single != ModelConfig::default() {
            return Err(invalid(
                "embedding.model",
                "set either embedding.model (one model) or embedding.models (a list), not both",
            ));
        }
        for (i, m) in self.models.iter().enumerate() {
            let key = format!("embedding.models[{i}]");
            let has_id = matches!(m.id.as_deref(), Some(s) if !s.trim().is_empty());
            if !has_id && m.path.is_none() {
                return Err(invalid(
                    &key,
                    "neither `id` (a Hugging Face model id) nor `path` (a local model directory) is set",
                ));
            }
            if matches!(m.alias.as_deref(), Some(a) if a.trim().is_empty()) {
                return Err(invalid(&format!("{key}.alias"), "must not be empty"));
            }
            if matches!(m.max_batch_tokens, Some(n) if n < 16) {
                return Err(invalid(
                    &format!("{key}.max_batch_tokens"),
                    "must be at least 16",
                ));
            }
            if m.max_concurrent_requests == Some(0) {
                return Err(invalid(
                    &format!("{key}.max_concurrent_requests"),
                    "must be at least 1",
                ));
            }
        }
        let served = self.served_models();
        for (i, a) in served.iter().enumerate() {
            if let Some(j) = served[..i].iter().position(|b| b.alias == a.alias) {
                return Err(invalid(
                    &format!("embedding.models[{i}].alias"),
                    format!(
                        "alias `{}` is already the name of embedding.models[{j}]; give each \
                         model a distinct `alias`",
                        a.alias
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!("unknown device `{other}` (expected auto, cpu, cuda, cuda:N or metal)")
                }),
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        match d {
            DeviceSpec::Auto => "auto".into(),
            DeviceSpec::Cpu => "cpu".into(),
            DeviceSpec::Cuda(n) => format!("cuda:{n}"),
            DeviceSpec::Metal => "metal".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    Bf16,
    /// Int8 linear layers on the fused CPU encoder (weights quantised at
    /// load, activations per token at each product); the rest stays f32.
    /// Opt-in: about 2.3x the f32 throughput on all-MiniLM-L6-v2, cosine to
    /// the float64 reference >= 0.994 (f32: 1.0).
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Auto,
    Fused,
    Candle,
}

/// `indexing:` — the indexing service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexingConfig {
    pub host: String,
    /// Port to bind (8000).
    pub port: u16,
    /// Where collections live; one directory each.
    pub data_dir: PathBuf,
    /// Base URL of the embedding service (also `EMBEDDING_SERVICE_URL`).
    pub embedding_service_url: String,
    /// When set, every call but `/health`, `/ready` and (with
    /// `http.public_docs`) the docs routes needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Key sent to the embedding service, if it has one.
    pub embedding_api_key: Option<String>,
    /// The embedding service's model (alias or id, as its `/v1/models`
    /// lists them) for collections that name none in `embedding_model`,
    /// the default collection included. Unset: the embedding service's
    /// default model.
    pub embedding_model: Option<String>,
    /// Per-attempt timeout of an embedding call.
    pub embedding_timeout_ms: u64,
    /// Retries of an embedding call on connection errors, 429 and 5xx.
    pub embedding_retries: u32,
    /// Largest request body in bytes.
    pub body_limit_bytes: usize,
    /// Largest snapshot file `POST /collections/{name}/snapshots/upload`
    /// takes, in bytes (streamed to disk, never held in memory; the body
    /// must still arrive within `http.body_read_timeout_ms`). Bounds the
    /// disk an upload can fill.
    pub snapshot_upload_limit_bytes: u64,
    /// Collection used by `/embed` and `/search` when none is named.
    pub default_collection: String,
    pub wal: WalConfig,
    pub flush_threshold: FlushThreshold,
    pub http: HttpServerConfig,
    pub log: LogConfig,
    /// The URL other replicas reach this one at, published in
    /// `<data_dir>/writer.json` while this process is the writer (followers
    /// forward writes there). Unset: `http://<hostname>:<port>`, which is
    /// what Docker's DNS resolves between containers of one network.
    pub advertise_url: Option<String>,
    pub replication: ReplicationConfig,
}

/// `indexing.replication:` — replicas on one data directory: the one
/// holding its lock writes, the others follow and forward writes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Longest wait of a read with `consistency.after` (or header
    /// `x-consistency-after`) for this replica to apply that operation,
    /// in milliseconds; past it the read answers 504 `consistency_timeout`.
    pub consistency_timeout_ms: u64,
    /// How often a follower looks for new WAL records and manifest
    /// changes, in milliseconds: the floor of follower lag. Lower costs a
    /// few more `stat`/`read` calls per collection.
    pub follow_poll_ms: u64,
    /// How often a follower tries the data directory's lock, in
    /// milliseconds: after the writer dies, takeover starts within this.
    pub lock_retry_ms: u64,
    /// Longest a forwarded write may take at the writer, in milliseconds
    /// (text writes include the embedding call). Connecting gets at most
    /// 2 s; a writer that cannot be reached answers 503
    /// `writer_unavailable` at once.
    pub forward_timeout_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            consistency_timeout_ms: 5_000,
            follow_poll_ms: 5,
            lock_retry_ms: 100,
            forward_timeout_ms: 120_000,
        }
    }
}

impl Default for IndexingConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8000,
            data_dir: PathBuf::from("./data"),
            embedding_service_url: "http://127.0.0.1:8001".into(),
            api_key: None,
            embedding_api_key: None,
            embedding_model: None,
            embedding_timeout_ms: 30_000,
            embedding_retries: 3,
            body_limit_bytes: 32 * 1024 * 1024,
            snapshot_upload_limit_bytes: 64 * 1024 * 1024 * 1024,
            default_collection: "documents".into(),
            wal: WalConfig::default(),
            flush_threshold: FlushThreshold::default(),
            http: HttpServerConfig::default(),
            advertise_url: None,
            replication: ReplicationConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `embedding.http:` / `indexing.http:` — limits on client connections, so
/// slow or idle clients cannot hold the server's connections and tasks.
/// Each limit closes the connection when it passes (a slow body also gets
/// 408 `request_timeout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// Milliseconds for a whole request head (request line and headers),
    /// counted from when the server starts waiting for it: on accept and
    /// after each response. So it is also the longest a keep-alive
    /// connection stays open between requests. Lower sheds slow clients
    /// sooner; clients on very slow links need more.
    pub header_read_timeout_ms: u64,
    /// Milliseconds for a whole request body, counted from when its head
    /// arrived (one deadline, however the bytes trickle). Past it the request
    /// gets 408 `request_timeout` and the connection is closed. Large uploads
    /// over slow links need more.
    pub body_read_timeout_ms: u64,
    /// Milliseconds a connection may have no request in flight and move no
    /// bytes in either direction (a client that stops reading its response,
    /// or stalls mid-request) before it is closed. A connection waiting for
    /// its next request is closed by `header_read_timeout_ms` when that is
    /// shorter.
    pub idle_timeout_ms: u64,
    /// Connections served at once. Past it new connections wait in the
    /// kernel's accept backlog (no task, no buffers) until one closes. Each
    /// open connection costs a task and buffers (tens of KiB).
    pub max_connections: usize,
    /// Browser origins allowed to call the service (CORS): a list of
    /// origins (`https://app.example.com`; `http://localhost:*` stands for
    /// any port), `*` for any origin, or `off` (no CORS headers; browsers
    /// then refuse cross-origin calls). Preflight (`OPTIONS`) requests of
    /// allowed origins are answered without the API key. Default: local
    /// development origins (`http://localhost:*`, `http://127.0.0.1:*`,
    /// `http://[::1]:*`).
    pub cors: CorsOrigins,
    /// Whether `/`, `/docs` (Swagger UI) and `/openapi.json` answer without
    /// the API key (default true, like text-embeddings-inference). With
    /// false they need `Authorization: Bearer <key>` like every other route
    /// when a key is set.
    pub public_docs: bool,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            cors: CorsOrigins::default(),
            public_docs: true,
        }
    }
}

/// `*.http.cors`: which browser origins may call the service.
///
/// In YAML: a list of origins, `"*"`, or `off` (also `false` or null). From
/// the environment (`INDEXING__HTTP__CORS`): `*`, `off`, or origins
/// separated by commas. An origin is `http://` or `https://`, a host and an
/// optional port, where the port `*` stands for any port (and none); no
/// path, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: browsers refuse cross-origin calls.
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// These origins (patterns with a `:*` port allowed).
    List(Vec<String>),
}

impl Default for CorsOrigins {
    fn default() -> Self {
        Self::List(
            ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
                .map(String::from)
                .to_vec(),
        )
    }
}

impl CorsOrigins {
    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Off => false,
            Self::Any => true,
            Self::List(list) => list.iter().any(|pattern| origin_matches(pattern, origin)),
        }
    }

    /// Checks every origin's form. Errors: a message naming the bad entry.
    fn validate(&self) -> Result<(), String> {
        let Self::List(list) = self else {
            return Ok(());
        };
        for o in list {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("`{o}` is not an origin: it must start with http:// or https://")
                })?;
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, Some(p)),
                _ => (rest, None),
            };
            let host_ok = !host.is_empty()
                && !host.contains(['/', '?', '#', '*', ' '])
                && (host.starts_with('[') == host.ends_with(']'));
            let port_ok = match port {
                None => true,
                Some("*") => true,
                Some(p) => p.parse::<u16>().is_ok(),
            };
            if !host_ok || !port_ok {
                return Err(format!(
                    "`{o}` is not an origin: expected scheme://host or scheme://host:port \
                     (port `*` for any), with no path"
                ));
            }
        }
        Ok(())
    }
}

/// `pattern` matches `origin` exactly, or, ending in `:*`, with any port or
/// none.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_suffix(":*") {
        Some(base) => match origin.strip_prefix(base) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        },
        None => pattern == origin,
    }
}

impl Serialize for CorsOrigins {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_str("off"),
            Self::Any => s.serialize_str("*"),
            Self::List(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CorsOrigins;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of origins, \"*\", or off")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CorsOrigins, E> {
                if v {
                    Err(E::custom(
                        "`true` is ambiguous: give a list of origins, or \"*\" for any origin",
                    ))
                } else {
                    Ok(CorsOrigins::Off)
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<CorsOrigins, E> {
                Ok(CorsOrigins::Off)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<CorsOrigins, E> {
                Ok(CorsOrigins::Off)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CorsOrigins, E> {
                match v.trim() {
                    "" | "off" | "none" | "false" => Ok(CorsOrigins::Off),
                    "*" => Ok(CorsOrigins::Any),
                    list => Ok(CorsOrigins::List(
                        list.split(',')
                            .map(|o| o.trim().to_string())
                            .filter(|o| !o.is_empty())
                            .collect(),
                    )),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CorsOrigins, A::Error> {
                let mut list = Vec::new();
                while let Some(o) = seq.next_element::<String>()? {
                    list.push(o.trim().to_string());
                }
                if list.iter().any(|o| o == "*") {
                    return Ok(CorsOrigins::Any);
                }
                Ok(CorsOrigins::List(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// `embedding.log:` / `indexing.log:` — how the service writes its log
/// (to stderr). Verbosity is `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (one human-readable line per event) or `json` (one JSON object
    /// per line, for log collectors). The environment variable
    /// `LOG_FORMAT=json|text` wins over this.
    pub format: LogFormat,
    /// `auto` (colours only when stderr is a terminal and `NO_COLOR` is
    /// unset), `always`, or `never`. JSON lines never carry colours.
    pub color: LogColor,
}

/// See [`LogConfig::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, the
    /// event's fields, and the request `span`).
    Json,
}

/// See [`LogConfig::color`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogColor {
    /// Colours when stderr is a terminal and `NO_COLOR` is unset.
    #[default]
    Auto,
    /// Always colours (text format only).
    Always,
    /// Never colours.
    Never,
}

impl HttpServerConfig {
    /// Checks the section found at `section` (`embedding.http`); Errors:
    /// `ConfigError::Invalid` naming the key when a value is 0.
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let checks = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
        ];
        for (key, value) in checks {
            if value == 0 {
                return Err(invalid(&format!("{section}.{key}"), "must be at least 1"));
            }
        }
        self.cors
            .validate()
            .map_err(|m| invalid(&format!("{section}.cors"), m))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// `always` (fsync before acknowledging; concurrent writers share one),
    /// `interval` (fsync every `fsync_interval_ms`; a crash may lose that
    /// window), `never` (leave it to the OS).
    pub fsync: FsyncMode,
    pub fsync_interval_ms: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncMode::Always,
            fsync_interval_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushThreshold {
    /// Seal the appendable segment after this many vectors.
    pub vectors: usize,
    /// ... or after this many bytes of vectors and payloads.
    pub bytes: usize,
}

impl Default for FlushThreshold {
    fn default() -> Self {
        Self {
            vectors: 20_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Loads from `CONFIG_PATH` (or `./config.yaml` when present) and the
    /// process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let (path, required) = match std::env::var_os("CONFIG_PATH") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let path = (required || path.exists()).then_some(path);
        Self::load_from(path.as_deref(), std::env::vars())
    }

    /// Loads from an optional file and an explicit environment (for tests).
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                let v: Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                match v {
                    Value::Null => Value::Mapping(Mapping::new()),
                    m @ Value::Mapping(_) => m,
                    _ => {
                        return Err(ConfigError::Syntax {
                            path: path.to_path_buf(),
                            message: "top level must be a mapping".into(),
                        })
                    }
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (var, raw) in env {
            let keys: Vec<String> = if var == "EMBEDDING_SERVICE_URL" {
                vec!["indexing".into(), "embedding_service_url".into()]
            } else if var.starts_with("EMBEDDING__") || var.starts_with("INDEXING__") {
                var.split("__").map(|s| s.to_ascii_lowercase()).collect()
            } else {
                continue;
            };
            if keys.iter().any(|k| k.is_empty()) {
                return Err(ConfigError::Env {
                    var,
                    message: "empty key segment".into(),
                });
            }
            let value: Value = if raw.is_empty() {
                Value::Null
            } else {
                serde_yaml::from_str(&raw).unwrap_or(Value::String(raw.clone()))
            };
            // Strings that look like YAML collections stay strings, but for
            // the one list of sections (`EMBEDDING__MODELS`).
            let value = match value {
                v @ Value::Sequence(_) if keys == ["embedding", "models"] => v,
                Value::Mapping(_) | Value::Sequence(_) => Value::String(raw),
                v => v,
            };
            set_path(&mut tree, &keys, value)
                .map_err(|message| ConfigError::Env { var, message })?;
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            invalid(&key, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.embedding;
        if e.max_batch_tokens < 16 {
            return Err(invalid("embedding.max_batch_tokens", "must be at least 16"));
        }
        if e.max_client_batch_size == 0 {
            return Err(invalid(
                "embedding.max_client_batch_size",
                "must be at least 1",
            ));
        }
        if e.max_concurrent_requests == 0 {
            return Err(invalid(
                "embedding.max_concurrent_requests",
                "must be at least 1",
            ));
        }
        if e.body_limit_bytes < 1024 {
            return Err(invalid(
                "embedding.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        e.validate_models()?;
        if e.models.is_empty() && e.model.path.is_none() && e.model.id.trim().is_empty() {
            return Err(invalid(
                "embedding.model.id",
                "set a model id or embedding.model.path",
            ));
        }
        if matches!(e.api_key.as_deref(), Some("")) {
            return Err(invalid(
                "embedding.api_key",
                "must not be empty (omit it to disable auth)",
            ));
        }
        e.http.validate("embedding.http")?;
        let i = &self.indexing;
        i.http.validate("indexing.http")?;
        if !(i.embedding_service_url.starts_with("http://")
            || i.embedding_service_url.starts_with("https://"))
        {
            return Err(invalid(
                "indexing.embedding_service_url",
                format!("`{}` is not an http(s) URL", i.embedding_service_url),
            ));
        }
        if i.flush_threshold.vectors == 0 {
            return Err(invalid(
                "indexing.flush_threshold.vectors",
                "must be at least 1",
            ));
        }
        if i.embedding_timeout_ms == 0 {
            return Err(invalid(
                "indexing.embedding_timeout_ms",
                "must be at least 1",
            ));
        }
        if matches!(i.api_key.as_deref(), Some("")) {
            return Err(invalid(
                "indexing.api_key",
                "must not be empty (omit it to disable auth)",
            ));
        }
        if let Some(u) = &i.advertise_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(
                    "indexing.advertise_url",
                    "must start with http:// or https://",
                ));
            }
        }
        let r = &i.replication;
        for (key, v) in [
            (
                "indexing.replication.consistency_timeout_ms",
                r.consistency_timeout_ms,
            ),
            ("indexing.replication.follow_poll_ms", r.follow_poll_ms),
            ("indexing.replication.lock_retry_ms", r.lock_retry_ms),
            (
                "indexing.replication.forward_timeout_ms",
                r.forward_timeout_ms,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The effective config for logging, secrets replaced.
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        let red = |k: &mut Option<String>| {
            if k.is_some() {
                *k = Some("<redacted>".into())
            }
        };
        red(&mut c.embedding.api_key);
        red(&mut c.indexing.api_key);
        red(&mut c.indexing.embedding_api_key);
        c
    }
}

fn set_path(tree: &mut Value, keys: &[String], value: Value) -> Result<(), String> {
    let mut cur = tree;
    for (i, k) in keys.iter().enumerate() {
        // A number indexes a list (`EMBEDDING__MODELS__1__ALIAS`); entries
        // up to it are made as needed.
        if let Ok(idx) = k.parse::<usize>() {
            if cur.is_null() {
                *cur = Value::Sequence(Vec::new());
            }
            if let Value::Sequence(seq) = cur {
                while seq.len() <= idx {
                    seq.push(Value::Mapping(Mapping::new()));
                }
                if i + 1 == keys.len() {
                    seq[idx] = value;
                    return Ok(());
                }
                cur = &mut seq[idx];
                continue;
            }
        }
        let map = match cur {
            Value::Mapping(m) => m,
            Value::Null => {
                *cur = Value::Mapping(Mapping::new());
                match cur {
                    Value::Mapping(m) => m,
                    _ => unreachable!(),
                }
            }
            _ => return Err(format!("`{}` is not a section", keys[..i].join("."))),
        };
        let key = Value::String(k.clone());
        if i + 1 == keys.len() {
            map.insert(key, value);
            return Ok(());
        }
        cur = map.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.embedding.port, 8001);
        assert_eq!(c.indexing.port, 8000);
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = Config::load_from(
            None,
            env(&[
                ("EMBEDDING__PORT", "9001"),
                ("EMBEDDING__MODEL__PATH", "/models/minilm"),
                ("INDEXING__DATA_DIR", "/data"),
                ("EMBEDDING_SERVICE_URL", "http://embed:8001"),
                ("INDEXING__WAL__FSYNC", "never"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.embedding.port, 9001);
        assert_eq!(
            c.embedding.model.path.as_deref(),
            Some(Path::new("/models/minilm"))
        );
        assert_eq!(c.indexing.data_dir, PathBuf::from("/data"));
        assert_eq!(c.indexing.embedding_service_url, "http://embed:8001");
        assert_eq!(c.indexing.wal.fsync, FsyncMode::Never);
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::load_from(None, env(&[("EMBEDDING__PORT", "abc")])).unwrap_err();
        assert!(err.to_string().contains("embedding.port"), "{err}");
        let err = Config::load_from(None, env(&[("EMBEDDING__DEVICE", "tpu")])).unwrap_err();
        assert!(err.to_string().contains("embedding.device"), "{err}");
        let err = Config::load_from(None, env(&[("EMBEDDING__PROT", "1")])).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err =
            Config::load_from(None, env(&[("EMBEDDING__MAX_BATCH_TOKENS", "0")])).unwrap_err();
        assert!(
            err.to_string().contains("embedding.max_batch_tokens"),
            "{err}"
        );
    }

    #[test]
    fn http_limits_have_defaults_env_overrides_and_named_errors() {
        let c = Config::load_from(None, env(&[])).unwrap();
        for h in [&c.embedding.http, &c.indexing.http] {
            assert_eq!(h.header_read_timeout_ms, 10_000);
            assert_eq!(h.body_read_timeout_ms, 30_000);
            assert_eq!(h.idle_timeout_ms, 60_000);
            assert_eq!(h.max_connections, 1024);
        }
        let c = Config::load_from(
            None,
            env(&[
                ("INDEXING__HTTP__HEADER_READ_TIMEOUT_MS", "250"),
                ("INDEXING__HTTP__MAX_CONNECTIONS", "8"),
                ("EMBEDDING__HTTP__BODY_READ_TIMEOUT_MS", "500"),
                ("EMBEDDING__HTTP__IDLE_TIMEOUT_MS", "700"),
            ]),
        )
        .unwrap();
        assert_eq!(c.indexing.http.header_read_timeout_ms, 250);
        assert_eq!(c.indexing.http.max_connections, 8);
        assert_eq!(c.indexing.http.body_read_timeout_ms, 30_000);
        assert_eq!(c.embedding.http.body_read_timeout_ms, 500);
        assert_eq!(c.embedding.http.idle_timeout_ms, 700);
        assert_eq!(c.embedding.http.header_read_timeout_ms, 10_000);
        for (var, key) in [
            (
                "INDEXING__HTTP__HEADER_READ_TIMEOUT_MS",
                "indexing.http.header_read_timeout_ms",
            ),
            (
                "INDEXING__HTTP__BODY_READ_TIMEOUT_MS",
                "indexing.http.body_read_timeout_ms",
            ),
            (
                "EMBEDDING__HTTP__IDLE_TIMEOUT_MS",
                "embedding.http.idle_timeout_ms",
            ),
            (
                "EMBEDDING__HTTP__MAX_CONNECTIONS",
                "embedding.http.max_connections",
            ),
        ] {
            let err = Config::load_from(None, env(&[(var, "0")])).unwrap_err();
            assert!(err.to_string().contains(key), "{var}: {err}");
        }
        let err =
            Config::load_from(None, env(&[("INDEXING__HTTP__MAX_CONNECTIONS", "-1")])).unwrap_err();
        assert!(
            err.to_string().contains("indexing.http.max_connections"),
            "{err}"
        );
        let err =
            Config::load_from(None, env(&[("INDEXING__HTTP__HEADER_TIMEOUT", "1")])).unwrap_err();
        assert!(err.to_string().contains("header_timeout"), "{err}");
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(
            &p,
            "embedding:\n  port: 7000\n  device: cuda:1\nindexing:\n  port: 7001\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&p), env(&[("INDEXING__PORT", "7002")])).unwrap();
        assert_eq!(c.embedding.port, 7000);
        assert_eq!(c.embedding.device, DeviceSpec::Cuda(1));
        assert_eq!(c.indexing.port, 7002);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn cors_takes_a_list_a_star_or_off_and_names_bad_origins() {
        let c = Config::load_from(None, env(&[])).unwrap();
        for h in [&c.embedding.http, &c.indexing.http] {
            assert!(h.public_docs);
            assert!(h.cors.allows("http://localhost:5173"));
            assert!(h.cors.allows("http://localhost"));
            assert!(h.cors.allows("http://127.0.0.1:8080"));
            assert!(h.cors.allows("http://[::1]:3000"));
            assert!(!h.cors.allows("https://localhost:5173"));
            assert!(!h.cors.allows("http://localhost.evil.example"));
            assert!(!h.cors.allows("http://localhost:80x"));
            assert!(!h.cors.allows("http://example.com"));
        }
        let load = |v: &str| Config::load_from(None, env(&[("INDEXING__HTTP__CORS", v)]));
        assert_eq!(load("*").unwrap().indexing.http.cors, CorsOrigins::Any);
        assert_eq!(load("off").unwrap().indexing.http.cors, CorsOrigins::Off);
        assert_eq!(load("false").unwrap().indexing.http.cors, CorsOrigins::Off);
        assert_eq!(
            load("https://a.example, http://localhost:*")
                .unwrap()
                .indexing
                .http
                .cors,
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:*".into()
            ])
        );
        for bad in ["a.example", "https://a.example/", "http://a:x", "ftp://a"] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("indexing.http.cors"), "{bad}: {e}");
        }
        let e = load("true").unwrap_err().to_string();
        assert!(e.contains("indexing.http.cors"), "{e}");
        let dir = std::env::temp_dir().join(format!("cfg-cors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(
            &p,
            "embedding:\n  http:\n    cors: [\"*\"]\n    public_docs: false\n  log:\n    format: json\nindexing:\n  http:\n    cors: [https://b.example:8443]\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&p), env(&[])).unwrap();
        assert_eq!(c.embedding.http.cors, CorsOrigins::Any);
        assert!(!c.embedding.http.public_docs);
        assert_eq!(c.embedding.log.format, LogFormat::Json);
        assert!(c.indexing.http.cors.allows("https://b.example:8443"));
        assert!(!c.indexing.http.cors.allows("https://b.example"));
        // What print-config writes reads back the same.
        let yaml = serde_yaml::to_string(&c).unwrap();
        std::fs::write(&p, yaml).unwrap();
        let again = Config::load_from(Some(&p), env(&[])).unwrap();
        assert_eq!(again.embedding.http, c.embedding.http);
        assert_eq!(again.indexing.http, c.indexing.http);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn one_model_is_the_one_element_list() {
        let c =
            Config::load_from(None, env(&[("EMBEDDING__MODEL__PATH", "/models/minilm")])).unwrap();
        let served = c.embedding.served_models();
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].alias, "minilm");
        assert_eq!(served[0].model, c.embedding.model);
        assert_eq!(served[0].max_batch_tokens, c.embedding.max_batch_tokens);
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(
            c.embedding.served_models()[0].alias,
            "sentence-transformers/all-MiniLM-L6-v2"
        );
    }

    #[test]
    fn several_models_from_file_and_env_with_their_own_settings() {
        let dir = std::env::temp_dir().join(format!("cfg-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(
            &p,
            "embedding:\n  device: cpu\n  max_batch_tokens: 4096\n  models:\n    - id: sentence-transformers/all-MiniLM-L6-v2\n    - path: /models/xlmr\n      alias: xlmr\n      backend: candle\n      max_batch_tokens: 512\n      max_concurrent_requests: 8\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&p),
            env(&[
                ("EMBEDDING__MODELS__1__DTYPE", "f32"),
                ("EMBEDDING__MODELS__2__ID", "intfloat/e5-small-v2"),
                ("EMBEDDING__MODELS__2__ALIAS", "e5"),
            ]),
        )
        .unwrap();
        let s = c.embedding.served_models();
        let aliases: Vec<&str> = s.iter().map(|m| m.alias.as_str()).collect();
        assert_eq!(
            aliases,
            ["sentence-transformers/all-MiniLM-L6-v2", "xlmr", "e5"]
        );
        assert_eq!(s[0].max_batch_tokens, 4096, "the service's value");
        assert_eq!(s[0].backend, Backend::Auto);
        assert_eq!(s[1].max_batch_tokens, 512, "the entry's own value");
        assert_eq!(s[1].max_concurrent_requests, 8);
        assert_eq!(s[1].backend, Backend::Candle);
        assert_eq!(s[1].model.path.as_deref(), Some(Path::new("/models/xlmr")));
        assert_eq!(s[2].model.id, "intfloat/e5-small-v2");
        assert_eq!(s[2].model.revision, "main");
        assert!(s.iter().all(|m| m.device == DeviceSpec::Cpu));
        let one = s[1].embedding_config(&c.embedding);
        assert_eq!(one.model, s[1].model);
        assert_eq!(one.max_batch_tokens, 512);
        assert!(one.models.is_empty());
        // What print-config writes reads back the same.
        std::fs::write(&p, serde_yaml::to_string(&c).unwrap()).unwrap();
        let again = Config::load_from(Some(&p), env(&[])).unwrap();
        assert_eq!(again.embedding.models, c.embedding.models);
        // The whole list from one variable.
        let c = Config::load_from(
            None,
            env(&[(
                "EMBEDDING__MODELS",
                "[{id: sentence-transformers/all-MiniLM-L6-v2, alias: minilm}, {path: /m/x}]",
            )]),
        )
        .unwrap();
        let aliases: Vec<String> = c
            .embedding
            .served_models()
            .into_iter()
            .map(|m| m.alias)
            .collect();
        assert_eq!(aliases, ["minilm", "x"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_model_lists_are_named() {
        let load =
            |pairs: &[(&str, &str)]| Config::load_from(None, env(pairs)).unwrap_err().to_string();
        let e = load(&[
            ("EMBEDDING__MODELS__0__ID", "m"),
            ("EMBEDDING__MODELS__1__PATH", "/x/m"),
        ]);
        assert!(e.contains("embedding.models[1].alias"), "{e}");
        assert!(
            e.contains("alias `m`") && e.contains("embedding.models[0]"),
            "{e}"
        );
        let e = load(&[
            ("EMBEDDING__MODELS__0__ID", "a/m"),
            ("EMBEDDING__MODELS__1__ALIAS", "b"),
        ]);
        assert!(e.contains("embedding.models[1]"), "{e}");
        assert!(
            e.contains("neither `id`") && e.contains("nor `path`"),
            "{e}"
        );
        let e = load(&[
            ("EMBEDDING__MODELS__0__ID", "a/m"),
            ("EMBEDDING__MODEL__PATH", "/models/minilm"),
        ]);
        assert!(
            e.contains("embedding.model") && e.contains("not both"),
            "{e}"
        );
        let e = load(&[
            ("EMBEDDING__MODELS__0__ID", "a/m"),
            ("EMBEDDING__MODELS__0__MAX_BATCH_TOKENS", "3"),
        ]);
        assert!(e.contains("embedding.models[0].max_batch_tokens"), "{e}");
        let e = load(&[("EMBEDDING__MODELS__0__DEVICE", "tpu")]);
        assert!(e.contains("embedding.models[0].device"), "{e}");
        let e = load(&[("EMBEDDING__MODELS__0__NAME", "x")]);
        assert!(e.contains("name"), "{e}");
        let e = load(&[("EMBEDDING__MODELS", "[{id: a/m, alias: ''}]")]);
        assert!(e.contains("embedding.models[0].alias"), "{e}");
    }

    #[test]
    fn root_config_yaml_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.yaml");
        let c = Config::load_from(Some(&p), env(&[])).unwrap();
        // The file states the defaults.
        assert_eq!(c.indexing.http, HttpServerConfig::default());
        assert_eq!(c.embedding.http, HttpServerConfig::default());
        assert_eq!(c.indexing.log, LogConfig::default());
    }
}
