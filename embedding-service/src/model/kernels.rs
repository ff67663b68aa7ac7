//! Element-wise CPU kernels of the fused encoder: exp, erf-GELU, softmax,
//! residual + layer norm, dot and axpy.
//!
//! Each public kernel has one generic body compiled three times: for the
//! baseline target, with AVX2+FMA, and with AVX-512, chosen at run time. The
//! bodies are written so LLVM vectorises them (independent lanes, no calls
//! into libm). Accuracy: `exp` has ~2 ulp relative error, `erf` below 5e-7
//! absolute (a rational approximation, as XLA's); tests hold them to the std
//! functions and parity tests hold the whole encoder to a float64 reference.

const LOG2E: f32 = std::f32::consts::LOG2_E;

/// exp(x) by range reduction to [-ln2/2, ln2/2] and a degree-6 polynomial
/// (Cephes `expf`). Inputs are clamped to the finite range.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let fx = (x * LOG2E + 0.5).floor();
    let r = x - fx * 0.693_359_4 + fx * 2.121_944_4e-4;
    let z = r * r;
    let y = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = y * z + r + 1.0;
    // fx is in [-126, 127] after the clamp, so the exponent is valid.
    let n = fx as i32;
    f32::from_bits(((n + 127) << 23) as u32) * y
}

/// erf(x), absolute error below 5e-7 (a few ulp of 1.0): a rational function, odd degree-13
/// numerator over even degree-8 denominator, on x clamped to [-4, 4] (where
/// erf is ±1 in f32), as XLA's and Eigen's `erf` for f32 compute it. No
/// exp and no branch, so a loop over it vectorises to FMAs and one divide.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

macro_rules! dispatch {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                    unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                        $generic($($arg),*)
                    }
                    // SAFETY: the features were detected just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                        $generic($($arg),*)
                    }
                    // SAFETY: the features were detected just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

#[inline(always)]
fn gelu_erf_generic(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        let v = *x;
        *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn gelu_tanh_generic(xs: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    for x in xs.iter_mut() {
        let v = *x;
        let u = C * (v + 0.044_715 * v * v * v);
        // tanh(u) = 1 - 2 / (exp(2u) + 1)
        let th = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *x = 0.5 * v * (1.0 + th);
    }
}

#[inline(always)]
fn relu_generic(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = x.max(0.0);
    }
}

#[inline(always)]
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    for v in acc {
        s += v;
    }
    s
}

#[inline(always)]
fn min_max_generic(xs: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 16];
    let mut hi = [f32::NEG_INFINITY; 16];
    let c = xs.chunks_exact(16);
    let rest = c.remainder();
    for x in c {
        for i in 0..16 {
            lo[i] = lo[i].min(x[i]);
            hi[i] = hi[i].max(x[i]);
        }
    }
    let (mut l, mut h) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in rest.iter().chain(&lo) {
        l = l.min(v);
    }
    for &v in rest.iter().chain(&hi) {
        h = h.max(v);
    }
    (l, h)
}

#[inline(always)]
fn quantize_u8_generic(xs: &[f32], inv_scale: f32, zero: f32, out: &mut [u8]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        // `max` then `min` (not `clamp`, which keeps NaN) also map NaN to 0,
        // each returning the other operand for NaN: v is finite, in [0, 255].
        #[allow(clippy::manual_clamp)]
        let v = ((x * inv_scale).round_ties_even() + zero)
            .max(0.0)
            .min(255.0);
        // SAFETY: v is finite and in [0, 255] (above), so it fits an i32;
        // the unchecked conversion lets the loop vectorise (`as` saturates
        // lane by lane).
        *o = unsafe { v.to_int_unchecked::<i32>() } as u8;
    }
}

/// The keys a query attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Every key of the sequence (encoders).
    All,
    /// Keys `0..=i` for query `i` (decoders).
    Causal,
    /// Keys within `w` positions of the query, `|i − j| ≤ w` (ModernBERT's
    /// local layers: `w` = `local_attention / 2`).
    Window(usize),
}

impl Keys {
    /// The half-open range of keys query `i` of a `len`-token sequence sees.
    #[inline(always)]
    pub fn range(self, i: usize, len: usize) -> (usize, usize) {
        match self {
            Keys::All => (0, len),
            Keys::Causal => (0, i + 1),
            Keys::Window(w) => (i.saturating_sub(w), (i + w + 1).min(len)),
        }
    }
}

/// Queries per block of the attention kernel.
const QB: usize = 4;
/// Keys per vector of the attention kernel.
const KW: usize = 16;

/// Softmax attention for one head of one sequence, packed rows:
/// `q`, `k`, `v` rows of `d` floats start at `base + i * stride`; the result
/// row `i` is written to `out[i * out_stride ..][..d]`. `scratch` holds at
/// least [`attention_scratch`]`(len, d)` floats. No mask: packed sequences
/// hold no padding.
/// `bias`: empty, or `2·len − 1` floats added to the scaled scores, the score
/// of key `j` for query `i` getting `bias[j + len − 1 − i]` (a bias that
/// depends only on the relative position, as MPNet's). `keys`: which keys
/// each query attends to (all, causal, or a sliding window).
///
/// Blocked like a small GEMM: the keys are transposed (and scaled) into `d`
/// rows of `len` (padded to 16), and 4 queries × 16 keys of scores are
/// accumulated in registers across `d`; then softmax per query over its own
/// key range, and 4 queries × 16 outputs of `P·V` accumulated across keys.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attention_head_generic(
    qkv: &[f32],
    q_off: usize,
    k_off: usize,
    v_off: usize,
    stride: usize,
    len: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
    out_stride: usize,
    scratch: &mut [f32],
    bias: &[f32],
    keys: Keys,
) {
    let lp = len.div_ceil(KW) * KW;
    let (kt, rest) = scratch[..attention_scratch(len, d)].split_at_mut(d * lp);
    let s = &mut rest[..QB * lp];
    for j in 0..lp {
        if j < len {
            let k = &qkv[k_off + j * stride..][..d];
            for (dd, &kv) in k.iter().enumerate() {
                kt[dd * lp + j] = kv * scale;
            }
        } else {
            for dd in 0..d {
                kt[dd * lp + j] = 0.0;
            }
        }
    }
    let mut i0 = 0;
    while i0 < len {
        let qb = QB.min(len - i0);
        // Rows of the block's queries; a block past the end repeats the
        // last query (its results are not stored).
        let qrow: [usize; QB] = std::array::from_fn(|qi| q_off + (i0 + qi).min(len - 1) * stride);
        // The block's key range: the rules' ranges move right with i.
        let lo_u = keys.range(i0, len).0;
        let hi_u = keys.range(i0 + qb - 1, len).1;
        let mut j0 = lo_u / KW * KW;
        while j0 < hi_u {
            let mut acc = [[0f32; KW]; QB];
            for dd in 0..d {
                let kr: &[f32; KW] = kt[dd * lp + j0..][..KW].try_into().unwrap();
                for (a, &r) in acc.iter_mut().zip(&qrow) {
                    let qv = qkv[r + dd];
                    for l in 0..KW {
                        a[l] = qv.mul_add(kr[l], a[l]);
                    }
                }
            }
            for (qi, a) in acc.iter().enumerate() {
                s[qi * lp + j0..][..KW].copy_from_slice(a);
            }
            j0 += KW;
        }
        // Softmax of each query over its own keys; zero elsewhere in the
        // block's range, so P·V below can run over the whole range.
        for qi in 0..QB {
            let row = &mut s[qi * lp..(qi + 1) * lp];
            if qi >= qb {
                row[lo_u..hi_u].fill(0.0);
                continue;
            }
            let i = i0 + qi;
            let (lo, hi) = keys.range(i, len);
            row[lo_u..lo].fill(0.0);
            row[hi..hi_u].fill(0.0);
            let r = &mut row[lo..hi];
            if !bias.is_empty() {
                for (x, b) in r.iter_mut().zip(&bias[lo + len - 1 - i..]) {
                    *x += b;
                }
            }
            softmax_generic(r);
        }
        let mut c0 = 0;
        while c0 < d {
            let w = KW.min(d - c0);
            let mut acc = [[0f32; KW]; QB];
            for j in lo_u..hi_u {
                let at = v_off + j * stride + c0;
                let mut tail = [0f32; KW];
                let v: &[f32; KW] = if w == KW {
                    qkv[at..at + KW].try_into().unwrap()
                } else {
                    tail[..w].copy_from_slice(&qkv[at..at + w]);
                    &tail
                };
                for (qi, a) in acc.iter_mut().enumerate() {
                    let p = s[qi * lp + j];
                    for l in 0..KW {
                        a[l] = p.mul_add(v[l], a[l]);
                    }
                }
            }
            for (qi, a) in acc.iter().enumerate().take(qb) {
                out[(i0 + qi) * out_stride + c0..][..w].copy_from_slice(&a[..w]);
            }
            c0 += KW;
        }
        i0 += qb;
    }
}

/// In-place softmax of `r`, with 16 lanes of max and sum so both
/// reductions vectorise.
#[inline(always)]
fn softmax_generic(r: &mut [f32]) {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = r.chunks_exact(16);
    for c in &mut chunks {
        for l in 0..16 {
            m[l] = m[l].max(c[l]);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&m)
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let mut acc = [0f32; 16];
    let mut chunks = r.chunks_exact_mut(16);
    for c in &mut chunks {
        for l in 0..16 {
            let e = exp(c[l] - max);
            c[l] = e;
            acc[l] += e;
        }
    }
    let mut sum = 0.0;
    for x in chunks.into_remainder() {
        let e = exp(*x - max);
        *x = e;
        sum += e;
    }
    let inv = 1.0 / (sum + acc.iter().sum::<f32>());
    for x in r.iter_mut() {
        *x *= inv;
    }
}

/// Floats of scratch [`attention_head`] needs for a `len`-token sequence
/// with heads of `d`: the transposed keys and one block's scores.
pub fn attention_scratch(len: usize, d: usize) -> usize {
    let lp = len.div_ceil(KW) * KW;
    d * lp + QB * lp
}

/// `x = layer_norm(x + r) * gamma + beta`, row by row (rows of `gamma.len()`).
#[inline(always)]
fn add_layer_norm_generic(x: &mut [f32], r: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    for (row, rrow) in x.chunks_exact_mut(h).zip(r.chunks_exact(h)) {
        let mut acc = [0f32; 16];
        let mut rest = 0f32;
        {
            let cx = row.chunks_exact_mut(16);
            let cr = rrow.chunks_exact(16);
            for (a, b) in cx.zip(cr) {
                for i in 0..16 {
                    a[i] += b[i];
                    acc[i] += a[i];
                }
            }
        }
        let tail = h - h % 16;
        for i in tail..h {
            row[i] += rrow[i];
            rest += row[i];
        }
        let mean = (acc.iter().sum::<f32>() + rest) / h as f32;
        let mut vacc = [0f32; 16];
        let mut vrest = 0f32;
        for c in row.chunks_exact(16) {
            for i in 0..16 {
                let d = c[i] - mean;
                vacc[i] += d * d;
            }
        }
        for v in &row[tail..] {
            let d = v - mean;
            vrest += d * d;
        }
        let var = (vacc.iter().sum::<f32>() + vrest) / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

dispatch!(
    /// In-place GELU with exact erf (`hidden_act: gelu`).
    pub fn gelu_erf(xs: &mut [f32]) => gelu_erf_generic
);
dispatch!(
    /// In-place GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    pub fn gelu_tanh(xs: &mut [f32]) => gelu_tanh_generic
);
dispatch!(
    /// In-place ReLU.
    pub fn relu(xs: &mut [f32]) => relu_generic
);
dispatch!(
    /// Dot product.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 => dot_generic
);
dispatch!(
    /// `(min, max)` of `xs`; `(inf, -inf)` when empty.
    pub fn min_max(xs: &[f32]) -> (f32, f32) => min_max_generic
);
dispatch!(
    /// `out[i] = clamp(round_half_even(xs[i] · inv_scale) + zero, 0, 255)`
    /// for the first `xs.len()` entries of `out` (int8 activations).
    pub fn quantize_u8(xs: &[f32], inv_scale: f32, zero: f32, out: &mut [u8]) => quantize_u8_generic
);
dispatch!(
    /// Residual add then layer norm, in place on `x`.
    pub fn add_layer_norm(x: &mut [f32], r: &[f32], gamma: &[f32], beta: &[f32], eps: f32) => add_layer_norm_generic
);
dispatch!(
    /// One attention head of one packed sequence (see the generic body).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_head(qkv: &[f32], q_off: usize, k_off: usize, v_off: usize, stride: usize, len: usize, d: usize, scale: f32, out: &mut [f32], out_stride: usize, scratch: &mut [f32], bias: &[f32], keys: Keys) => attention_head_generic
);

/// A deterministic pseudo-random value in [-1, 1) for the model tests
/// (a 64-bit LCG advanced in `seed`).
#[cfg(test)]
pub(crate) fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}) = {a}, std {b}");
            x += 0.0173;
        }
    }

    #[test]
    fn erf_is_close() {
        // erf via a float64 series for reference.
        fn erf64(x: f64) -> f64 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 || n < 5.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut x = -4.0f32;
        while x < 4.0 {
            let err = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(err < 5e-7, "erf({x}) off by {err}");
            x += 0.01;
        }
    }

    #[test]
    fn dispatched_kernels_match_scalar_on_awkward_lengths() {
        let mut seed = 7;
        for len in [1usize, 3, 15, 16, 17, 31, 33, 384, 1000] {
            let a: Vec<f32> = (0..len).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..len).map(|_| lcg(&mut seed)).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4 * len as f64);
            let mut g = a.clone();
            gelu_erf(&mut g);
            let mut g2 = a.clone();
            gelu_erf_generic(&mut g2);
            for (x, y) in g.iter().zip(&g2) {
                assert!((x - y).abs() < 1e-6);
            }
        }
    }

    /// The transposed-key kernel against a naive f64 softmax attention, for
    /// every key rule, with and without a relative bias, on lengths and head
    /// widths around the vector width.
    #[test]
    fn attention_matches_naive() {
        let mut seed = 5;
        for (d, len) in [8usize, 20, 32]
            .into_iter()
            .flat_map(|d| [1usize, 2, 15, 16, 17, 40].map(|len| (d, len)))
        {
            for keys in [Keys::All, Keys::Causal, Keys::Window(3)] {
                for with_bias in [false, true] {
                    let stride = 3 * d;
                    let qkv: Vec<f32> = (0..len * stride).map(|_| lcg(&mut seed)).collect();
                    let bias: Vec<f32> = if with_bias {
                        (0..2 * len - 1).map(|_| lcg(&mut seed)).collect()
                    } else {
                        Vec::new()
                    };
                    let scale = 0.35;
                    let mut out = vec![0f32; len * d];
                    let mut scratch = vec![0f32; attention_scratch(len, d)];
                    attention_head(
                        &qkv,
                        0,
                        d,
                        2 * d,
                        stride,
                        len,
                        d,
                        scale,
                        &mut out,
                        d,
                        &mut scratch,
                        &bias,
                        keys,
                    );
                    for i in 0..len {
                        let (lo, hi) = keys.range(i, len);
                        let s: Vec<f64> = (lo..hi)
                            .map(|j| {
                                let dot: f64 = (0..d)
                                    .map(|x| {
                                        qkv[i * stride + x] as f64 * qkv[j * stride + d + x] as f64
                                    })
                                    .sum();
                                dot * scale as f64
                                    + if with_bias {
                                        bias[j + len - 1 - i] as f64
                                    } else {
                                        0.0
                                    }
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::MIN, f64::max);
                        let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                        for x in 0..d {
                            let want: f64 = (lo..hi)
                                .map(|j| {
                                    (s[j - lo] - m).exp() / z * qkv[j * stride + 2 * d + x] as f64
                                })
                                .sum();
                            let got = out[i * d + x] as f64;
                            assert!(
                                (got - want).abs() < 1e-5,
                                "len {len} {keys:?} bias {with_bias}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_matches_naive() {
        let mut seed = 11;
        for h in [7usize, 16, 384] {
            let rows = 3;
            let x: Vec<f32> = (0..h * rows).map(|_| lcg(&mut seed)).collect();
            let r: Vec<f32> = (0..h * rows).map(|_| lcg(&mut seed)).collect();
            let g: Vec<f32> = (0..h).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..h).map(|_| lcg(&mut seed)).collect();
            let mut got = x.clone();
            add_layer_norm(&mut got, &r, &g, &b, 1e-12);
            for row in 0..rows {
                let s: Vec<f64> = (0..h)
                    .map(|i| (x[row * h + i] + r[row * h + i]) as f64)
                    .collect();
                let mean = s.iter().sum::<f64>() / h as f64;
                let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / h as f64;
                for i in 0..h {
                    let want = (s[i] - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64;
                    assert!((got[row * h + i] as f64 - want).abs() < 1e-4, "h={h}");
                }
            }
        }
    }
}
