//! k-means, product quantization and IVF-PQ.
//!
//! PQ splits a vector into `m` sub-vectors and replaces each by the nearest
//! of 256 centroids trained by k-means on that subspace: `m` bytes per
//! vector. A query builds a table of its distance to every centroid of every
//! subspace (asymmetric distance computation, ADC); a code's distance is then
//! `m` table lookups. PQ alone loses recall, so callers re-score the best
//! `oversampling × k` candidates with exact f32 distances.
//!
//! IVF-PQ adds a coarse k-means quantizer with `nlist` lists; each vector is
//! stored in its nearest list as the PQ code of its residual (vector minus
//! list centroid); a query scans the `nprobe` nearest lists, and more, in
//! order of centroid distance, while those held fewer than the candidates
//! asked for or fewer than `nprobe` lists held an accepted point (a filter
//! whose matches lie in lists away from the query).
//!
//! Files (u32/f32 little-endian words): `pq.bin` = magic `PQ01`, dim, m,
//! then m × 256 × (dim/m) centroids, then n × m code bytes (padded to 4).
//! `ivf.bin` = magic `IVF1`, dim, nlist, m, then nlist × dim coarse
//! centroids, nlist + 1 list offsets, the ids in list order, the PQ
//! centroids, and the codes in list order.

use super::distance;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::path::Path;

pub const KS: usize = 256;

/// Lloyd's k-means on `n` row-major vectors of `dim`; returns `k × dim`
/// centroids. Seeds from a random sample; empty clusters are re-seeded from
/// the point farthest from its centroid.
pub fn kmeans(data: &[f32], dim: usize, k: usize, iters: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / dim;
    assert!(n > 0, "k-means needs data");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng);
    let mut cent: Vec<f32> = (0..k)
        .flat_map(|i| data[idx[i % n] * dim..(idx[i % n] + 1) * dim].to_vec())
        .collect();
    for _ in 0..iters {
        let assign: Vec<(usize, f32)> = (0..n)
            .into_par_iter()
            .map(|i| nearest(&cent, dim, &data[i * dim..(i + 1) * dim]))
            .collect();
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &(c, _)) in assign.iter().enumerate() {
            counts[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&data[i * dim..(i + 1) * dim])
            {
                *s += *x as f64;
            }
        }
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|a, b| assign[*b].1.total_cmp(&assign[*a].1));
        let mut next_far = 0;
        for c in 0..k {
            if counts[c] == 0 {
                let p = far[next_far % n];
                next_far += 1;
                cent[c * dim..(c + 1) * dim].copy_from_slice(&data[p * dim..(p + 1) * dim]);
            } else {
                for (dst, s) in cent[c * dim..(c + 1) * dim]
                    .iter_mut()
                    .zip(&sums[c * dim..(c + 1) * dim])
                {
                    *dst = (*s / counts[c] as f64) as f32;
                }
            }
        }
    }
    cent
}

/// Index and squared distance of the nearest centroid.
#[inline]
pub fn nearest(cent: &[f32], dim: usize, v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, row) in cent.chunks_exact(dim).enumerate() {
        let d = distance::l2_sq(v, row);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// A trained product quantizer.
#[derive(Clone)]
pub struct Pq {
    pub dim: usize,
    pub m: usize,
    pub dsub: usize,
    /// m × 256 × dsub
    pub centroids: Vec<f32>,
}

impl Pq {
    /// Trains on (a sample of) `data`. `dim` must be a multiple of `m`.
    pub fn train(data: &[f32], dim: usize, m: usize, seed: u64) -> Result<Pq, String> {
        if m == 0 || !dim.is_multiple_of(m) {
            return Err(format!("pq subvectors {m} must divide the dimension {dim}"));
        }
        let dsub = dim / m;
        let n = data.len() / dim;
        let sample: Vec<usize> = {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            idx.truncate(20_000);
            idx
        };
        let centroids: Vec<f32> = (0..m)
            .into_par_iter()
            .flat_map_iter(|j| {
                let sub: Vec<f32> = sample
                    .iter()
                    .flat_map(|&i| {
                        data[i * dim + j * dsub..i * dim + (j + 1) * dsub]
                            .iter()
                            .copied()
                    })
                    .collect();
                kmeans(&sub, dsub, KS, 12, seed + j as u64)
            })
            .collect();
        Ok(Pq {
            dim,
            m,
            dsub,
            centroids,
        })
    }

    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        for j in 0..self.m {
            let cent = &self.centroids[j * KS * self.dsub..(j + 1) * KS * self.dsub];
            out[j] = nearest(cent, self.dsub, &v[j * self.dsub..(j + 1) * self.dsub]).0 as u8;
        }
    }

    pub fn encode_all(&self, data: &[f32]) -> Vec<u8> {
        let mut codes = vec![0u8; data.len() / self.dim * self.m];
        codes
            .par_chunks_mut(self.m)
            .zip(data.par_chunks(self.dim))
            .for_each(|(c, v)| self.encode(v, c));
        codes
    }

    /// ADC table `m × 256`: per subspace, the query's distance contribution
    /// (negated dot, or squared L2) to each centroid. Lower is closer.
    pub fn table(&self, q: &[f32], dot: bool) -> Vec<f32> {
        let mut t = vec![0f32; self.m * KS];
        for j in 0..self.m {
            let qs = &q[j * self.dsub..(j + 1) * self.dsub];
            for c in 0..KS {
                let cv = &self.centroids[(j * KS + c) * self.dsub..(j * KS + c + 1) * self.dsub];
                t[j * KS + c] = if dot {
                    -distance::dot(qs, cv)
                } else {
                    distance::l2_sq(qs, cv)
                };
            }
        }
        t
    }

    #[inline]
    pub fn adc(table: &[f32], code: &[u8]) -> f32 {
        let mut acc = [0f32; 4];
        let chunks = code.chunks_exact(4);
        let rest = chunks.remainder();
        for (j4, c) in chunks.enumerate() {
            let base = j4 * 4 * KS;
            acc[0] += table[base + c[0] as usize];
            acc[1] += table[base + KS + c[1] as usize];
            acc[2] += table[base + 2 * KS + c[2] as usize];
            acc[3] += table[base + 3 * KS + c[3] as usize];
        }
        let mut s = acc[0] + acc[1] + acc[2] + acc[3];
        let done = code.len() - rest.len();
        for (i, &c) in rest.iter().enumerate() {
            s += table[(done + i) * KS + c as usize];
        }
        s
    }

    fn words(&self) -> Vec<u32> {
        let mut w = vec![u32::from_le_bytes(*b"PQ01"), self.dim as u32, self.m as u32];
        w.extend(self.centroids.iter().map(|x| x.to_bits()));
        w
    }

    fn from_words(w: &[u32]) -> Result<(Pq, usize), String> {
        if w.len() < 3 || w[0] != u32::from_le_bytes(*b"PQ01") {
            return Err("not a PQ file".into());
        }
        let (dim, m) = (w[1] as usize, w[2] as usize);
        if m == 0 || !dim.is_multiple_of(m) {
            return Err("bad PQ shape".into());
        }
        let len = m * KS * (dim / m);
        if w.len() < 3 + len {
            return Err("PQ file too short".into());
        }
        let centroids = w[3..3 + len].iter().map(|b| f32::from_bits(*b)).collect();
        Ok((
            Pq {
                dim,
                m,
                dsub: dim / m,
                centroids,
            },
            3 + len,
        ))
    }
}

fn bytes_to_words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| {
            let mut x = [0u8; 4];
            x[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(x)
        })
        .collect()
}

fn write_words(path: &Path, w: &[u32]) -> std::io::Result<()> {
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut f = std::fs::File::create(path)?;
    std::io::Write::write_all(&mut f, &bytes)?;
    f.sync_all()
}

fn read_words(path: &Path) -> Result<Vec<u32>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() % 4 != 0 {
        return Err(format!("{}: length not a multiple of 4", path.display()));
    }
    Ok(bytes_to_words(&b))
}

/// PQ codes of a segment's vectors, held in RAM.
pub struct PqCodes {
    pub pq: Pq,
    pub codes: Vec<u8>,
}

impl PqCodes {
    pub fn build(data: &[f32], dim: usize, m: usize, seed: u64) -> Result<Self, String> {
        let pq = Pq::train(data, dim, m, seed)?;
        let codes = pq.encode_all(data);
        Ok(Self { pq, codes })
    }
    #[inline]
    pub fn code(&self, i: u32) -> &[u8] {
        &self.codes[i as usize * self.pq.m..(i as usize + 1) * self.pq.m]
    }
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut w = self.pq.words();
        w.push(self.codes.len() as u32);
        w.extend(bytes_to_words(&self.codes));
        write_words(path, &w)
    }
    pub fn open(path: &Path) -> Result<Self, String> {
        let w = read_words(path)?;
        let (pq, at) = Pq::from_words(&w)?;
        let n = *w.get(at).ok_or("PQ file has no codes")? as usize;
        let bytes: Vec<u8> = w[at + 1..]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .take(n)
            .collect();
        if bytes.len() != n || !n.is_multiple_of(pq.m) {
            return Err("PQ codes truncated".into());
        }
        Ok(Self { pq, codes: bytes })
    }
    /// RAM held by the codes.
    pub fn code_bytes(&self) -> usize {
        self.codes.len()
    }
}

/// The HNSW space over PQ codes: traversal by ADC, exact re-scoring after.
pub struct PqSpace<'a> {
    pub codes: &'a PqCodes,
    /// f32 vectors for node-to-node distances during the build only.
    pub vectors: &'a [f32],
    pub dot: bool,
}

impl super::hnsw::Space for PqSpace<'_> {
    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        let d = self.codes.pq.dim;
        let (x, y) = (
            &self.vectors[a as usize * d..(a as usize + 1) * d],
            &self.vectors[b as usize * d..(b as usize + 1) * d],
        );
        if self.dot {
            -distance::dot(x, y)
        } else {
            distance::l2_sq(x, y)
        }
    }
    #[inline]
    fn dist_query(&self, q: &super::hnsw::Query, b: u32) -> f32 {
        let super::hnsw::Query::Table(t) = q else {
            unreachable!("PQ space takes tables")
        };
        Pq::adc(t, self.codes.code(b))
    }
}

/// An inverted file over PQ-coded residuals.
pub struct Ivf {
    pub dim: usize,
    pub nlist: usize,
    pub coarse: Vec<f32>,
    /// nlist + 1 offsets into `ids` / codes.
    pub offsets: Vec<u32>,
    pub ids: Vec<u32>,
    pub pq: Pq,
    pub codes: Vec<u8>,
}

impl Ivf {
    pub fn build(
        data: &[f32],
        dim: usize,
        nlist: usize,
        m: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let n = data.len() / dim;
        let nlist = nlist.clamp(1, n.max(1));
        let sample: Vec<f32> = {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            idx.truncate((nlist * 40).max(10_000).min(n));
            idx.iter()
                .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        };
        let coarse = kmeans(&sample, dim, nlist, 10, seed);
        let assign: Vec<usize> = (0..n)
            .into_par_iter()
            .map(|i| nearest(&coarse, dim, &data[i * dim..(i + 1) * dim]).0)
            .collect();
        let mut residuals = vec![0f32; n * dim];
        residuals
            .par_chunks_mut(dim)
            .enumerate()
            .for_each(|(i, r)| {
                let c = assign[i];
                for j in 0..dim {
                    r[j] = data[i * dim + j] - coarse[c * dim + j];
                }
            });
        let pq = Pq::train(&residuals, dim, m, seed + 1)?;
        let mut counts = vec![0u32; nlist + 1];
        for &a in &assign {
            counts[a + 1] += 1;
        }
        for i in 0..nlist {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut ids = vec![0u32; n];
        for (i, &a) in assign.iter().enumerate() {
            ids[fill[a] as usize] = i as u32;
            fill[a] += 1;
        }
        let mut codes = vec![0u8; n * m];
        codes.par_chunks_mut(m).enumerate().for_each(|(slot, out)| {
            let i = ids[slot] as usize;
            pq.encode(&residuals[i * dim..(i + 1) * dim], out);
        });
        Ok(Self {
            dim,
            nlist,
            coarse,
            offsets,
            ids,
            pq,
            codes,
        })
    }

    /// The best `limit` accepted candidates, (node, approximate distance,
    /// lower is closer), from the lists nearest the query.
    ///
    /// Lists are scanned in order of their centroid's distance until both
    /// `nprobe` (held to `1..=nlist`) lists holding an accepted point were
    /// scanned and `limit` accepted candidates were found, or every list
    /// was: a filter whose matches lie away from the query (none in the
    /// `nprobe` nearest lists) widens the search instead of answering
    /// with fewer candidates than exist. Without a filter (every point
    /// accepted) that is the `nprobe` nearest non-empty lists, more only
    /// when they hold fewer than `limit` points.
    ///
    /// `widen` (for filtered searches): past those lists, scanning goes on
    /// while one of the last `nprobe / 2` lists holding an accepted point
    /// added a candidate to the best `limit`. Matches away from the query
    /// are at similar distances from it across many lists (their
    /// centroids barely rank them), so the best of them are spread over
    /// more lists than `nprobe`; near matches stop gaining soon.
    pub fn candidates(
        &self,
        q: &[f32],
        dot: bool,
        nprobe: usize,
        limit: usize,
        widen: bool,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let dim = self.dim;
        let mut lists: Vec<(f32, usize)> = self
            .coarse
            .chunks_exact(dim)
            .enumerate()
            .map(|(c, row)| {
                (
                    if dot {
                        -distance::dot(q, row)
                    } else {
                        distance::l2_sq(q, row)
                    },
                    c,
                )
            })
            .collect();
        if lists.is_empty() {
            return Vec::new();
        }
        let np = nprobe.clamp(1, self.nlist.max(1)).min(lists.len());
        // The nearest `np` in order; the rest are sorted only if the
        // search has to widen past them.
        lists.select_nth_unstable_by(np - 1, |a, b| a.0.total_cmp(&b.0));
        lists[..np].sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut rest_sorted = np == lists.len();
        let mut top = super::TopK::new(limit);
        let m = self.pq.m;
        // dot(q, c + r) = dot(q, c) + dot(q, r): one table for every list.
        let dot_table = dot.then(|| self.pq.table(q, true));
        let mut resid = vec![0f32; dim];
        let patience = if widen { (np / 2).max(1) } else { 0 };
        // Lists holding an accepted point scanned, and how many of the
        // latest of them in a row added nothing to the best `limit`.
        let (mut found, mut with_hits, mut idle) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while i < lists.len() {
            if with_hits >= np && found >= limit && idle >= patience {
                break;
            }
            if i == np && !rest_sorted {
                lists[np..].sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                rest_sorted = true;
            }
            let (cd, c) = lists[i];
            i += 1;
            let slots = self.offsets[c] as usize..self.offsets[c + 1] as usize;
            if slots.is_empty() {
                continue;
            }
            let table_l2;
            let (table, base) = match &dot_table {
                Some(t) => (t, cd),
                None => {
                    for j in 0..dim {
                        resid[j] = q[j] - self.coarse[c * dim + j];
                    }
                    table_l2 = self.pq.table(&resid, false);
                    (&table_l2, 0.0)
                }
            };
            let (before, mut gained) = (found, false);
            for slot in slots {
                let id = self.ids[slot];
                if !accept(id) {
                    continue;
                }
                found += 1;
                let d = base + Pq::adc(table, &self.codes[slot * m..(slot + 1) * m]);
                gained |= top.would_keep(-d);
                top.push(-d, id);
            }
            if found > before {
                with_hits += 1;
                idle = if gained { 0 } else { idle + 1 };
            }
        }
        top.into_sorted()
            .into_iter()
            .map(|(id, s)| (id, -s))
            .collect()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut w = vec![
            u32::from_le_bytes(*b"IVF1"),
            self.dim as u32,
            self.nlist as u32,
            self.ids.len() as u32,
        ];
        w.extend(self.coarse.iter().map(|x| x.to_bits()));
        w.extend(&self.offsets);
        w.extend(&self.ids);
        w.extend(self.pq.words());
        w.extend(bytes_to_words(&self.codes));
        write_words(path, &w)
    }

    pub fn open(path: &Path) -> Result<Self, String> {
        let w = read_words(path)?;
        if w.len() < 4 || w[0] != u32::from_le_bytes(*b"IVF1") {
            return Err("not an IVF file".into());
        }
        let (dim, nlist, n) = (w[1] as usize, w[2] as usize, w[3] as usize);
        let mut at = 4;
        let take = |at: &mut usize, len: usize| -> Result<std::ops::Range<usize>, String> {
            let r = *at..*at + len;
            if r.end > w.len() {
                return Err("IVF file too short".into());
            }
            *at += len;
            Ok(r)
        };
        let coarse = w[take(&mut at, nlist * dim)?]
            .iter()
            .map(|b| f32::from_bits(*b))
            .collect();
        let offsets = w[take(&mut at, nlist + 1)?].to_vec();
        let ids = w[take(&mut at, n)?].to_vec();
        let (pq, used) = Pq::from_words(&w[at..])?;
        at += used;
        let codes: Vec<u8> = w[at..]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .take(n * pq.m)
            .collect();
        if codes.len() != n * pq.m {
            return Err("IVF codes truncated".into());
        }
        Ok(Self {
            dim,
            nlist,
            coarse,
            offsets,
            ids,
            pq,
            codes,
        })
    }

    pub fn code_bytes(&self) -> usize {
        self.codes.len() + self.ids.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adc_equals_distance_to_reconstruction() {
        let dim = 16;
        let mut s = 3u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let data: Vec<f32> = (0..dim * 600).map(|_| r()).collect();
        let pq = Pq::train(&data, dim, 4, 1).unwrap();
        let codes = pq.encode_all(&data);
        let q: Vec<f32> = (0..dim).map(|_| r()).collect();
        for dot in [true, false] {
            let t = pq.table(&q, dot);
            for i in 0..20 {
                let code = &codes[i * 4..(i + 1) * 4];
                let recon: Vec<f32> = (0..4)
                    .flat_map(|j| {
                        pq.centroids
                            [(j * KS + code[j] as usize) * 4..(j * KS + code[j] as usize + 1) * 4]
                            .to_vec()
                    })
                    .collect();
                let want = if dot {
                    -distance::dot(&q, &recon)
                } else {
                    distance::l2_sq(&q, &recon)
                };
                assert!((Pq::adc(&t, code) - want).abs() < 1e-4);
            }
        }
    }

    /// The matches of a filter lie in lists away from the query: the
    /// `nprobe` nearest lists hold none, and the scan widens (in order of
    /// centroid distance) until `limit` accepted candidates are found;
    /// fewer accepted points than `limit` come back all. Without a filter,
    /// lists holding fewer than `limit` points widen the scan too.
    #[test]
    fn ivf_widens_past_nprobe_until_limit_accepted() {
        let (dim, n, far) = (8, 2000, 100);
        let mut s = 5u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let data: Vec<f32> = (0..n)
            .flat_map(|i| {
                let c = if i < far { 8.0 } else { 0.0 };
                (0..dim).map(|_| c + r()).collect::<Vec<_>>()
            })
            .collect();
        let ivf = Ivf::build(&data, dim, 64, 4, 3).unwrap();
        let q = vec![0.0f32; dim];
        let accept = |i: u32| (i as usize) < far;
        for widen in [false, true] {
            let found = ivf.candidates(&q, false, 2, 30, widen, &accept);
            assert_eq!(found.len(), 30, "widen {widen}");
            assert!(found.iter().all(|&(id, _)| accept(id)));
            let few = |i: u32| i == 7 || i == 1500;
            let mut ids: Vec<u32> = ivf
                .candidates(&q, false, 2, 30, widen, &few)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![7, 1500]);
            let all = ivf.candidates(&q, true, 1, 500, widen, &|_| true);
            assert_eq!(all.len(), 500);
        }
    }
}
