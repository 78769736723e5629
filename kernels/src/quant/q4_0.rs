//! Q4_0: 32 values as `d * (q - 8)` with 4-bit `q`.
//!
//! Layout (`block_q4_0` in ggml-common.h, 18 bytes):
//! `{ ggml_half d; uint8_t qs[QK4_0/2]; }`. Byte `j` holds value `j` in its
//! low nibble and value `j + 16` in its high nibble.

use bytemuck::{Pod, Zeroable};

use super::q8_0::BlockQ8_0;
use super::{
    check_len, check_pair, f16_bytes, f16_le, Block, Format, QuantError, Quantize, VecDot,
};

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

/// ggml's `ggml_vec_dot_q4_0_q8_0_generic`.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK4_0 / 2 {
            let v0 = (bx.qs[j] & 0x0F) as i32 - 8;
            let v1 = (bx.qs[j] >> 4) as i32 - 8;
            sumi0 += v0 * by.qs[j] as i32;
            sumi1 += v1 * by.qs[j + QK4_0 / 2] as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * bx.d() * by.d();
    }
    Ok(sumf)
}

impl Block for BlockQ4_0 {
    const FORMAT: Format = Format::Q4_0;
    const QK: usize = QK4_0;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_q4_0(x, y)
    }
}

impl Quantize for BlockQ4_0 {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_q4_0(x, y)
    }
}

impl VecDot<BlockQ8_0> for BlockQ4_0 {
    fn vec_dot(w: &[Self], a: &[BlockQ8_0]) -> Result<f32, QuantError> {
        vec_dot_q4_0_q8_0(w, a)
    }
}
