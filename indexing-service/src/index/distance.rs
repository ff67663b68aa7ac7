//! Distance kernels in f32: dot and squared L2, with AVX2+FMA chosen at run
//! time and a portable fallback (the same body, compiled twice). Tests hold
//! the dispatched kernels to a float64 reference on awkward lengths.

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
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Dot product. Panics in debug builds when lengths differ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: features detected.
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

/// Squared euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: features detected.
        return unsafe { l2_avx2(a, b) };
    }
    l2_body(a, b)
}

/// Scales `v` to unit length; false when it has zero (or non-finite) norm.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = dot(v, v).sqrt();
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= n);
    true
}

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
