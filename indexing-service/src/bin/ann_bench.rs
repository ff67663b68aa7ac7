//! ANN benchmark on TexMex files: builds each index and prints one table
//! (build time, build vectors/s, memory, recall@10 against queries/s on one
//! thread and on all threads, per `ef`/`nprobe`), then a summary row per
//! index with queries/s interpolated at recall@10 = 0.90, 0.95, 0.99, the
//! same way as `scripts/ann_peers.py` (run it beside this, on the
//! same files, for hnswlib and faiss).
//!
//! ```text
//! cargo run --release -p indexing-service --bin ann-bench -- \
//!     --base bench-data/wordnet-base.fvecs --query bench-data/wordnet-query.fvecs
//! ```
//! Without `--gt`, the exact top-100 is computed and written to
//! `<query>.gt.ivecs`.

use clap::Parser;
use indexing_service::index::hnsw::{F32Space, Hnsw, HnswParams, Query};
use indexing_service::index::pq::{Ivf, PqCodes, PqSpace};
use indexing_service::index::segment_index::{rescore, sq_rescored};
use indexing_service::index::sq::{Sq8, Sq8Space};
use indexing_service::index::{distance, exact_scan, TopK};
use rayon::prelude::*;
use shared::wire::indexing::Metric;
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 10;

/// One query (by index) to its result ids.
type SearchRef<'a> = dyn Fn(usize) -> Vec<u32> + Sync + 'a;
type SearchFn<'a> = Box<SearchRef<'a>>;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    base: PathBuf,
    #[arg(long)]
    query: PathBuf,
    #[arg(long)]
    gt: Option<PathBuf>,
    /// ip (cosine on unit vectors) or l2.
    #[arg(long, default_value = "ip")]
    metric: String,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 100)]
    efc: usize,
    #[arg(long, default_value_t = 48)]
    pq_m: usize,
    #[arg(long, default_value_t = 1024)]
    nlist: usize,
    /// Re-scored candidates per result for PQ indexes.
    #[arg(long, default_value_t = 10.0)]
    oversampling: f32,
    /// SQ8 rows: re-score the best this × k of the beam (at least 20).
    #[arg(long, default_value_t = 3.0)]
    sq_oversampling: f32,
    /// Rows: exact, hnsw, hnsw-sq8 (graph and traversal on SQ8 codes),
    /// hnsw-f32-sq8 (graph on f32, traversal on SQ8), hnsw-pq, ivf-pq,
    /// instant-distance.
    #[arg(
        long,
        default_value = "exact,hnsw,hnsw-sq8,hnsw-pq,ivf-pq,instant-distance"
    )]
    only: String,
}

fn read_vecs(path: &Path) -> (Vec<u32>, usize) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let d = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let row = 4 * (d + 1);
    assert_eq!(b.len() % row, 0, "{}: not a TexMex file", path.display());
    let mut out = Vec::with_capacity(b.len() / row * d);
    for r in b.chunks_exact(row) {
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()) as usize, d);
        out.extend(
            r[4..]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
        );
    }
    (out, d)
}

fn fvecs(path: &Path) -> (Vec<f32>, usize) {
    let (w, d) = read_vecs(path);
    (w.into_iter().map(f32::from_bits).collect(), d)
}

fn recall(found: &[Vec<u32>], gt: &[Vec<u32>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(gt)
        .map(|(f, g)| f.iter().take(K).filter(|x| g[..K].contains(x)).count())
        .sum();
    hits as f64 / (K * found.len()) as f64
}

/// Best queries/s of up to 5 passes within ~1 s, one query at a time on
/// one thread, or spread over all threads.
fn timed(nq: usize, parallel: bool, f: &SearchRef<'_>) -> (Vec<Vec<u32>>, f64) {
    let mut best = 0.0f64;
    let mut first = None;
    let mut total = 0.0;
    for _ in 0..5 {
        let t = Instant::now();
        let out: Vec<Vec<u32>> = if parallel {
            (0..nq).into_par_iter().map(f).collect()
        } else {
            (0..nq).map(f).collect()
        };
        let dt = t.elapsed().as_secs_f64();
        total += dt;
        best = best.max(nq as f64 / dt);
        first.get_or_insert(out);
        if total >= 1.0 {
            break;
        }
    }
    (first.unwrap(), best)
}

fn qps_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    if pts.is_empty() || pts.last().unwrap().0 < target {
        return None;
    }
    if pts[0].0 >= target {
        return pts
            .iter()
            .filter(|p| p.0 >= target)
            .map(|p| p.1)
            .reduce(f64::max);
    }
    for w in pts.windows(2) {
        let ((r0, q0), (r1, q1)) = (w[0], w[1]);
        if r0 < target && target <= r1 {
            if r1 == r0 {
                return Some(q1);
            }
            let t = (target - r0) / (r1 - r0);
            return Some((q0.ln() + t * (q1.ln() - q0.ln())).exp());
        }
    }
    None
}

struct Row {
    name: String,
    build_s: f64,
    mem_mib: f64,
    sweep: Vec<(String, f64, f64, f64)>,
}

#[derive(Clone)]
struct IdPoint(Vec<f32>, bool);
impl instant_distance::Point for IdPoint {
    fn distance(&self, o: &Self) -> f32 {
        if self.1 {
            1.0 - distance::dot(&self.0, &o.0)
        } else {
            distance::l2_sq(&self.0, &o.0)
        }
    }
}

fn main() {
    let a = Args::parse();
    let only: Vec<&str> = a.only.split(',').collect();
    let (base_vec, dim) = fvecs(&a.base);
    let base: &[f32] = &base_vec;
    let (queries, qd) = fvecs(&a.query);
    assert_eq!(dim, qd);
    let n = base.len() / dim;
    let nq = queries.len() / dim;
    let dot = a.metric == "ip";
    let metric = if dot { Metric::Dot } else { Metric::Euclidean };
    let q = |i: usize| &queries[i * dim..(i + 1) * dim];
    let threads = rayon::current_num_threads();
    let gt_path =
        a.gt.clone()
            .unwrap_or_else(|| a.query.with_extension("gt.ivecs"));
    let gt: Vec<Vec<u32>> = if gt_path.exists() {
        let (w, k) = read_vecs(&gt_path);
        w.chunks(k).map(|c| c.to_vec()).collect()
    } else {
        let gt: Vec<Vec<u32>> = (0..nq)
            .into_par_iter()
            .map(|i| {
                exact_scan(metric, base, dim, q(i), 100, &|_| true)
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect()
            })
            .collect();
        let mut b = Vec::new();
        for row in &gt {
            b.extend((row.len() as u32).to_le_bytes());
            for id in row {
                b.extend(id.to_le_bytes());
            }
        }
        std::fs::write(&gt_path, b).unwrap();
        eprintln!("wrote exact ground truth to {}", gt_path.display());
        gt
    };
    // Exact re-scoring of an index's candidates for query `i`: the best K ids.
    let rescored = |i: usize, cands: Vec<(u32, f32)>| -> Vec<u32> {
        rescore(
            metric,
            base,
            dim,
            q(i),
            cands.into_iter().map(|(id, _)| id),
            K,
        )
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    };
    let rescored = &rescored;
    println!("# {n} base vectors, {nq} queries, dim {dim}, metric {}, M={} ef_construction={}, {threads} threads", a.metric, a.m, a.efc);
    let efs = [
        10usize, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
    ];
    let f32_mib = (n * dim * 4) as f64 / (1 << 20) as f64;
    let mut rows: Vec<Row> = Vec::new();
    let run_sweep = |name: &str,
                     build_s: f64,
                     mem_mib: f64,
                     points: Vec<(String, &SearchRef<'_>)>| {
        let mut sweep = Vec::new();
        for (label, f) in points {
            let (found, q1) = timed(nq, false, f);
            let (_, qa) = timed(nq, true, f);
            let r = recall(&found, &gt);
            eprintln!("{name:>16} {label:>11}  recall@10 {r:.4}  1 thread {q1:>9.0} q/s  {threads} threads {qa:>9.0} q/s");
            sweep.push((label, r, q1, qa));
        }
        Row {
            name: name.into(),
            build_s,
            mem_mib,
            sweep,
        }
    };
    if only.contains(&"exact") {
        let f = |i: usize| {
            exact_scan(metric, base, dim, q(i), K, &|_| true)
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        rows.push(run_sweep(
            "exact scan",
            0.0,
            f32_mib,
            vec![("exact".into(), &f)],
        ));
        // Batched exact scan: 64 queries against every base vector at once.
        let batched = |qs: &[usize]| -> Vec<Vec<u32>> {
            let mut tops: Vec<TopK<u32>> = qs.iter().map(|_| TopK::new(K)).collect();
            for (bi, v) in base.chunks_exact(dim).enumerate() {
                for (t, &qi) in tops.iter_mut().zip(qs) {
                    let s = if dot {
                        distance::dot(q(qi), v)
                    } else {
                        -distance::l2_sq(q(qi), v)
                    };
                    t.push(s, bi as u32);
                }
            }
            tops.into_iter()
                .map(|t| t.into_sorted().into_iter().map(|(id, _)| id).collect())
                .collect()
        };
        let t = Instant::now();
        let chunks: Vec<Vec<usize>> = (0..nq)
            .collect::<Vec<_>>()
            .chunks(64)
            .map(|c| c.to_vec())
            .collect();
        let found: Vec<Vec<u32>> = chunks.par_iter().flat_map_iter(|c| batched(c)).collect();
        let qa = nq as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _: Vec<Vec<u32>> = chunks.iter().take(4).flat_map(|c| batched(c)).collect();
        let q1 = (4 * 64).min(nq) as f64 / t.elapsed().as_secs_f64();
        rows.push(Row {
            name: "exact scan, batches of 64".into(),
            build_s: 0.0,
            mem_mib: f32_mib,
            sweep: vec![("exact".into(), recall(&found, &gt), q1, qa)],
        });
    }
    if only.contains(&"hnsw") {
        let space = F32Space {
            vectors: base,
            dim,
            dot,
        };
        let t = Instant::now();
        let g = Hnsw::build(
            &space,
            n,
            HnswParams {
                m: a.m,
                ef_construction: a.efc,
                seed: 42,
            },
        );
        let bs = t.elapsed().as_secs_f64();
        let fs: Vec<(usize, SearchFn<'_>)> = efs
            .iter()
            .map(|&ef| {
                let (g, space) = (&g, &space);
                let f: SearchFn<'_> = Box::new(move |i| {
                    g.search(space, &Query::Vector(q(i)), K, ef, &|_| true)
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect()
                });
                (ef, f)
            })
            .collect();
        let mem = f32_mib + g.bytes() as f64 / (1 << 20) as f64;
        rows.push(run_sweep(
            "ours HNSW",
            bs,
            mem,
            fs.iter()
                .map(|(ef, f)| (format!("ef={ef}"), f.as_ref()))
                .collect(),
        ));
    }
    for (row, graph_on_codes) in [("hnsw-sq8", true), ("hnsw-f32-sq8", false)] {
        if !only.contains(&row) {
            continue;
        }
        // The whole build: quantize, then the graph (on the codes or on f32).
        let t = Instant::now();
        let codes = Sq8::build(base, dim);
        let space = Sq8Space { codes: &codes, dot };
        let p = HnswParams {
            m: a.m,
            ef_construction: a.efc,
            seed: 42,
        };
        let g = if graph_on_codes {
            Hnsw::build(&space, n, p)
        } else {
            Hnsw::build(
                &F32Space {
                    vectors: base,
                    dim,
                    dot,
                },
                n,
                p,
            )
        };
        let bs = t.elapsed().as_secs_f64();
        let fs: Vec<(usize, SearchFn<'_>)> = efs
            .iter()
            .map(|&ef| {
                let (g, space, codes) = (&g, &space, &codes);
                let f: SearchFn<'_> = Box::new(move |i| {
                    let sq = Query::Sq8(codes.query(q(i), dot));
                    let ef = ef.max(K);
                    let kk = sq_rescored(K, a.sq_oversampling, ef);
                    let cands = g.search(space, &sq, kk, ef, &|_| true);
                    rescored(i, cands)
                });
                (ef, f)
            })
            .collect();
        // In RAM: codes + graph; the f32 vectors stay on disk for re-scoring.
        let mem = (codes.code_bytes() + g.bytes()) as f64 / (1 << 20) as f64;
        let name = if graph_on_codes {
            "ours HNSW+SQ8"
        } else {
            "ours HNSW (f32 graph)+SQ8"
        };
        rows.push(run_sweep(
            name,
            bs,
            mem,
            fs.iter()
                .map(|(ef, f)| (format!("ef={ef}"), f.as_ref()))
                .collect(),
        ));
    }
    if only.contains(&"hnsw-pq") {
        let t = Instant::now();
        let g = Hnsw::build(
            &F32Space {
                vectors: base,
                dim,
                dot,
            },
            n,
            HnswParams {
                m: a.m,
                ef_construction: a.efc,
                seed: 42,
            },
        );
        let codes = PqCodes::build(base, dim, a.pq_m, 7).unwrap();
        let bs = t.elapsed().as_secs_f64();
        let space = PqSpace {
            codes: &codes,
            vectors: base,
            dot,
        };
        let kk = (K as f32 * a.oversampling) as usize;
        let fs: Vec<(usize, SearchFn<'_>)> = efs
            .iter()
            .filter(|&&ef| ef >= 24)
            .map(|&ef| {
                let (g, space, codes) = (&g, &space, &codes);
                let f: SearchFn<'_> = Box::new(move |i| {
                    let table = Query::Table(codes.pq.table(q(i), dot));
                    let cands = g.search(space, &table, kk, ef.max(kk), &|_| true);
                    rescored(i, cands)
                });
                (ef, f)
            })
            .collect();
        // In RAM: codes + graph; the f32 vectors stay on disk for re-scoring.
        let mem = (codes.code_bytes() + g.bytes()) as f64 / (1 << 20) as f64;
        eprintln!(
            "hnsw+pq: codes {:.1} MiB = 1/{:.0} of f32 vectors",
            codes.code_bytes() as f64 / (1 << 20) as f64,
            f32_mib / (codes.code_bytes() as f64 / (1 << 20) as f64)
        );
        rows.push(run_sweep(
            &format!("ours HNSW+PQ{}", a.pq_m),
            bs,
            mem,
            fs.iter()
                .map(|(ef, f)| (format!("ef={ef}"), f.as_ref()))
                .collect(),
        ));
    }
    if only.contains(&"ivf-pq") {
        let t = Instant::now();
        let ivf = Ivf::build(base, dim, a.nlist, a.pq_m, 7).unwrap();
        let bs = t.elapsed().as_secs_f64();
        let kk = (K as f32 * a.oversampling) as usize;
        let fs: Vec<(usize, SearchFn<'_>)> = [1usize, 2, 4, 8, 16, 32, 64, 128, 256]
            .iter()
            .map(|&np| {
                let ivf = &ivf;
                let f: SearchFn<'_> = Box::new(move |i| {
                    let cands = ivf.candidates(q(i), dot, np, kk, false, &|_| true);
                    rescored(i, cands)
                });
                (np, f)
            })
            .collect();
        let mem = ivf.code_bytes() as f64 / (1 << 20) as f64;
        rows.push(run_sweep(
            &format!("ours IVF-PQ{}", a.pq_m),
            bs,
            mem,
            fs.iter()
                .map(|(np, f)| (format!("nprobe={np}"), f.as_ref()))
                .collect(),
        ));
    }
    if only.contains(&"instant-distance") {
        let pts: Vec<IdPoint> = base
            .chunks_exact(dim)
            .map(|v| IdPoint(v.to_vec(), dot))
            .collect();
        let vals: Vec<u32> = (0..n as u32).collect();
        let t = Instant::now();
        let map = instant_distance::Builder::default()
            .ef_construction(a.efc)
            .ef_search(64)
            .seed(42)
            .build(pts, vals);
        let bs = t.elapsed().as_secs_f64();
        let f = |i: usize| {
            let mut s = instant_distance::Search::default();
            map.search(&IdPoint(q(i).to_vec(), dot), &mut s)
                .take(K)
                .map(|item| *item.value)
                .collect()
        };
        rows.push(run_sweep(
            "instant-distance",
            bs,
            f32_mib,
            vec![("ef=64".into(), &f)],
        ));
    }
    println!("\n| index | build s | build vectors/s | memory MiB | qps@0.90 1t | qps@0.95 1t | qps@0.99 1t | qps@0.95 {threads}t | max recall@10 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    for r in &rows {
        let one: Vec<(f64, f64)> = r.sweep.iter().map(|s| (s.1, s.2)).collect();
        let all: Vec<(f64, f64)> = r.sweep.iter().map(|s| (s.1, s.3)).collect();
        let bvs = if r.build_s > 0.0 {
            format!("{:.0}", n as f64 / r.build_s)
        } else {
            "-".into()
        };
        println!(
            "| {} | {:.1} | {} | {:.0} | {} | {} | {} | {} | {:.4} |",
            r.name,
            r.build_s,
            bvs,
            r.mem_mib,
            fmt(qps_at(&one, 0.90)),
            fmt(qps_at(&one, 0.95)),
            fmt(qps_at(&one, 0.99)),
            fmt(qps_at(&all, 0.95)),
            r.sweep.iter().map(|s| s.1).fold(0.0, f64::max)
        );
    }
    println!("\nSweep (recall@10, queries/s on 1 thread / {threads} threads):");
    for r in &rows {
        let pts: Vec<String> = r
            .sweep
            .iter()
            .map(|s| format!("{} {:.3} {:.0}/{:.0}", s.0, s.1, s.2, s.3))
            .collect();
        println!("- {}: {}", r.name, pts.join("; "));
    }
}
