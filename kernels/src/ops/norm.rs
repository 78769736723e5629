//! RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w`, over a whole row or over
//! each `head_dim` slice of a row (the per-head Q/K norm of Qwen3, Gemma 3,
//! OLMo 2).
//!
//! Numerics follow ggml's `ggml_compute_forward_rms_norm_f32`
//! (ggml-cpu/ops.cpp): each square is formed in f32 and summed in f64
//! (`ggml_float`), the mean is rounded to f32, `scale = 1/sqrtf(mean + eps)`,
//! and the weight is applied after scaling (ggml does that in a separate
//! `ggml_mul`), so `y = (x * scale) * w`.
//!
//! The kernels work in place; the out-of-place forms copy first (a row is at
//! most a few tens of KiB and stays in L1/L2).

use super::Isa;

/// RMSNorm of the row `x` into `y` with the per-element weight `w`.
///
/// # Panics
/// If `x`, `w` and `y` differ in length.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    rms_norm_with(Isa::detect(), x, w, eps, y);
}

/// [`rms_norm`] on a chosen instruction set.
///
/// # Panics
/// If `x`, `w` and `y` differ in length.
pub fn rms_norm_with(isa: Isa, x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "rms_norm: x and y lengths differ");
    y.copy_from_slice(x);
    rms_norm_inplace_with(isa, y, w, eps);
}

/// RMSNorm of the row `x` in place.
///
/// # Panics
/// If `x` and `w` differ in length.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    rms_norm_inplace_with(Isa::detect(), x, w, eps);
}

/// [`rms_norm_inplace`] on a chosen instruction set.
///
/// # Panics
/// If `x` and `w` differ in length.
pub fn rms_norm_inplace_with(isa: Isa, x: &mut [f32], w: &[f32], eps: f32) {
    assert_eq!(x.len(), w.len(), "rms_norm: x and weight lengths differ");
    if x.is_empty() {
        return;
    }
    match isa {
        Isa::Scalar => row_scalar(x, w, eps),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA and
        // F16C were detected on this CPU.
        Isa::Avx2(_) => unsafe { avx2::row(x, w, eps) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2, FMA
        // and F16C.
        Isa::Avx512(_) => unsafe { avx512::row(x, w, eps) },
    }
}

/// RMSNorm of each `head_dim` slice of `x` in place, every head with the same
/// weight `w` (length `head_dim`). With `w` as long as a model row, this is
/// also RMSNorm of a batch of rows `[n_tokens][dim]`.
///
/// # Panics
/// If `w.len()` is zero or does not divide `x.len()`.
pub fn rms_norm_heads_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    rms_norm_heads_inplace_with(Isa::detect(), x, w, eps);
}

/// [`rms_norm_heads_inplace`] on a chosen instruction set.
///
/// # Panics
/// If `w.len()` is zero or does not divide `x.len()`.
pub fn rms_norm_heads_inplace_with(isa: Isa, x: &mut [f32], w: &[f32], eps: f32) {
    let head_dim = w.len();
    assert!(
        head_dim > 0 && x.len().is_multiple_of(head_dim),
        "rms_norm_heads: row of {} is not a whole number of heads of {head_dim}",
        x.len()
    );
    for head in x.chunks_exact_mut(head_dim) {
        rms_norm_inplace_with(isa, head, w, eps);
    }
}

/// Out-of-place [`rms_norm_heads_inplace`].
///
/// # Panics
/// If `x` and `y` differ in length, or `w.len()` is zero or does not divide
/// `x.len()`.
pub fn rms_norm_heads(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    rms_norm_heads_with(Isa::detect(), x, w, eps, y);
}

/// [`rms_norm_heads`] on a chosen instruction set.
///
/// # Panics
/// As [`rms_norm_heads`].
pub fn rms_norm_heads_with(isa: Isa, x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "rms_norm_heads: x and y lengths differ");
    y.copy_from_slice(x);
    rms_norm_heads_inplace_with(isa, y, w, eps);
}

/// `1/sqrt(mean + eps)` from the f64 sum of squares, rounded as ggml does.
fn inv_rms(sum_sq: f64, n: usize, eps: f32) -> f32 {
    let mean = (sum_sq / n as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

fn row_scalar(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let scale = inv_rms(sum, x.len(), eps);
    for (v, &wi) in x.iter_mut().zip(w) {
        *v = (*v * scale) * wi;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::inv_rms;
    use crate::ops::x86::{add_widened, hsum_pd, load, store};
    use std::arch::x86_64::*;

    /// The AVX2 twin of `row_scalar`; `x.len() == w.len()`, non-empty.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row(x: &mut [f32], w: &[f32], eps: f32) {
        let n = x.len();
        let body = n - n % 8;
        // Squares in f32, sums in f64 lanes, as ggml's ggml_float sum.
        let mut acc = [_mm256_setzero_pd(); 2];
        for c in x[..body].chunks_exact(8) {
            let v = load(c);
            add_widened(&mut acc, _mm256_mul_ps(v, v));
        }
        let mut sum = hsum_pd(_mm256_add_pd(acc[0], acc[1]));
        for &v in &x[body..] {
            sum += f64::from(v * v);
        }
        let scale = inv_rms(sum, n, eps);
        let s = _mm256_set1_ps(scale);
        for (c, wc) in x[..body].chunks_exact_mut(8).zip(w.chunks_exact(8)) {
            let v = _mm256_mul_ps(_mm256_mul_ps(load(c), s), load(wc));
            store(c, v);
        }
        for (v, &wi) in x[body..].iter_mut().zip(&w[body..]) {
            *v = (*v * scale) * wi;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::inv_rms;
    use crate::ops::x86::v512::{add_widened, load, store};
    use std::arch::x86_64::*;

    /// The AVX-512 twin of `row_scalar`; `x.len() == w.len()`, non-empty.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn row(x: &mut [f32], w: &[f32], eps: f32) {
        let n = x.len();
        let body = n - n % 16;
        // Squares in f32, sums in f64 lanes, as ggml's ggml_float sum.
        let mut acc = [_mm512_setzero_pd(); 2];
        for c in x[..body].chunks_exact(16) {
            let v = load(c);
            add_widened(&mut acc, _mm512_mul_ps(v, v));
        }
        let mut sum = _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]));
        for &v in &x[body..] {
            sum += f64::from(v * v);
        }
        let scale = inv_rms(sum, n, eps);
        let s = _mm512_set1_ps(scale);
        for (c, wc) in x[..body].chunks_exact_mut(16).zip(w.chunks_exact(16)) {
            let v = _mm512_mul_ps(_mm512_mul_ps(load(c), s), load(wc));
            store(c, v);
        }
        for (v, &wi) in x[body..].iter_mut().zip(&w[body..]) {
            *v = (*v * scale) * wi;
        }
    }
}
