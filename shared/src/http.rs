//! HTTP plumbing both services use: a JSON extractor whose rejections are our
//! error body, a bearer-token check, and fallbacks that answer in JSON.

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
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ErrorBody::new(
                    ErrorCode::PayloadTooLarge,
                    "request body is over the size limit",
                ))
            }
            Err(e) => return Err(ErrorBody::new(ErrorCode::InvalidRequest, e.body_text())),
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
        JsonRejection::BytesRejection(e) => {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ErrorBody::new(
                    ErrorCode::PayloadTooLarge,
                    "request body is over the size limit",
                )
            } else {
                ErrorBody::new(ErrorCode::InvalidRequest, e.body_text())
            }
        }
        other => ErrorBody::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// JSON 404 for unknown routes.
pub async fn not_found() -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, "no such route")
}

/// Middleware: when `key` is set, every request except the health probes needs
/// `Authorization: Bearer <key>`.
pub async fn require_bearer(
    key: Option<std::sync::Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = key {
        let path = req.uri().path();
        let open = matches!(path, "/health" | "/ready");
        if !open {
            let ok = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| constant_time_eq(t.as_bytes(), key.as_bytes()))
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
/// the optional bearer key (all but the health probes) and the body limit.
pub fn with_spec_docs_and_auth<S: Clone + Send + Sync + 'static>(
    api: axum::Router<S>,
    spec: utoipa::openapi::OpenApi,
    title: &'static str,
    api_key: Option<&str>,
    body_limit: usize,
) -> axum::Router<S> {
    let spec = std::sync::Arc::new(spec);
    let key: Option<std::sync::Arc<str>> = api_key.map(std::sync::Arc::from);
    api.route(
        "/openapi.json",
        axum::routing::get(move || {
            let spec = spec.clone();
            async move { axum::Json(spec.as_ref().clone()) }
        }),
    )
    .merge(swagger_ui(title))
    .fallback(not_found)
    .layer(axum::middleware::from_fn(move |req, next| {
        require_bearer(key.clone(), req, next)
    }))
    .layer(axum::extract::DefaultBodyLimit::max(body_limit))
    .layer(axum::middleware::from_fn(json_errors))
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
        S::TOO_MANY_REQUESTS => (ErrorCode::Overloaded, "too many requests".to_string()),
        s if s.is_client_error() => (
            ErrorCode::InvalidRequest,
            s.canonical_reason().unwrap_or("bad request").to_lowercase(),
        ),
        s => (
            ErrorCode::Internal,
            s.canonical_reason().unwrap_or("server error").to_lowercase(),
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).expect("JSON");
    Response::from_parts(parts, axum::body::Body::from(body))
}
