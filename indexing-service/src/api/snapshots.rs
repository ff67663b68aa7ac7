//! Snapshot routes (Qdrant's shape): HTTP only, each calling one
//! `crate::snapshot` function on the blocking pool. Downloads are streamed
//! from the file; uploads are streamed to a file under the snapshot
//! directory (within `snapshot_upload_limit_bytes`, not the JSON body
//! limit) and hashed on the way.

use super::{ApiError, AppState};
use crate::snapshot::{Scope, SnapshotError, Snapshots};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use shared::http::ApiJson;
use shared::wire::snapshot::*;
use shared::{ErrorBody, ErrorCode};
use std::path::PathBuf;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Res<T> = Result<Json<T>, ErrorBody>;

/// A snapshot file in the spec: bytes (`type: string, format: binary`).
struct SnapshotFile;

impl utoipa::PartialSchema for SnapshotFile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .description(Some("A snapshot file: a tar archive (docs/SNAPSHOTS.md)."))
            .into()
    }
}

impl utoipa::ToSchema for SnapshotFile {}

/// The snapshot routes, merged into the service's router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_snapshot, list_snapshots))
        .routes(routes!(download_snapshot, delete_snapshot))
        .routes(routes!(recover_snapshot))
        .routes(routes!(upload_snapshot))
        .routes(routes!(create_storage_snapshot, list_storage_snapshots))
        .routes(routes!(download_storage_snapshot, delete_storage_snapshot))
}

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::NotFound(_) => ApiError::Invalid(ErrorCode::NotFound, e.to_string()),
            SnapshotError::Invalid(_) => {
                ApiError::Invalid(ErrorCode::SnapshotInvalid, e.to_string())
            }
            SnapshotError::BadRequest(m) => ApiError::Invalid(ErrorCode::InvalidRequest, m),
            SnapshotError::Collection(c) => ApiError::Collection(c),
            SnapshotError::Storage(s) => ApiError::Collection(s.into()),
            SnapshotError::Io(path, err) => {
                ApiError::Collection(crate::storage::io_err(&path)(err).into())
            }
        }
    }
}

fn err(e: SnapshotError) -> ErrorBody {
    ApiError::from(e).into()
}

/// Snapshot work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, ErrorBody> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(err),
        Err(e) => Err(ErrorBody::new(
            ErrorCode::Internal,
            format!("snapshot worker failed: {e}"),
        )),
    }
}

/// Streams a snapshot file with its checksum header.
async fn stream_file(path: PathBuf, d: SnapshotDescription) -> Result<Response, ErrorBody> {
    let f = tokio::fs::File::open(&path).await.map_err(|e| {
        err(match e.kind() {
            std::io::ErrorKind::NotFound => SnapshotError::NotFound(d.name.clone()),
            _ => SnapshotError::Io(path.clone(), e),
        })
    })?;
    let stream = futures_util::stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SNAPSHOT_MEDIA_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.size));
    if let Ok(v) = HeaderValue::from_str(&d.checksum) {
        h.insert(CHECKSUM_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Make a snapshot of a collection while writes go on: its sealed
/// segments, its WAL up to the last operation, its manifest and settings,
/// in one tar file with a SHA-256 per file. Answers when the file is
/// complete.
#[utoipa::path(post, path = "/collections/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")),
    responses((status = 200, body = SnapshotDescription), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 503, description = "The collection is damaged, or no writer is reachable", body = ErrorBody)))]
async fn create_snapshot(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Res<SnapshotDescription> {
    let st = s.storage.clone();
    Ok(Json(
        blocking(move || Snapshots::new(&st).create(Scope::Collection(&name))).await?,
    ))
}

/// List a collection's snapshots, oldest first.
#[utoipa::path(get, path = "/collections/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")),
    responses((status = 200, body = ListSnapshotsResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn list_snapshots(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Res<ListSnapshotsResponse> {
    let st = s.storage.clone();
    let snapshots = blocking(move || Snapshots::new(&st).list(Scope::Collection(&name))).await?;
    Ok(Json(ListSnapshotsResponse { snapshots }))
}

/// Download a collection snapshot (streamed tar file; its SHA-256 in the
/// `x-checksum-sha256` header).
#[utoipa::path(get, path = "/collections/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"),
        ("snapshot" = String, Path, description = "Snapshot file name", example = "documents-2026-12-01-07-30-00-123-42.snapshot")),
    responses((status = 200, description = "The snapshot file", content((SnapshotFile = "application/x-tar"), (SnapshotFile = "application/octet-stream")),
            headers(("x-checksum-sha256" = String, description = "SHA-256 of the file, 64 hex digits"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn download_snapshot(
    State(s): State<AppState>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<Response, ErrorBody> {
    let st = s.storage.clone();
    let (path, d) =
        blocking(move || Snapshots::new(&st).find(Scope::Collection(&name), &snapshot)).await?;
    stream_file(path, d).await
}

/// Delete a collection snapshot.
#[utoipa::path(delete, path = "/collections/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"),
        ("snapshot" = String, Path, description = "Snapshot file name", example = "documents-2026-12-01-07-30-00-123-42.snapshot")),
    responses((status = 200, body = DeleteSnapshotResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 500, body = ErrorBody), (status = 503, description = "No writer is reachable", body = ErrorBody)))]
async fn delete_snapshot(
    State(s): State<AppState>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Res<DeleteSnapshotResponse> {
    let st = s.storage.clone();
    let deleted = snapshot.clone();
    blocking(move || Snapshots::new(&st).delete(Scope::Collection(&name), &snapshot)).await?;
    Ok(Json(DeleteSnapshotResponse { deleted }))
}

/// Restore a collection from a snapshot file on the server (a path, a
/// `file://` URL, or the name of one of its snapshots). The file is
/// verified first; the collection is replaced (or created) only by a
/// complete, verified copy.
#[utoipa::path(post, path = "/collections/{name}/snapshots/recover", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents")),
    request_body = RecoverSnapshotRequest,
    responses((status = 200, body = RecoverSnapshotResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "A damaged, truncated or unexpected snapshot file (`snapshot_invalid`), or a bad request", body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "No writer is reachable", body = ErrorBody)))]
async fn recover_snapshot(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RecoverSnapshotRequest>,
) -> Res<RecoverSnapshotResponse> {
    let st = s.storage.clone();
    Ok(Json(
        blocking(move || {
            let snaps = Snapshots::new(&st);
            let file = snaps.resolve_location(&name, &req.location)?;
            snaps.recover_collection(&name, &file, req.checksum.as_deref(), None)
        })
        .await?,
    ))
}

/// Restore a collection from an uploaded snapshot file (the raw body,
/// `application/x-tar` or `application/octet-stream`), streamed to disk
/// and verified before anything changes. The body may be as large as
/// `snapshot_upload_limit_bytes`.
#[utoipa::path(post, path = "/collections/{name}/snapshots/upload", tag = "snapshots",
    params(("name" = String, Path, description = "Collection name", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"),
        UploadSnapshotQuery),
    request_body(content = SnapshotFile, content_type = "application/octet-stream", description = "The snapshot file (sent as application/x-tar or application/octet-stream)"),
    responses((status = 200, body = RecoverSnapshotResponse), (status = 401, body = ErrorBody), (status = 408, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "A damaged, truncated or unexpected snapshot file (`snapshot_invalid`), or a bad request", body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "No writer is reachable", body = ErrorBody)))]
async fn upload_snapshot(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<UploadSnapshotQuery>,
    headers: HeaderMap,
    body: Body,
) -> Res<RecoverSnapshotResponse> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let media = ct.split(';').next().unwrap_or("").trim().to_string();
        if media != "application/x-tar" && media != "application/octet-stream" {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send the snapshot file as the raw body with Content-Type application/x-tar \
                     or application/octet-stream (got `{media}`)"
                ),
            ));
        }
    }
    let st = s.storage.clone();
    let n = name.clone();
    let path = blocking(move || Snapshots::new(&st).upload_path(&n)).await?;
    let limit = s.config.snapshot_upload_limit_bytes;
    let written = receive(body, path.clone(), limit).await;
    let sha = match written {
        Ok(sha) => sha,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
    };
    let st = s.storage.clone();
    let p = path.clone();
    let r = blocking(move || {
        Snapshots::new(&st).recover_collection(&name, &p, q.checksum.as_deref(), Some(&sha))
    })
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(Json(r?))
}

/// Writes a request body to `path` on a blocking thread, hashing it;
/// returns its SHA-256. Errors: 413 past `limit` bytes, 408 when the body
/// read timed out, 400 when the body broke off, 500 on write errors.
async fn receive(body: Body, path: PathBuf, limit: u64) -> Result<String, ErrorBody> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(16);
    let p = path.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::Write;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut h = Sha256::new();
        for chunk in rx {
            h.update(&chunk[..]);
            w.write_all(&chunk)?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(hex::encode(h.finalize()))
    });
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let mut failure: Option<ErrorBody> = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                total += c.len() as u64;
                if total > limit {
                    failure = Some(ErrorBody::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the snapshot upload is over the limit of {limit} bytes \
                             (`indexing.snapshot_upload_limit_bytes`)"
                        ),
                    ));
                    break;
                }
                let tx = tx.clone();
                // The writer thread may block on disk: hand over off the runtime.
                let sent = tokio::task::spawn_blocking(move || tx.send(c).is_ok()).await;
                if !matches!(sent, Ok(true)) {
                    break;
                }
            }
            Err(e) => {
                let timed_out = {
                    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                    let mut t = false;
                    while let Some(x) = cur {
                        if x.downcast_ref::<shared::http::BodyReadTimeout>().is_some() {
                            t = true;
                        }
                        cur = x.source();
                    }
                    t
                };
                failure = Some(if timed_out {
                    ErrorBody::new(
                        ErrorCode::RequestTimeout,
                        "the snapshot upload did not arrive within the body read timeout \
                         (`indexing.http.body_read_timeout_ms`); for large files, raise it or \
                         place the file on the server and use `snapshots/recover`",
                    )
                } else {
                    ErrorBody::new(
                        ErrorCode::InvalidRequest,
                        format!("the snapshot upload broke off: {e}"),
                    )
                });
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await;
    if let Some(f) = failure {
        return Err(f);
    }
    match written {
        Ok(Ok(sha)) => Ok(sha),
        Ok(Err(e)) => Err(err(SnapshotError::Io(path, e))),
        Err(e) => Err(ErrorBody::new(
            ErrorCode::Internal,
            format!("upload writer failed: {e}"),
        )),
    }
}

/// Make a snapshot of every collection (each consistent at its own last
/// operation) in one file.
#[utoipa::path(post, path = "/snapshots", tag = "snapshots",
    responses((status = 200, body = SnapshotDescription), (status = 401, body = ErrorBody), (status = 500, body = ErrorBody),
        (status = 503, description = "No writer is reachable", body = ErrorBody)))]
async fn create_storage_snapshot(State(s): State<AppState>) -> Res<SnapshotDescription> {
    let st = s.storage.clone();
    Ok(Json(
        blocking(move || Snapshots::new(&st).create(Scope::Storage)).await?,
    ))
}

/// List the storage snapshots, oldest first.
#[utoipa::path(get, path = "/snapshots", tag = "snapshots",
    responses((status = 200, body = ListSnapshotsResponse), (status = 401, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn list_storage_snapshots(State(s): State<AppState>) -> Res<ListSnapshotsResponse> {
    let st = s.storage.clone();
    let snapshots = blocking(move || Snapshots::new(&st).list(Scope::Storage)).await?;
    Ok(Json(ListSnapshotsResponse { snapshots }))
}

/// Download a storage snapshot (streamed tar file; its SHA-256 in the
/// `x-checksum-sha256` header). Restore it with `indexing-service
/// restore-snapshot <file>`.
#[utoipa::path(get, path = "/snapshots/{snapshot}", tag = "snapshots",
    params(("snapshot" = String, Path, description = "Snapshot file name", example = "storage-2026-12-01-07-30-00-123.snapshot")),
    responses((status = 200, description = "The snapshot file", content((SnapshotFile = "application/x-tar"), (SnapshotFile = "application/octet-stream")),
            headers(("x-checksum-sha256" = String, description = "SHA-256 of the file, 64 hex digits"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn download_storage_snapshot(
    State(s): State<AppState>,
    Path(snapshot): Path<String>,
) -> Result<Response, ErrorBody> {
    let st = s.storage.clone();
    let (path, d) = blocking(move || Snapshots::new(&st).find(Scope::Storage, &snapshot)).await?;
    stream_file(path, d).await
}

/// Delete a storage snapshot.
#[utoipa::path(delete, path = "/snapshots/{snapshot}", tag = "snapshots",
    params(("snapshot" = String, Path, description = "Snapshot file name", example = "storage-2026-12-01-07-30-00-123.snapshot")),
    responses((status = 200, body = DeleteSnapshotResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, description = "No writer is reachable", body = ErrorBody)))]
async fn delete_storage_snapshot(
    State(s): State<AppState>,
    Path(snapshot): Path<String>,
) -> Res<DeleteSnapshotResponse> {
    let st = s.storage.clone();
    let deleted = snapshot.clone();
    blocking(move || Snapshots::new(&st).delete(Scope::Storage, &snapshot)).await?;
    Ok(Json(DeleteSnapshotResponse { deleted }))
}
