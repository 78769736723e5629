//! Q5_K: as Q4_K with a fifth bit per value: `x = d * sc_j * q - dmin * m_j`
//! with 5-bit `q`.
//!
//! Layout (`block_q5_K` in ggml-common.h, 176 bytes):
//! `{ ggml_half d; ggml_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t
//! qh[QK_K/8]; uint8_t qs[QK_K/2]; }`. Low nibbles as Q4_K; bit `k` of
//! `qh[l]` is the fifth bit of value `32*k + l`.

use bytemuck::{Pod, Zeroable};

use super::kquants::{get_scale_min_k4, quantize_scale_min_k4};
use super::q4_k::K_SCALE_SIZE;
use super::q8_k::BlockQ8K;
use super::{check_len, f16_le, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// f16 super-block scale for the sub-block scales, little-endian.
    pub d: [u8; 2],
    /// f16 super-block scale for the sub-block mins, little-endian.
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

impl BlockQ5K {
    /// The scale of the sub-block scales.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// The scale of the sub-block mins.
    #[inline(always)]
    pub fn dmin(&self) -> f32 {
        f16_le(self.dmin)
    }
    /// The 6-bit scale and min of sub-block `j` (0..8).
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        get_scale_min_k4(j, &self.scales)
    }
    /// The 256 unsigned 5-bit quants, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (k, q) in self.qs.chunks_exact(32).enumerate() {
            let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
            for l in 0..32 {
                let h1 = if self.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if self.qh[l] & u2 != 0 { 16 } else { 0 };
                a[64 * k + l] = ((q[l] & 0xF) + h1) as i8;
                a[64 * k + 32 + l] = ((q[l] >> 4) + h2) as i8;
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q5_K`.
pub fn dequantize_row_q5_K(x: &[BlockQ5K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q5_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let min = b.dmin();
        let q = b.values();
        for (j, (q, y)) in q.chunks_exact(32).zip(y.chunks_exact_mut(32)).enumerate() {
            let (sc, m) = b.scale_min(j);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            for (y, &q) in y.iter_mut().zip(q) {
                *y = d1 * q as f32 - m1;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q5_K_ref`: as Q4_K with `nmax = 31` and the search
/// `make_qkx2_quants(rmin -0.5, rdelta 0.1, 15 steps)`.
pub fn quantize_row_q5_K(x: &[f32], y: &mut [BlockQ5K]) -> Result<(), QuantError> {
    check_len(Format::Q5_K, QK_K, y.len(), x.len())?;
    let mut l = [0u8; QK_K];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        (b.scales, b.d, b.dmin) = quantize_scale_min_k4(x, 31, -0.5, 15, &mut l);

        b.qh = [0; QK_K / 8];
        for (k, ql) in b.qs.chunks_exact_mut(32).enumerate() {
            let (m1, m2) = (1u8 << (2 * k), 2u8 << (2 * k));
            for j in 0..32 {
                let mut l1 = l[64 * k + j];
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                let mut l2 = l[64 * k + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
        }
    }
    Ok(())
}

/// The integer parts of one block's dot product, as
/// `ggml_vec_dot_q5_K_q8_K_generic` forms them: the eight lane sums
/// `aux32[l] = sum_j sc_j * sum_{i = l mod 8} q5 * q8` and
/// `sumi = sum_j bsum_j * m_{j/2}`.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ5K, y: &BlockQ8K) -> ([i32; 8], i32) {
    super::kquants::scale_min_isums(&x.values(), y, |j| x.scale_min(j))
}

/// ggml's `ggml_vec_dot_q5_K_q8_K_generic`: eight i32 lanes per block,
/// scaled into eight f32 partial sums, the mins subtracted as they come.
fn scalar_row(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| {
        let (aux32, sumi) = block_isums(bx, by);
        let dmin = bx.dmin() * by.d();
        (bx.d() * by.d(), aux32, dmin * sumi as f32)
    })
}

/// The dot product of a Q5_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q5_K_q8_K_generic`.
///
/// Dispatches to the best [`super::simd`] variant of this CPU; the
/// scalar reference is `simd::dot_kernels(Isa::Scalar)`.
pub fn vec_dot_q5_K_q8_K(x: &[BlockQ5K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ5K, Q5_K, QK_K, dequantize_row_q5_K, quantize_row_q5_K);

#[cfg(target_arch = "x86_64")]
use super::q4_k::x86 as k4;

super::simd::impl_simd_dot!(
    BlockQ5K, BlockQ8K, isum: (i32, i32),
    scalar: scalar_row, scalar_isums,
    avx2: k4::avx2_row::<BlockQ5K>, k4::isums_avx2::<BlockQ5K>,
    avx2_tile: k4::avx2_tile,
    avx512: k4::avx512_tile, k4::isums_avx512_vnni::<BlockQ5K>,
);

fn scalar_isums(x: &BlockQ5K, y: &BlockQ8K) -> (i32, i32) {
    let (aux32, sumi) = block_isums(x, y);
    (aux32.iter().sum(), sumi)
}

// SIMD variants: Q4_K's (`super::q4_k::x86`), generic over the Q4_K
// layout, with the fifth bits from `qh` or'd into each quant.
