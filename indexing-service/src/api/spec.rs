//! Finishing the OpenAPI document: an example error body under every error
//! status, whose code answers with that status (`shared::openapi`).
//!
//! The tests below hold the document to what the handlers do: each route
//! lists exactly the statuses it can answer, the unions (`PointId`, `match`,
//! delete by `ids` or `filter`) are `oneOf`s rather than `object`, collection
//! names carry their pattern, and every request example is a body the
//! handlers accept.

use shared::ErrorCode;

/// Error examples of this service's spec, by status (the common ones are in
/// `shared::openapi`).
const ERROR_EXAMPLES: shared::openapi::ErrorExamples<'static> = &[
    (
        404,
        ErrorCode::NotFound,
        "collection `my_collection` not found",
    ),
    (
        409,
        ErrorCode::AlreadyExists,
        "collection `my_collection` already exists",
    ),
    (
        422,
        ErrorCode::InvalidRequest,
        "`top_k` must be between 1 and 1000, got 0",
    ),
    (
        503,
        ErrorCode::EmbeddingUnavailable,
        "embedding service unavailable: connection refused",
    ),
];

/// Puts the error examples and default descriptions into `spec`.
pub(super) fn finish(spec: &mut utoipa::openapi::OpenApi) {
    shared::openapi::finish_error_responses(spec, ERROR_EXAMPLES);
}
