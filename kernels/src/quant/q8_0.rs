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

super::simd::impl_simd_dot!(
    BlockQ8_0, BlockQ8_0, isum: i32,
    scalar: scalar, block_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

/// ggml's `ggml_vec_dot_q8_0_q8_0_generic`.
fn scalar(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        sumf += block_isum(bx, by) as f32 * (bx.d() * by.d());
    }
    sumf
}

/// SIMD variants of `vec_dot_q8_0_q8_0`, chosen by [`super::simd`].
///
/// The AVX2 variant widens the quants to i16 and multiplies pairs into i32
/// lanes with `madd`; the AVX-512 one takes two blocks per `vpdpbusd` with a
/// +128 offset. Both are exact for every i8 input, -128 included (ggml's
/// `maddubs` sign trick is not, for -128). The lanes of one
/// block sum to exactly the scalar integer dot product (the `isum` kernel
/// exposes that sum for testing); the kernels then scale each lane by
/// `dx * dy` and keep per-lane f32 partial sums, reduced once at the end, so
/// the final f32 differs from the scalar loop by rounding only.
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockQ8_0;
    use crate::isa::Avx512Vnni;

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
    use crate::quant::x86_util::{f16c, halves_f16, hsum_f32_256, hsum_f32_512, hsum_i32_256};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ8_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ8_0, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
        unsafe {
            let ux = pair_weights_avx512(x, x);
            hsum_i32_256(_mm512_castsi512_si256(pair_lanes_avx512(ux, y, y)))
        }
    }

    /// Eight i32 lanes summing to the block's integer dot product.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(bx: &BlockQ8_0, by: &BlockQ8_0) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes and `loadu` needs no alignment.
        let (qx, qy) = unsafe {
            (
                _mm256_loadu_si256(bx.qs.as_ptr().cast()),
                _mm256_loadu_si256(by.qs.as_ptr().cast()),
            )
        };
        let x_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qx));
        let x_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qx));
        let y_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy));
        let y_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy));
        // Each i32 lane: two i16 products, |sum| <= 2 * 128 * 128.
        _mm256_add_epi32(_mm256_madd_epi16(x_lo, y_lo), _mm256_madd_epi16(x_hi, y_hi))
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (bx, by) in x.iter().zip(y) {
            let d = _mm256_set1_ps(f16c(bx.d) * f16c(by.d));
            // SAFETY: AVX2 is enabled for this function.
            let lanes = unsafe { lanes_avx2(bx, by) };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes)));
        }
        hsum_f32_256(acc)
    }

    /// The quants of `xa` (bytes 0..32) and `xb` (32..64) plus 128, as
    /// u8 (`x ^ 0x80` is `x + 128` for every i8, -128 included).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_weights_avx512(xa: &BlockQ8_0, xb: &BlockQ8_0) -> __m512i {
        // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
        // alignment.
        let qx = unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(xa.qs.as_ptr().cast())),
                _mm256_loadu_si256(xb.qs.as_ptr().cast()),
            )
        };
        _mm512_xor_si512(qx, _mm512_set1_epi8(-128))
    }

    /// Sixteen i32 lanes: lanes 0..8 sum to the integer dot product of
    /// the first block of `ux` (from [`pair_weights_avx512`]) with `ya`,
    /// lanes 8..16 to that of the second with `yb`. `vpdpbusd` wants an
    /// unsigned operand, so it computes `x * y = (x + 128) * y - 128 * y`:
    /// exact, each lane at most 4 * 255 * 128 before the subtraction.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_lanes_avx512(ux: __m512i, ya: &BlockQ8_0, yb: &BlockQ8_0) -> __m512i {
        // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
        // alignment.
        let qy = unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                _mm256_loadu_si256(yb.qs.as_ptr().cast()),
            )
        };
        let zero = _mm512_setzero_si512();
        let sxy = _mm512_dpbusd_epi32(zero, ux, qy);
        let sy = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(1), qy);
        _mm512_sub_epi32(sxy, _mm512_slli_epi32::<7>(sy))
    }

    /// `M` weight rows against `N` activation rows, all of one length,
    /// two blocks per step (an odd last block pairs with itself, its
    /// copy weighted 0): each weight block pair is loaded once for the
    /// `N` activation rows, each activation pair (with its sum and
    /// scales) once for the `M` weight rows. Per output and step the
    /// work is one `vpdpbusd` (started from the activation's `-128 *
    /// sum y` lanes, so the integer result is exact without a
    /// subtraction), a product of the two scale vectors, a conversion
    /// and an FMA. Each of the `M * N` results is computed by the same
    /// operations whatever `M` and `N` are, so every tile shape is
    /// bit-identical to the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockQ8_0]; M],
        ys: [&[BlockQ8_0]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        let zero = _mm512_setzero_si512();
        let c128 = _mm512_set1_epi8(-128);
        let mut i = 0;
        while i < nb {
            let pair = i + 1 < nb;
            let ib = if pair { i + 1 } else { i };
            let mut wq = [zero; M];
            let mut dx = [_mm512_setzero_ps(); M];
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                wq[m] = unsafe { pair_weights_avx512(xa, xb) };
                dx[m] = halves_f16(xa.d, if pair { xb.d } else { [0; 2] });
            }
            for n in 0..N {
                let (ya, yb) = (&ys[n][i], &ys[n][ib]);
                // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
                // alignment.
                let qy = unsafe {
                    _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                        _mm256_loadu_si256(yb.qs.as_ptr().cast()),
                    )
                };
                // -128 * (sum of each 4 activation bytes): `c128` read as
                // u8 is 128.
                let neg = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c128, qy));
                let dy = halves_f16(ya.d, yb.d);
                for m in 0..M {
                    let lanes = _mm512_dpbusd_epi32(neg, wq[m], qy);
                    let d = _mm512_mul_ps(dx[m], dy);
                    acc[m][n] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[m][n]);
                }
            }
            i += 2;
        }
        let mut out = [[0.0f32; N]; M];
        for m in 0..M {
            for n in 0..N {
                out[m][n] = hsum_f32_512(acc[m][n]);
            }
        }
        out
    }
}
