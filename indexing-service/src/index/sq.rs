//! Scalar quantization to 8 bits (SQ8): every component `x_i` of every
//! vector becomes `c_i = round(x_i / a)` clamped to `-127..=127`, with one
//! scale `a` per segment (from a high quantile of |x_i|, so a rare outlier
//! does not waste the range). One byte per dimension: 1/4 of f32.
//!
//! Codes are stored biased, `u_i = c_i + 128` (1..=255), so that a query
//! quantized to signed bytes `s_i` meets them in one instruction per 64
//! dimensions: AVX-512 VNNI `vpdpbusd` sums `u_i · s_i` into i32 lanes, and
//! `Σ c_i s_i = Σ u_i s_i − 128 Σ s_i`. Two codes meet the same way after
//! flipping the bias of one (`u ^ 0x80` is `c` as a signed byte), so the
//! graph can be built on codes too. AVX2 and portable bodies give the same
//! integers (tests compare them).
//!
//! Distances are estimates used to *traverse*; callers re-score the best
//! candidates with the exact f32 vectors (memory-mapped), so what users see
//! is exact.
//!
//! File `sq8.bin` (little-endian), memory-mapped on open:
//!
//! | bytes | content |
//! |---|---|
//! | 0..64 | magic `SQ8 `, version 1, n, dim, stride (dim rounded up to 64), scale `a` (f32 bits), zero padding |
//! | n × 4 | per vector `a²·Σc_i²` (f32): the squared norm of the decoded vector |
//! | n × 4 | per vector `Σ c_i` (i32) |
//! | pad | zeros to a multiple of 64 |
//! | n × stride | codes `u_i`; padding dimensions hold 128 (c = 0) |

use memmap2::Mmap;
use std::path::Path;

const MAGIC: u32 = u32::from_le_bytes(*b"SQ8 ");
const VERSION: u32 = 1;
const HEADER: usize = 64;
const PREFETCH_BYTES: usize = 128;

/// Share of components that may be clipped when choosing the scale.
const CLIP_QUANTILE: f64 = 0.99999;

enum Bytes {
    Owned(Vec<u8>),
    Mapped(Mmap),
}

impl Bytes {
    #[inline]
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// SQ8 codes of one segment's vectors.
pub struct Sq8 {
    bytes: Bytes,
    n: usize,
    dim: usize,
    stride: usize,
    scale: f32,
    off_sums: usize,
    off_codes: usize,
}

/// A query prepared for SQ8: signed bytes (padded to the stride), the
/// correction `128·Σs`, and the factor and per-code bias that turn the
/// integer sum into a distance (lower is closer).
pub struct Sq8Query {
    pub codes: Vec<i8>,
    pub bias_sum: i32,
    pub factor: f32,
    pub l2: bool,
}

fn layout(n: usize) -> (usize, usize) {
    let off_sums = HEADER + 4 * n;
    let off_codes = (off_sums + 4 * n).div_ceil(64) * 64;
    (off_sums, off_codes)
}

impl Sq8 {
    /// Quantizes `n = data.len() / dim` row-major vectors.
    pub fn build(data: &[f32], dim: usize) -> Sq8 {
        let n = data.len() / dim.max(1);
        let stride = dim.div_ceil(64).max(1) * 64;
        // Scale from a sample of |x|: the CLIP_QUANTILE-th value maps to 127.
        let step = (data.len() / 1_000_000).max(1);
        let mut sample: Vec<f32> = data.iter().step_by(step).map(|x| x.abs()).collect();
        let max = if sample.is_empty() {
            1.0
        } else {
            let at = ((sample.len() - 1) as f64 * CLIP_QUANTILE) as usize;
            *sample.select_nth_unstable_by(at, |a, b| a.total_cmp(b)).1
        };
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        let (off_sums, off_codes) = layout(n);
        let mut b = vec![0u8; off_codes + n * stride];
        let header = [
            MAGIC,
            VERSION,
            n as u32,
            dim as u32,
            stride as u32,
            scale.to_bits(),
        ];
        for (i, w) in header.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        for i in 0..n {
            let v = &data[i * dim..(i + 1) * dim];
            let row = &mut b[off_codes + i * stride..off_codes + (i + 1) * stride];
            let (mut sq, mut sum) = (0i64, 0i64);
            for (j, u) in row.iter_mut().enumerate() {
                let c = if j < dim {
                    (v[j] / scale).round().clamp(-127.0, 127.0) as i32
                } else {
                    0
                };
                sq += (c * c) as i64;
                sum += c as i64;
                *u = (c + 128) as u8;
            }
            let norm = (sq as f64 * scale as f64 * scale as f64) as f32;
            b[HEADER + 4 * i..HEADER + 4 * i + 4].copy_from_slice(&norm.to_le_bytes());
            b[off_sums + 4 * i..off_sums + 4 * i + 4].copy_from_slice(&(sum as i32).to_le_bytes());
        }
        Sq8 {
            bytes: Bytes::Owned(b),
            n,
            dim,
            stride,
            scale,
            off_sums,
            off_codes,
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        std::io::Write::write_all(&mut f, self.bytes.get())?;
        f.sync_all()
    }

    /// Memory-maps a codes file. Builds nothing.
    pub fn open(path: &Path) -> Result<Sq8, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: index files are immutable once their segment is live.
        let m = unsafe { Mmap::map(&f) }.map_err(|e| format!("{}: {e}", path.display()))?;
        if m.len() < HEADER {
            return Err("SQ8 file too short".into());
        }
        let w = |i: usize| u32::from_le_bytes(m[i * 4..i * 4 + 4].try_into().unwrap());
        if w(0) != MAGIC {
            return Err("not an SQ8 file".into());
        }
        if w(1) != VERSION {
            return Err(format!(
                "SQ8 format version {} (this build reads {VERSION})",
                w(1)
            ));
        }
        let (n, dim, stride) = (w(2) as usize, w(3) as usize, w(4) as usize);
        let scale = f32::from_bits(w(5));
        let (off_sums, off_codes) = layout(n);
        if stride != dim.div_ceil(64).max(1) * 64 || m.len() != off_codes + n * stride {
            return Err("SQ8 file has the wrong length".into());
        }
        Ok(Sq8 {
            bytes: Bytes::Mapped(m),
            n,
            dim,
            stride,
            scale,
            off_sums,
            off_codes,
        })
    }

    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Bytes of codes (what traversal reads).
    pub fn code_bytes(&self) -> usize {
        self.n * self.stride
    }

    #[inline]
    pub fn code(&self, i: u32) -> &[u8] {
        let at = self.off_codes + i as usize * self.stride;
        &self.bytes.get()[at..at + self.stride]
    }
    #[inline]
    fn norm(&self, i: u32) -> f32 {
        let at = HEADER + 4 * i as usize;
        f32::from_le_bytes(self.bytes.get()[at..at + 4].try_into().unwrap())
    }
    #[inline]
    fn sum(&self, i: u32) -> i32 {
        let at = self.off_sums + 4 * i as usize;
        i32::from_le_bytes(self.bytes.get()[at..at + 4].try_into().unwrap())
    }

    /// Quantizes a query for distances to codes: `dot` = negated inner
    /// product, otherwise squared L2 without the constant ‖q‖².
    pub fn query(&self, q: &[f32], dot: bool) -> Sq8Query {
        let max = q.iter().fold(0f32, |m, x| m.max(x.abs()));
        let b = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        let mut codes = vec![0i8; self.stride];
        for (c, x) in codes.iter_mut().zip(q) {
            *c = (x / b).round().clamp(-127.0, 127.0) as i8;
        }
        let bias_sum = 128 * codes.iter().map(|&c| c as i32).sum::<i32>();
        let ab = self.scale * b;
        Sq8Query {
            codes,
            bias_sum,
            factor: if dot { -ab } else { -2.0 * ab },
            l2: !dot,
        }
    }

    /// Estimated distance from a prepared query to code `i`.
    #[inline]
    pub fn dist_query(&self, q: &Sq8Query, i: u32) -> f32 {
        let ip = dot_u8_i8(self.code(i), &q.codes) - q.bias_sum;
        let d = q.factor * ip as f32;
        if q.l2 {
            d + self.norm(i)
        } else {
            d
        }
    }

    /// Estimated distance between codes `i` and `j`.
    #[inline]
    pub fn dist(&self, i: u32, j: u32, dot: bool) -> f32 {
        let ip = dot_u8_u8flip(self.code(i), self.code(j)) - 128 * self.sum(j);
        let a2 = self.scale * self.scale;
        if dot {
            -a2 * ip as f32
        } else {
            self.norm(i) + self.norm(j) - 2.0 * a2 * ip as f32
        }
    }

    #[inline]
    pub fn prefetch(&self, i: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self
                .bytes
                .get()
                .as_ptr()
                .wrapping_add(self.off_codes + i as usize * self.stride)
                as *const i8;
            // SAFETY: prefetch never faults; the address may be anything.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                let mut o = 0;
                while o < self.stride.min(PREFETCH_BYTES) {
                    _mm_prefetch(p.wrapping_add(o), _MM_HINT_T0);
                    o += 64;
                }
            }
        }
    }
}

/// The HNSW space over SQ8 codes (build and traversal).
pub struct Sq8Space<'a> {
    pub codes: &'a Sq8,
    pub dot: bool,
}

impl super::hnsw::Space for Sq8Space<'_> {
    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        self.codes.dist(a, b, self.dot)
    }
    #[inline]
    fn dist_query(&self, q: &super::hnsw::Query, b: u32) -> f32 {
        let super::hnsw::Query::Sq8(q) = q else {
            unreachable!("SQ8 space takes SQ8 queries")
        };
        self.codes.dist_query(q, b)
    }
    #[inline]
    fn prefetch(&self, node: u32) {
        self.codes.prefetch(node)
    }
}

// ---- kernels: Σ u_i·s_i over slices whose length is a multiple of 64 ----
//
// One body for both forms: the second operand's bytes are XORed with
// `mask` and read as signed (mask 0: already i8; mask 0x80: a biased code).

#[inline(always)]
fn dot_body(u: &[u8], v: &[u8], mask: u8) -> i32 {
    let mut acc = [0i32; 32];
    for (x, y) in u.chunks_exact(32).zip(v.chunks_exact(32)) {
        for i in 0..32 {
            acc[i] += x[i] as i32 * ((y[i] ^ mask) as i8) as i32;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(u: &[u8], v: &[u8], mask: u8) -> i32 {
    dot_body(u, v, mask)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_vnni(u: &[u8], v: &[u8], mask: u8) -> i32 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_epi8(mask as i8);
    let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let n = u.len() / 64;
    let (pu, pv) = (u.as_ptr(), v.as_ptr());
    let load = |p: *const u8, i: usize| _mm512_loadu_si512(p.add(i * 64) as *const _);
    let mut i = 0;
    while i + 1 < n {
        a0 = _mm512_dpbusd_epi32(a0, load(pu, i), _mm512_xor_si512(load(pv, i), m));
        a1 = _mm512_dpbusd_epi32(a1, load(pu, i + 1), _mm512_xor_si512(load(pv, i + 1), m));
        i += 2;
    }
    if i < n {
        a0 = _mm512_dpbusd_epi32(a0, load(pu, i), _mm512_xor_si512(load(pv, i), m));
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1))
}

/// `Σ u_i · ((v_i ^ mask) as i8)`, dispatched once per CPU: AVX-512 VNNI,
/// AVX2, or the portable body.
#[inline]
fn dot(u: &[u8], v: &[u8], mask: u8) -> i32 {
    assert!(u.len() == v.len() && u.len().is_multiple_of(64));
    #[cfg(target_arch = "x86_64")]
    {
        static L: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);
        let level = super::distance::cached_level(&L, || {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                2
            } else if std::arch::is_x86_feature_detected!("avx2") {
                1
            } else {
                0
            }
        });
        // SAFETY: the features were detected at run time; the lengths are
        // equal multiples of 64 (asserted above).
        unsafe {
            match level {
                2 => return dot_vnni(u, v, mask),
                1 => return dot_avx2(u, v, mask),
                _ => {}
            }
        }
    }
    dot_body(u, v, mask)
}

/// `Σ u_i · s_i` (lengths equal, a multiple of 64).
#[inline]
pub fn dot_u8_i8(u: &[u8], s: &[i8]) -> i32 {
    // SAFETY: i8 and u8 have the same size and alignment.
    let s = unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, s.len()) };
    dot(u, s, 0)
}

/// `Σ u_i · (v_i − 128)` (lengths equal, a multiple of 64).
#[inline]
pub fn dot_u8_u8flip(u: &[u8], v: &[u8]) -> i32 {
    dot(u, v, 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn kernels_agree_with_the_portable_body() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [64, 128, 192, 384, 1024] {
            let u: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let s: Vec<i8> = (0..len).map(|_| rng.gen_range(-127..=127)).collect();
            let want: i64 = u.iter().zip(&s).map(|(&a, &b)| a as i64 * b as i64).sum();
            assert_eq!(dot_u8_i8(&u, &s) as i64, want, "len {len}");
            let sb: Vec<u8> = s.iter().map(|&x| x as u8).collect();
            assert_eq!(dot_body(&u, &sb, 0) as i64, want);
            let want: i64 = u
                .iter()
                .zip(&v)
                .map(|(&a, &b)| a as i64 * (b as i64 - 128))
                .sum();
            assert_eq!(dot_u8_u8flip(&u, &v) as i64, want, "len {len}");
            assert_eq!(dot_body(&u, &v, 0x80) as i64, want);
        }
    }

    fn unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn estimates_track_exact_distances_and_survive_a_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let dim = 100; // not a multiple of 64: padding must not count
        let n = 300;
        let data: Vec<f32> = (0..n).flat_map(|_| unit(&mut rng, dim)).collect();
        let sq = Sq8::build(&data, dim);
        let dir = tempfile::tempdir().unwrap();
        sq.write(&dir.path().join("sq8.bin")).unwrap();
        let back = Sq8::open(&dir.path().join("sq8.bin")).unwrap();
        assert_eq!(back.len(), n);
        let q = unit(&mut rng, dim);
        for dot in [true, false] {
            let pq = back.query(&q, dot);
            for i in 0..n as u32 {
                let v = &data[i as usize * dim..(i as usize + 1) * dim];
                let ip: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
                let (est, exact) = if dot {
                    (back.dist_query(&pq, i), -ip)
                } else {
                    // without ‖q‖² = 1
                    (back.dist_query(&pq, i), 1.0 - 2.0 * ip)
                };
                assert!((est - exact).abs() < 0.02, "dot={dot} {est} vs {exact}");
                let w = &data[(i as usize + 1) % n * dim..((i as usize + 1) % n + 1) * dim];
                let ip2: f32 = v.iter().zip(w).map(|(a, b)| a * b).sum();
                let sym = back.dist(i, (i + 1) % n as u32, dot);
                let want = if dot { -ip2 } else { 2.0 - 2.0 * ip2 };
                assert!((sym - want).abs() < 0.02, "dot={dot} {sym} vs {want}");
            }
            assert_eq!(
                sq.dist_query(&sq.query(&q, dot), 5),
                back.dist_query(&pq, 5)
            );
        }
    }
}
