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

super::simd::impl_simd_dot!(block32: BlockQ5_0, BlockQ8_0, scalar: scalar_row, block_isum);

/// SIMD variants of `vec_dot_q5_0_q8_0`: those of
/// [`super::block32_x86`] on the 5-bit quants (nibbles, the fifth bits
/// spread to bytes from `qh`; offset 16), the f32 part in per-lane partial
/// sums.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ5_0, BlockQ8_0};
    use crate::quant::block32_x86::{five_bit_avx2, five_bit_pair, Accumulate, Block32};
    impl Block32 for BlockQ5_0 {
        type Act = BlockQ8_0;
        const OFFSET: u8 = 16;
        const ACCUMULATE: Accumulate = Accumulate::Vector;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        #[inline(always)]
        fn step(acc: f32, isum: i32, dx: f32, _: f32, dy: f32, _: f32) -> f32 {
            acc + isum as f32 * (dx * dy)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_u8(&self) -> __m256i {
            // SAFETY: AVX2 is enabled for this function.
            unsafe { five_bit_avx2(&self.qs, self.qh()) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn pair_u8(a: &Self, b: &Self) -> __m512i {
            // SAFETY: the features are enabled for this function.
            unsafe { five_bit_pair((&a.qs, a.qh()), (&b.qs, b.qh())) }
        }
    }
}
