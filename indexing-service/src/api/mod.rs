//! HTTP: translate requests into collection calls and results into
//! responses, nothing else. Storage work runs on the blocking pool; the
//! embedding service is called through `shared::client` before anything is
//! written (a failed embedding call writes nothing).
//!
//! Routes are registered through utoipa-axum so the spec cannot drift; every
//! error status is listed per route. The one error conversion is
//! `From<ApiError> for ErrorBody` below.

mod field_index;
mod handlers;
pub mod metrics;
mod new_collection;
mod point_path;
mod query;
mod snapshots;
mod spec;

use crate::collection::{CollectionError, Storage};
use crate::storage::StorageError;
use shared::client::{ClientError, EmbeddingClient};
use shared::config::IndexingConfig;
use shared::{ErrorBody, ErrorCode};
use std::sync::Arc;

/// Shared state of the handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<Storage>,
    pub embedder: EmbeddingClient,
    pub config: Arc<IndexingConfig>,
    pub metrics: Arc<metrics::Metrics>,
    /// Role, writer address, read-your-writes waits (`crate::replication`).
    pub replica: Arc<crate::replication::Replica>,
}

/// Errors a handler can meet.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error(transparent)]
    Embedding(#[from] ClientError),
    #[error("{1}")]
    Invalid(ErrorCode, String),
}

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::Invalid(ErrorCode::InvalidRequest, msg.into())
    }
}

impl From<ApiError> for ErrorBody {
    fn from(e: ApiError) -> Self {
        use CollectionError as C;
        let code = match &e {
            ApiError::Invalid(code, _) => *code,
            ApiError::Collection(c) => match c {
                C::NotFound(_) | C::PointNotFound(_) => ErrorCode::NotFound,
                C::AlreadyExists(_) => ErrorCode::AlreadyExists,
                C::InvalidName(_)
                | C::InvalidConfig(_)
                | C::InvalidId(_)
                | C::InvalidFieldIndex(_)
                | C::NoTextIndex(_)
                | C::InvalidQuery(_) => ErrorCode::InvalidRequest,
                C::DimensionMismatch { .. } => ErrorCode::DimensionMismatch,
                C::InvalidVector(_) => ErrorCode::InvalidVector,
                C::InvalidPayload(_) => ErrorCode::InvalidPayload,
                C::InvalidFilter(_) => ErrorCode::InvalidFilter,
                C::Damaged { .. } => ErrorCode::CollectionDamaged,
                C::ReadOnly(_) => ErrorCode::WriterUnavailable,
                C::Storage(StorageError::Poisoned(reason)) => {
                    return ErrorBody::new(
                        ErrorCode::StorageUnavailable,
                        format!(
                            "storage is unavailable: the write-ahead log failed ({reason}); \
                             writes are refused until the service restarts, reads still work"
                        ),
                    );
                }
                C::Storage(StorageError::Io { source, .. }) if storage_full(source) => {
                    tracing::error!("storage error: {e}");
                    return ErrorBody::new(
                        ErrorCode::StorageUnavailable,
                        format!(
                            "storage is unavailable ({}); nothing was written",
                            io_reason(source)
                        ),
                    );
                }
                C::Storage(_) => {
                    tracing::error!("storage error: {e}");
                    return ErrorBody::new(
                        ErrorCode::Internal,
                        "internal storage error; see the service log",
                    );
                }
            },
            ApiError::Embedding(c) => match c {
                // The embedding service refused this service's own key: a
                // fault of the deployment, not of the client's request.
                ClientError::Rejected {
                    code: ErrorCode::Unauthorized,
                    ..
                } => {
                    tracing::error!("embedding call refused: {e}");
                    return ErrorBody::new(
                        ErrorCode::EmbeddingUnavailable,
                        "the embedding service refused this service's API key \
                         (`indexing.embedding_api_key`); nothing was written",
                    );
                }
                ClientError::Rejected { code, .. } => *code,
                ClientError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
                ClientError::Unavailable(_) | ClientError::Protocol(_) => {
                    tracing::warn!("embedding call failed: {e}");
                    ErrorCode::EmbeddingUnavailable
                }
            },
        };
        ErrorBody::new(code, e.to_string())
    }
}

/// Errors that mean the disk cannot take writes now (full, over quota,
/// read-only, failing) rather than a fault of ours.
fn storage_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem | K::FileTooLarge
    ) || matches!(e.raw_os_error(), Some(5 | 27 | 28 | 30 | 122))
}

/// The OS reason without the error number, e.g. "No space left on device".
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub use handlers::{openapi, router};
