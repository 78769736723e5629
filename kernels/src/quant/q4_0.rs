//! Q4_0: 32 values as `d * (q - 8)` with 4-bit `q`.
//!
//! Layout (`block_q4_0` in ggml-common.h, 18 bytes):
//! `{ ggml_half d; uint8_t qs[QK4_0/2]; }`. Byte `j` holds value `j` in its
//! low nibble and value `j + 16` in its high nibble.

use bytemuck::{Pod, Zeroable};

use super::q8_0::BlockQ8_0;
use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK4_0`).
pub const QK4_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
}

/// ggml's `dequantize_row_q4_0`.
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q4_0, QK4_0, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
        let d = b.d();
        let (lo, hi) = y.split_at_mut(QK4_0 / 2);
        for j in 0..QK4_0 / 2 {
            lo[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            hi[j] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q4_0_ref`: `d = max / -8` where `max` is the value of
/// largest magnitude, `q = min(15, (int8_t)(x / d + 8.5))` (truncation).
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) -> Result<(), QuantError> {
    check_len(Format::Q4_0, QK4_0, y.len(), x.len())?;
    for (x, b) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        for j in 0..QK4_0 / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK4_0 / 2 + j] * id;
            let q0 = ((x0 + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 + 8.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
    Ok(())
}

/// The integer dot product of two blocks' quants, `sum (q4 - 8) * q8`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockQ4_0, y: &BlockQ8_0) -> i32 {
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK4_0 / 2 {
        let v0 = (x.qs[j] & 0x0F) as i32 - 8;
        let v1 = (x.qs[j] >> 4) as i32 - 8;
        sumi0 += v0 * y.qs[j] as i32;
        sumi1 += v1 * y.qs[j + QK4_0 / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q4_0_q8_0_generic`.
fn scalar_row(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += block_isum(bx, by) as f32 * bx.d() * by.d();
    }
    sumf
}

/// The dot product of a Q4_0 weight row with a Q8_0 activation row: ggml's
/// `ggml_vec_dot_q4_0_q8_0_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]).
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockQ4_0,
    Q4_0,
    QK4_0,
    dequantize_row_q4_0,
    quantize_row_q4_0
);

super::simd::impl_simd_dot!(
    BlockQ4_0, BlockQ8_0, isum: i32,
    scalar: scalar_row, block_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

/// SIMD variants of `vec_dot_q4_0_q8_0`, chosen by [`super::simd`].
///
/// Both unpack the 4-bit quants of a block in value order (low nibbles,
/// then high nibbles). The AVX2 variant subtracts 8, widens to i16 and
/// multiplies pairs into i32 lanes with `madd`; the AVX-512 one takes two
/// blocks per `vpdpbusd` on the unsigned quants and subtracts `8 * sum q8`
/// (a second `vpdpbusd` against ones).
/// Both are exact for every i8 activation, -128 included. The lanes of one
/// block sum to the scalar integer dot product (the `isum` kernel),
/// which is reduced per block; the f32 part then runs the scalar code's
/// operations in its order, so every variant is bit-identical to the scalar
/// reference (ggml's generic kernel, which `tests/quant_fixtures.rs` checks
/// through the kernel table).
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_0, BlockQ8_0};
    use crate::quant::x86_util::{f16c, hsum_i32_256};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ4_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ4_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's
        // contract).
        let lanes = unsafe { pair_lanes_avx512(pair_quants_avx512(x, x), y, y) };
        // SAFETY: as above.
        unsafe { hsum_i32_256(_mm512_castsi512_si256(lanes)) }
    }

    /// The block's 32 quants in value order as u8 (0..32): low
    /// nibbles, then high nibbles.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles_avx2(b: &BlockQ4_0) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; `loadu` needs no alignment.
        let qs = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
    }

    /// Eight i32 lanes summing to the block's integer dot product.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(bx: &BlockQ4_0, by: &BlockQ8_0) -> __m256i {
        // SAFETY: AVX2 is enabled for this function.
        let q = unsafe { nibbles_avx2(bx) };
        // q - 8, in -8..8.
        let qx = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
        // SAFETY: `qs` is 32 readable bytes; `loadu` needs no alignment.
        let qy = unsafe { _mm256_loadu_si256(by.qs.as_ptr().cast()) };
        let x_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qx));
        let x_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qx));
        let y_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy));
        let y_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy));
        _mm256_add_epi32(_mm256_madd_epi16(x_lo, y_lo), _mm256_madd_epi16(x_hi, y_hi))
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (bx, by) in x.iter().zip(y) {
            // SAFETY: AVX2 is enabled for this function.
            let isum = hsum_i32_256(unsafe { lanes_avx2(bx, by) });
            sumf += isum as f32 * f16c(bx.d) * f16c(by.d);
        }
        sumf
    }

    /// The unsigned 4-bit quants (0..16) of `xa` in bytes 0..32 and of
    /// `xb` in bytes 32..64, in value order.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_quants_avx512(xa: &BlockQ4_0, xb: &BlockQ4_0) -> __m512i {
        // SAFETY: AVX2 is implied by the features of this function.
        let (qa, qb) = unsafe { (nibbles_avx2(xa), nibbles_avx2(xb)) };
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb)
    }

    /// Sixteen i32 lanes: lanes 0..8 sum to the integer dot product of
    /// the first block of `q` with `ya`, lanes 8..16 of the second with
    /// `yb`, as `sum q * y - 8 * sum y` (each lane at most
    /// 4 * 15 * 128 + 8 * 4 * 128 in magnitude: exact).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_lanes_avx512(q: __m512i, ya: &BlockQ8_0, yb: &BlockQ8_0) -> __m512i {
        // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
        // alignment.
        let qy = unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                _mm256_loadu_si256(yb.qs.as_ptr().cast()),
            )
        };
        let zero = _mm512_setzero_si512();
        let sxy = _mm512_dpbusd_epi32(zero, q, qy);
        let sy = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(1), qy);
        _mm512_sub_epi32(sxy, _mm512_slli_epi32::<3>(sy))
    }

    /// `M` weight rows against `N` activation rows, all of one length,
    /// two blocks per step (an odd last block pairs with itself, its
    /// copy weighted 0): each weight block pair is loaded once for the
    /// `N` activation rows, each activation pair (with its sum and
    /// scales) once for the `M` weight rows. Each of the `M * N` results
    /// is computed by the same operations whatever `M` and `N` are, so
    /// every tile shape is bit-identical to the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockQ4_0]; M],
        ys: [&[BlockQ8_0]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[0.0f32; N]; M];
        let mut i = 0;
        while i < nb {
            let pair = i + 1 < nb;
            let ib = if pair { i + 1 } else { i };
            let mut wq = [_mm512_setzero_si512(); M];
            let mut dxa = [0.0f32; M];
            let mut dxb = [0.0f32; M];
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                wq[m] = unsafe { pair_quants_avx512(xa, xb) };
                (dxa[m], dxb[m]) = (f16c(xa.d), f16c(xb.d));
            }
            for n in 0..N {
                let (ya, yb) = (&ys[n][i], &ys[n][ib]);
                // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
                // alignment.
                let qy = unsafe {
                    _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                        _mm256_loadu_si256(yb.qs.as_ptr().cast()),
                    )
                };
                let zero = _mm512_setzero_si512();
                let ones = _mm512_set1_epi8(1);
                let sy = _mm512_slli_epi32::<3>(_mm512_dpbusd_epi32(zero, ones, qy));
                let (dya, dyb) = (f16c(ya.d), f16c(yb.d));
                for m in 0..M {
                    let lanes = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, wq[m], qy), sy);
                    let ia = hsum_i32_256(_mm512_castsi512_si256(lanes));
                    acc[m][n] += ia as f32 * dxa[m] * dya;
                    if pair {
                        let ib = hsum_i32_256(_mm512_extracti64x4_epi64::<1>(lanes));
                        acc[m][n] += ib as f32 * dxb[m] * dyb;
                    }
                }
            }
            i += 2;
        }
        acc
    }
}
