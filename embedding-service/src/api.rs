//! HTTP: translate requests into runtime calls and results into responses,
//! nothing else. Routes are registered through utoipa-axum so the OpenAPI
//! spec cannot drift from the code; every error status is listed per route.

use crate::batching::{EmbedError, EmbedOptions, ModelInput, Runtime};
use crate::registry::{Models, UnknownModel};
use crate::AppState;
use axum::extract::{MatchedPath, Path, Request, State};
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
            EmbedError::InvalidInput(_) => ErrorCode::InvalidRequest,
            EmbedError::Overloaded(_) => ErrorCode::Overloaded,
            EmbedError::ShuttingDown => ErrorCode::ModelNotReady,
            EmbedError::OutOfMemory => ErrorCode::OutOfMemory,
            EmbedError::Tokenizer(_) | EmbedError::Model(_) => {
                tracing::error!("internal error: {e}");
                return ErrorBody::new(ErrorCode::Internal, "internal error; see the service log");
            }
        };
        ErrorBody::new(code, e.to_string())
    }
}

impl From<UnknownModel> for ErrorBody {
    fn from(e: UnknownModel) -> Self {
        ErrorBody::new(ErrorCode::ModelNotFound, e.to_string())
    }
}

/// The served models, or 503 while they load.
fn models(s: &AppState) -> Result<Arc<Models>, ErrorBody> {
    s.models
        .get()
        .cloned()
        .ok_or_else(|| ErrorBody::new(ErrorCode::ModelNotReady, "the model is still loading"))
}

/// The runtime of the model a request names (`None`: the default; any
/// name when one model is served); 503 while loading, 404
/// `model_not_found` listing the served models.
fn runtime(s: &AppState, model: Option<&str>) -> Result<Arc<Runtime>, ErrorBody> {
    Ok(models(s)?.get(model)?)
}

/// Inputs of the TEI routes: texts, and token ids of the model's vocabulary.
fn model_inputs(inputs: EmbedInputs) -> Vec<ModelInput> {
    inputs
        .into_items()
        .into_iter()
        .map(|i| match i {
            InputItem::Text(t) => ModelInput::Text(t),
            InputItem::Ids(ids) => ModelInput::Ids(ids),
        })
        .collect()
}

/// The options of an `EmbedRequest` (`/embed` and `/`).
fn embed_options(req: &EmbedRequest) -> EmbedOptions {
    EmbedOptions {
        normalize: req.normalize,
        truncate: req.truncate.unwrap_or(true),
        truncation: req.truncation_direction.unwrap_or_default(),
        prompt_name: req.prompt_name.clone(),
        dimensions: req.dimensions,
        max_inputs: None,
    }
}

async fn embed_tei(s: &AppState, req: EmbedRequest) -> Result<Json<Vec<Vec<f32>>>, ErrorBody> {
    let rt = runtime(s, req.model.as_deref())?;
    let opts = embed_options(&req);
    let out = rt.embed(model_inputs(req.inputs), opts).await?;
    Ok(Json(out.vectors))
}

/// Embed one input or a list of inputs (texts, or token ids of the
/// model's vocabulary).
#[utoipa::path(post, path = "/embed", tag = "embedding", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in input order", body = Vec<Vec<f32>>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Empty list, wrong input shape, too many inputs, text too long with truncate=false, bad dimensions, unknown prompt_name, token id outside the vocabulary", body = ErrorBody),
        (status = 429, description = "Too many requests in flight", body = ErrorBody),
        (status = 500, description = "Tokenizer or forward pass failed", body = ErrorBody),
        (status = 503, description = "Model not loaded yet, or shutting down; or the GPU out of memory for a text even alone (out_of_memory)", body = ErrorBody),
    ))]
async fn embed(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ErrorBody> {
    embed_tei(&s, req).await
}

/// The same as `POST /embed`, at the root: where text-embeddings-inference
/// clients (`huggingface_hub.InferenceClient(model=URL)`) post.
#[utoipa::path(post, path = "/", tag = "embedding", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in input order", body = Vec<Vec<f32>>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn embed_root(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ErrorBody> {
    embed_tei(&s, req).await
}

/// Every token's last hidden state, not pooled nor normalised:
/// `[input][token][dimension]`, special tokens included.
#[utoipa::path(post, path = "/embed_all", tag = "embedding", request_body = EmbedAllRequest,
    responses(
        (status = 200, description = "Per input, one vector per token (the model's dimension each)", body = Vec<Vec<Vec<f32>>>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn embed_all(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedAllRequest>,
) -> Result<Json<Vec<Vec<Vec<f32>>>>, ErrorBody> {
    let rt = runtime(&s, req.model.as_deref())?;
    let opts = EmbedOptions {
        truncate: req.truncate.unwrap_or(true),
        truncation: req.truncation_direction.unwrap_or_default(),
        prompt_name: req.prompt_name,
        ..EmbedOptions::default()
    };
    let out = rt.embed_tokens(model_inputs(req.inputs), opts).await?;
    Ok(Json(out.states))
}

/// The original design's batch endpoint.
#[utoipa::path(post, path = "/embed/batch", tag = "embedding", request_body = EmbedBatchRequest,
    responses(
        (status = 200, body = EmbedBatchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn embed_batch(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EmbedBatchRequest>,
) -> Result<Json<EmbedBatchResponse>, ErrorBody> {
    let rt = runtime(&s, req.model.as_deref())?;
    let opts = EmbedOptions {
        normalize: req.normalize,
        truncate: req.truncate.unwrap_or(true),
        dimensions: req.dimensions,
        ..EmbedOptions::default()
    };
    let inputs = req.texts.into_iter().map(ModelInput::Text).collect();
    let out = rt.embed(inputs, opts).await?;
    let dimension = out
        .vectors
        .first()
        .map(Vec::len)
        .unwrap_or(rt.info.dimension);
    Ok(Json(EmbedBatchResponse {
        embeddings: out.vectors,
        model: rt.info.alias.clone(),
        dimension,
    }))
}

/// The inputs of `/v1/embeddings`: texts, or OpenAI (`cl100k_base`) token
/// ids; both kinds in one request is a 422, as on OpenAI.
fn openai_inputs(input: OpenAiInput) -> Result<Vec<ModelInput>, ErrorBody> {
    let items = input.0.into_items();
    let texts = items
        .iter()
        .filter(|i| matches!(i, InputItem::Text(_)))
        .count();
    if texts != 0 && texts != items.len() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            "input: texts and token-id arrays cannot be mixed in one request; send a string, \
             an array of strings, an array of token ids, or an array of token-id arrays",
        ));
    }
    Ok(items
        .into_iter()
        .map(|i| match i {
            InputItem::Text(t) => ModelInput::Text(t),
            InputItem::Ids(ids) => ModelInput::OpenAiIds(ids),
        })
        .collect())
}

/// OpenAI-compatible embeddings: texts or OpenAI token ids (decoded from
/// `cl100k_base`), up to 2048 inputs.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = OpenAiEmbeddingsRequest,
    responses(
        (status = 200, body = OpenAiEmbeddingsResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn openai_embeddings(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<OpenAiEmbeddingsRequest>,
) -> Result<Json<OpenAiEmbeddingsResponse>, ErrorBody> {
    let rt = runtime(&s, req.model.as_deref())?;
    let opts = EmbedOptions {
        dimensions: req.dimensions,
        max_inputs: Some(OPENAI_MAX_INPUTS),
        ..EmbedOptions::default()
    };
    let out = rt.embed(openai_inputs(req.input)?, opts).await?;
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
        model: req.model.unwrap_or_else(|| rt.info.alias.clone()),
        usage: OpenAiUsage {
            prompt_tokens: out.tokens,
            total_tokens: out.tokens,
        },
    }))
}

fn openai_model(rt: &Runtime) -> OpenAiModel {
    OpenAiModel {
        id: rt.info.alias.clone(),
        object: "model".into(),
        created: rt.info.created,
        owned_by: "embedding-service".into(),
    }
}

/// Every model this service serves, the default first, in OpenAI's list
/// shape; each `id` is what requests pass as `model`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = OpenAiModelList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn openai_models(State(s): State<AppState>) -> Result<Json<OpenAiModelList>, ErrorBody> {
    let models = models(&s)?;
    Ok(Json(OpenAiModelList {
        object: "list".into(),
        data: models.all().iter().map(|rt| openai_model(rt)).collect(),
    }))
}

/// One served model by name: its alias, its full id
/// (`sentence-transformers/all-MiniLM-L6-v2`, its `/` percent-encoded as
/// OpenAI clients do) or the id's last part (`all-MiniLM-L6-v2`); any other
/// is a 404 `model_not_found` listing the served models.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai",
    params(("model" = String, Path, description = "The model id, or its part after the last `/`", example = "all-MiniLM-L6-v2")),
    responses((status = 200, body = OpenAiModel), (status = 401, body = ErrorBody),
        (status = 404, description = "This service does not serve that model (model_not_found)", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn openai_model_get(
    State(s): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<OpenAiModel>, ErrorBody> {
    let rt = models(&s)?.find(Some(model.as_str()))?;
    Ok(Json(openai_model(&rt)))
}

/// Tokens of each input as the model sees them (the prompt prepended,
/// truncated at max_seq_length).
#[utoipa::path(post, path = "/tokenize", tag = "embedding", request_body = TokenizeRequest,
    responses(
        (status = 200, body = Vec<Vec<Token>>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn tokenize(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<Vec<Vec<Token>>>, ErrorBody> {
    let rt = runtime(&s, req.model.as_deref())?;
    Ok(Json(
        rt.tokenize(
            req.inputs.into_vec(),
            req.add_special_tokens.unwrap_or(true),
            req.prompt_name.as_deref(),
        )
        .await?,
    ))
}

/// Token ids of the model's vocabulary back to text, one text per list.
#[utoipa::path(post, path = "/decode", tag = "embedding", request_body = DecodeRequest,
    responses(
        (status = 200, description = "One text per list of ids, in order", body = Vec<String>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No served model by the name given in `model` (model_not_found; the message lists the served ones)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn decode(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<DecodeRequest>,
) -> Result<Json<Vec<String>>, ErrorBody> {
    let rt = runtime(&s, req.model.as_deref())?;
    Ok(Json(
        rt.decode(req.ids.into_vec(), req.skip_special_tokens.unwrap_or(true))
            .await?,
    ))
}

/// The facts of one served model.
fn served_info(rt: &Runtime) -> ServedModelInfo {
    let i = &rt.info;
    ServedModelInfo {
        alias: i.alias.clone(),
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
        max_batch_tokens: i.max_batch_tokens,
        max_concurrent_requests: i.max_concurrent_requests,
    }
}

/// Model and batching facts: TEI's fields for the default model, and
/// `models`, every served model (the default first).
#[utoipa::path(get, path = "/info", tag = "service",
    responses((status = 200, body = InfoResponse), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn info(State(s): State<AppState>) -> Result<Json<InfoResponse>, ErrorBody> {
    let models = models(&s)?;
    Ok(Json(InfoResponse::new(
        served_info(models.default_model()),
        models.all().iter().map(|rt| served_info(rt)).collect(),
        s.config.max_client_batch_size,
        Some(s.config.body_limit_bytes),
        env!("CARGO_PKG_VERSION").into(),
    )))
}

/// 200 once every served model is loaded and warmed up, 503 before.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Every model loaded and warmed up", body = HealthResponse,
            example = json!({"status": "ok"})),
        (status = 503, description = "A model is still loading", body = HealthResponse,
            example = json!({"status": "loading"})),
    ))]
async fn health(State(s): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    if s.models.get().is_some() {
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
    s.metrics.count_error(&resp);
    resp
}

/// Error examples of this service's spec, by status (the common ones are in
/// `shared::openapi`).
const ERROR_EXAMPLES: shared::openapi::ErrorExamples<'static> = &[
    (
        404,
        ErrorCode::ModelNotFound,
        "model `text-embedding-3-small` is not served here; this service serves `sentence-transformers/all-MiniLM-L6-v2`, `xlmr`",
    ),
    (422, ErrorCode::EmptyInput, "inputs must not be empty"),
    (503, ErrorCode::ModelNotReady, "the model is still loading"),
];

/// The routes and the spec they were registered with, finished: error
/// examples per status, and the list bounds that depend on `config`
/// (`max_client_batch_size` as `maxItems` of `Inputs` and of `texts`).
fn routes_with_spec(
    config: &EmbeddingConfig,
) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    // OpenAI's 2048 inputs need more than the service's own body limit.
    let openai = OpenApiRouter::new()
        .routes(routes!(openai_embeddings))
        .layer(axum::extract::DefaultBodyLimit::max(
            config.body_limit_bytes.max(OPENAI_BODY_LIMIT_BYTES),
        ));
    let (api, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(embed_root))
        .routes(routes!(embed))
        .routes(routes!(embed_all))
        .routes(routes!(embed_batch))
        .merge(openai)
        .routes(routes!(openai_models))
        .routes(routes!(openai_model_get))
        .routes(routes!(tokenize))
        .routes(routes!(decode))
        .routes(routes!(info))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .merge(shared::http::root_routes(
            "embedding-service",
            env!("CARGO_PKG_VERSION"),
        ))
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
    for name in ["Inputs", "EmbedInputs"] {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in one_of.items.iter_mut() {
                if let RefOr::T(Schema::Array(a)) = item {
                    a.max_items = Some(max);
                }
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
        &state.config.http,
    )
    .layer(axum::middleware::from_fn_with_state(state.clone(), track))
    .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::openapi::json::{operations, request_example, request_schema_name, resolve};

    fn spec_with(max_batch: usize) -> Value {
        let cfg = EmbeddingConfig {
            max_client_batch_size: max_batch,
            ..EmbeddingConfig::default()
        };
        serde_json::to_value(openapi(&cfg)).unwrap()
    }

    /// The schema of `schema.field`, through a `$ref`.
    fn field<'a>(spec: &'a Value, schema: &str, field: &str) -> &'a Value {
        let p = &spec["components"]["schemas"][schema]["properties"][field];
        assert!(!p.is_null(), "no {schema}.{field}");
        resolve(spec, p)
    }

    #[test]
    fn input_lists_are_a_string_or_array_union() {
        let spec = spec_with(7);
        // Texts only (TEI's TokenizeInput).
        {
            let (schema, f) = ("TokenizeRequest", "inputs");
            let s = field(&spec, schema, f);
            assert_ne!(s["type"], "object", "{schema}.{f}: {s}");
            let arms = s["oneOf"].as_array().unwrap_or_else(|| panic!("{s}"));
            assert_eq!(arms.len(), 2, "{s}");
            assert_eq!(
                arms[0],
                json!({"type": "string", "description": "One text."})
            );
            assert_eq!(arms[1]["type"], "array");
            assert_eq!(arms[1]["items"], json!({"type": "string"}));
            // Empty lists are refused; the configured batch size bounds them.
            assert_eq!(arms[1]["minItems"], 1, "{s}");
            assert_eq!(arms[1]["maxItems"], 7, "{s}");
        }
        // TEI's Input: one input or a list of inputs, each a text or token ids.
        let s = field(&spec, "EmbedRequest", "inputs");
        let arms = s["oneOf"].as_array().unwrap_or_else(|| panic!("{s}"));
        assert_eq!(arms.len(), 2, "{s}");
        let one = &arms[0]["oneOf"];
        assert_eq!(one[0]["type"], "string", "{s}");
        assert_eq!(one[1]["type"], "array", "{s}");
        assert_eq!(one[1]["items"]["type"], "integer", "{s}");
        assert_eq!(arms[1]["items"], arms[0], "{s}");
        assert_eq!(
            (&arms[1]["minItems"], &arms[1]["maxItems"]),
            (&json!(1), &json!(7))
        );
        assert_eq!(field(&spec, "EmbedAllRequest", "inputs"), s);
        // OpenAI's input: string | strings | token ids | token-id arrays, 2048 at most.
        let s = field(&spec, "OpenAiEmbeddingsRequest", "input");
        let arms = s["oneOf"].as_array().unwrap_or_else(|| panic!("{s}"));
        assert_eq!(arms.len(), 4, "{s}");
        assert_eq!(arms[0]["type"], "string");
        assert_eq!(arms[1]["items"]["type"], "string");
        assert_eq!(arms[2]["items"]["type"], "integer");
        assert_eq!(arms[3]["items"]["items"]["type"], "integer");
        for arm in [&arms[1], &arms[3]] {
            assert_eq!(arm["maxItems"], OPENAI_MAX_INPUTS, "{arm}");
        }
        let texts = field(&spec, "EmbedBatchRequest", "texts");
        assert_eq!(
            (&texts["minItems"], &texts["maxItems"]),
            (&json!(1), &json!(7))
        );
    }

    #[test]
    fn openai_embedding_is_a_float_array_or_base64_string() {
        let spec = spec_with(256);
        let e = field(&spec, "OpenAiEmbedding", "embedding");
        let arms = e["oneOf"].as_array().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(arms.len(), 2, "{e}");
        assert_eq!(arms[0]["type"], "array");
        assert_eq!(arms[0]["items"]["type"], "number");
        assert_eq!(arms[1]["type"], "string");
        assert_eq!(arms[1]["contentEncoding"], "base64");
        let f = field(&spec, "OpenAiEmbeddingsRequest", "encoding_format");
        let f = match f.get("oneOf") {
            Some(arms) => resolve(
                &spec,
                arms.as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["type"] != "null")
                    .unwrap(),
            ),
            None => f,
        };
        assert_eq!(f["enum"], json!(["float", "base64"]), "{f}");
    }

    #[test]
    fn dimensions_start_at_one() {
        let spec = spec_with(256);
        for schema in [
            "EmbedRequest",
            "EmbedBatchRequest",
            "OpenAiEmbeddingsRequest",
        ] {
            assert_eq!(field(&spec, schema, "dimensions")["minimum"], 1, "{schema}");
        }
    }

    /// No property of any schema is a bare `object`: each says what it holds.
    #[test]
    fn no_field_is_an_untyped_object() {
        let spec = spec_with(256);
        for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
            for (f, p) in schema["properties"].as_object().into_iter().flatten() {
                let bare = p["type"] == "object" && p.get("properties").is_none();
                assert!(!bare, "{name}.{f} is an untyped object: {p}");
            }
        }
    }

    #[test]
    fn every_route_lists_the_statuses_it_can_answer() {
        let spec = openapi(&EmbeddingConfig::default());
        let body = [200, 400, 401, 404, 413, 415, 422, 429, 500, 503];
        let expected: Vec<(String, &str, Vec<u16>)> = vec![
            ("/".into(), "get", vec![200, 401]),
            ("/".into(), "post", body.to_vec()),
            ("/decode".into(), "post", body.to_vec()),
            ("/embed".into(), "post", body.to_vec()),
            ("/embed/batch".into(), "post", body.to_vec()),
            ("/embed_all".into(), "post", body.to_vec()),
            ("/health".into(), "get", vec![200, 503]),
            ("/info".into(), "get", vec![200, 401, 503]),
            ("/metrics".into(), "get", vec![200, 401]),
            ("/tokenize".into(), "post", body.to_vec()),
            ("/v1/embeddings".into(), "post", body.to_vec()),
            ("/v1/models".into(), "get", vec![200, 401, 503]),
            ("/v1/models/{model}".into(), "get", vec![200, 401, 404, 503]),
        ];
        assert_eq!(shared::openapi::statuses(&spec), expected);
    }

    #[test]
    fn error_examples_match_their_status() {
        let spec = spec_with(256);
        let faults = shared::openapi::json::error_example_faults(&spec);
        assert!(faults.is_empty(), "{faults:#?}");
        assert_eq!(
            spec["paths"]["/embed"]["post"]["responses"]["503"]["content"]["application/json"]
                ["example"]["error"]["code"],
            "model_not_ready"
        );
    }

    /// Each request body's example is one the handler accepts (the end-to-end
    /// test sends them to the running service).
    #[test]
    fn request_examples_parse_as_their_types() {
        let spec = spec_with(256);
        let mut seen = 0;
        for (method, path, op) in operations(&spec) {
            let Some(name) = request_schema_name(op) else {
                continue;
            };
            let example = request_example(&spec, op)
                .unwrap_or_else(|| panic!("{method} {path}: no request example"));
            let parsed = match name.as_str() {
                "EmbedRequest" => serde_json::from_value::<EmbedRequest>(example.clone()).map(drop),
                "EmbedBatchRequest" => {
                    serde_json::from_value::<EmbedBatchRequest>(example.clone()).map(drop)
                }
                "OpenAiEmbeddingsRequest" => {
                    serde_json::from_value::<OpenAiEmbeddingsRequest>(example.clone()).map(drop)
                }
                "TokenizeRequest" => {
                    serde_json::from_value::<TokenizeRequest>(example.clone()).map(drop)
                }
                "EmbedAllRequest" => {
                    serde_json::from_value::<EmbedAllRequest>(example.clone()).map(drop)
                }
                "DecodeRequest" => {
                    serde_json::from_value::<DecodeRequest>(example.clone()).map(drop)
                }
                other => panic!("{method} {path}: unexpected body {other}"),
            };
            parsed.unwrap_or_else(|e| panic!("{method} {path}: {example}: {e}"));
            seen += 1;
        }
        assert_eq!(seen, 7);
    }
}
