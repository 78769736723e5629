//! Horizontal sums and feature detection shared by the x86 SIMD variants of
//! the dot products.

use std::arch::x86_64::*;

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

/// Byte `i` of the result is 0xFF where bit `i` of `bits` is set, else 0
/// (ggml's `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn bytes_from_bits_32(bits: u32) -> __m256i {
    let b = _mm256_set1_epi32(bits as i32);
    // Byte i takes byte i / 8 of `bits`...
    let spread = _mm256_setr_epi64x(
        0x0000_0000_0000_0000,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let b = _mm256_shuffle_epi8(b, spread);
    // ...and all of its bits but bit i % 8 are set: all ones iff that bit is.
    let b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1))
}

/// The f16 scales `a` and `b` as f32: `[a; 8]` in the low half, `[b; 8]`
/// in the high half (exact conversions, one `vcvtph2ps` for both).
#[inline]
#[target_feature(enable = "avx512f,f16c")]
pub(crate) fn halves_f16(a: [u8; 2], b: [u8; 2]) -> __m512 {
    let bits = u16::from_le_bytes(a) as u32 | (u16::from_le_bytes(b) as u32) << 16;
    let f = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f))
}

/// A little-endian f16 to f32 with F16C's `vcvtph2ps`: exact, as
/// [`super::f16_le`], without its branches.
#[inline]
#[target_feature(enable = "f16c")]
pub(crate) fn f16c(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}
