//! Q5_0: 32 values as `d * (q - 16)` with 5-bit `q`.
//!
//! Layout (`block_q5_0` in ggml-common.h, 22 bytes):
//! `{ ggml_half d; uint8_t qh[4]; uint8_t qs[QK5_0/2]; }`. The low nibbles
//! are packed as Q4_0; bit `j` of the little-endian u32 `qh` is the fifth bit
//! of value `j`.

use bytemuck::{Pod, Zeroable};

use super::q8_0::BlockQ8_0;
use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK5_0`).
pub const QK5_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Fifth bits, a little-endian u32.
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

impl BlockQ5_0 {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// The fifth bits.
    #[inline(always)]
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
    /// The 5-bit quants minus 16, in value order.
    #[inline(always)]
    fn values(&self) -> [i32; QK5_0] {
        let qh = self.qh();
        let mut v = [0i32; QK5_0];
        for j in 0..QK5_0 / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            v[j] = ((self.qs[j] & 0x0F) | xh_0) as i32 - 16;
            v[j + QK5_0 / 2] = ((self.qs[j] >> 4) | xh_1) as i32 - 16;
        }
        v
    }
}

/// ggml's `dequantize_row_q5_0`.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q5_0, QK5_0, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = b.d();
        for (y, v) in y.iter_mut().zip(b.values()) {
            *y = v as f32 * d;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q5_0_ref`: `d = max / -16`,
/// `q = min(31, (int8_t)(x / d + 16.5))`.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) -> Result<(), QuantError> {
    check_len(Format::Q5_0, QK5_0, y.len(), x.len())?;
    for (x, b) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK5_0 / 2 + j] * id;
            let q0 = ((x0 + 16.5) as i8).min(31) as u8;
            let q1 = ((x1 + 16.5) as i8).min(31) as u8;
            b.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        b.qh = qh.to_le_bytes();
    }
    Ok(())
}

/// The integer dot product of two blocks' quants, `sum (q5 - 16) * q8`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockQ5_0, y: &BlockQ8_0) -> i32 {
    let v = x.values();
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK5_0 / 2 {
        sumi0 += v[j] * y.qs[j] as i32;
        sumi1 += v[j + QK5_0 / 2] * y.qs[j + QK5_0 / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q5_0_q8_0_generic`: `sum (dx*dy) * isum`.
fn scalar_row(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += (bx.d() * by.d()) * block_isum(bx, by) as f32;
    }
    sumf
}

/// The dot product of a Q5_0 weight row with a Q8_0 activation row: ggml's
/// `ggml_vec_dot_q5_0_q8_0_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]).
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockQ5_0,
    Q5_0,
    QK5_0,
    dequantize_row_q5_0,
    quantize_row_q5_0
);

super::simd::impl_simd_dot!(
    BlockQ5_0, BlockQ8_0, isum: i32,
    scalar: scalar_row, block_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

/// SIMD variants of `vec_dot_q5_0_q8_0`, chosen by [`super::simd`].
///
/// Both rebuild the 5-bit quants of a block in value order (low nibbles,
/// high nibbles, the fifth bits spread to bytes from `qh`). The AVX2 variant
/// subtracts 16, widens to i16 and multiplies pairs into i32 lanes with
/// `madd`; the AVX-512 one takes two blocks per `vpdpbusd` on the unsigned
/// quants and subtracts `16 * sum q8` (a second `vpdpbusd` against ones).
/// Both are exact for every i8 activation, -128 included. The lanes of one
/// block sum to the scalar integer dot product (the `isum` kernel); the
/// f32 part is kept in per-lane partial sums, so the row result differs
/// from the scalar loop by rounding only.
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ5_0, BlockQ8_0};
    use crate::quant::x86_util::{
        bytes_from_bits_32, f16c, halves_f16, hsum_f32_256, hsum_f32_512, hsum_i32_256,
    };

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ5_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ5_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's
        // contract).
        let lanes = unsafe { pair_lanes_avx512(pair_quants_avx512(x, x), y, y) };
        // SAFETY: as above.
        unsafe { hsum_i32_256(_mm512_castsi512_si256(lanes)) }
    }

    /// The block's 32 quants in value order as u8 (0..32): low
    /// nibbles, then high nibbles, without the fifth bit.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles_avx2(b: &BlockQ5_0) -> __m256i {
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
    unsafe fn lanes_avx2(bx: &BlockQ5_0, by: &BlockQ8_0) -> __m256i {
        // SAFETY: AVX2 is enabled for this function.
        let q = unsafe { nibbles_avx2(bx) };
        let high = _mm256_and_si256(bytes_from_bits_32(bx.qh()), _mm256_set1_epi8(0x10));
        // (q | fifth bit) - 16, in -16..16.
        let qx = _mm256_sub_epi8(_mm256_or_si256(q, high), _mm256_set1_epi8(16));
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
    pub(super) unsafe fn avx2_row(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (bx, by) in x.iter().zip(y) {
            let d = _mm256_set1_ps(f16c(bx.d) * f16c(by.d));
            // SAFETY: AVX2 is enabled for this function.
            let lanes = unsafe { lanes_avx2(bx, by) };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes)));
        }
        hsum_f32_256(acc)
    }

    /// The unsigned 5-bit quants (0..32) of `xa` in bytes 0..32 and of
    /// `xb` in bytes 32..64, in value order.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_quants_avx512(xa: &BlockQ5_0, xb: &BlockQ5_0) -> __m512i {
        // SAFETY: AVX2 is implied by the features of this function.
        let (qa, qb) = unsafe { (nibbles_avx2(xa), nibbles_avx2(xb)) };
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
        let bits = xa.qh() as u64 | (xb.qh() as u64) << 32;
        _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(0x10))
    }

    /// Sixteen i32 lanes: lanes 0..8 sum to the integer dot product of
    /// the first block of `q` with `ya`, lanes 8..16 of the second with
    /// `yb`, as `sum q * y - 16 * sum y` (each lane at most
    /// 4 * 31 * 128 + 16 * 4 * 128 in magnitude: exact).
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
        _mm512_sub_epi32(sxy, _mm512_slli_epi32::<4>(sy))
    }

    /// `M` weight rows against `N` activation rows, all of one length,
    /// two blocks per step (an odd last block pairs with itself, its
    /// copy weighted 0): each weight block pair is unpacked once for
    /// the `N` activation rows, each activation pair (with its sum and
    /// scales) once for the `M` weight rows. Per output and step the
    /// work is one `vpdpbusd` (started from the activation's `-16 *
    /// sum y` lanes, so the integer result is exact without a
    /// subtraction: each lane at most 4 * 31 * 128 + 16 * 4 * 128 in
    /// magnitude), a product of the two scale vectors, a conversion and
    /// an FMA. Each of the `M * N` results is computed by the same
    /// operations whatever `M` and `N` are, so every tile shape is
    /// bit-identical to the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockQ5_0]; M],
        ys: [&[BlockQ8_0]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        let zero = _mm512_setzero_si512();
        let c16 = _mm512_set1_epi8(16);
        let mut i = 0;
        while i < nb {
            let pair = i + 1 < nb;
            let ib = if pair { i + 1 } else { i };
            let mut wq = [zero; M];
            let mut dx = [_mm512_setzero_ps(); M];
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                wq[m] = unsafe { pair_quants_avx512(xa, xb) };
                dx[m] = halves_f16(xa.d, if pair { xb.d } else { [0; 2] });
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
                let neg = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c16, qy));
                let dy = halves_f16(ya.d, yb.d);
                for m in 0..M {
                    let lanes = _mm512_dpbusd_epi32(neg, wq[m], qy);
                    let d = _mm512_mul_ps(dx[m], dy);
                    acc[m][n] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[m][n]);
                }
            }
            i += 2;
        }
        let mut out = [[0.0f32; N]; M];
        for m in 0..M {
            for n in 0..N {
                out[m][n] = hsum_f32_512(acc[m][n]);
            }
        }
        out
    }
}
