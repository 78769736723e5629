//! Q5_1: 32 values as `d * q + m` with 5-bit `q`.
//!
//! Layout (`block_q5_1` in ggml-common.h, 24 bytes):
//! `{ ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[QK5_1/2]; }`,
//! bits packed as Q5_0.

use bytemuck::{Pod, Zeroable};

use super::q8_1::BlockQ8_1;
use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK5_1`).
pub const QK5_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// f16 offset (the block minimum), little-endian.
    pub m: [u8; 2],
    /// Fifth bits, a little-endian u32.
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

impl BlockQ5_1 {
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
    /// The fifth bits.
    #[inline(always)]
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
    /// The unsigned 5-bit quants, in value order.
    #[inline(always)]
    fn values(&self) -> [i32; QK5_1] {
        let qh = self.qh();
        let mut v = [0i32; QK5_1];
        for j in 0..QK5_1 / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            v[j] = ((self.qs[j] & 0x0F) | xh_0) as i32;
            v[j + QK5_1 / 2] = ((self.qs[j] >> 4) | xh_1) as i32;
        }
        v
    }
}

/// ggml's `dequantize_row_q5_1`.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q5_1, QK5_1, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let d = b.d();
        let m = b.m();
        for (y, v) in y.iter_mut().zip(b.values()) {
            *y = v as f32 * d + m;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q5_1_ref`: `d = (max - min) / 31`, `m = min`,
/// `q = (uint8_t)((x - min) / d + 0.5)`.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) -> Result<(), QuantError> {
    check_len(Format::Q5_1, QK5_1, y.len(), x.len())?;
    for (x, b) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
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
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        b.m = f16_bytes(min);
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK5_1 / 2 + j] - min) * id;
            let q0 = (x0 + 0.5) as u8;
            let q1 = (x1 + 0.5) as u8;
            b.qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK5_1 / 2);
        }
        b.qh = qh.to_le_bytes();
    }
    Ok(())
}

/// The integer dot product of two blocks' quants, `sum q5 * q8`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockQ5_1, y: &BlockQ8_1) -> i32 {
    let v = x.values();
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK5_1 / 2 {
        sumi0 += v[j] * y.qs[j] as i32;
        sumi1 += v[j + QK5_1 / 2] * y.qs[j + QK5_1 / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q5_1_q8_1_generic`:
/// `sum (dx*dy) * isum + mx * sy` per block.
fn scalar_row(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += (bx.d() * by.d()) * block_isum(bx, by) as f32 + bx.m() * by.s();
    }
    sumf
}

/// The dot product of a Q5_1 weight row with a Q8_1 activation row: ggml's
/// `ggml_vec_dot_q5_1_q8_1_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]; bit-identical).
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockQ5_1,
    Q5_1,
    QK5_1,
    dequantize_row_q5_1,
    quantize_row_q5_1
);

super::simd::impl_simd_dot!(block32: BlockQ5_1, BlockQ8_1, scalar: scalar_row, block_isum);

/// SIMD variants of `vec_dot_q5_1_q8_1`: those of
/// [`super::block32_x86`] on the unsigned 5-bit quants (the min added
/// through Q8_1's `s`), each block added in the scalar order:
/// bit-identical to the scalar reference.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ5_1, BlockQ8_1};
    use crate::quant::block32_x86::{five_bit_avx2, five_bit_pair, Accumulate, Block32};
    impl Block32 for BlockQ5_1 {
        type Act = BlockQ8_1;
        const OFFSET: u8 = 0;
        const ACCUMULATE: Accumulate = Accumulate::Scalar;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        fn m(&self) -> [u8; 2] {
            self.m
        }
        #[inline(always)]
        fn step(acc: f32, isum: i32, dx: f32, mx: f32, dy: f32, sy: f32) -> f32 {
            acc + ((dx * dy) * isum as f32 + mx * sy)
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
