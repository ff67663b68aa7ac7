//! HTTP for payload indexes, in Qdrant's shape: `PUT
//! /collections/{name}/index` (`field_name`, `field_schema`) and `DELETE
//! /collections/{name}/index/{field_name}`, each with `?wait=true` to
//! answer once every sealed segment has the change.

use super::handlers::{blocking, Res};
use super::{ApiError, AppState};
use crate::collection::{Collection, CollectionError};
use crate::index::payload_index::PayloadFieldType;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shared::http::ApiJson;
use shared::ErrorBody;
use std::sync::Arc;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};

/// `PUT /collections/{name}/index`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"field_name": "pos", "field_schema": "keyword"}))]
pub struct CreateFieldIndexRequest {
    /// The payload key, dotted for nested keys (as in filters): 1 to 256
    /// bytes.
    pub field_name: String,
    pub field_schema: FieldSchema,
}

/// `"keyword"` (or `{"type": "keyword"}`, Qdrant's object form):
/// `keyword` and `uuid` index strings, `integer` and `float` numbers
/// (exactly, integers and floats alike), `bool` booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSchema(pub PayloadFieldType);

impl<'de> Deserialize<'de> for FieldSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let ty = match &v {
            serde_json::Value::String(_) => v.clone(),
            serde_json::Value::Object(o) if o.len() == 1 && o.contains_key("type") => {
                o["type"].clone()
            }
            _ => serde_json::Value::Null,
        };
        serde_json::from_value::<PayloadFieldType>(ty)
            .map(FieldSchema)
            .map_err(|_| {
                D::Error::custom(format!(
                    "`field_schema` is one of \"keyword\", \"integer\", \"float\", \"bool\", \
                 \"uuid\" (or {{\"type\": ...}}); got {v}"
                ))
            })
    }
}

impl utoipa::PartialSchema for FieldSchema {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "PayloadFieldType",
            )))
            .item(
                ObjectBuilder::new()
                    .property(
                        "type",
                        RefOr::Ref(utoipa::openapi::Ref::from_schema_name("PayloadFieldType")),
                    )
                    .required("type")
                    .additional_properties(Some(
                        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                    )),
            )
            .description(Some(
                "The type to index the field as: a name, or `{\"type\": name}`.",
            ))
            .into()
    }
}

impl ToSchema for FieldSchema {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "PayloadFieldType".into(),
            <PayloadFieldType as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// `?wait=true`: answer once every sealed segment has the change.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait until the indexes of every sealed segment are built (default
    /// false: the change is durable at once and built in the background).
    pub wait: Option<bool>,
}

impl WaitQuery {
    /// Reads the query string. Errors: 422 naming the parameter when
    /// `wait` is not `true` / `false` or another parameter is given.
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut wait = None;
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (k, v) {
                ("wait", "true") => wait = Some(true),
                ("wait", "false") => wait = Some(false),
                ("wait", other) => {
                    return Err(ApiError::invalid(format!(
                        "query parameter `wait` is `true` or `false`, got `{other}`"
                    )))
                }
                (other, _) => {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter `{other}`: this route takes `wait`"
                    )))
                }
            }
        }
        Ok(Self { wait })
    }
}

/// Whether the change is built everywhere yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldIndexStatus {
    /// Durable; segments are being (re)indexed in the background.
    Acknowledged,
    /// Every sealed segment has it.
    Completed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldIndexResponse {
    pub status: FieldIndexStatus,
}

/// Runs a schema change on the blocking pool, waiting for the worker's
/// reindex when `wait`; the answer says which.
async fn change(
    c: Arc<Collection>,
    wait: bool,
    edit: impl FnOnce(&Collection) -> Result<u64, CollectionError> + Send + 'static,
) -> Res<FieldIndexResponse> {
    blocking(move || {
        let t = edit(&c)?;
        if wait {
            c.wait_field_indexes(t);
        }
        Ok(())
    })
    .await?;
    Ok(Json(FieldIndexResponse {
        status: if wait {
            FieldIndexStatus::Completed
        } else {
            FieldIndexStatus::Acknowledged
        },
    }))
}

/// Index a payload field, so filters on it read the index instead of each
/// point's payload and searches plan from its exact match counts.
#[utoipa::path(put, path = "/collections/{name}/index", tag = "collections",
    params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"), WaitQuery),
    request_body = CreateFieldIndexRequest,
    responses(
        (status = 200, body = FieldIndexResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn create_field_index(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(req): ApiJson<CreateFieldIndexRequest>,
) -> Res<FieldIndexResponse> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let wait = WaitQuery::parse(raw.as_deref())?.wait.unwrap_or(false);
    change(c, wait, move |c| {
        c.create_field_index(&req.field_name, req.field_schema.0)
    })
    .await
}

/// Drop a payload field's index (a field without one is left as it is).
#[utoipa::path(delete, path = "/collections/{name}/index/{field_name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name: 1 to 64 of `A-Z a-z 0-9 _ -`", pattern = "^[A-Za-z0-9_-]{1,64}$", example = "documents"),
        ("field_name" = String, Path, description = "The indexed payload key", example = "pos"), WaitQuery),
    responses(
        (status = 200, body = FieldIndexResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 500, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub(super) async fn delete_field_index(
    State(s): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Res<FieldIndexResponse> {
    let c = s.storage.get(&name).map_err(ApiError::from)?;
    let wait = WaitQuery::parse(raw.as_deref())?.wait.unwrap_or(false);
    change(c, wait, move |c| c.delete_field_index(&field)).await
}
