//! Q4_K: 256 values in 8 sub-blocks of 32, `x = d * sc_j * q - dmin * m_j`
//! with 4-bit `q` and 6-bit sub-block scales `sc_j` and mins `m_j`.
//!
//! Layout (`block_q4_K` in ggml-common.h, 144 bytes):
//! `{ ggml_half d; ggml_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t
//! qs[QK_K/2]; }`. The 12 scale bytes pack 8 scales and 8 mins of 6 bits
//! (see `get_scale_min_k4`). Each 32 bytes of `qs` hold two sub-blocks: the
//! low nibbles the first, the high nibbles the second.

use bytemuck::{Pod, Zeroable};

use super::kquants::{get_scale_min_k4, quantize_scale_min_k4};
use super::q8_k::BlockQ8K;
use super::{check_len, f16_le, Format, QuantError, QK_K};

/// Bytes of packed scales and mins (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// f16 super-block scale for the sub-block scales, little-endian.
    pub d: [u8; 2],
    /// f16 super-block scale for the sub-block mins, little-endian.
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

impl BlockQ4K {
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
    /// The 6-bit scale and min of sub-block `j` (0..8).
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        get_scale_min_k4(j, &self.scales)
    }
}

/// ggml's `dequantize_row_q4_K`.
pub fn dequantize_row_q4_K(x: &[BlockQ4K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q4_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let min = b.dmin();
        for (k, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc, m) = b.scale_min(2 * k);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = b.scale_min(2 * k + 1);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (lo, hi) = y.split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0xF) as f32 - m1;
                hi[l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q4_K_ref`: per sub-block `make_qkx2_quants(32, 15,
/// weights = sqrt(mean x^2) + |x|, rmin -1, rdelta 0.1, 20 steps)`, then the
/// 8 scales and mins quantized to 6 bits against their maxima, then every
/// value re-quantized against the rounded scales.
pub fn quantize_row_q4_K(x: &[f32], y: &mut [BlockQ4K]) -> Result<(), QuantError> {
    check_len(Format::Q4_K, QK_K, y.len(), x.len())?;
    let mut l = [0u8; QK_K];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        (b.scales, b.d, b.dmin) = quantize_scale_min_k4(x, 15, -1.0, 20, &mut l);

        for (k, q) in b.qs.chunks_exact_mut(32).enumerate() {
            let base = 64 * k;
            for i in 0..32 {
                q[i] = l[base + i] | (l[base + i + 32] << 4);
            }
        }
    }
    Ok(())
}

/// The integer parts of one block's dot product, as
/// `ggml_vec_dot_q4_K_q8_K_generic` forms them: the eight lane sums
/// `aux32[l] = sum_j sc_j * sum_{i = l mod 8} q4 * q8` and
/// `sumi = sum_j bsum_j * m_{j/2}`.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 8], i32) {
    let mut aux8 = [0i8; QK_K];
    for (k, q) in x.qs.chunks_exact(32).enumerate() {
        for l in 0..32 {
            aux8[64 * k + l] = (q[l] & 0xF) as i8;
            aux8[64 * k + 32 + l] = (q[l] >> 4) as i8;
        }
    }
    super::kquants::scale_min_isums(&aux8, y, |j| x.scale_min(j))
}

/// ggml's `ggml_vec_dot_q4_K_q8_K_generic`: eight i32 lanes per block,
/// scaled into eight f32 partial sums, the mins subtracted as they come.
fn scalar_row(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| {
        let (aux32, sumi) = block_isums(bx, by);
        let dmin = bx.dmin() * by.d();
        (bx.d() * by.d(), aux32, dmin * sumi as f32)
    })
}

/// The dot product of a Q4_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q4_K_q8_K_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]).
pub fn vec_dot_q4_K_q8_K(x: &[BlockQ4K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ4K, Q4_K, QK_K, dequantize_row_q4_K, quantize_row_q4_K);

super::simd::impl_simd_dot!(
    BlockQ4K, BlockQ8K, isum: (i32, i32),
    scalar: scalar_row, scalar_isums,
    avx2: x86::avx2_row::<BlockQ4K>, x86::isums_avx2::<BlockQ4K>,
    avx2_tile: x86::avx2_tile,
    avx512: x86::avx512_tile, x86::isums_avx512_vnni::<BlockQ4K>,
);

fn scalar_isums(x: &BlockQ4K, y: &BlockQ8K) -> (i32, i32) {
    let (aux32, sumi) = block_isums(x, y);
    (aux32.iter().sum(), sumi)
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::unpacked_avx512;

/// SIMD variants of `vec_dot_q4_K_q8_K`, chosen by [`super::simd`].
///
/// Per block they form the same two integers as the scalar code, exactly:
/// `sum_j sc_j * sum_{i in j} q4_i * q8_i` (nibbles times i8 via `maddubs`,
/// at most 2 * 15 * 128 per i16 pair, so it never saturates, then scaled
/// into i32 lanes by `madd` or VNNI's `vpdpwssd`) and
/// `sum_j bsum_j * m_{j/2}`; the `isum` kernel exposes
/// them for testing. The f32 part (`d * isum - dmin * summ`) is kept in
/// per-lane partial sums, so the row result differs from the scalar loop by
/// rounding only.
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4K, BlockQ8K};
    use crate::quant::x86_util::{f16c, hsum_f32_256, hsum_f32_512, hsum_i32_256, hsum_i32_512};
    use crate::quant::BlockQ5K;

    /// A block laid out as Q4_K: f16 `d` and `dmin`, 12 bytes of 6-bit
    /// scales and mins, 128 bytes of nibbles, and for Q5_K the fifth bits
    /// in `qh`. The two formats differ only there, so every kernel below
    /// serves both; `QH` is a constant, so Q4_K's code has no trace of the
    /// fifth bits.
    pub(crate) trait Q4KLayout {
        /// Whether the quants have a fifth bit in `qh` (Q5_K).
        const QH: bool;
        fn d(&self) -> [u8; 2];
        fn dmin(&self) -> [u8; 2];
        fn scales(&self) -> &[u8; 12];
        fn qs(&self) -> &[u8; 128];
        /// The fifth bits; read only when `QH`.
        fn qh(&self) -> &[u8; 32];
    }

    /// The layout's fields of a block type, its `qh` given by `$qh`.
    macro_rules! q4k_layout {
        ($b:ty, $has_qh:expr, |$x:ident| $qh:expr) => {
            impl Q4KLayout for $b {
                const QH: bool = $has_qh;
                fn d(&self) -> [u8; 2] {
                    self.d
                }
                fn dmin(&self) -> [u8; 2] {
                    self.dmin
                }
                fn scales(&self) -> &[u8; 12] {
                    &self.scales
                }
                fn qs(&self) -> &[u8; 128] {
                    &self.qs
                }
                fn qh(&self) -> &[u8; 32] {
                    let $x = self;
                    $qh
                }
            }
        };
    }
    q4k_layout!(BlockQ4K, false, |_x| &[0; 32]);
    q4k_layout!(BlockQ5K, true, |x| &x.qh);

    /// The fifth bits of `qs[32k..32k+32]`'s low and high nibbles as
    /// bytes 0 or 16, given `h` = the `qh` bytes shifted right by `2k`
    /// (bits 0 and 1 of each byte; [`_mm256_srli_epi16`] by up to 6 never
    /// moves a bit of the neighbouring byte into them).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fifth_bits(h: __m256i) -> (__m256i, __m256i) {
        let bit4 = _mm256_set1_epi8(0x10);
        (
            _mm256_and_si256(_mm256_slli_epi16::<4>(h), bit4),
            _mm256_and_si256(_mm256_slli_epi16::<3>(h), bit4),
        )
    }

    /// The quants of `qs[32k..32k+32]` as bytes: values `64k..64k+32`
    /// (low nibbles) and `64k+32..64k+64` (high nibbles), each with its
    /// fifth bit from `h` (the `qh` bytes shifted right by `2k`, advanced
    /// here) when the format has one.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants_avx2<B: Q4KLayout>(x: &B, k: usize, h: &mut __m256i) -> (__m256i, __m256i) {
        let mask = _mm256_set1_epi8(0x0F);
        // SAFETY: 32 bytes of `qs` from an offset inside the array; `loadu`
        // needs no alignment.
        let q4 = unsafe { _mm256_loadu_si256(x.qs().as_ptr().add(32 * k).cast()) };
        let lo = _mm256_and_si256(q4, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), mask);
        if !B::QH {
            return (lo, hi);
        }
        let (h_lo, h_hi) = fifth_bits(*h);
        *h = _mm256_srli_epi16::<2>(*h);
        (_mm256_or_si256(lo, h_lo), _mm256_or_si256(hi, h_hi))
    }

    /// The `qh` bytes for [`quants_avx2`] (zero without fifth bits).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn high_bits<B: Q4KLayout>(x: &B) -> __m256i {
        if B::QH {
            // SAFETY: `qh` is 32 readable bytes; `loadu` needs no alignment.
            unsafe { _mm256_loadu_si256(x.qh().as_ptr().cast()) }
        } else {
            _mm256_setzero_si256()
        }
    }

    /// `sum_j bsum_j * m_{j/2}`, and the 8 sub-block scales.
    #[inline(always)]
    fn mins_and_scales<B: Q4KLayout>(x: &B, y: &BlockQ8K) -> (i32, [u8; 8]) {
        let (scales, mins) = scales_mins(x);
        let mut summ = 0i32;
        for j in 0..8 {
            summ += (y.bsum(2 * j) as i32 + y.bsum(2 * j + 1) as i32) * mins[j] as i32;
        }
        (summ, scales)
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(crate) unsafe fn isums_avx2<B: Q4KLayout>(x: &B, y: &BlockQ8K) -> (i32, i32) {
        let (summ, scales) = mins_and_scales(x, y);
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        let lanes = unsafe { lanes_avx2(x, y, &scales) };
        // SAFETY: as above.
        (unsafe { hsum_i32_256(lanes) }, summ)
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(crate) unsafe fn isums_avx512_vnni<B: Q4KLayout>(x: &B, y: &BlockQ8K) -> (i32, i32) {
        let (summ, scales) = mins_and_scales(x, y);
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
        let lanes = unsafe {
            let (q4, sc) = unpack_avx512(x, &scales);
            lanes_avx512(&q4, &sc, y)
        };
        // SAFETY: as above.
        (unsafe { hsum_i32_512(lanes) }, summ)
    }

    /// Eight i32 lanes summing to `sum_j sc_j * sum_{i in j} q_i * q8_i`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2<B: Q4KLayout>(x: &B, y: &BlockQ8K, scales: &[u8; 8]) -> __m256i {
        let mut acc = _mm256_setzero_si256();
        // SAFETY: AVX2 is enabled for this function.
        let mut h = unsafe { high_bits(x) };
        for k in 0..4 {
            // SAFETY: as above.
            let (lo, hi) = unsafe { quants_avx2(x, k, &mut h) };
            // SAFETY: 2 x 32 bytes of `y.qs` from offsets inside the array;
            // `loadu` needs no alignment.
            let (q8_lo, q8_hi) = unsafe {
                (
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * k).cast()),
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * k + 32).cast()),
                )
            };
            let p_lo = _mm256_maddubs_epi16(lo, q8_lo);
            let p_hi = _mm256_maddubs_epi16(hi, q8_hi);
            let s_lo = _mm256_set1_epi16(scales[2 * k] as i16);
            let s_hi = _mm256_set1_epi16(scales[2 * k + 1] as i16);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p_lo, s_lo));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p_hi, s_hi));
        }
        acc
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    pub(crate) unsafe fn avx2_row<B: Q4KLayout>(x: &[B], y: &[BlockQ8K]) -> f32 {
        // SAFETY: the caller's contract is the tile's.
        unsafe { avx2_tile::<B, 1, 1>([x], [y])[0][0] }
    }

    /// `M` weight rows against `N` activation rows on AVX2. Each weight
    /// block's quants and scales are unpacked once, 32 values at a time,
    /// and multiplied into the `N` activation rows' integer lanes while in
    /// registers; each output is computed by the operations of
    /// [`lanes_avx2`] and the one-row f32 steps (the mins' sum is the same
    /// exact integer), so every shape is bit-identical to the one-row
    /// kernel.
    ///
    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn avx2_tile<B: Q4KLayout, const M: usize, const N: usize>(
        xs: [&[B]; M],
        ys: [&[BlockQ8K]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        let mut sum_min = [[0.0f32; N]; M];
        for i in 0..nb {
            for m in 0..M {
                let bx = &xs[m][i];
                let (scales, mins) = scales_mins(bx);
                let mut lanes = [_mm256_setzero_si256(); N];
                // SAFETY: AVX2 is enabled for this function.
                let mut h = unsafe { high_bits(bx) };
                for k in 0..4 {
                    // SAFETY: as above.
                    let (lo, hi) = unsafe { quants_avx2(bx, k, &mut h) };
                    let s_lo = _mm256_set1_epi16(scales[2 * k] as i16);
                    let s_hi = _mm256_set1_epi16(scales[2 * k + 1] as i16);
                    for n in 0..N {
                        let q8 = ys[n][i].qs.as_ptr();
                        // SAFETY: 2 x 32 bytes of `qs` from offsets inside
                        // the array; `loadu` needs no alignment.
                        let (q8_lo, q8_hi) = unsafe {
                            (
                                _mm256_loadu_si256(q8.add(64 * k).cast()),
                                _mm256_loadu_si256(q8.add(64 * k + 32).cast()),
                            )
                        };
                        let p_lo = _mm256_maddubs_epi16(lo, q8_lo);
                        let p_hi = _mm256_maddubs_epi16(hi, q8_hi);
                        lanes[n] = _mm256_add_epi32(lanes[n], _mm256_madd_epi16(p_lo, s_lo));
                        lanes[n] = _mm256_add_epi32(lanes[n], _mm256_madd_epi16(p_hi, s_hi));
                    }
                }
                let mins16 = mins_i16(&mins);
                let (dx, dmx) = (f16c(bx.d()), f16c(bx.dmin()));
                for n in 0..N {
                    let by = &ys[n][i];
                    let dy = by.d();
                    // SAFETY: as above.
                    let summ = unsafe { summ_avx2(mins16, by) };
                    let d = _mm256_set1_ps(dx * dy);
                    let v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes[n]));
                    acc[m][n] = _mm256_add_ps(acc[m][n], v);
                    sum_min[m][n] -= dmx * dy * summ as f32;
                }
            }
        }
        let mut out = [[0.0f32; N]; M];
        for m in 0..M {
            for n in 0..N {
                out[m][n] = hsum_f32_256(acc[m][n]) + sum_min[m][n];
            }
        }
        out
    }

    /// Everything [`avx512_tile`] derives from one weight block before
    /// it reads activations: the nibbles and scales of
    /// [`unpack_avx512`], the mins as i16 for [`summ_avx2`], and the two
    /// super-block scales as f32 (for `crate::packed`, which computes
    /// each output with the tile's operations from these).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(crate) unsafe fn unpacked_avx512<B: Q4KLayout>(
        x: &B,
    ) -> ([__m512i; 4], [__m512i; 4], __m256i, f32, f32) {
        let (scales, mins) = scales_mins(x);
        // SAFETY: the features are enabled for this function.
        let (q, sc) = unsafe { unpack_avx512(x, &scales) };
        (q, sc, mins_i16(&mins), f16c(x.d()), f16c(x.dmin()))
    }

    /// The block's nibbles and sub-block scales for [`lanes_avx512`]:
    /// register `k` holds values `64k..64k+64` (the low nibbles of
    /// `qs[32k..32k+32]`, then the high ones: the order of the
    /// activation bytes), and their two scales as i16, one per half.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn unpack_avx512<B: Q4KLayout>(x: &B, scales: &[u8; 8]) -> ([__m512i; 4], [__m512i; 4]) {
        let mut q = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        // SAFETY: the features are enabled for this function.
        let mut h = unsafe { high_bits(x) };
        for k in 0..4 {
            // SAFETY: as above.
            let (lo, hi) = unsafe { quants_avx2(x, k, &mut h) };
            q[k] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            sc[k] = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi16(scales[2 * k] as i16)),
                _mm256_set1_epi16(scales[2 * k + 1] as i16),
            );
        }
        (q, sc)
    }

    /// Sixteen i32 lanes summing to `sum_j sc_j * sum_{i in j} q_i * q8_i`:
    /// per 64 values, `maddubs` (4- or 5-bit x i8 pairs to i16, at most
    /// 2 * 31 * 128, no saturation) then `vpdpwssd` multiplies the pairs
    /// by the sub-block scale and adds them into the i32 lanes.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn lanes_avx512(q: &[__m512i; 4], sc: &[__m512i; 4], y: &BlockQ8K) -> __m512i {
        let mut acc = _mm512_setzero_si512();
        for k in 0..4 {
            // SAFETY: 64 bytes of `y.qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q8 = unsafe { _mm512_loadu_si512(y.qs.as_ptr().add(64 * k).cast()) };
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(q[k], q8), sc[k]);
        }
        acc
    }

    /// The 8 sub-block scales and mins (`get_scale_min_k4` for
    /// `j = 0..8`), unpacked branch-free on four u32 words as ggml's
    /// x86 kernels do: bytes 0..4 hold the low 6 bits of scales 0..4,
    /// 4..8 those of mins 0..4, 8..12 the low nibbles of scales 4..8
    /// and mins 4..8, whose top 2 bits are the top bits of bytes 0..8.
    #[inline(always)]
    fn scales_mins<B: Q4KLayout>(x: &B) -> ([u8; 8], [u8; 8]) {
        const KMASK1: u32 = 0x3f3f_3f3f;
        const KMASK2: u32 = 0x0f0f_0f0f;
        const KMASK3: u32 = 0x0303_0303;
        let s = x.scales();
        let word =
            |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
        let (u0, u1, u2) = (word(0), word(1), word(2));
        let scales_lo = u0 & KMASK1;
        let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
        let mins_lo = u1 & KMASK1;
        let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
        let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
        (join(scales_lo, scales_hi), join(mins_lo, mins_hi))
    }

    /// `sum_j bsum_j * m_{j/2}` as `madd` of the 16 group sums with
    /// `mins16` (each min twice, from [`mins_i16`]): exact, each i32
    /// lane at most 2 * 2048 * 63.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn summ_avx2(mins16: __m256i, y: &BlockQ8K) -> i32 {
        // SAFETY: `bsums` is 32 readable bytes; `loadu` needs no
        // alignment.
        let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
        hsum_i32_256(_mm256_madd_epi16(bs, mins16))
    }

    /// The 8 mins as 16 i16 lanes, lane `l` holding `m_{l/2}`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mins_i16(mins: &[u8; 8]) -> __m256i {
        let m = _mm_set1_epi64x(u64::from_le_bytes(*mins) as i64);
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m))
    }

    /// `M` weight rows against `N` activation rows, all of one length.
    /// Each weight block is unpacked once for the `N` activation rows;
    /// each of the `M * N` results is computed by the same operations
    /// whatever `M` and `N` are, so every tile shape is bit-identical to
    /// the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(crate) unsafe fn avx512_tile<B: Q4KLayout, const M: usize, const N: usize>(
        xs: [&[B]; M],
        ys: [&[BlockQ8K]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        let mut sum_min = [[0.0f32; N]; M];
        for i in 0..nb {
            let mut q = [[_mm512_setzero_si512(); 4]; M];
            let mut sc = [[_mm512_setzero_si512(); 4]; M];
            let mut mins16 = [_mm256_setzero_si256(); M];
            let mut dx = [0.0f32; M];
            let mut dmx = [0.0f32; M];
            for m in 0..M {
                let bx = &xs[m][i];
                let (scales, mins) = scales_mins(bx);
                // SAFETY: the features are enabled for this function.
                (q[m], sc[m]) = unsafe { unpack_avx512(bx, &scales) };
                mins16[m] = mins_i16(&mins);
                (dx[m], dmx[m]) = (f16c(bx.d()), f16c(bx.dmin()));
            }
            for n in 0..N {
                let by = &ys[n][i];
                let dy = by.d();
                for m in 0..M {
                    // SAFETY: the features are enabled for this function.
                    let (lanes, summ) =
                        unsafe { (lanes_avx512(&q[m], &sc[m], by), summ_avx2(mins16[m], by)) };
                    let d = _mm512_set1_ps(dx[m] * dy);
                    let v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes));
                    acc[m][n] = _mm512_add_ps(acc[m][n], v);
                    sum_min[m][n] -= dmx[m] * dy * summ as f32;
                }
            }
        }
        let mut out = [[0.0f32; N]; M];
        for m in 0..M {
            for n in 0..N {
                out[m][n] = hsum_f32_512(acc[m][n]) + sum_min[m][n];
            }
        }
        out
    }
}
