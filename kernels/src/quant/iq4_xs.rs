//! IQ4_XS: 256 values in 8 sub-blocks of 32, `x = d * (ls_j - 32) *
//! kvalues_iq4nl[q]` with 6-bit sub-block scales `ls_j`.
//!
//! Layout (`block_iq4_xs` in ggml-common.h, 136 bytes):
//! `{ ggml_half d; uint16_t scales_h; uint8_t scales_l[QK_K/64]; uint8_t
//! qs[QK_K/2]; }`. Scale `j` has its low nibble in `scales_l[j/2]` (low
//! nibble for even `j`) and its top 2 bits at bit `2j` of `scales_h`; each
//! 16 bytes of `qs` hold one sub-block, nibbles packed as IQ4_NL.

use bytemuck::{Pod, Zeroable};

use super::iq4_nl::{quantize_iq4_impl, KVALUES_IQ4NL};
use super::q8_k::BlockQ8K;
use super::{check_len, check_pair, f16_le, Block, Format, QuantError, Quantize, VecDot, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4XS {
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
    /// High 2 bits of the 8 sub-block scales, a little-endian u16.
    pub scales_h: [u8; 2],
    /// Low 4 bits of the sub-block scales.
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockIQ4XS>() == 136);

impl BlockIQ4XS {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// Sub-block scale `ib` (0..8), 6 bits, before subtracting 32.
    #[inline(always)]
    pub fn scale(&self, ib: usize) -> u8 {
        let h = u16::from_le_bytes(self.scales_h);
        ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((h >> (2 * ib)) & 3) as u8) << 4)
    }
}

/// ggml's `dequantize_row_iq4_xs`.
pub fn dequantize_row_iq4_xs(x: &[BlockIQ4XS], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::IQ4_XS, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (ib, (qs, y)) in
            b.qs.chunks_exact(16)
                .zip(y.chunks_exact_mut(32))
                .enumerate()
        {
            let dl = d * (b.scale(ib) as i32 - 32) as f32;
            let (lo, hi) = y.split_at_mut(16);
            for j in 0..16 {
                lo[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
                hi[j] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_iq4_xs_ref` (`quantize_row_iq4_nl_impl` over a
/// super-block of 256 with `ntry = 7` and no importance weights).
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIQ4XS]) -> Result<(), QuantError> {
    check_len(Format::IQ4_XS, QK_K, y.len(), x.len())?;
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 32];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut scales_l = [0u8; QK_K / 64];
        let mut scales_h = 0u16;
        let d = quantize_iq4_impl(
            x,
            &mut l,
            &mut scales,
            7,
            |ib, ls| {
                scales_l[ib / 2] |= (ls & 0xF) << (4 * (ib % 2));
                scales_h |= ((ls >> 4) as u16) << (2 * ib);
            },
            &mut b.qs,
        );
        b.d = d;
        b.scales_l = scales_l;
        b.scales_h = scales_h.to_le_bytes();
    }
    Ok(())
}

/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`.
pub fn vec_dot_iq4_xs_q8_K(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let d4d8 = bx.d() * by.d();
        for (ib, (qs, q8)) in bx
            .qs
            .chunks_exact(16)
            .zip(by.qs.chunks_exact(32))
            .enumerate()
        {
            let dl = d4d8 * (bx.scale(ib) as i32 - 32) as f32;
            let mut sumi1 = 0i32;
            let mut sumi2 = 0i32;
            for j in 0..16 {
                sumi1 += q8[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32;
                sumi2 += q8[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
            }
            sumf += dl * (sumi1 + sumi2) as f32;
        }
    }
    Ok(sumf)
}

impl Block for BlockIQ4XS {
    const FORMAT: Format = Format::IQ4_XS;
    const QK: usize = QK_K;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_iq4_xs(x, y)
    }
}

impl Quantize for BlockIQ4XS {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_iq4_xs(x, y)
    }
}

impl VecDot<BlockQ8K> for BlockIQ4XS {
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> Result<f32, QuantError> {
        vec_dot_iq4_xs_q8_K(w, a)
    }
}
