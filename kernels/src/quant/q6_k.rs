//! Q6_K: 256 values in 16 sub-blocks of 16, `x = d * sc_j * (q - 32)` with
//! 6-bit `q` and signed 8-bit sub-block scales.
//!
//! Layout (`block_q6_K` in ggml-common.h, 210 bytes):
//! `{ uint8_t ql[QK_K/2]; uint8_t qh[QK_K/4]; int8_t scales[QK_K/16];
//! ggml_half d; }`. Per 128 values: 64 bytes of `ql` (low nibbles of values
//! 0..32 and 64..96 in the first 32 bytes, of 32..64 and 96..128 in the
//! next 32) and 32 bytes of `qh` (2 high bits of each of the four groups).

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use super::q8_k::BlockQ8K;
use super::{
    check_len, check_pair, f16_bytes, f16_le, Block, Format, QuantError, Quantize, VecDot, QK_K,
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// The 256 quants minus 32, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, (ql, qh)) in self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .enumerate()
        {
            let a = &mut a[128 * n..128 * n + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q6_K`: `y = d * sc * q`, evaluated left to right.
pub fn dequantize_row_q6_K(x: &[BlockQ6K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let q = b.values();
        for (i, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[i / 16] as f32 * q[i] as f32;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q6_K_ref`: per 16 values `make_qx_quants(16, 32,
/// rmse_type 1)`, the 16 scales quantized to i8 against the largest, then
/// every value re-quantized against the rounded scales.
pub fn quantize_row_q6_K(x: &[f32], y: &mut [BlockQ6K]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, y.len(), x.len())?;
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let scale = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
                1,
                None,
            );
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16_bytes(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for (n, (ql, qh)) in
            b.ql.chunks_exact_mut(64)
                .zip(b.qh.chunks_exact_mut(32))
                .enumerate()
        {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                let (q1, q2, q3, q4) = (
                    l[i] as u8,
                    l[i + 32] as u8,
                    l[i + 64] as u8,
                    l[i + 96] as u8,
                );
                ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
    Ok(())
}

/// The eight integer lane sums of one block, as
/// `ggml_vec_dot_q6_K_q8_K_generic` forms them.
#[inline(always)]
fn block_isums(x: &BlockQ6K, y: &BlockQ8K) -> [i32; 8] {
    let a = x.values();
    let mut aux32 = [0i32; 8];
    for (j, (a, q8)) in a.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
        let scale = x.scales[j] as i32;
        for (a, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
            for l in 0..8 {
                aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
            }
        }
    }
    aux32
}

/// ggml's `ggml_vec_dot_q6_K_q8_K_generic`.
pub fn vec_dot_q6_K_q8_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    let mut sums = [0.0f32; 8];
    for (bx, by) in x.iter().zip(y) {
        let aux32 = block_isums(bx, by);
        let d = bx.d() * by.d();
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    Ok(sumf)
}

impl Block for BlockQ6K {
    const FORMAT: Format = Format::Q6_K;
    const QK: usize = QK_K;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_q6_K(x, y)
    }
}

impl Quantize for BlockQ6K {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_q6_K(x, y)
    }
}

impl VecDot<BlockQ8K> for BlockQ6K {
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> Result<f32, QuantError> {
        vec_dot_q6_K_q8_K(w, a)
    }
}
