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

super::simd::impl_simd_dot!(block32: BlockIQ4NL, BlockQ8_0, scalar: scalar_row, block_isum);

/// SIMD variants of `vec_dot_iq4_nl_q8_0`: those of
/// [`super::block32_x86`], the 4-bit indices looked up in the level table
/// with `pshufb` (the levels plus 128 for the unsigned `vpdpbusd` operand),
/// each block added in the scalar order: bit-identical to the scalar
/// reference.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockIQ4NL, BlockQ8_0, KVALUES_IQ4NL};
    use crate::quant::block32_x86::{nibbles_avx2, Accumulate, Block32};

    /// `KVALUES_IQ4NL[i] + 128` as u8 bits (1..=241), for `vpdpbusd`
    /// (IQ4_XS uses it too).
    pub(crate) const LEVELS_PLUS_128: [i8; 16] = {
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

    impl Block32 for BlockIQ4NL {
        type Act = BlockQ8_0;
        const OFFSET: u8 = 128;
        const ACCUMULATE: Accumulate = Accumulate::Scalar;
        fn d(&self) -> [u8; 2] {
            self.d
        }
        #[inline(always)]
        fn step(acc: f32, isum: i32, dx: f32, _: f32, dy: f32, _: f32) -> f32 {
            acc + (dy * dx) * isum as f32
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_u8(&self) -> __m256i {
            // SAFETY: AVX2 is enabled for this function.
            let q = unsafe { nibbles_avx2(&self.qs) };
            _mm256_shuffle_epi8(levels_avx2(&LEVELS_PLUS_128), q)
        }
        /// The signed levels (-127..=113) directly.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn quants_i8(&self) -> __m256i {
            // SAFETY: AVX2 is enabled for this function.
            let q = unsafe { nibbles_avx2(&self.qs) };
            _mm256_shuffle_epi8(levels_avx2(&KVALUES_IQ4NL), q)
        }
        /// Both blocks' lookups in one 512-bit `pshufb`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn pair_u8(a: &Self, b: &Self) -> __m512i {
            // SAFETY: AVX2 is implied by the features of this function.
            let (qa, qb) = unsafe { (nibbles_avx2(&a.qs), nibbles_avx2(&b.qs)) };
            let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
            let lut = levels_avx2(&LEVELS_PLUS_128);
            let lut = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lut), lut);
            _mm512_shuffle_epi8(lut, q)
        }
    }
}
