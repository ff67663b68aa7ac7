//! The embedding service's first contact, with no model loaded (so no model
//! files needed): `GET /`, the docs routes open with a key set, CORS
//! preflight without the key, the request id, and the metrics (errors by
//! code, process and build families).

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use embedding_service::{app, AppState};
use serde_json::Value;
use shared::config::{CorsOrigins, EmbeddingConfig};
use tower::ServiceExt;

fn state(f: impl FnOnce(&mut EmbeddingConfig)) -> AppState {
    let mut c = EmbeddingConfig::default();
    f(&mut c);
    AppState::new(c)
}

async fn send(st: &AppState, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = app(st.clone()).oneshot(req).await.unwrap();
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

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn root_names_the_service_and_is_in_the_spec() {
    let st = state(|_| {});
    let (s, _, body) = send(&st, get("/")).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "embedding-service");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["links"]["docs"], "/docs");
    assert_eq!(v["links"]["openapi"], "/openapi.json");
    let spec =
        serde_json::to_value(embedding_service::api::openapi(&EmbeddingConfig::default())).unwrap();
    assert!(spec["paths"]["/"]["get"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer_auth"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn docs_are_open_with_a_key_unless_closed() {
    let open = state(|c| c.api_key = Some("k".into()));
    let closed = state(|c| {
        c.api_key = Some("k".into());
        c.http.public_docs = false;
    });
    for path in ["/", "/docs", "/openapi.json"] {
        assert_eq!(send(&open, get(path)).await.0, StatusCode::OK, "{path}");
        assert_eq!(
            send(&closed, get(path)).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(send(&open, get("/info")).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_preflight_needs_no_key() {
    let st = state(|c| c.api_key = Some("k".into()));
    let pre = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/embeddings")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let (s, h, _) = send(&st, pre("http://localhost:8080")).await;
    assert!(s.is_success(), "{s}");
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:8080"
    );
    let (_, h, _) = send(&st, pre("https://elsewhere.example")).await;
    assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let off = state(|c| c.http.cors = CorsOrigins::Off);
    let (s, _, _) = send(&off, pre("http://localhost:8080")).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let st = state(|_| {});
    let req = Request::get("/nope")
        .header("x-request-id", "abc-1")
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = send(&st, req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h["x-request-id"], "abc-1");
    let (_, h, _) = send(&st, get("/health")).await;
    assert_eq!(h["x-request-id"].len(), 36);
}

#[tokio::test]
async fn errors_are_counted_by_code_and_process_metrics_are_there() {
    let st = state(|_| {});
    // The model is not loaded: 503 `model_not_ready`; twice.
    for _ in 0..2 {
        let req = Request::post("/embed")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"inputs": "a"}"#))
            .unwrap();
        assert_eq!(send(&st, req).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    // `/health`'s 503 while loading is a probe's answer, not an error.
    assert_eq!(
        send(&st, get("/health")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A framework-made error gets its code too.
    assert_eq!(send(&st, get("/nope")).await.0, StatusCode::NOT_FOUND);
    let req = Request::delete("/embed").body(Body::empty()).unwrap();
    assert_eq!(send(&st, req).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, text) = send(&st, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    for line in [
        "embed_errors_total{code=\"model_not_ready\"} 2",
        "embed_errors_total{code=\"not_found\"} 1",
        "embed_errors_total{code=\"method_not_allowed\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // Labelled by code only: not by status, and the probe not counted.
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("embed_errors_total{"))
        .collect();
    assert_eq!(counted.len(), 3, "{counted:#?}");
    let build = format!(
        "embed_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    #[cfg(target_os = "linux")]
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
}
