//! The x86 kernels of the K-quants with sixteen sub-blocks of 16 values and
//! one signed scale each, Q3_K and Q6_K, written once.
//!
//! Per block they form the scalar code's integer exactly:
//! `sum_j sc_j * sum_{i in j} (u_i - 2^S) * q8_i` as
//! `sum_j sc_j * sum_{i in j} u_i * q8_i - 2^S * sum_j sc_j * bsum_j`, with
//! `u` the unsigned quants (Q3_K: 3 bits, `S = 2`; Q6_K: 6 bits, `S = 5`)
//! times i8 via `maddubs` (at most 2 * 63 * 128 per i16 pair, so it never
//! saturates), scaled by the signed sub-block scales into i32 lanes by
//! `madd` or VNNI's `vpdpwssd`; the Q8_K group sums give the offset. The
//! f32 part is kept in per-lane partial sums, so a row differs from the
//! scalar loop by rounding only.
//!
//! A format says how its quants and scales are stored ([`K16`]); the rows,
//! tiles and integer sums are derived here. Tiles, dispatch and their
//! bit-identity: [`super::simd`]. Every kernel needs F16C too (the f16
//! block scale).

use std::arch::x86_64::*;

use super::q8_k::BlockQ8K;
use super::x86_util::{f16c, hsum_f32_256, hsum_f32_512, hsum_i32_256, hsum_i32_512};

/// How a 16-value-sub-block K-quant stores its block.
pub(crate) trait K16: Sized {
    /// The unsigned quants exceed the signed values by `1 << OFFSET_SHIFT`.
    const OFFSET_SHIFT: i32;
    /// The f16 block scale.
    fn d(&self) -> [u8; 2];
    /// The sixteen sub-block scales.
    fn scales_i8(&self) -> [i8; 16];

    /// Values `128n + 32g .. +32` for `g` in 0..4, as unsigned u8.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    unsafe fn groups_avx2(&self, n: usize) -> [__m256i; 4];

    /// `q[k]`: values `64k .. 64k + 64` as unsigned u8 (by default two
    /// AVX2 groups each).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn quants_avx512(&self) -> [__m512i; 4] {
        let mut q = [_mm512_setzero_si512(); 4];
        for n in 0..2 {
            // SAFETY: AVX2 is implied by the features of this function.
            let g = unsafe { self.groups_avx2(n) };
            for h in 0..2 {
                q[2 * n + h] =
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(g[2 * h]), g[2 * h + 1]);
            }
        }
        q
    }
}

/// One weight block unpacked for [`lanes_avx512`]: `q[k]` holds values
/// `64k..64k+64` as unsigned u8 (the order of the activation bytes),
/// `sc[k]` their four sub-block scales as i16, one per 128-bit lane, and
/// `sc16` all sixteen scales as i16.
pub(crate) struct Unpacked {
    pub q: [__m512i; 4],
    pub sc: [__m512i; 4],
    pub sc16: __m256i,
}

/// # Safety
/// The CPU must support AVX2 and F16C.
pub(crate) unsafe fn isum_avx2<X: K16>(x: &X, y: &BlockQ8K) -> i32 {
    // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
    unsafe { hsum_i32_256(lanes_avx2(x, y)) }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
pub(crate) unsafe fn isum_avx512<X: K16>(x: &X, y: &BlockQ8K) -> i32 {
    // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
    unsafe {
        let u = unpack_avx512(x);
        hsum_i32_512(lanes_avx512::<X>(&u, y))
    }
}

/// Eight i32 lanes summing to the block's integer dot product.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lanes_avx2<X: K16>(x: &X, y: &BlockQ8K) -> __m256i {
    // SAFETY: AVX2 is enabled for this function.
    unsafe { lanes_many_avx2(x, [y])[0] }
}

/// [`lanes_avx2`] of one weight block against `N` activation blocks:
/// each 32 values' quants and scales are unpacked once and multiplied into
/// every activation's lanes while in registers.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lanes_many_avx2<X: K16, const N: usize>(x: &X, ys: [&BlockQ8K; N]) -> [__m256i; N] {
    let scales = x.scales_i8();
    let mut acc = [_mm256_setzero_si256(); N];
    for n in 0..2 {
        // SAFETY: AVX2 is enabled for this function.
        let groups = unsafe { x.groups_avx2(n) };
        for (g, q) in groups.into_iter().enumerate() {
            let v = 128 * n + 32 * g;
            let sc = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_set1_epi16(scales[v / 16] as i16)),
                _mm_set1_epi16(scales[v / 16 + 1] as i16),
            );
            for (acc, y) in acc.iter_mut().zip(ys) {
                // SAFETY: 32 bytes of `y.qs` from an offset inside the
                // array; `loadu` needs no alignment.
                let q8 = unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(v).cast()) };
                let p16 = _mm256_maddubs_epi16(q, q8);
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p16, sc));
            }
        }
    }
    // SAFETY: 16 bytes of `scales`; `loadu` needs no alignment.
    let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
    for (acc, y) in acc.iter_mut().zip(ys) {
        // SAFETY: 32 bytes of `bsums`; `loadu` needs no alignment.
        let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
        let off = _mm256_madd_epi16(sc16, bs);
        *acc = _mm256_sub_epi32(
            *acc,
            _mm256_sll_epi32(off, _mm_cvtsi32_si128(X::OFFSET_SHIFT)),
        );
    }
    acc
}

/// # Safety
/// The CPU must support AVX2 and F16C.
pub(crate) unsafe fn avx2_row<X: K16>(x: &[X], y: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller's contract is the tile's.
    unsafe { avx2_tile::<X, 1, 1>([x], [y])[0][0] }
}

/// `M` weight rows against `N` activation rows on AVX2, all of one
/// length: each weight block is unpacked once for the `N` activation rows
/// ([`lanes_many_avx2`]), and each output is computed by the same
/// operations whatever `M` and `N` are, so every shape is bit-identical to
/// the one-row kernel.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn avx2_tile<X: K16, const M: usize, const N: usize>(
    xs: [&[X]; M],
    ys: [&[BlockQ8K]; N],
) -> [[f32; N]; M] {
    let nb = xs[0].len();
    let mut acc = [[_mm256_setzero_ps(); N]; M];
    for i in 0..nb {
        let by: [&BlockQ8K; N] = std::array::from_fn(|n| &ys[n][i]);
        for m in 0..M {
            let bx = &xs[m][i];
            // SAFETY: AVX2 is enabled for this function.
            let lanes = unsafe { lanes_many_avx2(bx, by) };
            let dx = f16c(bx.d());
            for n in 0..N {
                let d = _mm256_set1_ps(dx * by[n].d());
                let v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes[n]));
                acc[m][n] = _mm256_add_ps(acc[m][n], v);
            }
        }
    }
    let mut out = [[0.0f32; N]; M];
    for m in 0..M {
        for n in 0..N {
            out[m][n] = hsum_f32_256(acc[m][n]);
        }
    }
    out
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn unpack_avx512<X: K16>(x: &X) -> Unpacked {
    let scales = x.scales_i8();
    // SAFETY: 16 bytes of `scales`; `loadu` needs no alignment.
    let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
    let sc512 = _mm512_castsi256_si512(sc16);
    let mut sc = [_mm512_setzero_si512(); 4];
    for (k, sc) in sc.iter_mut().enumerate() {
        // Scale index of each i16 lane: one sub-block of 16 values per
        // 128-bit lane.
        let j = (4 * k) as i16;
        let idx: [i16; 32] = std::array::from_fn(|e| j + (e / 8) as i16);
        // SAFETY: `idx` is 64 readable bytes; `loadu` needs no alignment.
        let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
        *sc = _mm512_permutexvar_epi16(idx, sc512);
    }
    // SAFETY: the features are enabled for this function.
    let q = unsafe { x.quants_avx512() };
    Unpacked { q, sc, sc16 }
}

/// Sixteen i32 lanes summing to the block's integer dot product.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn lanes_avx512<X: K16>(u: &Unpacked, y: &BlockQ8K) -> __m512i {
    let mut acc = _mm512_setzero_si512();
    for k in 0..4 {
        // SAFETY: 64 bytes of `y.qs` from an offset inside the array;
        // `loadu` needs no alignment.
        let q8 = unsafe { _mm512_loadu_si512(y.qs.as_ptr().add(64 * k).cast()) };
        acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u.q[k], q8), u.sc[k]);
    }
    // SAFETY: 32 bytes of `bsums`; `loadu` needs no alignment.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let off = _mm512_zextsi256_si512(_mm256_madd_epi16(u.sc16, bs));
    _mm512_sub_epi32(
        acc,
        _mm512_sll_epi32(off, _mm_cvtsi32_si128(X::OFFSET_SHIFT)),
    )
}

/// `M` weight rows against `N` activation rows, all of one length. Each
/// weight block is unpacked once for the `N` activation rows; each of the
/// `M * N` results is computed by the same operations whatever `M` and `N`
/// are, so every tile shape is bit-identical to the one-row kernel.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn avx512_tile<X: K16, const M: usize, const N: usize>(
    xs: [&[X]; M],
    ys: [&[BlockQ8K]; N],
) -> [[f32; N]; M] {
    let nb = xs[0].len();
    let mut acc = [[_mm512_setzero_ps(); N]; M];
    for i in 0..nb {
        // SAFETY: the features are enabled for this function.
        let u: [Unpacked; M] = std::array::from_fn(|m| unsafe { unpack_avx512(&xs[m][i]) });
        let dx: [f32; M] = std::array::from_fn(|m| f16c(xs[m][i].d()));
        for n in 0..N {
            let by = &ys[n][i];
            let dy = by.d();
            for m in 0..M {
                let d = _mm512_set1_ps(dx[m] * dy);
                // SAFETY: the features are enabled for this function.
                let lanes = unsafe { lanes_avx512::<X>(&u[m], by) };
                let v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes));
                acc[m][n] = _mm512_add_ps(acc[m][n], v);
            }
        }
    }
    let mut out = [[0.0f32; N]; M];
    for m in 0..M {
        for n in 0..N {
            out[m][n] = hsum_f32_512(acc[m][n]);
        }
    }
    out
}
