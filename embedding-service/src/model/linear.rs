//! A linear layer's weight in the precision the fused CPU encoders run in:
//! f32 through the `gemm` crate, or int8 codes through [`super::int8`].

use super::int8::{self, PackedWeight};

/// The precision of the fused encoders' linear layers (`dtype` f32 or
/// int8). Embeddings, layer norms, attention and pooling stay f32 in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Dynamically quantised int8 products (see [`super::int8`]).
    Int8,
}

/// A `[k × n]` weight, applied as `out = x · W + bias`.
pub struct Linear {
    k: usize,
    n: usize,
    w: Weight,
}

enum Weight {
    /// Row-major `[k × n]`.
    F32(Vec<f32>),
    Int8(PackedWeight),
}

impl Linear {
    /// Takes a row-major `[k × n]` weight (an `[out × in]` tensor already
    /// transposed, as `fused::load_linear_t` gives it); int8 quantises it
    /// here and drops the f32 copy.
    pub fn new(w: Vec<f32>, k: usize, n: usize, precision: Precision) -> Self {
        assert_eq!(w.len(), k * n, "weight is not {k} x {n}");
        let w = match precision {
            Precision::F32 => Weight::F32(w),
            Precision::Int8 => Weight::Int8(PackedWeight::new(&w, k, n)),
        };
        Self { k, n, w }
    }

    /// `out[t × n] = x[t × k] · W + bias` (`bias`: `n` floats; zeros for a
    /// layer without one). Panics when a length disagrees with the shape.
    pub fn forward(&self, x: &[f32], t: usize, bias: &[f32], out: &mut [f32]) {
        assert_eq!(bias.len(), self.n, "bias is not {} wide", self.n);
        match &self.w {
            Weight::F32(w) => gemm_f32(x, t, self.k, w, bias, out),
            Weight::Int8(w) => int8::linear(x, t, w, bias, out),
        }
    }
}

/// Up to this many rows (tokens), [`gemm_f32`] runs its own AVX-512 kernel
/// on the weight as stored; above, the `gemm` crate's packed kernels.
const SMALL_T: usize = 96;

/// `out[t × n] = x[t × k] · w[k × n] + bias`, bias added inside the GEMM.
///
/// A short batch (a query, a few short texts: `t ≤ 96`) runs on
/// [`small::linear`]: the `gemm` crate packs both operands on every call and
/// its micro-kernel spans 64 rows, which at 20 rows costs more than the
/// products; reading the weight in place, 6 rows × 64 columns at a time,
/// does not.
fn gemm_f32(x: &[f32], t: usize, k: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = bias.len();
    assert_eq!(x.len(), t * k);
    assert_eq!(w.len(), k * n);
    assert_eq!(out.len(), t * n);
    #[cfg(target_arch = "x86_64")]
    if t <= SMALL_T && std::arch::is_x86_feature_detected!("avx512f") {
        small::linear(x, t, k, w, bias, out);
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let par = if t * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers cover t×k, k×n and t×n row-major f32 buffers whose
    // lengths are asserted above; dst does not alias the inputs.
    unsafe {
        gemm::gemm(
            t,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod small {
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Columns of one tile (four 16-lane registers).
    const BLOCK: usize = 64;
    /// Rows of one tile.
    const MR: usize = 6;

    /// [`super::gemm_f32`] for few rows: tiles of 6 rows × 64 columns, the
    /// 24 sums in registers, `w` read in place (row `p`'s 64 columns are
    /// contiguous); column blocks are spread over the rayon pool.
    pub(super) fn linear(x: &[f32], t: usize, k: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
        let n = bias.len();
        let out_ptr = super::super::fused::SendPtr(out.as_mut_ptr());
        (0..n.div_ceil(BLOCK)).into_par_iter().for_each(|blk| {
            let mut r = 0;
            while r < t {
                let m = MR.min(t - r);
                // SAFETY: avx512f was detected by the caller; the tile reads
                // rows r..r+m of x (t × k), columns blk·64.. of w (k × n,
                // masked past n) and writes the same cells of out (t × n),
                // which no other block writes.
                unsafe {
                    let tile = Tile {
                        x: x.as_ptr().add(r * k),
                        k,
                        w: w.as_ptr(),
                        n,
                        col: blk * BLOCK,
                        bias: bias.as_ptr(),
                        out: out_ptr.get().add(r * n),
                    };
                    tile_rows(&tile, m);
                }
                r += m;
            }
        });
    }

    struct Tile {
        x: *const f32,
        k: usize,
        w: *const f32,
        n: usize,
        col: usize,
        bias: *const f32,
        out: *mut f32,
    }

    /// `rows` (≤ 6) rows × 64 columns from `t.col`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_rows(t: &Tile, rows: usize) {
        match rows {
            6 => tile::<6>(t),
            5 => tile::<5>(t),
            4 => tile::<4>(t),
            3 => tile::<3>(t),
            2 => tile::<2>(t),
            _ => tile::<1>(t),
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(t: &Tile) {
        let masks: [__mmask16; 4] = std::array::from_fn(|g| {
            let c = t.col + 16 * g;
            let cnt = t.n.saturating_sub(c).min(16);
            if cnt == 16 {
                0xffff
            } else {
                (1u32 << cnt).wrapping_sub(1) as u16
            }
        });
        let b: [__m512; 4] =
            std::array::from_fn(|g| _mm512_maskz_loadu_ps(masks[g], t.bias.add(t.col + 16 * g)));
        let mut c: [[__m512; 4]; R] = std::array::from_fn(|_| b);
        let full = masks[3] == 0xffff;
        for p in 0..t.k {
            let row = t.w.add(p * t.n + t.col);
            let w: [__m512; 4] = if full {
                std::array::from_fn(|g| _mm512_loadu_ps(row.add(16 * g)))
            } else {
                std::array::from_fn(|g| _mm512_maskz_loadu_ps(masks[g], row.add(16 * g)))
            };
            for (i, ci) in c.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*t.x.add(i * t.k + p));
                for g in 0..4 {
                    ci[g] = _mm512_fmadd_ps(a, w[g], ci[g]);
                }
            }
        }
        for (i, ci) in c.iter().enumerate() {
            for g in 0..4 {
                if masks[g] != 0 {
                    _mm512_mask_storeu_ps(t.out.add(i * t.n + t.col + 16 * g), masks[g], ci[g]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both f32 paths (few rows: our kernel; many: the `gemm` crate) against
    /// an f64 product, on shapes off the tile sizes.
    #[test]
    fn f32_products_match_f64_on_awkward_shapes() {
        let mut seed = 9u64;
        let mut rnd = move || crate::model::kernels::lcg(&mut seed);
        for (t, k, n) in [
            (1, 1, 1),
            (7, 5, 17),
            (19, 384, 1152),
            (96, 30, 70),
            (97, 64, 200),
            (13, 100, 64),
        ] {
            let x: Vec<f32> = (0..t * k).map(|_| rnd()).collect();
            let w: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let lin = Linear::new(w.clone(), k, n, Precision::F32);
            let mut out = vec![f32::NAN; t * n];
            lin.forward(&x, t, &bias, &mut out);
            for r in 0..t {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| x[r * k + p] as f64 * w[p * n + j] as f64)
                        .sum::<f64>()
                        + bias[j] as f64;
                    let got = out[r * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + k as f64).sqrt(),
                        "{t}x{k}x{n} [{r},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
