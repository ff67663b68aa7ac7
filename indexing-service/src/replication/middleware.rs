//! The HTTP side of replication, one axum middleware around every route
//! (so handlers stay as they are):
//!
//! | request | on the writer | on a follower |
//! |---|---|---|
//! | write (any method but GET/HEAD/OPTIONS, except the POST reads below) | served; a 2xx answer gets `x-operation` | forwarded to the writer, its answer returned unchanged (503 `writer_unavailable` + `Retry-After` when it cannot be reached) |
//! | read (GET, and POST `/search`, `…/search`, `…/query`, `…/search/batch`, `…/points/search`, `…/points/query`, `…/points/scroll`, `…/points/count`, `…/points` get-by-ids) | served | waits for `consistency.after` / `x-consistency-after` (bounded), then served |
//! | `POST /search` of the default collection before it exists | served (creates it) | forwarded (it creates) |
//!
//! `GET /metrics` gets this layer's series appended, and
//! `GET /collections/{name}` a `replication` object (role, applied op, the
//! writer's op, lag). The `consistency` field is taken out of a body
//! before the handler parses it (request bodies refuse unknown fields).

use super::{Replica, ReplicationError};
use crate::collection::CollectionError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Header a read may carry: wait until this op of the collection is applied.
pub const CONSISTENCY_HEADER: &str = "x-consistency-after";
/// Header of a successful write answer: the collection's last op once the
/// write was applied.
pub const OPERATION_HEADER: &str = "x-operation";
/// Set on a forwarded request: the receiver never forwards it again.
pub const FORWARDED_HEADER: &str = "x-forwarded-by-replica";

/// What a route does, by method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    /// A read whose body may carry `consistency`.
    BodyRead,
    Write,
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

fn classify(method: &Method, path: &str) -> Kind {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Kind::Read;
    }
    if *method != Method::POST {
        return Kind::Write;
    }
    let read = matches!(
        segments(path).as_slice(),
        ["search"]
            | ["collections", _, "search" | "query"]
            | ["collections", _, "points"]
            | ["collections", _, "search", "batch"]
            | [
                "collections",
                _,
                "points",
                "search" | "scroll" | "count" | "query"
            ]
    );
    if read {
        Kind::BodyRead
    } else {
        Kind::Write
    }
}

/// The collection a path names (`/collections/{name}/...`).
fn path_collection(path: &str) -> Option<String> {
    match segments(path).as_slice() {
        ["collections", name, ..] if !name.is_empty() => Some((*name).to_string()),
        _ => None,
    }
}

/// The `collection` (or, for create, `name`) field of a JSON body.
fn body_field(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(str::to_string)
}

/// `x-consistency-after`, if present. Errors: not a whole number.
fn header_after(h: &HeaderMap) -> Result<Option<u64>, ReplicationError> {
    let Some(v) = h.get(CONSISTENCY_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ReplicationError::Invalid(format!(
                "header `{CONSISTENCY_HEADER}` must be an operation number (a whole number \
                 from a write's `{OPERATION_HEADER}` header)"
            ))
        })
}

/// Takes `consistency` out of a JSON object body: the body without it and
/// its `after`. Bodies that are not JSON objects are left to the handler.
/// Errors: `consistency` is not `{"after": <whole number>}`.
fn take_consistency(body: Bytes) -> Result<(Bytes, Option<u64>), ReplicationError> {
    if memchr_consistency(&body).is_none() {
        return Ok((body, None));
    }
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(&body) else {
        return Ok((body, None));
    };
    let Some(c) = obj.remove("consistency") else {
        return Ok((body, None));
    };
    let bad = || {
        ReplicationError::Invalid(
            "`consistency` must be an object {\"after\": <operation number>} (the \
             `x-operation` header of a write's answer)"
                .into(),
        )
    };
    let after = match &c {
        serde_json::Value::Null => None,
        serde_json::Value::Object(m) => {
            if m.keys().any(|k| k != "after") {
                return Err(bad());
            }
            match m.get("after") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(bad)?),
            }
        }
        _ => return Err(bad()),
    };
    let body = serde_json::to_vec(&serde_json::Value::Object(obj)).expect("JSON");
    Ok((Bytes::from(body), after))
}

fn memchr_consistency(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, b"\"consistency\"")
}

/// Reads a whole body within the service's limit. Errors as the handlers'
/// own body extractor answers them: 408 `request_timeout` when the body
/// read timeout cut it, 413 over the limit, 422 otherwise.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ReplicationError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if let Some(t) = err.downcast_ref::<shared::http::BodyReadTimeout>() {
                return ReplicationError::BodyTimeout(t.to_string());
            }
            // http-body-util's `LengthLimitError`, as axum's `to_bytes` wraps it.
            if err.to_string() == "length limit exceeded" {
                return ReplicationError::TooLarge("request body is over the size limit".into());
            }
            cur = err.source();
        }
        ReplicationError::Invalid(format!("the request body could not be read: {e}"))
    })
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if HOP_BY_HOP.contains(&k.as_str()) || k == "content-length" {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

impl Replica {
    /// Sends the request to the writer and returns its answer as it came.
    /// Errors: 503 `writer_unavailable` when no writer is published, the
    /// published one is this replica (a takeover in progress), or it cannot
    /// be reached.
    async fn forward(&self, req: Request) -> Response {
        match self.try_forward(req).await {
            Ok(r) => {
                self.metrics.forwarded.with_label_values(&["ok"]).inc();
                r
            }
            Err(e) => {
                self.metrics
                    .forwarded
                    .with_label_values(&["unavailable"])
                    .inc();
                e.into_response()
            }
        }
    }

    async fn try_forward(&self, req: Request) -> Result<Response, ReplicationError> {
        if req.headers().contains_key(FORWARDED_HEADER) {
            return Err(ReplicationError::WriterUnavailable(
                "the writer is changing: this replica received a forwarded write but is not \
                 the writer; retry shortly"
                    .into(),
            ));
        }
        let Some(w) = self.writer() else {
            return Err(ReplicationError::WriterUnavailable(
                "no writer has published its address yet; retry shortly".into(),
            ));
        };
        if w.url == self.advertise_url {
            return Err(ReplicationError::WriterUnavailable(
                "the writer is changing (this replica is taking over); retry shortly".into(),
            ));
        }
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, self.config.body_limit_bytes).await?;
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut headers = HeaderMap::new();
        copy_headers(&parts.headers, &mut headers);
        headers.insert(
            HeaderName::from_static(FORWARDED_HEADER),
            HeaderValue::from_str(&self.advertise_url)
                .unwrap_or(HeaderValue::from_static("replica")),
        );
        let sent = self
            .client
            .request(parts.method.clone(), format!("{}{pq}", w.url))
            .headers(headers)
            .body(bytes)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_connect() {
                    "cannot be reached"
                } else if e.is_timeout() {
                    "did not answer in time; the write may or may not have been applied"
                } else {
                    "failed while answering; the write may or may not have been applied"
                };
                tracing::warn!("forwarding to the writer at {}: {e}", w.url);
                return Err(ReplicationError::WriterUnavailable(format!(
                    "the writer {what}; retry shortly (writes by id are idempotent)"
                )));
            }
        };
        let status = resp.status();
        let mut out_headers = HeaderMap::new();
        copy_headers(resp.headers(), &mut out_headers);
        let body = resp.bytes().await.map_err(|e| {
            ReplicationError::WriterUnavailable(format!(
                "the writer's answer was cut off ({e}); the write may or may not have been \
                 applied; retry shortly"
            ))
        })?;
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = out_headers;
        Ok(out)
    }
}

/// Adds `x-operation` (the collection's last op) to a 2xx answer.
fn tag_operation(replica: &Replica, name: Option<&str>, resp: &mut Response) {
    if !resp.status().is_success() {
        return;
    }
    let Some(name) = name else { return };
    if let Ok(c) = replica.storage.get(name) {
        if let Ok(v) = HeaderValue::from_str(&c.applied_op().to_string()) {
            resp.headers_mut()
                .insert(HeaderName::from_static(OPERATION_HEADER), v);
        }
    }
}

/// The middleware (see the module docs). Install with
/// `axum::middleware::from_fn_with_state(replica, middleware::layer)`.
pub async fn layer(State(r): State<Arc<Replica>>, req: Request, next: Next) -> Response {
    match handle(&r, req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(r: &Arc<Replica>, req: Request, next: Next) -> Result<Response, ReplicationError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let kind = classify(&method, &path);
    let writer = r.storage.is_writer();
    match kind {
        Kind::Write if !writer => Ok(r.forward(req).await),
        Kind::Write => {
            // The collection the write lands in, for `x-operation`.
            let (name, req) = match (path_collection(&path), path.as_str()) {
                (Some(n), _) => (Some(n), req),
                (None, "/embed" | "/collections") => {
                    let (parts, body) = req.into_parts();
                    let bytes = read_body(body, r.config.body_limit_bytes).await?;
                    let field = if path == "/embed" {
                        "collection"
                    } else {
                        "name"
                    };
                    let name = body_field(&bytes, field).or_else(|| {
                        (path == "/embed").then(|| r.config.default_collection.clone())
                    });
                    (name, Request::from_parts(parts, Body::from(bytes)))
                }
                _ => (None, req),
            };
            let deleting = method == Method::DELETE && segments(&path).len() == 2;
            let mut resp = next.run(req).await;
            if !deleting {
                tag_operation(r, name.as_deref(), &mut resp);
            }
            Ok(resp)
        }
        Kind::Read | Kind::BodyRead => {
            let mut after = header_after(req.headers())?;
            let mut name = path_collection(&path);
            let mut req = req;
            if kind == Kind::BodyRead {
                let (parts, body) = req.into_parts();
                let bytes = read_body(body, r.config.body_limit_bytes).await?;
                let (bytes, body_after) = take_consistency(bytes)?;
                after = after.max(body_after);
                if name.is_none() {
                    // POST /search: the body names the collection.
                    name = Some(
                        body_field(&bytes, "collection")
                            .unwrap_or_else(|| r.config.default_collection.clone()),
                    );
                }
                req = Request::from_parts(parts, Body::from(bytes));
                if path == "/search" && !writer {
                    let n = name.as_deref().unwrap_or_default();
                    if n == r.config.default_collection
                        && matches!(r.storage.get(n), Err(CollectionError::NotFound(_)))
                    {
                        // The first search creates the default collection.
                        return Ok(r.forward(req).await);
                    }
                }
            }
            if let (Some(after), Some(n)) = (after, name.as_deref()) {
                r.wait_applied(n, after).await?;
            }
            let resp = next.run(req).await;
            if method == Method::GET && resp.status() == StatusCode::OK {
                if path == "/metrics" {
                    return Ok(append_metrics(r, resp).await);
                }
                if let ["collections", n] = segments(&path).as_slice() {
                    let n = n.to_string();
                    return Ok(describe_replication(r, &n, resp).await);
                }
            }
            Ok(resp)
        }
    }
}

async fn append_metrics(r: &Replica, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut text = bytes.to_vec();
    text.extend_from_slice(r.render_metrics().as_bytes());
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

/// Adds `"replication": {role, applied_operation, writer_operation,
/// lag_operations, lag_ms}` to a collection's description.
async fn describe_replication(r: &Replica, name: &str, resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(c) = r.storage.get(name) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let out = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut obj)) => {
            let st = r.status_of(&c);
            obj.insert(
                "replication".into(),
                serde_json::to_value(st).expect("JSON"),
            );
            Bytes::from(serde_json::to_vec(&obj).expect("JSON"))
        }
        _ => bytes,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        let p = Method::POST;
        assert_eq!(classify(&Method::GET, "/collections/a"), Kind::Read);
        assert_eq!(classify(&p, "/search"), Kind::BodyRead);
        assert_eq!(classify(&p, "/collections/a/points/scroll"), Kind::BodyRead);
        assert_eq!(classify(&p, "/collections/a/points"), Kind::BodyRead);
        assert_eq!(classify(&p, "/collections/a/search/batch"), Kind::BodyRead);
        assert_eq!(classify(&p, "/collections/a/query"), Kind::BodyRead);
        assert_eq!(classify(&p, "/collections/a/points/query"), Kind::BodyRead);
        assert_eq!(classify(&p, "/embed"), Kind::Write);
        assert_eq!(classify(&p, "/collections"), Kind::Write);
        assert_eq!(classify(&p, "/collections/a/points/delete"), Kind::Write);
        assert_eq!(classify(&Method::PUT, "/collections/a/points"), Kind::Write);
        assert_eq!(classify(&Method::DELETE, "/collections/a"), Kind::Write);
        assert_eq!(
            classify(&Method::PATCH, "/collections/a/points/1"),
            Kind::Write
        );
    }

    #[test]
    fn consistency_is_taken_out_of_the_body() {
        let (b, a) = take_consistency(Bytes::from_static(
            br#"{"top_k":3,"consistency":{"after":7}}"#,
        ))
        .unwrap();
        assert_eq!(a, Some(7));
        assert_eq!(&b[..], br#"{"top_k":3}"#);
        let (b, a) = take_consistency(Bytes::from_static(br#"{"top_k":3}"#)).unwrap();
        assert_eq!((a, &b[..]), (None, &br#"{"top_k":3}"#[..]));
        for bad in [
            r#"{"consistency":5}"#,
            r#"{"consistency":{"after":-1}}"#,
            r#"{"consistency":{"after":1,"x":2}}"#,
        ] {
            assert!(take_consistency(Bytes::from(bad)).is_err(), "{bad}");
        }
    }
}
