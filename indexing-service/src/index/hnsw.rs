//! HNSW (Malkov & Yashunin), in the paper's terms: `M` links per node on
//! upper levels, `M0 = 2·M` on level 0, `ef_construction` at build time, `ef`
//! per query, levels drawn with `mL = 1/ln(M)`.
//!
//! The graph is built in parallel (one lock per node, neighbour selection by
//! the paper's heuristic) directly in one array of `u32` words laid out as
//! the file (allocated once at its final size: no per-node lists, no copy
//! when finishing), which is also the file format (`hnsw.bin`, little-endian, memory-mapped on
//! open; opening builds nothing):
//!
//! | words | content |
//! |---|---|
//! | 0..8 | magic `HNSW`, version 1, n, M, M0, entry point (`u32::MAX` when empty), max level, ef_construction |
//! | n | level of each node |
//! | n × (M0 + 1) | level 0: per node a count then M0 slots |
//! | n + 1 | start of each node's upper levels, in units of (M + 1) words |
//! | … | upper levels 1..=level per node: a count then M slots each |
//!
//! Search invariants: deleted or filtered-out nodes are traversed (so the
//! graph stays navigable) but never returned; `ef` bounds the accepted
//! results held, so exploration goes on until `ef` accepted nodes are held
//! (or every reachable node was visited); results are the best `k`, not
//! `ef`. Extra entry points (`search_seeded`) join the level-0 beam. Vectors are not stored here: the segment's memory-mapped vectors
//! (or PQ codes, see `quantized`) are passed in.
//!
//! Sizes: a search's beam and result heaps hold at most `min(ef, n)`
//! entries whatever `ef` the caller passes; a build holds `M` to
//! `2..=limits::MAX_M` (so `M0` fits the file's 512 slots) and
//! `ef_construction` to `M..=limits::MAX_EF_CONSTRUCTION`.

use super::distance;
use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use shared::wire::limits;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

const MAGIC: u32 = u32::from_le_bytes(*b"HNSW");
const VERSION: u32 = 1;
const HEADER: usize = 8;
/// Level-0 links per node at most (M ≤ 256, as settings allow).
const MAX_M0: usize = 512;

/// Distance used inside the graph: lower is closer.
pub trait Space: Sync {
    fn dist(&self, a: u32, b: u32) -> f32;
    fn dist_query(&self, q: &Query, b: u32) -> f32;
    fn prefetch(&self, _node: u32) {}
}

/// A query prepared for a space (the f32 vector, or a PQ lookup table).
pub enum Query<'a> {
    Vector(&'a [f32]),
    Table(Vec<f32>),
    Sq8(super::sq::Sq8Query),
}

/// Exact f32 vectors; `dot` is negated so lower is closer.
pub struct F32Space<'a> {
    pub vectors: &'a [f32],
    pub dim: usize,
    pub dot: bool,
}

impl F32Space<'_> {
    #[inline]
    fn v(&self, i: u32) -> &[f32] {
        &self.vectors[i as usize * self.dim..(i as usize + 1) * self.dim]
    }
}

impl Space for F32Space<'_> {
    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        if self.dot {
            -distance::dot(self.v(a), self.v(b))
        } else {
            distance::l2_sq(self.v(a), self.v(b))
        }
    }
    #[inline]
    fn dist_query(&self, q: &Query, b: u32) -> f32 {
        let Query::Vector(q) = q else {
            unreachable!("f32 space takes vector queries")
        };
        if self.dot {
            -distance::dot(q, self.v(b))
        } else {
            distance::l2_sq(q, self.v(b))
        }
    }
    #[inline]
    fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.vectors.as_ptr().wrapping_add(node as usize * self.dim) as *const i8;
            // SAFETY: prefetch never faults; the address may be anything.
            unsafe {
                std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0);
                std::arch::x86_64::_mm_prefetch(p.wrapping_add(64), std::arch::x86_64::_MM_HINT_T0);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Cand {
    d: f32,
    id: u32,
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    #[inline]
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    #[inline]
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Epoch-tagged visited marks, reused per thread: no clearing per query.
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks = vec![0; n];
            self.epoch = 0;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }
    /// Marks `i`; true when it was not yet visited.
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 100,
            seed: 42,
        }
    }
}

enum Words {
    Owned(Vec<u32>),
    Mapped(Mmap),
}

impl Words {
    #[inline]
    fn get(&self) -> &[u32] {
        match self {
            Words::Owned(v) => v,
            // SAFETY: the map is page-aligned and its length a multiple of 4
            // (checked on open); the file is never modified while mapped.
            Words::Mapped(m) => unsafe {
                std::slice::from_raw_parts(m.as_ptr() as *const u32, m.len() / 4)
            },
        }
    }
}

/// A flattened, immutable graph.
pub struct Hnsw {
    words: Words,
    n: usize,
    m: usize,
    m0: usize,
    entry: u32,
    max_level: usize,
    off_levels: usize,
    off_l0: usize,
    off_uoff: usize,
    off_upper: usize,
}

/// Neighbour selection heuristic (paper, algorithm 4, no extension): drop a
/// candidate when some kept neighbour is strictly closer to it than the base
/// is. Ties keep the candidate: with an exact duplicate of the base among
/// the kept, every other candidate is exactly as far from the duplicate as
/// from the base, and a strict test would leave the node linked to its
/// duplicate alone (islands of duplicates the search cannot leave).
fn select<S: Space>(space: &S, mut cands: Vec<Cand>, m: usize) -> Vec<u32> {
    cands.sort();
    let mut kept: Vec<Cand> = Vec::with_capacity(m);
    for c in cands {
        if kept.len() >= m {
            break;
        }
        if kept.iter().all(|k| space.dist(c.id, k.id) >= c.d) {
            kept.push(c);
        }
    }
    kept.into_iter().map(|c| c.id).collect()
}

/// The graph under construction, already in the file's layout: `words`
/// holds every node's lists (a count, then `M0` or `M` slots) where the
/// finished file has them, so building needs no per-node allocations and
/// finishing no copy (about `(M0 + 1) × 4` bytes per node, plus the upper
/// levels). A node's lists are read and written only under its lock in
/// `locks`; one lock is held at a time.
struct Builder {
    levels: Vec<u8>,
    words: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    off_l0: usize,
    off_uoff: usize,
    off_upper: usize,
    entry: RwLock<(u32, usize)>,
    m: usize,
    m0: usize,
    efc: usize,
}

impl Builder {
    /// The word index of `node`'s list at `level` (its count; the slots
    /// follow), or None above the node's level.
    #[inline]
    fn list_at(&self, node: u32, level: usize) -> Option<usize> {
        let n = node as usize;
        if level > self.levels[n] as usize {
            None
        } else if level == 0 {
            Some(self.off_l0 + n * (self.m0 + 1))
        } else {
            let start = self.words[self.off_uoff + n].load(AtomicOrdering::Relaxed) as usize;
            Some(self.off_upper + (start + level - 1) * (self.m + 1))
        }
    }

    /// Appends `node`'s links at `level` to `buf`; the caller holds the
    /// node's lock.
    #[inline]
    fn read_list(&self, node: u32, level: usize, buf: &mut Vec<u32>) {
        if let Some(at) = self.list_at(node, level) {
            let count = self.words[at].load(AtomicOrdering::Relaxed) as usize;
            buf.extend(
                self.words[at + 1..at + 1 + count]
                    .iter()
                    .map(|w| w.load(AtomicOrdering::Relaxed)),
            );
        }
    }

    /// Replaces `node`'s links at `level` with `list` (at most the level's
    /// capacity); the caller holds the node's lock.
    #[inline]
    fn write_list(&self, node: u32, level: usize, list: &[u32]) {
        let at = self.list_at(node, level).expect("a level the node has");
        self.words[at].store(list.len() as u32, AtomicOrdering::Relaxed);
        for (w, &x) in self.words[at + 1..].iter().zip(list) {
            w.store(x, AtomicOrdering::Relaxed);
        }
    }

    /// Copies a node's links at `level` into `buf` (no allocation once
    /// `buf` has grown), so the node's lock is held only for the copy.
    fn copy_links(&self, node: u32, level: usize, buf: &mut Vec<u32>) {
        buf.clear();
        let _g = self.locks[node as usize].lock();
        self.read_list(node, level, buf);
    }

    #[allow(clippy::too_many_arguments)]
    fn search_layer<S: Space>(
        &self,
        space: &S,
        q: u32,
        eps: &[Cand],
        ef: usize,
        level: usize,
        vis: &mut Visited,
        buf: &mut Vec<u32>,
    ) -> Vec<Cand> {
        let mut cand: BinaryHeap<std::cmp::Reverse<Cand>> = BinaryHeap::new();
        let mut res: BinaryHeap<Cand> = BinaryHeap::new();
        for &e in eps {
            if vis.insert(e.id) {
                cand.push(std::cmp::Reverse(e));
                res.push(e);
            }
        }
        while let Some(std::cmp::Reverse(c)) = cand.pop() {
            if res.len() >= ef && c.d > res.peek().unwrap().d {
                break;
            }
            self.copy_links(c.id, level, buf);
            // Keep the unvisited ones and start loading their vectors.
            buf.retain(|&nb| vis.insert(nb));
            for &nb in buf.iter() {
                space.prefetch(nb);
            }
            for &nb in buf.iter() {
                let d = space.dist(q, nb);
                if res.len() < ef || d < res.peek().unwrap().d {
                    cand.push(std::cmp::Reverse(Cand { d, id: nb }));
                    res.push(Cand { d, id: nb });
                    if res.len() > ef {
                        res.pop();
                    }
                }
            }
        }
        res.into_vec()
    }

    fn insert<S: Space>(&self, space: &S, q: u32, vis: &mut Visited, buf: &mut Vec<u32>, n: usize) {
        let l = self.levels[q as usize] as usize;
        let (entry, max_level) = *self.entry.read();
        if entry == q {
            return;
        }
        let mut ep = vec![Cand {
            d: space.dist(q, entry),
            id: entry,
        }];
        for level in (l + 1..=max_level).rev() {
            // Greedy descent.
            let mut cur = ep[0];
            loop {
                let mut moved = false;
                self.copy_links(cur.id, level, buf);
                for &nb in buf.iter() {
                    let d = space.dist(q, nb);
                    if d < cur.d {
                        cur = Cand { d, id: nb };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            ep = vec![cur];
        }
        for level in (0..=l.min(max_level)).rev() {
            vis.reset(n);
            let w = self.search_layer(space, q, &ep, self.efc, level, vis, buf);
            let cap = if level == 0 { self.m0 } else { self.m };
            // A concurrent insert may already have linked q at this level
            // (and so q may show up among its own candidates): never link a
            // node to itself, and merge with links others added meanwhile.
            let cands: Vec<Cand> = w.iter().copied().filter(|c| c.id != q).collect();
            let chosen = select(space, cands, self.m);
            {
                let _g = self.locks[q as usize].lock();
                let mut list = Vec::with_capacity(cap + chosen.len());
                self.read_list(q, level, &mut list);
                for &c in &chosen {
                    if !list.contains(&c) {
                        list.push(c);
                    }
                }
                if list.len() > cap {
                    let cands: Vec<Cand> = list
                        .iter()
                        .map(|&x| Cand {
                            d: space.dist(q, x),
                            id: x,
                        })
                        .collect();
                    list = select(space, cands, cap);
                }
                self.write_list(q, level, &list);
            }
            let mut list = Vec::with_capacity(cap + 1);
            for &e in &chosen {
                let _g = self.locks[e as usize].lock();
                list.clear();
                self.read_list(e, level, &mut list);
                if list.contains(&q) {
                    continue;
                }
                list.push(q);
                if list.len() > cap {
                    let cands: Vec<Cand> = list
                        .iter()
                        .map(|&x| Cand {
                            d: space.dist(e, x),
                            id: x,
                        })
                        .collect();
                    list = select(space, cands, cap);
                }
                self.write_list(e, level, &list);
            }
            ep = w;
        }
        if l > max_level {
            let mut g = self.entry.write();
            if l > g.1 {
                *g = (q, l);
            }
        }
    }
}

impl Hnsw {
    /// Builds over nodes `0..n` of `space`, in parallel on the current
    /// rayon pool.
    ///
    /// `p.m` is held to `2..=limits::MAX_M` and `p.ef_construction` to
    /// `m..=limits::MAX_EF_CONSTRUCTION` (larger values only come from
    /// settings written before those bounds).
    pub fn build<S: Space>(space: &S, n: usize, p: HnswParams) -> Hnsw {
        let m = p.m.clamp(limits::MIN_M, limits::MAX_M);
        let m0 = 2 * m;
        let ml = 1.0 / (m as f64).ln();
        let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
        let levels: Vec<u8> = (0..n)
            .map(|_| {
                let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                ((-u.ln() * ml).floor() as usize).min(30) as u8
            })
            .collect();
        let efc = p
            .ef_construction
            .clamp(m, limits::MAX_EF_CONSTRUCTION.max(m));
        // The file's layout, allocated once at its final size.
        let off_levels = HEADER;
        let off_l0 = off_levels + n;
        let off_uoff = off_l0 + n * (m0 + 1);
        let off_upper = off_uoff + n + 1;
        let upper: usize = levels.iter().map(|&l| l as usize).sum();
        let mut words: Vec<AtomicU32> = Vec::with_capacity(off_upper + upper * (m + 1));
        words.extend(
            [
                MAGIC, VERSION, n as u32, m as u32, m0 as u32, 0, 0, efc as u32,
            ]
            .map(AtomicU32::new),
        );
        words.extend(levels.iter().map(|&l| AtomicU32::new(l as u32)));
        words.resize_with(off_uoff, || AtomicU32::new(0));
        let mut start = 0u32;
        for &l in &levels {
            words.push(AtomicU32::new(start));
            start += l as u32;
        }
        words.push(AtomicU32::new(start));
        words.resize_with(off_upper + upper * (m + 1), || AtomicU32::new(0));
        let b = Builder {
            words,
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            off_l0,
            off_uoff,
            off_upper,
            entry: RwLock::new((0, levels.first().copied().unwrap_or(0) as usize)),
            levels,
            m,
            m0,
            efc,
        };
        if n > 1 {
            // The first nodes alone, so the parallel phase starts from a graph.
            let seq = n.min(64);
            let mut vis = Visited {
                marks: Vec::new(),
                epoch: 0,
            };
            let mut buf = Vec::new();
            for q in 1..seq as u32 {
                b.insert(space, q, &mut vis, &mut buf, n);
            }
            (seq as u32..n as u32).into_par_iter().for_each_init(
                || {
                    (
                        Visited {
                            marks: Vec::new(),
                            epoch: 0,
                        },
                        Vec::new(),
                    )
                },
                |(vis, buf), q| b.insert(space, q, vis, buf, n),
            );
        }
        Self::finish(b, n)
    }

    /// The built graph: the header's entry point and top level filled in,
    /// the words taken over as they are (no copy).
    fn finish(b: Builder, n: usize) -> Hnsw {
        let (entry, max_level) = *b.entry.read();
        b.words[5].store(
            if n == 0 { u32::MAX } else { entry },
            AtomicOrdering::Relaxed,
        );
        b.words[6].store(max_level as u32, AtomicOrdering::Relaxed);
        let w: Vec<u32> = b.words.into_iter().map(AtomicU32::into_inner).collect();
        Self::from_words(Words::Owned(w)).expect("a freshly built graph is well formed")
    }

    fn from_words(words: Words) -> Result<Hnsw, String> {
        let s = words.get();
        if s.len() < HEADER || s[0] != MAGIC {
            return Err("not an HNSW file".into());
        }
        if s[1] != VERSION {
            return Err(format!(
                "HNSW format version {} (this build reads {VERSION})",
                s[1]
            ));
        }
        let (n, m, m0) = (s[2] as usize, s[3] as usize, s[4] as usize);
        if m0 > MAX_M0 || m > m0 {
            return Err(format!(
                "HNSW file has M={m}, M0={m0} (M0 at most {MAX_M0})"
            ));
        }
        let off_levels = HEADER;
        let off_l0 = off_levels + n;
        let off_uoff = off_l0 + n * (m0 + 1);
        let off_upper = off_uoff + n + 1;
        if s.len() < off_upper || s.len() != off_upper + s[off_upper - 1] as usize * (m + 1) {
            return Err("HNSW file has the wrong length".into());
        }
        Ok(Hnsw {
            n,
            m,
            m0,
            entry: s[5],
            max_level: s[6] as usize,
            off_levels,
            off_l0,
            off_uoff,
            off_upper,
            words,
        })
    }

    /// Writes the graph's words to `path` (little-endian, streamed in
    /// 1 MiB pieces, no copy of the graph) and fsyncs it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        let mut buf = Vec::with_capacity(1 << 20);
        for chunk in self.words.get().chunks(1 << 18) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|w| w.to_le_bytes()));
            std::io::Write::write_all(&mut f, &buf)?;
        }
        f.sync_all()
    }

    /// Memory-maps a graph file. Builds nothing.
    pub fn open(path: &Path) -> Result<Hnsw, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: index files are immutable once their segment is live.
        let m = unsafe { Mmap::map(&f) }.map_err(|e| format!("{}: {e}", path.display()))?;
        if m.len() % 4 != 0 {
            return Err("HNSW file length is not a multiple of 4".into());
        }
        Self::from_words(Words::Mapped(m))
    }

    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn m(&self) -> usize {
        self.m
    }

    /// Bytes of the graph (links and levels).
    pub fn bytes(&self) -> usize {
        self.words.get().len() * 4
    }

    #[inline]
    fn level(&self, i: u32) -> usize {
        self.words.get()[self.off_levels + i as usize] as usize
    }

    #[inline]
    fn neighbors(&self, i: u32, level: usize) -> &[u32] {
        let s = self.words.get();
        let at = if level == 0 {
            self.off_l0 + i as usize * (self.m0 + 1)
        } else {
            debug_assert!(level <= self.level(i));
            self.off_upper + (s[self.off_uoff + i as usize] as usize + level - 1) * (self.m + 1)
        };
        let cnt = s[at] as usize;
        &s[at + 1..at + 1 + cnt]
    }

    #[inline]
    fn prefetch_links(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let s = self.words.get();
            let p = s
                .as_ptr()
                .wrapping_add(self.off_l0 + i as usize * (self.m0 + 1))
                as *const i8;
            let bytes = (self.m0 + 1) * 4;
            // SAFETY: prefetch never faults; the address may be anything.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                let mut o = 0;
                while o < bytes {
                    _mm_prefetch(p.wrapping_add(o), _MM_HINT_T0);
                    o += 64;
                }
            }
        }
    }

    /// The best `min(k, n)` accepted nodes by the space's distance (lower
    /// first), exploring with beam width `ef` (at least `k`; at most the
    /// graph's `n` nodes, so any `ef` is safe to pass).
    ///
    /// `ef` bounds the accepted results, not the nodes explored: rejected
    /// nodes are traversed (they only extend the candidate queue), and
    /// until `ef` accepted nodes are held every neighbour is explored.
    pub fn search<S: Space>(
        &self,
        space: &S,
        q: &Query,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        self.search_seeded(space, q, k, ef, accept, &[])
    }

    /// [`Self::search`] with extra level-0 entry points: `seeds` (node ids
    /// below `n`; others are ignored) join the beam beside the node the
    /// descent through the upper levels ends at. A filtered search seeds
    /// it with known matches near the query, so that matches away from the
    /// query's own neighbourhood (possibly several regions of the graph,
    /// linked to it by few edges) are reached from inside, not only
    /// through whichever edge the traversal meets first.
    pub fn search_seeded<S: Space>(
        &self,
        space: &S,
        q: &Query,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
        seeds: &[u32],
    ) -> Vec<(u32, f32)> {
        if self.n == 0 || k == 0 {
            return Vec::new();
        }
        // A beam wider than the graph holds nothing more: bound every heap
        // by the graph's size, never by the caller's number alone.
        let k = k.min(self.n);
        let ef = ef.max(k).min(self.n);
        let mut cur = Cand {
            d: space.dist_query(q, self.entry),
            id: self.entry,
        };
        for level in (1..=self.max_level).rev() {
            loop {
                let mut moved = false;
                for &nb in self.neighbors(cur.id, level) {
                    let d = space.dist_query(q, nb);
                    if d < cur.d {
                        cur = Cand { d, id: nb };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        VISITED.with(|v| {
            let vis = &mut *v.borrow_mut();
            vis.reset(self.n);
            let mut cand: BinaryHeap<std::cmp::Reverse<Cand>> =
                BinaryHeap::with_capacity(ef.saturating_mul(4).min(self.n));
            let mut res: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
            for c in
                std::iter::once(cur).chain(seeds.iter().filter(|&&s| (s as usize) < self.n).map(
                    |&s| Cand {
                        d: space.dist_query(q, s),
                        id: s,
                    },
                ))
            {
                if !vis.insert(c.id) {
                    continue;
                }
                cand.push(std::cmp::Reverse(c));
                if accept(c.id) {
                    res.push(c);
                    if res.len() > ef {
                        res.pop();
                    }
                }
            }
            // The bound used to prune: the worst kept result once `ef` are
            // kept. Until then (a filter may keep few), explore on.
            while let Some(std::cmp::Reverse(c)) = cand.pop() {
                if res.len() >= ef && c.d > res.peek().unwrap().d {
                    break;
                }
                // The next candidate's links load while this one's
                // neighbours are scored.
                if let Some(std::cmp::Reverse(next)) = cand.peek() {
                    self.prefetch_links(next.id);
                }
                // Unvisited neighbours first, their vectors prefetched, then
                // the distances: the loads overlap instead of queueing.
                let mut fresh = [0u32; MAX_M0];
                let mut nf = 0;
                for &nb in self.neighbors(c.id, 0) {
                    if vis.insert(nb) {
                        space.prefetch(nb);
                        fresh[nf] = nb;
                        nf += 1;
                    }
                }
                for &nb in &fresh[..nf] {
                    let d = space.dist_query(q, nb);
                    if res.len() < ef || d < res.peek().unwrap().d {
                        cand.push(std::cmp::Reverse(Cand { d, id: nb }));
                        if accept(nb) {
                            res.push(Cand { d, id: nb });
                            if res.len() > ef {
                                res.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<Cand> = res.into_vec();
            out.sort();
            out.truncate(k);
            out.into_iter().map(|c| (c.id, c.d)).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Any `k` and `ef` are safe: heaps are bounded by the graph's size, the
    /// answer is at most `n` nodes, each once; and a build asked for an M or
    /// ef_construction past the bounds writes a file that opens again.
    #[test]
    fn huge_k_ef_and_build_params_are_bounded_by_the_graph() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (dim, n) = (4, 300);
        let vectors: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let space = F32Space {
            vectors: &vectors,
            dim,
            dot: false,
        };
        let g = Hnsw::build(
            &space,
            n,
            HnswParams {
                m: usize::MAX / 2,
                ef_construction: usize::MAX,
                seed: 1,
            },
        );
        assert_eq!(g.m(), limits::MAX_M);
        let dir = tempfile::tempdir().unwrap();
        g.write(&dir.path().join("g.bin")).unwrap();
        let g = Hnsw::open(&dir.path().join("g.bin")).unwrap();
        let q: Vec<f32> = vec![0.1; dim];
        for (k, ef) in [(usize::MAX, usize::MAX), (10, 1 << 62), (n + 1, 1)] {
            let found = g.search(&space, &Query::Vector(&q), k, ef, &|_| true);
            assert!(found.len() <= n && found.len() >= k.min(n).min(10));
            let mut ids: Vec<u32> = found.iter().map(|&(id, _)| id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), found.len(), "k={k} ef={ef}: duplicates");
        }
        // ef at or past n is exhaustive: the exact nearest comes first.
        let best = (0..n as u32)
            .min_by(|&a, &b| {
                let d = |i| space.dist_query(&Query::Vector(&q), i);
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        let found = g.search(&space, &Query::Vector(&q), 1, usize::MAX, &|_| true);
        assert_eq!(found[0].0, best);
    }

    /// Exact duplicates (WordNet has many identical glosses) must not become
    /// islands: every point here has three exact copies.
    #[test]
    fn duplicates_stay_reachable() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (dim, distinct, copies) = (16, 1500, 4);
        let base: Vec<Vec<f32>> = (0..distinct)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        // Copies side by side, so each is inserted right after its twin.
        let vectors: Vec<f32> = base
            .iter()
            .flat_map(|v| (0..copies).flat_map(move |_| v.iter().copied()))
            .collect();
        let n = distinct * copies;
        let space = F32Space {
            vectors: &vectors,
            dim,
            dot: false,
        };
        let g = Hnsw::build(&space, n, HnswParams::default());
        let k = 10;
        let (mut hits, mut total) = (0, 0);
        for _ in 0..200 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let mut exact: Vec<f32> = (0..n as u32)
                .map(|i| space.dist_query(&Query::Vector(&q), i))
                .collect();
            exact.sort_by(f32::total_cmp);
            let kth = exact[k - 1];
            let found = g.search(&space, &Query::Vector(&q), k, 64, &|_| true);
            assert_eq!(found.len(), k);
            hits += found.iter().filter(|(_, d)| *d <= kth).count();
            total += k;
        }
        let recall = hits as f64 / total as f64;
        assert!(recall >= 0.95, "recall@{k} {recall:.3} with duplicates");
    }

    /// Two clusters; only the far one (10%) passes the filter. The beam
    /// holds `ef` accepted nodes, however many rejected ones lie nearer:
    /// `k` results, all accepted, the same as brute force over the
    /// accepted; with fewer accepted nodes than `k`, all of them. Seeds
    /// out of range are ignored; seeds inside the far cluster give the same
    /// answer.
    #[test]
    fn filtered_search_reaches_a_far_accepted_cluster() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (dim, n, far) = (8, 2000, 200);
        let vectors: Vec<f32> = (0..n)
            .flat_map(|i| {
                let centre = if i < far { 6.0 } else { 0.0 };
                (0..dim)
                    .map(|_| centre + rng.gen_range(-1.0f32..1.0))
                    .collect::<Vec<_>>()
            })
            .collect();
        let space = F32Space {
            vectors: &vectors,
            dim,
            dot: false,
        };
        let g = Hnsw::build(&space, n, HnswParams::default());
        let accept = |i: u32| (i as usize) < far;
        let (k, ef) = (10, 64);
        let (mut hits, mut total) = (0, 0);
        for _ in 0..50 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let query = Query::Vector(&q);
            let mut exact: Vec<(f32, u32)> = (0..far as u32)
                .map(|i| (space.dist_query(&query, i), i))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<u32> = exact[..k].iter().map(|&(_, i)| i).collect();
            for seeds in [&[][..], &[u32::MAX, n as u32][..], &[want[3], 17][..]] {
                let found = g.search_seeded(&space, &query, k, ef, &accept, seeds);
                assert_eq!(found.len(), k, "seeds {seeds:?}");
                assert!(found.iter().all(|&(id, _)| accept(id)));
                hits += found.iter().filter(|(id, _)| want.contains(id)).count();
                total += k;
            }
            let few = |i: u32| i < 5;
            let found = g.search(&space, &query, k, ef, &few);
            let mut ids: Vec<u32> = found.iter().map(|&(id, _)| id).collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![0, 1, 2, 3, 4], "every accepted node, once");
        }
        let recall = hits as f64 / total as f64;
        assert!(recall >= 0.95, "filtered recall@{k} {recall:.3}");
    }
}
