//! The x86 kernels of the 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL), written once: a format says how its 32 quants unpack to bytes
//! ([`Block32`]) and how the scalar code adds one block's integer sum into
//! the row; the AVX2 tile, the AVX-512 VNNI tile and the integer sums are
//! derived here.
//!
//! Integer part, exact for every i8 activation (-128 included): AVX2
//! `vpmaddubsw`s the unsigned 4- and 5-bit quants with the activation
//! bytes and takes off the offset (exact in i16), and widens the 8-bit
//! ones to i16 for `vpmaddwd`; AVX-512 takes two blocks per `vpdpbusd` on the unsigned quants
//! (`q + OFFSET`), started from `-OFFSET * sum y`, so each i32 lane holds
//! the exact signed sum (at most `4 * 255 * 128 + 128 * 4 * 128`).
//!
//! f32 part: [`Accumulate::Scalar`] formats add each block into an f32 in
//! the scalar code's order, so every variant is bit-identical to the
//! scalar reference; [`Accumulate::Vector`] formats keep per-lane partial
//! sums (an FMA per block pair), which round differently. Either way each
//! output of a tile is computed by the same operations whatever the tile's
//! shape, so every tile is bit-identical to the one-row kernel.

use std::arch::x86_64::*;

use super::x86_util::{
    bytes_from_bits_32, f16c, halves_f16, hsum_f32_256, hsum_f32_512, hsum_i32_256,
};
use super::{BlockQ8_0, BlockQ8_1};

/// How a format adds its blocks into a row's f32 result.
pub(crate) enum Accumulate {
    /// One f32, block after block, by [`Block32::step`]: the scalar
    /// reference's order.
    Scalar,
    /// Per-lane partial sums of `d_x d_y * lanes`, reduced at the end.
    Vector,
}

/// The activation side: Q8_0 or Q8_1 (which adds `s = d * sum q`).
pub(crate) trait Act32 {
    fn qs(&self) -> &[i8; 32];
    fn d(&self) -> [u8; 2];
    /// Q8_1's `s`; Q8_0 has none (read only by formats with a min).
    fn s(&self) -> [u8; 2];
}

impl Act32 for BlockQ8_0 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    fn d(&self) -> [u8; 2] {
        self.d
    }
    fn s(&self) -> [u8; 2] {
        [0; 2]
    }
}

impl Act32 for BlockQ8_1 {
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    fn d(&self) -> [u8; 2] {
        self.d
    }
    fn s(&self) -> [u8; 2] {
        self.s
    }
}

/// A 32-value weight block with the kernels of this module.
pub(crate) trait Block32: Sized {
    type Act: Act32;
    /// What the unsigned quants exceed the signed ones by (0 where the
    /// quants are unsigned already and a min is added instead).
    const OFFSET: u8;
    const ACCUMULATE: Accumulate;

    /// The f16 scale `d`, and the min `m` of the formats that have one.
    fn d(&self) -> [u8; 2];
    fn m(&self) -> [u8; 2] {
        [0; 2]
    }
    /// The scalar code's step for one block: `acc` plus the block's
    /// contribution from its integer sum and the scales (`dx`, `mx` of the
    /// weight, `dy`, `sy` of the activation), in the scalar order.
    fn step(acc: f32, isum: i32, dx: f32, mx: f32, dy: f32, sy: f32) -> f32;

    /// The 32 quants plus `OFFSET`, as u8 in value order.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    unsafe fn quants_u8(&self) -> __m256i;

    /// The 32 signed quants, as i8 in value order.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quants_i8(&self) -> __m256i {
        // SAFETY: AVX2 is enabled for this function.
        let u = unsafe { self.quants_u8() };
        _mm256_sub_epi8(u, _mm256_set1_epi8(Self::OFFSET as i8))
    }

    /// The unsigned quants of `a` (bytes 0..32) and `b` (32..64).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pair_u8(a: &Self, b: &Self) -> __m512i {
        // SAFETY: AVX2 is implied by the features of this function.
        let (qa, qb) = unsafe { (a.quants_u8(), b.quants_u8()) };
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb)
    }
}

/// 16 bytes of nibbles as 32 u8 values in value order (low nibbles, then
/// high nibbles): how every 4-bit 32-value format stores its quants.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn nibbles_avx2(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; `loadu` needs no alignment.
    let qs = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(qs, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
}

/// The 5-bit quants of a Q5_0/Q5_1 block as u8 in value order: the
/// nibbles of `qs`, bit 4 from bit `i` of `qh`.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn five_bit_avx2(qs: &[u8; 16], qh: u32) -> __m256i {
    // SAFETY: AVX2 is enabled for this function.
    let q = unsafe { nibbles_avx2(qs) };
    _mm256_or_si256(
        q,
        _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10)),
    )
}

/// [`five_bit_avx2`] of two blocks (bytes 0..32 and 32..64), the fifth
/// bits by one masked add.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn five_bit_pair(a: (&[u8; 16], u32), b: (&[u8; 16], u32)) -> __m512i {
    // SAFETY: AVX2 is implied by the features of this function.
    let (qa, qb) = unsafe { (nibbles_avx2(a.0), nibbles_avx2(b.0)) };
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
    let bits = a.1 as u64 | (b.1 as u64) << 32;
    _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(0x10))
}

/// Whether [`Block32::quants_u8`] stays below 64, so that `vpmaddubsw`'s
/// i16 pair sums (`u0 y0 + u1 y1`, at most `2 * 63 * 128`) cannot
/// saturate: the 4- and 5-bit formats. The others (Q8_0, IQ4_NL, whose
/// unsigned quants reach 255) widen both sides to i16 instead.
const fn narrow<W: Block32>() -> bool {
    W::OFFSET < 64
}

/// A weight block unpacked once for every activation block it meets:
/// narrow formats keep their unsigned quants (the second half unused),
/// wide ones their signed quants widened to two halves of i16.
#[derive(Clone, Copy)]
struct WeightAvx2(__m256i, __m256i);

/// An activation block unpacked once for every weight block it meets:
/// for narrow formats its bytes and `OFFSET * (y0 + y1)` per byte pair
/// (what the unsigned quants' pair sums exceed the signed ones by), for
/// wide ones its bytes widened to two halves of i16.
#[derive(Clone, Copy)]
struct ActAvx2(__m256i, __m256i);

/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn weight_avx2<W: Block32>(x: &W) -> WeightAvx2 {
    if narrow::<W>() {
        // SAFETY: AVX2 is enabled for this function.
        WeightAvx2(unsafe { x.quants_u8() }, _mm256_setzero_si256())
    } else {
        // SAFETY: as above.
        let q = unsafe { x.quants_i8() };
        WeightAvx2(
            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(q)),
        )
    }
}

/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn act_avx2<W: Block32>(y: &W::Act) -> ActAvx2 {
    // SAFETY: `qs` is 32 readable bytes and `loadu` needs no alignment.
    let qy = unsafe { _mm256_loadu_si256(y.qs().as_ptr().cast()) };
    if narrow::<W>() {
        let corr = if W::OFFSET == 0 {
            _mm256_setzero_si256()
        } else {
            _mm256_maddubs_epi16(_mm256_set1_epi8(W::OFFSET as i8), qy)
        };
        ActAvx2(qy, corr)
    } else {
        ActAvx2(
            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy)),
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy)),
        )
    }
}

/// Eight i32 lanes summing to the integer dot product of a weight and an
/// activation block, exactly: narrow formats by `vpmaddubsw` on the
/// unsigned quants less the activation's offset pair sums (both exact in
/// i16, see [`narrow`]), wide ones by `vpmaddwd` on the widened halves.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes_avx2<W: Block32>(w: WeightAvx2, a: ActAvx2) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    if narrow::<W>() {
        let mut p = _mm256_maddubs_epi16(w.0, a.0);
        if W::OFFSET != 0 {
            p = _mm256_sub_epi16(p, a.1);
        }
        _mm256_madd_epi16(p, ones)
    } else {
        _mm256_add_epi32(_mm256_madd_epi16(w.0, a.0), _mm256_madd_epi16(w.1, a.1))
    }
}

/// The lane sums of four vectors at once.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum4_i32_256(v: [__m256i; 4]) -> [i32; 4] {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    let mut out = [0i32; 4];
    // SAFETY: `out` is 16 writable bytes; `storeu` needs no alignment.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), s) };
    out
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
pub(crate) unsafe fn isum_avx2<W: Block32>(x: &W, y: &W::Act) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { hsum_i32_256(lanes_avx2::<W>(weight_avx2(x), act_avx2::<W>(y))) }
}

/// # Safety
/// The CPU must support AVX2 and F16C.
pub(crate) unsafe fn avx2_row<W: Block32>(x: &[W], y: &[W::Act]) -> f32 {
    // SAFETY: the caller's contract is the tile's.
    unsafe { avx2_tile::<W, 1, 1>([x], [y])[0][0] }
}

/// `M` weight rows against `N` activation rows, all of one length, on
/// AVX2: each weight block is unpacked once for the `N` activation rows,
/// each activation block (widened, or with its offset sums) once for the
/// `M` weight rows; per output and block, two or three integer ops and
/// the format's f32 step. The integer sums are exact whatever the shape
/// (the horizontal sums are taken four at a time where the tile allows),
/// and each output's f32 operations are those of the one-row case, so
/// every shape is bit-identical to the one-row kernel.
///
/// # Safety
/// The CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn avx2_tile<W: Block32, const M: usize, const N: usize>(
    xs: [&[W]; M],
    ys: [&[W::Act]; N],
) -> [[f32; N]; M] {
    let nb = xs[0].len();
    let zero = WeightAvx2(_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut sum = [[0.0f32; N]; M];
    let mut acc = [[_mm256_setzero_ps(); N]; M];
    for i in 0..nb {
        let mut w = [zero; M];
        let mut dx = [0.0f32; M];
        let mut mx = [0.0f32; M];
        for m in 0..M {
            // SAFETY: AVX2 is enabled for this function.
            w[m] = unsafe { weight_avx2(&xs[m][i]) };
            dx[m] = f16c(xs[m][i].d());
            mx[m] = f16c(xs[m][i].m());
        }
        match W::ACCUMULATE {
            Accumulate::Scalar => {
                let mut lanes = [[_mm256_setzero_si256(); N]; M];
                let mut dy = [0.0f32; N];
                let mut sy = [0.0f32; N];
                for n in 0..N {
                    let y = &ys[n][i];
                    // SAFETY: as above.
                    let a = unsafe { act_avx2::<W>(y) };
                    (dy[n], sy[n]) = (f16c(y.d()), f16c(y.s()));
                    for m in 0..M {
                        lanes[m][n] = lanes_avx2::<W>(w[m], a);
                    }
                }
                let isum = hsums(lanes);
                for m in 0..M {
                    for n in 0..N {
                        let s = &mut sum[m][n];
                        *s = W::step(*s, isum[m][n], dx[m], mx[m], dy[n], sy[n]);
                    }
                }
            }
            Accumulate::Vector => {
                for n in 0..N {
                    let y = &ys[n][i];
                    // SAFETY: as above.
                    let a = unsafe { act_avx2::<W>(y) };
                    let dy = f16c(y.d());
                    for m in 0..M {
                        let d = _mm256_set1_ps(dx[m] * dy);
                        let l = _mm256_cvtepi32_ps(lanes_avx2::<W>(w[m], a));
                        acc[m][n] = _mm256_add_ps(acc[m][n], _mm256_mul_ps(d, l));
                    }
                }
            }
        }
    }
    if let Accumulate::Vector = W::ACCUMULATE {
        for m in 0..M {
            for n in 0..N {
                sum[m][n] = hsum_f32_256(acc[m][n]);
            }
        }
    }
    sum
}

/// The lane sums of an `M x N` tile of lane vectors, four at a time.
#[inline]
#[target_feature(enable = "avx2")]
fn hsums<const M: usize, const N: usize>(lanes: [[__m256i; N]; M]) -> [[i32; N]; M] {
    let mut out = [[0i32; N]; M];
    let at = |k: usize| (k / N, k % N);
    let mut k = 0;
    while k + 4 <= M * N {
        let v = [0, 1, 2, 3].map(|j| {
            let (m, n) = at(k + j);
            lanes[m][n]
        });
        for (j, s) in hsum4_i32_256(v).into_iter().enumerate() {
            let (m, n) = at(k + j);
            out[m][n] = s;
        }
        k += 4;
    }
    while k < M * N {
        let (m, n) = at(k);
        out[m][n] = hsum_i32_256(lanes[m][n]);
        k += 1;
    }
    out
}

/// The activation bytes of `a` (0..32) and `b` (32..64).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn pair_act<A: Act32>(a: &A, b: &A) -> __m512i {
    // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no alignment.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(a.qs().as_ptr().cast())),
            _mm256_loadu_si256(b.qs().as_ptr().cast()),
        )
    }
}

/// `-OFFSET * (sum of each 4 activation bytes)`: the lanes `vpdpbusd`
/// starts from, so that it ends at the signed sum.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn offset_lanes<W: Block32>(qy: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    if W::OFFSET == 0 {
        return zero;
    }
    // `OFFSET as i8` read as u8 by `vpdpbusd` is `OFFSET`.
    let c = _mm512_set1_epi8(W::OFFSET as i8);
    _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c, qy))
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn isum_avx512<W: Block32>(x: &W, y: &W::Act) -> i32 {
    // SAFETY: the features are enabled for this function.
    let (wq, qy) = unsafe { (W::pair_u8(x, x), pair_act(y, y)) };
    // SAFETY: as above.
    let lanes = _mm512_dpbusd_epi32(unsafe { offset_lanes::<W>(qy) }, wq, qy);
    hsum_i32_256(_mm512_castsi512_si256(lanes))
}

/// `M` weight rows against `N` activation rows, all of one length, two
/// blocks per step (an odd last block pairs with itself, its copy
/// weighted 0): each weight block pair is unpacked once for the `N`
/// activation rows, each activation pair (with its offset lanes and
/// scales) once for the `M` weight rows; per output and step, one
/// `vpdpbusd` and the format's f32 step.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn avx512_tile<W: Block32, const M: usize, const N: usize>(
    xs: [&[W]; M],
    ys: [&[W::Act]; N],
) -> [[f32; N]; M] {
    let nb = xs[0].len();
    let mut sum = [[0.0f32; N]; M];
    let mut acc = [[_mm512_setzero_ps(); N]; M];
    let mut i = 0;
    while i < nb {
        let pair = i + 1 < nb;
        let ib = if pair { i + 1 } else { i };
        let mut wq = [_mm512_setzero_si512(); M];
        let mut dx = [[0.0f32; 2]; M];
        let mut mx = [[0.0f32; 2]; M];
        let mut dxv = [_mm512_setzero_ps(); M];
        for m in 0..M {
            let (xa, xb) = (&xs[m][i], &xs[m][ib]);
            // SAFETY: the features are enabled for this function.
            wq[m] = unsafe { W::pair_u8(xa, xb) };
            match W::ACCUMULATE {
                Accumulate::Scalar => {
                    dx[m] = [f16c(xa.d()), f16c(xb.d())];
                    mx[m] = [f16c(xa.m()), f16c(xb.m())];
                }
                Accumulate::Vector => {
                    dxv[m] = halves_f16(xa.d(), if pair { xb.d() } else { [0; 2] });
                }
            }
        }
        for n in 0..N {
            let (ya, yb) = (&ys[n][i], &ys[n][ib]);
            // SAFETY: the features are enabled for this function.
            let qy = unsafe { pair_act(ya, yb) };
            // SAFETY: as above.
            let start = unsafe { offset_lanes::<W>(qy) };
            match W::ACCUMULATE {
                Accumulate::Scalar => {
                    let (dya, dyb) = (f16c(ya.d()), f16c(yb.d()));
                    let (sya, syb) = (f16c(ya.s()), f16c(yb.s()));
                    for m in 0..M {
                        let lanes = _mm512_dpbusd_epi32(start, wq[m], qy);
                        let ia = hsum_i32_256(_mm512_castsi512_si256(lanes));
                        let s = &mut sum[m][n];
                        *s = W::step(*s, ia, dx[m][0], mx[m][0], dya, sya);
                        if pair {
                            let ib = hsum_i32_256(_mm512_extracti64x4_epi64::<1>(lanes));
                            *s = W::step(*s, ib, dx[m][1], mx[m][1], dyb, syb);
                        }
                    }
                }
                Accumulate::Vector => {
                    let dy = halves_f16(ya.d(), yb.d());
                    for m in 0..M {
                        let lanes = _mm512_dpbusd_epi32(start, wq[m], qy);
                        let d = _mm512_mul_ps(dxv[m], dy);
                        acc[m][n] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[m][n]);
                    }
                }
            }
        }
        i += 2;
    }
    if let Accumulate::Vector = W::ACCUMULATE {
        for m in 0..M {
            for n in 0..N {
                sum[m][n] = hsum_f32_512(acc[m][n]);
            }
        }
    }
    sum
}
