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

super::simd::impl_simd_dot!(block32: BlockQ4_0, BlockQ8_0, scalar: scalar_row, block_isum);

/// SIMD variants of `vec_dot_q4_0_q8_0`: those of
/// [`super::block32_x86`] on the block's nibbles (the unsigned quants,
/// offset 8), adding each block in the scalar order, so every variant is
/// bit-identical to the scalar reference (ggml's generic kernel, which
/// `tests/quant_fixtures.rs` checks through the kernel table).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_0, BlockQ8_0};
    use crate::quant::block32_x86::{nibbles_avx2, Accumulate, Block32};

    impl Block32 for BlockQ4_0 {
        type Act = BlockQ8_0;
        const OFFSET: u8 = 8;
        const ACCUMULATE: Accumulate = Accumulate::Scalar;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        #[inline(always)]
        fn step(acc: f32, isum: i32, dx: f32, _: f32, dy: f32, _: f32) -> f32 {
            acc + isum as f32 * dx * dy
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_u8(&self) -> __m256i {
            // SAFETY: AVX2 is enabled for this function.
            unsafe { nibbles_avx2(&self.qs) }
        }
    }
}
