//! Extreme magnitudes: any finite f32 input either gives finite scores in
//! the right order or is refused with a 422 that says why; no `null` score.

use crate::http::{app_on, call, rt};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

fn scores(b: &Value) -> Vec<f64> {
    b["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {b}"))
        .iter()
        .map(|h| {
            h["score"]
                .as_f64()
                .unwrap_or_else(|| panic!("score is not a number: {h}"))
        })
        .collect()
}

fn ids(b: &Value) -> Vec<Value> {
    b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect()
}

#[test]
fn huge_and_tiny_vectors_score_finitely_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (app, st) = app_on(dir.path());
    rt().block_on(async {
        for (name, metric) in [("e", "euclidean"), ("c", "cosine"), ("d", "dot")] {
            let (s, b) = call(&app, Method::POST, "/collections", Some(json!({"name": name, "dimension": 2, "metric": metric}))).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
        let put = |name: &'static str, pts: Value| {
            let app = app.clone();
            async move {
                call(&app, Method::PUT, &format!("/collections/{name}/points"), Some(json!({"points": pts}))).await
            }
        };
        let search = |name: &'static str, v: Value| {
            let app = app.clone();
            async move {
                call(&app, Method::POST, &format!("/collections/{name}/search"), Some(json!({"vector": v, "top_k": 10, "exact": true}))).await
            }
        };
        // Euclidean: norms past the bound are refused, with the reason.
        let (s, b) = put("e", json!([{"id": 1, "vector": [1e20, 0.0]}, {"id": 2, "vector": [0.0, 2e19]}])).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["code"], "invalid_vector");
        let m = b["error"]["message"].as_str().unwrap();
        assert!(m.contains("point 0") && m.contains("overflow"), "{m}");
        // Large but safe magnitudes: finite scores, right order.
        let (s, b) = put("e", json!([{"id": 1, "vector": [1e17, 0.0]}, {"id": 2, "vector": [0.0, 2e17]}, {"id": 3, "vector": [-9e17, 3e17]}])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = search("e", json!([0.0, 0.0])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(ids(&b), vec![json!(1), json!(2), json!(3)]);
        let sc = scores(&b);
        assert!((sc[0] - 1e17).abs() / 1e17 < 1e-6 && (sc[1] - 2e17).abs() / 2e17 < 1e-6, "{sc:?}");
        // A huge query is refused the same way.
        let (s, b) = search("e", json!([1e20, 0.0])).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("the query"));
        // Values beyond f32 are not finite 32-bit floats.
        let (s, b) = put("e", json!([{"id": 9, "vector": [1e39, 0.0]}])).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("32-bit floats"), "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("points[0].vector[0]"), "{b}");

        // Cosine: huge and subnormal vectors have a direction.
        let (s, b) = put("c", json!([
            {"id": 1, "vector": [1e30, 1e30]},
            {"id": 2, "vector": [3e38, -3e38]},
            {"id": 3, "vector": [1e-45, 0.0]},
            {"id": 4, "vector": [-1e-40, 1e-40]}
        ])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = search("c", json!([1e30, 1e30])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let sc = scores(&b);
        assert_eq!(ids(&b)[0], json!(1));
        assert!((sc[0] - 1.0).abs() < 1e-6, "{sc:?}");
        assert!(sc.windows(2).all(|w| w[0] >= w[1]), "best first: {sc:?}");
        assert!(sc.iter().all(|s| (-1.0001..=1.0001).contains(s)), "{sc:?}");
        let (s, b) = search("c", json!([1e-45, 0.0])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(ids(&b)[0], json!(3));
        let (s, b) = put("c", json!([{"id": 5, "vector": [0.0, 0.0]}])).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("zero vector"));

        // Dot: the largest allowed magnitudes still give finite scores.
        let (s, b) = put("d", json!([{"id": 1, "vector": [7e17, 7e17]}, {"id": 2, "vector": [-7e17, 7e17]}, {"id": 3, "vector": [1.0, 1.0]}])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = search("d", json!([7e17, 7e17])).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(ids(&b)[0], json!(1));
        let sc = scores(&b);
        assert!(sc.iter().all(|s| s.is_finite()));
        assert!(sc.windows(2).all(|w| w[0] >= w[1]), "{sc:?}");
        let (s, b) = put("d", json!([{"id": 4, "vector": [1e18, 1e18]}])).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    });
    st.storage.close();
}
