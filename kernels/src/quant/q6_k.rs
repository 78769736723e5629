//! Q6_K: 256 values in 16 sub-blocks of 16, `x = d * sc_j * (q - 32)` with
//! 6-bit `q` and signed 8-bit sub-block scales.
//!
//! Layout (`block_q6_K` in ggml-common.h, 210 bytes):
//! `{ uint8_t ql[QK_K/2]; uint8_t qh[QK_K/4]; int8_t scales[QK_K/16];
//! ggml_half d; }`. Per 128 values: 64 bytes of `ql` (low nibbles of values
//! 0..32 and 64..96 in the first 32 bytes, of 32..64 and 96..128 in the
//! next 32) and 32 bytes of `qh` (2 high bits of each of the four groups).

use bytemuck::{Pod, Zeroable};

use super::kquants::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use super::q8_k::BlockQ8K;
use super::{check_len, f16_bytes, f16_le, Format, QuantError, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// The 256 quants minus 32, in value order.
    #[inline(always)]
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, (ql, qh)) in self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .enumerate()
        {
            let a = &mut a[128 * n..128 * n + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        a
    }
}

/// ggml's `dequantize_row_q6_K`: `y = d * sc * q`, evaluated left to right.
pub fn dequantize_row_q6_K(x: &[BlockQ6K], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let q = b.values();
        for (i, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[i / 16] as f32 * q[i] as f32;
        }
    }
    Ok(())
}

/// ggml's `quantize_row_q6_K_ref`: per 16 values `make_qx_quants(16, 32,
/// rmse_type 1)`, the 16 scales quantized to i8 against the largest, then
/// every value re-quantized against the rounded scales.
pub fn quantize_row_q6_K(x: &[f32], y: &mut [BlockQ6K]) -> Result<(), QuantError> {
    check_len(Format::Q6_K, QK_K, y.len(), x.len())?;
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let scale = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
                1,
                None,
            );
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16_bytes(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for (n, (ql, qh)) in
            b.ql.chunks_exact_mut(64)
                .zip(b.qh.chunks_exact_mut(32))
                .enumerate()
        {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                let (q1, q2, q3, q4) = (
                    l[i] as u8,
                    l[i + 32] as u8,
                    l[i + 64] as u8,
                    l[i + 96] as u8,
                );
                ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
    Ok(())
}

/// The eight integer lane sums of one block, as
/// `ggml_vec_dot_q6_K_q8_K_generic` forms them.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockQ6K, y: &BlockQ8K) -> [i32; 8] {
    let a = x.values();
    let mut aux32 = [0i32; 8];
    for (j, (a, q8)) in a.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
        let scale = x.scales[j] as i32;
        for (a, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
            for l in 0..8 {
                aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
            }
        }
    }
    aux32
}

/// ggml's `ggml_vec_dot_q6_K_q8_K_generic`.
fn scalar_row(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    super::kquants::row_of_lanes(x, y, |bx, by| (bx.d() * by.d(), block_isums(bx, by), 0.0))
}

/// The dot product of a Q6_K weight row with a Q8_K activation row: ggml's
/// `ggml_vec_dot_q6_K_q8_K_generic`, or the SIMD variant of this CPU (picked
/// once, see [`super::simd`]).
pub fn vec_dot_q6_K_q8_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    super::simd::vec_dot(x, y)
}

super::impl_block!(BlockQ6K, Q6_K, QK_K, dequantize_row_q6_K, quantize_row_q6_K);

super::simd::impl_simd_dot!(
    BlockQ6K, BlockQ8K, isum: i32,
    scalar: scalar_row, scalar_isum,
    avx2: x86::avx2_row, x86::isum_avx2,
    avx512: x86::avx512_tile, x86::isum_avx512_vnni,
);

fn scalar_isum(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
    block_isums(x, y).iter().sum()
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::unpacked_avx512;

/// SIMD variants of `vec_dot_q6_K_q8_K`, chosen by [`super::simd`].
///
/// Per block they form the scalar code's integer exactly:
/// `sum_j sc_j * sum_{i in j} (q6_i - 32) * q8_i`, as
/// `sum_j sc_j * sum_{i in j} q6_i * q8_i - 32 * sum_j sc_j * bsum_j`
/// (unsigned 6-bit quants times i8 via `maddubs`, at most 2 * 63 * 128 per
/// i16 pair, so it never saturates; then scaled by the signed sub-block
/// scales into i32 lanes by `madd` or VNNI's `vpdpwssd`; the Q8_K group sums
/// give the offset). the `isum` kernel exposes that integer for
/// testing. The f32 part is kept in per-lane partial sums, so the row result
/// differs from the scalar loop by rounding only.
///
/// Tiles, dispatch and their bit-identity: [`super::simd`]. The AVX2 and
/// AVX-512 variants need F16C too (for the f16 scales).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ6K, BlockQ8K};
    use crate::quant::x86_util::{f16c, hsum_f32_256, hsum_f32_512, hsum_i32_256, hsum_i32_512};

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    pub(super) unsafe fn isum_avx2(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
        // SAFETY: the CPU supports AVX2 and F16C (the caller's contract).
        unsafe { hsum_i32_256(lanes_avx2(x, y)) }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    pub(super) unsafe fn isum_avx512_vnni(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
        // SAFETY: the CPU supports AVX-512 F/BW/VL/VNNI and F16C (the caller's contract).
        unsafe {
            let u = unpack_avx512(x);
            hsum_i32_512(lanes_avx512(&u, y))
        }
    }

    /// Eight i32 lanes summing to the block's integer dot product.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_avx2(x: &BlockQ6K, y: &BlockQ8K) -> __m256i {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x30);
        let mut acc = _mm256_setzero_si256();
        for n in 0..2 {
            // SAFETY: 2 x 32 bytes of `ql` and 32 of `qh` from offsets
            // inside the arrays; `loadu` needs no alignment.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * n).cast()),
                    _mm256_loadu_si256(x.ql.as_ptr().add(64 * n + 32).cast()),
                    _mm256_loadu_si256(x.qh.as_ptr().add(32 * n).cast()),
                )
            };
            // Values 128n + 32g .. +32 for g = 0..4, as u8 in 0..64.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2),
                ),
            ];
            for (g, q) in q.into_iter().enumerate() {
                let v = 128 * n + 32 * g;
                // SAFETY: 32 bytes of `y.qs` from an offset inside the
                // array; `loadu` needs no alignment.
                let q8 = unsafe { _mm256_loadu_si256(y.qs.as_ptr().add(v).cast()) };
                let p16 = _mm256_maddubs_epi16(q, q8);
                let sc = _mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm_set1_epi16(x.scales[v / 16] as i16)),
                    _mm_set1_epi16(x.scales[v / 16 + 1] as i16),
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, sc));
            }
        }
        // SAFETY: AVX2 is enabled for this function.
        _mm256_sub_epi32(acc, _mm256_slli_epi32::<5>(unsafe { offset_avx2(x, y) }))
    }

    /// Eight i32 lanes summing to `sum_j sc_j * bsum_j`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn offset_avx2(x: &BlockQ6K, y: &BlockQ8K) -> __m256i {
        // SAFETY: 16 bytes of `scales` and 32 of `bsums`; `loadu` needs
        // no alignment.
        let (sc, bs) = unsafe {
            (
                _mm_loadu_si128(x.scales.as_ptr().cast()),
                _mm256_loadu_si256(y.bsums.as_ptr().cast()),
            )
        };
        _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), bs)
    }

    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn avx2_row(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
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
    /// values `64k..64k+64` as u8 in 0..64 (the order of the activation
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
    unsafe fn unpack_avx512(x: &BlockQ6K) -> Unpacked {
        let m4 = _mm512_set1_epi8(0x0F);
        let m2 = _mm512_set1_epi8(0x30);
        // SAFETY: 16 bytes of `scales`; `loadu` needs no alignment.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) });
        let sc512 = _mm512_castsi256_si512(sc16);
        let mut q = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for n in 0..2 {
            // SAFETY: 64 bytes of `ql` and 32 of `qh` from offsets inside
            // the arrays; `loadu` needs no alignment.
            let (ql, qh) = unsafe {
                (
                    _mm512_loadu_si512(x.ql.as_ptr().add(64 * n).cast()),
                    _mm256_loadu_si256(x.qh.as_ptr().add(32 * n).cast()),
                )
            };
            // Bytes 0..32: the high bits of values 0..32 and 64..96 at
            // bits 0-1 and 4-5; bytes 32..64: of values 32..64, 96..128.
            let qh =
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), _mm256_srli_epi16::<2>(qh));
            q[2 * n] = _mm512_or_si512(
                _mm512_and_si512(ql, m4),
                _mm512_and_si512(_mm512_slli_epi16::<4>(qh), m2),
            );
            q[2 * n + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
                _mm512_and_si512(qh, m2),
            );
            for h in 0..2 {
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

    /// Everything [`avx512_tile`] derives from one weight block before
    /// it reads activations: the quants and scales of [`unpack_avx512`]
    /// and the block scale as f32 (for `crate::packed`, which computes
    /// each output with the tile's operations from these).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(crate) unsafe fn unpacked_avx512(
        x: &BlockQ6K,
    ) -> ([__m512i; 4], [__m512i; 4], __m256i, f32) {
        // SAFETY: the features are enabled for this function.
        let u = unsafe { unpack_avx512(x) };
        (u.q, u.sc, u.sc16, f16c(x.d))
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
        _mm512_sub_epi32(acc, _mm512_slli_epi32::<5>(off))
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
        xs: [&[BlockQ6K]; M],
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
