//! The API contract: messages that name what is wrong (never serde
//! internals), arrays refused where objects are expected, and a JSON error
//! body on every error status, including the framework's own (405, 413).

use crate::http::{app_on, call, rt};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

fn message(b: &Value) -> String {
    b["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn filter_and_id_mistakes_get_messages_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let (app, st) = app_on(dir.path());
    rt().block_on(async {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "c", "dimension": 2})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = call(
            &app,
            Method::PUT,
            "/collections/c/points",
            Some(json!({"points": [
                {"id": 1, "vector": [1.0, 0.0], "metadata": {"year": 2001}},
                {"id": 2, "vector": [0.0, 1.0], "metadata": {"year": 1999}}
            ]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        // (filter, words the message must contain)
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"must": [{"key": "year", "mach": 2001}]}),
                vec!["mach", "`match`"],
            ),
            (
                json!({"must": [{"key": "year", "range": {"gtee": 2000}}]}),
                vec!["gtee", "`gte`"],
            ),
            (
                json!({"must": [{"key": "year", "range": {"gte": "2000"}}]}),
                vec!["string", "number"],
            ),
            (
                json!({"must": [{"kye": "year", "match": 2001}]}),
                vec!["kye"],
            ),
            (json!({"must": [[]]}), vec!["condition", "array"]),
            (json!({"should": [[]]}), vec!["condition", "array"]),
            (json!({"must": ["year"]}), vec!["condition", "string"]),
            (
                json!({"must": [{"must": [{"key": "year", "mach": 1}]}]}),
                vec!["nested filter", "mach"],
            ),
            (
                json!({"must": [{"key": "year", "match": 1, "must": []}]}),
                vec!["not both"],
            ),
            (json!({"mustt": []}), vec!["mustt"]),
            (json!([]), vec!["filter", "array"]),
            (json!([null, null]), vec!["filter", "array"]),
        ];
        for (filter, words) in cases {
            for route in ["count", "scroll"] {
                let (s, b) = call(
                    &app,
                    Method::POST,
                    &format!("/collections/c/points/{route}"),
                    Some(json!({"filter": filter})),
                )
                .await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{route} {filter}: {b}");
                let m = message(&b);
                assert!(!m.contains("untagged"), "{filter}: serde internals: {m}");
                for w in &words {
                    assert!(m.contains(w), "{filter}: `{w}` missing from: {m}");
                }
            }
        }
        // Ids: a bad id says what an id is.
        for (ids, word) in [
            (json!([{"x": 1}]), "point id"),
            (json!([-1]), "negative"),
            (json!([1.5]), "1.5"),
            (json!([true]), "point id"),
            (json!([18446744073709551616u128 as f64]), "point id"),
        ] {
            let (s, b) = call(
                &app,
                Method::POST,
                "/collections/c/points/delete",
                Some(json!({"ids": ids})),
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{ids}: {b}");
            let m = message(&b);
            assert!(m.contains(word) && !m.contains("untagged"), "{ids}: {m}");
        }
        // Nothing was deleted by any of that.
        let (_, b) = call(
            &app,
            Method::POST,
            "/collections/c/points/count",
            Some(json!({})),
        )
        .await;
        assert_eq!(b["count"], 2);
        // Bodies that are not objects.
        for body in [
            json!([null, null]),
            json!([]),
            json!("x"),
            json!(1),
            json!(null),
        ] {
            for (m, path) in [
                (Method::POST, "/collections/c/points/scroll"),
                (Method::POST, "/collections/c/points/count"),
                (Method::POST, "/collections/c/search"),
                (Method::POST, "/collections"),
            ] {
                let (s, b) = call(&app, m, path, Some(body.clone())).await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}: {b}");
                assert!(message(&b).contains("must be a JSON object"), "{b}");
            }
        }
        // A valid filter still works, and the exact comparison holds.
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/c/points/count",
            Some(json!({"filter": {"must": [{"key": "year", "range": {"gte": 2000}}]}})),
        )
        .await;
        assert_eq!((s, b["count"].as_u64()), (StatusCode::OK, Some(1)), "{b}");
        // Malformed JSON is still 400 invalid_json.
        let resp = {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/collections/c/points/count")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"filter\": "))
                .unwrap();
            app.clone().oneshot(req).await.unwrap()
        };
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    });
    st.storage.close();
}

#[test]
fn every_error_status_has_the_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let (app, st) = app_on(dir.path());
    rt().block_on(async {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "c", "dimension": 2})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        // Wrong methods: 405 with a body naming the allowed ones.
        for (m, path) in [
            (Method::GET, "/search"),
            (Method::PUT, "/collections"),
            (Method::GET, "/collections/c/points/count"),
            (Method::POST, "/health"),
        ] {
            let (s, b) = call(&app, m.clone(), path, None).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            assert_eq!(b["error"]["code"], "method_not_allowed", "{m} {path}: {b}");
            assert!(message(&b).contains(path), "{b}");
        }
        // Qdrant's search path is a search, not a point id.
        let (s, b) = call(
            &app,
            Method::PUT,
            "/collections/c/points",
            Some(json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/c/points/search",
            Some(json!({"vector": [1.0, 0.0], "top_k": 1})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["results"][0]["id"], 1, "{b}");
        // Unknown route: JSON 404.
        let (s, b) = call(&app, Method::GET, "/nope", None).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        // Missing content type: JSON 415.
        let resp = {
            use tower::ServiceExt;
            let req = axum::http::Request::post("/collections/c/points/count")
                .body(axum::body::Body::from("{}"))
                .unwrap();
            app.clone().oneshot(req).await.unwrap()
        };
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    });
    st.storage.close();
}
