//! Q3_K: 256 values in 16 sub-blocks of 16, `x = d * (sc_j - 32) * q` with
//! 3-bit signed `q` in `[-4, 3]` and 6-bit sub-block scales.
//!
//! Layout (`block_q3_K` in ggml-common.h, 110 bytes):
//! `{ uint8_t hmask[QK_K/8]; uint8_t qs[QK_K/4]; uint8_t scales[12];
//! ggml_half d; }`. `qs` holds the low 2 bits (per 128 values, 32 bytes with
//! four 2-bit fields), bit `k` of `hmask[l]` is the high bit of value
//! `32*k + l` and is *set* for the non-negative half (`q = low - 4` when it
//! is clear). Scale `j` has its low nibble in byte `j` (j < 8) or the high
//! nibble of byte `j - 8`, and its top 2 bits in byte `8 + j % 4` at bit
//! `2 * (j / 4)`.

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_q3_quants, nearest_int};
use super::q8_k::BlockQ8K;
use super::{check_len, f16_bytes, f16_le, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bits of the quants.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; 12],
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

impl BlockQ3K {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// Sub-block scale `j` (0..16), 6 bits, before subtracting 32.
    #[inline(always)]
    pub fn scale(&self, j: usize) -> u8 {
        let low = if j < 8 {
            self.scales[j] & 0xF
        } else {
            self.scales[j - 8] >> 4
        };
        low | (((self.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
    }

    /// The 256 quants in `[-4, 3]`, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, q3) in self.qs.chunks_exact(32).enumerate() {
            for k in 0..4 {
                let m = 1u8 << (4 * n + k);
                let shift = 2 * k;
                for l in 0..32 {
                    let low = ((q3[l] >> shift) & 3) as i8;
                    let high = if self.hmask[l] & m != 0 { 0 } else { 4 };
                    a[128 * n + 32 * k + l] = low - high;
                }
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q3_K`: `y = (d * (sc - 32)) * q`.
pub fn dequantize_row_q3_K(x: &[BlockQ3K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q3_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d();
        let q = b.values();
        for (j, (q, y)) in q.chunks_exact(16).zip(y.chunks_exact_mut(16)).enumerate() {
            let dl = d_all * (b.scale(j) as i32 - 32) as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q3_K_ref`: per 16 values `make_q3_quants(16, 4,
/// do_rmse)`, the 16 scales quantized to 6 bits against the one of largest
/// magnitude, then every value re-quantized against the rounded scales.
pub fn quantize_row_q3_K(x: &[f32], y: &mut [BlockQ3K]) -> Result<(), QuantError> {
    check_len(Format::Q3_K, QK_K, y.len(), x.len())?;
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(
                4,
                &x[16 * j..16 * j + 16],
                &mut l[16 * j..16 * j + 16],
                true,
            );
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }

        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..QK_K / 16 {
                // ggml stores nearest_int's int in an int8_t, then clamps.
                let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                if j < 8 {
                    b.scales[j] = q as u8 & 0xF;
                } else {
                    b.scales[j - 8] |= (q as u8 & 0xF) << 4;
                }
                b.scales[j % 4 + 8] |= ((q >> 4) as u8) << (2 * (j / 4));
            }
            b.d = f16_bytes(1.0 / iscale);
        } else {
            b.d = f16_bytes(0.0);
        }

        for j in 0..QK_K / 16 {
            let sc = b.scale(j) as i32 - 32;
            let d = b.d() * sc as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }

        // The high bit of the first 32 values goes to bit 0 of hmask, of the
        // next 32 to bit 1, and so on.
        b.hmask = [0; QK_K / 8];
        for (j, l) in l.iter_mut().enumerate() {
            if *l > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *l -= 4;
            }
        }
        for (n, qs) in b.qs.chunks_exact_mut(32).enumerate() {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                qs[i] = (l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6)) as u8;
            }
        }
    }
    Ok(())
}

/// The eight lane sums of one block's integer dot product, as
/// `ggml_vec_dot_q3_K_q8_K_generic` forms them:
/// `aux32[l] = sum_j (sc_j - 32) * sum_{i = l mod 8} q3 * q8`.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ3K, y: &BlockQ8K) -> [i32; 8] {
    super::kquants::lane_sums::<16>(&x.values(), &y.qs, |j| x.scale(j) as i32 - 32)
}

/// ggml's `ggml_vec_dot_q3_K_q8_K_generic`.
fn scalar_row(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| (bx.d() * by.d(), block_isums(bx, by), 0.0))
}

/// The dot product of a Q3_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q3_K_q8_K_generic`.
///
/// Dispatches to the best [`super::simd`] variant of this CPU; the
/// scalar reference is `simd::dot_kernels(Isa::Scalar)`.
pub fn vec_dot_q3_K_q8_K(x: &[BlockQ3K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ3K, Q3_K, QK_K, dequantize_row_q3_K, quantize_row_q3_K);

super::simd::impl_simd_dot!(k16: BlockQ3K, scalar: scalar_row, scalar_isum);

fn scalar_isum(x: &BlockQ3K, y: &BlockQ8K) -> i32 {
    block_isums(x, y).iter().sum()
}

/// How Q3_K stores what [`super::k16_x86`] needs: unsigned 3-bit quants
/// (the low two bits in `qs`, the third in `hmask`) offset by 4, and 6-bit
/// scales offset by 32.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ3K;
    use crate::quant::k16_x86::K16;

    impl K16 for BlockQ3K {
        const OFFSET_SHIFT: i32 = 2;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        /// The 16 sub-block scales minus 32 (in -32..32).
        #[inline(always)]
        fn scales_i8(&self) -> [i8; 16] {
            std::array::from_fn(|j| self.scale(j) as i8 - 32)
        }
        /// Group `g`, values `128n + 32g .. +32`, as u8 in 0..8: bits `2g,
        /// 2g+1` of the `qs` bytes `32n..32n+32` and, as bit 2, bit `4n + g`
        /// of the `hmask` bytes. A 16-bit shift by at most 7 brings bit `s`
        /// of each byte to bit 0 of the same byte.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn groups_avx2(&self, n: usize) -> [__m256i; 4] {
            // SAFETY: `hmask` is 32 readable bytes and `qs` 64, read from
            // an offset inside it; `loadu` needs no alignment.
            let (hm, q2) = unsafe {
                (
                    _mm256_loadu_si256(self.hmask.as_ptr().cast()),
                    _mm256_loadu_si256(self.qs.as_ptr().add(32 * n).cast()),
                )
            };
            std::array::from_fn(|g| {
                let lo = _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * g as i32));
                let hi = _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * n + g) as i32));
                _mm256_or_si256(
                    _mm256_and_si256(lo, _mm256_set1_epi8(3)),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(hi, _mm256_set1_epi8(1))),
                )
            })
        }
    }
}
