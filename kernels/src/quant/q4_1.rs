//! Q4_1: 32 values as `d * q + m` with 4-bit `q`.
//!
//! Layout (`block_q4_1` in ggml-common.h, 20 bytes):
//! `{ ggml_half d; ggml_half m; uint8_t qs[QK4_1/2]; }`, nibbles as Q4_0.

use bytemuck::{Pod, Zeroable};

use super::q8_1::BlockQ8_1;
use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK4_1`).
pub const QK4_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// f16 offset (the block minimum), little-endian.
    pub m: [u8; 2],
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// The offset as f32.
    #[inline(always)]
    pub fn m(&self) -> f32 {
        f16_le(self.m)
    }
}

/// ggml's `dequantize_row_q4_1`.
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q4_1, QK4_1, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
        let d = b.d();
        let m = b.m();
        let (lo, hi) = y.split_at_mut(QK4_1 / 2);
        for j in 0..QK4_1 / 2 {
            lo[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            hi[j] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
/// `q = min(15, (int8_t)((x - min) / d + 0.5))`.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) -> Result<(), QuantError> {
    check_len(Format::Q4_1, QK4_1, y.len(), x.len())?;
    for (x, b) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        b.m = f16_bytes(min);
        for j in 0..QK4_1 / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK4_1 / 2 + j] - min) * id;
            let q0 = ((x0 + 0.5) as i8).min(15) as u8;
            let q1 = ((x1 + 0.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
    Ok(())
}

/// The integer dot product of two blocks' quants, `sum q4 * q8`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockQ4_1, y: &BlockQ8_1) -> i32 {
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK4_1 / 2 {
        let v0 = (x.qs[j] & 0x0F) as i32;
        let v1 = (x.qs[j] >> 4) as i32;
        sumi0 += v0 * y.qs[j] as i32;
        sumi1 += v1 * y.qs[j + QK4_1 / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q4_1_q8_1_generic`:
/// `sum (dx*dy) * isum + mx * sy` per block.
fn scalar_row(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += (bx.d() * by.d()) * block_isum(bx, by) as f32 + bx.m() * by.s();
    }
    sumf
}

/// The dot product of a Q4_1 weight row with a Q8_1 activation row: ggml's
/// `ggml_vec_dot_q4_1_q8_1_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]; bit-identical).
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockQ4_1,
    Q4_1,
    QK4_1,
    dequantize_row_q4_1,
    quantize_row_q4_1
);

super::simd::impl_simd_dot!(
    BlockQ4_1, BlockQ8_1, isum: i32,
    scalar: scalar_row, block_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

/// SIMD variants of `vec_dot_q4_1_q8_1`, chosen by [`super::simd`].
///
/// Both unpack the 4-bit quants of a block in value order (low nibbles,
/// then high nibbles). The AVX2 variant widens to i16 and multiplies pairs
/// into i32 lanes with `madd`; the AVX-512 one takes two blocks per
/// `vpdpbusd` on the unsigned quants. The offset term `m * s` is added in
/// f32 as the scalar code does.
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

    use super::{BlockQ4_1, BlockQ8_1};
    use crate::quant::x86_util::{f16c, hsum_i32_256};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ4_1, y: &BlockQ8_1) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ4_1, y: &BlockQ8_1) -> i32 {
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
    unsafe fn nibbles_avx2(b: &BlockQ4_1) -> __m256i {
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
    unsafe fn lanes_avx2(bx: &BlockQ4_1, by: &BlockQ8_1) -> __m256i {
        // SAFETY: AVX2 is enabled for this function.
        let q = unsafe { nibbles_avx2(bx) };
        // The unsigned quants, 0..16 (also valid as i8).
        let qx = q;
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
    pub(super) unsafe fn avx2_row(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0f32;
        for (bx, by) in x.iter().zip(y) {
            // SAFETY: AVX2 is enabled for this function.
            let isum = hsum_i32_256(unsafe { lanes_avx2(bx, by) });
            sumf += (f16c(bx.d) * f16c(by.d)) * isum as f32 + f16c(bx.m) * f16c(by.s);
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
    unsafe fn pair_quants_avx512(xa: &BlockQ4_1, xb: &BlockQ4_1) -> __m512i {
        // SAFETY: AVX2 is implied by the features of this function.
        let (qa, qb) = unsafe { (nibbles_avx2(xa), nibbles_avx2(xb)) };
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb)
    }

    /// Sixteen i32 lanes: lanes 0..8 sum to the integer dot product of
    /// the first block of `q` with `ya`, lanes 8..16 of the second with
    /// `yb` (each lane at most 4 * 15 * 128 in magnitude: exact).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_lanes_avx512(q: __m512i, ya: &BlockQ8_1, yb: &BlockQ8_1) -> __m512i {
        // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
        // alignment.
        let qy = unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                _mm256_loadu_si256(yb.qs.as_ptr().cast()),
            )
        };
        let zero = _mm512_setzero_si512();
        _mm512_dpbusd_epi32(zero, q, qy)
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
        xs: [&[BlockQ4_1]; M],
        ys: [&[BlockQ8_1]; N],
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
            let mut mxa = [0.0f32; M];
            let mut mxb = [0.0f32; M];
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                wq[m] = unsafe { pair_quants_avx512(xa, xb) };
                (dxa[m], dxb[m]) = (f16c(xa.d), f16c(xb.d));
                (mxa[m], mxb[m]) = (f16c(xa.m), f16c(xb.m));
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
                let (dya, dyb) = (f16c(ya.d), f16c(yb.d));
                let (sya, syb) = (f16c(ya.s), f16c(yb.s));
                for m in 0..M {
                    let lanes = _mm512_dpbusd_epi32(zero, wq[m], qy);
                    let ia = hsum_i32_256(_mm512_castsi512_si256(lanes));
                    acc[m][n] += (dxa[m] * dya) * ia as f32 + mxa[m] * sya;
                    if pair {
                        let ib = hsum_i32_256(_mm512_extracti64x4_epi64::<1>(lanes));
                        acc[m][n] += (dxb[m] * dyb) * ib as f32 + mxb[m] * syb;
                    }
                }
            }
            i += 2;
        }
        acc
    }
}
