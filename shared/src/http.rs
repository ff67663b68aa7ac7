//! HTTP plumbing both services use: the serving loop with its limits against
//! slow and idle clients, a JSON extractor whose rejections are our error
//! body, a bearer-token check, and fallbacks that answer in JSON.
//!
//! [`serve`] holds these invariants: at most `max_connections` connections
//! are open (past it, new ones wait in the kernel's accept backlog and cost
//! no task); a request head that has not fully arrived within
//! `header_read_timeout` of the server starting to wait for it is dropped
//! with its connection; a body still arriving `body_read_timeout` after its
//! head fails the read (408 through [`ApiJson`]); a connection with nothing
//! in flight and no bytes moving for `idle_timeout` is closed; on shutdown
//! the listener closes, idle connections close, and in-flight requests are
//! answered before `serve` returns.

use crate::error::{ErrorBody, ErrorCode};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `axum::Json` whose rejections become `ErrorBody`:
/// syntax error → 400 `invalid_json`, schema mismatch → 422 `invalid_request`,
/// a body that is not a JSON object (every request body of both services is
/// one) → 422, missing JSON content type → 415, body over the limit → 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ErrorBody;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedMediaType,
                "expected `Content-Type: application/json`",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) => return Err(bytes_rejection(&e)),
        };
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if let Some(&c) = first {
            if c != b'{' && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                let kind = match c {
                    b'[' => "an array",
                    b'"' => "a string",
                    b'n' => "null",
                    b't' | b'f' => "a boolean",
                    _ => "a number",
                };
                return Err(ErrorBody::new(
                    ErrorCode::InvalidRequest,
                    format!("the request body must be a JSON object; got {kind}"),
                ));
            }
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// Maps axum's JSON rejection onto our codes.
pub fn json_rejection(rej: JsonRejection) -> ErrorBody {
    match rej {
        JsonRejection::JsonDataError(e) => ErrorBody::new(ErrorCode::InvalidRequest, e.body_text()),
        // serde_json files a number too large for its field (e.g. 1e39 for
        // an f32) under syntax errors, but the JSON is well formed: 422.
        JsonRejection::JsonSyntaxError(e) if e.body_text().contains("number out of range") => {
            ErrorBody::new(
                ErrorCode::InvalidRequest,
                e.body_text().replace(
                    "number out of range",
                    "number out of range for this field (vectors hold 32-bit floats, at most ±3.4e38)",
                ),
            )
        }
        JsonRejection::JsonSyntaxError(e) => ErrorBody::new(ErrorCode::InvalidJson, e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ErrorBody::new(
            ErrorCode::UnsupportedMediaType,
            "expected `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) => bytes_rejection(&e),
        other => ErrorBody::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// The first error of type `E` in `err`'s source chain, `err` included.
/// A failed body read: 408 when the body read timeout cut it, 413 over the
/// body limit, 422 otherwise.
fn bytes_rejection(e: &axum::extract::rejection::BytesRejection) -> ErrorBody {
    if let Some(t) = find_source::<BodyReadTimeout>(e) {
        ErrorBody::new(ErrorCode::RequestTimeout, t.to_string())
    } else if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            "request body is over the size limit",
        )
    } else {
        ErrorBody::new(ErrorCode::InvalidRequest, e.body_text())
    }
}

fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// JSON 404 for unknown routes.
pub async fn not_found() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no such route")
}

/// Middleware: when `key` is set, every request needs
/// `Authorization: Bearer <key>` except the health probes (`/health`,
/// `/ready`) and, with `public_docs`, the documentation routes (`/`,
/// `/docs`, `/docs/*`, `/openapi.json`).
pub async fn require_bearer(
    key: Option<std::sync::Arc<str>>,
    public_docs: bool,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = key {
        let path = req.uri().path();
        let open = matches!(path, "/health" | "/ready") || (public_docs && is_docs_path(path));
        if !open {
            let ok = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                // The scheme is case-insensitive (RFC 7235 §2.1).
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| constant_time_eq(t.trim().as_bytes(), key.as_bytes()))
                .unwrap_or(false);
            if !ok {
                return ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "missing or wrong `Authorization: Bearer <key>` header",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The routes `http.public_docs` opens: the service index, Swagger UI and
/// its assets, and the OpenAPI document.
fn is_docs_path(path: &str) -> bool {
    matches!(path, "/" | "/docs" | "/openapi.json") || path.starts_with("/docs/")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received: draining in-flight requests");
}

const SWAGGER_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

/// Swagger UI at `/docs`, served from assets compiled into the binary (it
/// works offline), reading the spec from `/openapi.json`.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>(title: &'static str) -> axum::Router<S> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let page = format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head><body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui"}});</script>
</body></html>"##
    );
    axum::Router::new()
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { ([(CONTENT_TYPE, "text/html; charset=utf-8")], page) }
            }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { ([(CONTENT_TYPE, "application/javascript")], SWAGGER_JS) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { ([(CONTENT_TYPE, "text/css")], SWAGGER_CSS) }),
        )
}

/// A minimal HTTP/1.0 GET against `127.0.0.1:port` with std only, for
/// container health checks that need no tools in the image. Returns the
/// status code and body.
pub fn probe(port: u16, path: &str, api_key: Option<&str>) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, t)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(t)).ok();
    s.set_write_timeout(Some(t)).ok();
    let auth = api_key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "no HTTP status in {:?}",
                buf.chars().take(80).collect::<String>()
            )
        })?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `healthcheck` / `probe PATH` subcommands shared by both binaries: exit 0
/// when the service on `port` answers 200.
pub fn run_probe(port: u16, path: &str, api_key: Option<&str>, print: bool) -> ! {
    match probe(port, path, api_key) {
        Ok((status, body)) => {
            if print {
                print!("{body}");
            }
            std::process::exit(if status == 200 { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            std::process::exit(1)
        }
    }
}

/// What both services put around their API routes: `/openapi.json` (the
/// spec the routes were registered with), Swagger UI at `/docs`, a JSON 404,
/// the optional bearer key (all but the health probes, and the docs routes
/// when `http.public_docs`), the body limit, JSON error bodies, CORS per
/// `http.cors` (preflights answered before the key check), one access log
/// line per request, and the request id (`x-request-id`: the client's, or
/// a generated UUID) on every response, error responses included.
pub fn with_spec_docs_and_auth<S: Clone + Send + Sync + 'static>(
    api: axum::Router<S>,
    spec: utoipa::openapi::OpenApi,
    title: &'static str,
    api_key: Option<&str>,
    body_limit: usize,
    http: &HttpServerConfig,
) -> axum::Router<S> {
    let spec = std::sync::Arc::new(spec);
    let key: Option<std::sync::Arc<str>> = api_key.map(std::sync::Arc::from);
    let public_docs = http.public_docs;
    let router = api
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .merge(swagger_ui(title))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            require_bearer(key.clone(), public_docs, req, next)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(json_errors));
    let router = match cors_layer(&http.cors) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    with_request_id_and_access_log(router)
}

/// The `x-request-id` header.
pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Wraps `router` (outermost first): a request id is set on the request
/// when it has none (a UUID v4) and copied onto the response; one access
/// log line per request (target `access`, level info) inside a `request`
/// span carrying `method`, `path` and `request_id`, with `status` and
/// `latency_ms` on the line itself. Events logged while a request is
/// handled carry the same span, so errors can be matched to requests.
pub fn with_request_id_and_access_log<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
) -> axum::Router<S> {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %id,
            )
        })
        .on_request(())
        .on_response(
            |resp: &axum::http::Response<axum::body::Body>,
             latency: Duration,
             _span: &tracing::Span| {
                let ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
                tracing::info!(
                    target: "access",
                    status = resp.status().as_u16(),
                    latency_ms = ms,
                    "request done"
                );
            },
        )
        .on_failure(());
    router
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The CORS layer for `origins` (none when `off`): the allowed origins
/// get `Access-Control-Allow-Origin` on every answer, and preflight
/// (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before
/// the key check, allowing the methods of both APIs and whichever headers
/// the page asks to send; `X-Request-Id` and `X-Operation` are exposed to
/// scripts. Browsers cache a preflight for 10 minutes.
pub fn cors_layer(origins: &CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        CorsOrigins::Off => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(_) => {
            let origins = origins.clone();
            AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                origin.to_str().is_ok_and(|o| origins.allows(o))
            })
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            // Whatever headers the browser asks to send (clients add their
            // own, e.g. the OpenAI SDK's `x-stainless-*`, and read-your-writes
            // sends `x-consistency-after`); the origin list is the guard.
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
            // Readable by the page: the request id, and a write's operation
            // number for read-your-writes.
            .expose_headers([
                REQUEST_ID,
                axum::http::HeaderName::from_static("x-operation"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// `GET /`: what the service is and where to look next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "name": "indexing-service",
    "version": "0.1.0",
    "links": {"docs": "/docs", "openapi": "/openapi.json", "health": "/health", "metrics": "/metrics"}
}))]
pub struct ServiceIndex {
    /// The service's name (`indexing-service`, `embedding-service`).
    pub name: String,
    /// The service's version (semver).
    pub version: String,
    pub links: ServiceLinks,
}

/// Paths of the service's other entry points.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ServiceLinks {
    /// Swagger UI.
    pub docs: String,
    /// The OpenAPI document.
    pub openapi: String,
    /// Liveness probe.
    pub health: String,
    /// Prometheus metrics.
    pub metrics: String,
}

/// The service's name, version and links to its docs, spec, health probe
/// and metrics. Open without the API key unless `http.public_docs` is false.
#[utoipa::path(get, path = "/", tag = "service", operation_id = "service_index",
    responses(
        (status = 200, body = ServiceIndex),
        (status = 401, body = ErrorBody),
    ))]
#[allow(dead_code)] // Only its spec is used; `root_routes` serves the route.
async fn service_index() {}

/// The spec of `GET /`, and the bearer-key scheme both services use:
/// Swagger UI's Authorize button sends `Authorization: Bearer <key>`.
/// The key is optional in the spec (`security: [{}, {bearer_auth: []}]`)
/// because it is a setting.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(service_index),
    components(schemas(ServiceIndex, ServiceLinks, ErrorBody, ErrorCode)),
    modifiers(&BearerAuth),
    security((), ("bearer_auth" = []))
)]
struct RootDoc;

/// Declares the `bearer_auth` security scheme.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, spec: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_auth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The service's `api_key` (config), sent as `Authorization: Bearer <key>`. \
                         Only needed when a key is configured; `/health` and `/ready` never need it.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /` for a service called `name` at `version`, with its spec (and
/// the bearer-key security scheme): merge it into the service's
/// `OpenApiRouter` so route and spec come together.
pub fn root_routes<S: Clone + Send + Sync + 'static>(
    name: &'static str,
    version: &'static str,
) -> utoipa_axum::router::OpenApiRouter<S> {
    use utoipa::OpenApi;
    let index = ServiceIndex {
        name: name.into(),
        version: version.into(),
        links: ServiceLinks {
            docs: "/docs".into(),
            openapi: "/openapi.json".into(),
            health: "/health".into(),
            metrics: "/metrics".into(),
        },
    };
    utoipa_axum::router::OpenApiRouter::with_openapi(RootDoc::openapi()).route(
        "/",
        axum::routing::get(move || {
            let index = index.clone();
            async move { axum::Json(index) }
        }),
    )
}

/// Middleware: every error answer carries the JSON error body. Answers
/// made by the framework or a layer (405 for a wrong method, 413 from the
/// body limit, 408 from a timeout, ...) come with an empty or plain-text
/// body; they get `{"error": {"code", "message"}}` with their status and
/// headers (`Allow` on a 405) kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    use axum::http::StatusCode as S;
    let (code, message) = match status {
        S::METHOD_NOT_ALLOWED => {
            let allow = resp
                .headers()
                .get(axum::http::header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .map(|a| format!("; allowed: {a}"))
                .unwrap_or_default();
            (
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}{allow}"),
            )
        }
        S::NOT_FOUND => (ErrorCode::NotFound, "no such route".to_string()),
        S::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "request body is over the size limit".to_string(),
        ),
        S::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "expected `Content-Type: application/json`".to_string(),
        ),
        S::UNAUTHORIZED => (ErrorCode::Unauthorized, "unauthorized".to_string()),
        S::REQUEST_TIMEOUT => (
            ErrorCode::RequestTimeout,
            "the request was not received in time".to_string(),
        ),
        S::TOO_MANY_REQUESTS => (ErrorCode::Overloaded, "too many requests".to_string()),
        s if s.is_client_error() => (
            ErrorCode::InvalidRequest,
            s.canonical_reason().unwrap_or("bad request").to_lowercase(),
        ),
        s => (
            ErrorCode::Internal,
            s.canonical_reason()
                .unwrap_or("server error")
                .to_lowercase(),
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.extensions.insert(code);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).expect("JSON");
    Response::from_parts(parts, axum::body::Body::from(body))
}

// ---------------------------------------------------------------------------
// The serving loop.

use crate::config::{CorsOrigins, HttpServerConfig};
use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits [`serve`] puts on client connections (see the module docs for
/// what each one guarantees). Built from a service's `http:` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time for a whole request head (request line and headers), counted
    /// from when the server starts waiting for it: on accept and after each
    /// response. So it also bounds how long a keep-alive connection may sit
    /// idle between requests.
    pub header_read_timeout: Duration,
    /// Time for a whole request body, counted from when its head arrived.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving in either
    /// direction for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once (at least 1); more wait in the accept backlog.
    pub max_connections: usize,
}

impl From<&HttpServerConfig> for ServerLimits {
    fn from(c: &HttpServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(c.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
        }
    }
}

impl Default for ServerLimits {
    /// The defaults of [`HttpServerConfig`].
    fn default() -> Self {
        Self::from(&HttpServerConfig::default())
    }
}

/// The error a request body's read fails with once `body_read_timeout` has
/// passed since its head arrived; [`ApiJson`] turns it into 408
/// `request_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout {
    /// The limit that passed.
    pub timeout: Duration,
}

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {:?} of the request head",
            self.timeout
        )
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Serves `router` over HTTP/1.1 (keep-alive, no upgrades) on `listener`
/// within `limits` until `shutdown` resolves. Then it closes the listener,
/// closes idle connections, lets each in-flight request finish (its
/// connection closes after the response) and returns once every connection
/// is closed. A connection still sending a request head at that moment may
/// finish it and be answered, so it holds the drain for at most
/// `header_read_timeout`; bound the whole wait from outside if it must be
/// bounded.
///
/// Accept errors never end the loop: per-connection ones are skipped, others
/// (such as running out of file descriptors) are logged and retried after
/// 1 s. `limits.max_connections` must be at least 1 (0 would serve nothing).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // The permit comes first: past the cap nothing is accepted, so extra
        // connections wait in the kernel's backlog and cost no task.
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    router.clone(),
                    limits,
                    stop_rx.clone(),
                    permit,
                ));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!("accept failed: {e}; retrying in 1 s");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    drop(listener);
    drop(stop_rx);
    let open = limits.max_connections - permits.available_permits();
    tracing::info!("stopped accepting; draining {open} open connection(s)");
    let _ = stop_tx.send(true);
    // Resolves once every connection task has dropped its receiver.
    stop_tx.closed().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One connection: hyper's HTTP/1 state machine with the header read timeout,
/// the request bodies under their deadline, and an idle watch beside it.
async fn serve_connection(
    stream: TcpStream,
    router: axum::Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    use tower::ServiceExt;
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let in_service = activity.clone();
    let service = hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
        let guard = InFlight::start(in_service.clone());
        let deadline = Instant::now() + limits.body_read_timeout;
        let req = req.map(|body| {
            axum::body::Body::new(DeadlineBody {
                inner: body,
                deadline,
                timeout: limits.body_read_timeout,
                sleep: None,
            })
        });
        let response = router.clone().oneshot(req);
        async move {
            let r = response.await;
            drop(guard);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut idle = pin!(idle_watch(&activity, limits.idle_timeout));
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut idle => {
                tracing::debug!("closing a connection idle for {:?}", limits.idle_timeout);
                break;
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it has in
/// flight. Touched from the connection's own task only.
struct Activity {
    base: Instant,
    /// Microseconds after `base` of the last read, write or request end.
    last_us: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_us: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let us = self.base.elapsed().as_micros().min(u64::MAX as u128) as u64;
        self.last_us.store(us, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_micros(self.last_us.load(Ordering::Relaxed))
    }
}

/// Counts a request in flight from its head until its handler answered.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Self(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Resolves once the connection has had no request in flight and moved no
/// bytes for `idle`.
async fn idle_watch(a: &Activity, idle: Duration) {
    loop {
        let now = Instant::now();
        let deadline = if a.in_flight.load(Ordering::Relaxed) > 0 {
            now + idle
        } else {
            a.last() + idle
        };
        if deadline <= now {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The socket, recording in `activity` every read or write that moves bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails with [`BodyReadTimeout`] once `deadline` has
/// passed: one deadline for the whole body, so a client that trickles bytes
/// cannot stretch it.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    /// Armed on the first poll.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout {
                timeout: this.timeout,
            }))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod serve_tests {
    //! The serving loop on its own: shutdown drains, and the idle watch
    //! leaves long handlers alone. The limits against slow clients are tested
    //! through the services' real routers (indexing-service's `engine` test
    //! binary, embedding-service's `api` tests).

    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    const SLOW: Duration = Duration::from_millis(500);

    fn router() -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(SLOW).await;
                    "done"
                }),
            )
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        done: Option<tokio::task::JoinHandle<()>>,
        rt: tokio::runtime::Runtime,
    }

    fn start(limits: ServerLimits) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(serve(listener, router(), limits, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            done: Some(done),
            rt,
        }
    }

    fn send(addr: SocketAddr, path: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        s
    }

    /// Reads one response with a `Content-Length` body: (status, body).
    fn response(s: &mut TcpStream, within: Duration) -> (u16, String) {
        s.set_read_timeout(Some(within)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]);
                    return (status, body.into_owned());
                }
            }
            let n = s.read(&mut buf).expect("a response in time");
            assert!(n > 0, "closed before a full response");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Whether the server closes `s` within `within` (EOF or reset).
    fn closes_within(s: &mut TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    #[test]
    fn shutdown_answers_in_flight_requests_and_closes_idle_connections() {
        let mut srv = start(ServerLimits::default());
        let mut idle = send(srv.addr, "/health");
        assert_eq!(response(&mut idle, Duration::from_secs(5)).0, 200);
        let mut busy = send(srv.addr, "/slow");
        std::thread::sleep(Duration::from_millis(100));

        let t0 = std::time::Instant::now();
        srv.stop.take().unwrap().send(()).unwrap();
        // The idle keep-alive connection is closed at once, not after the
        // 10 s header timeout...
        assert!(closes_within(&mut idle, Duration::from_secs(2)));
        // ...the request in flight is answered, then its connection closes...
        assert_eq!(
            response(&mut busy, Duration::from_secs(5)),
            (200, "done".to_string())
        );
        assert!(closes_within(&mut busy, Duration::from_secs(2)));
        // ...and `serve` returns with no connection left, listener closed.
        let done = srv.done.take().unwrap();
        srv.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), done).await })
            .expect("serve returned after draining")
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(TcpStream::connect(srv.addr).is_err());
    }

    #[test]
    fn a_handler_slower_than_the_idle_timeout_is_answered() {
        let srv = start(ServerLimits {
            idle_timeout: Duration::from_millis(100),
            ..ServerLimits::default()
        });
        let mut s = send(srv.addr, "/slow");
        assert_eq!(
            response(&mut s, Duration::from_secs(5)),
            (200, "done".to_string())
        );
        // Quiet after the answer: now the idle timeout applies.
        assert!(closes_within(&mut s, Duration::from_secs(2)));
    }

    #[test]
    fn limits_come_from_the_config_section() {
        let c = HttpServerConfig {
            header_read_timeout_ms: 1,
            body_read_timeout_ms: 2,
            idle_timeout_ms: 3,
            max_connections: 4,
            ..HttpServerConfig::default()
        };
        assert_eq!(
            ServerLimits::from(&c),
            ServerLimits {
                header_read_timeout: Duration::from_millis(1),
                body_read_timeout: Duration::from_millis(2),
                idle_timeout: Duration::from_millis(3),
                max_connections: 4,
            }
        );
    }
}
