//! Finishing touches both services put on their OpenAPI documents after
//! utoipa-axum has collected the routes.
//!
//! Invariant: every response whose body is an [`ErrorBody`] carries a
//! description and an example whose `code` answers with that response's
//! status (so Swagger UI never shows `invalid_json` under a 404). The table
//! of examples is per service; a status missing from it is left without an
//! example, which the services' spec tests catch.

use crate::error::{ErrorBody, ErrorCode};
use utoipa::openapi::{OpenApi, PathItem, RefOr};

/// One example error per status: `(status, code, message)`. The code's
/// status (`ErrorCode::status`) must be the one it is listed under.
pub type ErrorExamples<'a> = &'a [(u16, ErrorCode, &'a str)];

/// Error examples shared by both services (body parsing, auth, limits).
/// A service's own table goes first, so its entries win.
pub const COMMON_ERROR_EXAMPLES: ErrorExamples<'static> = &[
    (
        400,
        ErrorCode::InvalidJson,
        "Failed to parse the request body as JSON: key must be a string at line 1 column 2",
    ),
    (
        401,
        ErrorCode::Unauthorized,
        "missing or wrong `Authorization: Bearer <key>` header",
    ),
    (
        408,
        ErrorCode::RequestTimeout,
        "the request body did not arrive within the body read timeout",
    ),
    (
        413,
        ErrorCode::PayloadTooLarge,
        "request body is over the size limit",
    ),
    (
        415,
        ErrorCode::UnsupportedMediaType,
        "expected `Content-Type: application/json`",
    ),
    (
        429,
        ErrorCode::Overloaded,
        "too many requests in flight (max_concurrent_requests = 512); retry later",
    ),
    (
        500,
        ErrorCode::Internal,
        "internal error; see the service log",
    ),
];

/// The default description of a status, used where a route gives none.
fn describe(status: u16) -> &'static str {
    match status {
        200 => "Success",
        201 => "Created",
        204 => "Done; no body",
        400 => "Malformed JSON",
        401 => "Missing or wrong API key (when one is configured)",
        404 => "No such collection or point",
        408 => "The body did not arrive within the body read timeout",
        409 => "It already exists",
        413 => "Body over the size limit",
        415 => "Not `Content-Type: application/json`",
        422 => "Well-formed JSON that breaks a rule; the message names the field",
        429 => "Too many requests in flight; retry later",
        500 => "Internal error (details in the service log)",
        503 => "Unavailable for now; nothing was written",
        _ => "",
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(|o| o.as_mut())
}

fn is_error_body(schema: &Option<RefOr<utoipa::openapi::schema::Schema>>) -> bool {
    matches!(schema, Some(RefOr::Ref(r)) if r.ref_location == "#/components/schemas/ErrorBody")
}

/// Gives every response a description (where it has none) and every
/// [`ErrorBody`] response the example of its status: the first entry of
/// `own`, then of [`COMMON_ERROR_EXAMPLES`], for that status. Examples set
/// on the route itself are kept.
pub fn finish_error_responses(spec: &mut OpenApi, own: ErrorExamples<'_>) {
    for item in spec.paths.paths.values_mut() {
        for op in operations(item) {
            for (status, resp) in op.responses.responses.iter_mut() {
                let RefOr::T(resp) = resp else { continue };
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                if resp.description.is_empty() {
                    resp.description = describe(code).to_string();
                }
                let example = own
                    .iter()
                    .chain(COMMON_ERROR_EXAMPLES)
                    .find(|(s, _, _)| *s == code);
                for content in resp.content.values_mut() {
                    if !is_error_body(&content.schema) || content.example.is_some() {
                        continue;
                    }
                    if let Some((_, c, msg)) = example {
                        content.example = serde_json::to_value(ErrorBody::new(*c, *msg)).ok();
                    }
                }
            }
        }
    }
}

/// Sorted `(path, method, statuses)` of every operation, e.g.
/// `("/info", "get", [200, 401, 503])`: what the spec tests compare with
/// the statuses each handler can answer.
pub fn statuses(spec: &OpenApi) -> Vec<(String, &'static str, Vec<u16>)> {
    let mut out = Vec::new();
    for (path, item) in &spec.paths.paths {
        let ops = [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("patch", &item.patch),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                let mut s: Vec<u16> = op
                    .responses
                    .responses
                    .keys()
                    .filter_map(|k| k.parse().ok())
                    .collect();
                s.sort_unstable();
                out.push((path.clone(), method, s));
            }
        }
    }
    out
}

/// Reading a spec as JSON (`serde_json::to_value` of the document, or
/// `/openapi.json`): what the spec tests and the end-to-end example runs use.
pub mod json {
    use serde_json::Value;

    /// The methods an operation can sit under, in the order they are listed.
    pub const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// `v`, or what its `$ref` (`#/components/schemas/Name`) points at.
    pub fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                &spec["components"]["schemas"][name]
            }
            None => v,
        }
    }

    /// Every operation: `(method, path, operation)`, sorted by path.
    pub fn operations(spec: &Value) -> Vec<(&'static str, String, &Value)> {
        let mut out = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                for m in METHODS {
                    if let Some(op) = item.get(m) {
                        out.push((m, path.clone(), op));
                    }
                }
            }
        }
        out
    }

    /// The name of the schema of an operation's JSON request body, if it
    /// has one and it is a `$ref`.
    pub fn request_schema_name(op: &Value) -> Option<String> {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .map(|r| r.rsplit('/').next().unwrap_or_default().to_string())
    }

    /// The body Swagger UI fills in for an operation: the content's
    /// `example`, else its schema's `example` (after `$ref`). `None` when
    /// the operation takes no body or no example is given.
    pub fn request_example(spec: &Value, op: &Value) -> Option<Value> {
        let content = op
            .get("requestBody")?
            .get("content")?
            .get("application/json")?;
        if let Some(e) = content.get("example") {
            return Some(e.clone());
        }
        resolve(spec, &content["schema"]).get("example").cloned()
    }

    /// `path` with each `{param}` replaced by that parameter's `example`;
    /// `None` when a path parameter has none.
    pub fn example_path(path: &str, op: &Value) -> Option<String> {
        let mut out = path.to_string();
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "path" {
                let name = p["name"].as_str()?;
                let example = p["example"].as_str()?;
                out = out.replace(&format!("{{{name}}}"), example);
            }
        }
        (!out.contains('{')).then_some(out)
    }

    /// Faults of the error examples: every response whose body is an
    /// `ErrorBody` must carry an example whose code answers with that
    /// response's status. Returns one line per fault (empty when none).
    pub fn error_example_faults(spec: &Value) -> Vec<String> {
        let mut faults = Vec::new();
        for (method, path, op) in operations(spec) {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            for (status, resp) in responses {
                let content = &resp["content"]["application/json"];
                if content["schema"]["$ref"] != "#/components/schemas/ErrorBody" {
                    continue;
                }
                let at = format!("{method} {path} {status}");
                let code = content["example"]["error"]["code"].clone();
                match serde_json::from_value::<crate::ErrorCode>(code.clone()) {
                    Ok(c) if c.status().as_str() == status => {}
                    Ok(c) => faults.push(format!("{at}: example code {c} answers {}", c.status())),
                    Err(_) => faults.push(format!("{at}: no error example (code {code})")),
                }
                if content["example"]["error"]["message"]
                    .as_str()
                    .is_none_or(str::is_empty)
                {
                    faults.push(format!("{at}: example without a message"));
                }
                if resp["description"].as_str().is_none_or(str::is_empty) {
                    faults.push(format!("{at}: no description"));
                }
            }
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_examples_match_their_status() {
        for (status, code, _) in COMMON_ERROR_EXAMPLES {
            assert_eq!(code.status().as_u16(), *status, "{code}");
        }
    }
}
