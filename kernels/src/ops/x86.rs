//! x86-64 building blocks shared by the ops' AVX2 variants.
//!
//! The helpers here are `#[target_feature]` functions: safe to call from
//! another function compiled with the same features, `unsafe` to call from
//! anywhere else. The only way into them from ordinary code is through an
//! [`Avx2`] or [`Avx512`] token, which exists only once detection succeeded.
//!
//! AVX-512 intrinsics are stable since Rust 1.89, the workspace's MSRV.

use std::arch::x86_64::*;

pub use crate::isa::{Avx2, Avx512};

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the 4 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn hsum_pd(v: __m256d) -> f64 {
    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    _mm_cvtsd_f64(s)
}

/// Maximum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Widen the 8 f32 lanes of `v` to f64 and add them into `acc` (two halves).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn add_widened(acc: &mut [__m256d; 2], v: __m256) {
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
}

/// Above this `exp` overflows f32: ln(f32::MAX) = 88.72283.
const EXP_HI: f32 = 88.722_83;
/// Below this the result is under 2^-125 and is flushed to zero, which keeps
/// the two-step exponent scaling below out of the subnormal range.
const EXP_LO: f32 = -86.6;

/// e^x on 8 lanes; relative error below `f32::EPSILON` over the normal
/// range (the unit test bounds it at 2 ulp; measured under 1).
///
/// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then the Cephes
/// degree-6 polynomial for e^r (the `expf` of Cephes / avx_mathfun).
/// x > 88.72 gives +inf, x < -86.6 gives 0 (so -inf gives 0, as softmax
/// masking needs), NaN gives NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn exp(x: __m256) -> __m256 {
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(EXP_LO)),
        _mm256_set1_ps(EXP_HI),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 split in a part exact in few bits and the remainder (Cephes).
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    // Scale by 2^n as 2^(n-1) * 2: n reaches 128 at the top of the range,
    // whose biased exponent (255) would read as infinity.
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(126),
    ));
    let y = _mm256_mul_ps(
        _mm256_mul_ps(y, _mm256_castsi256_ps(bits)),
        _mm256_set1_ps(2.0),
    );
    let y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_HI)),
    );
    let y = _mm256_blendv_ps(
        y,
        _mm256_setzero_ps(),
        _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_LO)),
    );
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// Load 8 f32 from the start of `s`.
///
/// # Panics
/// If `s` has fewer than 8 elements.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn load(s: &[f32]) -> __m256 {
    assert!(s.len() >= 8);
    // SAFETY: the assert above keeps the 8 lanes read inside `s`; loadu has
    // no alignment requirement.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

/// Store 8 f32 at the start of `d`.
///
/// # Panics
/// If `d` has fewer than 8 elements.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn store(d: &mut [f32], v: __m256) {
    assert!(d.len() >= 8);
    // SAFETY: the assert above keeps the 8 lanes written inside `d`; storeu
    // has no alignment requirement.
    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
}

/// Load 8 f16 from the start of `s`, widened to f32.
///
/// # Panics
/// If `s` has fewer than 8 elements.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn load_f16(s: &[half::f16]) -> __m256 {
    assert!(s.len() >= 8);
    // SAFETY: the assert keeps the 16 bytes read inside `s`; `half::f16` is
    // `repr(transparent)` over `u16`, so they are 8 IEEE half floats;
    // loadu_si128 has no alignment requirement.
    let h = unsafe { _mm_loadu_si128(s.as_ptr().cast::<__m128i>()) };
    _mm256_cvtph_ps(h)
}

/// 512-bit twins of the helpers above.
pub(crate) mod v512 {
    use super::{EXP_HI, EXP_LO};
    use std::arch::x86_64::*;

    /// e^x on 16 lanes, [`super::exp`] widened: same reduction, polynomial
    /// and edge handling; `scalef` applies the 2^n.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    pub(crate) fn exp(x: __m512) -> __m512 {
        let xc = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(EXP_LO)),
            _mm512_set1_ps(EXP_HI),
        );
        let n = _mm512_cvtepi32_ps(_mm512_cvtps_epi32(_mm512_mul_ps(
            xc,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        )));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), xc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.398_199_9e-3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666_666_5e-1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
        let r2 = _mm512_mul_ps(r, r);
        let y = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        let y = _mm512_scalef_ps(y, n);
        let y = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(EXP_HI)),
            y,
            _mm512_set1_ps(f32::INFINITY),
        );
        let y = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_LO)),
            y,
            _mm512_setzero_ps(),
        );
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), y, x)
    }

    /// Widen the 16 f32 lanes of `v` to f64 and add them into `acc`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    pub(crate) fn add_widened(acc: &mut [__m512d; 2], v: __m512) {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(hi));
    }

    /// Load 16 f32 from the start of `s`.
    ///
    /// # Panics
    /// If `s` has fewer than 16 elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    pub(crate) fn load(s: &[f32]) -> __m512 {
        assert!(s.len() >= 16);
        // SAFETY: the assert above keeps the 16 lanes read inside `s`; loadu
        // has no alignment requirement.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }

    /// Store 16 f32 at the start of `d`.
    ///
    /// # Panics
    /// If `d` has fewer than 16 elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    pub(crate) fn store(d: &mut [f32], v: __m512) {
        assert!(d.len() >= 16);
        // SAFETY: the assert above keeps the 16 lanes written inside `d`;
        // storeu has no alignment requirement.
        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
    }

    /// Load 16 f16 from the start of `s`, widened to f32.
    ///
    /// # Panics
    /// If `s` has fewer than 16 elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    pub(crate) fn load_f16(s: &[half::f16]) -> __m512 {
        assert!(s.len() >= 16);
        // SAFETY: the assert keeps the 32 bytes read inside `s`; `half::f16`
        // is `repr(transparent)` over `u16`, so they are 16 IEEE half floats;
        // loadu_si256 has no alignment requirement.
        let h = unsafe { _mm256_loadu_si256(s.as_ptr().cast::<__m256i>()) };
        _mm512_cvtph_ps(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// e^x on 8 lanes at once, through the AVX2 kernel.
    fn exp8(x: [f32; 8]) -> [f32; 8] {
        #[target_feature(enable = "avx2,fma")]
        fn run(x: &[f32; 8], y: &mut [f32; 8]) {
            store(y, exp(load(x)));
        }
        let mut y = [0.0; 8];
        // SAFETY: callers check `Avx2::new()` first, so the CPU has AVX2
        // and FMA.
        unsafe { run(&x, &mut y) };
        y
    }

    #[test]
    fn exp_is_within_2_ulp_over_the_normal_range() {
        if Avx2::new().is_none() {
            return;
        }
        let (lo, hi) = (EXP_LO, EXP_HI);
        let n = 200_000;
        let mut worst = 0.0f64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
            let mut x = [0.0f32; 8];
            for (xi, &i) in x.iter_mut().zip(chunk) {
                *xi = lo + (hi - lo) * i as f32 / n as f32;
            }
            let y = exp8(x);
            for (&xi, &yi) in x.iter().zip(&y) {
                let want = f64::from(xi).exp();
                // One ulp of the f32 result, as a relative error.
                let ulp = f64::from(f32::EPSILON) * want;
                worst = worst.max((f64::from(yi) - want).abs() / ulp);
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp512_is_within_2_ulp_and_matches_the_edges() {
        if Avx512::new().is_none() {
            return;
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
        fn run(x: &[f32; 16], y: &mut [f32; 16]) {
            v512::store(y, v512::exp(v512::load(x)));
        }
        let exp16 = |x: [f32; 16]| {
            let mut y = [0.0; 16];
            // SAFETY: `Avx512::new()` succeeded above.
            unsafe { run(&x, &mut y) };
            y
        };
        let n = 200_000;
        let mut worst = 0.0f64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
            let mut x = [0.0f32; 16];
            for (xi, &i) in x.iter_mut().zip(chunk) {
                *xi = EXP_LO + (EXP_HI - EXP_LO) * i as f32 / n as f32;
            }
            for (&xi, &yi) in x.iter().zip(&exp16(x)) {
                let want = f64::from(xi).exp();
                let ulp = f64::from(f32::EPSILON) * want;
                worst = worst.max((f64::from(yi) - want).abs() / ulp);
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        let mut x = [0.0f32; 16];
        x[..8].copy_from_slice(&[
            f32::NEG_INFINITY,
            -1000.0,
            0.0,
            89.0,
            f32::INFINITY,
            f32::NAN,
            EXP_HI,
            -0.0,
        ]);
        let y = exp16(x);
        assert_eq!(y[..5], [0.0, 0.0, 1.0, f32::INFINITY, f32::INFINITY]);
        assert!(y[5].is_nan());
        assert!(y[6].is_finite() && y[6] > 3.0e38, "{}", y[6]);
        assert_eq!(y[7], 1.0);
    }

    #[test]
    fn exp_edges() {
        if Avx2::new().is_none() {
            return;
        }
        let y = exp8([
            f32::NEG_INFINITY,
            -1000.0,
            0.0,
            89.0,
            f32::INFINITY,
            f32::NAN,
            EXP_HI,
            -0.0,
        ]);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[1], 0.0);
        assert_eq!(y[2], 1.0);
        assert_eq!(y[3], f32::INFINITY);
        assert_eq!(y[4], f32::INFINITY);
        assert!(y[5].is_nan());
        assert!(y[6].is_finite() && y[6] > 3.0e38, "{}", y[6]);
        assert_eq!(y[7], 1.0);
    }

    #[test]
    fn horizontal_reductions() {
        if Avx2::new().is_none() {
            return;
        }
        #[target_feature(enable = "avx2,fma")]
        fn run(x: &[f32; 8]) -> (f32, f32, f64) {
            let v = load(x);
            let mut acc = [_mm256_setzero_pd(); 2];
            add_widened(&mut acc, v);
            (hsum(v), hmax(v), hsum_pd(_mm256_add_pd(acc[0], acc[1])))
        }
        let x = [1.0, -2.0, 3.5, 0.25, -8.0, 7.0, 0.5, 2.0];
        // SAFETY: `Avx2::new()` succeeded above.
        let (s, m, s64) = unsafe { run(&x) };
        assert_eq!(s, 4.25);
        assert_eq!(m, 7.0);
        assert_eq!(s64, 4.25);
    }
}
