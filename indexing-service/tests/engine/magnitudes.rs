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

/// A vector may come as base64 of its little-endian f32s (upsert and
/// search alike): stored bit for bit (euclidean: no normalising),
/// answered the same as the array
/// form; a NaN or infinity inside base64 is refused as in an array, and a
/// string that is not base64 of whole floats is a 422 naming the form.
#[test]
fn base64_vectors_are_the_same_vectors() {
    use shared::wire::vector::encode_base64;
    let dir = tempfile::tempdir().unwrap();
    let (app, _st) = app_on(dir.path());
    rt().block_on(async {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "b", "dimension": 3, "metric": "euclidean"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let vs: Vec<[f32; 3]> = (0..50)
            .map(|i| {
                let x = i as f32 * 0.37;
                [x.sin(), x.cos(), 0.1 + (x * 1.3).sin() / 3.0]
            })
            .collect();
        // Half the points as arrays, half as base64.
        let pts: Vec<Value> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i % 2 == 0 {
                    json!({"id": i, "vector": v})
                } else {
                    json!({"id": i, "vector": encode_base64(v)})
                }
            })
            .collect();
        let (s, b) = call(
            &app,
            Method::PUT,
            "/collections/b/points",
            Some(json!({"points": pts})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for (i, v) in vs.iter().enumerate() {
            let (s, b) = call(
                &app,
                Method::GET,
                &format!("/collections/b/points/{i}?with_vector=true"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            let got: Vec<f32> = serde_json::from_value(b["vector"].clone()).unwrap();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "point {i}"
            );
            let q = [v[0] + 0.01, v[1], v[2]];
            let (s1, a) = call(
                &app,
                Method::POST,
                "/collections/b/search",
                Some(json!({"vector": q, "top_k": 5})),
            )
            .await;
            let (s2, bb) = call(
                &app,
                Method::POST,
                "/collections/b/search",
                Some(json!({"vector": encode_base64(&q), "top_k": 5})),
            )
            .await;
            assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{a} {bb}");
            assert_eq!(ids(&a), ids(&bb));
            assert_eq!(scores(&a), scores(&bb));
        }
        for (body, want) in [
            (
                json!({"vector": encode_base64(&[f32::NAN, 0.0, 1.0])}),
                "finite",
            ),
            (
                json!({"vector": encode_base64(&[f32::INFINITY, 0.0, 1.0])}),
                "finite",
            ),
            (json!({"vector": "not base64!"}), "not base64"),
            (json!({"vector": "AAAA"}), "4 bytes each"),
            (
                json!({"vector": {"x": 1}}),
                "an array of numbers, or a base64 string",
            ),
        ] {
            let (s, b) = call(
                &app,
                Method::POST,
                "/collections/b/search",
                Some(body.clone()),
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
            let m = b["error"]["message"].as_str().unwrap();
            assert!(m.contains(want), "{body}: {m}");
            let pts = json!({"points": [{"id": 999, "vector": body["vector"]}]});
            let (s, b) = call(&app, Method::PUT, "/collections/b/points", Some(pts)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "upsert {body}: {b}");
        }
        let (_, b) = call(
            &app,
            Method::POST,
            "/collections/b/points/count",
            Some(json!({})),
        )
        .await;
        assert_eq!(b["count"], 50, "{b}");
    });
}
