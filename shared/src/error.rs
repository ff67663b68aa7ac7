//! The error body every endpoint of both services returns, and the one table
//! from stable error code to HTTP status.
//!
//! Codes are part of the public API: they never change meaning once released.
//! A 5xx body never carries internal details (paths, backtraces): callers log
//! those and send a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON (400).
    InvalidJson,
    /// Authorization header missing or wrong (401).
    Unauthorized,
    /// No such route or resource (404).
    NotFound,
    /// A request names an embedding model the service does not serve; the
    /// message lists the ones it does (404).
    ModelNotFound,
    /// Wrong HTTP method for the route (405).
    MethodNotAllowed,
    /// The request body did not arrive within the body read timeout (408).
    RequestTimeout,
    /// The resource already exists (409).
    AlreadyExists,
    /// The body is larger than the configured limit (413).
    PayloadTooLarge,
    /// The request is not `Content-Type: application/json` (415).
    UnsupportedMediaType,
    /// JSON is well formed but does not match the schema (422).
    InvalidRequest,
    /// An input list is empty (422).
    EmptyInput,
    /// More inputs than `max_client_batch_size` (422).
    TooManyInputs,
    /// A text is longer than the model accepts and `truncate` is false (422).
    InputTooLong,
    /// `dimensions` is 0 or above the model's dimension (422).
    InvalidDimensions,
    /// A vector's length does not match the collection (422).
    DimensionMismatch,
    /// A vector has NaN/infinite components or is zero under cosine (422).
    InvalidVector,
    /// A payload is not an object or too large (422).
    InvalidPayload,
    /// A filter is malformed (422).
    InvalidFilter,
    /// A snapshot file is damaged, truncated, of an unknown format or not
    /// the expected checksum; nothing was restored (422).
    SnapshotInvalid,
    /// Too many requests in flight: retry later (429).
    Overloaded,
    /// The model is still loading or warming up (503).
    ModelNotReady,
    /// The embedding service cannot be reached (503).
    EmbeddingUnavailable,
    /// The store refuses writes after an I/O failure, or the disk is full
    /// (503). Nothing of the refused request was written.
    StorageUnavailable,
    /// The collection's files are damaged and it was not opened; the rest
    /// of the service keeps serving (503).
    CollectionDamaged,
    /// A write reached a read replica and the writer cannot be reached
    /// (no writer yet, or one taking over); retry after `Retry-After` (503).
    WriterUnavailable,
    /// A read asked for `consistency.after` an operation this replica has
    /// not applied within the configured wait (504).
    ConsistencyTimeout,
    /// The GPU had no memory free for a text of the request even alone, after
    /// its batch was split down to single texts (503). Retry later, or send
    /// shorter texts; other requests keep being served.
    OutOfMemory,
    /// Anything else; details are in the server log (500).
    Internal,
}

impl ErrorCode {
    /// The single status table.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidJson => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            NotFound | ModelNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AlreadyExists => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidRequest | EmptyInput | TooManyInputs | InputTooLong | InvalidDimensions
            | DimensionMismatch | InvalidVector | InvalidPayload | InvalidFilter
            | SnapshotInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ModelNotReady | EmbeddingUnavailable | StorageUnavailable | CollectionDamaged
            | WriterUnavailable | OutOfMemory => StatusCode::SERVICE_UNAVAILABLE,
            ConsistencyTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            Unauthorized => "unauthorized",
            NotFound => "not_found",
            ModelNotFound => "model_not_found",
            MethodNotAllowed => "method_not_allowed",
            RequestTimeout => "request_timeout",
            AlreadyExists => "already_exists",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidRequest => "invalid_request",
            EmptyInput => "empty_input",
            TooManyInputs => "too_many_inputs",
            InputTooLong => "input_too_long",
            InvalidDimensions => "invalid_dimensions",
            DimensionMismatch => "dimension_mismatch",
            InvalidVector => "invalid_vector",
            InvalidPayload => "invalid_payload",
            InvalidFilter => "invalid_filter",
            SnapshotInvalid => "snapshot_invalid",
            Overloaded => "overloaded",
            ModelNotReady => "model_not_ready",
            EmbeddingUnavailable => "embedding_unavailable",
            StorageUnavailable => "storage_unavailable",
            CollectionDamaged => "collection_damaged",
            WriterUnavailable => "writer_unavailable",
            ConsistencyTimeout => "consistency_timeout",
            OutOfMemory => "out_of_memory",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

impl IntoResponse for ErrorBody {
    fn into_response(self) -> Response {
        let code = self.error.code;
        let mut resp = axum::Json(self).into_response();
        *resp.status_mut() = code.status();
        // For middleware that counts errors by code (metrics).
        resp.extensions_mut().insert(code);
        resp
    }
}
