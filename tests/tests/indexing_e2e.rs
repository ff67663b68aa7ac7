//! Both real binaries over real HTTP: store 3,000 WordNet glosses by text
//! with metadata, search by text and by vector, filter, update metadata,
//! delete, restart the indexing service (SIGTERM and SIGKILL) and find every
//! acknowledged write; stop the embedding service mid-run and get 503
//! `embedding_unavailable` quickly with nothing written, then recover.
//! And 5,000 documents in one `POST /embed`, split by the indexing service
//! into calls the embedding service accepts.

use e2e_tests::{free_port, send_examples, workspace_root, Proc};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Gloss {
    synset: String,
    lemma: String,
    pos: String,
    gloss: String,
}

fn glosses() -> Vec<Gloss> {
    let text =
        std::fs::read_to_string(workspace_root().join("tests/fixtures/wordnet-3000.tsv")).unwrap();
    text.lines()
        .map(|l| {
            let mut f = l.split('\t');
            let synset = f.next().unwrap().to_string();
            let lemma = f
                .next()
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .replace('_', " ");
            let gloss = f.next().unwrap().to_string();
            let pos = synset.rsplit('-').next().unwrap().to_string();
            Gloss {
                synset,
                lemma,
                pos,
                gloss,
            }
        })
        .collect()
}

fn post(c: &Client, url: &str, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn embedding(port: u16) -> Proc {
    let p = port.to_string();
    let mut e = Proc::spawn(
        "embedding-service",
        port,
        &[("EMBEDDING__PORT", &p), ("EMBEDDING__HOST", "127.0.0.1")],
    );
    e.wait_healthy(Duration::from_secs(120));
    e
}

fn indexing(port: u16, emb_port: u16, data: &std::path::Path) -> Proc {
    indexing_with(port, emb_port, data, &[])
}

/// The indexing service with `extra` environment (later keys win).
fn indexing_with(port: u16, emb_port: u16, data: &std::path::Path, extra: &[(&str, &str)]) -> Proc {
    let p = port.to_string();
    let url = format!("http://127.0.0.1:{emb_port}");
    let d = data.to_string_lossy().to_string();
    let mut env = vec![
        ("INDEXING__PORT", p.as_str()),
        ("INDEXING__HOST", "127.0.0.1"),
        ("INDEXING__DATA_DIR", &d),
        ("EMBEDDING_SERVICE_URL", &url),
        ("INDEXING__EMBEDDING_TIMEOUT_MS", "15000"),
        ("INDEXING__EMBEDDING_RETRIES", "1"),
        // Small segments so sealing and indexing happen during the test.
        ("INDEXING__FLUSH_THRESHOLD__VECTORS", "1000"),
    ];
    env.extend_from_slice(extra);
    let mut i = Proc::spawn("indexing-service", port, &env);
    i.wait_healthy(Duration::from_secs(60));
    i
}

fn count(c: &Client, base: &str) -> u64 {
    let (s, v) = post(
        c,
        &format!("{base}/collections/documents/points/count"),
        json!({}),
    );
    assert_eq!(s, 200, "{v}");
    v["count"].as_u64().unwrap()
}

#[test]
fn store_search_update_delete_restart_and_outage() {
    let data = std::env::temp_dir().join(format!("e2e-index-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (ep, ip) = (free_port(), free_port());
    let mut emb = embedding(ep);
    let mut idx = indexing(ip, ep, &data);
    let base = idx.url.clone();
    let c = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let rows = glosses();

    // Store by text with metadata, in batches (one embedding call each).
    for (b, chunk) in rows.chunks(250).enumerate() {
        let docs: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, g)| json!({"id": b * 250 + i, "content": g.gloss, "metadata": {"synset": g.synset, "lemma": g.lemma, "pos": g.pos}}))
            .collect();
        let (s, v) = post(&c, &format!("{base}/embed"), json!({"documents": docs}));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["ids"].as_array().unwrap().len(), chunk.len());
        assert_eq!(v["collection"], "documents");
    }
    assert_eq!(count(&c, &base), 3000);
    let info: Value = c
        .get(format!("{base}/collections/documents"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        info["dimension"], 384,
        "default collection takes the model's dimension"
    );

    // Search by text: the index agrees with exact search, and a lemma often
    // finds its own gloss (short, out-of-distribution queries: a hard case).
    let sample: Vec<usize> = (0..3000).step_by(60).collect();
    let (mut own, mut agree, mut total) = (0, 0, 0);
    for &i in &sample {
        let (s, v) = post(
            &c,
            &format!("{base}/search"),
            json!({"query": rows[i].lemma, "top_k": 10}),
        );
        assert_eq!(s, 200, "{v}");
        let res = v["results"].as_array().unwrap();
        assert!(res.len() == 10 && v["took_ms"].as_f64().is_some());
        let scores: Vec<f64> = res.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first");
        let (_, ex) = post(
            &c,
            &format!("{base}/search"),
            json!({"query": rows[i].lemma, "top_k": 10, "exact": true}),
        );
        let ex: Vec<Value> = ex["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        agree += res.iter().filter(|r| ex.contains(&r["id"])).count();
        total += ex.len();
        if ex.contains(&json!(i)) {
            own += 1;
        }
    }
    let recall = agree as f64 / total as f64;
    eprintln!(
        "index vs exact recall@10 {recall:.3}; lemma → own gloss in exact top 10: {own}/{}",
        sample.len()
    );
    assert!(recall >= 0.9, "recall against exact search {recall}");
    assert!(
        own * 10 >= sample.len() * 4,
        "only {own}/{} lemmas found their gloss",
        sample.len()
    );

    // Search by vector: a stored point's vector finds itself first.
    let p: Value = c
        .get(format!("{base}/collections/documents/points/42"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let vector = p["vector"].clone();
    let (s, v) = post(
        &c,
        &format!("{base}/search"),
        json!({"vector": vector, "top_k": 3}),
    );
    assert_eq!(s, 200);
    assert_eq!(v["results"][0]["id"], 42);
    assert!(v["results"][0]["score"].as_f64().unwrap() > 0.999);
    assert_eq!(v["results"][0]["content"], rows[42].gloss);

    // Filter.
    let (s, v) = post(
        &c,
        &format!("{base}/search"),
        json!({"query": "to move quickly", "top_k": 10, "filter": {"must": [{"key": "pos", "match": "v"}]}}),
    );
    assert_eq!(s, 200, "{v}");
    let res = v["results"].as_array().unwrap();
    assert_eq!(res.len(), 10);
    assert!(res.iter().all(|r| r["metadata"]["pos"] == "v"));
    let (_, v) = post(
        &c,
        &format!("{base}/collections/documents/points/count"),
        json!({"filter": {"must": [{"key": "pos", "match": {"any": ["a", "s"]}}]}}),
    );
    assert_eq!(v["count"], 181 + 285);

    // Update metadata (merge), delete one point.
    let r = c
        .patch(format!("{base}/collections/documents/points/7"))
        .json(&json!({"metadata": {"reviewed": true}, "merge": true}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .delete(format!("{base}/collections/documents/points/8"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        c.get(format!("{base}/collections/documents/points/8"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let (_, v) = post(
        &c,
        &format!("{base}/collections/documents/points/delete"),
        json!({"filter": {"must": [{"key": "pos", "match": "r"}]}}),
    );
    assert_eq!(v["deleted"], 75);
    let expected = 3000 - 1 - 75;
    assert_eq!(count(&c, &base), expected);

    // Bad input: clear errors, nothing written.
    let (s, v) = post(&c, &format!("{base}/search"), json!({"vector": [1.0, 2.0]}));
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("dimension_mismatch"))
    );
    let (s, v) = post(
        &c,
        &format!("{base}/collections/nope/search"),
        json!({"vector": [1.0]}),
    );
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let r = c
        .post(format!("{base}/search"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (s, _) = post(
        &c,
        &format!("{base}/collections/documents/points/scroll"),
        json!({"limit": 0}),
    );
    assert_eq!(s, 422);

    // Restart (graceful), then a SIGKILL right after writes: all there.
    idx.signal("TERM");
    assert!(idx
        .wait_exit(Duration::from_secs(30))
        .expect("stops")
        .success());
    let mut idx = indexing(ip, ep, &data);
    assert_eq!(count(&c, &base), expected);
    for i in 0..20u64 {
        let (s, _) = post(
            &c,
            &format!("{base}/embed"),
            json!({"id": 10_000 + i, "content": format!("an acknowledged write number {i}")}),
        );
        assert_eq!(s, 200);
    }
    idx.signal("KILL");
    idx.wait_exit(Duration::from_secs(10)).expect("killed");
    let mut idx = indexing(ip, ep, &data);
    assert_eq!(
        count(&c, &base),
        expected + 20,
        "acknowledged writes survive SIGKILL"
    );
    let p: Value = c
        .get(format!("{base}/collections/documents/points/7"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(p["metadata"]["reviewed"], true);
    assert_eq!(p["metadata"]["synset"], rows[7].synset);
    assert_eq!(
        c.get(format!("{base}/collections/documents/points/8"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // Embedding service down: 503 quickly, nothing written; vector search still works.
    emb.signal("KILL");
    emb.wait_exit(Duration::from_secs(10));
    let t0 = Instant::now();
    let (s, v) = post(
        &c,
        &format!("{base}/embed"),
        json!({"content": "this must not be stored", "id": 99_999}),
    );
    let took = t0.elapsed();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("embedding_unavailable")),
        "{v}"
    );
    assert!(took < Duration::from_secs(6), "503 took {took:?}");
    let (s, _) = post(&c, &format!("{base}/search"), json!({"query": "dog"}));
    assert_eq!(s, 503);
    assert_eq!(
        count(&c, &base),
        expected + 20,
        "nothing partial was written"
    );
    let (s, _) = post(
        &c,
        &format!("{base}/search"),
        json!({"vector": vector, "top_k": 1}),
    );
    assert_eq!(s, 200);
    let r = c.get(format!("{base}/ready")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);

    // Back up: text works again.
    let _emb = embedding(ep);
    let (s, v) = post(
        &c,
        &format!("{base}/search"),
        json!({"query": "hot dog", "top_k": 5}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        c.get(format!("{base}/ready"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // The spec lists every route.
    let spec: Value = c
        .get(format!("{base}/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for p in [
        "/embed",
        "/search",
        "/collections",
        "/collections/{name}",
        "/collections/{name}/points",
        "/collections/{name}/points/{id}",
        "/collections/{name}/points/delete",
        "/collections/{name}/points/scroll",
        "/collections/{name}/points/count",
        "/collections/{name}/search",
        "/collections/{name}/search/batch",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(spec["paths"][p].is_object(), "spec lacks {p}");
    }
    let m = c
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("index_points") && m.contains("index_embedding_call_duration_seconds"));
    idx.signal("TERM");
    idx.wait_exit(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&data);
}

/// 5,000 documents in one `POST /embed` (the 3,000 fixture glosses, then
/// 2,000 of them again as "lemma: gloss"): more than the embedding
/// service's `max_client_batch_size` (256) and split by the indexing
/// service into calls it accepts. All are stored, each with the vector of
/// its own text (checked at chunk boundaries against the embedding service
/// directly); the time it took is printed. `E2E_BULK_DOCUMENTS` sets
/// another count (e.g. 1000 on a slow machine: 5,000 took 150 s on two
/// cores shared with other builds).
#[test]
fn five_thousand_glosses_in_one_embed() {
    let data = std::env::temp_dir().join(format!("e2e-bulk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (ep, ip) = (free_port(), free_port());
    let _emb = embedding(ep);
    // Calls wait their turn in the embedding service's queue: a longer
    // per-call timeout than the other tests need on a slow machine.
    let idx = indexing_with(
        ip,
        ep,
        &data,
        &[("INDEXING__EMBEDDING_TIMEOUT_MS", "120000")],
    );
    let base = idx.url.clone();
    let c = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let rows = glosses();
    let n: usize = std::env::var("E2E_BULK_DOCUMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let content = |i: usize| {
        let g = &rows[i % rows.len()];
        if i < rows.len() {
            g.gloss.clone()
        } else {
            format!("{}: {}", g.lemma, g.gloss)
        }
    };
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "content": content(i), "metadata": {"synset": rows[i % rows.len()].synset}}))
        .collect();
    let t0 = Instant::now();
    let (s, v) = post(&c, &format!("{base}/embed"), json!({ "documents": docs }));
    let took = t0.elapsed();
    assert_eq!(s, 200, "{v}");
    eprintln!(
        "{n} documents in one POST /embed: {:.1} s ({:.0} documents/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let ids: Vec<u64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(ids, (0..n as u64).collect::<Vec<_>>());
    assert_eq!(count(&c, &base), n as u64);
    // Each stored vector is its own text's (order kept across calls).
    let probe: Vec<usize> = [0usize, 255, 256, 257, 1023, 1024, 2999, 3000, 4095, n - 1]
        .into_iter()
        .filter(|&i| i < n)
        .collect();
    let (s, v) = post(
        &c,
        &format!("{base}/collections/documents/points"),
        json!({"ids": probe, "with_vector": true}),
    );
    assert_eq!(s, 200, "{v}");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), probe.len());
    let texts: Vec<String> = probe.iter().map(|&i| content(i)).collect();
    let (s, direct) = post(
        &c,
        &format!("http://127.0.0.1:{ep}/embed"),
        json!({ "inputs": texts }),
    );
    assert_eq!(s, 200, "{direct}");
    for ((p, &i), want) in points.iter().zip(&probe).zip(direct.as_array().unwrap()) {
        assert_eq!(p["id"], i);
        assert_eq!(p["content"], content(i));
        let got: Vec<f64> = serde_json::from_value(p["vector"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = dot / (norm(&got) * norm(&want));
        assert!(cos > 0.999, "point {i}: cosine {cos} with its own text");
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// The same flow through a Python client generated from `/openapi.json`
/// (scripts/test.sh generates it and sets `E2E_PYTHON` / `E2E_PYCLIENT`).
#[test]
fn generated_python_client_runs_the_flow() {
    let (Ok(py), Ok(pkg)) = (std::env::var("E2E_PYTHON"), std::env::var("E2E_PYCLIENT")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this through scripts/test.sh"
        );
        eprintln!("skipped: run through scripts/test.sh, which generates the Python client");
        return;
    };
    let data = std::env::temp_dir().join(format!("e2e-pyclient-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (ep, ip) = (free_port(), free_port());
    let _emb = embedding(ep);
    let idx = indexing(ip, ep, &data);
    // The spec the client was generated from is the one the service serves.
    let served: Value = Client::new()
        .get(format!("{}/openapi.json", idx.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let generated: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("target/openapi-indexing.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, generated);
    let out = std::process::Command::new(py)
        .arg(workspace_root().join("tests/python/flow.py"))
        .arg(&idx.url)
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
    let _ = std::fs::remove_dir_all(&data);
}

/// Swagger UI's examples, sent as they are to a fresh stack (no collection
/// yet), succeed on every route: `/search` names no collection and makes
/// the default one, which the collection routes' examples then use.
#[test]
fn swagger_examples_succeed_on_a_fresh_stack() {
    let data = std::env::temp_dir().join(format!("e2e-examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (ep, ip) = (free_port(), free_port());
    let _emb = embedding(ep);
    let idx = indexing(ip, ep, &data);
    let spec: Value = Client::new()
        .get(format!("{}/openapi.json", idx.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let failures = send_examples(
        &idx.url,
        &spec,
        &[
            ("get", "/"),
            ("get", "/health"),
            ("get", "/ready"),
            ("post", "/search"),
            ("post", "/embed"),
            ("post", "/collections"),
            ("get", "/collections"),
            ("get", "/collections/{name}"),
            ("put", "/collections/{name}/points"),
            ("post", "/collections/{name}/points"),
            ("get", "/collections/{name}/points/{id}"),
            ("patch", "/collections/{name}/points/{id}"),
            ("post", "/collections/{name}/search"),
            ("post", "/collections/{name}/points/search"),
            ("post", "/collections/{name}/query"),
            ("post", "/collections/{name}/points/query"),
            ("put", "/collections/{name}/index"),
            ("post", "/collections/{name}/search/batch"),
            ("post", "/collections/{name}/points/scroll"),
            ("post", "/collections/{name}/points/count"),
            ("post", "/collections/{name}/snapshots"),
            ("get", "/collections/{name}/snapshots"),
            ("post", "/snapshots"),
            ("get", "/snapshots"),
            ("delete", "/collections/{name}/points/{id}"),
            ("post", "/collections/{name}/points/delete"),
            ("delete", "/collections/{name}/index/{field_name}"),
            ("get", "/metrics"),
            ("delete", "/collections/{name}"),
        ],
        // Their examples name a snapshot file, which exists only once one
        // is made (the snapshot tests cover these routes).
        &[
            ("get", "/collections/{name}/snapshots/{snapshot}"),
            ("delete", "/collections/{name}/snapshots/{snapshot}"),
            ("post", "/collections/{name}/snapshots/recover"),
            ("post", "/collections/{name}/snapshots/upload"),
            ("get", "/snapshots/{snapshot}"),
            ("delete", "/snapshots/{snapshot}"),
        ],
    );
    assert!(failures.is_empty(), "{failures:#?}");
    let _ = std::fs::remove_dir_all(&data);
}

/// With keys on both services: every call but `/health` needs the bearer
/// key, and the indexing service sends its own key to the embedding service
/// (which would refuse the embedding call otherwise).
#[test]
fn api_keys_guard_both_services_and_are_forwarded() {
    let data = std::env::temp_dir().join(format!("e2e-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (ep, ip) = (free_port(), free_port());
    let (eps, ips) = (ep.to_string(), ip.to_string());
    let mut emb = Proc::spawn(
        "embedding-service",
        ep,
        &[
            ("EMBEDDING__PORT", &eps),
            ("EMBEDDING__HOST", "127.0.0.1"),
            ("EMBEDDING__API_KEY", "emb-secret"),
        ],
    );
    emb.wait_healthy(Duration::from_secs(120));
    let url = format!("http://127.0.0.1:{ep}");
    let d = data.to_string_lossy().to_string();
    let mut idx = Proc::spawn(
        "indexing-service",
        ip,
        &[
            ("INDEXING__PORT", &ips),
            ("INDEXING__HOST", "127.0.0.1"),
            ("INDEXING__DATA_DIR", &d),
            ("EMBEDDING_SERVICE_URL", &url),
            ("INDEXING__API_KEY", "idx-secret"),
            ("INDEXING__EMBEDDING_API_KEY", "emb-secret"),
        ],
    );
    idx.wait_healthy(Duration::from_secs(60));
    let c = Client::new();
    let body = json!({"content": "a guarded document", "id": 1});
    let r = c
        .post(format!("{}/embed", idx.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "unauthorized");
    let r = c
        .post(format!("{}/embed", idx.url))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(format!("{}/embed", idx.url))
        .bearer_auth("idx-secret")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    // The embedding service itself refuses callers without its key.
    let r = c
        .post(format!("{url}/embed"))
        .json(&json!({"inputs": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        c.get(format!("{}/health", idx.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let _ = std::fs::remove_dir_all(&data);
}
