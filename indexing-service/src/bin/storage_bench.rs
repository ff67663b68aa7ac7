//! Storage-engine benchmark: upsert throughput (384-d vectors, batches of
//! 100 and 1,000, `fsync: always` and `never`, one and four writers), and
//! open time and RSS of a large collection next to its size on disk.
//!
//! ```text
//! cargo run --release -p indexing-service --bin storage-bench -- --dir /tmp/sb --points 1000000
//! ```
//! Open time and RSS are measured in a fresh child process (`--open DIR`),
//! so nothing is warm in its memory.

use clap::Parser;
use indexing_service::collection::{CollectionConfig, FlushThreshold, NewPoint, Storage};
use rand::{Rng, SeedableRng};
use shared::config::FsyncMode;
use shared::wire::indexing::{Metric, PointId};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Scratch directory (emptied first).
    #[arg(long, default_value = "/tmp/storage-bench")]
    dir: PathBuf,
    /// Vectors per throughput row.
    #[arg(long, default_value_t = 100_000)]
    vectors: usize,
    /// Size of the one-segment collection for the open-time row (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    points: usize,
    #[arg(long, default_value_t = 384)]
    dim: usize,
    /// Internal: open this data dir, print open time and RSS as JSON, exit.
    #[arg(long)]
    open: Option<PathBuf>,
}

fn rss_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn batch(rng: &mut impl Rng, start: usize, n: usize, dim: usize) -> Vec<NewPoint> {
    (start..start + n)
        .map(|i| NewPoint {
            id: Some(PointId::Num(i as u64)),
            vector: (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
            payload: Some(serde_json::json!({"i": i, "tag": i % 10})),
            content: None,
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.open {
        let before = rss_mib("VmRSS:");
        let t0 = Instant::now();
        let s = Storage::open(dir).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let c = s.get("big").unwrap();
        let info = c.info();
        println!(
            "{}",
            serde_json::json!({"open_s": secs, "hnsw": index_file(dir, "hnsw.bin"), "sq8": index_file(dir, "sq8.bin"), "rss_mib": rss_mib("VmRSS:"), "rss_before_mib": before,
                "points": info.points, "segments": info.segments, "disk_bytes": c.disk_bytes()})
        );
        return;
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    let storage = Storage::open(&args.dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    println!(
        "# {} vectors of {} dims per row, payload {{i, tag}}; {} cores",
        args.vectors,
        args.dim,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("\n| fsync | batch | writers | vectors/s | batches/s |");
    println!("|---|---:|---:|---:|---:|");
    let mut row = 0;
    for fsync in [FsyncMode::Always, FsyncMode::Never] {
        for (bs, writers) in [(100usize, 1usize), (1000, 1), (100, 4)] {
            row += 1;
            let mut cfg = CollectionConfig::new(&format!("t{row}"), args.dim, Metric::Cosine);
            cfg.fsync = fsync;
            let c = storage.create(cfg).unwrap();
            let per_writer = args.vectors / writers;
            let batches: Vec<Vec<Vec<NewPoint>>> = (0..writers)
                .map(|w| {
                    (0..per_writer / bs)
                        .map(|b| batch(&mut rng, w * per_writer + b * bs, bs, args.dim))
                        .collect()
                })
                .collect();
            let t0 = Instant::now();
            std::thread::scope(|sc| {
                for bw in batches {
                    let c = Arc::clone(&c);
                    sc.spawn(move || {
                        for b in bw {
                            c.upsert(b).unwrap();
                        }
                    });
                }
            });
            let secs = t0.elapsed().as_secs_f64();
            let n = (per_writer / bs) * bs * writers;
            println!(
                "| {fsync:?} | {bs} | {writers} | {:.0} | {:.0} |",
                n as f64 / secs,
                (n / bs) as f64 / secs
            );
            c.close();
        }
    }
    drop(storage);
    if args.points == 0 {
        return;
    }
    // A large collection: written with fsync never (the throughput above
    // covers durability), sealed into ONE segment with its HNSW graph
    // (M=16, ef_construction=100), closed.
    let big_dir = args.dir.join("big-data");
    {
        let s = Storage::open(&big_dir).unwrap();
        let mut cfg = CollectionConfig::new("big", args.dim, Metric::Cosine);
        cfg.fsync = FsyncMode::Never;
        cfg.flush_threshold = FlushThreshold {
            vectors: args.points + 1,
            bytes: usize::MAX,
        };
        let c = s.create(cfg).unwrap();
        let t0 = Instant::now();
        let mut i = 0;
        while i < args.points {
            let n = 1000.min(args.points - i);
            c.upsert(batch(&mut rng, i, n, args.dim)).unwrap();
            i += n;
        }
        let written = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        c.flush().unwrap();
        c.wait_idle();
        eprintln!(
            "wrote {} points in {written:.1}s; sealing (segment files + HNSW build) took {:.1}s",
            args.points,
            t1.elapsed().as_secs_f64()
        );
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--open")
        .arg(&big_dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("child output");
    let disk = v["disk_bytes"].as_f64().unwrap() / (1 << 20) as f64;
    println!("\n| points | segments (sealed + appendable) | size on disk MiB | open s | RSS after open MiB |");
    println!("|---:|---:|---:|---:|---:|");
    eprintln!("child: {v}");
    println!(
        "| {} | {} | {:.0} | {:.3} | {:.0} |",
        v["points"],
        v["segments"],
        disk,
        v["open_s"].as_f64().unwrap(),
        v["rss_mib"].as_f64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&args.dir);
}

/// Whether a segment of the `big` collection holds this index file.
fn index_file(dir: &std::path::Path, name: &str) -> bool {
    dir.join("collections/big/segments")
        .read_dir()
        .map(|rd| rd.flatten().any(|e| e.path().join(name).exists()))
        .unwrap_or(false)
}
