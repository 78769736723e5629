//! Q6_K: 256 values in 16 sub-blocks of 16, `x = d * sc_j * (q - 32)` with
//! 6-bit `q` and signed 8-bit sub-block scales.
//!
//! Layout (`block_q6_K` in ggml-common.h, 210 bytes):
//! `{ uint8_t ql[QK_K/2]; uint8_t qh[QK_K/4]; int8_t scales[QK_K/16];
//! ggml_half d; }`. Per 128 values: 64 bytes of `ql` (low nibbles of values
//! 0..32 and 64..96 in the first 32 bytes, of 32..64 and 96..128 in the
//! next 32) and 32 bytes of `qh` (2 high bits of each of the four groups).

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use super::q8_k::BlockQ8K;
use super::{check_len, f16_bytes, f16_le, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// The 256 quants minus 32, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, (ql, qh)) in self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .enumerate()
        {
            let a = &mut a[128 * n..128 * n + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q6_K`: `y = d * sc * q`, evaluated left to right.
pub fn dequantize_row_q6_K(x: &[BlockQ6K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let q = b.values();
        for (i, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[i / 16] as f32 * q[i] as f32;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q6_K_ref`: per 16 values `make_qx_quants(16, 32,
/// rmse_type 1)`, the 16 scales quantized to i8 against the largest, then
/// every value re-quantized against the rounded scales.
pub fn quantize_row_q6_K(x: &[f32], y: &mut [BlockQ6K]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, y.len(), x.len())?;
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let scale = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
                1,
                None,
            );
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16_bytes(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for (n, (ql, qh)) in
            b.ql.chunks_exact_mut(64)
                .zip(b.qh.chunks_exact_mut(32))
                .enumerate()
        {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                let (q1, q2, q3, q4) = (
                    l[i] as u8,
                    l[i + 32] as u8,
                    l[i + 64] as u8,
                    l[i + 96] as u8,
                );
                ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
    Ok(())
}

/// The eight integer lane sums of one block, as
/// `ggml_vec_dot_q6_K_q8_K_generic` forms them.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ6K, y: &BlockQ8K) -> [i32; 8] {
    super::kquants::lane_sums::<16>(&x.values(), &y.qs, |j| x.scales[j] as i32)
}

/// ggml's `ggml_vec_dot_q6_K_q8_K_generic`.
fn scalar_row(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| (bx.d() * by.d(), block_isums(bx, by), 0.0))
}

/// The dot product of a Q6_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q6_K_q8_K_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]).
pub fn vec_dot_q6_K_q8_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ6K, Q6_K, QK_K, dequantize_row_q6_K, quantize_row_q6_K);

super::simd::impl_simd_dot!(k16: BlockQ6K, scalar: scalar_row, scalar_isum);

fn scalar_isum(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
    block_isums(x, y).iter().sum()
}

/// How Q6_K stores what [`super::k16_x86`] needs: unsigned 6-bit quants
/// (the low four bits in `ql`, the high two in `qh`) offset by 32, and i8
/// scales.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ6K;
    use crate::quant::k16_x86::K16;

    impl K16 for BlockQ6K {
        const OFFSET_SHIFT: i32 = 5;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        #[inline(always)]
        fn scales_i8(&self) -> [i8; 16] {
            self.scales
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn groups_avx2(&self, n: usize) -> [__m256i; 4] {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x30);
            // SAFETY: 2 x 32 bytes of `ql` and 32 of `qh` from offsets
            // inside the arrays; `loadu` needs no alignment.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(self.ql.as_ptr().add(64 * n).cast()),
                    _mm256_loadu_si256(self.ql.as_ptr().add(64 * n + 32).cast()),
                    _mm256_loadu_si256(self.qh.as_ptr().add(32 * n).cast()),
                )
            };
            [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2),
                ),
            ]
        }
        /// Both halves of `ql` at once.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn quants_avx512(&self) -> [__m512i; 4] {
            let m4 = _mm512_set1_epi8(0x0F);
            let m2 = _mm512_set1_epi8(0x30);
            let mut q = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                // SAFETY: 64 bytes of `ql` and 32 of `qh` from offsets
                // inside the arrays; `loadu` needs no alignment.
                let (ql, qh) = unsafe {
                    (
                        _mm512_loadu_si512(self.ql.as_ptr().add(64 * n).cast()),
                        _mm256_loadu_si256(self.qh.as_ptr().add(32 * n).cast()),
                    )
                };
                // Bytes 0..32: the high bits of values 0..32 and 64..96 at
                // bits 0-1 and 4-5; bytes 32..64: of values 32..64, 96..128.
                let qh =
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), _mm256_srli_epi16::<2>(qh));
                q[2 * n] = _mm512_or_si512(
                    _mm512_and_si512(ql, m4),
                    _mm512_and_si512(_mm512_slli_epi16::<4>(qh), m2),
                );
                q[2 * n + 1] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
                    _mm512_and_si512(qh, m2),
                );
            }
            q
        }
    }
}
