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

/// ggml's `ggml_vec_dot_f16` (scalar path). The f32 product of two f16 values
/// is exact, so only the f64 sum rounds.
pub fn vec_dot_f16_f16(x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    check_dot(Format::F16, 2, x, y)?;
    let mut sumf = 0.0f64;
    for (a, b) in x.chunks_exact(2).zip(y.chunks_exact(2)) {
        let a = f16::from_bits(u16::from_le_bytes([a[0], a[1]])).to_f32();
        let b = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        sumf += (a * b) as f64;
    }
    Ok(sumf as f32)
}

/// ggml's `ggml_vec_dot_bf16` (scalar path); bf16 products are exact in f32.
pub fn vec_dot_bf16_bf16(x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    check_dot(Format::BF16, 2, x, y)?;
    let mut sumf = 0.0f64;
    for (a, b) in x.chunks_exact(2).zip(y.chunks_exact(2)) {
        let a = bf16_to_f32(bf16::from_bits(u16::from_le_bytes([a[0], a[1]])));
        let b = bf16_to_f32(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])));
        sumf += (a * b) as f64;
    }
    Ok(sumf as f32)
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
