//! What a new user meets first, through the real router and the real
//! binary: CORS and preflight without the key, the docs routes open by
//! default (and the spec's bearer scheme), the request id on every answer,
//! `GET /`, the command line, the log (access lines, JSON, no colours in
//! files), the metrics' process and build families, and the read options
//! (`with_vector` / `with_payload`) down to the collection.

use crate::http::{app_with_config, call, rt, send};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use indexing_service::collection::{Collection, CollectionConfig, NewPoint, ReadParts};
use serde_json::{json, Value};
use shared::config::CorsOrigins;
use shared::wire::indexing::{Metric, PointId};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[test]
fn cors_lets_pages_use_read_your_writes_and_client_headers() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .uri("/collections/c/points/scroll")
            .header(header::ORIGIN, "http://localhost:5173")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,x-consistency-after,x-stainless-os",
            )
            .body(Body::empty())
            .unwrap();
        let (s, h, _) = send(&app, req).await;
        assert!(s.is_success(), "{s}");
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for want in ["x-consistency-after", "x-stainless-os", "content-type"] {
            assert!(allowed.contains(want), "{want} not in {allowed}");
        }
        // A write's answer lets the page read its operation number.
        let req = Request::post("/collections")
            .header(header::ORIGIN, "http://localhost:5173")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name": "c", "dimension": 2}"#))
            .unwrap();
        let (s, h, _) = send(&app, req).await;
        assert!(s.is_success(), "{s}");
        let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("x-operation") && exposed.contains("x-request-id"),
            "{exposed}"
        );
    });
}

/// The bearer scheme is matched without regard to case (RFC 7235), the key
/// exactly.
#[test]
fn bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |c| c.api_key = Some("s3cret".into()));
    rt().block_on(async {
        for (auth, want) in [
            ("Bearer s3cret", StatusCode::OK),
            ("bearer s3cret", StatusCode::OK),
            ("BEARER s3cret", StatusCode::OK),
            ("bearer S3CRET", StatusCode::UNAUTHORIZED),
            ("Basic s3cret", StatusCode::UNAUTHORIZED),
            ("s3cret", StatusCode::UNAUTHORIZED),
        ] {
            let req = Request::get("/collections")
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap();
            let (s, _, _) = send(&app, req).await;
            assert_eq!(s, want, "{auth}");
        }
    });
}

#[test]
fn cors_preflight_is_answered_without_the_key_for_allowed_origins() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |c| c.api_key = Some("s3cret".into()));
    rt().block_on(async {
        // Default origins: local development on any port.
        for origin in ["http://localhost:5173", "http://127.0.0.1:3000"] {
            let (s, h, _) = send(&app, preflight("/search", origin)).await;
            assert!(s.is_success(), "{origin}: {s}");
            assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
            let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
            assert!(methods.contains("POST"), "{methods}");
            let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                allowed.contains("authorization") && allowed.contains("content-type"),
                "{allowed}"
            );
        }
        // Another origin gets no grant (the browser refuses).
        let (_, h, _) = send(&app, preflight("/search", "https://evil.example")).await;
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let (_, h, _) = send(&app, preflight("/search", "http://localhost.evil:80")).await;
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        // The real request still needs the key, and its answer (a 401
        // here) carries the grant so the page can read the error.
        let req = Request::post("/search")
            .header(header::ORIGIN, "http://localhost:5173")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"vector": [1, 0]}"#))
            .unwrap();
        let (s, h, _) = send(&app, req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:5173"
        );
    });

    let any = app_with_config(dir.path().join("any").as_path(), |c| {
        c.http.cors = CorsOrigins::Any
    });
    let off = app_with_config(dir.path().join("off").as_path(), |c| {
        c.http.cors = CorsOrigins::Off
    });
    let listed = app_with_config(dir.path().join("listed").as_path(), |c| {
        c.http.cors = CorsOrigins::List(vec!["https://app.example.com".into()])
    });
    rt().block_on(async {
        let (s, h, _) = send(&any, preflight("/search", "https://x.example")).await;
        assert!(s.is_success());
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let (s, _, body) = send(&off, preflight("/search", "http://localhost:5173")).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        let (_, h, _) = send(&listed, preflight("/search", "https://app.example.com")).await;
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        let (_, h, _) = send(&listed, preflight("/search", "http://localhost:5173")).await;
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    });
}

#[test]
fn docs_are_public_by_default_and_can_be_closed() {
    let dir = tempfile::tempdir().unwrap();
    let open = app_with_config(dir.path().join("a").as_path(), |c| {
        c.api_key = Some("s3cret".into())
    });
    let closed = app_with_config(dir.path().join("b").as_path(), |c| {
        c.api_key = Some("s3cret".into());
        c.http.public_docs = false;
    });
    rt().block_on(async {
        for path in [
            "/",
            "/docs",
            "/docs/swagger-ui.css",
            "/docs/swagger-ui-bundle.js",
            "/openapi.json",
        ] {
            let (s, _, _) = send(&open, get(path)).await;
            assert_eq!(s, StatusCode::OK, "{path} open");
            let (s, _, _) = send(&closed, get(path)).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} closed");
        }
        // Everything else still needs the key.
        for path in ["/collections", "/metrics", "/docsx", "/openapi.json/x"] {
            let (s, _, _) = send(&open, get(path)).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        }
        let req = Request::get("/collections")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&open, req).await.0, StatusCode::OK);
    });
}

#[test]
fn the_spec_declares_the_bearer_scheme_swagger_sends() {
    let spec = serde_json::to_value(indexing_service::api::openapi()).unwrap();
    let scheme = &spec["components"]["securitySchemes"]["bearer_auth"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    // Optional (the key is a setting): no requirement, or the bearer key.
    let security = spec["security"].as_array().expect("top-level security");
    assert!(security.contains(&json!({})), "{security:?}");
    assert!(
        security.contains(&json!({"bearer_auth": []})),
        "{security:?}"
    );
    // Swagger UI is served from the spec it documents.
    let root = &spec["paths"]["/"]["get"];
    assert!(
        root["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("ServiceIndex"),
        "{root}"
    );
    // The fields a user asked about are explained in the schema.
    let d = &spec["components"]["schemas"]["CollectionDescription"]["properties"];
    let p = d["persisted_operation"]["description"].as_str().unwrap();
    assert!(p.contains("replay"), "{p}");
    let took = &spec["components"]["schemas"]["SearchResponse"]["properties"]["took_ms"];
    assert!(
        took["description"].as_str().unwrap().contains("3 decimals"),
        "{took}"
    );
    for schema in ["SearchRequest", "ScrollRequest", "GetPointsRequest"] {
        let props = &spec["components"]["schemas"][schema]["properties"];
        for f in ["with_vector", "with_payload"] {
            assert!(props[f].is_object(), "{schema}.{f}");
        }
    }
    let params = spec["paths"]["/collections/{name}/points/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for p in ["id_type", "with_vector", "with_payload"] {
        assert!(params.iter().any(|x| x["name"] == p), "{p}");
    }
}

#[test]
fn every_answer_carries_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |c| c.api_key = Some("s3cret".into()));
    rt().block_on(async {
        let mut seen = Vec::new();
        for path in ["/health", "/nope", "/collections", "/"] {
            let (s, h, _) = send(&app, get(path)).await;
            let id = h["x-request-id"].to_str().unwrap().to_string();
            assert_eq!(id.len(), 36, "{path} ({s}): a UUID, got {id}");
            seen.push(id);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "a fresh id per request");
        // The client's own id is kept, on errors too (a 405 made by the
        // framework here).
        let req = Request::delete("/health")
            .header("x-request-id", "trace-42")
            .body(Body::empty())
            .unwrap();
        let (s, h, body) = send(&app, req).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        assert_eq!(h["x-request-id"], "trace-42");
        let (_, h, _) = send(&app, preflight("/search", "http://localhost:1")).await;
        assert!(h.contains_key("x-request-id"), "preflight too");
    });
}

#[test]
fn root_names_the_service_and_links_onwards() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        let (s, v) = call(&app, Method::GET, "/", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["name"], "indexing-service");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            v["links"],
            json!({"docs": "/docs", "openapi": "/openapi.json", "health": "/health", "metrics": "/metrics"})
        );
        // Each link answers.
        for l in ["/docs", "/openapi.json", "/health", "/metrics"] {
            assert_eq!(send(&app, get(l)).await.0, StatusCode::OK, "{l}");
        }
    });
}

#[test]
fn metrics_carry_process_and_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        let (s, _, text) = send(&app, get("/metrics")).await;
        assert_eq!(s, StatusCode::OK);
        let build = format!(
            "index_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
    });
}

/// A collection `c` (dimension 4) with two points carrying content and
/// metadata, through the API.
async fn two_points(app: &axum::Router, index: &str) {
    let (s, v) = call(
        app,
        Method::POST,
        "/collections",
        Some(json!({"name": "c", "dimension": 4, "metric": "cosine", "index": index})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        app,
        Method::PUT,
        "/collections/c/points",
        Some(json!({"points": [
            {"id": 1, "vector": [1, 0, 0, 0], "content": "one", "metadata": {"n": 1}},
            {"id": 2, "vector": [0, 1, 0, 0], "content": "two", "metadata": {"n": 2}},
        ]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn has_payload(p: &Value) -> bool {
    !p["content"].is_null() && !p["metadata"].is_null()
}

#[test]
fn reads_return_vector_and_payload_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        two_points(&app, "hnsw").await;
        let g = |q: &'static str| call(&app, Method::GET, q, None);
        // One point: vector and payload by default (as Qdrant).
        let (s, p) = g("/collections/c/points/1").await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["vector"].as_array().unwrap().len(), 4);
        assert!(has_payload(&p), "{p}");
        let (_, p) = g("/collections/c/points/1?with_vector=false").await;
        assert!(p.get("vector").is_none() && has_payload(&p), "{p}");
        let (_, p) = g("/collections/c/points/1?with_payload=false&with_vector=true").await;
        assert!(p["content"].is_null() && p["metadata"].is_null(), "{p}");
        assert_eq!(p["vector"].as_array().unwrap().len(), 4);
        let (s, e) = g("/collections/c/points/1?with_vector=maybe").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("with_vector"));

        // By ids: payload by default, vector when asked.
        let (_, r) = call(
            &app,
            Method::POST,
            "/collections/c/points",
            Some(json!({"ids": [1, 2]})),
        )
        .await;
        assert!(
            r["points"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| has_payload(p) && p.get("vector").is_none()),
            "{r}"
        );
        let body = json!({"ids": [2], "with_vector": true, "with_payload": false});
        let (_, r) = call(&app, Method::POST, "/collections/c/points", Some(body)).await;
        let p = &r["points"][0];
        assert!(
            !has_payload(p) && p["vector"].as_array().unwrap().len() == 4,
            "{r}"
        );

        // Scroll: a filter still applies without the payload returned.
        let body = json!({"filter": {"must": [{"key": "n", "match": 2}]}, "with_payload": false});
        let (_, r) = call(
            &app,
            Method::POST,
            "/collections/c/points/scroll",
            Some(body),
        )
        .await;
        let pts = r["points"].as_array().unwrap();
        assert_eq!(pts.len(), 1, "{r}");
        assert_eq!(pts[0]["id"], 2);
        assert!(!has_payload(&pts[0]), "{r}");

        // Search: payload by default on this service's routes, not on
        // Qdrant's path (Qdrant's default); vector only when asked.
        let q = json!({"vector": [1, 0, 0, 0], "top_k": 1});
        let (_, r) = call(&app, Method::POST, "/collections/c/search", Some(q.clone())).await;
        let h = &r["results"][0];
        assert!(has_payload(h) && h.get("vector").is_none(), "{r}");
        let (_, r) = call(
            &app,
            Method::POST,
            "/collections/c/points/search",
            Some(q.clone()),
        )
        .await;
        assert!(!has_payload(&r["results"][0]), "{r}");
        let q =
            json!({"vector": [1, 0, 0, 0], "top_k": 1, "with_payload": true, "with_vector": true});
        let (_, r) = call(&app, Method::POST, "/collections/c/points/search", Some(q)).await;
        let h = &r["results"][0];
        assert!(
            has_payload(h) && h["vector"].as_array().unwrap().len() == 4,
            "{r}"
        );
        let q = json!({"collection": "c", "vector": [0, 1, 0, 0], "with_payload": false});
        let (_, r) = call(&app, Method::POST, "/search", Some(q)).await;
        assert_eq!(r["results"][0]["id"], 2);
        assert!(!has_payload(&r["results"][0]), "{r}");
    });
}

#[test]
fn took_ms_has_at_most_three_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        two_points(&app, "hnsw").await;
        for _ in 0..20 {
            let req = Request::post("/collections/c/search")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"vector": [1, 1, 0, 0]}"#))
                .unwrap();
            let (s, _, text) = send(&app, req).await;
            assert_eq!(s, StatusCode::OK, "{text}");
            let raw = text
                .split("\"took_ms\":")
                .nth(1)
                .unwrap()
                .split(['}', ','])
                .next()
                .unwrap();
            let decimals = raw.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "took_ms printed as {raw}");
        }
    });
    assert_eq!(
        shared::wire::indexing::round_millis(8.298506000000001),
        8.299
    );
    assert_eq!(
        serde_json::to_string(&shared::wire::indexing::SearchResponse {
            results: vec![],
            took_ms: 8.298506000000001
        })
        .unwrap(),
        r#"{"results":[],"took_ms":8.299}"#
    );
}

#[test]
fn a_description_shows_only_the_settings_of_its_index_kind() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_config(dir.path(), |_| {});
    rt().block_on(async {
        for (name, kind, present, absent) in [
            ("f", "flat", &[][..], &["hnsw", "ivf", "quantization"][..]),
            ("h", "hnsw", &["hnsw", "quantization"][..], &["ivf"][..]),
            ("i", "ivf_pq", &["ivf", "quantization"][..], &["hnsw"][..]),
        ] {
            let (s, v) = call(
                &app,
                Method::POST,
                "/collections",
                Some(json!({"name": name, "dimension": 8, "index": kind})),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            for v in [
                v,
                call(&app, Method::GET, &format!("/collections/{name}"), None)
                    .await
                    .1,
            ] {
                let ix = &v["index"];
                assert_eq!(ix["kind"], kind, "{v}");
                for k in present {
                    assert!(ix.get(*k).is_some(), "{kind}: {k} missing in {ix}");
                }
                for k in absent {
                    assert!(ix.get(*k).is_none(), "{kind}: {k} shown in {ix}");
                }
            }
        }
    });
}

#[test]
fn the_collection_copies_only_the_parts_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(
        &dir.path().join("c"),
        CollectionConfig::new("c", 3, Metric::Dot),
    )
    .unwrap();
    let point = |id: u64, v: [f32; 3]| NewPoint {
        id: Some(PointId::Num(id)),
        vector: v.to_vec(),
        payload: Some(json!({"k": id})),
        content: Some(format!("p{id}")),
    };
    c.upsert(vec![point(1, [1.0, 0.0, 0.0]), point(2, [0.0, 1.0, 0.0])])
        .unwrap();
    // Once in the appendable segment, once sealed.
    for round in 0..2 {
        let ids = [PointId::Num(1), PointId::Num(2)];
        let none = ReadParts {
            vector: false,
            payload: false,
        };
        for p in c.get_parts(&ids, none).unwrap() {
            assert!(p.vector.is_empty() && p.payload.is_none() && p.content.is_none());
        }
        for p in c.get_parts(&ids, ReadParts::PAYLOAD).unwrap() {
            assert!(p.vector.is_empty() && p.payload.is_some() && p.content.is_some());
        }
        assert_eq!(c.get(&ids).unwrap()[1].vector, vec![0.0, 1.0, 0.0]);
        let hits = c
            .search_parts(&[1.0, 0.0, 0.0], 2, None, Default::default(), none)
            .unwrap();
        assert_eq!(hits.len(), 2, "round {round}");
        assert!(hits
            .iter()
            .all(|h| h.point.vector.is_empty() && h.point.payload.is_none()));
        let (page, _) = c.scroll_parts(None, 10, None, none).unwrap();
        assert_eq!(page.len(), 2);
        assert!(page
            .iter()
            .all(|p| p.vector.is_empty() && p.content.is_none()));
        c.flush().unwrap();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_indexing-service")
}

/// `print-openapi | head -1`: a reader that closes the pipe early ends the
/// output quietly (exit 0), not with a panic (exit 101).
#[test]
fn printing_into_a_closed_pipe_is_not_a_panic() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["print-openapi", "print-config"] {
        let mut child = Command::new(bin())
            .arg(cmd)
            .current_dir(dir.path())
            .env_remove("CONFIG_PATH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_command_line_has_help_version_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("CONFIG_PATH")
            .output()
            .unwrap()
    };
    for args in [&["--help"][..], &["help"][..], &["-h"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for cmd in [
            "serve",
            "print-config",
            "print-openapi",
            "healthcheck",
            "probe",
        ] {
            assert!(text.contains(cmd), "{args:?}: {cmd} missing from\n{text}");
        }
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("indexing-service {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["probe", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[PATH]"));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unrecognized subcommand") && err.contains("frobnicate"),
        "{err}"
    );
    // print-config writes only the config to stdout.
    let out = run(&["print-config"]);
    assert_eq!(out.status.code(), Some(0));
    let cfg: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["indexing"]["port"], serde_yaml::Value::from(8000));
}

/// A free local port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary with `env`, sends `GET /nope` with a request id once
/// it listens, and returns the stderr lines read until the access line of
/// that request (or 20 s).
fn log_of_one_request(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .current_dir(dir.path())
        .env_remove("CONFIG_PATH")
        .env_remove("NO_COLOR")
        .env("INDEXING__PORT", port.to_string())
        .env("INDEXING__HOST", "127.0.0.1")
        .env("INDEXING__DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    let mut sent = false;
    let mut lines = Vec::new();
    while t0.elapsed() < Duration::from_secs(20) {
        if !sent {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Write;
                write!(
                    s,
                    "GET /nope HTTP/1.1\r\nHost: x\r\nx-request-id: req-7\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut out = String::new();
                std::io::Read::read_to_string(&mut s, &mut out).unwrap();
                assert!(
                    out.to_ascii_lowercase().contains("x-request-id: req-7"),
                    "{out}"
                );
                sent = true;
            }
        }
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            let done = l.contains("req-7") && l.contains("404");
            lines.push(l);
            if done {
                break;
            }
        }
    }
    child.kill().ok();
    child.wait().ok();
    lines
}

#[test]
fn the_log_has_access_lines_json_on_request_and_no_colours_in_files() {
    let text = log_of_one_request(&[]);
    let access = text
        .iter()
        .find(|l| l.contains("req-7"))
        .unwrap_or_else(|| panic!("no access line in {text:#?}"));
    for part in [
        "GET",
        "/nope",
        "status=404",
        "latency_ms=",
        "request_id=req-7",
    ] {
        assert!(access.contains(part), "{part} missing: {access}");
    }
    assert!(
        text.iter().all(|l| !l.contains('\u{1b}')),
        "ANSI colours in a piped log: {text:#?}"
    );

    let json = log_of_one_request(&[("LOG_FORMAT", "json")]);
    let lines: Vec<Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|v| v["span"]["request_id"] == "req-7")
        .unwrap_or_else(|| panic!("no access line in {json:#?}"));
    assert_eq!(access["target"], "access", "{access}");
    assert_eq!(access["status"], 404, "{access}");
    assert!(access["latency_ms"].is_number(), "{access}");
    assert_eq!(access["span"]["method"], "GET", "{access}");
    assert_eq!(access["span"]["path"], "/nope", "{access}");
    assert!(lines.iter().any(|v| v["level"] == "INFO"));
}

/// Request shapes a Qdrant user sends, and conflicts that used to pass
/// silently: `limit` for `top_k`, `payload` for `metadata`; a body
/// `collection` that disagrees with the path is a 422; a dimension that
/// does not fit names the query; any dimension gets a usable PQ default.
#[test]
fn qdrant_names_path_conflicts_and_pq_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = crate::http::app_on(dir.path());
    rt().block_on(async {
        let (s, v) = call(&app, Method::POST, "/collections", Some(json!({"name": "q", "dimension": 3}))).await;
        assert!(s.is_success(), "{v}");
        let (s, v) = call(
            &app,
            Method::PUT,
            "/collections/q/points",
            Some(json!({"points": [
                {"id": 1, "vector": [1, 0, 0], "payload": {"kind": "a"}},
                {"id": 2, "vector": [0, 1, 0], "payload": {"kind": "b"}},
                {"id": 3, "vector": [0, 0, 1], "payload": {"kind": "b"}}
            ]})),
        )
        .await;
        assert!(s.is_success(), "{v}");
        let (s, v) = call(
            &app,
            Method::POST,
            "/collections/q/points/search",
            Some(json!({"vector": [0, 1, 0], "limit": 2, "with_payload": true})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let hits = v["results"].as_array().unwrap();
        assert_eq!(hits.len(), 2, "{v}");
        assert_eq!(hits[0]["metadata"]["kind"], "b", "{v}");

        for (path, body) in [
            ("/collections/q/search", json!({"vector": [1, 0, 0], "collection": "other"})),
            (
                "/collections/q/search/batch",
                json!({"searches": [{"vector": [1, 0, 0]}, {"vector": [1, 0, 0], "collection": "other"}]}),
            ),
        ] {
            let (s, v) = call(&app, Method::POST, path, Some(body)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
            let m = v["error"]["message"].as_str().unwrap();
            assert!(m.contains("other") && m.contains("`q`"), "{m}");
        }
        // The same name as the path is fine.
        let (s, v) = call(
            &app,
            Method::POST,
            "/collections/q/search",
            Some(json!({"vector": [1, 0, 0], "collection": "q"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let (s, v) = call(
            &app,
            Method::POST,
            "/collections/q/search",
            Some(json!({"vector": [1, 0, 0, 0]})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.starts_with("the query vector has 4 dimensions"), "{m}");

        for dim in [3, 4, 7, 50, 100, 300] {
            for body in [
                json!({"name": format!("ivf{dim}"), "dimension": dim, "index": "ivf_pq"}),
                json!({"name": format!("pq{dim}"), "dimension": dim, "quantization": {"type": "pq"}}),
            ] {
                let (s, v) = call(&app, Method::POST, "/collections", Some(body.clone())).await;
                assert!(s.is_success(), "{body}: {v}");
            }
        }
    });
}
