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

/// `out[t × n] = x[t × k] · w[k × n] + bias`, bias added inside the GEMM.
fn gemm_f32(x: &[f32], t: usize, k: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = bias.len();
    assert_eq!(x.len(), t * k);
    assert_eq!(w.len(), k * n);
    assert_eq!(out.len(), t * n);
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
