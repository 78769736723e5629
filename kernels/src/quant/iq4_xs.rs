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
use super::{check_len, f16_le, Format, QuantError, QK_K};

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

/// The integer dot products of the eight sub-blocks of one block,
/// `sum kvalues[q] * q8` each, as `ggml_vec_dot_iq4_xs_q8_K_generic` forms
/// them.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
    let mut out = [0i32; 8];
    for (ib, (qs, q8)) in x.qs.chunks_exact(16).zip(y.qs.chunks_exact(32)).enumerate() {
        let mut sumi1 = 0i32;
        let mut sumi2 = 0i32;
        for j in 0..16 {
            sumi1 += q8[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32;
            sumi2 += q8[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
        }
        out[ib] = sumi1 + sumi2;
    }
    out
}

/// The f32 part of `ggml_vec_dot_iq4_xs_q8_K_generic` for one block, given
/// its sub-block sums: `sumf += (d4d8 * (ls - 32)) * sumi` per sub-block.
#[inline(always)]
fn accumulate(sumf: &mut f32, x: &BlockIQ4XS, dx: f32, dy: f32, isums: &[i32; 8]) {
    let d4d8 = dx * dy;
    for (ib, &sumi) in isums.iter().enumerate() {
        let dl = d4d8 * (x.scale(ib) as i32 - 32) as f32;
        *sumf += dl * sumi as f32;
    }
}

/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`.
fn scalar_row(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        accumulate(&mut sumf, bx, bx.d(), by.d(), &block_isums(bx, by));
    }
    sumf
}

/// The dot product of an IQ4_XS weight row with a Q8_K activation row:
/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`, or the SIMD variant of this
/// CPU (picked once, see [`super::simd`]; bit-identical).
pub fn vec_dot_iq4_xs_q8_K(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockIQ4XS,
    IQ4_XS,
    QK_K,
    dequantize_row_iq4_xs,
    quantize_row_iq4_xs
);

super::simd::impl_simd_dot!(
    BlockIQ4XS, BlockQ8K, isum: [i32; 8],
    scalar: scalar_row, block_isums,
    avx2: x86::avx2_row, x86::isums_avx2,
    avx512: x86::avx512_tile, x86::isums_avx512_vnni,
);

/// SIMD variants of `vec_dot_iq4_xs_q8_K`, chosen by [`super::simd`].
///
/// Each sub-block of 32 values is an IQ4_NL block. The AVX2 variant looks
/// the nibbles up in the level table with `pshufb`, widens them to i16 with
/// the activations and multiplies pairwise into i32 lanes with `madd`; the
/// AVX-512 one unpacks the whole block into four registers of 64 values in
/// activation order, looks up the levels plus 128 (1..=241, unsigned),
/// takes 64 values per `vpdpbusd` and subtracts `128 * sum q8` (a second
/// `vpdpbusd` against ones), then reduces the 16 lanes of each register to
/// its two sub-block sums with adds and `phaddd`. Both are exact for every
/// i8 activation, -128 included. The eight sub-block sums are integers
/// (the `isum` kernel) and the f32 part runs the scalar code's
/// operations in its order, so every variant is bit-identical to the
/// scalar reference (ggml's generic kernel, which `tests/quant_fixtures.rs`
/// checks through the kernel table).
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{accumulate, KVALUES_IQ4NL};
    use super::{BlockIQ4XS, BlockQ8K};
    use crate::quant::x86_util::{f16c, hsum_i32_256};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isums_avx2(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { block_isums_avx2(x, y) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isums_avx512_vnni(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's
        // contract).
        unsafe {
            let (qy, sy) = act_avx512(y);
            isums_avx512(&quants_avx512(x), &qy, &sy)
        }
    }

    /// The eight sub-block sums of one block.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block_isums_avx2(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
        // SAFETY: `KVALUES_IQ4NL` is 16 readable bytes; `loadu` needs no
        // alignment.
        let levels =
            _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
        let mask = _mm_set1_epi8(0x0F);
        let mut out = [0i32; 8];
        for (ib, out) in out.iter_mut().enumerate() {
            // SAFETY: 16 bytes of `qs` and 32 of `y.qs` from offsets
            // inside the arrays; `loadu` needs no alignment.
            let (qs, qy) = unsafe {
                (
                    _mm_loadu_si128(x.qs.as_ptr().add(16 * ib).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                )
            };
            let lo = _mm_and_si128(qs, mask);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
            let q = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
            // The signed levels, -127..=113, in value order.
            let qx = _mm256_shuffle_epi8(levels, q);
            let x_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qx));
            let x_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qx));
            let y_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy));
            let y_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy));
            let lanes =
                _mm256_add_epi32(_mm256_madd_epi16(x_lo, y_lo), _mm256_madd_epi16(x_hi, y_hi));
            *out = hsum_i32_256(lanes);
        }
        out
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (bx, by) in x.iter().zip(y) {
            // SAFETY: AVX2 is enabled for this function.
            let isums = unsafe { block_isums_avx2(bx, by) };
            accumulate(&mut sumf, bx, f16c(bx.d), by.d(), &isums);
        }
        sumf
    }

    use crate::quant::iq4_nl::x86::LEVELS_PLUS_128;

    /// The block's 256 levels plus 128 (1..=241, unsigned) in value
    /// order, 64 per register: register `k` holds sub-blocks `2k` and
    /// `2k + 1` (the low nibbles of `qs[32k..32k+16]`, their high
    /// nibbles, then the same for `qs[32k+16..32k+32]`).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn quants_avx512(x: &BlockIQ4XS) -> [__m512i; 4] {
        // SAFETY: `LEVELS_PLUS_128` is 16 readable bytes; `loadu` needs
        // no alignment.
        let lut =
            _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(LEVELS_PLUS_128.as_ptr().cast()) });
        let mask = _mm256_set1_epi8(0x0F);
        let mut q = [_mm512_setzero_si512(); 4];
        for (k, q) in q.iter_mut().enumerate() {
            // SAFETY: 32 bytes of `qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q4 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * k).cast()) };
            let lo = _mm256_and_si256(q4, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), mask);
            // Sub-block 2k (lo, hi of bytes 0..16), then 2k + 1.
            let a = _mm256_permute2x128_si256::<0x20>(lo, hi);
            let b = _mm256_permute2x128_si256::<0x31>(lo, hi);
            let idx = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
            *q = _mm512_shuffle_epi8(lut, idx);
        }
        q
    }

    /// The block's 256 activations, 64 per register, and `128 * sum q8`
    /// over each group of four (the lanes of `vpdpbusd`).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn act_avx512(y: &BlockQ8K) -> ([__m512i; 4], [__m512i; 4]) {
        let ones = _mm512_set1_epi8(1);
        let zero = _mm512_setzero_si512();
        let mut qy = [zero; 4];
        let mut sy = [zero; 4];
        for k in 0..4 {
            // SAFETY: 64 bytes of `y.qs` from an offset inside the array;
            // `loadu` needs no alignment.
            qy[k] = unsafe { _mm512_loadu_si512(y.qs.as_ptr().add(64 * k).cast()) };
            sy[k] = _mm512_slli_epi32::<7>(_mm512_dpbusd_epi32(zero, ones, qy[k]));
        }
        (qy, sy)
    }

    /// The eight sub-block sums: per register `sum (k + 128) * y - 128 *
    /// sum y` in 16 lanes (each at most 4 * 241 * 128 + 4 * 128 * 128 in
    /// magnitude: exact), lanes 0..8 summing to sub-block `2k`, 8..16 to
    /// `2k + 1`, reduced exactly in i32.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn isums_avx512(q: &[__m512i; 4], qy: &[__m512i; 4], sy: &[__m512i; 4]) -> [i32; 8] {
        let zero = _mm512_setzero_si512();
        // Per register, the 128-bit lane 0 sums to sub-block 2k and
        // lane 2 to 2k + 1.
        let mut a = [_mm_setzero_si128(); 4];
        let mut b = [_mm_setzero_si128(); 4];
        for k in 0..4 {
            let lanes = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q[k], qy[k]), sy[k]);
            let s = _mm512_add_epi32(lanes, _mm512_shuffle_i64x2::<0b10_11_00_01>(lanes, lanes));
            a[k] = _mm512_castsi512_si128(s);
            b[k] = _mm512_extracti32x4_epi32::<2>(s);
        }
        let h0 = _mm_hadd_epi32(_mm_hadd_epi32(a[0], b[0]), _mm_hadd_epi32(a[1], b[1]));
        let h1 = _mm_hadd_epi32(_mm_hadd_epi32(a[2], b[2]), _mm_hadd_epi32(a[3], b[3]));
        let mut out = [0i32; 8];
        // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
        unsafe {
            _mm_storeu_si128(out.as_mut_ptr().cast(), h0);
            _mm_storeu_si128(out.as_mut_ptr().add(4).cast(), h1);
        }
        out
    }

    /// `M` weight rows against `N` activation rows, all of one length.
    /// Each weight block is unpacked once for the `N` activation rows,
    /// each activation block (with its sums) loaded once for the `M`
    /// weight rows. Each of the `M * N` results is computed by the same
    /// operations whatever `M` and `N` are, so every tile shape is
    /// bit-identical to the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockIQ4XS]; M],
        ys: [&[BlockQ8K]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[0.0f32; N]; M];
        for i in 0..nb {
            let mut q = [[_mm512_setzero_si512(); 4]; M];
            let mut dx = [0.0f32; M];
            for m in 0..M {
                let bx = &xs[m][i];
                // SAFETY: the features are enabled for this function.
                q[m] = unsafe { quants_avx512(bx) };
                dx[m] = f16c(bx.d);
            }
            for n in 0..N {
                let by = &ys[n][i];
                // SAFETY: the features are enabled for this function.
                let (qy, sy) = unsafe { act_avx512(by) };
                let dy = by.d();
                for m in 0..M {
                    // SAFETY: the features are enabled for this function.
                    let isums = unsafe { isums_avx512(&q[m], &qy, &sy) };
                    accumulate(&mut acc[m][n], &xs[m][i], dx[m], dy, &isums);
                }
            }
        }
        acc
    }
}
