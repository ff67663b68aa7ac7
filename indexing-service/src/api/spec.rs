//! Finishing the OpenAPI document: an example error body under every error
//! status, whose code answers with that status (`shared::openapi`).
//!
//! The tests below hold the document to what the handlers do: each route
//! lists exactly the statuses it can answer, the unions (`PointId`, `match`,
//! delete by `ids` or `filter`) are `oneOf`s rather than `object`, collection
//! names carry their pattern, and every request example is a body the
//! handlers accept.

use shared::ErrorCode;

/// Error examples of this service's spec, by status (the common ones are in
/// `shared::openapi`).
const ERROR_EXAMPLES: shared::openapi::ErrorExamples<'static> = &[
    (
        404,
        ErrorCode::NotFound,
        "collection `my_collection` not found",
    ),
    (
        409,
        ErrorCode::AlreadyExists,
        "collection `my_collection` already exists",
    ),
    (
        422,
        ErrorCode::InvalidRequest,
        "`top_k` must be between 1 and 1000, got 0",
    ),
    (
        503,
        ErrorCode::EmbeddingUnavailable,
        "embedding service unavailable: connection refused",
    ),
    (
        504,
        ErrorCode::ConsistencyTimeout,
        "operation 42 of collection `documents` was not applied on this replica within 5000 ms",
    ),
];

/// Reads that take read-your-writes (`consistency.after` in the body, or
/// the `x-consistency-after` header): the routes the replication
/// middleware waits on, as `(path, method)`.
const CONSISTENT_READS: &[(&str, &str)] = &[
    ("/collections/{name}", "get"),
    ("/collections/{name}/points", "post"),
    ("/collections/{name}/points/count", "post"),
    ("/collections/{name}/points/scroll", "post"),
    ("/collections/{name}/points/query", "post"),
    ("/collections/{name}/points/search", "post"),
    ("/collections/{name}/points/{id}", "get"),
    ("/collections/{name}/query", "post"),
    ("/collections/{name}/search", "post"),
    ("/collections/{name}/search/batch", "post"),
    ("/search", "post"),
];

/// Puts the error examples and default descriptions into `spec`, and
/// makes nested settings plain references (see [`plain_nested_refs`]).
pub(super) fn finish(spec: &mut utoipa::openapi::OpenApi) {
    replication_surface(spec);
    shared::openapi::finish_error_responses(spec, ERROR_EXAMPLES);
    plain_nested_refs(spec);
}

/// What the replication middleware adds to the routes: on the reads of
/// [`CONSISTENT_READS`], the `x-consistency-after` header and the 504
/// `consistency_timeout` answer; on every answer of a write to a
/// collection, the `x-operation` header.
fn replication_surface(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{HttpMethod, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{
        ContentBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
    };
    let after = ParameterBuilder::new()
        .name("x-consistency-after")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Read-your-writes: answer once this replica has applied this operation of the \
             collection (a write's `x-operation`); a read replica waits at most \
             `indexing.replication.consistency_timeout_ms`, then 504.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0)),
        ))
        .build();
    let timeout = ResponseBuilder::new()
        .description("This replica did not apply the operation asked for in time")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    let operation = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0)),
        )
        .description(Some(
            "The collection's last operation once this write was applied: pass it as \
             `consistency.after` (or `x-consistency-after`) to read it on any replica.",
        ))
        .build();
    for (path, item) in spec.paths.paths.iter_mut() {
        let ops = [
            (HttpMethod::Get, "get", &mut item.get),
            (HttpMethod::Put, "put", &mut item.put),
            (HttpMethod::Post, "post", &mut item.post),
            (HttpMethod::Delete, "delete", &mut item.delete),
            (HttpMethod::Patch, "patch", &mut item.patch),
        ];
        for (method, name, op) in ops {
            let Some(op) = op.as_mut() else { continue };
            if CONSISTENT_READS.contains(&(path.as_str(), name)) {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(after.clone());
                op.responses
                    .responses
                    .insert("504".into(), RefOr::T(timeout.clone()));
                continue;
            }
            let write = method != HttpMethod::Get
                && (path.starts_with("/collections/{name}") || path == "/embed");
            let drops_collection = path == "/collections/{name}" && method == HttpMethod::Delete;
            if !write || drops_collection {
                continue;
            }
            for (status, resp) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(resp)) = (status.starts_with('2'), resp) {
                    resp.headers.insert("x-operation".into(), operation.clone());
                }
            }
        }
    }
}

/// A struct with `#[serde(default)]` (such as `IndexSettings`, read back
/// from `collection.json`) gets properties of the form `{"oneOf": [{"$ref":
/// X}], "default": {...}}`; generated clients cannot build a model with a
/// default, and dropped the whole `CollectionDescription`. Such a property
/// becomes `{"$ref": X}`: the service always sends every field, and the
/// defaults are those of `X`'s own fields.
fn plain_nested_refs(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let Some(components) = spec.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for prop in object.properties.values_mut() {
            if let RefOr::T(Schema::OneOf(one_of)) = prop {
                if one_of.items.len() == 1 && matches!(one_of.items[0], RefOr::Ref(_)) {
                    *prop = one_of.items.remove(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::handlers::{openapi, CreateCollectionRequest};
    use serde_json::{json, Value};
    use shared::openapi::json::{
        example_path, operations, request_example, request_schema_name, resolve,
    };
    use shared::wire::indexing::*;

    fn spec() -> Value {
        serde_json::to_value(openapi()).unwrap()
    }

    fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
        let s = &spec["components"]["schemas"][name];
        assert!(!s.is_null(), "no schema {name}");
        s
    }

    /// The non-null arm of an optional property, through a `$ref`.
    fn field<'a>(spec: &'a Value, name: &str, f: &str) -> &'a Value {
        let p = &schema(spec, name)["properties"][f];
        assert!(!p.is_null(), "no {name}.{f}");
        let p = match p.get("oneOf").and_then(Value::as_array) {
            Some(arms) if arms.iter().any(|a| a["type"] == "null") => {
                arms.iter().find(|a| a["type"] != "null").unwrap()
            }
            _ => p,
        };
        resolve(spec, p)
    }

    #[test]
    fn point_ids_are_u64_or_string() {
        let spec = spec();
        let id = schema(&spec, "PointId");
        let arms = id["oneOf"].as_array().unwrap_or_else(|| panic!("{id}"));
        assert_eq!(arms.len(), 2, "{id}");
        assert_eq!(arms[0]["type"], "integer");
        assert_eq!(
            arms[0]["format"], "uint64",
            "not int64: ids go up to 2^64-1"
        );
        assert_eq!(arms[0]["minimum"], 0);
        assert_eq!(arms[0]["maximum"], json!(u64::MAX));
        assert_eq!(arms[1]["type"], "string");
        assert_eq!(arms[1]["minLength"], 1);
        assert_eq!(arms[1]["maxLength"], json!(MAX_STRING_ID_BYTES));
        // Ids everywhere are this schema.
        for (s, f) in [
            ("Document", "id"),
            ("EmbedDocumentsRequest", "id"),
            ("PointInput", "id"),
            ("PointOutput", "id"),
            ("SearchHit", "id"),
            ("ScrollRequest", "cursor"),
            ("ScrollResponse", "next_cursor"),
        ] {
            assert_eq!(field(&spec, s, f), id, "{s}.{f}");
        }
        // Both ends of the range round-trip through the wire type.
        let max: PointId = serde_json::from_value(json!(u64::MAX)).unwrap();
        assert_eq!(max, PointId::Num(u64::MAX));
        assert!(serde_json::from_value::<PointId>(json!(-1)).is_err());
    }

    #[test]
    fn delete_takes_ids_or_filter_exactly() {
        let spec = spec();
        let d = schema(&spec, "DeletePointsRequest");
        let arms = d["oneOf"].as_array().unwrap_or_else(|| panic!("{d}"));
        assert_eq!(arms.len(), 2);
        let (ids, filter) = (&arms[0], &arms[1]);
        assert_eq!(ids["required"], json!(["ids"]));
        assert_eq!(
            ids["properties"]["ids"]["maxItems"],
            json!(shared::wire::limits::MAX_DELETE_IDS)
        );
        assert_eq!(ids["properties"]["filter"], json!({"type": "null"}));
        assert_eq!(filter["required"], json!(["filter"]));
        assert_eq!(
            filter["properties"]["filter"]["$ref"],
            "#/components/schemas/Filter"
        );
        assert_eq!(filter["properties"]["ids"], json!({"type": "null"}));
        for arm in arms {
            assert_eq!(arm["additionalProperties"], false);
        }
    }

    #[test]
    fn match_is_a_scalar_an_any_list_or_text() {
        let spec = spec();
        let m = field(&spec, "FieldCondition", "match");
        let arms = m["oneOf"].as_array().unwrap_or_else(|| panic!("{m}"));
        let types: Vec<&Value> = arms.iter().map(|a| &a["type"]).collect();
        assert_eq!(
            types,
            [
                &json!("string"),
                &json!("number"),
                &json!("boolean"),
                &json!("object"),
                &json!("object")
            ]
        );
        assert_eq!(arms[3]["required"], json!(["any"]));
        assert_eq!(arms[4]["required"], json!(["text"]));
        assert_eq!(
            arms[3]["properties"]["any"]["maxItems"],
            json!(MAX_MATCH_ANY)
        );
    }

    #[test]
    fn collection_names_carry_their_pattern() {
        let spec = spec();
        for (s, f) in [
            ("CreateCollectionRequest", "name"),
            ("EmbedDocumentsRequest", "collection"),
            ("SearchRequest", "collection"),
        ] {
            assert_eq!(
                field(&spec, s, f)["pattern"],
                COLLECTION_NAME_PATTERN,
                "{s}.{f}"
            );
        }
        let mut params = 0;
        for (method, path, op) in operations(&spec) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "name" {
                    assert_eq!(
                        p["schema"]["pattern"], COLLECTION_NAME_PATTERN,
                        "{method} {path}"
                    );
                    params += 1;
                }
            }
        }
        assert_eq!(params, 23);
        // The pattern says what the storage layer checks.
        for (name, ok) in [
            ("documents", true),
            ("a-B_9", true),
            ("", false),
            ("has space", false),
            ("dot.ted", false),
            ("é", false),
        ] {
            assert_eq!(
                crate::collection::validate_name(name).is_ok(),
                ok,
                "{name:?}"
            );
        }
        let longest = "x".repeat(64);
        assert!(crate::collection::validate_name(&longest).is_ok());
        assert!(crate::collection::validate_name(&format!("{longest}x")).is_err());
    }

    /// No property is a bare `object` except free-form payloads (`metadata`).
    #[test]
    fn no_field_is_an_untyped_object_but_metadata() {
        let spec = spec();
        for (name, s) in spec["components"]["schemas"].as_object().unwrap() {
            for (f, p) in s["properties"].as_object().into_iter().flatten() {
                let types = match &p["type"] {
                    Value::Array(t) => t.clone(),
                    t => vec![t.clone()],
                };
                // A map with typed values (`additionalProperties` a schema)
                // is typed.
                let bare = types.contains(&json!("object"))
                    && p.get("properties").is_none()
                    && !p.get("additionalProperties").is_some_and(Value::is_object);
                assert!(
                    !bare || f == "metadata",
                    "{name}.{f} is an untyped object: {p}"
                );
            }
        }
        assert_eq!(
            schema(&spec, "CollectionDescription")["properties"]["index"]["$ref"],
            "#/components/schemas/IndexSettings"
        );
        // Nested settings are plain references (no `oneOf` of one with a
        // `default`, which generated clients cannot build).
        let index = schema(&spec, "IndexSettings");
        for f in ["hnsw", "ivf", "quantization"] {
            let p = &index["properties"][f];
            assert!(
                p["$ref"].is_string() && p.get("default").is_none(),
                "IndexSettings.{f}: {p}"
            );
            // Present only for the index kinds they apply to.
            let required = index["required"].as_array().unwrap();
            assert!(!required.contains(&json!(f)), "IndexSettings.{f} required");
        }
    }

    #[test]
    fn every_route_lists_the_statuses_it_can_answer() {
        let spec = openapi();
        // Routes with a JSON body: parsing (400, 413, 415, 422), the key
        // (401), storage faults (500), and unavailability (503: embedding
        // service, storage refusing writes, damaged collection).
        let body_404 = vec![200, 400, 401, 404, 413, 415, 422, 500, 503];
        let by_name = vec![200, 401, 404, 422, 500, 503];
        // Reads also answer 504 when a replica has not applied
        // `consistency.after` in time.
        let read_body = vec![200, 400, 401, 404, 413, 415, 422, 500, 503, 504];
        let read_by_name = vec![200, 401, 404, 422, 500, 503, 504];
        let expected: Vec<(String, &str, Vec<u16>)> = vec![
            ("/".into(), "get", vec![200, 401]),
            ("/collections".into(), "get", vec![200, 401, 500]),
            (
                "/collections".into(),
                "post",
                vec![201, 400, 401, 409, 413, 415, 422, 500, 503],
            ),
            ("/collections/{name}".into(), "get", read_by_name.clone()),
            (
                "/collections/{name}".into(),
                "delete",
                vec![204, 401, 404, 422, 500, 503],
            ),
            ("/collections/{name}/index".into(), "put", body_404.clone()),
            (
                "/collections/{name}/index/{field_name}".into(),
                "delete",
                vec![200, 400, 401, 404, 422, 500, 503],
            ),
            ("/collections/{name}/points".into(), "put", body_404.clone()),
            (
                "/collections/{name}/points".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/points/count".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/points/delete".into(),
                "post",
                body_404.clone(),
            ),
            (
                "/collections/{name}/points/query".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/points/scroll".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/points/search".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/points/{id}".into(),
                "get",
                read_by_name,
            ),
            (
                "/collections/{name}/points/{id}".into(),
                "delete",
                by_name.clone(),
            ),
            (
                "/collections/{name}/points/{id}".into(),
                "patch",
                body_404.clone(),
            ),
            (
                "/collections/{name}/query".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/search".into(),
                "post",
                read_body.clone(),
            ),
            (
                "/collections/{name}/search/batch".into(),
                "post",
                read_body.clone(),
            ),
            // Snapshots: no JSON body but `recover`'s; upload takes a raw file.
            (
                "/collections/{name}/snapshots".into(),
                "get",
                vec![200, 401, 404, 422, 500],
            ),
            (
                "/collections/{name}/snapshots".into(),
                "post",
                vec![200, 401, 404, 422, 500, 503],
            ),
            (
                "/collections/{name}/snapshots/recover".into(),
                "post",
                vec![200, 400, 401, 404, 415, 422, 500, 503],
            ),
            (
                "/collections/{name}/snapshots/upload".into(),
                "post",
                vec![200, 401, 408, 413, 415, 422, 500, 503],
            ),
            (
                "/collections/{name}/snapshots/{snapshot}".into(),
                "get",
                vec![200, 401, 404, 422, 500],
            ),
            (
                "/collections/{name}/snapshots/{snapshot}".into(),
                "delete",
                vec![200, 401, 404, 422, 500, 503],
            ),
            ("/embed".into(), "post", body_404.clone()),
            ("/health".into(), "get", vec![200]),
            ("/metrics".into(), "get", vec![200, 401]),
            ("/ready".into(), "get", vec![200, 503]),
            ("/search".into(), "post", read_body),
            ("/snapshots".into(), "get", vec![200, 401, 500]),
            ("/snapshots".into(), "post", vec![200, 401, 500, 503]),
            (
                "/snapshots/{snapshot}".into(),
                "get",
                vec![200, 401, 404, 500],
            ),
            (
                "/snapshots/{snapshot}".into(),
                "delete",
                vec![200, 401, 404, 500, 503],
            ),
        ];
        assert_eq!(shared::openapi::statuses(&spec), expected);
    }

    #[test]
    fn error_examples_match_their_status() {
        let spec = spec();
        let faults = shared::openapi::json::error_example_faults(&spec);
        assert!(faults.is_empty(), "{faults:#?}");
        let ex = |path: &str, m: &str, s: &str| {
            spec["paths"][path][m]["responses"][s]["content"]["application/json"]["example"]
                ["error"]["code"]
                .clone()
        };
        assert_eq!(ex("/collections/{name}", "get", "404"), "not_found");
        assert_eq!(ex("/collections", "post", "409"), "already_exists");
        assert_eq!(ex("/search", "post", "400"), "invalid_json");
        assert_eq!(ex("/search", "post", "503"), "embedding_unavailable");
    }

    /// Every request body has an example its handler's type accepts, and
    /// every path parameter an example (the end-to-end test sends them to
    /// a fresh stack).
    #[test]
    fn request_examples_parse_as_their_types() {
        let spec = spec();
        fn parses<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), serde_json::Error> {
            serde_json::from_value::<T>(v.clone()).map(drop)
        }
        let mut bodies = 0;
        for (method, path, op) in operations(&spec) {
            assert!(
                example_path(&path, op).is_some(),
                "{method} {path}: a path parameter lacks an example"
            );
            let Some(name) = request_schema_name(op) else {
                continue;
            };
            let example = request_example(&spec, op)
                .unwrap_or_else(|| panic!("{method} {path}: no request example"));
            let r = match name.as_str() {
                "EmbedDocumentsRequest" => parses::<EmbedDocumentsRequest>(&example),
                "SearchRequest" => parses::<SearchRequest>(&example),
                "BatchSearchRequest" => parses::<BatchSearchRequest>(&example),
                "CreateCollectionRequest" => parses::<CreateCollectionRequest>(&example),
                "UpsertPointsRequest" => parses::<UpsertPointsRequest>(&example),
                "PatchPointRequest" => parses::<PatchPointRequest>(&example),
                "DeletePointsRequest" => parses::<DeletePointsRequest>(&example),
                "ScrollRequest" => parses::<ScrollRequest>(&example),
                "CountRequest" => parses::<CountRequest>(&example),
                "GetPointsRequest" => parses::<GetPointsRequest>(&example),
                "QueryRequest" => parses::<shared::wire::query::QueryRequest>(&example),
                "CreateFieldIndexRequest" => {
                    parses::<super::super::field_index::CreateFieldIndexRequest>(&example)
                }
                "RecoverSnapshotRequest" => {
                    parses::<shared::wire::snapshot::RecoverSnapshotRequest>(&example)
                }
                other => panic!("{method} {path}: unexpected body {other}"),
            };
            r.unwrap_or_else(|e| panic!("{method} {path}: {example}: {e}"));
            bodies += 1;
        }
        assert_eq!(bodies, 16);
        // `/search` names no collection: it uses the default one, which the
        // first search makes on a fresh stack.
        let search = request_example(&spec, &spec["paths"]["/search"]["post"]).unwrap();
        assert!(search.get("collection").is_none(), "{search}");
    }
}
