//! HTTP client for the embedding service, used by the indexing service.
//!
//! Each call has a per-attempt timeout and is retried on connection errors,
//! 429 and 5xx with exponential backoff and full jitter. A 4xx other than
//! 429 is the caller's fault and is returned at once.

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
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            api_key,
            retries,
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
        self.send(|| self.http.get(format!("{}/info", self.base)))
            .await
    }

    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        self.send(|| self.http.post(&url).json(body)).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut attempt = 0u32;
        loop {
            let mut req = make();
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
            let cap = 50u64 << attempt.min(6);
            let sleep = rand::random::<u64>() % cap + 10;
            tokio::time::sleep(Duration::from_millis(sleep)).await;
        }
    }
}
