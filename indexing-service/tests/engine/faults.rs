//! Faults of the kinds real deployments meet: reads racing background
//! seals and vacuums (no stall), concurrent create/delete of one name,
//! kills during create/delete, a damaged WAL, deletes that must give space
//! back, and a full disk.

use crate::http::{app_on, call, rt};
use crate::storage::pt;
use axum::http::{Method, StatusCode};
use indexing_service::collection::{CollectionConfig, CollectionError, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::wire::indexing::{Metric, PointId};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(name: &str, dim: usize, flush: usize) -> CollectionConfig {
    crate::storage::config(name, dim, Metric::Dot, flush)
}

fn leftovers(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

// ------------------------------------------------ reads against seal/vacuum

/// Every read route (describe, list, count, scroll, search, metrics) runs
/// in a loop against writers (upserts, deletes, delete by filter, payload
/// updates) on collections with flush thresholds 1 and 5, so segments are
/// sealed and vacuumed all the time. Fails when any request is in flight
/// for more than 5 s. Runs `STRESS_SECS` (default 60) seconds.
#[test]
fn read_routes_never_stall_against_seals_and_vacuums() {
    let secs: u64 = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (app, state) = app_on(dir.path());
    let names = ["dl", "dl5"];
    rt.block_on(async {
        for (n, flush) in [("dl", 1), ("dl5", 5)] {
            let (s, b) = call(
                &app,
                Method::POST,
                "/collections",
                Some(json!({"name": n, "dimension": 4, "flush_threshold": {"vectors": flush}})),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
    });
    type Req = (Method, String, Option<Value>);
    type MakeReq = Box<dyn Fn(&mut StdRng, &str) -> Req + Send + Sync>;
    let routes: Vec<(&str, MakeReq)> = vec![
        (
            "upsert",
            Box::new(|r, n| {
                let id: u64 = r.gen_range(0..200);
                (
                    Method::PUT,
                    format!("/collections/{n}/points"),
                    Some(json!({"points": [
                        {"id": id, "vector": [r.gen::<f32>(), r.gen::<f32>(), 1.0, 0.5], "metadata": {"tag": id % 4, "x": id}}
                    ]})),
                )
            }),
        ),
        (
            "delete",
            Box::new(|r, n| {
                (
                    Method::POST,
                    format!("/collections/{n}/points/delete"),
                    Some(json!({"ids": [r.gen_range(0..200u64), r.gen_range(0..200u64)]})),
                )
            }),
        ),
        (
            "delete_by_filter",
            Box::new(|r, n| {
                (
                    Method::POST,
                    format!("/collections/{n}/points/delete"),
                    Some(
                        json!({"filter": {"must": [{"key": "x", "match": r.gen_range(0..200u64)}]}}),
                    ),
                )
            }),
        ),
        (
            "set_payload",
            Box::new(|r, n| {
                (
                    Method::PATCH,
                    format!("/collections/{n}/points/{}", r.gen_range(0..200u64)),
                    Some(json!({"metadata": {"tag": 9}})),
                )
            }),
        ),
        (
            "describe",
            Box::new(|_, n| (Method::GET, format!("/collections/{n}"), None)),
        ),
        (
            "list",
            Box::new(|_, _| (Method::GET, "/collections".into(), None)),
        ),
        (
            "count",
            Box::new(|r, n| {
                (
                    Method::POST,
                    format!("/collections/{n}/points/count"),
                    Some(
                        json!({"filter": {"must": [{"key": "tag", "match": r.gen_range(0..4u64)}]}}),
                    ),
                )
            }),
        ),
        (
            "scroll",
            Box::new(|r, n| {
                (
                    Method::POST,
                    format!("/collections/{n}/points/scroll"),
                    Some(
                        json!({"limit": 50, "filter": {"must_not": [{"key": "tag", "match": r.gen_range(0..4u64)}]}}),
                    ),
                )
            }),
        ),
        (
            "search",
            Box::new(|r, n| {
                (
                    Method::POST,
                    format!("/collections/{n}/search"),
                    Some(json!({"vector": [r.gen::<f32>(), 1.0, r.gen::<f32>(), 0.5], "top_k": 5})),
                )
            }),
        ),
        (
            "metrics",
            Box::new(|_, _| (Method::GET, "/metrics".into(), None)),
        ),
    ];
    let routes = Arc::new(routes);
    // Per loop: when its current request started (ms since t0, 0 = idle),
    // and how many requests it finished.
    let t0 = Instant::now();
    let inflight: Arc<Vec<AtomicU64>> =
        Arc::new((0..routes.len()).map(|_| AtomicU64::new(0)).collect());
    let done: Arc<Vec<AtomicU64>> =
        Arc::new((0..routes.len()).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..routes.len() {
        let (app, routes, inflight, done, stop) = (
            app.clone(),
            routes.clone(),
            inflight.clone(),
            done.clone(),
            stop.clone(),
        );
        tasks.push(rt.spawn(async move {
            let mut r = StdRng::seed_from_u64(i as u64);
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = names[k % 2];
                k += 1;
                let (m, path, body) = (routes[i].1)(&mut r, n);
                inflight[i].store(t0.elapsed().as_millis() as u64 + 1, Ordering::Release);
                let (s, b) = call(&app, m, &path, body).await;
                inflight[i].store(0, Ordering::Release);
                let ok = s.is_success() || s == StatusCode::NOT_FOUND;
                assert!(ok, "{} {path}: {s} {b}", routes[i].0);
                done[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let deadline = Duration::from_secs(secs);
    let mut stalled = None;
    while t0.elapsed() < deadline && stalled.is_none() {
        std::thread::sleep(Duration::from_millis(200));
        let now = t0.elapsed().as_millis() as u64;
        for (i, f) in inflight.iter().enumerate() {
            let started = f.load(Ordering::Acquire);
            if started != 0 && now.saturating_sub(started) > 5_000 {
                stalled = Some(routes[i].0);
            }
        }
        if tasks.iter().any(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(route) = stalled {
        panic!("a `{route}` request has been in flight for over 5 s: the service stalled");
    }
    for t in tasks {
        // A panicked loop (a failed request) fails the test here.
        rt.block_on(t).unwrap();
    }
    let counts: Vec<String> = routes
        .iter()
        .zip(done.iter())
        .map(|(r, d)| format!("{} {}", r.0, d.load(Ordering::Relaxed)))
        .collect();
    eprintln!(
        "{secs} s of mixed load, requests per route: {}",
        counts.join(", ")
    );
    for (r, d) in routes.iter().zip(done.iter()) {
        assert!(d.load(Ordering::Relaxed) > 0, "{} made no progress", r.0);
    }
    // Afterwards the collections are consistent: count = scroll.
    rt.block_on(async {
        for n in names {
            let (_, c) = call(
                &app,
                Method::POST,
                &format!("/collections/{n}/points/count"),
                Some(json!({})),
            )
            .await;
            let (_, s) = call(
                &app,
                Method::POST,
                &format!("/collections/{n}/points/scroll"),
                Some(json!({"limit": 10000})),
            )
            .await;
            assert_eq!(
                c["count"].as_u64().unwrap() as usize,
                s["points"].as_array().unwrap().len()
            );
        }
    });
    drop(app);
    state.storage.close();
}

// ------------------------------------------------- create/delete of one name

/// 8 threads alternate create and delete of one name (~320 calls): every
/// answer is success, `AlreadyExists` or `NotFound`; what the process
/// holds is what is on disk after a reopen; nothing is left behind, and a
/// recreated collection starts empty.
#[test]
fn concurrent_create_and_delete_of_one_name_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(dir.path()).unwrap());
    let mut threads = Vec::new();
    for t in 0..8u64 {
        let storage = storage.clone();
        threads.push(std::thread::spawn(move || {
            let mut created = 0;
            for i in 0..40u64 {
                if (i + t) % 2 == 0 {
                    match storage.create(config("race", 4, 1000)) {
                        Ok(c) => {
                            created += 1;
                            // A fresh collection holds nothing of an
                            // earlier one of the same name.
                            let before = c.count(None).unwrap();
                            assert!(before <= 1, "recreated collection has {before} points");
                            let _ = c.upsert(vec![pt(t, vec![1.0, 0.0, 0.0, 0.0], json!({}))]);
                        }
                        Err(CollectionError::AlreadyExists(_)) => {}
                        Err(e) => panic!("create: {e}"),
                    }
                } else {
                    match storage.delete("race") {
                        Ok(()) | Err(CollectionError::NotFound(_)) => {}
                        Err(e) => panic!("delete: {e}"),
                    }
                }
            }
            created
        }));
    }
    let created: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(created > 0);
    let exists = storage.get("race").is_ok();
    storage.close();
    drop(storage);
    assert!(
        leftovers(dir.path()).is_empty(),
        "left behind: {:?}",
        leftovers(dir.path())
    );
    let reopened = Storage::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get("race").is_ok(),
        exists,
        "disk agrees with memory"
    );
    let on_disk: Vec<String> = std::fs::read_dir(dir.path().join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(on_disk.len(), usize::from(exists), "{on_disk:?}");
    // The HTTP routes answer the same way.
    drop(reopened);
    let (app, st) = app_on(dir.path());
    rt().block_on(async {
        let (s, _) = call(&app, Method::DELETE, "/collections/race", None).await;
        assert_eq!(
            s,
            if exists {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        );
        let (s, b) = call(&app, Method::DELETE, "/collections/race", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "race", "dimension": 4})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "race", "dimension": 4})),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
    });
    st.storage.close();
}

/// The child of the create/delete kill test: random creates, upserts and
/// deletes of four names, each reported before (`@@B`) and after (`@@A`).
#[test]
fn admin_crash_child() {
    let Ok(dir) = std::env::var("ADMIN_CRASH_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("ADMIN_CRASH_SEED").unwrap().parse().unwrap();
    let storage = Storage::open(Path::new(&dir)).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let out = std::io::stdout();
    loop {
        let name = format!("n{}", rng.gen_range(0..4));
        let op = match rng.gen_range(0..10) {
            0..=2 => json!({"t": "create", "name": name}),
            3..=4 => json!({"t": "delete", "name": name}),
            _ => json!({"t": "upsert", "name": name, "id": rng.gen_range(0..50u64)}),
        };
        {
            let mut o = out.lock();
            writeln!(o, "@@B {op}").unwrap();
            o.flush().unwrap();
        }
        let acked = match op["t"].as_str().unwrap() {
            "create" => match storage.create(config(&name, 4, 8)) {
                Ok(_) => true,
                Err(CollectionError::AlreadyExists(_)) => false,
                Err(e) => panic!("create: {e}"),
            },
            "delete" => match storage.delete(&name) {
                Ok(()) => true,
                Err(CollectionError::NotFound(_)) => false,
                Err(e) => panic!("delete: {e}"),
            },
            _ => match storage.get(&name) {
                Ok(c) => {
                    let id = op["id"].as_u64().unwrap();
                    c.upsert(vec![pt(id, vec![id as f32, 1.0, 0.0, 0.0], json!({}))])
                        .unwrap();
                    true
                }
                Err(CollectionError::NotFound(_)) => false,
                Err(e) => panic!("get: {e}"),
            },
        };
        let mut o = out.lock();
        writeln!(o, "{}", if acked { "@@A" } else { "@@X" }).unwrap();
        o.flush().unwrap();
    }
}

type AdminModel = BTreeMap<String, BTreeSet<u64>>;

fn apply_admin(m: &mut AdminModel, op: &Value) {
    let name = op["name"].as_str().unwrap().to_string();
    match op["t"].as_str().unwrap() {
        "create" => {
            m.insert(name, BTreeSet::new());
        }
        "delete" => {
            m.remove(&name);
        }
        _ => {
            m.get_mut(&name).unwrap().insert(op["id"].as_u64().unwrap());
        }
    }
}

fn read_admin(storage: &Storage) -> AdminModel {
    let mut m = AdminModel::new();
    for c in storage.list() {
        let ids: Vec<PointId> = (0..50).map(PointId::Num).collect();
        let got = c
            .get(&ids)
            .unwrap()
            .into_iter()
            .map(|p| match p.id {
                PointId::Num(n) => n,
                _ => panic!(),
            })
            .collect();
        m.insert(c.name().to_string(), got);
    }
    m
}

/// SIGKILL at random moments of a create/upsert/delete loop over four
/// names (`CRASH_CYCLES`, default 20): after each restart every collection
/// is whole or absent, holds exactly its acknowledged points, and no
/// temporary or trash directory is left.
#[test]
fn create_and_delete_survive_sigkill() {
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut model = AdminModel::new();
    let mut rng = StdRng::seed_from_u64(7);
    let mut acked = 0usize;
    for cycle in 0..cycles {
        let after_ms = rng.gen_range(150..600);
        let (pending, n) = crate::storage::run_until_killed(
            "faults::admin_crash_child",
            &[
                ("ADMIN_CRASH_DIR", dir.path().display().to_string()),
                ("ADMIN_CRASH_SEED", (1000 + cycle).to_string()),
            ],
            Duration::from_millis(after_ms),
            |op: &Value| apply_admin(&mut model, op),
        );
        acked += n;
        let storage = Storage::open(dir.path()).expect("reopens after SIGKILL");
        assert!(storage.damaged().is_empty(), "{:?}", storage.damaged());
        assert!(
            leftovers(dir.path()).is_empty(),
            "cycle {cycle}: {:?}",
            leftovers(dir.path())
        );
        let got = read_admin(&storage);
        let mut after = model.clone();
        if let Some(p) = &pending {
            let applicable = match p["t"].as_str().unwrap() {
                "upsert" => after.contains_key(p["name"].as_str().unwrap()),
                _ => true,
            };
            if applicable {
                apply_admin(&mut after, p);
            }
        }
        if got == after && pending.is_some() {
            model = after;
        } else {
            assert_eq!(
                got, model,
                "cycle {cycle}: collections differ (pending: {pending:?})"
            );
        }
        storage.close();
    }
    eprintln!("{cycles} SIGKILL cycles over create/delete, {acked} acknowledged ops");
    assert!(acked > cycles as usize);
}

// ------------------------------------------------------------ damaged WAL

fn newest_wal(data_dir: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(data_dir.join("collections").join(name).join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap()
}

/// Byte offsets where each WAL record starts (records are `len u32, crc
/// u32, op u64, body`).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 16 <= bytes.len() {
        out.push(p);
        p += 16 + u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
    }
    out
}

/// One flipped byte inside an old record of the newest WAL file (in its
/// body, its checksum, its op number or its length) is damage, not a torn
/// tail: the collection refuses to open with an error naming the file and
/// the byte offset, the file is left untouched, and the other collections
/// keep serving. Restoring the byte brings back every point.
#[test]
fn a_damaged_wal_record_followed_by_valid_ones_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        for name in ["good", "bad"] {
            let c = s.create(config(name, 4, 100_000)).unwrap();
            for i in 0..1200u64 {
                c.upsert(vec![pt(i, vec![i as f32, 1.0, 2.0, 3.0], json!({"i": i}))])
                    .unwrap();
            }
        }
        s.close();
    }
    let wal = newest_wal(dir.path(), "bad");
    let original = std::fs::read(&wal).unwrap();
    let starts = record_starts(&original);
    assert_eq!(starts.len(), 1200);
    let rec = starts[3];
    // (what is hit, offset of the flipped byte)
    let cases = [
        ("body", rec + 20),
        ("checksum", rec + 5),
        ("op number", rec + 9),
        ("length", rec + 1),
        ("length, high byte", rec + 3),
    ];
    for (what, at) in cases {
        let mut bad = original.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&wal, &bad).unwrap();
        let s = Storage::open(dir.path()).expect("the service opens");
        assert_eq!(s.get("good").unwrap().count(None).unwrap(), 1200, "{what}");
        let err = match s.get("bad") {
            Err(e @ CollectionError::Damaged { .. }) => e.to_string(),
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(_) => panic!("{what}: a damaged WAL was opened"),
        };
        let file = wal.file_name().unwrap().to_string_lossy().to_string();
        assert!(err.contains(&file), "{what}: {err}");
        assert!(err.contains(&format!("byte {rec}")), "{what}: {err}");
        assert!(
            !err.contains(&dir.path().display().to_string()),
            "{what}: no absolute path: {err}"
        );
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            bad,
            "{what}: the file was not cut"
        );
        assert_eq!(s.damaged().len(), 1);
        drop(s);
    }
    // Through HTTP: 503 collection_damaged for it, 200 for the other.
    let mut bad = original.clone();
    bad[rec + 20] ^= 0x5a;
    std::fs::write(&wal, &bad).unwrap();
    {
        let (app, st) = app_on(dir.path());
        rt().block_on(async {
            let (s, b) = call(&app, Method::GET, "/collections/bad", None).await;
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
            assert_eq!(b["error"]["code"], "collection_damaged", "{b}");
            let (s, b) = call(
                &app,
                Method::POST,
                "/collections/bad/points/count",
                Some(json!({})),
            )
            .await;
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
            let (s, b) = call(
                &app,
                Method::POST,
                "/collections/good/points/count",
                Some(json!({})),
            )
            .await;
            assert_eq!((s, b["count"].as_u64()), (StatusCode::OK, Some(1200)));
            let (s, _) = call(
                &app,
                Method::POST,
                "/collections",
                Some(json!({"name": "bad", "dimension": 4})),
            )
            .await;
            assert_eq!(
                s,
                StatusCode::CONFLICT,
                "a damaged collection's name is taken"
            );
        });
        st.storage.close();
    }
    // Repaired by hand: every acknowledged point is there.
    std::fs::write(&wal, &original).unwrap();
    let s = Storage::open(dir.path()).unwrap();
    assert_eq!(s.get("bad").unwrap().count(None).unwrap(), 1200);
    assert!(s.damaged().is_empty());
    s.close();
    drop(s);
    // A torn tail (half of the last record) is still cut, losing only it.
    let last = *starts.last().unwrap();
    std::fs::write(&wal, &original[..last + 10]).unwrap();
    let s = Storage::open(dir.path()).unwrap();
    assert_eq!(s.get("bad").unwrap().count(None).unwrap(), 1199);
    assert_eq!(std::fs::metadata(&wal).unwrap().len() as usize, last);
    // A damaged collection can be deleted.
    drop(s);
    let mut bad = std::fs::read(&wal).unwrap();
    bad[rec + 20] ^= 0x5a;
    std::fs::write(&wal, &bad).unwrap();
    let s = Storage::open(dir.path()).unwrap();
    s.delete("bad").unwrap();
    assert!(matches!(s.get("bad"), Err(CollectionError::NotFound(_))));
    assert!(s.damaged().is_empty());
}

// ------------------------------------------------------ space comes back

/// Every file under `dir` with its size (for failure messages).
fn files_in(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_in(&e.path()));
        } else {
            out.push((e.path().display().to_string(), e.metadata().unwrap().len()));
        }
    }
    out
}

/// Deleting points in a running collection gives memory and disk back
/// without a restart: segments past `vacuum.deleted_ratio` are rewritten,
/// fully deleted ones dropped, an emptied appendable segment replaced.
#[test]
fn deletes_give_space_back_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let mut cfg = config("space", 16, 500);
    cfg.vacuum.max_segments = 100;
    let c = s.create(cfg).unwrap();
    let n = 4000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        c.upsert(
            chunk
                .iter()
                .map(|&i| {
                    pt(
                        i,
                        (0..16).map(|k| ((i * 31 + k) % 97) as f32).collect(),
                        json!({"i": i}),
                    )
                })
                .collect(),
        )
        .unwrap();
    }
    c.wait_idle();
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !ok() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("segments sealed", &|| c.info().sealed_segments == 8);
    let full_disk = c.disk_bytes();
    // Half of one segment's points: that segment is rewritten.
    c.delete((0..300).map(PointId::Num).collect()).unwrap();
    wait_for("the half-deleted segment rewritten", &|| {
        c.disk_bytes() < full_disk
    });
    assert_eq!(c.count(None).unwrap(), (n - 300) as usize);
    // Everything: every sealed segment dropped.
    for chunk in (300..n).collect::<Vec<_>>().chunks(250) {
        c.delete(chunk.iter().map(|&i| PointId::Num(i)).collect())
            .unwrap();
    }
    wait_for("every sealed segment dropped", &|| {
        c.info().sealed_segments == 0
    });
    // Directories go once the manifest no longer lists them.
    let segs_dir = dir.path().join("collections/space/segments");
    wait_for("segment files removed", &|| {
        std::fs::read_dir(&segs_dir).unwrap().count() == 0 && c.disk_bytes() < full_disk / 4
    });
    let empty_disk = c.disk_bytes();
    assert!(
        empty_disk < full_disk / 4,
        "disk {empty_disk} of {full_disk} bytes: {:?}",
        files_in(&dir.path().join("collections/space"))
    );
    assert_eq!(c.count(None).unwrap(), 0);
    // The appendable segment, emptied by deletes, is replaced.
    for i in 0..100u64 {
        c.upsert(vec![pt(10_000 + i, vec![1.0; 16], json!({}))])
            .unwrap();
    }
    assert_eq!(c.info().appendable_points, 100);
    c.delete((0..100).map(|i| PointId::Num(10_000 + i)).collect())
        .unwrap();
    assert_eq!(c.info().appendable_points, 0);
    // And the result survives a reopen.
    drop(c);
    s.close();
    drop(s);
    let s = Storage::open(dir.path()).unwrap();
    let c = s.get("space").unwrap();
    assert_eq!(c.count(None).unwrap(), 0);
    c.upsert(vec![pt(1, vec![1.0; 16], json!({}))]).unwrap();
    assert_eq!(c.count(None).unwrap(), 1);
}

// --------------------------------------------------------------- full disk

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| SmallFs(at.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// On a file system that fills up: the failing write and every write after
/// it answer 503 `storage_unavailable` with no path in the message,
/// creating a collection answers the same, reads keep working, and after
/// space is freed and the service restarted every acknowledged point is
/// there. A real full disk (a 3 MiB tmpfs), so the WAL's write fails for
/// real and poisons it.
#[test]
fn a_full_disk_answers_503_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("mnt"), "3m") else {
        // Mounting needs CAP_SYS_ADMIN; say so loudly rather than pass.
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    };
    let data = fs.0.join("data");
    // Space to free later.
    std::fs::write(fs.0.join("ballast"), vec![7u8; 512 * 1024]).unwrap();
    let (app, st) = app_on(&data);
    let mut acked: Vec<u64> = Vec::new();
    rt().block_on(async {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "full", "dimension": 4, "flush_threshold": {"vectors": 1000000}})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let big = "x".repeat(20_000);
        let mut failed = None;
        for i in 0..1000u64 {
            let (s, b) = call(
                &app,
                Method::PUT,
                "/collections/full/points",
                Some(json!({"points": [
                    {"id": i, "vector": [i as f32, 1.0, 0.0, 0.0], "metadata": {"pad": big, "i": i}}
                ]})),
            )
            .await;
            if s == StatusCode::OK {
                acked.push(i);
            } else {
                failed = Some((s, b));
                break;
            }
        }
        let (s, b) = failed.expect("the disk filled up");
        let check = |s: StatusCode, b: &Value, what: &str| {
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{what}: {b}");
            assert_eq!(b["error"]["code"], "storage_unavailable", "{what}: {b}");
            let m = b["error"]["message"].as_str().unwrap();
            assert!(!m.contains('/'), "{what}: a path in the message: {m}");
        };
        check(s, &b, "the first failing write");
        let (s, b) = call(
            &app,
            Method::PUT,
            "/collections/full/points",
            Some(json!({"points": [
                {"id": 5000, "vector": [1.0, 1.0, 0.0, 0.0]}
            ]})),
        )
        .await;
        check(s, &b, "a small write after it");
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/full/points/delete",
            Some(json!({"ids": [0]})),
        )
        .await;
        check(s, &b, "a delete after it");
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections",
            Some(json!({"name": "other", "dimension": 4})),
        )
        .await;
        check(s, &b, "creating a collection");
        // Reads keep working.
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/full/points/count",
            Some(json!({})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["count"].as_u64().unwrap() as usize, acked.len());
        let (s, _) = call(&app, Method::GET, "/collections/full/points/0", None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/full/search",
            Some(json!({"vector": [1.0, 1.0, 0.0, 0.0], "top_k": 3})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, _) = call(&app, Method::GET, "/collections", None).await;
        assert_eq!(s, StatusCode::OK);
    });
    assert!(acked.len() > 10, "some writes were acknowledged first");
    assert!(
        !data.join("collections/other").exists(),
        "no half-made collection"
    );
    st.storage.close();
    drop(app);
    drop(st);
    // Free space, restart: everything acknowledged is there, writes work.
    std::fs::remove_file(fs.0.join("ballast")).unwrap();
    let (app, st) = app_on(&data);
    rt().block_on(async {
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/full/points/count",
            Some(json!({})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["count"].as_u64().unwrap() as usize, acked.len());
        for &i in acked.iter().step_by(7) {
            let (s, b) = call(
                &app,
                Method::GET,
                &format!("/collections/full/points/{i}"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{i}: {b}");
            assert_eq!(b["metadata"]["i"], i);
        }
        let (s, b) = call(
            &app,
            Method::POST,
            "/collections/full/points/delete",
            Some(json!({"ids": [0]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    });
    st.storage.close();
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
}
