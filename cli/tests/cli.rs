//! `vdb` against both real services over real HTTP:
//! - a JSONL import of 3,000 WordNet glosses (texts embedded by the server)
//!   run in a pseudo-terminal (`script`), where the progress bar is drawn;
//!   Ctrl-C typed at about half way; a rerun skips what is stored and ends
//!   with exactly 3,000 points, every id once;
//! - CSV and Parquet imports of vectors with payload columns;
//! - export to Parquet and JSONL, import of the export, identical points;
//! - search and get; exit codes by kind of error, in the server's words.
//!
//! Needs the service binaries built (`cargo build -p embedding-service
//! -p indexing-service`, which the test command does) and `script`
//! (util-linux).

use e2e_tests::{free_port, workspace_root, Proc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use vdb_client::{Client, ClientConfig, ScrollRequest};

const VDB: &str = env!("CARGO_BIN_EXE_vdb");

struct Stack {
    _emb: Proc,
    idx: Proc,
    rt: tokio::runtime::Runtime,
    client: Client,
}

fn start(data: &Path) -> Stack {
    let (ep, ip) = (free_port(), free_port());
    let eps = ep.to_string();
    let mut emb = Proc::spawn(
        "embedding-service",
        ep,
        &[("EMBEDDING__PORT", &eps), ("EMBEDDING__HOST", "127.0.0.1")],
    );
    emb.wait_healthy(Duration::from_secs(120));
    let ips = ip.to_string();
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
            // Small segments: sealing happens during the import.
            ("INDEXING__FLUSH_THRESHOLD__VECTORS", "1000"),
        ],
    );
    idx.wait_healthy(Duration::from_secs(60));
    let client = Client::new(ClientConfig::new(idx.url.clone())).unwrap();
    Stack {
        _emb: emb,
        idx,
        rt: tokio::runtime::Runtime::new().unwrap(),
        client,
    }
}

impl Stack {
    fn vdb(&self, args: &[&str]) -> Output {
        Command::new(VDB)
            .arg("--url")
            .arg(&self.idx.url)
            .args(args)
            .output()
            .expect("run vdb")
    }

    fn count(&self, name: &str) -> usize {
        self.rt.block_on(self.client.count(name, None)).unwrap()
    }

    /// Every point of `name` (with vectors), by id.
    fn all_points(&self, name: &str) -> (usize, BTreeMap<String, Value>) {
        let mut out = BTreeMap::new();
        let mut seen = 0;
        let mut cursor = None;
        loop {
            let page = self
                .rt
                .block_on(self.client.scroll(
                    name,
                    &ScrollRequest {
                        limit: Some(700),
                        cursor,
                        with_vector: Some(true),
                        ..Default::default()
                    },
                ))
                .unwrap();
            seen += page.points.len();
            for p in page.points {
                out.insert(p.id.to_string(), serde_json::to_value(&p).unwrap());
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        (seen, out)
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The WordNet fixture as JSONL: id, content (the gloss), synset, lemma, pos.
fn write_jsonl(path: &Path) -> usize {
    let tsv =
        std::fs::read_to_string(workspace_root().join("tests/fixtures/wordnet-3000.tsv")).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    let mut n = 0;
    for (i, l) in tsv.lines().enumerate() {
        let mut c = l.split('\t');
        let (synset, lemma, gloss) = (c.next().unwrap(), c.next().unwrap(), c.next().unwrap());
        let pos = synset.rsplit('-').next().unwrap();
        let row = json!({"id": i, "content": gloss, "synset": synset, "lemma": lemma, "pos": pos});
        writeln!(f, "{row}").unwrap();
        n += 1;
    }
    n
}

/// Runs `vdb import` inside `script` (a pseudo-terminal), types Ctrl-C once
/// `count` reaches `at`; returns the exit code, what the terminal showed,
/// and the count right after the exit.
fn import_in_pty_with_ctrl_c(
    s: &Stack,
    file: &Path,
    name: &str,
    at: usize,
) -> (i32, String, usize) {
    let cmd = format!(
        "{VDB} --url {} import {} --collection {name} --batch-size 50 --parallel 2",
        s.idx.url,
        file.display()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (util-linux)");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).to_string()
    });
    let mut stdin = child.stdin.take().unwrap();
    let t0 = Instant::now();
    loop {
        let n = s.count(name);
        if n >= at {
            eprintln!("typing Ctrl-C at {n} points");
            stdin.write_all(b"\x03").unwrap();
            stdin.flush().unwrap();
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "import ended ({st}) before {at} points: {}",
                reader.join().unwrap()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "import too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = child.wait().unwrap();
    drop(stdin);
    let screen = reader.join().unwrap();
    (st.code().unwrap_or(-1), screen, s.count(name))
}

#[test]
fn import_interrupt_resume_formats_export_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"));

    // --- JSONL of texts, in a terminal, Ctrl-C at ~50%, then resume. ---
    let jsonl = dir.path().join("glosses.jsonl");
    let n = write_jsonl(&jsonl);
    assert_eq!(n, 3000);
    let o = s.vdb(&["collections", "create", "wn"]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, screen, after_stop) = import_in_pty_with_ctrl_c(&s, &jsonl, "wn", n / 2);
    eprintln!(
        "terminal after Ctrl-C (last 600 bytes): {:?}",
        &screen[screen.len().saturating_sub(600)..]
    );
    assert_eq!(code, 130, "Ctrl-C exits 130: {screen}");
    // The progress bar was drawn: count, rate and ETA.
    assert!(
        screen.contains("/3,000 docs") || screen.contains("/3000 docs"),
        "{screen}"
    );
    assert!(screen.contains("ETA"), "{screen}");
    assert!(screen.contains("/s"), "{screen}");
    assert!(screen.contains("import interrupted"), "{screen}");
    assert!(
        after_stop >= n / 2 && after_stop < n,
        "stopped at {after_stop} of {n}"
    );
    // Nothing is written after the exit (in-flight batches were finished).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.count("wn"), after_stop);

    let o = s.vdb(&[
        "import",
        jsonl.to_str().unwrap(),
        "-c",
        "wn",
        "--parallel",
        "3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let written = n - after_stop;
    assert!(
        out.contains(&format!(
            "{written} points written, {after_stop} already present and skipped"
        )),
        "{out}"
    );
    assert_eq!(s.count("wn"), n);
    let (seen, wn) = s.all_points("wn");
    assert_eq!(seen, n, "scroll returns every point once");
    let ids: Vec<u64> = wn.keys().map(|k| k.parse().unwrap()).collect();
    assert_eq!(ids.len(), n);
    assert!((0..n as u64).all(|i| wn.contains_key(&i.to_string())));
    assert_eq!(wn["7"]["metadata"]["pos"], "n");
    assert_eq!(wn["7"]["vector"].as_array().unwrap().len(), 384);

    // --- search and get ---
    let o = s.vdb(&[
        "search",
        "a domestic animal that barks",
        "-c",
        "wn",
        "-k",
        "3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let hits: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 3);
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[2]["score"].as_f64().unwrap());
    let o = s.vdb(&["get", "-c", "wn", "7", "8"]);
    assert!(o.status.success(), "{}", text(&o));
    let got: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["content"], wn["7"]["content"]);

    // --- CSV of vectors with typed payload columns ---
    let csv = dir.path().join("vectors.csv");
    {
        let mut f = std::fs::File::create(&csv).unwrap();
        writeln!(f, "id,vector,tag,rank,score,flag").unwrap();
        for i in 0..200u32 {
            let v: Vec<f32> = (0..8)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 + 1.0)
                .collect();
            let v = serde_json::to_string(&v).unwrap();
            writeln!(f, "{i},\"{v}\",t{},{i},{}.5,{}", i % 3, i % 5, i % 2 == 0).unwrap();
        }
    }
    let o = s.vdb(&[
        "import",
        csv.to_str().unwrap(),
        "-c",
        "vec",
        "--create",
        "--batch-size",
        "64",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.count("vec"), 200);
    let (_, vec) = s.all_points("vec");
    assert_eq!(
        vec["5"]["metadata"],
        json!({"tag": "t2", "rank": 5, "score": 0.5, "flag": false})
    );

    // --- Parquet: export `wn`, import into `wn_copy`, identical points ---
    let pq = dir.path().join("wn.parquet");
    let o = s.vdb(&["export", "-c", "wn", "-o", pq.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exported 3000 points"));
    // The copies use `dot`, which stores vectors as sent (cosine would
    // normalise the already unit vectors again, moving last bits).
    for name in ["wn_copy", "wn_jsonl"] {
        let o = s.vdb(&[
            "collections",
            "create",
            name,
            "--dimension",
            "384",
            "--metric",
            "dot",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = s.vdb(&["import", pq.to_str().unwrap(), "-c", "wn_copy"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, copy) = s.all_points("wn_copy");
    assert_eq!(copy.len(), n);
    for (id, p) in &wn {
        let q = &copy[id];
        assert_eq!(p["content"], q["content"], "id {id}");
        assert_eq!(p["metadata"], q["metadata"], "id {id}");
        assert_eq!(p["vector"], q["vector"], "id {id}");
    }
    // JSONL export of both: the same lines.
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    for (name, path) in [("wn", &a), ("wn_copy", &b)] {
        let o = s.vdb(&["export", "-c", name, "-o", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let (la, lb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(la.split(|b| *b == b'\n').count(), n + 1);
    assert!(
        la == lb,
        "JSONL exports of the original and the copy differ"
    );
    // And a JSONL export imports back too (vectors kept, nothing embedded).
    let o = s.vdb(&["import", a.to_str().unwrap(), "-c", "wn_jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.all_points("wn_jsonl").1, wn);

    // --- errors: exit codes by kind, in the server's words ---
    let o = s.vdb(&["collections", "info", "nosuch"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not_found"),
        "{}",
        text(&o)
    );
    let o = s.vdb(&["collections", "create", "wn"]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already_exists"),
        "{}",
        text(&o)
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": 1, \"content\": \"fine\"}\n{\"id\": 2, \"content\": \n",
    )
    .unwrap();
    let o = s.vdb(&["import", bad.to_str().unwrap(), "-c", "wn"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 2"),
        "{}",
        text(&o)
    );
    // A vector of the wrong dimension: the server's refusal, exit 7.
    let wrong = dir.path().join("wrong.jsonl");
    std::fs::write(&wrong, "{\"id\": 9999, \"vector\": [1, 2, 3]}\n").unwrap();
    let o = s.vdb(&["import", wrong.to_str().unwrap(), "-c", "vec"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dimension"),
        "{}",
        text(&o)
    );
    let o = s.vdb(&["import", jsonl.to_str().unwrap(), "-c", "absent"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--create"),
        "{}",
        text(&o)
    );
    let closed = free_port();
    let o = Command::new(VDB)
        .args([
            "--url",
            &format!("http://127.0.0.1:{closed}"),
            "--retries",
            "1",
            "collections",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = s.vdb(&["collections", "bogus"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = s.vdb(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes"));

    // --- collections list and delete ---
    let o = s.vdb(&["collections", "list"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("wn_copy") && out.contains("3000"), "{out}");
    let o = s.vdb(&["collections", "delete", "wn_jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = s.vdb(&["collections", "info", "wn_jsonl"]);
    assert_eq!(o.status.code(), Some(5));
}
