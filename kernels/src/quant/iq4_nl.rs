//! IQ4_NL: 32 values as `d * kvalues_iq4nl[q]`, a 4-bit index into a fixed
//! non-linear table.
//!
//! Layout (`block_iq4_nl` in ggml-common.h, 18 bytes):
//! `{ ggml_half d; uint8_t qs[QK4_NL/2]; }`, nibbles packed as Q4_0.

use bytemuck::{Pod, Zeroable};

use super::kquants::{nearest_int, GROUP_MAX_EPS};
use super::q8_0::BlockQ8_0;
use super::{check_len, f16_bytes, f16_le, Format, QuantError};

/// Values per block (`QK4_NL`).
pub const QK4_NL: usize = 32;

/// The 16 levels (`kvalues_iq4nl` in ggml-common.h), sorted.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4NL {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(size_of::<BlockIQ4NL>() == 18);

impl BlockIQ4NL {
    /// The scale as f32.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
}

/// ggml's `dequantize_row_iq4_nl`.
pub fn dequantize_row_iq4_nl(x: &[BlockIQ4NL], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::IQ4_NL, QK4_NL, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_NL)) {
        let d = b.d();
        let (lo, hi) = y.split_at_mut(QK4_NL / 2);
        for j in 0..QK4_NL / 2 {
            lo[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xF) as usize] as f32;
            hi[j] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
    Ok(())
}

/// The index of the level nearest to `x` (`best_index_int8` in
/// ggml-quants.c): level `i` is picked once `x` reaches the midpoint of
/// levels `i-1` and `i`, compared doubled so both sides are exact.
#[inline(always)]
pub(crate) fn best_index_int8(val: &[i8; 16], x: f32) -> u8 {
    let x2 = x + x;
    let mut idx = 0usize;
    let mut step = 8usize;
    while step > 0 {
        let j = idx + step;
        if x2 >= (val[j - 1] as i32 + val[j] as i32) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx as u8
}

/// ggml's `quantize_row_iq4_nl_impl` without importance weights (weights
/// `x^2`), for one super-block of `x.len()` values in sub-blocks of 32.
/// With one sub-block (IQ4_NL) the f16 scale is the sub-block scale; with
/// several (IQ4_XS) the sub-block scales are quantized to 6 bits against
/// `d = -max_scale / 32`. `l` keeps its contents across calls as ggml's
/// caller-owned `L` does (it only matters for an all-zero IQ4_NL block,
/// whose scale is 0 anyway). Returns the f16 scale bytes and, for several
/// sub-blocks, writes their 6-bit scales through `put_scale(ib, ls)`.
pub(crate) fn quantize_iq4_impl(
    x: &[f32],
    l: &mut [u8],
    scales: &mut [f32],
    ntry: i32,
    mut put_scale: impl FnMut(usize, u8),
    q4: &mut [u8],
) -> [u8; 2] {
    let values = &KVALUES_IQ4NL;
    let v0 = values[0] as f32;
    let nblocks = x.len() / 32;
    let mut weight = [0.0f32; 32];
    let mut max_scale = 0.0f32;
    let mut amax_scale = 0.0f32;
    for ib in 0..nblocks {
        let xb = &x[32 * ib..32 * ib + 32];
        let lb = &mut l[32 * ib..32 * ib + 32];
        for (w, &v) in weight.iter_mut().zip(xb) {
            *w = v * v;
        }
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = if ntry > 0 { -max / v0 } else { max / v0 };
        let mut id = 1.0 / d;
        let mut sumqx = 0.0f32;
        let mut sumq2 = 0.0f32;
        for j in 0..32 {
            let li = best_index_int8(values, id * xb[j]);
            lb[j] = li;
            let q = values[li as usize] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumqx / sumq2;
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            id = (itry as f32 + v0) / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..32 {
                let li = best_index_int8(values, id * xb[j]);
                let q = values[li as usize] as f32;
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }

    let dh;
    if nblocks > 1 {
        let d = -max_scale / 32.0;
        dh = f16_bytes(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..nblocks {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                l[32 * ib + j] = best_index_int8(values, idl * x[32 * ib + j]);
            }
            put_scale(ib, (ls + 32) as u8);
        }
    } else {
        dh = f16_bytes(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 {
                1.0 / scales[0]
            } else {
                0.0
            };
            for (lj, &v) in l.iter_mut().zip(x) {
                *lj = best_index_int8(values, id * v);
            }
        }
    }

    for (i, q) in q4.chunks_exact_mut(16).enumerate() {
        for j in 0..16 {
            q[j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
        }
    }
    dh
}

/// ggml's `quantize_row_iq4_nl_ref` (`quantize_row_iq4_nl_impl` with
/// `ntry = -1`: no scale search, as ggml's reference does).
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIQ4NL]) -> Result<(), QuantError> {
    check_len(Format::IQ4_NL, QK4_NL, y.len(), x.len())?;
    let mut l = [0u8; QK4_NL];
    let mut scale = [0.0f32; 1];
    for (x, b) in x.chunks_exact(QK4_NL).zip(y.iter_mut()) {
        b.d = quantize_iq4_impl(x, &mut l, &mut scale, -1, |_, _| {}, &mut b.qs);
    }
    Ok(())
}

/// The integer dot product of two blocks, `sum kvalues[q] * q8`.
#[inline(always)]
pub(crate) fn block_isum(x: &BlockIQ4NL, y: &BlockQ8_0) -> i32 {
    let mut sumi1 = 0i32;
    let mut sumi2 = 0i32;
    for j in 0..QK4_NL / 2 {
        sumi1 += y.qs[j] as i32 * KVALUES_IQ4NL[(x.qs[j] & 0xF) as usize] as i32;
        sumi2 += y.qs[j + QK4_NL / 2] as i32 * KVALUES_IQ4NL[(x.qs[j] >> 4) as usize] as i32;
    }
    sumi1 + sumi2
}

/// ggml's `ggml_vec_dot_iq4_nl_q8_0_generic`.
fn scalar_row(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let d = by.d() * bx.d();
        sumf += d * block_isum(bx, by) as f32;
    }
    sumf
}

/// The dot product of an IQ4_NL weight row with a Q8_0 activation row:
/// ggml's `ggml_vec_dot_iq4_nl_q8_0_generic`, or the SIMD variant of this
/// CPU (picked once, see [`super::simd`]).
pub fn vec_dot_iq4_nl_q8_0(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(
    BlockIQ4NL,
    IQ4_NL,
    QK4_NL,
    dequantize_row_iq4_nl,
    quantize_row_iq4_nl
);

super::simd::impl_simd_dot!(
    BlockIQ4NL, BlockQ8_0, isum: i32,
    scalar: scalar_row, block_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

/// SIMD variants of `vec_dot_iq4_nl_q8_0`, chosen by [`super::simd`].
///
/// Both unpack the 4-bit indices of a block in value order (low nibbles,
/// then high nibbles) and look the levels up with `pshufb`. The AVX2
/// variant takes the signed levels, widens to i16 and multiplies pairs into
/// i32 lanes with `madd`; the AVX-512 one looks up the levels plus 128
/// (1..=241, unsigned), takes two blocks per `vpdpbusd` and subtracts
/// `128 * sum q8` (a second `vpdpbusd` against ones).
/// Both are exact for every i8 activation, -128 included. The lanes of one
/// block sum to the scalar integer dot product (the `isum` kernel),
/// which is reduced per block; the f32 part then runs the scalar code's
/// operations in its order, so every variant is bit-identical to the scalar
/// reference (ggml's generic kernel, which `tests/quant_fixtures.rs` checks
/// through the kernel table).
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::KVALUES_IQ4NL;
    use super::{BlockIQ4NL, BlockQ8_0};
    use crate::quant::x86_util::{f16c, hsum_i32_256};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockIQ4NL, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockIQ4NL, y: &BlockQ8_0) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's
        // contract).
        let lanes = unsafe { pair_lanes_avx512(pair_quants_avx512(x, x), y, y) };
        // SAFETY: as above.
        unsafe { hsum_i32_256(_mm512_castsi512_si256(lanes)) }
    }

    /// `KVALUES_IQ4NL[i] + 128` as u8 bits (1..=241), for `vpdpbusd`.
    const LEVELS_PLUS_128: [i8; 16] = {
        let mut t = [0i8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = KVALUES_IQ4NL[i].wrapping_add(-128);
            i += 1;
        }
        t
    };

    /// `levels` in bytes `i` and `16 + i`: the `pshufb` table of both
    /// 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn levels_avx2(levels: &[i8; 16]) -> __m256i {
        // SAFETY: `levels` is 16 readable bytes; `loadu` needs no
        // alignment.
        let t = unsafe { _mm_loadu_si128(levels.as_ptr().cast()) };
        _mm256_broadcastsi128_si256(t)
    }

    /// The block's 32 indices in value order as u8 (0..16): low
    /// nibbles, then high nibbles.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles_avx2(b: &BlockIQ4NL) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; `loadu` needs no alignment.
        let qs = unsafe { _mm_loadu_si128(b.qs.as_ptr().cast()) };
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
    }

    /// Eight i32 lanes summing to the block's integer dot product.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(bx: &BlockIQ4NL, by: &BlockQ8_0) -> __m256i {
        // SAFETY: AVX2 is enabled for this function.
        let q = unsafe { nibbles_avx2(bx) };
        // The signed levels, -127..=113.
        let qx = _mm256_shuffle_epi8(levels_avx2(&KVALUES_IQ4NL), q);
        // SAFETY: `qs` is 32 readable bytes; `loadu` needs no alignment.
        let qy = unsafe { _mm256_loadu_si256(by.qs.as_ptr().cast()) };
        let x_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qx));
        let x_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qx));
        let y_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy));
        let y_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy));
        _mm256_add_epi32(_mm256_madd_epi16(x_lo, y_lo), _mm256_madd_epi16(x_hi, y_hi))
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockIQ4NL], y: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (bx, by) in x.iter().zip(y) {
            // SAFETY: AVX2 is enabled for this function.
            let isum = hsum_i32_256(unsafe { lanes_avx2(bx, by) });
            sumf += (f16c(by.d) * f16c(bx.d)) * isum as f32;
        }
        sumf
    }

    /// The levels plus 128 (1..=241, unsigned) of `xa` in bytes 0..32
    /// and of `xb` in bytes 32..64, in value order.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_quants_avx512(xa: &BlockIQ4NL, xb: &BlockIQ4NL) -> __m512i {
        // SAFETY: AVX2 is implied by the features of this function.
        let (qa, qb) = unsafe { (nibbles_avx2(xa), nibbles_avx2(xb)) };
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
        let lut = levels_avx2(&LEVELS_PLUS_128);
        let lut = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lut), lut);
        _mm512_shuffle_epi8(lut, q)
    }

    /// Sixteen i32 lanes: lanes 0..8 sum to the integer dot product of
    /// the first block of `q` with `ya`, lanes 8..16 of the second with
    /// `yb`, as `sum (k + 128) * y - 128 * sum y` (each lane at most
    /// 4 * 241 * 128 + 128 * 4 * 128 in magnitude: exact).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_lanes_avx512(q: __m512i, ya: &BlockQ8_0, yb: &BlockQ8_0) -> __m512i {
        // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
        // alignment.
        let qy = unsafe {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(ya.qs.as_ptr().cast())),
                _mm256_loadu_si256(yb.qs.as_ptr().cast()),
            )
        };
        let zero = _mm512_setzero_si512();
        let sxy = _mm512_dpbusd_epi32(zero, q, qy);
        let sy = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(1), qy);
        _mm512_sub_epi32(sxy, _mm512_slli_epi32::<7>(sy))
    }

    /// `M` weight rows against `N` activation rows, all of one length,
    /// two blocks per step (an odd last block pairs with itself, its
    /// copy weighted 0): each weight block pair is loaded once for the
    /// `N` activation rows, each activation pair (with its sum and
    /// scales) once for the `M` weight rows. Each of the `M * N` results
    /// is computed by the same operations whatever `M` and `N` are, so
    /// every tile shape is bit-identical to the one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockIQ4NL]; M],
        ys: [&[BlockQ8_0]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[0.0f32; N]; M];
        let mut i = 0;
        while i < nb {
            let pair = i + 1 < nb;
            let ib = if pair { i + 1 } else { i };
            let mut wq = [_mm512_setzero_si512(); M];
            let mut dxa = [0.0f32; M];
            let mut dxb = [0.0f32; M];
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                wq[m] = unsafe { pair_quants_avx512(xa, xb) };
                (dxa[m], dxb[m]) = (f16c(xa.d), f16c(xb.d));
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
                let zero = _mm512_setzero_si512();
                let ones = _mm512_set1_epi8(1);
                let sy = _mm512_slli_epi32::<7>(_mm512_dpbusd_epi32(zero, ones, qy));
                let (dya, dyb) = (f16c(ya.d), f16c(yb.d));
                for m in 0..M {
                    let lanes = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, wq[m], qy), sy);
                    let ia = hsum_i32_256(_mm512_castsi512_si256(lanes));
                    acc[m][n] += (dya * dxa[m]) * ia as f32;
                    if pair {
                        let ib = hsum_i32_256(_mm512_extracti64x4_epi64::<1>(lanes));
                        acc[m][n] += (dyb * dxb[m]) * ib as f32;
                    }
                }
            }
            i += 2;
        }
        acc
    }
}
