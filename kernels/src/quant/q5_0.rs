//! Q5_0: 32 values as `d * (q - 16)` with 5-bit `q`.
//!
//! Layout (`block_q5_0` in ggml-common.h, 22 bytes):
//! `{ ggml_half d; uint8_t qh[4]; uint8_t qs[QK5_0/2]; }`. The low nibbles
//! are packed as Q4_0; bit `j` of the little-endian u32 `qh` is the fifth bit
//! of value `j`.

use bytemuck::{Pod, Zeroable};

use super::q8_0::BlockQ8_0;
use super::{
    check_len, check_pair, f16_bytes, f16_le, Block, Format, QuantError, Quantize, VecDot,
};

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

/// ggml's `ggml_vec_dot_q5_0_q8_0_generic`: `sum (dx*dy) * isum`.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let v = bx.values();
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK5_0 / 2 {
            sumi0 += v[j] * by.qs[j] as i32;
            sumi1 += v[j + QK5_0 / 2] * by.qs[j + QK5_0 / 2] as i32;
        }
        sumf += (bx.d() * by.d()) * (sumi0 + sumi1) as f32;
    }
    Ok(sumf)
}

impl Block for BlockQ5_0 {
    const FORMAT: Format = Format::Q5_0;
    const QK: usize = QK5_0;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_q5_0(x, y)
    }
}

impl Quantize for BlockQ5_0 {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_q5_0(x, y)
    }
}

impl VecDot<BlockQ8_0> for BlockQ5_0 {
    fn vec_dot(w: &[Self], a: &[BlockQ8_0]) -> Result<f32, QuantError> {
        vec_dot_q5_0_q8_0(w, a)
    }
}
