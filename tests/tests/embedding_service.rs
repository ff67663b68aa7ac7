//! The real embedding-service binary over real HTTP: start-up, config
//! errors, a model that cannot load, and graceful shutdown with work in
//! flight.

use e2e_tests::{free_port, send_examples, workspace_root, Proc};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn serves_embeddings_and_drains_on_sigterm() {
    let port = free_port();
    let p = port.to_string();
    let mut svc = Proc::spawn(
        "embedding-service",
        port,
        &[("EMBEDDING__PORT", &p), ("EMBEDDING__HOST", "127.0.0.1")],
    );
    svc.wait_healthy(Duration::from_secs(120));
    let http = reqwest::blocking::Client::new();
    let v: Value = http
        .post(format!("{}/embed", svc.url))
        .json(&json!({"inputs": ["hot dog", "a frankfurter in a bun"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0].as_array().unwrap().len(), 384);

    // A large request in flight, then SIGTERM: it must still complete.
    let texts: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "{i} {}",
                "the quick brown fox jumps over the lazy dog ".repeat(12)
            )
        })
        .collect();
    let url = svc.url.clone();
    let inflight = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
            .post(format!("{url}/embed"))
            .json(&json!({"inputs": texts}))
            .send()
            .map(|r| (r.status().as_u16(), r.json::<Value>().ok()))
    });
    // SIGTERM only once the request is admitted (in flight), whatever the load.
    let t0 = std::time::Instant::now();
    loop {
        let m = http
            .get(format!("{}/metrics", svc.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if m.lines()
            .any(|l| l.starts_with("embed_requests_in_flight") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the request never got in flight"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    svc.signal("TERM");
    let (status, body) = inflight
        .join()
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(status, 200);
    assert_eq!(body.unwrap().as_array().unwrap().len(), 256);
    let st = svc
        .wait_exit(Duration::from_secs(30))
        .expect("exits after draining");
    assert!(st.success(), "exit status {st}");
    // New connections are refused once it has stopped.
    assert!(http.get(format!("{}/health", svc.url)).send().is_err());
}

#[test]
fn invalid_config_stops_at_start_naming_the_key() {
    let port = free_port();
    let mut svc = Proc::spawn(
        "embedding-service",
        port,
        &[("EMBEDDING__PORT", "not-a-port")],
    );
    let st = svc.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!st.success());
    let err = svc.stderr();
    assert!(err.contains("embedding.port"), "{err}");
}

#[test]
fn unsupported_architecture_stops_the_service() {
    let dir = std::env::temp_dir().join(format!("e2e-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"architectures": ["MambaForCausalLM"], "model_type": "mamba", "hidden_size": 8, "max_position_embeddings": 8}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), "").unwrap();
    let port = free_port();
    let p = port.to_string();
    let d = dir.to_string_lossy().to_string();
    let mut svc = Proc::spawn(
        "embedding-service",
        port,
        &[("EMBEDDING__PORT", &p), ("EMBEDDING__MODEL__PATH", &d)],
    );
    let st = svc.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!st.success());
    let err = svc.stderr();
    assert!(err.contains("MambaForCausalLM"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

fn start() -> Proc {
    let port = free_port();
    let p = port.to_string();
    let mut svc = Proc::spawn(
        "embedding-service",
        port,
        &[("EMBEDDING__PORT", &p), ("EMBEDDING__HOST", "127.0.0.1")],
    );
    svc.wait_healthy(Duration::from_secs(120));
    svc
}

/// Swagger UI's examples, sent as they are, succeed on every route.
#[test]
fn swagger_examples_succeed_as_they_are() {
    let svc = start();
    let spec: Value = reqwest::blocking::get(format!("{}/openapi.json", svc.url))
        .unwrap()
        .json()
        .unwrap();
    let failures = send_examples(
        &svc.url,
        &spec,
        &[
            ("get", "/"),
            ("get", "/health"),
            ("get", "/info"),
            ("post", "/"),
            ("post", "/embed"),
            ("post", "/embed/batch"),
            ("post", "/embed_all"),
            ("post", "/v1/embeddings"),
            ("get", "/v1/models"),
            ("get", "/v1/models/{model}"),
            ("post", "/tokenize"),
            ("post", "/decode"),
            ("get", "/metrics"),
        ],
        &[],
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every route through a Python client generated from `/openapi.json`
/// (scripts/test.sh generates it and sets `E2E_PYTHON` / `E2E_PYCLIENT`).
#[test]
fn generated_python_client_calls_every_route() {
    let (Ok(py), Ok(pkg)) = (std::env::var("E2E_PYTHON"), std::env::var("E2E_PYCLIENT")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this through scripts/test.sh"
        );
        eprintln!("skipped: run through scripts/test.sh, which generates the Python client");
        return;
    };
    let svc = start();
    // The spec the client was generated from is the one the service serves.
    let served: Value = reqwest::blocking::get(format!("{}/openapi.json", svc.url))
        .unwrap()
        .json()
        .unwrap();
    let generated: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("target/openapi-embedding.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, generated);
    let out = std::process::Command::new(py)
        .arg(workspace_root().join("tests/python/embedding_flow.py"))
        .arg(&svc.url)
        .env("PYTHONPATH", pkg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python flow failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
}
