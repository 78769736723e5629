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

super::simd::impl_simd_dot!(block32: BlockQ4_1, BlockQ8_1, scalar: scalar_row, block_isum);

/// SIMD variants of `vec_dot_q4_1_q8_1`: those of
/// [`super::block32_x86`] on the block's nibbles (unsigned, the min added
/// through Q8_1's `s`), each block added in the scalar order:
/// bit-identical to the scalar reference.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_1, BlockQ8_1};
    use crate::quant::block32_x86::{nibbles_avx2, Accumulate, Block32};

    impl Block32 for BlockQ4_1 {
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
            unsafe { nibbles_avx2(&self.qs) }
        }
    }
}
