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
        "expected `,` or `}` at line 1 column 12",
    ),
    (
        401,
        ErrorCode::Unauthorized,
        "missing or wrong `Authorization: Bearer <key>` header",
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
        "too many requests in flight (512); retry later",
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
