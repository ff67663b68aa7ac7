//! Replicas on one data directory: a follower's view tracks the writer
//! (seals, vacuums, creates, deletes) and takes over; three processes of
//! the real binary with writes through each and a SIGKILL of the writer
//! in the middle of a write loop; a follower alone writes nothing into the
//! data directory.
//!
//! Every wait is bounded (socket timeouts, deadlines), so a stall fails
//! the test instead of hanging it.

use crate::storage::{config, pt};
use indexing_service::collection::{CollectionError, Storage, StoredPoint};
use indexing_service::storage::fsutil::DirLock;
use serde_json::{json, Value};
use shared::wire::indexing::Metric;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------
// In process: two `Storage`s on one directory (flock is per open file, so
// the second one is a follower even in the same process).
// ---------------------------------------------------------------------

fn all_points(s: &Storage, name: &str) -> Vec<StoredPoint> {
    s.get(name).unwrap().scroll(None, 100_000, None).unwrap().0
}

/// Follows until `f` shows what `w` has, at most 10 s.
fn converge(w: &Storage, f: &Storage, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        f.follow();
        let want = w.get(name).unwrap().applied_op();
        if let Ok(c) = f.get(name) {
            if c.applied_op() >= want && all_points(w, name) == all_points(f, name) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "follower did not converge on `{name}` (writer op {want})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_follower_tracks_the_writer_and_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let w = Storage::open_replica(dir.path()).unwrap();
    assert!(w.is_writer());
    let f = Storage::open_replica(dir.path()).unwrap();
    assert!(!f.is_writer(), "the second opener follows");
    let c = w.create(config("a", 4, Metric::Dot, 20)).unwrap();
    f.follow();
    assert_eq!(f.get("a").unwrap().count(None).unwrap(), 0);
    // Enough points for several seals (threshold 20), then deletes and
    // payload updates that move points out of sealed segments.
    for b in 0..10u64 {
        let pts = (0..15)
            .map(|i| {
                let id = b * 15 + i;
                pt(id, vec![id as f32, 1.0, 2.0, 3.0], json!({"i": id}))
            })
            .collect();
        c.upsert(pts).unwrap();
        if b % 3 == 2 {
            f.follow(); // a follower step in the middle of the writes
        }
    }
    c.delete(
        (0..150)
            .step_by(3)
            .map(shared::wire::indexing::PointId::Num)
            .collect(),
    )
    .unwrap();
    c.set_payload(
        &[shared::wire::indexing::PointId::Num(1)],
        json!({"i": 1, "x": true}),
        false,
    )
    .unwrap();
    c.flush().unwrap();
    c.wait_idle();
    converge(&w, &f, "a");
    // A vacuum rewrites segments and removes the old directories.
    c.delete(
        (0..150)
            .filter(|i| i % 3 == 1)
            .map(shared::wire::indexing::PointId::Num)
            .collect(),
    )
    .unwrap();
    c.vacuum().unwrap();
    converge(&w, &f, "a");
    let fa = f.get("a").unwrap();
    assert_eq!(fa.count(None).unwrap(), 50);
    assert_eq!(
        fa.search(&[1.0, 0.0, 0.0, 0.0], 3, None).unwrap()[0]
            .point
            .id,
        shared::wire::indexing::PointId::Num(149)
    );
    // Writes at the follower are refused, in the collection and the catalog.
    assert!(matches!(
        fa.upsert(vec![pt(999, vec![1.0; 4], json!({}))]),
        Err(CollectionError::ReadOnly(_))
    ));
    assert!(matches!(
        f.create(config("z", 4, Metric::Dot, 20)),
        Err(CollectionError::ReadOnly(_))
    ));
    // Collections created and deleted by the writer appear and disappear.
    drop(c);
    w.create(config("b", 2, Metric::Euclidean, 1000))
        .unwrap()
        .upsert(vec![pt(7, vec![1.0, 2.0], json!({"k": "v"}))])
        .unwrap();
    w.delete("a").unwrap();
    f.follow();
    assert!(matches!(f.get("a"), Err(CollectionError::NotFound(_))));
    converge(&w, &f, "b");
    // The writer goes away: the follower takes the lock and writes.
    assert!(!f.try_promote().unwrap(), "the lock is still held");
    let last = w.get("b").unwrap().applied_op();
    drop(w);
    assert!(f.try_promote().unwrap());
    assert!(f.is_writer());
    let b = f.get("b").unwrap();
    assert_eq!(b.applied_op(), last);
    let (op, _) = b.upsert(vec![pt(8, vec![3.0, 4.0], json!({}))]).unwrap();
    assert_eq!(op, last + 1, "op numbers continue after takeover");
    assert_eq!(b.count(None).unwrap(), 2);
}

#[test]
fn a_wal_reader_follows_rotation_truncation_and_a_torn_tail() {
    use indexing_service::storage::codec::{encode_op, Op};
    use indexing_service::storage::wal::{Wal, WalTail};
    use shared::wire::indexing::PointId;
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("wal");
    let body = |i: u64| {
        let mut b = Vec::new();
        encode_op(&Op::Delete(vec![PointId::Num(i)]), &mut b);
        b
    };
    let wal = Wal::open(&wdir, 0, |_, _| Ok(())).unwrap();
    let mut tail = WalTail::new(&wdir, 0);
    let mut seen = Vec::new();
    let poll = |tail: &mut WalTail, seen: &mut Vec<u64>| {
        tail.poll(|op, o| {
            assert!(matches!(o, Op::Delete(ref ids) if ids == &[PointId::Num(op)]));
            seen.push(op);
            Ok(())
        })
        .unwrap()
    };
    for i in 1..=5 {
        wal.append(&body(i)).unwrap();
    }
    assert!(!poll(&mut tail, &mut seen).behind);
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    // Truncation behind the reader (a new file, the old one deleted).
    wal.truncate_through(5).unwrap();
    for i in 6..=8 {
        wal.append(&body(i)).unwrap();
    }
    assert!(!poll(&mut tail, &mut seen).behind);
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    // A reader that starts before what the log still holds is behind.
    let mut late = WalTail::new(&wdir, 2);
    assert!(late.poll(|_, _| Ok(())).unwrap().behind);
    // A record still being written: half of it on disk.
    drop(wal);
    let newest = std::fs::read_dir(&wdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let mut rec = Vec::new();
    let b9 = body(9);
    rec.extend_from_slice(&(b9.len() as u32).to_le_bytes());
    rec.extend_from_slice(&[0xAB; 4]);
    rec.extend_from_slice(&9u64.to_le_bytes());
    rec.extend_from_slice(&b9[..b9.len() / 2]);
    let len_before = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&rec)
        .unwrap();
    let p = poll(&mut tail, &mut seen);
    assert_eq!((p.applied, p.behind), (0, false), "waits at a torn record");
    assert_eq!(
        std::fs::metadata(&newest).unwrap().len(),
        len_before + rec.len() as u64,
        "the reader never cuts"
    );
    // The next writer cuts the torn tail and appends op 9 in its place.
    let wal = Wal::open(&wdir, 0, |_, _| Ok(())).unwrap();
    assert_eq!(wal.append(&body(9)).unwrap(), 9);
    assert!(!poll(&mut tail, &mut seen).behind);
    // Truncation rotates to a new file and deletes the one being read.
    wal.truncate_through(9).unwrap();
    wal.append(&body(10)).unwrap();
    assert!(!poll(&mut tail, &mut seen).behind);
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(tail.last_op(), 10);
    assert_eq!(tail.peek_last_op().unwrap(), 10);
}

// ---------------------------------------------------------------------
// Real processes over HTTP.
// ---------------------------------------------------------------------

/// A minimal HTTP/1.1 exchange (`Connection: close`, 15 s socket
/// timeouts): status, headers (lower-case names), body.
struct HttpAnswer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(15)))?;
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
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
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 4 + n..];
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One indexing-service process; killed (SIGKILL) when dropped.
struct Replica {
    port: u16,
    child: Option<Child>,
}

impl Replica {
    fn start(data: &Path, cwd: &Path, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_indexing-service"))
            .current_dir(cwd)
            .env_remove("CONFIG_PATH")
            .env("INDEXING__HOST", "127.0.0.1")
            .env("INDEXING__PORT", port.to_string())
            .env("INDEXING__DATA_DIR", data.display().to_string())
            .env(
                "INDEXING__ADVERTISE_URL",
                format!("http://127.0.0.1:{port}"),
            )
            // Nothing listens there: these tests write vectors only.
            .env(
                "EMBEDDING_SERVICE_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start indexing-service");
        let r = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(http(port, "GET", "/health", None, &[]), Ok(a) if a.status == 200) {
                return r;
            }
            assert!(Instant::now() < deadline, "replica on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// `index_replica_is_writer` from /metrics.
    fn is_writer(&self) -> bool {
        let m = http(self.port, "GET", "/metrics", None, &[])
            .unwrap()
            .text();
        m.lines()
            .find(|l| l.starts_with("index_replica_is_writer "))
            .map(|l| l.ends_with(" 1"))
            .expect("index_replica_is_writer in /metrics")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn upsert_body(id: u64) -> Value {
    json!({"points": [{"id": id, "vector": [id as f32, 1.0, 2.0, 3.0], "metadata": {"i": id}}]})
}

/// The ids present at `port` among `ids`, read after op `after`.
fn present(port: u16, ids: &[u64], after: u64) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for chunk in ids.chunks(5_000) {
        let a = http(
            port,
            "POST",
            "/collections/r/points",
            Some(&json!({"ids": chunk, "consistency": {"after": after}})),
            &[],
        )
        .unwrap();
        assert_eq!(a.status, 200, "get by ids at {port}: {}", a.text());
        for p in a.json()["points"].as_array().unwrap() {
            let id = p["id"].as_u64().unwrap();
            assert_eq!(p["metadata"]["i"], json!(id), "payload of {id} at {port}");
            out.insert(id);
        }
    }
    out
}

/// What the write loop saw: acknowledged upserts and deletes, and ids
/// whose write was in flight (unknown outcome).
#[derive(Default)]
struct Log {
    upserted: BTreeSet<u64>,
    deleted: BTreeSet<u64>,
    unknown: BTreeSet<u64>,
    max_op: u64,
    failed: usize,
    first_ok_after_kill: Option<Instant>,
}

fn op_of(a: &HttpAnswer) -> u64 {
    a.headers
        .get("x-operation")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a write answer without x-operation: {:?}", a.headers))
}

#[test]
fn three_processes_one_writer_sigkill_takeover_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut a = Replica::start(data.path(), cwd.path(), ports[0]);
    assert!(a.is_writer(), "the first process takes the lock");
    let b = Replica::start(data.path(), cwd.path(), ports[1]);
    let c = Replica::start(data.path(), cwd.path(), ports[2]);
    assert!(!b.is_writer() && !c.is_writer());

    // Created through a follower: forwarded to the writer.
    let r = http(
        b.port,
        "POST",
        "/collections",
        Some(&json!({"name": "r", "dimension": 4, "metric": "dot", "flush_threshold": {"vectors": 64}})),
        &[],
    )
    .unwrap();
    assert!(
        r.status == 201 || r.status == 200,
        "create: {} {}",
        r.status,
        r.text()
    );

    // Writes through each replica, read back from each with the write's op.
    let mut ops = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let w = http(
            *p,
            "PUT",
            "/collections/r/points",
            Some(&upsert_body(i as u64)),
            &[],
        )
        .unwrap();
        assert_eq!(w.status, 200, "write via {p}: {}", w.text());
        ops.push(op_of(&w));
    }
    let last = *ops.iter().max().unwrap();
    for p in ports {
        assert_eq!(
            present(p, &[0, 1, 2], last),
            BTreeSet::from([0, 1, 2]),
            "reads at {p}"
        );
        let n = http(
            p,
            "POST",
            "/collections/r/points/count",
            Some(&json!({})),
            &[("x-consistency-after", last.to_string())],
        )
        .unwrap();
        assert_eq!(n.json()["count"], json!(3), "count at {p}: {}", n.text());
        let d = http(
            p,
            "GET",
            "/collections/r",
            None,
            &[("x-consistency-after", last.to_string())],
        )
        .unwrap();
        let rep = &d.json()["replication"];
        assert!(
            rep["applied_operation"].as_u64().unwrap() >= last,
            "{}",
            d.text()
        );
    }
    // A bad consistency field is a clear 422, never a wait.
    let bad = http(
        ports[1],
        "POST",
        "/collections/r/points/count",
        Some(&json!({"consistency": {"after": "soon"}})),
        &[],
    )
    .unwrap();
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(bad.json()["error"]["code"], json!("invalid_request"));

    // The write loop: two clients, each through the replicas in turn,
    // upserting new ids and deleting ids acknowledged before.
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let dead: Arc<Mutex<BTreeSet<u16>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut workers = Vec::new();
    for t in 0..2u64 {
        let (log, stop, killed_at, dead) =
            (log.clone(), stop.clone(), killed_at.clone(), dead.clone());
        workers.push(std::thread::spawn(move || {
            let mut k = 0u64;
            let mut mine: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let live: Vec<u16> = ports
                    .iter()
                    .copied()
                    .filter(|p| !dead.lock().unwrap().contains(p))
                    .collect();
                let port = live[(k as usize + t as usize) % live.len()];
                let sent = Instant::now();
                let delete = k.is_multiple_of(4) && mine.len() > 2;
                let (id, ans) = if delete {
                    let id = mine.remove((k as usize * 7) % mine.len());
                    (
                        id,
                        http(
                            port,
                            "POST",
                            "/collections/r/points/delete",
                            Some(&json!({"ids": [id]})),
                            &[],
                        ),
                    )
                } else {
                    let id = 1_000 + t * 1_000_000 + k;
                    (
                        id,
                        http(
                            port,
                            "PUT",
                            "/collections/r/points",
                            Some(&upsert_body(id)),
                            &[],
                        ),
                    )
                };
                let mut l = log.lock().unwrap();
                match ans {
                    Ok(a) if a.status == 200 => {
                        l.max_op = l.max_op.max(op_of(&a));
                        if delete {
                            l.deleted.insert(id);
                        } else {
                            l.upserted.insert(id);
                            mine.push(id);
                        }
                        // The takeover shows in the first write sent after the
                        // kill and acknowledged.
                        let k = *killed_at.lock().unwrap();
                        if k.is_some_and(|k| sent > k) && l.first_ok_after_kill.is_none() {
                            l.first_ok_after_kill = Some(Instant::now());
                        }
                    }
                    Ok(a) => {
                        // Refused (503 during the takeover): unknown only if
                        // the writer might have applied it.
                        assert!(
                            a.status == 503,
                            "unexpected answer {}: {}",
                            a.status,
                            a.text()
                        );
                        assert_eq!(
                            a.json()["error"]["code"],
                            json!("writer_unavailable"),
                            "{}",
                            a.text()
                        );
                        assert!(a.headers.contains_key("retry-after"));
                        l.failed += 1;
                        l.unknown.insert(id);
                        if delete {
                            mine.push(id);
                        }
                    }
                    Err(_) => {
                        // The connection broke (the killed writer).
                        l.failed += 1;
                        l.unknown.insert(id);
                        if delete {
                            mine.push(id);
                        }
                        dead.lock().unwrap().insert(port);
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let before_kill = log.lock().unwrap().upserted.len();
    assert!(
        before_kill > 20,
        "the loop made progress ({before_kill} writes)"
    );
    *killed_at.lock().unwrap() = Some(Instant::now());
    dead.lock().unwrap().insert(a.port);
    a.kill();
    // Keep writing until the takeover shows, then a little longer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().first_ok_after_kill.is_none() {
        assert!(
            Instant::now() < deadline,
            "no write succeeded within 20 s of the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    let killed = killed_at.lock().unwrap().unwrap();
    let takeover = log.first_ok_after_kill.unwrap().duration_since(killed);
    eprintln!(
        "takeover: first acknowledged write {:.0} ms after SIGKILL; {} upserts and {} deletes acknowledged, {} refused or broken",
        takeover.as_secs_f64() * 1000.0,
        log.upserted.len(),
        log.deleted.len(),
        log.failed
    );
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );

    // Exactly one new writer.
    let writers: Vec<u16> = [&b, &c]
        .iter()
        .filter(|r| r.is_writer())
        .map(|r| r.port)
        .collect();
    assert_eq!(writers.len(), 1, "one writer after the takeover");

    // Nothing acknowledged lost, acknowledged deletes stay deleted, on
    // every live replica and on the old writer restarted as a follower.
    let fin = http(
        writers[0],
        "PUT",
        "/collections/r/points",
        Some(&upsert_body(7)),
        &[],
    )
    .unwrap();
    assert_eq!(fin.status, 200, "{}", fin.text());
    let after = op_of(&fin).max(log.max_op);
    let all: Vec<u64> = log
        .upserted
        .iter()
        .chain(&log.deleted)
        .chain(&log.unknown)
        .copied()
        .collect();
    let must: BTreeSet<u64> = log
        .upserted
        .iter()
        .filter(|i| !log.deleted.contains(i) && !log.unknown.contains(i))
        .copied()
        .collect();
    let check = |port: u16| {
        let got = present(port, &all, after);
        let lost: Vec<_> = must.difference(&got).collect();
        assert!(
            lost.is_empty(),
            "replica {port} lost acknowledged writes: {lost:?}"
        );
        let back: Vec<_> = log
            .deleted
            .iter()
            .filter(|i| got.contains(i) && !log.unknown.contains(i))
            .collect();
        assert!(
            back.is_empty(),
            "replica {port} shows deleted points: {back:?}"
        );
    };
    check(b.port);
    check(c.port);
    let a2 = Replica::start(data.path(), cwd.path(), ports[0]);
    assert!(!a2.is_writer(), "the old writer rejoins as a follower");
    check(a2.port);
    let via_a = http(
        a2.port,
        "PUT",
        "/collections/r/points",
        Some(&upsert_body(8)),
        &[],
    )
    .unwrap();
    assert_eq!(
        via_a.status,
        200,
        "a write through the rejoined replica: {}",
        via_a.text()
    );
    assert_eq!(present(a2.port, &[8], op_of(&via_a)), BTreeSet::from([8]));
}

/// Path → (size, modification time, content) of every file under `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                out.insert(e.path(), (0, m.modified().unwrap(), Vec::new()));
                stack.push(e.path());
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(e.path(), (m.len(), m.modified().unwrap(), bytes));
            }
        }
    }
    out
}

#[test]
fn a_follower_alone_writes_nothing_into_the_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    // A writer's data: sealed segments, deletes, a WAL tail, a writer.json
    // naming a writer that is gone.
    {
        let port = free_port();
        let w = Replica::start(data.path(), cwd.path(), port);
        let r = http(
            port,
            "POST",
            "/collections",
            Some(&json!({"name": "r", "dimension": 4, "metric": "dot", "flush_threshold": {"vectors": 50}})),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        for id in 0..130u64 {
            let a = http(
                port,
                "PUT",
                "/collections/r/points",
                Some(&upsert_body(id)),
                &[],
            )
            .unwrap();
            assert_eq!(a.status, 200);
        }
        let a = http(
            port,
            "POST",
            "/collections/r/points/delete",
            Some(&json!({"ids": [3, 60, 120]})),
            &[],
        )
        .unwrap();
        assert_eq!(a.status, 200);
        drop(w); // SIGKILL: the WAL keeps ops past the manifest
    }
    // Hold the lock here, so the process below stays a follower.
    let _lock = DirLock::acquire(data.path()).unwrap();
    let before = tree(data.path());
    let port = free_port();
    let f = Replica::start(data.path(), cwd.path(), port);
    assert!(!f.is_writer());
    let n = http(
        port,
        "POST",
        "/collections/r/points/count",
        Some(&json!({})),
        &[],
    )
    .unwrap();
    assert_eq!(n.json()["count"], json!(127), "{}", n.text());
    let s = http(
        port,
        "POST",
        "/collections/r/search",
        Some(&json!({"vector": [1.0, 0.0, 0.0, 0.0], "top_k": 2})),
        &[],
    )
    .unwrap();
    assert_eq!(s.status, 200, "{}", s.text());
    let d = http(port, "GET", "/collections/r", None, &[]).unwrap();
    assert_eq!(
        d.json()["replication"]["role"],
        json!("follower"),
        "{}",
        d.text()
    );
    // A write finds no writer: 503 with Retry-After, at once.
    let t0 = Instant::now();
    let w = http(
        port,
        "PUT",
        "/collections/r/points",
        Some(&upsert_body(500)),
        &[],
    )
    .unwrap();
    assert_eq!(w.status, 503, "{}", w.text());
    assert_eq!(w.json()["error"]["code"], json!("writer_unavailable"));
    assert!(w.headers.contains_key("retry-after"));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a write without a writer must not hang"
    );
    // A read after an op this replica will never see: 504 within the bound.
    let t0 = Instant::now();
    let late = http(
        port,
        "GET",
        "/collections/r/points/1",
        None,
        &[("x-consistency-after", "999999".into())],
    )
    .unwrap();
    assert_eq!(late.status, 504, "{}", late.text());
    assert_eq!(late.json()["error"]["code"], json!("consistency_timeout"));
    assert!(t0.elapsed() < Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(300));
    drop(f);
    let after = tree(data.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the follower added or removed files"
    );
    for (p, (len, mtime, bytes)) in &before {
        let (len2, mtime2, bytes2) = &after[p];
        assert!(
            len == len2 && mtime == mtime2 && bytes == bytes2,
            "the follower changed {}",
            p.display()
        );
    }
}

/// Resident memory of a process in KiB (`VmRSS`), and its proportional
/// share (`Pss` from smaps_rollup: shared pages split among sharers).
fn memory_kib(pid: u32) -> (u64, u64) {
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&smaps, "Pss:"))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Reads of random points at `ports` (round robin) from `threads` clients
/// for `secs`: queries per second.
fn read_rate(ports: &[u16], threads: usize, secs: f64, n_points: u64, dim: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, ports) = (stop.clone(), done.clone(), ports.to_vec());
            std::thread::spawn(move || {
                let mut k = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let mut q = vec![0.0f32; dim];
                    q[(k as usize) % dim] = 1.0;
                    let a = http(
                        ports[k as usize % ports.len()],
                        "POST",
                        "/collections/bench/search",
                        Some(&json!({"vector": q, "top_k": 10})),
                        &[],
                    )
                    .unwrap();
                    assert_eq!(a.status, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                let _ = n_points;
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs
}

/// The "Replicas" figures of docs/BENCHMARKS.md (release build):
/// `cargo test --release -p indexing-service --test engine replica_bench -- --ignored --nocapture`
/// (REPLICA_BENCH_POINTS, default 20,000 points of 128 dimensions).
#[test]
#[ignore]
fn replica_bench() {
    let n: u64 = std::env::var("REPLICA_BENCH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dim = 128usize;
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let w = Replica::start(data.path(), cwd.path(), ports[0]);
    let r = http(
        w.port,
        "POST",
        "/collections",
        Some(&json!({"name": "bench", "dimension": dim, "metric": "cosine", "flush_threshold": {"vectors": 5000}})),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    use rand::{Rng, SeedableRng};
    for b in 0..n.div_ceil(500) {
        let pts: Vec<Value> = (b * 500..((b + 1) * 500).min(n))
            .map(|i| {
                let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                json!({"id": i, "vector": v, "metadata": {"i": i}})
            })
            .collect();
        let a = http(
            w.port,
            "PUT",
            "/collections/bench/points",
            Some(&json!({"points": pts})),
            &[],
        )
        .unwrap();
        assert_eq!(a.status, 200, "{}", a.text());
    }
    // Let the writer seal and index what it has.
    std::thread::sleep(Duration::from_secs(3));
    let mem_w0 = memory_kib(w.child.as_ref().unwrap().id());
    let q1 = read_rate(&[w.port], 4, 5.0, n, dim);
    let b = Replica::start(data.path(), cwd.path(), ports[1]);
    let c = Replica::start(data.path(), cwd.path(), ports[2]);
    std::thread::sleep(Duration::from_secs(2));
    let mem_b = memory_kib(b.child.as_ref().unwrap().id());
    let mem_c = memory_kib(c.child.as_ref().unwrap().id());
    let mem_w = memory_kib(w.child.as_ref().unwrap().id());
    let q3 = read_rate(&ports, 4, 5.0, n, dim);
    // Follower lag under a steady write load: one write every 5 ms at the
    // writer; right after each acknowledgement a read at a follower asks
    // for that op; its latency is the lag (plus one local request).
    let mut lag = Vec::new();
    let mut own = Vec::new();
    let t_end = Instant::now() + Duration::from_secs(10);
    let mut i = n;
    while Instant::now() < t_end {
        i += 1;
        let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let a = http(
            w.port,
            "PUT",
            "/collections/bench/points",
            Some(&json!({"points": [{"id": i, "vector": v}]})),
            &[],
        )
        .unwrap();
        let op = op_of(&a);
        let port = if i.is_multiple_of(2) { b.port } else { c.port };
        let t0 = Instant::now();
        let g = http(
            port,
            "GET",
            &format!("/collections/bench/points/{i}"),
            None,
            &[("x-consistency-after", op.to_string())],
        )
        .unwrap();
        lag.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(g.status, 200, "{}", g.text());
        let t0 = Instant::now();
        let _ = http(
            port,
            "GET",
            &format!("/collections/bench/points/{i}"),
            None,
            &[],
        )
        .unwrap();
        own.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(5));
    }
    let writes = lag.len();
    eprintln!("replica bench: {n} points x {dim} dims, cosine, HNSW");
    eprintln!("read q/s (vector search top 10, 4 clients, new connection per request): 1 replica {q1:.0}, 3 replicas {q3:.0}");
    eprintln!(
        "follower lag over {writes} writes (1 per ~5 ms): p50 {:.2} ms, p99 {:.2} ms (a plain read at the follower: p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&mut lag, 0.5),
        percentile(&mut lag, 0.99),
        percentile(&mut own, 0.5),
        percentile(&mut own, 0.99)
    );
    eprintln!(
        "memory KiB (RSS, PSS): writer alone {mem_w0:?}, writer with followers {mem_w:?}, follower b {mem_b:?}, follower c {mem_c:?}"
    );
}
