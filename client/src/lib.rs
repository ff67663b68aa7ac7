//! Rust client of the indexing service.
//!
//! - Typed requests and responses: point, search, scroll and count bodies
//!   are the `shared` wire types the server itself uses; collection and
//!   snapshot bodies are in [`types`].
//! - One pooled `reqwest` client (keep-alive connections, reused across
//!   calls and tasks; [`Client`] is cheap to clone).
//! - Retries with exponential backoff and random jitter (`backon`: up to one more delay) on 429,
//!   503, connection errors and timeouts; a server's `Retry-After` (in
//!   seconds) replaces the computed delay, capped at
//!   [`ClientConfig::max_retry_after`].
//! - A timeout per attempt; the API key sent as `Authorization: Bearer`.
//! - Batch upload helpers ([`batch`]) that split by count and by bytes.
//! - Errors carry the server's `{"error": {"code", "message"}}`
//!   ([`ClientError::Api`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vdb_client::ClientError> {
//! let c = vdb_client::Client::new(vdb_client::ClientConfig::new("http://localhost:8000"))?;
//! for col in c.list_collections().await? {
//!     println!("{} {}", col.name, col.points);
//! }
//! # Ok(()) }
//! ```

pub mod batch;
pub mod error;
pub mod types;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub use batch::{split_batches, BatchLimits};
pub use error::{ClientError, ErrorKind};
pub use shared::wire::indexing::{
    CountRequest, CountResponse, Filter, GetPointsRequest, GetPointsResponse, Metric, PointId,
    PointInput, PointOutput, ScrollRequest, ScrollResponse, SearchHit, SearchRequest,
    SearchResponse, UpsertPointsRequest, UpsertPointsResponse,
};
pub use shared::wire::snapshot::{
    ListSnapshotsResponse, RecoverSnapshotRequest, RecoverSnapshotResponse, SnapshotDescription,
    CHECKSUM_HEADER, SNAPSHOT_MEDIA_TYPE,
};
pub use types::{CollectionDescription, CreateCollection};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the indexing service, e.g. `http://localhost:8000`.
    pub url: String,
    /// The service's `api_key`, sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Longest one attempt of a JSON call may take (default 120 s: a text
    /// upsert waits for its embeddings).
    pub timeout: Duration,
    /// Longest a TCP connect may take (default 5 s).
    pub connect_timeout: Duration,
    /// Longest one attempt of a snapshot download or upload may take
    /// (default 1 hour).
    pub transfer_timeout: Duration,
    /// Attempts after the first on a retryable error (default 5).
    pub retries: usize,
    /// First backoff delay (default 200 ms); doubles per attempt, with
    /// jitter.
    pub min_backoff: Duration,
    /// Largest backoff delay (default 10 s).
    pub max_backoff: Duration,
    /// Largest `Retry-After` honoured (default 60 s).
    pub max_retry_after: Duration,
}

impl ClientConfig {
    /// Defaults for the service at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(3600),
            retries: 5,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// A client of one indexing service; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    cfg: ClientConfig,
}

/// A request body and its content type.
type Body = (Vec<u8>, &'static str);

/// Percent-encodes one URL path segment (collection, snapshot or id).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the service).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Client {
    /// Builds the client. Errors: [`ClientError::Connect`] when the TLS or
    /// HTTP stack cannot be set up, or the URL is not `http(s)://`.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let base = cfg.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Connect {
                url: cfg.url.clone(),
                detail: "the URL must start with http:// or https://".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Connect {
                url: base.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self { http, base, cfg })
    }

    /// The base URL (without a trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends one request, retrying per [`ClientConfig`]; returns the first
    /// 2xx answer, or the last error.
    async fn execute(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.cfg.min_backoff)
            .with_max_delay(self.cfg.max_backoff)
            .with_max_times(self.cfg.retries)
            .with_jitter()
            .build();
        loop {
            let mut rb = self.http.request(method.clone(), &url).timeout(timeout);
            if let Some(k) = &self.cfg.api_key {
                rb = rb.bearer_auth(k);
            }
            if let Some((b, ct)) = &body {
                rb = rb.header(CONTENT_TYPE, *ct).body(b.clone());
            }
            let err = match rb.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = retry_after(resp.headers());
                    let bytes = resp.bytes().await.unwrap_or_default();
                    error::from_body(status, &bytes, ra)
                }
                Err(e) if e.is_timeout() => ClientError::Timeout {
                    url: url.clone(),
                    timeout,
                },
                Err(e) => ClientError::Connect {
                    url: url.clone(),
                    detail: error_chain(&e),
                },
            };
            if !err.is_retryable() {
                return Err(err);
            }
            let Some(mut delay) = backoff.next() else {
                return Err(err);
            };
            if let ClientError::Api {
                retry_after: Some(ra),
                ..
            } = &err
            {
                delay = (*ra).min(self.cfg.max_retry_after);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// A JSON call: `body` serialised once, the answer decoded as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some((
                serde_json::to_vec(b).map_err(|e| ClientError::Decode {
                    url: path.into(),
                    detail: e.to_string(),
                })?,
                "application/json",
            )),
            None => None,
        };
        let resp = self.execute(method, path, body, self.cfg.timeout).await?;
        decode(resp).await
    }

    /// A call whose answer has no body to read (204 and the like).
    async fn call_empty(&self, method: Method, path: &str) -> Result<(), ClientError> {
        self.execute(method, path, None, self.cfg.timeout).await?;
        Ok(())
    }

    /// `GET /health`: Ok when the service is up.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.call_empty(Method::GET, "/health").await
    }

    /// `GET /collections`: every collection with its statistics.
    pub async fn list_collections(&self) -> Result<Vec<CollectionDescription>, ClientError> {
        self.call(Method::GET, "/collections", None::<&()>).await
    }

    /// `POST /collections`. Errors: 409 `already_exists`, 422 on bad
    /// settings.
    pub async fn create_collection(
        &self,
        req: &CreateCollection,
    ) -> Result<CollectionDescription, ClientError> {
        self.call(Method::POST, "/collections", Some(req)).await
    }

    /// `GET /collections/{name}`. Errors: 404 `not_found`.
    pub async fn collection(&self, name: &str) -> Result<CollectionDescription, ClientError> {
        self.call(
            Method::GET,
            &format!("/collections/{}", seg(name)),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /collections/{name}`. Errors: 404 `not_found`.
    pub async fn delete_collection(&self, name: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/collections/{}", seg(name)))
            .await
    }

    /// `PUT /collections/{name}/points`: one request (at most 10,000
    /// points, within the server's body limit; see [`batch`]). Points with
    /// `content` and no `vector` are embedded by the server.
    pub async fn upsert(
        &self,
        name: &str,
        points: Vec<PointInput>,
    ) -> Result<UpsertPointsResponse, ClientError> {
        let path = format!("/collections/{}/points", seg(name));
        self.call(Method::PUT, &path, Some(&UpsertPointsRequest { points }))
            .await
    }

    /// Upserts any number of points in requests split by `limits`, one at a
    /// time; returns how many points were written. Stops at the first
    /// error (the batches before it are written).
    pub async fn upload_points(
        &self,
        name: &str,
        points: Vec<PointInput>,
        limits: BatchLimits,
    ) -> Result<usize, ClientError> {
        let mut n = 0;
        for b in split_batches(points, limits) {
            n += b.len();
            self.upsert(name, b).await?;
        }
        Ok(n)
    }

    /// `POST /collections/{name}/points`: the points with these ids (absent
    /// ids left out), in the order asked; at most 10,000 ids.
    pub async fn get_points(
        &self,
        name: &str,
        req: &GetPointsRequest,
    ) -> Result<Vec<PointOutput>, ClientError> {
        let path = format!("/collections/{}/points", seg(name));
        let r: GetPointsResponse = self.call(Method::POST, &path, Some(req)).await?;
        Ok(r.points)
    }

    /// Which of `ids` the collection holds (any number of ids, asked in
    /// requests of 10,000 without payloads or vectors).
    pub async fn existing_ids(
        &self,
        name: &str,
        ids: &[PointId],
    ) -> Result<HashSet<PointId>, ClientError> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(batch::MAX_POINTS_PER_REQUEST) {
            let req = GetPointsRequest {
                ids: chunk.to_vec(),
                with_vector: Some(false),
                with_payload: Some(false),
                consistency: None,
            };
            found.extend(self.get_points(name, &req).await?.into_iter().map(|p| p.id));
        }
        Ok(found)
    }

    /// `POST /collections/{name}/points/scroll`: one page.
    pub async fn scroll(
        &self,
        name: &str,
        req: &ScrollRequest,
    ) -> Result<ScrollResponse, ClientError> {
        let path = format!("/collections/{}/points/scroll", seg(name));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /collections/{name}/points/count`.
    pub async fn count(&self, name: &str, filter: Option<Filter>) -> Result<usize, ClientError> {
        let path = format!("/collections/{}/points/count", seg(name));
        let req = CountRequest {
            filter,
            consistency: None,
        };
        let r: CountResponse = self.call(Method::POST, &path, Some(&req)).await?;
        Ok(r.count)
    }

    /// `POST /collections/{name}/search`: by `query` text or by `vector`.
    pub async fn search(
        &self,
        name: &str,
        req: &SearchRequest,
    ) -> Result<SearchResponse, ClientError> {
        let path = format!("/collections/{}/search", seg(name));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /collections/{name}/snapshots`: a consistent snapshot of the
    /// collection, written on the server.
    pub async fn create_snapshot(&self, name: &str) -> Result<SnapshotDescription, ClientError> {
        let path = format!("/collections/{}/snapshots", seg(name));
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `GET /collections/{name}/snapshots`.
    pub async fn list_snapshots(
        &self,
        name: &str,
    ) -> Result<Vec<SnapshotDescription>, ClientError> {
        let path = format!("/collections/{}/snapshots", seg(name));
        let r: ListSnapshotsResponse = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(r.snapshots)
    }

    /// `DELETE /collections/{name}/snapshots/{snapshot}`.
    pub async fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<(), ClientError> {
        let path = format!("/collections/{}/snapshots/{}", seg(name), seg(snapshot));
        self.call_empty(Method::DELETE, &path).await
    }

    /// `GET /collections/{name}/snapshots/{snapshot}` streamed into `dest`
    /// (written to `dest.part`, renamed when complete). When the server
    /// sends `x-checksum-sha256`, the file's SHA-256 must match it
    /// (else [`ClientError::Decode`] and no file). Returns the bytes
    /// written and the SHA-256 (hex).
    pub async fn download_snapshot(
        &self,
        name: &str,
        snapshot: &str,
        dest: &Path,
    ) -> Result<(u64, String), ClientError> {
        let path = format!("/collections/{}/snapshots/{}", seg(name), seg(snapshot));
        self.download(&path, dest).await
    }

    /// `POST /collections/{name}/snapshots/recover`: restore from a file
    /// already on the server (`location`: an absolute path, a `file://`
    /// URL, or the name of one of the collection's snapshots). Errors: 422
    /// `snapshot_invalid` for a damaged file (nothing restored), 404.
    pub async fn recover_snapshot(
        &self,
        name: &str,
        req: &RecoverSnapshotRequest,
    ) -> Result<RecoverSnapshotResponse, ClientError> {
        let path = format!("/collections/{}/snapshots/recover", seg(name));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `POST /collections/{name}/snapshots/upload?checksum=<sha256>`:
    /// restore from a local snapshot file, sent as the raw body with its
    /// SHA-256, which the server checks before restoring anything.
    pub async fn upload_snapshot(
        &self,
        name: &str,
        file: &Path,
    ) -> Result<RecoverSnapshotResponse, ClientError> {
        let bytes = tokio::fs::read(file).await?;
        let sha = hex(&Sha256::digest(&bytes));
        let path = format!("/collections/{}/snapshots/upload?checksum={sha}", seg(name));
        let resp = self
            .execute(
                Method::POST,
                &path,
                Some((bytes, SNAPSHOT_MEDIA_TYPE)),
                self.cfg.transfer_timeout,
            )
            .await?;
        decode(resp).await
    }

    /// `POST /snapshots`: a snapshot of every collection.
    pub async fn create_full_snapshot(&self) -> Result<SnapshotDescription, ClientError> {
        self.call(Method::POST, "/snapshots", None::<&()>).await
    }

    /// `GET /snapshots`.
    pub async fn list_full_snapshots(&self) -> Result<Vec<SnapshotDescription>, ClientError> {
        let r: ListSnapshotsResponse = self.call(Method::GET, "/snapshots", None::<&()>).await?;
        Ok(r.snapshots)
    }

    /// `GET /snapshots/{snapshot}` into `dest`, as
    /// [`Client::download_snapshot`].
    pub async fn download_full_snapshot(
        &self,
        snapshot: &str,
        dest: &Path,
    ) -> Result<(u64, String), ClientError> {
        self.download(&format!("/snapshots/{}", seg(snapshot)), dest)
            .await
    }

    async fn download(&self, path: &str, dest: &Path) -> Result<(u64, String), ClientError> {
        let mut resp = self
            .execute(Method::GET, path, None, self.cfg.transfer_timeout)
            .await?;
        let url = resp.url().to_string();
        let expected = resp
            .headers()
            .get(CHECKSUM_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase());
        let part = dest.with_extension("part");
        // Chunks are small: plain file writes, no blocking worth a thread.
        let mut f = std::fs::File::create(&part)?;
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        loop {
            let chunk = resp.chunk().await.map_err(|e| ClientError::Connect {
                url: url.clone(),
                detail: error_chain(&e),
            });
            let chunk = match chunk {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(e);
                }
            };
            hasher.update(&chunk);
            n += chunk.len() as u64;
            f.write_all(&chunk)?;
        }
        f.flush()?;
        f.sync_all()?;
        drop(f);
        let got = hex(&hasher.finalize());
        if let Some(want) = expected {
            if want != got {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(ClientError::Decode {
                    url,
                    detail: format!(
                        "the download's SHA-256 is {got}, the server announced {want}: \
                         the file was damaged in transit and was not kept"
                    ),
                });
            }
        }
        tokio::fs::rename(&part, dest).await?;
        Ok((n, got))
    }
}

/// Reads a 2xx answer's JSON body as `T`.
async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let url = resp.url().to_string();
    let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
        url: url.clone(),
        detail: error_chain(&e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url,
        detail: e.to_string(),
    })
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error with its sources, e.g. "error sending request: connection
/// refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("docs_1-a"), "docs_1-a");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }

    /// A server that answers 503 with `Retry-After: 0` twice, then 200:
    /// the client retries and succeeds; with no retries it reports the
    /// server's error.
    #[tokio::test]
    async fn retries_503_then_succeeds_and_reports_server_words() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, s) in listener.incoming().enumerate() {
                let Ok(mut s) = s else { break };
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf);
                let resp = if i % 3 < 2 {
                    let body = r#"{"error":{"code":"model_not_ready","message":"the model is warming up"}}"#;
                    format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 0\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                } else {
                    let body = r#"{"count":7}"#;
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                };
                let _ = s.write_all(resp.as_bytes());
            }
        });
        let c = Client::new(ClientConfig::new(format!("http://{addr}"))).unwrap();
        assert_eq!(c.count("docs", None).await.unwrap(), 7);
        let mut cfg = ClientConfig::new(format!("http://{addr}"));
        cfg.retries = 0;
        let c = Client::new(cfg).unwrap();
        let e = c.count("docs", None).await.unwrap_err();
        assert_eq!(e.code(), Some("model_not_ready"));
        assert!(e.to_string().contains("the model is warming up"), "{e}");
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable_after_retries() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = ClientConfig::new(format!("http://127.0.0.1:{port}"));
        cfg.retries = 2;
        cfg.min_backoff = Duration::from_millis(1);
        let c = Client::new(cfg).unwrap();
        let e = c.health().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    }
}
