//! Q8_0: 32 values as `d * q` with one f16 scale and 32 signed bytes.
//!
//! Layout (`block_q8_0` in ggml-common.h, 34 bytes):
//! `{ ggml_half d; int8_t qs[QK8_0]; }`.

use bytemuck::{Pod, Zeroable};

use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK8_0`).
pub const QK8_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    pub qs: [i8; QK8_0],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

impl BlockQ8_0 {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
}

/// ggml's `dequantize_row_q8_0`: `y = d * q`.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q8_0, QK8_0, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q8_0_ref`: `d = amax / 127`, `q = roundf(x / d)`
/// (round half away from zero). Runs the AVX-512 twin where the CPU has it
/// (bit-identical: the same scalar scale per block, the same rounding;
/// `quantize_simd_matches_scalar` in `tests/quant_simd.rs` checks it).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) -> Result<(), QuantError> {
    check_len(Format::Q8_0, QK8_0, y.len(), x.len())?;
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = crate::Isa::detect().avx512_vnni() {
        x86::quantize_avx512(t, x, y);
        return Ok(());
    }
    quantize_scalar(x, y);
    Ok(())
}

/// The scalar reference of [`quantize_row_q8_0`].
pub fn quantize_row_q8_0_scalar(x: &[f32], y: &mut [BlockQ8_0]) -> Result<(), QuantError> {
    check_len(Format::Q8_0, QK8_0, y.len(), x.len())?;
    quantize_scalar(x, y);
    Ok(())
}

fn quantize_scalar(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bytes(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// The integer dot product of two blocks' quants, `sum qx * qy`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockQ8_0, y: &BlockQ8_0) -> i32 {
    x.qs.iter()
        .zip(&y.qs)
        .map(|(&a, &b)| a as i32 * b as i32)
        .sum()
}

/// The dot product of a Q8_0 weight row with a Q8_0 activation row: ggml's
/// `ggml_vec_dot_q8_0_q8_0_generic` (per block `sumf += isum * (dx * dy)`),
/// or the SIMD variant of this CPU (picked once, see [`super::simd`]).
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockQ8_0,
    Q8_0,
    QK8_0,
    dequantize_row_q8_0,
    quantize_row_q8_0
);

super::simd::impl_simd_dot!(block32: BlockQ8_0, BlockQ8_0, scalar: scalar, block_isum);

/// ggml's `ggml_vec_dot_q8_0_q8_0_generic`.
fn scalar(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += block_isum(bx, by) as f32 * (bx.d() * by.d());
    }
    sumf
}

/// The SIMD quantizer, and the SIMD variants of `vec_dot_q8_0_q8_0`:
/// those of [`super::block32_x86`] on the quants plus 128 (`x ^ 0x80` is
/// `x + 128` for every i8, -128 included), the f32 part in per-lane
/// partial sums.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ8_0;
    use crate::isa::Avx512Vnni;
    use crate::quant::block32_x86::{Accumulate, Block32};

    /// Safe entry to [`quantize_avx512_impl`]: the token proves the
    /// features.
    pub(super) fn quantize_avx512(_: Avx512Vnni, x: &[f32], y: &mut [BlockQ8_0]) {
        // SAFETY: an `Avx512Vnni` token proves AVX-512 F/BW/VL/DQ.
        unsafe { quantize_avx512_impl(x, y) }
    }

    /// `quantize_scalar` on 16 lanes: the block's `amax` by a vector
    /// max (exact), the scale and its inverse in scalar f32 as the
    /// reference computes them, then `round` (half away from zero) as
    /// truncation plus one where the dropped fraction is at least 1/2
    /// (exact: `r - trunc(r)` has no rounding error).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/DQ.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    unsafe fn quantize_avx512_impl(x: &[f32], y: &mut [BlockQ8_0]) {
        let sign = _mm512_set1_ps(-0.0);
        let one = _mm512_set1_ps(1.0);
        let half = _mm512_set1_ps(0.5);
        for (x, b) in x.chunks_exact(32).zip(y.iter_mut()) {
            // SAFETY: `x` holds 32 f32; `loadu` needs no alignment.
            let v = unsafe {
                [
                    _mm512_loadu_ps(x.as_ptr()),
                    _mm512_loadu_ps(x.as_ptr().add(16)),
                ]
            };
            let a = _mm512_max_ps(_mm512_andnot_ps(sign, v[0]), _mm512_andnot_ps(sign, v[1]));
            let amax = _mm512_reduce_max_ps(a);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = super::f16_bytes(d);
            let idv = _mm512_set1_ps(id);
            for (h, v) in v.into_iter().enumerate() {
                let r = _mm512_mul_ps(v, idv);
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(r);
                let frac = _mm512_andnot_ps(sign, _mm512_sub_ps(r, t));
                let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, half);
                let step = _mm512_or_ps(_mm512_and_ps(r, sign), one);
                let q = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
                // SAFETY: 16 bytes inside `qs`; `storeu` needs no
                // alignment.
                unsafe {
                    _mm_storeu_si128(
                        b.qs.as_mut_ptr().add(16 * h).cast(),
                        _mm512_cvtepi32_epi8(q),
                    )
                };
            }
        }
    }

    impl Block32 for BlockQ8_0 {
        type Act = BlockQ8_0;
        const OFFSET: u8 = 128;
        const ACCUMULATE: Accumulate = Accumulate::Vector;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        #[inline(always)]
        fn step(acc: f32, isum: i32, dx: f32, _: f32, dy: f32, _: f32) -> f32 {
            acc + isum as f32 * (dx * dy)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_u8(&self) -> __m256i {
            // SAFETY: AVX2 is enabled for this function.
            let q = unsafe { self.quants_i8() };
            _mm256_xor_si256(q, _mm256_set1_epi8(-128))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_i8(&self) -> __m256i {
            // SAFETY: `qs` is 32 readable bytes; `loadu` needs no alignment.
            unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn pair_u8(a: &Self, b: &Self) -> __m512i {
            // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
            // alignment.
            let q = unsafe {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(a.qs.as_ptr().cast())),
                    _mm256_loadu_si256(b.qs.as_ptr().cast()),
                )
            };
            _mm512_xor_si512(q, _mm512_set1_epi8(-128))
        }
    }
}
