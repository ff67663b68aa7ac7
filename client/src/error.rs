//! What a call can fail with: the server's own `{"error": {"code",
//! "message"}}` with its HTTP status, or a transport failure (connection
//! refused, timeout), or an answer that is not what the API documents.

use std::time::Duration;

/// One error type for every call of [`crate::Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status. `code` and `message` are
    /// the server's words (`{"error": {"code", "message"}}`); when the body
    /// was not that shape, `code` is `http_<status>` and `message` the body
    /// text (cut to 500 bytes).
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status, e.g. 404.
        status: u16,
        /// Stable error code, e.g. `not_found`, `dimension_mismatch`.
        code: String,
        /// The server's message for a person.
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The server could not be reached (refused, reset, DNS), after the
    /// retries.
    #[error("cannot reach {url}: {detail}")]
    Connect { url: String, detail: String },
    /// No answer within the client's timeout, after the retries.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// A 2xx answer whose body is not the documented shape.
    #[error("unexpected answer from {url}: {detail}")]
    Decode { url: String, detail: String },
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The broad kind of a [`ClientError`], for exit codes and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused or timed out.
    Unreachable,
    /// 401 / 403.
    Unauthorized,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// Any other 4xx: the request is wrong (400, 413, 415, 422, ...).
    InvalidRequest,
    /// 429 or 503: the server is busy or not ready; retrying may help.
    Unavailable,
    /// Any other 5xx, or an answer that does not decode.
    Server,
    /// A local file problem.
    Io,
}

impl ClientError {
    /// The kind of this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Api { status, .. } => match *status {
                401 | 403 => ErrorKind::Unauthorized,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                429 | 503 => ErrorKind::Unavailable,
                s if (400..500).contains(&s) => ErrorKind::InvalidRequest,
                _ => ErrorKind::Server,
            },
            ClientError::Connect { .. } | ClientError::Timeout { .. } => ErrorKind::Unreachable,
            ClientError::Decode { .. } => ErrorKind::Server,
            ClientError::Io(_) => ErrorKind::Io,
        }
    }

    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether another attempt may succeed: 429, 503, connection errors
    /// and timeouts. (A timed-out write may have been applied; upserts by
    /// id are idempotent, so sending it again is safe.)
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Unreachable)
    }
}

/// Reads an error answer's body into [`ClientError::Api`].
pub(crate) fn from_body(status: u16, body: &[u8], retry_after: Option<Duration>) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Inner {
        code: String,
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        error: Inner,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            retry_after,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut cut = 500.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            ClientError::Api {
                status,
                code: format!("http_{status}"),
                message: if text.trim().is_empty() {
                    format!("HTTP {status} with no body")
                } else {
                    text[..cut].to_string()
                },
                retry_after,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_bodies_are_read_and_classified() {
        let e = from_body(
            404,
            br#"{"error":{"code":"not_found","message":"collection `x` does not exist"}}"#,
            None,
        );
        assert_eq!(e.code(), Some("not_found"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("collection `x` does not exist"));
        let e = from_body(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.code(), Some("http_502"));
        assert_eq!(e.kind(), ErrorKind::Server);
        assert!(!e.is_retryable());
        let e = from_body(429, b"", Some(Duration::from_secs(1)));
        assert!(e.is_retryable());
        assert_eq!(
            from_body(422, b"{}", None).kind(),
            ErrorKind::InvalidRequest
        );
    }
}
