//! Activations and element-wise arithmetic, in place.
//!
//! - SiLU: `x / (1 + e^-x)` (ggml's `ggml_silu_f32`).
//! - GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))`
//!   (ggml's `ggml_gelu_f32`, constants `SQRT_2_OVER_PI` and `GELU_COEF_A`).
//! - Gated forms `silu(a) * b` (SwiGLU, Llama) and `gelu(a) * b` (GeGLU, Gemma).
//! - `add`, `mul`, `scale`.
//!
//! SiLU and GELU have AVX2 and AVX-512 variants. The AVX2 GELU uses the identity
//! `0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u))`, which needs one `exp` and has no
//! cancellation for negative `x`; the scalar reference keeps ggml's tanh form.
//! `add`, `mul` and `scale` do one flop per element loaded, so memory, not
//! arithmetic, bounds them; they are plain loops left to the compiler's
//! (baseline SSE2) auto-vectorisation, with no hand-written variant.

use super::Isa;

/// sqrt(2/pi), ggml's `SQRT_2_OVER_PI`.
pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// ggml's `GELU_COEF_A`.
pub const GELU_COEF_A: f32 = 0.044_715;

/// SiLU of one value, the scalar reference.
#[inline]
pub fn silu_scalar(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Tanh-approximated GELU of one value, the scalar reference.
#[inline]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// `x = silu(x)`.
pub fn silu_inplace(x: &mut [f32]) {
    silu_inplace_with(Isa::detect(), x);
}

/// [`silu_inplace`] on a chosen instruction set.
pub fn silu_inplace_with(isa: Isa, x: &mut [f32]) {
    unary(isa, Unary::Silu, x, None);
}

/// `x = gelu(x)` (tanh approximation).
pub fn gelu_inplace(x: &mut [f32]) {
    gelu_inplace_with(Isa::detect(), x);
}

/// [`gelu_inplace`] on a chosen instruction set.
pub fn gelu_inplace_with(isa: Isa, x: &mut [f32]) {
    unary(isa, Unary::Gelu, x, None);
}

/// `a = silu(a) * b` (SwiGLU: `a` is the gate projection, `b` the up
/// projection).
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn silu_mul_inplace(a: &mut [f32], b: &[f32]) {
    silu_mul_inplace_with(Isa::detect(), a, b);
}

/// [`silu_mul_inplace`] on a chosen instruction set.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn silu_mul_inplace_with(isa: Isa, a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "silu_mul: lengths differ");
    unary(isa, Unary::Silu, a, Some(b));
}

/// `a = gelu(a) * b` (GeGLU).
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn gelu_mul_inplace(a: &mut [f32], b: &[f32]) {
    gelu_mul_inplace_with(Isa::detect(), a, b);
}

/// [`gelu_mul_inplace`] on a chosen instruction set.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn gelu_mul_inplace_with(isa: Isa, a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "gelu_mul: lengths differ");
    unary(isa, Unary::Gelu, a, Some(b));
}

/// `a += b` (the residual connection).
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn add_inplace(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "add: lengths differ");
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `a *= b`, element-wise.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn mul_inplace(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "mul: lengths differ");
    for (x, &y) in a.iter_mut().zip(b) {
        *x *= y;
    }
}

/// `a *= s`.
pub fn scale_inplace(a: &mut [f32], s: f32) {
    for x in a.iter_mut() {
        *x *= s;
    }
}

#[derive(Clone, Copy)]
enum Unary {
    Silu,
    Gelu,
}

/// `x = f(x)`, or `x = f(x) * gate` when a gate row is given (same length).
fn unary(isa: Isa, op: Unary, x: &mut [f32], gate: Option<&[f32]>) {
    match isa {
        Isa::Scalar => {
            let f = match op {
                Unary::Silu => silu_scalar,
                Unary::Gelu => gelu_scalar,
            };
            match gate {
                Some(g) => x.iter_mut().zip(g).for_each(|(v, &gi)| *v = f(*v) * gi),
                None => x.iter_mut().for_each(|v| *v = f(*v)),
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA and
        // F16C were detected on this CPU.
        Isa::Avx2(_) => unsafe { avx2::unary(op, x, gate) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2, FMA
        // and F16C.
        Isa::Avx512(_) => unsafe { avx512::unary(op, x, gate) },
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{gelu_scalar, silu_scalar, Unary, GELU_COEF_A, SQRT_2_OVER_PI};
    use crate::ops::x86::{exp, load, store};
    use std::arch::x86_64::*;

    /// silu(x) = x / (1 + e^-x).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn silu(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_div_ps(x, _mm256_add_ps(one, e))
    }

    /// gelu(x) = x / (1 + e^(-2u)), u = sqrt(2/pi) x (1 + a x^2).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn gelu(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let x2 = _mm256_mul_ps(x, x);
        let inner = _mm256_fmadd_ps(_mm256_set1_ps(GELU_COEF_A), x2, one);
        let m2u = _mm256_mul_ps(
            _mm256_set1_ps(-2.0 * SQRT_2_OVER_PI),
            _mm256_mul_ps(x, inner),
        );
        _mm256_div_ps(x, _mm256_add_ps(one, exp(m2u)))
    }

    /// The AVX2 twin of the scalar arm of `super::unary`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn unary(op: Unary, x: &mut [f32], gate: Option<&[f32]>) {
        let body = x.len() - x.len() % 8;
        let (head, tail) = x.split_at_mut(body);
        // One loop per (op, gated) so the branch is outside the hot loop.
        match (op, gate) {
            (Unary::Silu, None) => head
                .chunks_exact_mut(8)
                .for_each(|c| store(c, silu(load(c)))),
            (Unary::Gelu, None) => head
                .chunks_exact_mut(8)
                .for_each(|c| store(c, gelu(load(c)))),
            (Unary::Silu, Some(g)) => head
                .chunks_exact_mut(8)
                .zip(g.chunks_exact(8))
                .for_each(|(c, gc)| store(c, _mm256_mul_ps(silu(load(c)), load(gc)))),
            (Unary::Gelu, Some(g)) => head
                .chunks_exact_mut(8)
                .zip(g.chunks_exact(8))
                .for_each(|(c, gc)| store(c, _mm256_mul_ps(gelu(load(c)), load(gc)))),
        }
        let f = match op {
            Unary::Silu => silu_scalar,
            Unary::Gelu => gelu_scalar,
        };
        match gate {
            Some(g) => tail
                .iter_mut()
                .zip(&g[body..])
                .for_each(|(v, &gi)| *v = f(*v) * gi),
            None => tail.iter_mut().for_each(|v| *v = f(*v)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{gelu_scalar, silu_scalar, Unary, GELU_COEF_A, SQRT_2_OVER_PI};
    use crate::ops::x86::v512::{exp, load, store};
    use std::arch::x86_64::*;

    /// silu(x) = x / (1 + e^-x).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn silu(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_div_ps(x, _mm512_add_ps(one, e))
    }

    /// gelu(x) = x / (1 + e^(-2u)), u = sqrt(2/pi) x (1 + a x^2).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    fn gelu(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let x2 = _mm512_mul_ps(x, x);
        let inner = _mm512_fmadd_ps(_mm512_set1_ps(GELU_COEF_A), x2, one);
        let m2u = _mm512_mul_ps(
            _mm512_set1_ps(-2.0 * SQRT_2_OVER_PI),
            _mm512_mul_ps(x, inner),
        );
        _mm512_div_ps(x, _mm512_add_ps(one, exp(m2u)))
    }

    /// The AVX-512 twin of the scalar arm of `super::unary`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn unary(op: Unary, x: &mut [f32], gate: Option<&[f32]>) {
        let body = x.len() - x.len() % 16;
        let (head, tail) = x.split_at_mut(body);
        // One loop per (op, gated) so the branch is outside the hot loop.
        match (op, gate) {
            (Unary::Silu, None) => head
                .chunks_exact_mut(16)
                .for_each(|c| store(c, silu(load(c)))),
            (Unary::Gelu, None) => head
                .chunks_exact_mut(16)
                .for_each(|c| store(c, gelu(load(c)))),
            (Unary::Silu, Some(g)) => head
                .chunks_exact_mut(16)
                .zip(g.chunks_exact(16))
                .for_each(|(c, gc)| store(c, _mm512_mul_ps(silu(load(c)), load(gc)))),
            (Unary::Gelu, Some(g)) => head
                .chunks_exact_mut(16)
                .zip(g.chunks_exact(16))
                .for_each(|(c, gc)| store(c, _mm512_mul_ps(gelu(load(c)), load(gc)))),
        }
        let f = match op {
            Unary::Silu => silu_scalar,
            Unary::Gelu => gelu_scalar,
        };
        match gate {
            Some(g) => tail
                .iter_mut()
                .zip(&g[body..])
                .for_each(|(v, &gi)| *v = f(*v) * gi),
            None => tail.iter_mut().for_each(|v| *v = f(*v)),
        }
    }
}
