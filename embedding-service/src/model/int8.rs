//! Int8 matrix products for the fused CPU encoders (`dtype: int8`):
//! dynamic quantisation, as ONNX Runtime's `quantize_dynamic` and PyTorch's
//! `quantize_dynamic` do, with finer scales.
//!
//! - Weights are quantised once, at load: symmetric, one scale per output
//!   column (`s_w[j] = max_k |w[k][j]| / 127`, codes in [-127, 127]).
//! - Activations are quantised at each product: asymmetric, one scale and
//!   zero point per row (token): `q = round(x / s_x) + z_x`, codes in
//!   [0, 255], so a row's own range, not the batch's, sets its step.
//! - `out[i][j] = s_x[i] · s_w[j] · (Σ_k q_x[i][k] · q_w[k][j] − z_x[i] ·
//!   Σ_k q_w[k][j]) + bias[j]`. The sums are exact in i32 for `k` up to
//!   65,000 (255 · 127 · k < 2^31).
//!
//! Kernel: AVX-512 VNNI (`vpdpbusd`: 64 u8 × s8 products a instruction,
//! four times the multiply-adds of an f32 FMA), chosen at run time; a
//! portable body computes the same integers elsewhere. Accuracy: the
//! relative error of one product is about 3e-3 (the step of 8-bit codes);
//! the encoder's parity with the float64 reference is stated in the README.

use rayon::prelude::*;

/// Columns of one packed weight block (four 16-lane registers).
const BLOCK: usize = 64;
/// Rows of one register tile.
const MR: usize = 6;
/// Rows a parallel task takes.
const ROWS_PER_TASK: usize = 8 * MR;

/// A `[k × n]` weight quantised and packed for the kernel: for each block of
/// 64 columns, for each group of 4 rows of `k`, 64 columns × 4 bytes (the
/// operand layout of `vpdpbusd`). Padding (rows past `k`, columns past `n`)
/// is zero, so it adds nothing.
pub struct PackedWeight {
    k: usize,
    n: usize,
    /// `k` rounded up to a multiple of 4.
    kp: usize,
    data: Vec<i8>,
    /// Per column (padded to the block): `s_w[j]`.
    scale: Vec<f32>,
    /// Per column (padded): `Σ_k q_w[k][j]`, for the zero-point correction.
    colsum: Vec<i32>,
}

impl PackedWeight {
    /// Quantises a row-major `[k × n]` f32 weight (`w[r * n + j]`).
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "weight is not {k} x {n}");
        let kp = k.div_ceil(4) * 4;
        let np = n.div_ceil(BLOCK) * BLOCK;
        let mut scale = vec![1f32; np];
        for (j, s) in scale.iter_mut().enumerate().take(n) {
            let m = (0..k).fold(0f32, |m, r| m.max(w[r * n + j].abs()));
            if m > 0.0 {
                *s = m / 127.0;
            }
        }
        let mut data = vec![0i8; kp * np];
        let mut colsum = vec![0i32; np];
        for r in 0..k {
            for j in 0..n {
                let q = (w[r * n + j] / scale[j]).round().clamp(-127.0, 127.0) as i8;
                colsum[j] += q as i32;
                data[packed_at(kp, r, j)] = q;
            }
        }
        Self {
            k,
            n,
            kp,
            data,
            scale,
            colsum,
        }
    }
}

/// Where weight `(r, j)` sits in [`PackedWeight`]'s codes (`kp` rows).
fn packed_at(kp: usize, r: usize, j: usize) -> usize {
    (j / BLOCK) * kp * BLOCK + (r / 4) * 4 * BLOCK + (j % BLOCK) * 4 + r % 4
}

/// Activations quantised per row: `[t × kp]` codes, and each row's scale and
/// zero point.
#[derive(Default)]
pub struct QuantRows {
    codes: Vec<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// `out[t × n] = x[t × k] · w + bias` through int8 codes (see the module
/// docs). `x` is row-major f32, `bias` has `n` entries (zeros for none).
/// Rows are split across the rayon pool in blocks of 48.
pub fn linear(x: &[f32], t: usize, w: &PackedWeight, bias: &[f32], out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    assert_eq!(x.len(), t * k, "input is not {t} x {k}");
    assert_eq!(bias.len(), n, "bias is not {n} wide");
    assert_eq!(out.len(), t * n, "output is not {t} x {n}");
    let mut q = QuantRows::default();
    quantize_rows(x, t, k, w.kp, &mut q);
    let vnni = has_vnni();
    let q = &q;
    out.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(c, o)| {
            let r0 = c * ROWS_PER_TASK;
            let rows = o.len() / n;
            if vnni {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX-512 F/BW/VNNI (checked above);
                // every pointer the kernel forms stays inside `q`, `w`,
                // `bias` and `o` (asserted shapes, padded weights).
                unsafe {
                    vnni::rows(q, r0, rows, w, bias, o)
                };
            } else {
                rows_portable(q, r0, rows, w, bias, o);
            }
        });
}

/// Whether the AVX-512 VNNI kernel runs on this CPU.
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantises each row of `x[t × k]` to u8 codes with its own scale and zero
/// point; rows are padded with the zero point to `kp` codes.
fn quantize_rows(x: &[f32], t: usize, k: usize, kp: usize, q: &mut QuantRows) {
    q.codes.resize(t * kp, 0);
    q.scale.resize(t, 0.0);
    q.zero.resize(t, 0);
    let per = 16;
    q.codes
        .par_chunks_mut(per * kp)
        .zip(q.scale.par_chunks_mut(per))
        .zip(q.zero.par_chunks_mut(per))
        .enumerate()
        .for_each(|(c, ((codes, scale), zero))| {
            for (i, ((row, s), z)) in codes
                .chunks_exact_mut(kp)
                .zip(scale.iter_mut())
                .zip(zero.iter_mut())
                .enumerate()
            {
                let r = c * per + i;
                (*s, *z) = quantize_row(&x[r * k..(r + 1) * k], row);
            }
        });
}

/// One row: the range always includes 0 (so the zero point is a code and
/// zero padding is exact); returns `(scale, zero point)`.
fn quantize_row(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    let (lo, hi) = crate::model::kernels::min_max(x);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let z = (-lo / s).round().clamp(0.0, 255.0) as i32;
    crate::model::kernels::quantize_u8(x, 1.0 / s, z as f32, out);
    out[x.len()..].fill(z as u8);
    (s, z)
}

/// The portable kernel: the same integers as the VNNI one, one row by one
/// 64-column block at a time, written so the compiler vectorises across the
/// block's columns (widening multiply-adds, as SSE2's `pmaddwd`).
fn rows_portable(
    q: &QuantRows,
    r0: usize,
    rows: usize,
    w: &PackedWeight,
    bias: &[f32],
    out: &mut [f32],
) {
    let (n, kp) = (w.n, w.kp);
    for i in 0..rows {
        let r = r0 + i;
        let a = &q.codes[r * kp..(r + 1) * kp];
        for blk in 0..n.div_ceil(BLOCK) {
            let b = &w.data[blk * kp * BLOCK..(blk + 1) * kp * BLOCK];
            let mut acc = [0i32; BLOCK];
            for (g, bg) in b.chunks_exact(4 * BLOCK).enumerate() {
                let a4 = [
                    a[4 * g] as i32,
                    a[4 * g + 1] as i32,
                    a[4 * g + 2] as i32,
                    a[4 * g + 3] as i32,
                ];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let w4 = &bg[4 * c..4 * c + 4];
                    *acc += a4[0] * w4[0] as i32
                        + a4[1] * w4[1] as i32
                        + a4[2] * w4[2] as i32
                        + a4[3] * w4[3] as i32;
                }
            }
            for (c, &acc) in acc.iter().enumerate() {
                let j = blk * BLOCK + c;
                if j >= n {
                    break;
                }
                let v = acc - q.zero[r] * w.colsum[j];
                // Fused as the VNNI kernel's epilogue is, so both round alike.
                out[i * n + j] = (v as f32).mul_add(q.scale[r] * w.scale[j], bias[j]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PackedWeight, QuantRows, BLOCK, MR};
    use std::arch::x86_64::*;

    /// Rows `r0..r0 + rows` of the product into `out` (`rows × n`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn rows(
        q: &QuantRows,
        r0: usize,
        rows: usize,
        w: &PackedWeight,
        bias: &[f32],
        out: &mut [f32],
    ) {
        let blocks = w.n.div_ceil(BLOCK);
        for blk in 0..blocks {
            let mut i = 0;
            while i < rows {
                let m = MR.min(rows - i);
                let args = Tile {
                    a: q.codes.as_ptr().add((r0 + i) * w.kp),
                    scale: q.scale.as_ptr().add(r0 + i),
                    zero: q.zero.as_ptr().add(r0 + i),
                    blk,
                    w,
                    bias,
                    out: out.as_mut_ptr().add(i * w.n),
                };
                match m {
                    6 => tile::<6>(&args),
                    5 => tile::<5>(&args),
                    4 => tile::<4>(&args),
                    3 => tile::<3>(&args),
                    2 => tile::<2>(&args),
                    _ => tile::<1>(&args),
                }
                i += m;
            }
        }
    }

    struct Tile<'a> {
        /// First code of the tile's first row (rows `kp` apart).
        a: *const u8,
        scale: *const f32,
        zero: *const i32,
        blk: usize,
        w: &'a PackedWeight,
        bias: &'a [f32],
        /// First output of the tile's first row (rows `n` apart).
        out: *mut f32,
    }

    /// `R` rows × one 64-column block: the integer sums in 4R registers,
    /// then scale, zero-point correction and bias, stored with a mask past
    /// column `n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize>(t: &Tile) {
        let w = t.w;
        let (kp, n) = (w.kp, w.n);
        let b = w.data.as_ptr().add(t.blk * kp * BLOCK);
        let mut c: [[__m512i; 4]; R] = std::array::from_fn(|_| [_mm512_setzero_si512(); 4]);
        let mut p = 0;
        while p < kp {
            let bp = b.add(p * BLOCK);
            let b0 = _mm512_loadu_si512(bp as *const _);
            let b1 = _mm512_loadu_si512(bp.add(64) as *const _);
            let b2 = _mm512_loadu_si512(bp.add(128) as *const _);
            let b3 = _mm512_loadu_si512(bp.add(192) as *const _);
            for (i, ci) in c.iter_mut().enumerate() {
                let av = _mm512_set1_epi32((t.a.add(i * kp + p) as *const i32).read_unaligned());
                ci[0] = _mm512_dpbusd_epi32(ci[0], av, b0);
                ci[1] = _mm512_dpbusd_epi32(ci[1], av, b1);
                ci[2] = _mm512_dpbusd_epi32(ci[2], av, b2);
                ci[3] = _mm512_dpbusd_epi32(ci[3], av, b3);
            }
            p += 4;
        }
        for (i, ci) in c.iter().enumerate() {
            let s = _mm512_set1_ps(*t.scale.add(i));
            let z = _mm512_set1_epi32(*t.zero.add(i));
            for (g, acc) in ci.iter().enumerate() {
                let col = t.blk * BLOCK + g * 16;
                if col >= n {
                    break;
                }
                let cnt = (n - col).min(16);
                let mask: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
                let cs = _mm512_loadu_si512(w.colsum.as_ptr().add(col) as *const _);
                let v = _mm512_sub_epi32(*acc, _mm512_mullo_epi32(cs, z));
                let sw = _mm512_loadu_ps(w.scale.as_ptr().add(col));
                let bb = _mm512_maskz_loadu_ps(mask, t.bias.as_ptr().add(col));
                let f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(s, sw), bb);
                _mm512_mask_storeu_ps(t.out.add(i * n + col), mask, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::lcg;

    /// The f64 product of the dequantised codes: what both kernels must
    /// compute up to f32 rounding of the final scale.
    fn dequantised(x: &[f32], t: usize, w: &PackedWeight, bias: &[f32]) -> Vec<f64> {
        let (k, n, kp) = (w.k, w.n, w.kp);
        let mut q = QuantRows::default();
        quantize_rows(x, t, k, kp, &mut q);
        let mut out = vec![0f64; t * n];
        for r in 0..t {
            for j in 0..n {
                let mut acc = 0f64;
                for p in 0..k {
                    let a = (q.codes[r * kp + p] as i32 - q.zero[r]) as f64 * q.scale[r] as f64;
                    let c = w.data[packed_at(kp, p, j)];
                    acc += a * c as f64 * w.scale[j] as f64;
                }
                out[r * n + j] = acc + bias[j] as f64;
            }
        }
        out
    }

    #[test]
    fn both_kernels_compute_the_quantised_product_on_awkward_shapes() {
        let mut seed = 3;
        // Rows not a multiple of the tile or task, k not a multiple of 4,
        // n not a multiple of 16 or 64.
        for (t, k, n) in [
            (1, 1, 1),
            (7, 5, 17),
            (53, 30, 70),
            (49, 384, 128),
            (13, 64, 200),
        ] {
            let x: Vec<f32> = (0..t * k).map(|_| lcg(&mut seed) * 3.0).collect();
            let wf: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.1).collect();
            let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let w = PackedWeight::new(&wf, k, n);
            let want = dequantised(&x, t, &w, &bias);
            let mut got = vec![0f32; t * n];
            linear(&x, t, &w, &bias, &mut got);
            let mut portable = vec![0f32; t * n];
            let mut q = QuantRows::default();
            quantize_rows(&x, t, k, w.kp, &mut q);
            rows_portable(&q, 0, t, &w, &bias, &mut portable);
            for i in 0..t * n {
                let tol = 1e-4 * (1.0 + want[i].abs());
                assert!(
                    (got[i] as f64 - want[i]).abs() < tol,
                    "{t}x{k}x{n} [{i}]: {} vs {}",
                    got[i],
                    want[i]
                );
                // Same integers, same fused epilogue: the same floats.
                assert_eq!(
                    got[i].to_bits(),
                    portable[i].to_bits(),
                    "portable {t}x{k}x{n} [{i}]"
                );
            }
            // And the quantised product is close to the f32 one: within a
            // few steps of the 8-bit codes.
            let mut err = 0f64;
            let mut norm = 0f64;
            for r in 0..t {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|p| x[r * k + p] as f64 * wf[p * n + j] as f64)
                        .sum::<f64>()
                        + bias[j] as f64;
                    err += (got[r * n + j] as f64 - exact).powi(2);
                    norm += exact.powi(2);
                }
            }
            assert!(
                (err / norm).sqrt() < 2e-2,
                "{t}x{k}x{n}: relative error {}",
                (err / norm).sqrt()
            );
        }
    }

    #[test]
    fn rows_with_one_value_or_all_zero_quantise_exactly() {
        for row in [vec![0f32; 9], vec![2.5f32; 9], vec![-1.0f32; 9]] {
            let mut codes = vec![0u8; 12];
            let (s, z) = quantize_row(&row, &mut codes);
            for (c, v) in codes.iter().zip(&row) {
                let back = (*c as i32 - z) as f32 * s;
                assert!(
                    (back - v).abs() <= s * 0.5 + 1e-6,
                    "{v} came back as {back}"
                );
            }
            assert!(
                codes[9..].iter().all(|&c| c as i32 == z),
                "padding is the zero point"
            );
        }
    }
}
