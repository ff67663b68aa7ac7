//! Throughput and memory benchmark of the embedding service, through HTTP,
//! beside sentence-transformers on the same texts in the same run.
//!
//! ```text
//! cargo run --release -p embedding-service --bin embed-bench -- \
//!     --texts bench-data/wordnet-glosses.tsv --python /opt/stvenv/bin/python
//! ```
//! (`bench-data/wordnet-glosses.tsv` comes from `scripts/wordnet_glosses.py`;
//! the default, `tests/fixtures/wordnet-3000.tsv`, is a sample in the repository.)
//! It starts the release `embedding-service` binary beside itself (or uses
//! `--url`), takes `--n` real texts spread evenly over the file, sorts them
//! by token count, and sends them as batches of 1 and 32 from 1, 4 and 16
//! concurrent clients, once per `--dtypes` entry. sentence-transformers (via
//! `scripts/bench_st.py`) encodes the same sorted texts at the same batch
//! sizes with each `--peers` backend (PyTorch, ONNX Runtime f32 or int8);
//! the table shows each and our ratio to it. `--memory` adds the peak-RSS scenario: 16 clients
//! sending 32 texts of 256 tokens each, at two `max_batch_tokens` settings.

use clap::Parser;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// TSV whose last column is the text (WordNet glosses), or one text a line.
    #[arg(long, default_value = "tests/fixtures/wordnet-3000.tsv")]
    texts: PathBuf,
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Use a running service instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The service binary to start (default: beside this one).
    #[arg(long)]
    service: Option<PathBuf>,
    #[arg(long, default_value_t = 18001)]
    port: u16,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    batches: Vec<usize>,
    /// Python with sentence-transformers, for the peer columns.
    #[arg(long)]
    python: Option<String>,
    /// sentence-transformers backends to run as peers (`scripts/bench_st.py`:
    /// torch, onnx, onnx-o3, onnx-qint8), one column each.
    #[arg(long, value_delimiter = ',', default_value = "torch")]
    peers: Vec<String>,
    /// Our `dtype`s to measure (`f32`, `int8`), the service restarted for each.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    dtypes: Vec<String>,
    /// Model directory for sentence-transformers (default: what the service loads).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Also run the peak-RSS scenario.
    #[arg(long)]
    memory: bool,
    /// Extra `KEY=VALUE` environment for the started service.
    #[arg(long)]
    env: Vec<String>,
}

struct Service {
    child: Option<Child>,
    url: String,
}

impl Service {
    fn start(args: &Args, extra: &[(&str, String)]) -> Service {
        if let Some(url) = &args.url {
            return Service {
                child: None,
                url: url.clone(),
            };
        }
        let bin = args.service.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("embedding-service")
        });
        let mut cmd = Command::new(&bin);
        cmd.env("EMBEDDING__PORT", args.port.to_string())
            .env("EMBEDDING__HOST", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for kv in &args.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{}", args.port);
        let http = reqwest::blocking::Client::new();
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{url}/health")).send() {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "service did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Service {
            child: Some(child),
            url,
        }
    }

    /// Peak resident set (VmHWM) of the started service, in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn load_texts(path: &PathBuf, n: usize) -> Vec<String> {
    let all: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| {
            eprintln!(
                "embed-bench: cannot read --texts {}: {e}\n\
                 Make the WordNet file with `python3 scripts/wordnet_glosses.py \
                 --out bench-data/wordnet-glosses.tsv`, or pass \
                 --texts tests/fixtures/wordnet-3000.tsv (run from the repository root).",
                path.display()
            );
            std::process::exit(2)
        })
        .lines()
        .map(|l| l.rsplit('\t').next().unwrap_or(l).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let step = (all.len() / n).max(1);
    all.into_iter().step_by(step).take(n).collect()
}

/// Sends `batches` from `clients` concurrent clients; returns seconds.
async fn run_load(url: &str, batches: Arc<Vec<Vec<String>>>, clients: usize) -> f64 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, next, batches, url) =
            (http.clone(), next.clone(), batches.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                loop {
                    let r = http
                        .post(format!("{url}/embed"))
                        .json(&json!({"inputs": b}))
                        .send()
                        .await
                        .unwrap();
                    if r.status().as_u16() == 429 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    assert!(r.status().is_success(), "{}", r.status());
                    let v: Vec<Vec<f32>> = r.json().await.unwrap();
                    assert_eq!(v.len(), b.len());
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t0.elapsed().as_secs_f64()
}

async fn token_counts(url: &str, texts: &[String]) -> Vec<usize> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for c in texts.chunks(128) {
        let v: Value = http
            .post(format!("{url}/tokenize"))
            .json(&json!({"inputs": c}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_array().unwrap().len()),
        );
    }
    out
}

/// `(backend, batch, sentences/s)` per line `bench_st.py` prints.
fn python_peer(args: &Args, model_dir: &str, texts: &[String]) -> Vec<(String, usize, f64)> {
    let Some(py) = &args.python else {
        return Vec::new();
    };
    let file = std::env::temp_dir().join("embed-bench-texts.txt");
    std::fs::write(&file, texts.join("\n")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_st.py");
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .arg(model_dir)
        .arg(&file)
        .env("BENCH_BACKENDS", args.peers.join(","));
    for b in &args.batches {
        cmd.arg(b.to_string());
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("run python peer");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["backend"].as_str().unwrap_or("torch").to_string(),
                v["batch"].as_u64().unwrap() as usize,
                v["sentences_per_s"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let texts = load_texts(&args.texts, args.n);
    let mut rows = Vec::new();
    let mut sorted: Vec<String> = Vec::new();
    let mut rss = Vec::new();
    for dtype in &args.dtypes {
        let svc = Service::start(&args, &[("EMBEDDING__DTYPE", dtype.clone())]);
        let info: Value = reqwest::blocking::get(format!("{}/info", svc.url))
            .unwrap()
            .json()
            .unwrap();
        let counts = rt.block_on(token_counts(&svc.url, &texts));
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| counts[i]);
        sorted = order.iter().map(|&i| texts[i].clone()).collect();
        let total_tokens: usize = counts.iter().sum();
        println!(
            "# {} texts from {}, {} tokens (mean {:.1}); model {} on {} ({} backend, dtype {}); {} cores",
            texts.len(),
            args.texts.display(),
            total_tokens,
            total_tokens as f64 / texts.len() as f64,
            info["model_id"].as_str().unwrap_or("?"),
            info["device"].as_str().unwrap_or("?"),
            info["backend"].as_str().unwrap_or("?"),
            info["dtype"].as_str().unwrap_or("?"),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
        // warm-up pass
        rt.block_on(run_load(
            &svc.url,
            Arc::new(sorted.chunks(32).map(|c| c.to_vec()).collect()),
            2,
        ));
        for &b in &args.batches {
            let batches: Arc<Vec<Vec<String>>> =
                Arc::new(sorted.chunks(b).map(|c| c.to_vec()).collect());
            for &c in &args.concurrency {
                let secs = rt.block_on(run_load(&svc.url, batches.clone(), c));
                rows.push((
                    dtype.clone(),
                    b,
                    c,
                    texts.len() as f64 / secs,
                    total_tokens as f64 / secs,
                ));
            }
        }
        rss.push((dtype.clone(), svc.peak_rss_mib()));
    }
    let model_dir = args
        .model_dir
        .clone()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| {
            let cfg = shared::config::Config::load().expect("config");
            embedding_service::model::source::resolve(&cfg.embedding.model)
                .expect("model")
                .dir
                .display()
                .to_string()
        });
    let peer = python_peer(&args, &model_dir, &sorted);
    let peers: Vec<&String> = if peer.is_empty() {
        Vec::new()
    } else {
        args.peers.iter().collect()
    };
    println!();
    let mut head = "| dtype | batch | clients | ours sentences/s | ours tokens/s |".to_string();
    let mut rule = "|---|---:|---:|---:|---:|".to_string();
    for p in &peers {
        head += &format!(" sentence-transformers {p} sentences/s | ours / {p} |");
        rule += "---:|---:|";
    }
    println!("{head}\n{rule}");
    for (dtype, b, c, sps, tps) in rows {
        let mut line = format!("| {dtype} | {b} | {c} | {sps:.1} | {tps:.0} |");
        for p in &peers {
            match peer.iter().find(|(pp, pb, _)| pp == *p && *pb == b) {
                Some((_, _, st)) => line += &format!(" {st:.1} | {:.2}x |", sps / st),
                None => line += " - | - |",
            }
        }
        println!("{line}");
    }
    for (dtype, r) in rss {
        if let Some(r) = r {
            println!("\npeak RSS of the service over the {dtype} throughput runs: {r:.0} MiB");
        }
    }
    if args.memory {
        println!("\n| max_batch_tokens | scenario | peak RSS MiB | seconds |");
        println!("|---:|---|---:|---:|");
        for budget in [16384usize, 4096] {
            let svc = Service::start(
                &args,
                &[("EMBEDDING__MAX_BATCH_TOKENS", budget.to_string())],
            );
            let idle = svc.peak_rss_mib().unwrap_or(0.0);
            // 16 clients x 32 texts of 256 tokens (long texts, truncated at 256).
            let long: Vec<Vec<String>> = (0..16)
                .map(|c| {
                    (0..32)
                        .map(|i| {
                            format!("{c} {i} {}", sorted[(c * 32 + i) % sorted.len()].repeat(20))
                        })
                        .collect()
                })
                .collect();
            let secs = rt.block_on(run_load(&svc.url, Arc::new(long), 16));
            println!(
                "| {budget} | idle after warm-up | {idle:.0} | |\n| {budget} | 16 clients x 32 texts x 256 tokens | {:.0} | {secs:.2} |",
                svc.peak_rss_mib().unwrap_or(0.0)
            );
        }
    }
}
