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

use crate::error::{ErrorBody, ErrorCode};
use crate::wire::embedding::{EmbedRequest, InfoResponse, Inputs};
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
}

#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
    retries: u32,
    targets: std::sync::Arc<Targets>,
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
        })
    }

    /// Embeds texts in one call; vectors come back in input order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ClientError> {
        let n = texts.len();
        let body = EmbedRequest {
            inputs: Inputs::Many(texts),
            normalize: None,
            truncate: Some(true),
            dimensions: None,
        };
        let out: Vec<Vec<f32>> = self.post_json("/embed", &body).await?;
        if out.len() != n {
            return Err(ClientError::Protocol(format!(
                "asked for {n} embeddings, got {}",
                out.len()
            )));
        }
        Ok(out)
    }

    pub async fn info(&self) -> Result<InfoResponse, ClientError> {
        self.send(|base| self.http.get(format!("{base}/info")))
            .await
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
}
