//! Snapshots: made under a concurrent write load and restored into a
//! fresh data directory (every point identical to a model of the
//! acknowledged writes up to the snapshot's operation, identical search
//! results, and again after a restart); damaged files refused with a
//! clear error and the collection untouched; SIGKILL of the real binary
//! during a snapshot and at two moments of a restore loses nothing.

use crate::http::{app_on, call, rt, send};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use indexing_service::collection::{CollectionConfig, FlushThreshold, NewPoint, TEST_PAUSE_ENV};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::wire::indexing::{Metric, PointId};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DIM: usize = 8;

fn vector(id: u64, version: u64) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((id * 31 + version * 7 + j as u64 * 13) % 97) as f32 / 97.0 - 0.4)
        .collect()
}

/// The model: id → (vector, payload) after every acknowledged op `<= op`.
type Model = BTreeMap<u64, (Vec<f32>, Value)>;

enum Logged {
    Upsert(u64, u64),
    Delete(u64),
}

fn apply(model: &mut Model, l: &Logged) {
    match *l {
        Logged::Upsert(id, v) => {
            model.insert(id, (vector(id, v), json!({"id": id, "v": v})));
        }
        Logged::Delete(id) => {
            model.remove(&id);
        }
    }
}

/// Every point of collection `name` through the scroll route, in id order.
async fn scroll_all(app: &axum::Router, name: &str) -> Model {
    let mut out = Model::new();
    let mut cursor = Value::Null;
    loop {
        let (s, b) = call(
            app,
            Method::POST,
            &format!("/collections/{name}/points/scroll"),
            Some(json!({"limit": 500, "cursor": cursor, "with_vector": true})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for p in b["points"].as_array().unwrap() {
            let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
            out.insert(p["id"].as_u64().unwrap(), (v, p["metadata"].clone()));
        }
        cursor = b["next_cursor"].clone();
        if cursor.is_null() {
            return out;
        }
    }
}

async fn search_ids(app: &axum::Router, name: &str, q: &[f32]) -> Vec<(u64, f64)> {
    let (s, b) = call(
        app,
        Method::POST,
        &format!("/collections/{name}/search"),
        Some(json!({"vector": q, "top_k": 10})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["results"]
        .as_array()
        .or_else(|| b["hits"].as_array())
        .unwrap_or_else(|| panic!("search answer {b}"))
        .iter()
        .map(|h| (h["id"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
        .collect()
}

async fn upload(
    app: &axum::Router,
    name: &str,
    bytes: Vec<u8>,
    query: &str,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/collections/{name}/snapshots/upload{query}"))
        .header("content-type", "application/x-tar")
        .body(Body::from(bytes))
        .unwrap();
    let (s, _, text) = send(app, req).await;
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A snapshot made while a thread upserts and deletes holds exactly the
/// acknowledged writes up to its operation; restored into a fresh data
/// directory it scrolls and searches identically, and refuses damaged
/// files without touching the restored collection.
#[test]
fn snapshot_under_writes_restores_identically_and_refuses_damage() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (app_a, st_a) = app_on(a_dir.path());
    let mut cfg = CollectionConfig::new("docs", DIM, Metric::Dot);
    cfg.flush_threshold = FlushThreshold {
        vectors: 300,
        ..FlushThreshold::default()
    };
    let c = st_a.storage.create(cfg).unwrap();
    // Ops logged by the one writer thread: op → what it did.
    let log: Arc<Mutex<BTreeMap<u64, Logged>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let upsert = |c: &indexing_service::collection::Collection, id: u64, v: u64| -> u64 {
        let (op, _) = c
            .upsert(vec![NewPoint {
                id: Some(PointId::Num(id)),
                vector: vector(id, v),
                payload: Some(json!({"id": id, "v": v})),
                content: None,
            }])
            .unwrap();
        op
    };
    for id in 0..1_000u64 {
        let op = upsert(&c, id, 0);
        log.lock().unwrap().insert(op, Logged::Upsert(id, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, log, stop) = (c.clone(), log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 300 {
                i += 1;
                if i.is_multiple_of(5) {
                    // Delete an older point (sealed segments' bitmaps).
                    let id = (i * 37) % 1_000;
                    c.delete(vec![PointId::Num(id)]).unwrap();
                    let op = c.info().last_op;
                    log.lock().unwrap().insert(op, Logged::Delete(id));
                } else {
                    // Replace old points and add new ones.
                    let id = if i.is_multiple_of(2) {
                        (i * 13) % 1_000
                    } else {
                        1_000 + i
                    };
                    let op = upsert(&c, id, i);
                    log.lock().unwrap().insert(op, Logged::Upsert(id, i));
                }
                if i > 5_000 {
                    break;
                }
            }
        })
    };
    // Let the load run, then snapshot in the middle of it.
    while log.lock().unwrap().len() < 1_150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (s, desc) = rt.block_on(call(
        &app_a,
        Method::POST,
        "/collections/docs/snapshots",
        None,
    ));
    assert_eq!(s, StatusCode::OK, "{desc}");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let name = desc["name"].as_str().unwrap().to_string();
    assert!(name.ends_with(".snapshot"), "{name}");
    // Listed, downloadable, with its checksum in the header.
    let (s, list) = rt.block_on(call(
        &app_a,
        Method::GET,
        "/collections/docs/snapshots",
        None,
    ));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["snapshots"][0], desc);
    let req = Request::builder()
        .uri(format!("/collections/docs/snapshots/{name}"))
        .body(Body::empty())
        .unwrap();
    let resp = rt.block_on(async {
        use tower::ServiceExt;
        app_a.clone().oneshot(req).await.unwrap()
    });
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let header_sum = resp.headers()["x-checksum-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = rt
        .block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
        .unwrap()
        .to_vec();
    assert_eq!(bytes.len() as u64, desc["size"].as_u64().unwrap());
    assert_eq!(sha256_hex(&bytes), header_sum);
    assert_eq!(header_sum, desc["checksum"].as_str().unwrap());

    // Restore into a fresh data directory, under another name.
    let (app_b, _st_b) = app_on(b_dir.path());
    let (s, r) = rt.block_on(upload(&app_b, "restored", bytes.clone(), ""));
    assert_eq!(s, StatusCode::OK, "{r}");
    let op = r["operation"].as_u64().unwrap();
    assert_eq!(r["source_collection"], "docs");
    let log = log.lock().unwrap();
    assert!(
        log.range(op + 1..).next().is_some(),
        "writes went on after the snapshot's op {op}"
    );
    let mut model = Model::new();
    for (_, l) in log.range(..=op) {
        apply(&mut model, l);
    }
    drop(log);
    assert_eq!(r["points"].as_u64().unwrap() as usize, model.len());
    let got = rt.block_on(scroll_all(&app_b, "restored"));
    assert_eq!(got.len(), model.len());
    assert!(
        got == model,
        "the restored points differ from the writes up to op {op}"
    );
    println!(
        "snapshot at op {op}: {} points restored identically ({} bytes)",
        model.len(),
        bytes.len()
    );
    // The same file restored on the source service (by its name) searches
    // identically.
    let (s, r2) = rt.block_on(call(
        &app_a,
        Method::POST,
        "/collections/copy/snapshots/recover",
        Some(json!({"location": format!("file://{}", a_dir.path().join("snapshots/docs").join(&name).display()), "checksum": desc["checksum"]})),
    ));
    assert_eq!(s, StatusCode::OK, "{r2}");
    for q in 0..5u64 {
        let qv = vector(q * 101 + 3, 99);
        let x = rt.block_on(search_ids(&app_b, "restored", &qv));
        let y = rt.block_on(search_ids(&app_a, "copy", &qv));
        assert_eq!(x.len(), 10);
        assert_eq!(x, y, "query {q}");
    }

    // Damaged files are refused by name; the collection stays as it was.
    let mut flipped = bytes.clone();
    let data_at = {
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut pos = None;
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().to_string();
            if p.ends_with("vectors.f32") && e.size() > 16 {
                pos = Some((e.raw_file_position() + e.size() / 2, p));
                break;
            }
        }
        pos.expect("a sealed segment in the snapshot")
    };
    flipped[data_at.0 as usize] ^= 0x40;
    let mut manifest_flip = bytes.clone();
    let at = 512
        + bytes[512..]
            .windows(11)
            .position(|w| w == b"\"operation\"")
            .unwrap()
        + 14;
    manifest_flip[at] = if manifest_flip[at] == b'1' {
        b'2'
    } else {
        b'1'
    };
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("a flipped byte", flipped, "", data_at.1.as_str()),
        (
            "a truncated file",
            bytes[..bytes.len() / 2].to_vec(),
            "",
            "truncated",
        ),
        ("a damaged manifest", manifest_flip, "", "snapshot.json"),
        (
            "not a tar file",
            b"hello, not a snapshot".repeat(100),
            "",
            "tar",
        ),
    ];
    let before = rt.block_on(scroll_all(&app_b, "restored"));
    for (what, body, q, needle) in cases {
        let (s, e) = rt.block_on(upload(&app_b, "restored", body, q));
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {e}");
        assert_eq!(e["error"]["code"], "snapshot_invalid", "{what}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{what}: {msg}");
        println!("{what}: {msg}");
    }
    let wrong = "0".repeat(64);
    let (s, e) = rt.block_on(upload(
        &app_b,
        "restored",
        bytes.clone(),
        &format!("?checksum={wrong}"),
    ));
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "snapshot_invalid");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("checksum"),
        "{e}"
    );
    assert!(rt.block_on(scroll_all(&app_b, "restored")) == before);
    // No staging directory or upload is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(b_dir.path().join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A restart serves the restored collection as it was.
    drop(app_b);
    drop(_st_b);
    let (app_b, _st_b) = app_on(b_dir.path());
    assert!(rt.block_on(scroll_all(&app_b, "restored")) == model);

    // Delete; bad names are 404.
    let (s, _) = rt.block_on(call(
        &app_a,
        Method::DELETE,
        &format!("/collections/docs/snapshots/{name}"),
        None,
    ));
    assert_eq!(s, StatusCode::OK);
    let (s, list) = rt.block_on(call(
        &app_a,
        Method::GET,
        "/collections/docs/snapshots",
        None,
    ));
    assert_eq!(
        (s, list["snapshots"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    for bad in ["..%2Fcollection.json", "x.tar", name.as_str()] {
        let (s, e) = rt.block_on(call(
            &app_a,
            Method::GET,
            &format!("/collections/docs/snapshots/{bad}"),
            None,
        ));
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}: {e}");
    }
}

/// A storage snapshot holds every collection and restores into a fresh
/// data directory through `indexing-service restore-snapshot`.
#[test]
fn storage_snapshot_restores_every_collection_from_the_command_line() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (app_a, st_a) = app_on(a_dir.path());
    let mut models = BTreeMap::new();
    for (n, count) in [("one", 50u64), ("two", 420)] {
        let mut cfg = CollectionConfig::new(n, DIM, Metric::Dot);
        cfg.flush_threshold = FlushThreshold {
            vectors: 200,
            ..FlushThreshold::default()
        };
        let c = st_a.storage.create(cfg).unwrap();
        let pts: Vec<NewPoint> = (0..count)
            .map(|id| NewPoint {
                id: Some(PointId::Num(id)),
                vector: vector(id, 1),
                payload: Some(json!({"id": id, "v": 1})),
                content: None,
            })
            .collect();
        c.upsert(pts).unwrap();
        models.insert(n, rt.block_on(scroll_all(&app_a, n)));
    }
    let (s, d) = rt.block_on(call(&app_a, Method::POST, "/snapshots", None));
    assert_eq!(s, StatusCode::OK, "{d}");
    let name = d["name"].as_str().unwrap();
    let (s, l) = rt.block_on(call(&app_a, Method::GET, "/snapshots", None));
    assert_eq!(
        (s, l["snapshots"][0]["name"].as_str()),
        (StatusCode::OK, Some(name))
    );
    let file = a_dir.path().join("snapshots").join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_indexing-service"))
        .env_remove("CONFIG_PATH")
        .env("RUST_LOG", "warn")
        .args(["restore-snapshot", file.to_str().unwrap(), "--data-dir"])
        .arg(b_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (app_b, _st_b) = app_on(b_dir.path());
    for (n, m) in &models {
        assert!(rt.block_on(scroll_all(&app_b, n)) == *m, "{n}");
    }
}

// ---- SIGKILL of the real binary -------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 exchange: status and JSON body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(&body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut b = raw[split + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &b[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + n]);
            rest = &rest[i + 4 + n..];
        }
        b = out;
    }
    Ok((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
}

struct Proc {
    port: u16,
    child: Child,
}

impl Proc {
    fn start(data: &Path, pause: Option<&str>) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_indexing-service"));
        cmd.env_remove("CONFIG_PATH")
            .env_remove(TEST_PAUSE_ENV)
            .env("INDEXING__HOST", "127.0.0.1")
            .env("INDEXING__PORT", port.to_string())
            .env("INDEXING__DATA_DIR", data.display().to_string())
            .env(
                "EMBEDDING_SERVICE_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = pause {
            cmd.env(TEST_PAUSE_ENV, p);
        }
        let child = cmd.spawn().expect("start indexing-service");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http(port, "GET", "/health", None), Ok((200, _))) {
            assert!(Instant::now() < deadline, "service did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proc { port, child }
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn ids(&self, name: &str) -> Vec<u64> {
        let (s, b) = http(
            self.port,
            "POST",
            &format!("/collections/{name}/points/scroll"),
            Some(&json!({"limit": 10000, "with_payload": false})),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
        b["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect()
    }

    fn upsert(&self, name: &str, ids: std::ops::Range<u64>) {
        let pts: Vec<Value> = ids
            .map(|id| json!({"id": id, "vector": vector(id, 2), "metadata": {"id": id}}))
            .collect();
        for chunk in pts.chunks(100) {
            let (s, b) = http(
                self.port,
                "PUT",
                &format!("/collections/{name}/points"),
                Some(&json!({"points": chunk})),
            )
            .unwrap();
            assert_eq!(s, 200, "{b}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `found` sees what it looks for in `dir` (names of entries).
fn wait_for(dir: &Path, what: &str, found: impl Fn(&str, &Path) -> bool) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if found(&n, &e.path()) {
                    return e.path();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dot_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with('.') && n != ".lock")
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL while the archive is half written lists no snapshot and loses
/// no point; SIGKILL after a restore staged its files, and again between
/// moving the old collection aside and the restored one in, leaves the
/// collection as it was before the restore; then a restore completes.
#[test]
fn sigkill_during_snapshot_and_restore_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let snaps = d.join("snapshots/c");
    let cols = d.join("collections");

    let p = Proc::start(d, Some("archive:60000"));
    let (s, b) = http(
        p.port,
        "POST",
        "/collections",
        Some(&json!({"name": "c", "dimension": DIM, "metric": "dot", "flush_threshold": {"vectors": 200}})),
    )
    .unwrap();
    assert_eq!(s, 201, "{b}");
    p.upsert("c", 0..500);
    let port = p.port;
    let pending = std::thread::spawn(move || http(port, "POST", "/collections/c/snapshots", None));
    wait_for(&snaps, "a snapshot being written", |n, _| {
        n.ends_with(".tmp")
    });
    std::thread::sleep(Duration::from_millis(100));
    p.kill9();
    let _ = pending.join();
    let p = Proc::start(d, None);
    let (s, l) = http(p.port, "GET", "/collections/c/snapshots", None).unwrap();
    assert_eq!(
        (s, l["snapshots"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{l}"
    );
    assert!(dot_entries(&snaps).is_empty(), "{:?}", dot_entries(&snaps));
    assert_eq!(p.ids("c"), (0..500).collect::<Vec<_>>());

    // A good snapshot of 500 points; then 200 more points.
    let (s, desc) = http(p.port, "POST", "/collections/c/snapshots", None).unwrap();
    assert_eq!(s, 200, "{desc}");
    let snap = desc["name"].as_str().unwrap().to_string();
    p.upsert("c", 500..700);
    let all: Vec<u64> = (0..700).collect();
    assert_eq!(p.ids("c"), all);
    p.kill9();

    for stage in ["extract", "switch"] {
        let p = Proc::start(d, Some(&format!("{stage}:60000")));
        let port = p.port;
        let body = json!({"location": snap.clone()});
        let pending = std::thread::spawn(move || {
            http(
                port,
                "POST",
                "/collections/c/snapshots/recover",
                Some(&body),
            )
        });
        match stage {
            "extract" => {
                wait_for(&cols, "a staged restore", |n, path| {
                    n.starts_with(".creating-c-") && path.join("collection.json").exists()
                });
            }
            _ => {
                wait_for(&cols, "the old collection moved aside", |n, _| {
                    n.starts_with(".replaced-")
                });
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        p.kill9();
        let _ = pending.join();
        let p = Proc::start(d, None);
        assert_eq!(p.ids("c"), all, "after SIGKILL at `{stage}`");
        assert!(dot_entries(&cols).is_empty(), "{:?}", dot_entries(&cols));
        p.kill9();
    }

    // Undisturbed, the restore goes through.
    let p = Proc::start(d, None);
    let (s, r) = http(
        p.port,
        "POST",
        "/collections/c/snapshots/recover",
        Some(&json!({"location": snap, "checksum": desc["checksum"]})),
    )
    .unwrap();
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["points"], 500);
    assert_eq!(p.ids("c"), (0..500).collect::<Vec<_>>());
    p.kill9();
    let p = Proc::start(d, None);
    assert_eq!(p.ids("c"), (0..500).collect::<Vec<_>>());
}
