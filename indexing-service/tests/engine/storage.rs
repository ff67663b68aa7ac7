//! Storage engine tests: crash safety under SIGKILL, WAL tail repair, a
//! model-based test against a HashMap, exact search against brute force,
//! and bad input. Seeds are printed; set `STORAGE_SEED` to replay one.

use indexing_service::collection::{
    Collection, CollectionConfig, CollectionError, FlushThreshold, NewPoint, ReadParts, Storage,
};
use indexing_service::index::payload_index::PayloadFieldType;
use indexing_service::index::segment_index::SearchParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shared::config::FsyncMode;
use shared::wire::indexing::{Filter, Metric, PointId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn seed(default: u64) -> u64 {
    let s = std::env::var("STORAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("seed = {s}");
    s
}

/// A collection config with a flush threshold of `flush` vectors.
pub fn config(name: &str, dim: usize, metric: Metric, flush: usize) -> CollectionConfig {
    let mut c = CollectionConfig::new(name, dim, metric);
    c.flush_threshold = FlushThreshold {
        vectors: flush,
        bytes: 1 << 30,
    };
    c
}

/// A point with an integer id and a payload.
pub fn pt(id: u64, v: Vec<f32>, payload: Value) -> NewPoint {
    NewPoint {
        id: Some(PointId::Num(id)),
        vector: v,
        payload: Some(payload),
        content: None,
    }
}

// ---------------------------------------------------------------- crash test

/// One op of the crash child, as reported to the parent.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t")]
enum CrashOp {
    Upsert { pts: Vec<(u64, u64, u64)> },
    Payload { id: u64, seq: u64 },
    Delete { ids: Vec<u64> },
    DeleteTag { tag: u64 },
}

type Model = BTreeMap<u64, (u64, u64)>; // id -> (seq, tag)

fn apply_model(m: &mut Model, op: &CrashOp) {
    match op {
        CrashOp::Upsert { pts } => {
            for &(id, seq, tag) in pts {
                m.insert(id, (seq, tag));
            }
        }
        CrashOp::Payload { id, seq } => {
            if let Some(e) = m.get_mut(id) {
                e.0 = *seq;
            }
        }
        CrashOp::Delete { ids } => {
            for id in ids {
                m.remove(id);
            }
        }
        CrashOp::DeleteTag { tag } => m.retain(|_, (_, t)| t != tag),
    }
}

const CRASH_IDS: u64 = 300;

fn crash_vec(seq: u64, id: u64) -> Vec<f32> {
    vec![
        seq as f32,
        id as f32,
        1.0,
        (seq % 7) as f32,
        0.5,
        -1.0,
        2.0,
        3.0,
    ]
}

fn read_state(c: &Collection) -> Model {
    let ids: Vec<PointId> = (0..CRASH_IDS).map(PointId::Num).collect();
    let mut m = Model::new();
    for p in c.get(&ids).unwrap() {
        let PointId::Num(id) = p.id else {
            panic!("string id")
        };
        let pl = p.payload.expect("payload");
        let seq = pl["v"].as_u64().unwrap();
        let tag = pl["tag"].as_u64().unwrap();
        // Vectors are never half-written: the first component carries the
        // seq of the upsert that wrote the vector (payload updates keep it).
        assert_eq!(p.vector[1], id as f32);
        assert_eq!(p.vector[2], 1.0);
        m.insert(id, (seq, tag));
    }
    assert_eq!(c.count(None).unwrap(), m.len(), "count agrees with get");
    m
}

/// The child: writes until killed, printing `@@B <op>` before each op and
/// `@@A` once it is acknowledged (`@@X` if it was refused).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("CRASH_DIR") else {
        return;
    };
    let cycle: u64 = std::env::var("CRASH_CYCLE").unwrap().parse().unwrap();
    let storage = Storage::open(Path::new(&dir)).unwrap();
    let c = match storage.get("c") {
        Ok(c) => c,
        Err(_) => {
            let mut cfg = config("c", 8, Metric::Dot, 40);
            cfg.vacuum.max_segments = 3;
            let c = storage.create(cfg).unwrap();
            c.create_field_index("tag", PayloadFieldType::Integer)
                .unwrap();
            c
        }
    };
    let mut rng = StdRng::seed_from_u64(cycle);
    let mut seq = cycle * 1_000_000;
    let out = std::io::stdout();
    loop {
        seq += 1;
        let op = match rng.gen_range(0..20) {
            0..=11 => CrashOp::Upsert {
                pts: (0..rng.gen_range(1..6))
                    .map(|k| {
                        (
                            rng.gen_range(0..CRASH_IDS),
                            seq * 10 + k,
                            rng.gen_range(0..3),
                        )
                    })
                    .collect(),
            },
            12..=14 => CrashOp::Payload {
                id: rng.gen_range(0..CRASH_IDS),
                seq: seq * 10,
            },
            15..=18 => CrashOp::Delete {
                ids: (0..rng.gen_range(1..4))
                    .map(|_| rng.gen_range(0..CRASH_IDS))
                    .collect(),
            },
            _ => CrashOp::DeleteTag {
                tag: rng.gen_range(0..3),
            },
        };
        {
            let mut o = out.lock();
            writeln!(o, "@@B {}", serde_json::to_string(&op).unwrap()).unwrap();
            o.flush().unwrap();
        }
        let res = match &op {
            CrashOp::Upsert { pts } => c
                .upsert(
                    pts.iter()
                        .map(|&(id, s, tag)| NewPoint {
                            content: Some(format!("doc{id} version{s}")),
                            ..pt(id, crash_vec(s, id), json!({"v": s, "tag": tag}))
                        })
                        .collect(),
                )
                .map(|_| ()),
            CrashOp::Payload { id, seq } => c
                .set_payload(&[PointId::Num(*id)], json!({"v": seq}), true)
                .map(|_| ()),
            CrashOp::Delete { ids } => c
                .delete(ids.iter().map(|&i| PointId::Num(i)).collect())
                .map(|_| ()),
            CrashOp::DeleteTag { tag } => {
                let f: Filter =
                    serde_json::from_value(json!({"must": [{"key": "tag", "match": tag}]}))
                        .unwrap();
                c.delete_by_filter(&f).map(|_| ())
            }
        };
        let mut o = out.lock();
        match res {
            Ok(()) => writeln!(o, "@@A").unwrap(),
            Err(CollectionError::PointNotFound(_)) => writeln!(o, "@@X").unwrap(),
            Err(e) => panic!("write failed: {e}"),
        }
        o.flush().unwrap();
    }
}

/// Runs the test `child` of this binary with `envs` set, SIGKILLs it after
/// `after`, and replays what it printed: each op it announced (`@@B <op
/// as JSON>`) and then acknowledged (`@@A`) goes through `apply`; `@@X`
/// (refused) drops it. Returns the op in flight at the kill, if any, and
/// how many ops were acknowledged. libtest may print on the same line
/// before the child's first marker, so markers are found by their `@@`.
pub fn run_until_killed<O: serde::de::DeserializeOwned>(
    child: &str,
    envs: &[(&str, String)],
    after: Duration,
    mut apply: impl FnMut(&O),
) -> (Option<O>, usize) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", child, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut proc = cmd.spawn().unwrap();
    let stdout = proc.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    let mut pending: Option<O> = None;
    let mut acked = 0;
    for l in reader
        .join()
        .unwrap()
        .iter()
        .filter_map(|l| l.find("@@").map(|i| &l[i + 2..]))
    {
        if let Some(j) = l.strip_prefix("B ") {
            pending = Some(serde_json::from_str(j).unwrap());
        } else if l == "A" {
            apply(pending.as_ref().expect("an acknowledgement follows its op"));
            pending = None;
            acked += 1;
        } else if l == "X" {
            pending = None;
        }
    }
    (pending, acked)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let base = seed(42);
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let mut rng = StdRng::seed_from_u64(base);
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let after_ms = rng.gen_range(150..600);
        let (pending, acked) = run_until_killed(
            "storage::crash_child",
            &[
                ("CRASH_DIR", dir.path().display().to_string()),
                ("CRASH_CYCLE", (base * 1000 + cycle + 1).to_string()),
            ],
            Duration::from_millis(after_ms),
            |op: &CrashOp| apply_model(&mut model, op),
        );
        total_acked += acked;
        // Reopen: every acknowledged op visible, the in-flight one either
        // wholly applied or not at all.
        let storage = Storage::open(dir.path()).expect("reopens after SIGKILL");
        let c = storage.get("c").unwrap();
        let got = read_state(&c);
        let mut after = model.clone();
        if let Some(p) = &pending {
            apply_model(&mut after, p);
        }
        if got == after && pending.is_some() {
            model = after;
        } else {
            assert_eq!(
                got, model,
                "cycle {cycle}: state differs from acknowledged ops (pending: {pending:?})"
            );
        }
        // The text index (sealed segments' text.bin, the appendable
        // segment rebuilt from the log) finds each live point by its
        // unique word, and no deleted one.
        for id in 0..CRASH_IDS {
            let hits = c
                .search_text(&format!("doc{id}"), 3, None, None, ReadParts::PAYLOAD)
                .unwrap();
            let got: Vec<PointId> = hits.iter().map(|h| h.point.id.clone()).collect();
            let want: Vec<PointId> = model
                .contains_key(&id)
                .then_some(PointId::Num(id))
                .into_iter()
                .collect();
            assert_eq!(got, want, "cycle {cycle}: keyword search for doc{id}");
        }
        // Filtered search through the payload index of `tag` (sealed
        // segments) finds exactly the model's points of each tag.
        for tag in 0..3u64 {
            let f: Filter =
                serde_json::from_value(json!({"must": [{"key": "tag", "match": tag}]})).unwrap();
            let got: BTreeSet<u64> = c
                .search(&crash_vec(1, 1), 300, Some(&f))
                .unwrap()
                .iter()
                .map(|h| match h.point.id {
                    PointId::Num(n) => n,
                    _ => unreachable!(),
                })
                .collect();
            let want: BTreeSet<u64> = model
                .iter()
                .filter(|(_, (_, t))| *t == tag)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(got, want, "cycle {cycle}: points of tag {tag}");
        }
        // Search still works and skips deleted points.
        let hits = c.search(&crash_vec(1, 1), 5, None).unwrap();
        assert!(hits.len() <= model.len().min(5));
        for h in hits {
            let PointId::Num(id) = h.point.id else {
                panic!()
            };
            assert!(model.contains_key(&id));
        }
        drop(c);
        drop(storage);
    }
    eprintln!(
        "{cycles} SIGKILL cycles, {total_acked} acknowledged ops, {} points at the end",
        model.len()
    );
    assert!(total_acked > cycles as usize, "the child made progress");
}

#[test]
fn torn_and_corrupt_wal_tails_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        let c = s.create(config("w", 4, Metric::Dot, 1000)).unwrap();
        for i in 0..10u64 {
            c.upsert(vec![pt(i, vec![i as f32, 1.0, 2.0, 3.0], json!({"i": i}))])
                .unwrap();
        }
    }
    let wal_dir = dir.path().join("collections/w/wal");
    let file = std::fs::read_dir(&wal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let full = std::fs::read(&file).unwrap();
    let rec = full.len() / 10;
    // 1. A torn tail: half of the last record.
    std::fs::write(&file, &full[..full.len() - rec / 2]).unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        let c = s.get("w").unwrap();
        assert_eq!(
            c.count(None).unwrap(),
            9,
            "torn last record dropped, the rest kept"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().len() as usize,
            full.len() - rec,
            "file cut at the record boundary"
        );
        // And it accepts writes after the repair.
        c.upsert(vec![pt(100, vec![1.0; 4], json!({}))]).unwrap();
    }
    {
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get("w").unwrap().count(None).unwrap(), 10);
    }
    // 2. A flipped byte inside the last record: CRC mismatch, never misread.
    let full = std::fs::read(&file).unwrap();
    let mut bad = full.clone();
    let n = bad.len();
    bad[n - 3] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        let c = s.get("w").unwrap();
        assert_eq!(c.count(None).unwrap(), 9);
        assert!(c.get(&[PointId::Num(100)]).unwrap().is_empty());
    }
    // 3. Garbage appended (a huge bogus length).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]).unwrap();
    drop(f);
    let s = Storage::open(dir.path()).unwrap();
    assert_eq!(s.get("w").unwrap().count(None).unwrap(), 9);
}

// ------------------------------------------------------- model-based test

#[test]
fn random_operations_match_a_hashmap_model() {
    let base = seed(7);
    for round in 0..4u64 {
        let s = base + round;
        let mut rng = StdRng::seed_from_u64(s);
        let dir = tempfile::tempdir().unwrap();
        let mut storage = Some(Storage::open(dir.path()).unwrap());
        let mut cfg = config("m", 6, Metric::Euclidean, rng.gen_range(5..40));
        cfg.vacuum.max_segments = rng.gen_range(2..5);
        // Rounds 1 and 3 cap segments at 1 KiB of vectors (42 points of 6
        // dimensions): flushes seal at the cap, merges stay under it.
        let capped = round % 2 == 1;
        if capped {
            cfg.max_segment_size = 1;
            cfg.flush_threshold.vectors = 1000;
        }
        let cap = cfg.max_segment_points();
        let made = storage.as_ref().unwrap().create(cfg).unwrap();
        // Half the rounds index the field filters use (answers must not
        // change).
        let indexed = round % 2 == 0;
        if indexed {
            made.create_field_index("g", PayloadFieldType::Integer)
                .unwrap();
        }
        drop(made);
        // id -> (vector, payload, content)
        let mut model: HashMap<u64, (Vec<f32>, Value, String)> = HashMap::new();
        for step in 0..400 {
            let st = storage.as_ref().unwrap();
            let c = st.get("m").unwrap();
            match rng.gen_range(0..100) {
                0..=49 => {
                    let pts: Vec<(u64, Vec<f32>, Value, String)> = (0..rng.gen_range(1..8))
                        .map(|_| {
                            let id = rng.gen_range(0..120);
                            let v: Vec<f32> = (0..6).map(|_| rng.gen_range(-1.0..1.0)).collect();
                            let title = words(&mut rng);
                            let content = words(&mut rng);
                            (
                                id,
                                v,
                                json!({"g": rng.gen_range(0..4), "step": step, "title": title}),
                                content,
                            )
                        })
                        .collect();
                    c.upsert(
                        pts.iter()
                            .map(|(i, v, p, t)| NewPoint {
                                content: Some(t.clone()),
                                ..pt(*i, v.clone(), p.clone())
                            })
                            .collect(),
                    )
                    .unwrap();
                    for (i, v, p, t) in pts {
                        model.insert(i, (v, p, t));
                    }
                }
                50..=64 => {
                    let ids: Vec<u64> = (0..rng.gen_range(1..5))
                        .map(|_| rng.gen_range(0..120))
                        .collect();
                    let n = c
                        .delete(ids.iter().map(|&i| PointId::Num(i)).collect())
                        .unwrap();
                    let mut want = 0;
                    let mut uniq = ids.clone();
                    uniq.sort();
                    uniq.dedup();
                    for i in uniq {
                        want += model.remove(&i).is_some() as usize;
                    }
                    assert_eq!(n, want);
                }
                65..=76 => {
                    let id = rng.gen_range(0..120);
                    let r = c.set_payload(&[PointId::Num(id)], json!({"extra": step}), true);
                    match model.get_mut(&id) {
                        Some((_, p, _)) => {
                            r.unwrap();
                            p["extra"] = json!(step);
                        }
                        None => assert!(matches!(r, Err(CollectionError::PointNotFound(_)))),
                    }
                }
                77..=80 => {
                    let g = rng.gen_range(0..4);
                    let f: Filter =
                        serde_json::from_value(json!({"must": [{"key": "g", "match": g}]}))
                            .unwrap();
                    let n = c.delete_by_filter(&f).unwrap();
                    let before = model.len();
                    model.retain(|_, (_, p, _)| p["g"] != json!(g));
                    assert_eq!(n, before - model.len());
                }
                81..=88 => c.flush().unwrap(),
                89..=93 => c.vacuum().unwrap(),
                _ => {
                    drop(c);
                    storage.take();
                    storage = Some(Storage::open(dir.path()).unwrap());
                }
            }
            let c = storage.as_ref().unwrap().get("m").unwrap();
            assert_eq!(
                c.count(None).unwrap(),
                model.len(),
                "seed {s} step {step}: count"
            );
            if step % 25 == 0 || step == 399 {
                c.wait_idle();
                if capped {
                    // A flush seals at the cap (plus the rest of the
                    // request that reached it: at most 7 points here); a
                    // merge never writes more than the cap.
                    for e in std::fs::read_dir(c.dir().join("segments")).unwrap() {
                        let meta = e.unwrap().path().join("meta.json");
                        let Ok(b) = std::fs::read(&meta) else {
                            continue;
                        };
                        let count = serde_json::from_slice::<Value>(&b).unwrap()["count"]
                            .as_u64()
                            .unwrap() as usize;
                        assert!(
                            count < cap + 7,
                            "seed {s} step {step}: a segment of {count} points, cap {cap}"
                        );
                    }
                }
                // Full comparison through scroll (id order, small pages).
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let (page, next) = c.scroll(None, 7, cursor.as_ref()).unwrap();
                    got.extend(page);
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
                let mut want: Vec<_> = model.iter().collect();
                want.sort_by_key(|(i, _)| **i);
                assert_eq!(got.len(), want.len(), "seed {s} step {step}: scroll length");
                for (g, (wid, (wv, wp, wt))) in got.iter().zip(want) {
                    assert_eq!(g.id, PointId::Num(*wid));
                    assert_eq!(&g.vector, wv);
                    assert_eq!(
                        &Value::Object(g.payload.clone().unwrap()),
                        wp,
                        "seed {s} step {step}"
                    );
                    assert_eq!(g.content.as_ref(), Some(wt));
                }
                // Filtered searches (payload indexes in half the rounds)
                // return exactly the model's matching points.
                for g in 0..4 {
                    let f: Filter =
                        serde_json::from_value(json!({"must": [{"key": "g", "match": g}]}))
                            .unwrap();
                    let want: BTreeSet<u64> = model
                        .iter()
                        .filter(|(_, (_, p, _))| p["g"] == json!(g))
                        .map(|(i, _)| *i)
                        .collect();
                    for exact in [true, false] {
                        let params = SearchParams {
                            exact,
                            ..Default::default()
                        };
                        let got: BTreeSet<u64> = c
                            .search_parts(&[0.1; 6], 200, Some(&f), params, ReadParts::PAYLOAD)
                            .unwrap()
                            .iter()
                            .map(|h| match h.point.id {
                                PointId::Num(n) => n,
                                _ => unreachable!(),
                            })
                            .collect();
                        assert_eq!(
                            got, want,
                            "seed {s} step {step}: g = {g} (indexed: {indexed}, exact: {exact})"
                        );
                    }
                }
                // Keyword search equals BM25 computed here over the model,
                // and full-text filters equal a scan of the model.
                for _ in 0..6 {
                    let q = words(&mut rng);
                    let want = brute_bm25(&model, &q, 10);
                    let got = c
                        .search_text(&q, 10, None, None, ReadParts::PAYLOAD)
                        .unwrap();
                    assert_eq!(got.len(), want.len(), "seed {s} step {step}: `{q}`");
                    let by_id: HashMap<u64, f64> =
                        brute_bm25(&model, &q, usize::MAX).into_iter().collect();
                    for (h, (_, ws)) in got.iter().zip(&want) {
                        let PointId::Num(id) = h.point.id else {
                            panic!()
                        };
                        let sc = f64::from(h.score);
                        assert!(
                            (sc - ws).abs() < 1e-4,
                            "seed {s} step {step}: `{q}`: {sc} vs {ws}"
                        );
                        assert!(
                            (sc - by_id[&id]).abs() < 1e-4,
                            "seed {s} step {step}: `{q}` id {id}"
                        );
                    }
                    let w = q.split(' ').next().unwrap();
                    let f: Filter = serde_json::from_value(
                        json!({"must": [{"key": "title", "match": {"text": w}}]}),
                    )
                    .unwrap();
                    let want = model
                        .values()
                        .filter(|(_, p, _)| p["title"].as_str().unwrap().split(' ').any(|x| x == w))
                        .count();
                    assert_eq!(
                        c.count(Some(&f)).unwrap(),
                        want,
                        "seed {s} step {step}: title has `{w}`"
                    );
                }
            }
        }
    }
}

/// Two to five words of a small vocabulary, space-separated.
fn words(rng: &mut StdRng) -> String {
    const VOCAB: &[&str] = &[
        "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa",
    ];
    let n = rng.gen_range(2..6);
    (0..n)
        .map(|_| VOCAB[rng.gen_range(0..VOCAB.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// BM25 (Lucene's form, k1 1.2, b 0.75) of `q` over the model's contents,
/// best first (ties by id), at most `k`.
fn brute_bm25(
    model: &HashMap<u64, (Vec<f32>, Value, String)>,
    q: &str,
    k: usize,
) -> Vec<(u64, f64)> {
    let docs: Vec<(u64, Vec<&str>)> = model
        .iter()
        .map(|(id, (_, _, t))| (*id, t.split(' ').collect()))
        .collect();
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|d| d.1.len()).sum::<usize>() as f64 / n;
    let mut out: Vec<(u64, f64)> = docs
        .iter()
        .map(|(id, d)| {
            let s: f64 = q
                .split(' ')
                .map(|t| {
                    let df = docs.iter().filter(|x| x.1.contains(&t)).count() as f64;
                    let tf = d.iter().filter(|x| **x == t).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    idf * tf / (tf + 1.2 * (1.0 - 0.75 + 0.75 * d.len() as f64 / avgdl))
                })
                .sum();
            (*id, s)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

// ------------------------------------------------------------ exact search

fn brute(
    points: &BTreeMap<u64, (Vec<f32>, u64)>,
    q: &[f32],
    k: usize,
    metric: Metric,
    pass: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let norm = |v: &[f32]| {
        let n: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        v.iter().map(|x| *x as f64 / n).collect::<Vec<f64>>()
    };
    let mut scored: Vec<(f64, u64)> = points
        .iter()
        .filter(|(_, (_, g))| pass(*g))
        .map(|(id, (v, _))| {
            let s = match metric {
                Metric::Dot => v.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum(),
                Metric::Cosine => norm(v).iter().zip(norm(q)).map(|(a, b)| a * b).sum(),
                Metric::Euclidean => -v
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>(),
            };
            (s, *id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn exact_search_equals_brute_force() {
    let s = seed(99);
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let mut rng = StdRng::seed_from_u64(s);
        let dir = tempfile::tempdir().unwrap();
        let dim = 24;
        let mut storage = Storage::open(dir.path()).unwrap();
        let c = storage.create(config("s", dim, metric, 400)).unwrap();
        let mut pts: BTreeMap<u64, (Vec<f32>, u64)> = BTreeMap::new();
        // Batches of 100 against a flush threshold of 400: several segments.
        for chunk in (0..1000u64).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<NewPoint> = chunk
                .iter()
                .map(|&i| {
                    let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    pts.insert(i, (v.clone(), i % 10));
                    pt(i, v, json!({"g": i % 10}))
                })
                .collect();
            c.upsert(batch).unwrap();
        }
        let queries: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let f3: Filter =
            serde_json::from_value(json!({"must": [{"key": "g", "match": 3}]})).unwrap();
        let check = |c: &Collection, pts: &BTreeMap<u64, (Vec<f32>, u64)>, stage: &str| {
            for q in &queries {
                let got: Vec<u64> = c
                    .search(q, 10, None)
                    .unwrap()
                    .iter()
                    .map(|h| match h.point.id {
                        PointId::Num(n) => n,
                        _ => panic!(),
                    })
                    .collect();
                assert_eq!(
                    got,
                    brute(pts, q, 10, metric, |_| true),
                    "{metric:?} {stage}"
                );
                let got: Vec<u64> = c
                    .search(q, 10, Some(&f3))
                    .unwrap()
                    .iter()
                    .map(|h| match h.point.id {
                        PointId::Num(n) => n,
                        _ => panic!(),
                    })
                    .collect();
                assert_eq!(
                    got,
                    brute(pts, q, 10, metric, |g| g == 3),
                    "{metric:?} {stage} filtered"
                );
            }
        };
        check(&c, &pts, "appendable + sealing");
        c.flush().unwrap();
        c.wait_idle();
        assert!(c.info().sealed_segments >= 2);
        check(&c, &pts, "sealed");
        let dels: Vec<u64> = (0..1000).filter(|i| i % 3 == 0).collect();
        c.delete(dels.iter().map(|&i| PointId::Num(i)).collect())
            .unwrap();
        for d in dels {
            pts.remove(&d);
        }
        check(&c, &pts, "after deletes");
        c.vacuum().unwrap();
        check(&c, &pts, "after vacuum");
        drop(c);
        drop(storage);
        storage = Storage::open(dir.path()).unwrap();
        let c = storage.get("s").unwrap();
        check(&c, &pts, "after reopen");
    }
}

// --------------------------------------------------------------- bad input

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let c = s.create(config("b", 3, Metric::Cosine, 100)).unwrap();
    c.upsert(vec![pt(1, vec![1.0, 0.0, 0.0], json!({"a": 1}))])
        .unwrap();
    let op_before = c.info().last_op;
    let cases: Vec<(Vec<NewPoint>, &str)> = vec![
        (vec![pt(2, vec![1.0, 2.0], json!({}))], "dimension"),
        (vec![pt(2, vec![1.0, f32::NAN, 0.0], json!({}))], "finite"),
        (
            vec![pt(2, vec![1.0, f32::INFINITY, 0.0], json!({}))],
            "finite",
        ),
        (vec![pt(2, vec![0.0, 0.0, 0.0], json!({}))], "zero vector"),
        (vec![pt(2, vec![1.0, 1.0, 0.0], json!([1, 2]))], "object"),
        (
            vec![pt(
                2,
                vec![1.0, 1.0, 0.0],
                json!({"big": "x".repeat(2 << 20)}),
            )],
            "limit",
        ),
        (
            vec![
                pt(3, vec![1.0, 1.0, 0.0], json!({})),
                pt(4, vec![1.0], json!({})),
            ],
            "dimension",
        ),
    ];
    for (pts, want) in cases {
        let e = c.upsert(pts).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    assert!(matches!(
        c.upsert(vec![pt(9, vec![1.0], json!({}))]),
        Err(CollectionError::DimensionMismatch { .. })
    ));
    assert_eq!(c.info().last_op, op_before, "nothing reached the WAL");
    assert_eq!(
        c.count(None).unwrap(),
        1,
        "nothing was applied (not even point 3 of the mixed batch)"
    );
    assert!(matches!(s.get("nope"), Err(CollectionError::NotFound(_))));
    assert!(matches!(
        s.create(config("b", 3, Metric::Dot, 10)),
        Err(CollectionError::AlreadyExists(_))
    ));
    for bad in ["", "../etc", "a/b", "x".repeat(65).as_str(), "sp ace"] {
        assert!(
            matches!(
                s.create(config(bad, 3, Metric::Dot, 10)),
                Err(CollectionError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    let bad_filter: Filter = serde_json::from_value(json!({"must": [{"key": "a"}]})).unwrap();
    assert!(matches!(
        c.search(&[1.0, 0.0, 0.0], 3, Some(&bad_filter)),
        Err(CollectionError::InvalidFilter(_))
    ));
    // Payload updates keep the vector, and generated ids are UUIDs.
    c.set_payload(&[PointId::Num(1)], json!({"b": 2}), true)
        .unwrap();
    let p = &c.get(&[PointId::Num(1)]).unwrap()[0];
    assert_eq!(p.vector, vec![1.0, 0.0, 0.0]);
    assert_eq!(
        Value::Object(p.payload.clone().unwrap()),
        json!({"a": 1, "b": 2})
    );
    let (_, ids) = c
        .upsert(vec![NewPoint {
            id: None,
            vector: vec![0.0, 1.0, 0.0],
            payload: None,
            content: Some("text".into()),
        }])
        .unwrap();
    match &ids[0] {
        PointId::Str(u) => assert_eq!(u.len(), 36),
        _ => panic!(),
    }
    assert_eq!(c.get(&ids).unwrap()[0].content.as_deref(), Some("text"));
}

#[test]
fn a_second_process_cannot_open_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Storage::open(dir.path()).unwrap();
    match Storage::open(dir.path()) {
        Err(e) => assert!(e.to_string().contains("locked"), "{e}"),
        Ok(_) => panic!("opened a locked data directory"),
    }
}

#[test]
fn fsync_modes_all_persist_on_clean_close() {
    for mode in [FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            let mut cfg = config("f", 2, Metric::Dot, 1000);
            cfg.fsync = mode;
            let c = s.create(cfg).unwrap();
            c.upsert(
                (0..50)
                    .map(|i| pt(i, vec![1.0, i as f32], json!({})))
                    .collect(),
            )
            .unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get("f").unwrap().count(None).unwrap(), 50, "{mode:?}");
    }
}
