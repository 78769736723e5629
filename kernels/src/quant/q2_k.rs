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
use super::{check_len, f16_bytes, f16_le, Format, QuantError, QK_K};

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

/// The two integers of one block's dot product, as
/// `ggml_vec_dot_q2_K_q8_K_generic` forms them:
/// `isum = sum_j sc_j * sum_{i in j} q2 * q8`, `summs = sum_j bsum_j * m_j`.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ2K, y: &BlockQ8K) -> (i32, i32) {
    let mut summs = 0i32;
    for j in 0..16 {
        summs += y.bsum(j) as i32 * (x.scales[j] >> 4) as i32;
    }
    let a = x.values();
    let mut isum = 0i32;
    for (j, (a, q8)) in a.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
        let d = (x.scales[j] & 0xF) as i32;
        let isuml: i32 = a.iter().zip(q8).map(|(&a, &q)| q as i32 * a as i32).sum();
        isum += d * isuml;
    }
    (isum, summs)
}

/// ggml's `ggml_vec_dot_q2_K_q8_K_generic`:
/// `sum (d8 * d) * isum - (d8 * dmin) * summs` per block.
fn scalar_row(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let (isum, summs) = block_isums(bx, by);
        let dall = by.d() * bx.d();
        let dmin = by.d() * bx.dmin();
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// The dot product of a Q2_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q2_K_q8_K_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]; bit-identical).
pub fn vec_dot_q2_K_q8_K(x: &[BlockQ2K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ2K, Q2_K, QK_K, dequantize_row_q2_K, quantize_row_q2_K);

super::simd::impl_simd_dot!(
    BlockQ2K, BlockQ8K, isum: (i32, i32),
    scalar: scalar_row, scalar_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

fn scalar_isum(x: &BlockQ2K, y: &BlockQ8K) -> (i32, i32) {
    block_isums(x, y)
}

/// SIMD variants of `vec_dot_q2_K_q8_K`, chosen by [`super::simd`].
///
/// Per block they form the scalar code's two integers exactly:
/// `isum = sum_j sc_j * sum_{i in j} q2_i * q8_i` (unsigned 2-bit quants
/// times i8 via `maddubs`, at most 2 * 3 * 128 per i16 pair; then scaled by
/// the 4-bit sub-block scales into i32 lanes by `madd` or VNNI's
/// `vpdpwssd`) and `summs = sum_j bsum_j * m_j`. the `isum` kernel
/// exposes both for testing. The f32 part runs the scalar code's operations
/// in its order, so every variant is bit-identical to the scalar reference
/// (ggml's generic kernel, which `tests/quant_fixtures.rs` checks through
/// the kernel table).
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ2K, BlockQ8K};
    use crate::quant::x86_util::{f16c, hsum_i32_256, hsum_i32_512};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ2K, y: &BlockQ8K) -> (i32, i32) {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { (hsum_i32_256(lanes_avx2(x, y)), summs(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ2K, y: &BlockQ8K) -> (i32, i32) {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
        unsafe {
            let u = unpack_avx512(x);
            (hsum_i32_512(lanes_avx512(&u, y)), summs(x, y))
        }
    }

    /// `sum_j bsum_j * m_j` (exact in any order).
    #[inline(always)]
    fn summs(x: &BlockQ2K, y: &BlockQ8K) -> i32 {
        let mut summs = 0i32;
        for j in 0..16 {
            summs += y.bsum(j) as i32 * (x.scales[j] >> 4) as i32;
        }
        summs
    }

    /// The 16 sub-block scales (low nibbles).
    #[inline(always)]
    fn scales_i8(x: &BlockQ2K) -> [i8; 16] {
        std::array::from_fn(|j| (x.scales[j] & 0xF) as i8)
    }

    /// Values `128n + 32g .. +32` as u8 in 0..4: bits `2g, 2g+1` of the
    /// `qs` bytes `q2` (of `qs[32n..32n+32]`). A 16-bit shift by at most
    /// 6 brings bits `s, s+1` of each byte to bits 0-1 of the same byte.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn group_avx2(q2: __m256i, g: usize) -> __m256i {
        let lo = _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * g as i32));
        _mm256_and_si256(lo, _mm256_set1_epi8(3))
    }

    /// Eight i32 lanes summing to the block's `isum`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(x: &BlockQ2K, y: &BlockQ8K) -> __m256i {
        let scales = scales_i8(x);
        let mut acc = _mm256_setzero_si256();
        for n in 0..2 {
            // SAFETY: 32 bytes of `qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast()) };
            for g in 0..4 {
                let q = group_avx2(q2, g);
                let v = 128 * n + 32 * g;
                // SAFETY: 32 bytes of `y.qs` from an offset inside the
                // array; `loadu` needs no alignment.
                let q8 = unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(v).cast()) };
                let p16 = _mm256_maddubs_epi16(q, q8);
                let sc = _mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm_set1_epi16(scales[v / 16] as i16)),
                    _mm_set1_epi16(scales[v / 16 + 1] as i16),
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, sc));
            }
        }
        acc
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (bx, by) in x.iter().zip(y) {
            let summs = summs(bx, by);
            let dall = by.d() * f16c(bx.d);
            let dmin = by.d() * f16c(bx.dmin);
            // SAFETY: AVX2 is enabled for this function.
            let isum = hsum_i32_256(unsafe { lanes_avx2(bx, by) });
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }

    /// One weight block unpacked for [`lanes_avx512`]: `q[k]` holds
    /// values `64k..64k+64` as u8 in 0..4 (the order of the activation
    /// bytes), `sc[k]` their four sub-block scales as i16, one per
    /// 128-bit lane.
    struct Unpacked {
        q: [__m512i; 4],
        sc: [__m512i; 4],
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn unpack_avx512(x: &BlockQ2K) -> Unpacked {
        let scales = scales_i8(x);
        // SAFETY: 16 bytes of `scales`; `loadu` needs no alignment.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
        let sc512 = _mm512_castsi256_si512(sc16);
        let mut q = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for n in 0..2 {
            // SAFETY: 32 bytes of `qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast()) };
            for h in 0..2 {
                let lo = group_avx2(q2, 2 * h);
                let hi = group_avx2(q2, 2 * h + 1);
                q[2 * n + h] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                // Scale index of each i16 lane: one sub-block of 16
                // values per 128-bit lane.
                let j = (8 * n + 4 * h) as i16;
                let idx: [i16; 32] = std::array::from_fn(|e| j + (e / 8) as i16);
                // SAFETY: `idx` is 64 readable bytes; `loadu` needs no
                // alignment.
                let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
                sc[2 * n + h] = _mm512_permutexvar_epi16(idx, sc512);
            }
        }
        Unpacked { q, sc }
    }

    /// Sixteen i32 lanes summing to the block's `isum`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn lanes_avx512(u: &Unpacked, y: &BlockQ8K) -> __m512i {
        let mut acc = _mm512_setzero_si512();
        for k in 0..4 {
            // SAFETY: 64 bytes of `y.qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q8 = unsafe { _mm512_loadu_si512(y.qs.as_ptr().add(64 * k).cast()) };
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u.q[k], q8), u.sc[k]);
        }
        acc
    }

    /// `M` weight rows against `N` activation rows, all of one length.
    /// Each weight block is unpacked once for the `N` activation rows;
    /// each of the `M * N` results is computed by the same operations
    /// whatever `M` and `N` are (the scalar code's, on exact integers),
    /// so every tile shape is bit-identical to the one-row kernel and to
    /// the scalar reference.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockQ2K]; M],
        ys: [&[BlockQ8K]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[0.0f32; N]; M];
        for i in 0..nb {
            // SAFETY: the features are enabled for this function.
            let u: [Unpacked; M] = std::array::from_fn(|m| unsafe { unpack_avx512(&xs[m][i]) });
            let dx: [f32; M] = std::array::from_fn(|m| f16c(xs[m][i].d));
            let dmx: [f32; M] = std::array::from_fn(|m| f16c(xs[m][i].dmin));
            for n in 0..N {
                let by = &ys[n][i];
                let dy = by.d();
                for m in 0..M {
                    let summs = summs(&xs[m][i], by);
                    // SAFETY: the features are enabled for this function.
                    let isum = hsum_i32_512(unsafe { lanes_avx512(&u[m], by) });
                    let (dall, dmin) = (dy * dx[m], dy * dmx[m]);
                    acc[m][n] += dall * isum as f32 - dmin * summs as f32;
                }
            }
        }
        acc
    }
}
