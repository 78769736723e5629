//! Q8_K: the activation format of the K-quant dot products. 256 values with
//! an f32 scale and the sums of each group of 16 quants, which the K-quant
//! dot products use to fold in their per-sub-block minimums.
//!
//! Layout (`block_q8_K` in ggml-common.h, 292 bytes):
//! `{ float d; int8_t qs[QK_K]; int16_t bsums[QK_K/16]; }`. It is an
//! in-memory format (never in a GGUF file); fields are kept as bytes anyway
//! so the block has alignment 1 like every other block here.

use bytemuck::{Pod, Zeroable};

use super::kquants::nearest_int;
use super::{check_len, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8K {
    /// f32 scale, little-endian.
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    /// i16 sums of each 16 consecutive quants, little-endian.
    pub bsums: [u8; QK_K / 16 * 2],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// Sum of quants `16*j .. 16*j+16`.
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i16 {
        i16::from_le_bytes([self.bsums[2 * j], self.bsums[2 * j + 1]])
    }
}

/// ggml's `dequantize_row_q8_K`: `y = d * q`.
pub fn dequantize_row_q8_K(x: &[BlockQ8K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q8_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = d * q as f32;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q8_K_ref`: `iscale = -127 / max` where `max` is the
/// value of largest magnitude (so it maps to -127 exactly), `q =
/// min(127, nearest_int(iscale * x))`, `d = 1 / iscale`, plus the 16 group
/// sums. An all-zero block gets `d = 0` and zero sums.
pub fn quantize_row_q8_K(x: &[f32], y: &mut [BlockQ8K]) -> Result<(), QuantError> {
    check_len(Format::Q8_K, QK_K, y.len(), x.len())?;
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detect().avx512_vnni().is_some() {
        // SAFETY: an `Avx512Vnni` token proves AVX-512 F/BW/VL/DQ.
        unsafe { x86::quantize(x, y) };
        return Ok(());
    }
    quantize_scalar(x, y);
    Ok(())
}

/// The scalar reference of [`quantize_row_q8_K`] (which takes an AVX-512
/// twin where the CPU has it, bit-identical).
pub fn quantize_row_q8_K_scalar(x: &[f32], y: &mut [BlockQ8K]) -> Result<(), QuantError> {
    check_len(Format::Q8_K, QK_K, y.len(), x.len())?;
    quantize_scalar(x, y);
    Ok(())
}

fn quantize_scalar(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            b.bsums[2 * j..2 * j + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ8K, QK_K};
    use bytemuck::Zeroable;

    /// `quantize_scalar` on 16 lanes: `amax` by a vector max, `max` the
    /// first value of that magnitude (as the scalar scan's strict `>`
    /// keeps), `nearest_int` as the conversion's round-to-nearest-even
    /// (exact for these magnitudes, as ggml's magic-number trick), the group
    /// sums by a 16-lane add.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/DQ; `x` holds `256 * y.len()`
    /// values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub unsafe fn quantize(x: &[f32], y: &mut [BlockQ8K]) {
        let sign = _mm512_set1_ps(-0.0);
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            // SAFETY: `x` holds 256 f32; `loadu` needs no alignment.
            let v: [__m512; 16] =
                std::array::from_fn(|k| unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * k)) });
            let mut a = _mm512_setzero_ps();
            for v in &v {
                a = _mm512_max_ps(a, _mm512_andnot_ps(sign, *v));
            }
            let amax = _mm512_reduce_max_ps(a);
            if amax == 0.0 {
                *b = BlockQ8K::zeroed();
                continue;
            }
            let amaxv = _mm512_set1_ps(amax);
            let mut max = 0.0f32;
            for (k, v) in v.iter().enumerate() {
                let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_andnot_ps(sign, *v), amaxv);
                if hit != 0 {
                    max = x[16 * k + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let sv = _mm512_set1_ps(iscale);
            let cap = _mm512_set1_epi32(127);
            for (k, v) in v.iter().enumerate() {
                let q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(sv, *v)), cap);
                // SAFETY: 16 bytes inside `qs`; `storeu` needs no alignment.
                unsafe {
                    _mm_storeu_si128(
                        b.qs.as_mut_ptr().add(16 * k).cast(),
                        _mm512_cvtepi32_epi8(q),
                    )
                };
                let sum = _mm512_reduce_add_epi32(q);
                b.bsums[2 * k..2 * k + 2].copy_from_slice(&(sum as i16).to_le_bytes());
            }
            b.d = (1.0 / iscale).to_le_bytes();
        }
    }
}

super::impl_block!(BlockQ8K, Q8_K, QK_K, dequantize_row_q8_K, quantize_row_q8_K);
