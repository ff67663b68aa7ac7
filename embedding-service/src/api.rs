//! HTTP: translate requests into runtime calls and results into responses,
//! nothing else. Routes are registered through utoipa-axum so the OpenAPI
//! spec cannot drift from the code; every error status is listed per route.

use crate::batching::{EmbedError, EmbedOptions, Runtime};
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use shared::config::EmbeddingConfig;
use shared::http::ApiJson;
use shared::wire::embedding::*;
use shared::{ErrorBody, ErrorCode};
use std::sync::Arc;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "embedding-service",
        description = "Sentence-transformer embeddings over HTTP with dynamic batching."
    ),
    components(schemas(ErrorBody, ErrorCode))
)]
struct ApiDoc;

/// The one conversion from runtime errors to the wire.
impl From<EmbedError> for ErrorBody {
    fn from(e: EmbedError) -> Self {
        let code = match &e {
            EmbedError::EmptyInput => ErrorCode::EmptyInput,
            EmbedError::TooManyInputs { .. } => ErrorCode::TooManyInputs,
            EmbedError::InputTooLong { .. } => ErrorCode::InputTooLong,
            EmbedError::InvalidDimensions { .. } => ErrorCode::InvalidDimensions,
            EmbedError::Overloaded(_) => ErrorCode::Overloaded,
            EmbedError::ShuttingDown => ErrorCode::ModelNotReady,
            EmbedError::Tokenizer(_) | EmbedError::Model(_) => {
                tracing::error!("internal error: {e}");
                return ErrorBody::new(ErrorCode::Internal, "internal error; see the service log");
            }
        };
        ErrorBody::new(code, e.to_string())
    }
}

fn runtime(s: &AppState) -> Result<Arc<Runtime>, ErrorBody> {
    s.runtime
        .get()
        .cloned()
        .ok_or_else(|| ErrorBody::new(ErrorCode::ModelNotReady, "the model is still loading"))
}

fn options(
    normalize: Option<bool>,
    truncate: Option<bool>,
    dimensions: Option<usize>,
) -> EmbedOptions {
    EmbedOptions {
        normalize,
        truncate: truncate.unwrap_or(true),
        dimensions,
    }
}

/// Embed one text or a list of texts.
#[utoipa::path(post, path = "/embed", tag = "embedding", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in input order", body = Vec<Vec<f32>>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Empty list, non-string input, too many inputs, text too long with truncate=false, bad dimensions", body = ErrorBody),
        (status = 429, description = "Too many requests in flight", body = ErrorBody),
        (status = 500, description = "Tokenizer or forward pass failed", body = ErrorBody),
        (status = 503, description = "Model not loaded yet, or shutting down", body = ErrorBody),
    ))]
async fn embed(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ErrorBody> {
    let rt = runtime(&s)?;
    let out = rt
        .embed(
            req.inputs.into_vec(),
            options(req.normalize, req.truncate, req.dimensions),
        )
        .await?;
    Ok(Json(out.vectors))
}

/// The original design's batch endpoint.
#[utoipa::path(post, path = "/embed/batch", tag = "embedding", request_body = EmbedBatchRequest,
    responses(
        (status = 200, body = EmbedBatchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn embed_batch(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedBatchRequest>,
) -> Result<Json<EmbedBatchResponse>, ErrorBody> {
    let rt = runtime(&s)?;
    let out = rt
        .embed(
            req.texts,
            options(req.normalize, req.truncate, req.dimensions),
        )
        .await?;
    let dimension = out
        .vectors
        .first()
        .map(Vec::len)
        .unwrap_or(rt.info.dimension);
    Ok(Json(EmbedBatchResponse {
        embeddings: out.vectors,
        model: rt.info.model_id.clone(),
        dimension,
    }))
}

/// OpenAI-compatible embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = OpenAiEmbeddingsRequest,
    responses(
        (status = 200, body = OpenAiEmbeddingsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn openai_embeddings(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<OpenAiEmbeddingsRequest>,
) -> Result<Json<OpenAiEmbeddingsResponse>, ErrorBody> {
    let rt = runtime(&s)?;
    let out = rt
        .embed(
            req.input.into_vec(),
            options(None, Some(true), req.dimensions),
        )
        .await?;
    let base64 = req.encoding_format.unwrap_or_default() == EncodingFormat::Base64;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding".into(),
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                OpenAiVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                OpenAiVector::Float(v)
            },
            index,
        })
        .collect();
    Ok(Json(OpenAiEmbeddingsResponse {
        object: "list".into(),
        data,
        model: req.model.unwrap_or_else(|| rt.info.model_id.clone()),
        usage: OpenAiUsage {
            prompt_tokens: out.tokens,
            total_tokens: out.tokens,
        },
    }))
}

/// Tokens of each input as the model sees them (truncated at max_seq_length).
#[utoipa::path(post, path = "/tokenize", tag = "embedding", request_body = TokenizeRequest,
    responses(
        (status = 200, body = Vec<Vec<Token>>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn tokenize(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<Vec<Vec<Token>>>, ErrorBody> {
    let rt = runtime(&s)?;
    Ok(Json(
        rt.tokenize(
            req.inputs.into_vec(),
            req.add_special_tokens.unwrap_or(true),
        )
        .await?,
    ))
}

/// Model and batching facts.
#[utoipa::path(get, path = "/info", tag = "service",
    responses((status = 200, body = InfoResponse), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn info(State(s): State<AppState>) -> Result<Json<InfoResponse>, ErrorBody> {
    let rt = runtime(&s)?;
    let i = &rt.info;
    let c = &s.config;
    Ok(Json(InfoResponse {
        model_id: i.model_id.clone(),
        model_source: i.source.clone(),
        architecture: i.architecture.clone(),
        dimension: i.dimension,
        max_seq_length: i.max_seq_length,
        pooling: i.pooling.into(),
        normalize: i.normalize,
        device: i.device.clone(),
        dtype: i.dtype.clone(),
        backend: i.backend.clone(),
        max_batch_tokens: c.max_batch_tokens,
        max_client_batch_size: c.max_client_batch_size,
        max_concurrent_requests: c.max_concurrent_requests,
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// 200 once the model is loaded and warmed up, 503 before.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Model loaded and warmed up", body = HealthResponse,
            example = json!({"status": "ok"})),
        (status = 503, description = "Model still loading", body = HealthResponse,
            example = json!({"status": "loading"})),
    ))]
async fn health(State(s): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    if s.runtime.get().is_some() {
        (
            StatusCode::OK,
            Json(HealthResponse {
                status: "ok".into(),
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthResponse {
                status: "loading".into(),
            }),
        )
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", body = String), (status = 401, body = ErrorBody)))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

/// Counts requests and error codes per route.
async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    s.metrics
        .requests
        .with_label_values(&[&route, status.as_str()])
        .inc();
    s.metrics
        .request_seconds
        .with_label_values(&[&route])
        .observe(t0.elapsed().as_secs_f64());
    if status.is_client_error() || status.is_server_error() {
        s.metrics.errors.with_label_values(&[status.as_str()]).inc();
    }
    resp
}

/// Error examples of this service's spec, by status (the common ones are in
/// `shared::openapi`).
const ERROR_EXAMPLES: shared::openapi::ErrorExamples<'static> = &[
    (422, ErrorCode::EmptyInput, "inputs must not be empty"),
    (503, ErrorCode::ModelNotReady, "the model is still loading"),
];

/// The routes and the spec they were registered with, finished: error
/// examples per status, and the list bounds that depend on `config`
/// (`max_client_batch_size` as `maxItems` of `Inputs` and of `texts`).
fn routes_with_spec(config: &EmbeddingConfig) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(embed))
        .routes(routes!(embed_batch))
        .routes(routes!(openai_embeddings))
        .routes(routes!(tokenize))
        .routes(routes!(info))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .split_for_parts();
    shared::openapi::finish_error_responses(&mut spec, ERROR_EXAMPLES);
    set_batch_limit(&mut spec, config.max_client_batch_size);
    (api, spec)
}

/// States `max_client_batch_size` in the schemas of the input lists.
fn set_batch_limit(spec: &mut utoipa::openapi::OpenApi, max: usize) {
    let Some(components) = spec.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut("Inputs") {
        for item in one_of.items.iter_mut() {
            if let RefOr::T(Schema::Array(a)) = item {
                a.max_items = Some(max);
            }
        }
    }
    if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut("EmbedBatchRequest") {
        if let Some(RefOr::T(Schema::Array(a))) = o.properties.get_mut("texts") {
            a.max_items = Some(max);
        }
    }
}

/// The OpenAPI document the service serves at `/openapi.json` under
/// `config` (no model needed).
pub fn openapi(config: &EmbeddingConfig) -> utoipa::openapi::OpenApi {
    routes_with_spec(config).1
}

/// The router, with the OpenAPI spec at `/openapi.json` and Swagger UI at `/docs`.
pub fn router(state: AppState) -> axum::Router {
    let (api, spec) = routes_with_spec(&state.config);
    shared::http::with_spec_docs_and_auth(
        api,
        spec,
        "embedding-service",
        state.config.api_key.as_deref(),
        state.config.body_limit_bytes,
    )
    .layer(axum::middleware::from_fn_with_state(state.clone(), track))
    .with_state(state)
}
