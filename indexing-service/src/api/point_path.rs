//! Point ids in URL paths: `/collections/{name}/points/{id}[?id_type=...]`.
//!
//! One rule, so a path names exactly one point: after percent-decoding, a
//! segment in the canonical decimal form of a u64 (ASCII digits, no sign,
//! no leading zero, at most 18446744073709551615) is an integer id; any
//! other segment is a string id (`007`, `+7`, `-1`, `18446744073709551616`,
//! a UUID, `a%2Fb` = `a/b`). `?id_type=string` reads any segment as a string
//! id (the string `"424242"`), `?id_type=integer` insists on an integer.
//! The rule itself is `PointId::from_path` in `shared::wire::indexing`.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use shared::wire::indexing::{IdType, PointId};
use shared::{ErrorBody, ErrorCode};
use utoipa::IntoParams;

/// Query parameters of the routes with a point id in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PointIdQuery {
    /// How `{id}` is read: `auto` (default: the canonical decimal form of a
    /// u64 (no sign, no leading zeros, at most 18446744073709551615) is an
    /// integer id, anything else a string id), `string` (always a string
    /// id, e.g. the string "424242"), `integer` (always an integer id).
    #[serde(default)]
    #[param(inline)]
    pub id_type: Option<IdType>,
}

/// Query parameters of `GET /collections/{name}/points/{id}`: `id_type`
/// and which parts of the point to return.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PointGetQuery {
    /// How `{id}` is read: `auto` (default), `string` or `integer`; see
    /// the `id` parameter.
    #[serde(default)]
    #[param(inline)]
    pub id_type: Option<IdType>,
    /// Include the point's vector (default true, as Qdrant's
    /// `GET /collections/{name}/points/{id}`).
    #[serde(default)]
    pub with_vector: Option<bool>,
    /// Include the point's `content` and `metadata` (default true; when
    /// false both are null).
    #[serde(default)]
    pub with_payload: Option<bool>,
}

/// The collection name and the point id of a point route. Rejections: 422
/// `invalid_request` naming `id` or `id_type` (a segment that is not UTF-8
/// after percent-decoding, an unknown `id_type` or query parameter, an id
/// the rule refuses).
#[derive(Debug)]
pub struct PointPath {
    pub name: String,
    pub id: PointId,
}

/// [`PointPath`] plus the read options of `GET` (see [`PointGetQuery`]).
/// Rejections: those of [`PointPath`]; 422 for a `with_*` value other than
/// `true` or `false`.
#[derive(Debug)]
pub struct PointGet {
    /// The collection name.
    pub name: String,
    /// The point id, read by the rule of the module docs.
    pub id: PointId,
    /// `?with_vector=`, when given.
    pub with_vector: Option<bool>,
    /// `?with_payload=`, when given.
    pub with_payload: Option<bool>,
}

/// The collection name and the raw id segment of the path. Rejections: 422
/// when either is not UTF-8 after percent-decoding.
async fn name_and_segment<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<(String, String), ErrorBody> {
    let Path((name, segment)) = Path::<(String, String)>::from_request_parts(parts, state)
        .await
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the collection name and point `id` in the path must be UTF-8 \
                     after percent-decoding: {}",
                    e.body_text()
                ),
            )
        })?;
    Ok((name, segment))
}

impl<S: Send + Sync> FromRequestParts<S> for PointPath {
    type Rejection = ErrorBody;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (name, segment) = name_and_segment(parts, state).await?;
        let Query(q) = Query::<PointIdQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ErrorBody::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the only query parameter is `id_type` (auto, string or integer): {}",
                        e.body_text()
                    ),
                )
            })?;
        let id = PointId::from_path(&segment, q.id_type.unwrap_or_default())
            .map_err(|m| ErrorBody::new(ErrorCode::InvalidRequest, m))?;
        Ok(PointPath { name, id })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PointGet {
    type Rejection = ErrorBody;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (name, segment) = name_and_segment(parts, state).await?;
        let Query(q) = Query::<PointGetQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ErrorBody::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "the query parameters are `id_type` (auto, string or integer), \
                         `with_vector` and `with_payload` (true or false): {}",
                        e.body_text()
                    ),
                )
            })?;
        let id = PointId::from_path(&segment, q.id_type.unwrap_or_default())
            .map_err(|m| ErrorBody::new(ErrorCode::InvalidRequest, m))?;
        Ok(PointGet {
            name,
            id,
            with_vector: q.with_vector,
            with_payload: q.with_payload,
        })
    }
}
