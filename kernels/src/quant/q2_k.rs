//! Q2_K: 256 values in 16 sub-blocks of 16, `x = d * sc_j * q - dmin * m_j`
//! with 2-bit `q` and 4-bit sub-block scales and mins.
//!
//! Layout (`block_q2_K` in ggml-common.h, 84 bytes):
//! `{ uint8_t scales[QK_K/16]; uint8_t qs[QK_K/4]; ggml_half d; ggml_half
//! dmin; }`. `scales[j]` holds the scale in its low nibble and the min in
//! its high nibble; per 128 values, 32 bytes of `qs` hold four 2-bit fields
//! (bits `2k..2k+2` of byte `l` are value `32*k + l`).

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_qkx2_quants, nearest_int};
use super::q8_k::BlockQ8K;
use super::{
    check_len, check_pair, f16_bytes, f16_le, Block, Format, QuantError, Quantize, VecDot, QK_K,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Scales (low nibble) and mins (high nibble) of the sub-blocks.
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    /// f16 super-block scale for the scales, little-endian.
    pub d: [u8; 2],
    /// f16 super-block scale for the mins, little-endian.
    pub dmin: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);

impl BlockQ2K {
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
    /// The 256 2-bit quants, in value order.
    #[inline(always)]
    fn values(&self) -> [u8; QK_K] {
        let mut a = [0u8; QK_K];
        for (n, q) in self.qs.chunks_exact(32).enumerate() {
            for k in 0..4 {
                for l in 0..32 {
                    a[128 * n + 32 * k + l] = (q[l] >> (2 * k)) & 3;
                }
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q2_K`: `y = (d * sc) * q - (dmin * m)`.
pub fn dequantize_row_q2_K(x: &[BlockQ2K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q2_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let min = b.dmin();
        let q = b.values();
        for (j, (q, y)) in q.chunks_exact(16).zip(y.chunks_exact_mut(16)).enumerate() {
            let sc = b.scales[j];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32 - ml;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q2_K_ref`: per 16 values `make_qkx2_quants(16, 3,
/// weights |x|, rmin -0.5, rdelta 0.1, 15 steps, mean absolute error)`, the
/// scales and mins quantized to 4 bits against their maxima, then every
/// value re-quantized against the rounded scales.
pub fn quantize_row_q2_K(x: &[f32], y: &mut [BlockQ2K]) -> Result<(), QuantError> {
    check_len(Format::Q2_K, QK_K, y.len(), x.len())?;
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0.0f32; 16];
    let mut mins = [0.0f32; QK_K / 16];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (scale, min) = make_qkx2_quants(
                3,
                xs,
                &weights,
                &mut l[16 * j..16 * j + 16],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = scale;
            mins[j] = min;
            if scale > max_scale {
                max_scale = scale;
            }
            if min > max_min {
                max_min = min;
            }
        }

        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                // ggml stores nearest_int's int in a uint8_t.
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = f16_bytes(max_scale / Q4SCALE);
        } else {
            b.scales = [0; QK_K / 16];
            b.d = f16_bytes(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            b.dmin = f16_bytes(max_min / Q4SCALE);
        } else {
            b.dmin = f16_bytes(0.0);
        }

        for j in 0..QK_K / 16 {
            let d = b.d() * (b.scales[j] & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = b.dmin() * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                let q = nearest_int((x[16 * j + ii] + dm) / d);
                l[16 * j + ii] = q.clamp(0, 3) as u8;
            }
        }

        for (n, qs) in b.qs.chunks_exact_mut(32).enumerate() {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                qs[i] = l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6);
            }
        }
    }
    Ok(())
}

/// ggml's `ggml_vec_dot_q2_K_q8_K_generic`:
/// `sum (d8 * d) * isum - (d8 * dmin) * summs` per block.
pub fn vec_dot_q2_K_q8_K(x: &[BlockQ2K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let mut summs = 0i32;
        for j in 0..16 {
            summs += by.bsum(j) as i32 * (bx.scales[j] >> 4) as i32;
        }
        let dall = by.d() * bx.d();
        let dmin = by.d() * bx.dmin();
        let a = bx.values();
        let mut isum = 0i32;
        for (j, (a, q8)) in a.chunks_exact(16).zip(by.qs.chunks_exact(16)).enumerate() {
            let d = (bx.scales[j] & 0xF) as i32;
            let isuml: i32 = a.iter().zip(q8).map(|(&a, &q)| q as i32 * a as i32).sum();
            isum += d * isuml;
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    Ok(sumf)
}

impl Block for BlockQ2K {
    const FORMAT: Format = Format::Q2_K;
    const QK: usize = QK_K;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_q2_K(x, y)
    }
}

impl Quantize for BlockQ2K {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_q2_K(x, y)
    }
}

impl VecDot<BlockQ8K> for BlockQ2K {
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> Result<f32, QuantError> {
        vec_dot_q2_K_q8_K(w, a)
    }
}
