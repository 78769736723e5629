//! Numerically stable softmax over a row: `y = softmax(x * scale + mask)`,
//! computed as `exp(v - max(v)) / sum`, the sum accumulated in f64 as ggml's
//! `ggml_vec_soft_max_f32` does.
//!
//! A row whose every entry is masked (all `-inf`) comes out as zeros, where
//! ggml would produce NaN: attention callers treat "no visible key" as
//! "contributes nothing".

use super::Isa;

/// What is added to, or cut from, a row before the softmax.
#[derive(Clone, Copy, Debug, Default)]
pub enum Mask<'a> {
    /// Every entry takes part.
    #[default]
    None,
    /// Add this row (same length; `-inf` removes an entry), as ggml's
    /// `soft_max_ext` mask.
    Add(&'a [f32]),
    /// Only the first `n` entries take part, the rest come out as zero: the
    /// causal mask of a query that sees keys `0..n`.
    Causal(usize),
}

/// `y = softmax(x * scale + mask)`.
///
/// # Panics
/// If `x` and `y` differ in length, an additive mask differs from `x` in
/// length, or a causal count exceeds it.
pub fn softmax(x: &[f32], scale: f32, mask: Mask<'_>, y: &mut [f32]) {
    softmax_with(Isa::detect(), x, scale, mask, y);
}

/// [`softmax`] on a chosen instruction set.
///
/// # Panics
/// As [`softmax`].
pub fn softmax_with(isa: Isa, x: &[f32], scale: f32, mask: Mask<'_>, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "softmax: x and y lengths differ");
    y.copy_from_slice(x);
    softmax_inplace_with(isa, y, scale, mask);
}

/// `x = softmax(x * scale + mask)`.
///
/// # Panics
/// If an additive mask differs from `x` in length, or a causal count
/// exceeds it.
pub fn softmax_inplace(x: &mut [f32], scale: f32, mask: Mask<'_>) {
    softmax_inplace_with(Isa::detect(), x, scale, mask);
}

/// [`softmax_inplace`] on a chosen instruction set.
///
/// # Panics
/// As [`softmax_inplace`].
pub fn softmax_inplace_with(isa: Isa, x: &mut [f32], scale: f32, mask: Mask<'_>) {
    let (row, add) = match mask {
        Mask::None => (x, None),
        Mask::Add(m) => {
            assert_eq!(m.len(), x.len(), "softmax: mask and row lengths differ");
            (x, Some(m))
        }
        Mask::Causal(n) => {
            assert!(
                n <= x.len(),
                "softmax: causal count {n} exceeds row length {}",
                x.len()
            );
            let (live, dead) = x.split_at_mut(n);
            dead.fill(0.0);
            (live, None)
        }
    };
    if row.is_empty() {
        return;
    }
    match isa {
        Isa::Scalar => row_scalar(row, scale, add),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA and
        // F16C were detected on this CPU.
        Isa::Avx2(_) => unsafe { avx2::row(row, scale, add) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2, FMA
        // and F16C.
        Isa::Avx512(_) => unsafe { avx512::row(row, scale, add) },
    }
}

fn row_scalar(x: &mut [f32], scale: f32, add: Option<&[f32]>) {
    let mut max = f32::NEG_INFINITY;
    match add {
        Some(m) => {
            for (v, &mi) in x.iter_mut().zip(m) {
                *v = *v * scale + mi;
                max = max.max(*v);
            }
        }
        None => {
            for v in x.iter_mut() {
                *v *= scale;
                max = max.max(*v);
            }
        }
    }
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::ops::x86::{add_widened, exp, hmax, hsum_pd, load, store};
    use std::arch::x86_64::*;

    /// The AVX2 twin of `row_scalar`; `x` non-empty, `add` as long as `x`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row(x: &mut [f32], scale: f32, add: Option<&[f32]>) {
        let n = x.len();
        let body = n - n % 8;
        let s = _mm256_set1_ps(scale);
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        match add {
            Some(m) => {
                for (c, mc) in x[..body].chunks_exact_mut(8).zip(m.chunks_exact(8)) {
                    let v = _mm256_fmadd_ps(load(c), s, load(mc));
                    vmax = _mm256_max_ps(vmax, v);
                    store(c, v);
                }
                for (v, &mi) in x[body..].iter_mut().zip(&m[body..]) {
                    *v = *v * scale + mi;
                    max = max.max(*v);
                }
            }
            None => {
                for c in x[..body].chunks_exact_mut(8) {
                    let v = _mm256_mul_ps(load(c), s);
                    vmax = _mm256_max_ps(vmax, v);
                    store(c, v);
                }
                for v in x[body..].iter_mut() {
                    *v *= scale;
                    max = max.max(*v);
                }
            }
        }
        let max = max.max(hmax(vmax));
        if max == f32::NEG_INFINITY {
            x.fill(0.0);
            return;
        }
        let vm = _mm256_set1_ps(max);
        let mut acc = [_mm256_setzero_pd(); 2];
        for c in x[..body].chunks_exact_mut(8) {
            let e = exp(_mm256_sub_ps(load(c), vm));
            add_widened(&mut acc, e);
            store(c, e);
        }
        let mut sum = hsum_pd(_mm256_add_pd(acc[0], acc[1]));
        for v in x[body..].iter_mut() {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        let vi = _mm256_set1_ps(inv);
        for c in x[..body].chunks_exact_mut(8) {
            store(c, _mm256_mul_ps(load(c), vi));
        }
        for v in x[body..].iter_mut() {
            *v *= inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use crate::ops::x86::v512::{add_widened, exp, load, store};
    use std::arch::x86_64::*;

    /// The AVX-512 twin of `row_scalar`; `x` non-empty, `add` as long as `x`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn row(x: &mut [f32], scale: f32, add: Option<&[f32]>) {
        let n = x.len();
        let body = n - n % 16;
        let s = _mm512_set1_ps(scale);
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        match add {
            Some(m) => {
                for (c, mc) in x[..body].chunks_exact_mut(16).zip(m.chunks_exact(16)) {
                    let v = _mm512_fmadd_ps(load(c), s, load(mc));
                    vmax = _mm512_max_ps(vmax, v);
                    store(c, v);
                }
                for (v, &mi) in x[body..].iter_mut().zip(&m[body..]) {
                    *v = *v * scale + mi;
                    max = max.max(*v);
                }
            }
            None => {
                for c in x[..body].chunks_exact_mut(16) {
                    let v = _mm512_mul_ps(load(c), s);
                    vmax = _mm512_max_ps(vmax, v);
                    store(c, v);
                }
                for v in x[body..].iter_mut() {
                    *v *= scale;
                    max = max.max(*v);
                }
            }
        }
        let max = max.max(_mm512_reduce_max_ps(vmax));
        if max == f32::NEG_INFINITY {
            x.fill(0.0);
            return;
        }
        let vm = _mm512_set1_ps(max);
        let mut acc = [_mm512_setzero_pd(); 2];
        for c in x[..body].chunks_exact_mut(16) {
            let e = exp(_mm512_sub_ps(load(c), vm));
            add_widened(&mut acc, e);
            store(c, e);
        }
        let mut sum = _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]));
        for v in x[body..].iter_mut() {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        let vi = _mm512_set1_ps(inv);
        for c in x[..body].chunks_exact_mut(16) {
            store(c, _mm512_mul_ps(load(c), vi));
        }
        for v in x[body..].iter_mut() {
            *v *= inv;
        }
    }
}
