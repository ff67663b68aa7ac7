//! Driving the real router in-process (no socket): one request at a time
//! through `tower::ServiceExt::oneshot`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use indexing_service::api::AppState;
use serde_json::Value;
use shared::config::IndexingConfig;
use std::path::Path;
use tower::ServiceExt;

/// The service's state and router over `data_dir`; the embedding service
/// address points nowhere (tests send vectors).
pub fn app_on(data_dir: &Path) -> (Router, AppState) {
    let cfg = IndexingConfig {
        data_dir: data_dir.to_path_buf(),
        embedding_service_url: "http://127.0.0.1:9".into(),
        embedding_retries: 0,
        embedding_timeout_ms: 200,
        ..Default::default()
    };
    let st = indexing_service::state(cfg).expect("state");
    (indexing_service::app(st.clone()), st)
}

/// Sends one request; returns the status and the JSON body (Null when the
/// body is not JSON, e.g. `/metrics`).
pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| serde_json::to_string(&b).unwrap());
    call_raw(app, method, path, body).await
}

/// Sends one request with a raw body (as `application/json` when given).
pub async fn call_raw(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b)
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A small runtime for tests that call the router a few times.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The service's state and router over `data_dir` with `edit` applied to
/// the config first (an API key, CORS, ...).
pub fn app_with_config(data_dir: &Path, edit: impl FnOnce(&mut IndexingConfig)) -> Router {
    let mut cfg = IndexingConfig {
        data_dir: data_dir.to_path_buf(),
        embedding_service_url: "http://127.0.0.1:9".into(),
        embedding_retries: 0,
        embedding_timeout_ms: 200,
        ..Default::default()
    };
    edit(&mut cfg);
    indexing_service::app(indexing_service::state(cfg).expect("state"))
}

/// Sends a prepared request; returns the status, the headers and the body
/// as text.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}
