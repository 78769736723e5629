//! Q8_1: Q8_0 plus the block sum, the activation partner of Q4_1 and Q5_1.
//!
//! Layout (`block_q8_1` in ggml-common.h, 36 bytes):
//! `{ ggml_half d; ggml_half s; int8_t qs[QK8_1]; }` where `s = d * sum(qs)`
//! lets the dot product fold in the weights' offset `m` with one multiply.

use bytemuck::{Pod, Zeroable};

use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK8_1`).
pub const QK8_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// f16 `d * sum(qs)`, little-endian.
    pub s: [u8; 2],
    pub qs: [i8; QK8_1],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

impl BlockQ8_1 {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// `d * sum(qs)` as stored (rounded to f16).
    #[inline(always)]
    pub fn s(&self) -> f32 {
        f16_le(self.s)
    }
}

/// `y = d * q`. ggml has no `dequantize_row_q8_1` (Q8_1 is only an
/// intermediate); this is the obvious inverse of the quantizer.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q8_1, QK8_1, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q8_1_ref`: as Q8_0, plus `s = sum(q) * d`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) -> Result<(), QuantError> {
    check_len(Format::Q8_1, QK8_1, y.len(), x.len())?;
    for (x, b) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s = f16_bytes(sum as f32 * d);
    }
    Ok(())
}

super::impl_block!(
    BlockQ8_1,
    Q8_1,
    QK8_1,
    dequantize_row_q8_1,
    quantize_row_q8_1
);
