//! Q3_K: 256 values in 16 sub-blocks of 16, `x = d * (sc_j - 32) * q` with
//! 3-bit signed `q` in `[-4, 3]` and 6-bit sub-block scales.
//!
//! Layout (`block_q3_K` in ggml-common.h, 110 bytes):
//! `{ uint8_t hmask[QK_K/8]; uint8_t qs[QK_K/4]; uint8_t scales[12];
//! ggml_half d; }`. `qs` holds the low 2 bits (per 128 values, 32 bytes with
//! four 2-bit fields), bit `k` of `hmask[l]` is the high bit of value
//! `32*k + l` and is *set* for the non-negative half (`q = low - 4` when it
//! is clear). Scale `j` has its low nibble in byte `j` (j < 8) or the high
//! nibble of byte `j - 8`, and its top 2 bits in byte `8 + j % 4` at bit
//! `2 * (j / 4)`.

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_q3_quants, nearest_int};
use super::q8_k::BlockQ8K;
use super::{check_len, f16_bytes, f16_le, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bits of the quants.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; 12],
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

impl BlockQ3K {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// Sub-block scale `j` (0..16), 6 bits, before subtracting 32.
    #[inline(always)]
    pub fn scale(&self, j: usize) -> u8 {
        let low = if j < 8 {
            self.scales[j] & 0xF
        } else {
            self.scales[j - 8] >> 4
        };
        low | (((self.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
    }

    /// The 256 quants in `[-4, 3]`, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, q3) in self.qs.chunks_exact(32).enumerate() {
            for k in 0..4 {
                let m = 1u8 << (4 * n + k);
                let shift = 2 * k;
                for l in 0..32 {
                    let low = ((q3[l] >> shift) & 3) as i8;
                    let high = if self.hmask[l] & m != 0 { 0 } else { 4 };
                    a[128 * n + 32 * k + l] = low - high;
                }
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q3_K`: `y = (d * (sc - 32)) * q`.
pub fn dequantize_row_q3_K(x: &[BlockQ3K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q3_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d();
        let q = b.values();
        for (j, (q, y)) in q.chunks_exact(16).zip(y.chunks_exact_mut(16)).enumerate() {
            let dl = d_all * (b.scale(j) as i32 - 32) as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q3_K_ref`: per 16 values `make_q3_quants(16, 4,
/// do_rmse)`, the 16 scales quantized to 6 bits against the one of largest
/// magnitude, then every value re-quantized against the rounded scales.
pub fn quantize_row_q3_K(x: &[f32], y: &mut [BlockQ3K]) -> Result<(), QuantError> {
    check_len(Format::Q3_K, QK_K, y.len(), x.len())?;
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(
                4,
                &x[16 * j..16 * j + 16],
                &mut l[16 * j..16 * j + 16],
                true,
            );
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }

        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..QK_K / 16 {
                // ggml stores nearest_int's int in an int8_t, then clamps.
                let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                if j < 8 {
                    b.scales[j] = q as u8 & 0xF;
                } else {
                    b.scales[j - 8] |= (q as u8 & 0xF) << 4;
                }
                b.scales[j % 4 + 8] |= ((q >> 4) as u8) << (2 * (j / 4));
            }
            b.d = f16_bytes(1.0 / iscale);
        } else {
            b.d = f16_bytes(0.0);
        }

        for j in 0..QK_K / 16 {
            let sc = b.scale(j) as i32 - 32;
            let d = b.d() * sc as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }

        // The high bit of the first 32 values goes to bit 0 of hmask, of the
        // next 32 to bit 1, and so on.
        b.hmask = [0; QK_K / 8];
        for (j, l) in l.iter_mut().enumerate() {
            if *l > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *l -= 4;
            }
        }
        for (n, qs) in b.qs.chunks_exact_mut(32).enumerate() {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                qs[i] = (l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6)) as u8;
            }
        }
    }
    Ok(())
}

/// The eight lane sums of one block's integer dot product, as
/// `ggml_vec_dot_q3_K_q8_K_generic` forms them:
/// `aux32[l] = sum_j (sc_j - 32) * sum_{i = l mod 8} q3 * q8`.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ3K, y: &BlockQ8K) -> [i32; 8] {
    let a = x.values();
    let mut aux32 = [0i32; 8];
    for (j, (a, q8)) in a.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
        let scale = x.scale(j) as i32 - 32;
        for (a, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
            for l in 0..8 {
                aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
            }
        }
    }
    aux32
}

/// ggml's `ggml_vec_dot_q3_K_q8_K_generic`.
fn scalar_row(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| (bx.d() * by.d(), block_isums(bx, by), 0.0))
}

/// The dot product of a Q3_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q3_K_q8_K_generic`.
///
/// Dispatches to the best [`super::simd`] variant of this CPU; the
/// scalar reference is `simd::dot_kernels(Isa::Scalar)`.
pub fn vec_dot_q3_K_q8_K(x: &[BlockQ3K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ3K, Q3_K, QK_K, dequantize_row_q3_K, quantize_row_q3_K);

super::simd::impl_simd_dot!(
    BlockQ3K, BlockQ8K, isum: i32,
    scalar: scalar_row, scalar_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

fn scalar_isum(x: &BlockQ3K, y: &BlockQ8K) -> i32 {
    block_isums(x, y).iter().sum()
}

/// SIMD variants of `vec_dot_q3_K_q8_K` (tested, not dispatched yet: see
/// that function).
///
/// Per block they form the scalar code's integer exactly:
/// `sum_j sc_j * sum_{i in j} (q3_i - 4) * q8_i` (with `sc_j` the 6-bit
/// scale minus 32), as
/// `sum_j sc_j * sum_{i in j} q3_i * q8_i - 4 * sum_j sc_j * bsum_j`
/// (unsigned 3-bit quants, the low two bits from `qs` and the third from
/// `hmask`, times i8 via `maddubs`, at most 2 * 7 * 128 per i16 pair, so it
/// never saturates; then scaled by the signed sub-block scales into i32
/// lanes by `madd` or VNNI's `vpdpwssd`; the Q8_K group sums give the
/// offset). the `isum` kernel exposes that integer for
/// testing. The f32 part is kept in per-lane partial sums, so the row result
/// differs from the scalar loop by rounding only.
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ3K, BlockQ8K};
    use crate::quant::x86_util::{f16c, hsum_f32_256, hsum_f32_512, hsum_i32_256, hsum_i32_512};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ3K, y: &BlockQ8K) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ3K, y: &BlockQ8K) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
        unsafe {
            let u = unpack_avx512(x);
            hsum_i32_512(lanes_avx512(&u, y))
        }
    }

    /// The 16 sub-block scales minus 32 (in -32..32).
    #[inline(always)]
    fn scales_i8(x: &BlockQ3K) -> [i8; 16] {
        std::array::from_fn(|j| x.scale(j) as i8 - 32)
    }

    /// Values `128n + 32g .. +32` as u8 in 0..8: bits `2g, 2g+1` of the
    /// `qs` bytes `q2` (of `qs[32n..32n+32]`) and, as bit 2, bit `4n + g`
    /// of the `hmask` bytes `hm`. A 16-bit shift by at most 7 brings bit
    /// `s` of each byte to bit 0 of the same byte.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn group_avx2(q2: __m256i, hm: __m256i, n: usize, g: usize) -> __m256i {
        let lo = _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * g as i32));
        let hi = _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * n + g) as i32));
        _mm256_or_si256(
            _mm256_and_si256(lo, _mm256_set1_epi8(3)),
            _mm256_slli_epi16::<2>(_mm256_and_si256(hi, _mm256_set1_epi8(1))),
        )
    }

    /// Eight i32 lanes summing to the block's integer dot product.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(x: &BlockQ3K, y: &BlockQ8K) -> __m256i {
        let scales = scales_i8(x);
        let mut acc = _mm256_setzero_si256();
        // SAFETY: `hmask` is 32 readable bytes; `loadu` needs no
        // alignment.
        let hm = unsafe { _mm256_loadu_si256(x.hmask.as_ptr().cast()) };
        for n in 0..2 {
            // SAFETY: 32 bytes of `qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast()) };
            for g in 0..4 {
                let q = group_avx2(q2, hm, n, g);
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
        // SAFETY: AVX2 is enabled for this function.
        let off = unsafe { offset_avx2(&scales, y) };
        _mm256_sub_epi32(acc, _mm256_slli_epi32::<2>(off))
    }

    /// Eight i32 lanes summing to `sum_j sc_j * bsum_j`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn offset_avx2(scales: &[i8; 16], y: &BlockQ8K) -> __m256i {
        // SAFETY: 16 bytes of `scales` and 32 of `bsums`; `loadu` needs
        // no alignment.
        let (sc, bs) = unsafe {
            (
                _mm_loadu_si128(scales.as_ptr().cast()),
                _mm256_loadu_si256(y.bsums.as_ptr().cast()),
            )
        };
        _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), bs)
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (bx, by) in x.iter().zip(y) {
            let d = _mm256_set1_ps(f16c(bx.d) * by.d());
            // SAFETY: AVX2 is enabled for this function.
            let lanes = unsafe { lanes_avx2(bx, by) };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lanes)));
        }
        hsum_f32_256(acc)
    }

    /// One weight block unpacked for [`lanes_avx512`]: `q[k]` holds
    /// values `64k..64k+64` as u8 in 0..8 (the order of the activation
    /// bytes), `sc[k]` their four sub-block scales as i16, one per
    /// 128-bit lane, and `sc16` all sixteen scales as i16.
    struct Unpacked {
        q: [__m512i; 4],
        sc: [__m512i; 4],
        sc16: __m256i,
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn unpack_avx512(x: &BlockQ3K) -> Unpacked {
        let scales = scales_i8(x);
        // SAFETY: 16 bytes of `scales`; `loadu` needs no alignment.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
        let sc512 = _mm512_castsi256_si512(sc16);
        // SAFETY: `hmask` is 32 readable bytes; `loadu` needs no
        // alignment.
        let hm = unsafe { _mm256_loadu_si256(x.hmask.as_ptr().cast()) };
        let mut q = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for n in 0..2 {
            // SAFETY: 32 bytes of `qs` from an offset inside the array;
            // `loadu` needs no alignment.
            let q2 = unsafe { _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast()) };
            for h in 0..2 {
                let lo = group_avx2(q2, hm, n, 2 * h);
                let hi = group_avx2(q2, hm, n, 2 * h + 1);
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
        Unpacked { q, sc, sc16 }
    }

    /// Sixteen i32 lanes summing to the block's integer dot product.
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
        // SAFETY: 32 bytes of `bsums`; `loadu` needs no alignment.
        let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
        let off = _mm512_zextsi256_si512(_mm256_madd_epi16(u.sc16, bs));
        _mm512_sub_epi32(acc, _mm512_slli_epi32::<2>(off))
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
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[BlockQ3K]; M],
        ys: [&[BlockQ8K]; N],
    ) -> [[f32; N]; M] {
        let nb = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        for i in 0..nb {
            // SAFETY: the features are enabled for this function.
            let u: [Unpacked; M] = std::array::from_fn(|m| unsafe { unpack_avx512(&xs[m][i]) });
            let dx: [f32; M] = std::array::from_fn(|m| f16c(xs[m][i].d));
            for n in 0..N {
                let by = &ys[n][i];
                let dy = by.d();
                for m in 0..M {
                    let d = _mm512_set1_ps(dx[m] * dy);
                    // SAFETY: the features are enabled for this function.
                    let lanes = unsafe { lanes_avx512(&u[m], by) };
                    let v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes));
                    acc[m][n] = _mm512_add_ps(acc[m][n], v);
                }
            }
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
