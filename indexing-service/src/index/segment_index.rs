//! The index of one sealed segment: which kind, its settings, building it
//! when the segment is sealed, opening it (memory-map or read; never a
//! rebuild), and searching with it.
//!
//! Search contract (what `collection` relies on): results are offsets that
//! pass `accept` (callers fold "not deleted" and the payload filter into
//! it), at most `k`, best first, scored higher-is-better (similarity, or
//! negated squared L2). Quantized traversals re-score with the exact f32
//! vectors (SQ8: the whole beam of `ef`; PQ: the best `oversampling × k`),
//! so scores are always exact.
//!
//! Quantization (per collection): `scalar` (the default for HNSW) keeps
//! one byte per dimension (`sq8.bin`, memory-mapped) and builds and
//! traverses the graph on those codes with VNNI integer dot products;
//! `pq` keeps `subvectors` bytes per vector; `none` traverses f32.
//!
//! Filtered search returns `min(k, accepted points)` offsets on every path.
//! A spread sample of 256 offsets is checked against the filter and scored
//! exactly: when few points match (under `exact_scan_below` of the
//! segment, or fewer than `2·ef`), or when the matches lie behind more
//! than half of the segment as seen from the query (a traversal would
//! visit all of those, each checked against the filter), an exact scan
//! over the matching points is both cheaper and exact. Otherwise the index
//! is used: a graph is traversed through non-matching nodes, its beam
//! seeded with the best sampled matches and widened (×4) when rejected
//! points stand between the query and its matches; IVF scans lists past
//! `nprobe` until enough accepted candidates were found. An index answer
//! shorter than `min(k, n)` is replaced by an exact scan. The filter is
//! evaluated at most once per offset and query (memoized).
//!
//! Bounds: `validate` holds new settings to `shared::wire::limits`; a
//! `collection.json` written before those bounds may still carry larger
//! values, so search clamps `ef` to the bound and every beam and candidate
//! list to the segment's size, and a build clamps `m` and
//! `ef_construction`: no allocation is sized by an unchecked setting.

use super::hnsw::{F32Space, Hnsw, HnswParams, Query};
use super::pq::{Ivf, PqCodes, PqSpace};
use super::sq::{Sq8, Sq8Space};
use super::{exact_scan, score, TopK};
use serde::{Deserialize, Serialize};
use shared::wire::indexing::Metric;
use shared::wire::limits::{self, check_range};
use std::cell::Cell;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    #[default]
    Hnsw,
    IvfPq,
    /// No index: exact scan only.
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HnswSettings {
    /// Links per node on upper levels (2·m on level 0): 2 to 256.
    #[schema(minimum = 2, maximum = 256)]
    pub m: usize,
    /// Beam width while building: 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub ef_construction: usize,
    /// Default beam width per query (a query may override it): 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub ef: usize,
}

/// The defaults reach recall@10 ≥ 0.99 on real sentence embeddings
/// (all-MiniLM-L6-v2 WordNet glosses searched by lemma: 0.992 over 50,000,
/// 0.999 over the 10,000 of the CI fixture). Chosen from a sweep
/// (docs/BENCHMARKS.md): at recall 0.99 m = 24 with ef_construction = 200
/// answers 1.8x the queries/s of m = 16 with ef_construction = 100 (which
/// needs ef ≈ 512 there) for twice the build time; m = 32 with
/// ef_construction = 400 is 1.3x faster again but builds 2x slower still.
impl Default for HnswSettings {
    fn default() -> Self {
        Self {
            m: 24,
            ef_construction: 200,
            ef: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IvfSettings {
    /// Coarse lists: 0 to 65536; 0 = about 4·√n per segment (never more
    /// lists than points).
    #[schema(minimum = 0, maximum = 65536)]
    pub nlist: usize,
    /// Default lists scanned per query (a query may override it): 1 to
    /// 65536.
    #[schema(minimum = 1, maximum = 65536)]
    pub nprobe: usize,
}

impl Default for IvfSettings {
    fn default() -> Self {
        Self {
            nlist: 0,
            nprobe: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Quantization {
    /// Graph built and traversed on f32 vectors.
    None,
    /// 8-bit scalar quantization (one byte per dimension, a quarter of
    /// f32): the graph is built and traversed on the codes; the best
    /// `oversampling × k` of the beam (at least 20, at most `ef`) are
    /// re-scored exactly. `oversampling`: 1 to 100 (default 3).
    Scalar {
        #[serde(default = "default_sq_oversampling")]
        #[schema(minimum = 1, maximum = 100)]
        oversampling: f32,
    },
    /// Product quantization: `subvectors` bytes per vector (0 to 65536;
    /// must divide the dimension; 0 = the largest divisor of the dimension up
    /// to dimension / 8), re-scoring
    /// `oversampling × k` (`oversampling`: 1 to 100, default 4).
    Pq {
        #[serde(default)]
        #[schema(minimum = 0, maximum = 65536)]
        subvectors: usize,
        #[serde(default = "default_oversampling")]
        #[schema(minimum = 1, maximum = 100)]
        oversampling: f32,
    },
}

fn default_oversampling() -> f32 {
    4.0
}

fn default_sq_oversampling() -> f32 {
    3.0
}

impl Default for Quantization {
    fn default() -> Self {
        Quantization::Scalar {
            oversampling: default_sq_oversampling(),
        }
    }
}

/// Per-collection index settings (`collection.json` → `index`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSettings {
    pub kind: IndexKind,
    pub hnsw: HnswSettings,
    pub ivf: IvfSettings,
    pub quantization: Quantization,
    /// Segments with fewer points are only scanned.
    pub min_points: usize,
    /// Filtered queries matching less than this share of a segment scan.
    pub exact_scan_below: f32,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            kind: IndexKind::Hnsw,
            hnsw: HnswSettings::default(),
            ivf: IvfSettings::default(),
            quantization: Quantization::default(),
            min_points: 1000,
            exact_scan_below: 0.03,
        }
    }
}

impl IndexSettings {
    /// Checks every size against `shared::wire::limits` (no dimension
    /// needed): `hnsw.m`, `hnsw.ef_construction`, `hnsw.ef`, `ivf.nlist`,
    /// `ivf.nprobe`, `quantization.subvectors`, `quantization.oversampling`.
    /// Errors: a message naming the first field out of bounds and the bound.
    pub fn check_bounds(&self) -> Result<(), String> {
        let h = &self.hnsw;
        check_range("hnsw.m", h.m, limits::MIN_M, limits::MAX_M)?;
        check_range(
            "hnsw.ef_construction",
            h.ef_construction,
            limits::MIN_EF_CONSTRUCTION,
            limits::MAX_EF_CONSTRUCTION,
        )?;
        check_range("hnsw.ef", h.ef, limits::MIN_EF, limits::MAX_EF)?;
        check_range(
            "ivf.nlist",
            self.ivf.nlist,
            limits::MIN_NLIST,
            limits::MAX_NLIST,
        )?;
        check_range(
            "ivf.nprobe",
            self.ivf.nprobe,
            limits::MIN_NPROBE,
            limits::MAX_NPROBE,
        )?;
        let oversampling = match self.quantization {
            Quantization::None => None,
            Quantization::Scalar { oversampling } => Some(oversampling),
            Quantization::Pq {
                subvectors,
                oversampling,
            } => {
                check_range(
                    "quantization.subvectors",
                    subvectors,
                    limits::MIN_SUBVECTORS,
                    limits::MAX_SUBVECTORS,
                )?;
                Some(oversampling)
            }
        };
        if let Some(o) = oversampling {
            check_range(
                "quantization.oversampling",
                o,
                limits::MIN_OVERSAMPLING,
                limits::MAX_OVERSAMPLING,
            )?;
        }
        Ok(())
    }

    /// [`Self::check_bounds`], then what depends on the dimension `dim`:
    /// PQ's `subvectors` must divide it. Errors: a message naming the field.
    pub fn validate(&self, dim: usize) -> Result<(), String> {
        self.check_bounds()?;
        if let Some((m, _)) = self.pq(dim) {
            if m == 0 || !dim.is_multiple_of(m) {
                return Err(format!(
                    "`quantization.subvectors` ({m}) must divide the dimension ({dim})"
                ));
            }
        }
        Ok(())
    }

    fn pq(&self, dim: usize) -> Option<(usize, f32)> {
        match self.quantization {
            Quantization::Pq {
                subvectors,
                oversampling,
            } => Some((
                if subvectors == 0 {
                    default_subvectors(dim)
                } else {
                    subvectors
                },
                oversampling,
            )),
            _ if self.kind == IndexKind::IvfPq => Some((default_subvectors(dim), 4.0)),
            Quantization::None | Quantization::Scalar { .. } => None,
        }
    }
}

/// PQ's default number of subvectors for dimension `dim`: about one per 8
/// dimensions, and always a divisor of `dim` — the largest divisor not above
/// `max(dim / 8, 1)` (384 → 48, 300 → 30, 100 → 10, 50 → 5, 7 → 1).
pub fn default_subvectors(dim: usize) -> usize {
    let cap = (dim / 8).max(1);
    (1..=cap)
        .rev()
        .find(|m| dim.is_multiple_of(*m))
        .unwrap_or(1)
}

/// Per-query knobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchParams {
    pub ef: Option<usize>,
    pub nprobe: Option<usize>,
    /// Brute force, for checking.
    #[serde(default)]
    pub exact: bool,
}

pub enum SegmentIndex {
    Hnsw {
        graph: Hnsw,
        pq: Option<(PqCodes, f32)>,
        /// SQ8 codes and their oversampling.
        sq: Option<(Sq8, f32)>,
    },
    IvfPq {
        ivf: Ivf,
        oversampling: f32,
    },
}

impl SegmentIndex {
    /// Builds the index the settings ask for over `vectors` and writes its
    /// files into `dir`; `None` when the segment is too small or `flat`.
    pub fn build(
        dir: &Path,
        s: &IndexSettings,
        metric: Metric,
        vectors: &[f32],
        dim: usize,
    ) -> Result<Option<SegmentIndex>, String> {
        let n = vectors.len() / dim.max(1);
        if n < s.min_points.max(1) || s.kind == IndexKind::Flat {
            return Ok(None);
        }
        let dot = metric != Metric::Euclidean;
        let io = |e: std::io::Error| e.to_string();
        let idx = match s.kind {
            IndexKind::Hnsw => {
                // `Hnsw::build` clamps both to the bounds (settings read
                // back from an older collection.json may exceed them).
                let p = HnswParams {
                    m: s.hnsw.m,
                    ef_construction: s.hnsw.ef_construction,
                    seed: 42,
                };
                let sq = match (s.quantization, s.pq(dim)) {
                    (Quantization::Scalar { oversampling }, None) => {
                        let codes = Sq8::build(vectors, dim);
                        codes.write(&dir.join("sq8.bin")).map_err(io)?;
                        Some((codes, oversampling))
                    }
                    _ => None,
                };
                let graph = match &sq {
                    Some((codes, _)) => Hnsw::build(&Sq8Space { codes, dot }, n, p),
                    None => Hnsw::build(&F32Space { vectors, dim, dot }, n, p),
                };
                graph.write(&dir.join("hnsw.bin")).map_err(io)?;
                let pq = match s.pq(dim) {
                    Some((m, over)) => {
                        let codes = PqCodes::build(vectors, dim, m, 7)?;
                        codes.write(&dir.join("pq.bin")).map_err(io)?;
                        Some((codes, over))
                    }
                    None => None,
                };
                SegmentIndex::Hnsw { graph, pq, sq }
            }
            IndexKind::IvfPq => {
                let (m, over) = s.pq(dim).expect("ivf_pq quantizes");
                let nlist = if s.ivf.nlist == 0 {
                    ((n as f64).sqrt() * 4.0) as usize
                } else {
                    s.ivf.nlist
                };
                let ivf = Ivf::build(vectors, dim, nlist.max(1), m, 7)?;
                ivf.write(&dir.join("ivf.bin")).map_err(io)?;
                SegmentIndex::IvfPq {
                    ivf,
                    oversampling: over,
                }
            }
            IndexKind::Flat => unreachable!(),
        };
        Ok(Some(idx))
    }

    /// Opens what `build` wrote, if anything.
    pub fn open(dir: &Path, s: &IndexSettings, dim: usize) -> Result<Option<SegmentIndex>, String> {
        if dir.join("hnsw.bin").exists() {
            let graph = Hnsw::open(&dir.join("hnsw.bin"))?;
            let pq = if dir.join("pq.bin").exists() {
                let over = s.pq(dim).map(|(_, o)| o).unwrap_or(4.0);
                Some((PqCodes::open(&dir.join("pq.bin"))?, over))
            } else {
                None
            };
            let sq = if dir.join("sq8.bin").exists() {
                let over = match s.quantization {
                    Quantization::Scalar { oversampling } => oversampling,
                    _ => default_sq_oversampling(),
                };
                Some((Sq8::open(&dir.join("sq8.bin"))?, over))
            } else {
                None
            };
            return Ok(Some(SegmentIndex::Hnsw { graph, pq, sq }));
        }
        if dir.join("ivf.bin").exists() {
            let over = s.pq(dim).map(|(_, o)| o).unwrap_or(4.0);
            return Ok(Some(SegmentIndex::IvfPq {
                ivf: Ivf::open(&dir.join("ivf.bin"))?,
                oversampling: over,
            }));
        }
        Ok(None)
    }

    /// RAM the index needs besides the memory-mapped f32 vectors: graph +
    /// codes (the graph itself is memory-mapped too).
    pub fn ram_bytes(&self) -> usize {
        match self {
            SegmentIndex::Hnsw { graph, pq, sq } => {
                graph.bytes()
                    + pq.as_ref().map_or(0, |(c, _)| c.code_bytes())
                    + sq.as_ref().map_or(0, |(c, _)| c.code_bytes())
            }
            SegmentIndex::IvfPq { ivf, .. } => ivf.code_bytes(),
        }
    }

    /// Whether vectors are kept in RAM only as codes.
    pub fn quantized(&self) -> bool {
        matches!(
            self,
            SegmentIndex::Hnsw { pq: Some(_), .. }
                | SegmentIndex::Hnsw { sq: Some(_), .. }
                | SegmentIndex::IvfPq { .. }
        )
    }
}

/// How many of an SQ8 beam of `ef` are re-scored for the best `k`:
/// `oversampling × k`, at least 20, at most `ef` (and never below `k`).
pub fn sq_rescored(k: usize, oversampling: f32, ef: usize) -> usize {
    ((k as f32 * oversampling).ceil() as usize)
        .max(20)
        .min(ef)
        .max(k)
}

/// How many PQ candidates are re-scored for the best `k` of `n` points:
/// `oversampling × k` (oversampling held to its bounds), at least `k`, at
/// most `n`.
fn pq_rescored(k: usize, oversampling: f32, n: usize) -> usize {
    ((k as f32 * clamp_oversampling(oversampling)).ceil() as usize)
        .min(n)
        .max(k)
}

/// Exact re-scoring of candidate offsets: the best `k` by `score`.
pub fn rescore(
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    cands: impl Iterator<Item = u32>,
    k: usize,
) -> Vec<(u32, f32)> {
    let mut top = TopK::new(k);
    for id in cands {
        top.push(
            score(
                metric,
                q,
                &vectors[id as usize * dim..(id as usize + 1) * dim],
            ),
            id,
        );
    }
    top.into_sorted()
}

/// Re-scoring factor as used at search time: within
/// `MIN_OVERSAMPLING..=MAX_OVERSAMPLING` (1 for NaN), whatever an older
/// `collection.json` says.
fn clamp_oversampling(o: f32) -> f32 {
    if o.is_nan() {
        limits::MIN_OVERSAMPLING
    } else {
        o.clamp(limits::MIN_OVERSAMPLING, limits::MAX_OVERSAMPLING)
    }
}

/// Offsets sampled (evenly spread) to estimate a filter's selectivity in a
/// segment.
const SAMPLE: usize = 256;

/// A filtered search scans the matching points exactly when the points
/// nearer the query than the matches an index must gather are estimated to
/// be more than this share of the segment: a traversal visits all of them
/// (and their neighbours), each checked against the filter, which costs
/// more than checking every point once and scoring the matches.
pub const MAX_DETOUR: f64 = 0.5;

/// Sampled matches nearest the query that seed a filtered graph traversal.
const SEEDS: usize = 8;

/// How a filtered search of one segment proceeds.
enum FilteredPlan {
    /// Scan the matching points exactly.
    Exact,
    /// Use the index; a graph starts from these matches too (sampled
    /// offsets that pass the filter, best first). `far`: the matches lie
    /// behind points the filter rejects (a region of their own away from
    /// the query), so a graph's beam widens by [`FAR_EF_FACTOR`].
    Index { seeds: Vec<u32>, far: bool },
}

/// A graph's beam grows by this factor (within `limits::MAX_EF` and the
/// segment) when the matches lie away from the query. Such a query is, to
/// the matching points, one from outside their distribution, where a
/// greedy beam of the default `ef` settles on a local optimum; and the
/// traversal has to cross the rejected points nearer the query anyway, so
/// the wider beam adds little to its cost.
pub const FAR_EF_FACTOR: usize = 4;

/// How a filtered search over `n` points proceeds, against an index that
/// gathers `need` accepted candidates (the beam `ef` of a graph, the
/// candidate list of IVF).
///
/// From a spread sample of [`SAMPLE`] offsets: exact when the estimated
/// share of matches is under `exact_scan_below`, when fewer than `2·ef`
/// points are estimated to match, or when the matches lie away from the
/// query: among the sampled points ranked by their exact score, the one
/// standing for the `need`-th nearest match comes after more than
/// [`MAX_DETOUR`] of the sample. Otherwise the index, seeded with the
/// [`SEEDS`] best sampled matches, its beam widened when that sampled match
/// ranks more than twice as far down as evenly spread matches would.
#[allow(clippy::too_many_arguments)]
fn plan_filtered(
    settings: &IndexSettings,
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    ef: usize,
    need: usize,
    accept: &dyn Fn(u32) -> bool,
) -> FilteredPlan {
    let n = vectors.len() / dim.max(1);
    let step = (n / SAMPLE).max(1);
    let sample: Vec<(u32, bool)> = (0..n)
        .step_by(step)
        .map(|i| (i as u32, accept(i as u32)))
        .collect();
    let sampled = sample.len();
    let hits = sample.iter().filter(|(_, a)| *a).count();
    let est = hits as f64 / sampled as f64;
    if est < settings.exact_scan_below as f64 || est * (n as f64) < 2.0 * ef as f64 {
        return FilteredPlan::Exact;
    }
    // The `need` nearest matches stand for about `need · sampled / n`
    // sampled ones; every point nearer than them is in the index's way.
    let mut ranked: Vec<(f32, u32, bool)> = sample
        .iter()
        .map(|&(i, a)| {
            let v = &vectors[i as usize * dim..(i as usize + 1) * dim];
            (score(metric, q, v), i, a)
        })
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let m = (need as f64 * sampled as f64 / n as f64).ceil().max(1.0) as usize;
    let Some(rank) = ranked
        .iter()
        .enumerate()
        .filter(|(_, (_, _, a))| *a)
        .nth(m - 1)
        .map(|(r, _)| r + 1)
    else {
        return FilteredPlan::Exact;
    };
    if rank as f64 > MAX_DETOUR * sampled as f64 {
        return FilteredPlan::Exact;
    }
    // Spread evenly, the `m`-th of `hits` sampled matches would rank
    // about `m · sampled / hits`; twice that and more, points the filter
    // rejects stand between the query and its matches.
    let far = rank * hits > 2 * m * sampled;
    FilteredPlan::Index {
        far,
        seeds: ranked
            .iter()
            .filter(|(_, _, a)| *a)
            .take(SEEDS)
            .map(|&(_, i, _)| i)
            .collect(),
    }
}

/// Searches one segment's vectors with its index (or exactly): the best
/// `min(k, accepted)` accepted offsets, best first, scored higher-is-better.
///
/// The beam is `params.ef`, else `settings.hnsw.ef`, held to
/// `1..=limits::MAX_EF` (a persisted setting may exceed it), at least `k`
/// and at most the segment's `n` points; candidate lists (`oversampling ×
/// k`) are at most `n` too, so nothing allocated here outgrows the segment.
///
/// Filtered (`filtered`: `accept` evaluates a payload filter, so each call
/// costs; it is evaluated at most once per offset and query): see
/// [`plan_filtered`] for when the matching points are scanned exactly and
/// which matches seed a graph traversal.
/// Whatever the path, an index answer with fewer than `min(k, n)` offsets
/// (the graph or the lists held fewer accepted points than exist, e.g.
/// most of the segment deleted) is replaced by an exact scan, so the
/// answer always holds `min(k, accepted points)` offsets.
///
/// `matches`, when the payload indexes know it, is exactly the list of
/// accepted offsets (ascending): when scanning them costs less than a
/// filtered traversal ([`exact_beats_index`]) they are scored directly
/// ([`scan_rows`]: on SQ8 codes then re-scored, or in f32), with no
/// sampling and no pass over the rest of the segment.
#[allow(clippy::too_many_arguments)]
pub fn search_segment(
    index: Option<&SegmentIndex>,
    settings: &IndexSettings,
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    params: SearchParams,
    filtered: bool,
    accept: &dyn Fn(u32) -> bool,
    matches: Option<&[u32]>,
) -> Vec<(u32, f32)> {
    let n = vectors.len() / dim.max(1);
    let exact = |accept: &dyn Fn(u32) -> bool| match matches {
        // `exact`: every row scored in f32, no codes.
        Some(rows) => scan_rows(
            index.filter(|_| !params.exact),
            metric,
            vectors,
            dim,
            q,
            k,
            rows,
        ),
        None => exact_scan(metric, vectors, dim, q, k, accept),
    };
    let Some(index) = index.filter(|_| !params.exact && n > 0) else {
        return exact(accept);
    };
    if let Some(rows) = matches {
        if exact_beats_index(index, settings, params, k, n, rows.len()) {
            return exact(accept);
        }
    }
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut ef = params
        .ef
        .unwrap_or(settings.hnsw.ef)
        .clamp(limits::MIN_EF, limits::MAX_EF)
        .max(k)
        .min(n);
    // A filter is evaluated once per offset however often the estimate,
    // the traversal and a fallback scan ask (0 = not yet, 1 = yes, 2 = no).
    let mut memo = if filtered { vec![0u8; n] } else { Vec::new() };
    let memo = Cell::from_mut(memo.as_mut_slice()).as_slice_of_cells();
    let cached = |i: u32| match memo[i as usize].get() {
        1 => true,
        2 => false,
        _ => {
            let a = accept(i);
            memo[i as usize].set(if a { 1 } else { 2 });
            a
        }
    };
    let accept: &dyn Fn(u32) -> bool = if filtered { &cached } else { accept };
    let mut seeds = Vec::new();
    if filtered {
        let need = match index {
            SegmentIndex::Hnsw {
                pq: Some((_, o)), ..
            } => ef.max(pq_rescored(k, *o, n)),
            SegmentIndex::Hnsw { .. } => ef,
            SegmentIndex::IvfPq { oversampling, .. } => pq_rescored(k, *oversampling, n),
        };
        match plan_filtered(settings, metric, vectors, dim, q, ef, need, accept) {
            FilteredPlan::Exact => return exact(accept),
            FilteredPlan::Index { seeds: s, far } => {
                seeds = s;
                if far {
                    ef = ef.saturating_mul(FAR_EF_FACTOR).min(limits::MAX_EF).min(n);
                }
            }
        }
    }
    let found = search_index(
        index, settings, metric, vectors, dim, q, k, ef, params, filtered, &seeds, accept,
    );
    if found.len() < k {
        return exact(accept);
    }
    found
}

/// The best `k` of the known matches `rows`. With SQ8 codes (and more
/// rows than it re-scores), the rows are ranked on their one-byte codes
/// (a quarter of the memory an f32 scan reads) and the best
/// `oversampling × k` re-scored exactly, as a graph search's candidates
/// are; else every row is scored exactly.
fn scan_rows(
    index: Option<&SegmentIndex>,
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    rows: &[u32],
) -> Vec<(u32, f32)> {
    if let Some(SegmentIndex::Hnsw {
        sq: Some((codes, over)),
        ..
    }) = index
    {
        let kk = sq_rescored(k, clamp_oversampling(*over), usize::MAX);
        if rows.len() > 4 * kk {
            let dot = metric != Metric::Euclidean;
            let query = codes.query(q, dot);
            let mut top: TopK<u32> = TopK::new(kk);
            for &r in rows {
                // Distances: lower is closer.
                top.push(-codes.dist_query(&query, r), r);
            }
            return rescore(
                metric,
                vectors,
                dim,
                q,
                top.into_sorted().into_iter().map(|(r, _)| r),
                k,
            );
        }
    }
    crate::index::exact_scan_rows(metric, vectors, dim, q, k, rows)
}

/// Whether scoring `rows` known matches exactly costs less than a
/// filtered traversal of the index over `n` points. A graph gathering `ef`
/// matches at selectivity `rows / n` visits about `ef · n / rows` nodes and
/// scores their `2·m` neighbours on one-byte codes (a quarter of an f32
/// score each), against `rows` f32 scores for an exact scan: the scan
/// wins while `rows² < ef · n · 2m / 4`. Also when under
/// `exact_scan_below` of the segment or `2·ef` rows. IVF: the last two
/// only. (The scan ranks on SQ8 codes when there are codes, so the bound
/// could be 4x higher; measured on 117,000 MiniLM vectors in 3 segments,
/// the graph still won with half the points matching: 473 q/s against
/// 361.)
fn exact_beats_index(
    index: &SegmentIndex,
    settings: &IndexSettings,
    params: SearchParams,
    k: usize,
    n: usize,
    rows: usize,
) -> bool {
    let ef = params
        .ef
        .unwrap_or(settings.hnsw.ef)
        .clamp(limits::MIN_EF, limits::MAX_EF)
        .max(k);
    if (rows as f64) < settings.exact_scan_below as f64 * n as f64 || rows < 2 * ef {
        return true;
    }
    match index {
        SegmentIndex::Hnsw { .. } => {
            let m0 = 2.0 * settings.hnsw.m as f64;
            (rows as f64).powi(2) < ef as f64 * n as f64 * m0 / 4.0
        }
        SegmentIndex::IvfPq { .. } => false,
    }
}

/// The index part of [`search_segment`]: `k` and `ef` already bounded.
#[allow(clippy::too_many_arguments)]
fn search_index(
    index: &SegmentIndex,
    settings: &IndexSettings,
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    ef: usize,
    params: SearchParams,
    filtered: bool,
    seeds: &[u32],
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, f32)> {
    let n = vectors.len() / dim.max(1);
    let dot = metric != Metric::Euclidean;
    match index {
        SegmentIndex::Hnsw {
            graph,
            sq: Some((codes, over)),
            ..
        } => {
            let query = Query::Sq8(codes.query(q, dot));
            let kk = sq_rescored(k, clamp_oversampling(*over), ef);
            let cands =
                graph.search_seeded(&Sq8Space { codes, dot }, &query, kk, ef, accept, seeds);
            rescore(
                metric,
                vectors,
                dim,
                q,
                cands.into_iter().map(|(id, _)| id),
                k,
            )
        }
        SegmentIndex::Hnsw {
            graph, pq: None, ..
        } => graph
            .search_seeded(
                &F32Space { vectors, dim, dot },
                &Query::Vector(q),
                k,
                ef,
                accept,
                seeds,
            )
            .into_iter()
            .map(|(id, d)| (id, -d))
            .collect(),
        SegmentIndex::Hnsw {
            graph,
            pq: Some((codes, over)),
            ..
        } => {
            let kk = pq_rescored(k, *over, n);
            let table = Query::Table(codes.pq.table(q, dot));
            let cands = graph.search_seeded(
                &PqSpace {
                    codes,
                    vectors,
                    dot,
                },
                &table,
                kk,
                ef.max(kk),
                accept,
                seeds,
            );
            rescore(
                metric,
                vectors,
                dim,
                q,
                cands.into_iter().map(|(id, _)| id),
                k,
            )
        }
        SegmentIndex::IvfPq { ivf, oversampling } => {
            let kk = pq_rescored(k, *oversampling, n);
            // `Ivf::candidates` holds it to the segment's lists.
            let nprobe = params.nprobe.unwrap_or(settings.ivf.nprobe);
            let cands = ivf.candidates(q, dot, nprobe, kk, filtered, accept);
            rescore(
                metric,
                vectors,
                dim,
                q,
                cands.into_iter().map(|(id, _)| id),
                k,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default always divides the dimension (so no dimension makes a
    /// default PQ or IVF-PQ collection invalid), and stays near one
    /// subvector per 8 dimensions.
    #[test]
    fn default_subvectors_divide_every_dimension() {
        for dim in 1..=4096usize {
            let m = default_subvectors(dim);
            assert!(m >= 1 && dim.is_multiple_of(m), "dim {dim}: {m}");
            assert!(m <= (dim / 8).max(1), "dim {dim}: {m}");
        }
        assert_eq!(default_subvectors(384), 48);
        assert_eq!(default_subvectors(300), 30);
        assert_eq!(default_subvectors(100), 10);
        assert_eq!(default_subvectors(50), 5);
        assert_eq!(default_subvectors(4), 1);
    }
}
