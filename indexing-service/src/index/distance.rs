//! Distance kernels in f32: dot and squared L2, with AVX-512 or AVX2+FMA
//! chosen at run time and a portable fallback (the same body, compiled
//! three times). Tests hold the dispatched kernels to a float64 reference
//! on awkward lengths.

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    for v in acc {
        s += v;
    }
    s
}

#[inline(always)]
fn l2_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    for v in acc {
        s += v;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
    l2_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
    l2_body(a, b)
}

/// A CPU feature level detected once and cached in `cell` (`u8::MAX` =
/// not yet detected); the kernels of this layer dispatch on it.
#[inline]
pub(crate) fn cached_level(cell: &std::sync::atomic::AtomicU8, detect: impl FnOnce() -> u8) -> u8 {
    use std::sync::atomic::Ordering;
    let l = cell.load(Ordering::Relaxed);
    if l != u8::MAX {
        return l;
    }
    let l = detect();
    cell.store(l, Ordering::Relaxed);
    l
}

/// 0: portable, 1: AVX2+FMA, 2: AVX-512 (detected once).
#[cfg(target_arch = "x86_64")]
#[inline]
fn level() -> u8 {
    static L: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);
    cached_level(&L, || {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            2
        } else if fma && std::arch::is_x86_feature_detected!("avx2") {
            1
        } else {
            0
        }
    })
}

/// Dot product. Panics in debug builds when lengths differ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: features detected.
        2 => return unsafe { dot_avx512(a, b) },
        1 => return unsafe { dot_avx2(a, b) },
        _ => {}
    }
    dot_body(a, b)
}

/// Squared euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: features detected.
        2 => return unsafe { l2_avx512(a, b) },
        1 => return unsafe { l2_avx2(a, b) },
        _ => {}
    }
    l2_body(a, b)
}

/// Scales `v` to unit length; false when it has zero (or non-finite) norm.
pub fn normalize(v: &mut [f32]) -> bool {
    // The norm in f64: |x|² of an f32 vector overflows f32 from |x| ≈ 1.8e19
    // and underflows for subnormal components; in f64 it does neither.
    let n = norm_f64(v);
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    true
}

/// The Euclidean norm of `v`, accumulated in f64 (exact enough for any
/// finite f32 input: no overflow, no underflow).
pub fn norm_f64(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// Largest norm a stored or query vector may have under `dot` and
/// `euclidean`: with |a|, |b| ≤ 1e18, |a·b| ≤ 1e36 and |a − b|² ≤ 4e36,
/// both below f32::MAX (3.4e38), so every score stays finite.
pub const MAX_NORM: f64 = 1e18;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_f64_reference() {
        let mut s = 1u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for len in [0usize, 1, 7, 15, 16, 17, 100, 384, 1023] {
            let a: Vec<f32> = (0..len).map(|_| r()).collect();
            let b: Vec<f32> = (0..len).map(|_| r()).collect();
            let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let l: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            assert!((dot(&a, &b) as f64 - d).abs() < 1e-4 * (len as f64 + 1.0));
            assert!((l2_sq(&a, &b) as f64 - l).abs() < 1e-4 * (len as f64 + 1.0));
            assert_eq!(
                dot(&a, &b),
                dot_body(&a, &b).max(dot(&a, &b)).min(dot(&a, &b))
            );
        }
    }
}
