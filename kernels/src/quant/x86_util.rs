//! Horizontal sums and feature detection shared by the x86 SIMD variants of
//! the dot products.

use std::arch::x86_64::*;

/// AVX-512 F/BW/VL plus VNNI, the set the 512-bit kernels are compiled for.
pub(crate) fn has_avx512_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Sum of the eight i32 lanes (wrapping, like the scalar `i32` sums it
/// mirrors never do on valid blocks).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum_i32_256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Sum of the sixteen i32 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn hsum_i32_512(v: __m512i) -> i32 {
    let s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
    hsum_i32_256(s)
}

/// Sum of the eight f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum_f32_256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the sixteen f32 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn hsum_f32_512(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    hsum_f32_256(_mm256_add_ps(lo, hi))
}
