//! HTTP client for the embedding service, used by the indexing service.
//!
//! Each call has a per-attempt timeout and is retried on connection errors,
//! 429 and 5xx with exponential backoff and full jitter. A 4xx other than
//! 429 is the caller's fault and is returned at once.
//!
//! Replicas: the service's host name is resolved to every address behind it
//! (re-resolved every few seconds), and calls go round-robin over them, so
//! `docker compose up --scale embedding-service=3` spreads the load; a retry
//! moves on to the next address.
//!
//! Many texts: [`EmbeddingClient::embed_all`] splits them into calls that
//! respect the service's limits as its `/info` states them (texts per call:
//! `max_client_batch_size`; request body: `body_limit_bytes`), read once
//! and cached. At most `max_in_flight` calls run at once; the vectors come
//! back in input order, and either every call succeeded or the whole call
//! fails (the caller writes nothing).
//!
//! Several models: the `_for` calls name the served model to use (its
//! alias, id, or the id's last part, as `GET /v1/models` lists them);
//! `None` is the service's default model. [`EmbeddingClient::model_info`]
//! gives one model's facts (its dimension) from `/info`.

use crate::error::{ErrorBody, ErrorCode};
use crate::wire::embedding::{EmbedInputs, EmbedRequest, InfoResponse, ServedModelInfo};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the service (after retries), or it kept failing.
    #[error("embedding service unavailable: {0}")]
    Unavailable(String),
    /// The service rejected the request (4xx): the input is at fault.
    #[error("embedding service rejected the request ({code}): {message}")]
    Rejected { code: ErrorCode, message: String },
    /// The service answered something we could not read.
    #[error("unexpected response from the embedding service: {0}")]
    Protocol(String),
    /// One text alone makes a request body over the service's limit, so no
    /// split can send it. `index` is the text's position in the input.
    #[error(
        "input {index} is {bytes} bytes as JSON, over the embedding service's \
         limit of {limit} bytes per request"
    )]
    TooLarge {
        index: usize,
        bytes: usize,
        limit: usize,
    },
}

/// Body limit assumed when the service's `/info` does not state one (the
/// embedding service's default, 4 MiB).
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// Calls of one [`EmbeddingClient::embed_all`] in flight at once (default).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// What one call to the embedding service may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Texts per call (the service's `max_client_batch_size`), at least 1.
    pub max_texts: usize,
    /// Bytes of one request body (the service's `body_limit_bytes`).
    pub max_body_bytes: usize,
}

impl CallLimits {
    /// The limits an `/info` answer states; a missing body limit is
    /// [`DEFAULT_BODY_LIMIT_BYTES`].
    pub fn from_info(info: &InfoResponse) -> Self {
        Self {
            max_texts: info.max_client_batch_size.max(1),
            max_body_bytes: info.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT_BYTES),
        }
    }
}

/// The `/embed` request body for `texts` to `model`, as sent.
fn embed_request(texts: Vec<String>, model: Option<&str>) -> EmbedRequest {
    EmbedRequest {
        inputs: EmbedInputs::texts(texts),
        model: model.map(str::to_owned),
        normalize: None,
        truncate: Some(true),
        truncation_direction: None,
        prompt_name: None,
        dimensions: None,
    }
}

/// Counts the bytes serde_json writes.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    let mut n = ByteCount(0);
    serde_json::to_writer(&mut n, v).expect("serializing to a counter cannot fail");
    n.0
}

/// Splits `texts` into consecutive ranges whose `/embed` request bodies
/// hold at most `limits.max_texts` texts and `limits.max_body_bytes` bytes
/// (exactly as serialized). Returns the ranges in order, covering every
/// text; none when `texts` is empty. Errors: [`ClientError::TooLarge`] for
/// the first text whose request alone is over the byte limit.
pub fn split_for_limits(
    texts: &[String],
    limits: CallLimits,
) -> Result<Vec<std::ops::Range<usize>>, ClientError> {
    split_for_model(texts, limits, None)
}

/// [`split_for_limits`] for requests naming `model`.
pub fn split_for_model(
    texts: &[String],
    limits: CallLimits,
    model: Option<&str>,
) -> Result<Vec<std::ops::Range<usize>>, ClientError> {
    // `{"inputs":[],...}`: everything but the texts and their commas.
    let overhead = json_len(&embed_request(Vec::new(), model));
    let max_texts = limits.max_texts.max(1);
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, overhead);
    for (i, t) in texts.iter().enumerate() {
        let len = json_len(t.as_str());
        if overhead + len > limits.max_body_bytes {
            return Err(ClientError::TooLarge {
                index: i,
                bytes: overhead + len,
                limit: limits.max_body_bytes,
            });
        }
        let comma = usize::from(i > start);
        if i > start && (i - start == max_texts || bytes + comma + len > limits.max_body_bytes) {
            out.push(start..i);
            start = i;
            bytes = overhead + len;
        } else {
            bytes += comma + len;
        }
    }
    if start < texts.len() {
        out.push(start..texts.len());
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
    retries: u32,
    targets: std::sync::Arc<Targets>,
    /// The service's call limits, read from `/info` on first use; cleared
    /// when the service refuses a call as too big (it may have changed).
    limits: std::sync::Arc<std::sync::Mutex<Option<CallLimits>>>,
    max_in_flight: usize,
}

/// The addresses behind the base URL's host, re-resolved now and then.
#[derive(Debug)]
struct Targets {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    state: std::sync::Mutex<(Vec<std::net::SocketAddr>, std::time::Instant)>,
    next: std::sync::atomic::AtomicUsize,
}

const RESOLVE_EVERY: Duration = Duration::from_secs(5);

impl Targets {
    fn parse(base: &str) -> Option<Targets> {
        let (scheme, rest) = base.split_once("://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => {
                (h.to_string(), p.parse().ok()?)
            }
            _ => (
                authority.to_string(),
                if scheme == "https" { 443 } else { 80 },
            ),
        };
        Some(Targets {
            scheme: scheme.into(),
            host,
            port,
            path: path.into(),
            state: std::sync::Mutex::new((
                Vec::new(),
                std::time::Instant::now() - RESOLVE_EVERY * 2,
            )),
            next: Default::default(),
        })
    }

    /// The base URL for the next call: an address behind the host, in turn.
    async fn pick(&self, fallback: &str) -> String {
        if self.scheme != "http" {
            // TLS needs the host name; let the HTTP client resolve it.
            return fallback.to_string();
        }
        let stale = { self.state.lock().unwrap().1.elapsed() >= RESOLVE_EVERY };
        if stale {
            if let Ok(addrs) =
                tokio::net::lookup_host((self.host.trim_matches(['[', ']']), self.port)).await
            {
                let mut v: Vec<_> = addrs.collect();
                v.sort();
                v.dedup();
                *self.state.lock().unwrap() = (v, std::time::Instant::now());
            }
        }
        let addrs = self.state.lock().unwrap().0.clone();
        if addrs.is_empty() {
            return fallback.to_string();
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % addrs.len();
        format!("http://{}{}", addrs[i], self.path)
    }
}

impl EmbeddingClient {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // Below the servers' default header read timeout (10 s), which also
            // closes idle keep-alive connections: a pooled connection is dropped
            // here before the server would close it under a new request.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let base = base_url.trim_end_matches('/').to_string();
        let targets = Targets::parse(&base)
            .ok_or_else(|| ClientError::Protocol(format!("bad embedding service URL `{base}`")))?;
        Ok(Self {
            base,
            http,
            api_key,
            retries,
            targets: std::sync::Arc::new(targets),
            limits: Default::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        })
    }

    /// The same client with at most `n` (at least 1) calls of one
    /// [`Self::embed_all`] in flight at once.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The service's call limits: cached, else read from its `/info`.
    /// Errors: as [`Self::info`].
    pub async fn call_limits(&self) -> Result<CallLimits, ClientError> {
        if let Some(l) = *self.limits.lock().unwrap() {
            return Ok(l);
        }
        let l = CallLimits::from_info(&self.info().await?);
        *self.limits.lock().unwrap() = Some(l);
        Ok(l)
    }

    /// Embeds any number of texts: split by [`split_for_limits`] into calls
    /// the service accepts, at most `max_in_flight` (default 4) at once.
    /// Returns one vector per text, in input order. Errors: the first
    /// failing call's error (the calls still running are dropped, and
    /// nothing is returned); [`ClientError::TooLarge`] before any call when
    /// one text cannot fit a request; as [`Self::info`] when the limits are
    /// not cached yet and `/info` fails.
    pub async fn embed_all(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ClientError> {
        self.embed_all_for(None, texts).await
    }

    /// [`Self::embed_all`] with the served model `model` (`None`: the
    /// service's default). Errors: as `embed_all`; an unknown model is
    /// `Rejected` with `model_not_found`.
    pub async fn embed_all_for(
        &self,
        model: Option<&str>,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ClientError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let limits = self.call_limits().await?;
        let ranges = split_for_model(&texts, limits, model)?;
        let result = if ranges.len() == 1 {
            self.embed_for(model, texts).await
        } else {
            self.embed_chunks(model, texts, ranges).await
        };
        if let Err(ClientError::Rejected {
            code: ErrorCode::TooManyInputs | ErrorCode::PayloadTooLarge,
            ..
        }) = &result
        {
            // The service's limits shrank since they were read.
            *self.limits.lock().unwrap() = None;
        }
        result
    }

    /// One call per range, a bounded number at once; results in order.
    async fn embed_chunks(
        &self,
        model: Option<&str>,
        texts: Vec<String>,
        ranges: Vec<std::ops::Range<usize>>,
    ) -> Result<Vec<Vec<f32>>, ClientError> {
        let n = texts.len();
        let mut rest = texts.into_iter();
        let mut pending = ranges
            .iter()
            .map(|r| rest.by_ref().take(r.len()).collect::<Vec<String>>())
            .enumerate();
        let mut done: Vec<Option<Vec<Vec<f32>>>> = vec![None; ranges.len()];
        // Dropping the set (on an error) aborts the calls still running.
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.max_in_flight {
                let Some((i, chunk)) = pending.next() else {
                    break;
                };
                let me = self.clone();
                let model = model.map(str::to_owned);
                running.spawn(async move { (i, me.embed_for(model.as_deref(), chunk).await) });
            }
            match running.join_next().await {
                None => break,
                Some(Ok((i, Ok(v)))) => done[i] = Some(v),
                Some(Ok((_, Err(e)))) => return Err(e),
                Some(Err(e)) => {
                    return Err(ClientError::Protocol(format!("embedding call failed: {e}")))
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        for v in done {
            out.extend(v.expect("every chunk finished"));
        }
        Ok(out)
    }

    /// Embeds texts in one call; vectors come back in input order. The
    /// caller keeps within the service's limits (see [`Self::embed_all`]).
    /// Errors: `Rejected` on a 4xx but 429, `Unavailable` after retries,
    /// `Protocol` when the answer does not hold one vector per text.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ClientError> {
        self.embed_for(None, texts).await
    }

    /// [`Self::embed`] with the served model `model` (`None`: the
    /// service's default).
    pub async fn embed_for(
        &self,
        model: Option<&str>,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ClientError> {
        let n = texts.len();
        let body = embed_request(texts, model);
        let out: Vec<Vec<f32>> = self.post_json("/embed", &body).await?;
        if out.len() != n {
            return Err(ClientError::Protocol(format!(
                "asked for {n} embeddings, got {}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The service's `/info` (not cached). Errors: `Unavailable` when it
    /// cannot be reached after retries, `Rejected` on a 4xx but 429.
    pub async fn info(&self) -> Result<InfoResponse, ClientError> {
        self.send(|base| self.http.get(format!("{base}/info")))
            .await
    }

    /// The facts of the served model `model` (`None`: the default) from
    /// `/info` (not cached): its alias, id and `dimension`. A service
    /// without the `models` list (older) has its one model only.
    /// Errors: as [`Self::info`]; `Rejected` with `model_not_found` when
    /// the service does not serve `model` (the message lists those it does).
    pub async fn model_info(&self, model: Option<&str>) -> Result<ServedModelInfo, ClientError> {
        let info = self.info().await?;
        pick_model(info, model)
    }

    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(|base| self.http.post(format!("{base}{path}")).json(body))
            .await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut attempt = 0u32;
        loop {
            let base = self.targets.pick(&self.base).await;
            let mut req = make(&base);
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            let last_error = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return resp
                            .json::<T>()
                            .await
                            .map_err(|e| ClientError::Protocol(e.to_string()));
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    let text = resp.text().await.unwrap_or_default();
                    if !retryable {
                        return Err(match serde_json::from_str::<ErrorBody>(&text) {
                            Ok(b) => ClientError::Rejected {
                                code: b.error.code,
                                message: b.error.message,
                            },
                            Err(_) => ClientError::Protocol(format!("{status}: {text}")),
                        });
                    }
                    format!("{status}: {text}")
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.retries {
                return Err(ClientError::Unavailable(last_error));
            }
            attempt += 1;
            // Force a fresh lookup: a replica may have gone.
            self.targets.state.lock().unwrap().1 = std::time::Instant::now() - RESOLVE_EVERY * 2;
            let cap = 50u64 << attempt.min(6);
            let sleep = rand::random::<u64>() % cap + 10;
            tokio::time::sleep(Duration::from_millis(sleep)).await;
        }
    }
}

/// The model of `info` that `name` designates, by the service's rule: an
/// exact alias, then an id, then the id's part after the last `/`.
fn pick_model(info: InfoResponse, name: Option<&str>) -> Result<ServedModelInfo, ClientError> {
    let models = if info.models.is_empty() {
        // A service older than the list: its one model.
        vec![ServedModelInfo {
            alias: info.model_id.clone(),
            model_id: info.model_id,
            model_source: info.model_source,
            architecture: info.architecture,
            dimension: info.dimension,
            max_seq_length: info.max_seq_length,
            pooling: info.pooling,
            normalize: info.normalize,
            device: info.device,
            dtype: info.dtype,
            backend: info.backend,
            max_batch_tokens: info.max_batch_tokens,
            max_concurrent_requests: info.max_concurrent_requests,
        }]
    } else {
        info.models
    };
    let Some(name) = name else {
        return Ok(models.into_iter().next().expect("one model at least"));
    };
    let last = |id: &str| id.rsplit('/').next().map(str::to_owned);
    let found = models
        .iter()
        .position(|m| m.alias == name)
        .or_else(|| models.iter().position(|m| m.model_id == name))
        .or_else(|| {
            models
                .iter()
                .position(|m| last(&m.model_id).as_deref() == Some(name))
        });
    match found {
        Some(i) => Ok(models.into_iter().nth(i).expect("found above")),
        None => Err(ClientError::Rejected {
            code: ErrorCode::ModelNotFound,
            message: format!(
                "model `{name}` is not served by the embedding service; it serves {}",
                models
                    .iter()
                    .map(|m| format!("`{}`", m.alias))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_every_address_and_rotates() {
        let t = Targets::parse("http://localhost:8001").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 8001));
        let a = t.pick("http://localhost:8001").await;
        assert!(
            a.starts_with("http://127.0.0.1:8001") || a.starts_with("http://[::1]:8001"),
            "{a}"
        );
        let t = Targets::parse("http://embed/prefix/").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/prefix"));
        assert!(Targets::parse("not a url").is_none());
    }

    /// The exact body the client sends for `texts`.
    fn body_len(texts: &[String]) -> usize {
        serde_json::to_vec(&embed_request(texts.to_vec(), None))
            .unwrap()
            .len()
    }

    fn check_split(texts: &[String], limits: CallLimits) -> Vec<std::ops::Range<usize>> {
        let ranges = split_for_limits(texts, limits).unwrap();
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.start, next, "ranges are consecutive");
            assert!(!r.is_empty());
            assert!(r.len() <= limits.max_texts, "{r:?} over {limits:?}");
            let n = body_len(&texts[r.clone()]);
            assert!(n <= limits.max_body_bytes, "{r:?}: {n} bytes");
            // Greedy: the next text would not have fitted.
            if r.end < texts.len() {
                let grown = body_len(&texts[r.start..r.end + 1]);
                assert!(
                    r.len() == limits.max_texts || grown > limits.max_body_bytes,
                    "{r:?} could have taken one more"
                );
            }
            next = r.end;
        }
        assert_eq!(next, texts.len(), "every text is in a range");
        ranges
    }

    #[test]
    fn split_respects_count_and_exact_body_bytes() {
        let texts: Vec<String> = (0..1000)
            .map(|i| match i % 5 {
                0 => format!("plain text {i}"),
                1 => format!("quotes \"{i}\" and \\ backslashes\n"),
                2 => "\u{1}\u{1f}control".repeat(i % 7),
                3 => "caf\u{e9} \u{1f600} \u{4e2d}\u{6587}".repeat(i % 11),
                _ => String::new(),
            })
            .collect();
        let by_count = CallLimits {
            max_texts: 7,
            max_body_bytes: usize::MAX,
        };
        let r = check_split(&texts, by_count);
        assert_eq!(r.len(), 1000usize.div_ceil(7));
        for max_body_bytes in [400, 1000, 4096] {
            check_split(
                &texts,
                CallLimits {
                    max_texts: 256,
                    max_body_bytes,
                },
            );
        }
        // A body exactly at the limit is one call.
        let exact = body_len(&texts[..10]);
        let r = check_split(
            &texts[..10],
            CallLimits {
                max_texts: 256,
                max_body_bytes: exact,
            },
        );
        assert_eq!(r, vec![0..10]);
        let r = check_split(
            &texts[..10],
            CallLimits {
                max_texts: 256,
                max_body_bytes: exact - 1,
            },
        );
        assert_eq!(r.len(), 2);
        assert!(split_for_limits(&[], by_count).unwrap().is_empty());
    }

    #[test]
    fn split_counts_the_model_field() {
        let texts: Vec<String> = (0..50).map(|i| format!("text number {i}")).collect();
        let model = Some("sentence-transformers/all-MiniLM-L6-v2");
        let exact = serde_json::to_vec(&embed_request(texts[..20].to_vec(), model))
            .unwrap()
            .len();
        let limits = CallLimits {
            max_texts: 256,
            max_body_bytes: exact,
        };
        assert_eq!(split_for_model(&texts, limits, model).unwrap()[0], 0..20);
        // Without the field, more texts fit the same bytes.
        assert!(split_for_limits(&texts, limits).unwrap()[0].end > 20);
    }

    fn served(alias: &str, id: &str, dimension: usize) -> ServedModelInfo {
        ServedModelInfo {
            alias: alias.into(),
            model_id: id.into(),
            model_source: "test".into(),
            architecture: "BertModel".into(),
            dimension,
            max_seq_length: 128,
            pooling: "mean".into(),
            normalize: true,
            device: "cpu".into(),
            dtype: "f32".into(),
            backend: "fused".into(),
            max_batch_tokens: 1024,
            max_concurrent_requests: 8,
        }
    }

    fn info_of(models: Vec<ServedModelInfo>) -> InfoResponse {
        let d = models
            .first()
            .cloned()
            .unwrap_or_else(|| served("old/model", "old/model", 7));
        InfoResponse::new(d, models, 32, None, "0".into())
    }

    #[test]
    fn models_are_picked_by_alias_id_or_last_part() {
        let info = info_of(vec![
            served("minilm", "sentence-transformers/all-MiniLM-L6-v2", 384),
            served("xlmr", "tiny-xlm-roberta", 32),
        ]);
        let pick = |n: Option<&str>| pick_model(info.clone(), n).map(|m| m.dimension);
        assert_eq!(pick(None).unwrap(), 384, "the default is the first");
        assert_eq!(pick(Some("xlmr")).unwrap(), 32);
        assert_eq!(pick(Some("tiny-xlm-roberta")).unwrap(), 32);
        assert_eq!(pick(Some("all-MiniLM-L6-v2")).unwrap(), 384);
        match pick(Some("e5")) {
            Err(ClientError::Rejected {
                code: ErrorCode::ModelNotFound,
                message,
            }) => assert!(message.contains("`minilm`, `xlmr`"), "{message}"),
            other => panic!("{other:?}"),
        }
        // A service without the list: its one model.
        let old = info_of(Vec::new());
        assert_eq!(pick_model(old.clone(), None).unwrap().dimension, 7);
        assert_eq!(pick_model(old, Some("model")).unwrap().alias, "old/model");
    }

    #[test]
    fn a_text_too_big_for_any_request_is_named() {
        let texts = vec!["a".to_string(), "b".repeat(500), "c".to_string()];
        let limits = CallLimits {
            max_texts: 10,
            max_body_bytes: 300,
        };
        match split_for_limits(&texts, limits) {
            Err(ClientError::TooLarge {
                index: 1,
                bytes,
                limit: 300,
            }) => assert_eq!(bytes, body_len(&texts[1..2])),
            other => panic!("{other:?}"),
        }
    }
}
