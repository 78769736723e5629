//! Unquantized rows: F32, F16 and BF16, stored little-endian (one value per
//! "block", `blck_size = 1` in ggml.c's `type_traits`).
//!
//! Rows are taken as raw bytes, decoded with `from_le_bytes`, so they can sit
//! at any offset of a memory-mapped file. The dot products accumulate in f64
//! like ggml's scalar `ggml_vec_dot_f32/f16/bf16` (`ggml_float` sums of f32
//! products).

use half::{bf16, f16};

use super::{Format, Kernels, QuantError};

/// f16 to f32, exact (`GGML_FP16_TO_FP32`).
#[inline(always)]
pub fn f16_to_f32(h: f16) -> f32 {
    h.to_f32()
}

/// f32 to f16, rounding to nearest even (`GGML_FP32_TO_FP16`).
#[inline(always)]
pub fn f32_to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// bf16 to f32, exact (`GGML_BF16_TO_FP32`: the bits shifted up by 16).
#[inline(always)]
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}

/// f32 to bf16 as ggml's `ggml_compute_fp32_to_bf16` (ggml-impl.h): NaN is
/// kept and made quiet, everything else rounds to nearest even.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> bf16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

fn check_bytes(
    format: Format,
    width: usize,
    bytes: usize,
    values: usize,
) -> Result<(), QuantError> {
    if !bytes.is_multiple_of(width) {
        return Err(QuantError::PartialBlock {
            format,
            len: bytes,
            type_size: width,
        });
    }
    if bytes / width != values {
        return Err(QuantError::LengthMismatch {
            format,
            expected: bytes / width,
            got: values,
        });
    }
    Ok(())
}

/// Decode a little-endian f32 row.
pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_bytes(Format::F32, 4, src.len(), dst.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// Encode an f32 row little-endian.
pub fn quantize_row_f32(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_bytes(Format::F32, 4, dst.len(), src.len())?;
    for (b, x) in dst.chunks_exact_mut(4).zip(src) {
        b.copy_from_slice(&x.to_le_bytes());
    }
    Ok(())
}

/// Decode a little-endian f16 row (`ggml_fp16_to_fp32_row`).
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_bytes(Format::F16, 2, src.len(), dst.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    }
    Ok(())
}

/// Encode an f32 row as little-endian f16 (`ggml_fp32_to_fp16_row`).
pub fn quantize_row_f16(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_bytes(Format::F16, 2, dst.len(), src.len())?;
    for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
        b.copy_from_slice(&f32_to_f16(x).to_bits().to_le_bytes());
    }
    Ok(())
}

/// Decode a little-endian bf16 row (`ggml_bf16_to_fp32_row`).
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_bytes(Format::BF16, 2, src.len(), dst.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = bf16_to_f32(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])));
    }
    Ok(())
}

/// Encode an f32 row as little-endian bf16 (`ggml_fp32_to_bf16_row_ref`).
pub fn quantize_row_bf16(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_bytes(Format::BF16, 2, dst.len(), src.len())?;
    for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
        b.copy_from_slice(&f32_to_bf16(x).to_bits().to_le_bytes());
    }
    Ok(())
}

fn check_dot(format: Format, width: usize, x: &[u8], y: &[u8]) -> Result<(), QuantError> {
    check_bytes(format, width, x.len(), x.len() / width)?;
    check_bytes(format, width, y.len(), x.len() / width)
}

/// ggml's `ggml_vec_dot_f32` (scalar path): f64 sum of f32 products.
pub fn vec_dot_f32_f32(x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    check_dot(Format::F32, 4, x, y)?;
    let mut sumf = 0.0f64;
    for (a, b) in x.chunks_exact(4).zip(y.chunks_exact(4)) {
        let a = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
        let b = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        sumf += (a * b) as f64;
    }
    Ok(sumf as f32)
}

/// ggml's `ggml_vec_dot_f16` (scalar path) over rows already checked to be
/// whole values of one length. The f32 product of two f16 values is exact,
/// so only the f64 sum rounds.
fn scalar_f16(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0.0f64;
    for (a, b) in x.chunks_exact(2).zip(y.chunks_exact(2)) {
        let a = f16::from_bits(u16::from_le_bytes([a[0], a[1]])).to_f32();
        let b = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        sumf += (a * b) as f64;
    }
    sumf as f32
}

/// The dot product of two f16 rows: ggml's `ggml_vec_dot_f16` (scalar
/// path), or the SIMD variant of this CPU (see [`simd`]).
pub fn vec_dot_f16_f16(x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    check_dot(Format::F16, 2, x, y)?;
    Ok(simd::kernel_f16(crate::Isa::detect())(x, y))
}

/// ggml's `ggml_vec_dot_bf16` (scalar path) over checked rows; bf16
/// products are exact in f32.
fn scalar_bf16(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0.0f64;
    for (a, b) in x.chunks_exact(2).zip(y.chunks_exact(2)) {
        let a = bf16_to_f32(bf16::from_bits(u16::from_le_bytes([a[0], a[1]])));
        let b = bf16_to_f32(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])));
        sumf += (a * b) as f64;
    }
    sumf as f32
}

/// The dot product of two bf16 rows: ggml's `ggml_vec_dot_bf16` (scalar
/// path), or the SIMD variant of this CPU (see [`simd`]).
pub fn vec_dot_bf16_bf16(x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    check_dot(Format::BF16, 2, x, y)?;
    Ok(simd::kernel_bf16(crate::Isa::detect())(x, y))
}

pub(super) static KERNELS_F32: Kernels = Kernels {
    format: Format::F32,
    dequantize_row: dequantize_row_f32,
    quantize_row: Some(quantize_row_f32),
    vec_dot: Some(vec_dot_f32_f32),
    vec_dot_type: Format::F32,
};

pub(super) static KERNELS_F16: Kernels = Kernels {
    format: Format::F16,
    dequantize_row: dequantize_row_f16,
    quantize_row: Some(quantize_row_f16),
    vec_dot: Some(vec_dot_f16_f16),
    vec_dot_type: Format::F16,
};

pub(super) static KERNELS_BF16: Kernels = Kernels {
    format: Format::BF16,
    dequantize_row: dequantize_row_bf16,
    quantize_row: Some(quantize_row_bf16),
    vec_dot: Some(vec_dot_bf16_bf16),
    vec_dot_type: Format::BF16,
};

/// SIMD variants of `vec_dot_f16_f16` and `vec_dot_bf16_bf16`, chosen from
/// the crate's one [`Isa`](crate::Isa).
///
/// Both widen the halves to f32 (F16C's `vcvtph2ps`, or a 16-bit shift for
/// bf16: exact) and multiply-add them into four f32 accumulators (the
/// products are exact in f32: two 11-bit or 8-bit significands). Every
/// `CHUNK` values the accumulators are summed and added into f64, as the
/// scalar code sums, so each lane adds at most 8 products in f32: the row
/// result is within about `10 * 2^-24 * sum |x_i y_i|` of the scalar one
/// whatever the length. A tail shorter than one vector is summed as the
/// scalar code does.
pub mod simd {
    use crate::Isa;

    /// A dot product over two rows of little-endian halves already checked
    /// to hold the same whole number of values.
    pub type Kernel = fn(&[u8], &[u8]) -> f32;

    /// The f16 kernel for `isa` (from the crate's one [`Isa`] choice).
    pub fn kernel_f16(isa: Isa) -> Kernel {
        match isa {
            Isa::Scalar => super::scalar_f16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => x86::f16_avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => x86::f16_avx512,
        }
    }

    /// The bf16 kernel for `isa`.
    pub fn kernel_bf16(isa: Isa) -> Kernel {
        match isa {
            Isa::Scalar => super::scalar_bf16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => x86::bf16_avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => x86::bf16_avx512,
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        use crate::quant::x86_util::{hsum_f32_256, hsum_f32_512};

        /// Values summed in f32 before the partial sum is added in f64: 8
        /// products per lane of each of the four accumulators.
        const CHUNK_AVX2: usize = 4 * 8 * 8;
        const CHUNK_AVX512: usize = 4 * 16 * 8;

        /// Handed out only by `kernel_*` for an ISA whose token proves AVX2, FMA and F16C.
        pub(super) fn f16_avx2(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: see above.
            unsafe { row_avx2::<false>(x, y) }
        }

        /// Handed out only by `kernel_*` for an ISA whose token proves AVX2, FMA and F16C.
        pub(super) fn bf16_avx2(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: see above.
            unsafe { row_avx2::<true>(x, y) }
        }

        /// Handed out only by `kernel_*` for an ISA whose token proves AVX-512 F and F16C.
        pub(super) fn f16_avx512(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: see above.
            unsafe { row_avx512::<false>(x, y) }
        }

        /// Handed out only by `kernel_*` for an ISA whose token proves AVX-512 F and F16C.
        pub(super) fn bf16_avx512(x: &[u8], y: &[u8]) -> f32 {
            // SAFETY: see above.
            unsafe { row_avx512::<true>(x, y) }
        }

        /// The tail of a row (fewer values than a vector), as the scalar code.
        fn tail<const BF16: bool>(x: &[u8], y: &[u8]) -> f64 {
            if BF16 {
                super::super::scalar_bf16(x, y) as f64
            } else {
                super::super::scalar_f16(x, y) as f64
            }
        }

        /// Eight halves from `p[..16]` as f32.
        ///
        /// # Safety
        /// The CPU must support AVX2 and F16C; `p` must hold 16 bytes.
        #[inline]
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn load8<const BF16: bool>(p: &[u8]) -> __m256 {
            debug_assert!(p.len() >= 16);
            // SAFETY: the caller passes 16 readable bytes; `loadu` needs no
            // alignment.
            let h = unsafe { _mm_loadu_si128(p.as_ptr().cast()) };
            if BF16 {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_cvtph_ps(h)
            }
        }

        /// Sixteen halves from `p[..32]` as f32.
        ///
        /// # Safety
        /// The CPU must support AVX-512 F and F16C; `p` must hold 32 bytes.
        #[inline]
        #[target_feature(enable = "avx512f,f16c")]
        unsafe fn load16<const BF16: bool>(p: &[u8]) -> __m512 {
            debug_assert!(p.len() >= 32);
            // SAFETY: the caller passes 32 readable bytes; `loadu` needs no
            // alignment.
            let h = unsafe { _mm256_loadu_si256(p.as_ptr().cast()) };
            if BF16 {
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            } else {
                _mm512_cvtph_ps(h)
            }
        }

        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn row_avx2<const BF16: bool>(x: &[u8], y: &[u8]) -> f32 {
            let n = x.len().min(y.len()) / 2;
            let mut sum = 0.0f64;
            let mut i = 0;
            while i + 8 <= n {
                let end = (i + CHUNK_AVX2).min(n);
                let mut acc = [_mm256_setzero_ps(); 4];
                while i + 32 <= end {
                    for (k, acc) in acc.iter_mut().enumerate() {
                        let o = 2 * (i + 8 * k);
                        // SAFETY: `o + 16 <= 2 * end <= x.len(), y.len()`.
                        let (a, b) = unsafe { (load8::<BF16>(&x[o..]), load8::<BF16>(&y[o..])) };
                        *acc = _mm256_fmadd_ps(a, b, *acc);
                    }
                    i += 32;
                }
                while i + 8 <= end {
                    let o = 2 * i;
                    // SAFETY: `o + 16 <= 2 * end <= x.len(), y.len()`.
                    let (a, b) = unsafe { (load8::<BF16>(&x[o..]), load8::<BF16>(&y[o..])) };
                    acc[0] = _mm256_fmadd_ps(a, b, acc[0]);
                    i += 8;
                }
                let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
                sum += hsum_f32_256(s) as f64;
            }
            (sum + tail::<BF16>(&x[2 * i..2 * n], &y[2 * i..2 * n])) as f32
        }

        /// # Safety
        /// The CPU must support AVX-512 F and F16C.
        #[target_feature(enable = "avx512f,f16c")]
        unsafe fn row_avx512<const BF16: bool>(x: &[u8], y: &[u8]) -> f32 {
            let n = x.len().min(y.len()) / 2;
            let mut sum = 0.0f64;
            let mut i = 0;
            while i + 16 <= n {
                let end = (i + CHUNK_AVX512).min(n);
                let mut acc = [_mm512_setzero_ps(); 4];
                while i + 64 <= end {
                    for (k, acc) in acc.iter_mut().enumerate() {
                        let o = 2 * (i + 16 * k);
                        // SAFETY: `o + 32 <= 2 * end <= x.len(), y.len()`.
                        let (a, b) = unsafe { (load16::<BF16>(&x[o..]), load16::<BF16>(&y[o..])) };
                        *acc = _mm512_fmadd_ps(a, b, *acc);
                    }
                    i += 64;
                }
                while i + 16 <= end {
                    let o = 2 * i;
                    // SAFETY: `o + 32 <= 2 * end <= x.len(), y.len()`.
                    let (a, b) = unsafe { (load16::<BF16>(&x[o..]), load16::<BF16>(&y[o..])) };
                    acc[0] = _mm512_fmadd_ps(a, b, acc[0]);
                    i += 16;
                }
                let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                sum += hsum_f32_512(s) as f64;
            }
            (sum + tail::<BF16>(&x[2 * i..2 * n], &y[2 * i..2 * n])) as f32
        }
    }
}
