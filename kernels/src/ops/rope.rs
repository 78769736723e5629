//! Rotary position embedding (RoPE) over `[n_tokens][n_heads][head_dim]`.
//!
//! Semantics follow ggml's `ggml_compute_forward_rope_flt` / `rotate_pairs`
//! (ggml-cpu/ops.cpp). For pair `i < n_rot/2` of a head at position `p`:
//!
//! ```text
//! theta_i = p * freq_scale * base^(-2i/n_rot) / freq_factor_i
//! (x0, x1) <- (x0 cos theta_i - x1 sin theta_i,  x0 sin theta_i + x1 cos theta_i)
//! ```
//!
//! where the pair is `(x[2i], x[2i+1])` in [`RopeOrdering::Normal`] (ggml
//! `GGML_ROPE_TYPE_NORMAL`, Llama) and `(x[i], x[i + n_rot/2])` in
//! [`RopeOrdering::Neox`] (`GGML_ROPE_TYPE_NEOX`, GPT-NeoX, Qwen, Gemma). Dims
//! `n_rot..head_dim` pass through unchanged. `freq_scale` is linear position
//! interpolation; `freq_factor` is ggml's optional `rope_freqs` tensor (Llama
//! 3.1, Phi-3 long-rope), 1 when absent.
//!
//! One difference on purpose: ggml forms `theta_i` by repeated f32
//! multiplication (`theta *= theta_scale`) and takes `cosf`/`sinf` of it; the
//! product drifts by up to a few ulp per step, i.e. milliradians at 32k
//! positions. Here `theta_i` and its cosine and sine are computed in f64 and
//! rounded once, per token, before the heads are rotated. YaRN (`ext_factor`)
//! and `attn_factor` are not supported.

use super::{Isa, ShapeError};

/// Most rotated dims per head: bounds the per-position cos/sin table, which
/// lives on the stack (8 KiB). Current models rotate at most 256.
pub const MAX_N_ROT: usize = 1024;

/// Which dims form a rotated pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeOrdering {
    /// Adjacent dims `(2i, 2i+1)`.
    Normal,
    /// Dims `(i, i + n_rot/2)`.
    Neox,
}

/// A RoPE configuration with its inverse frequencies precomputed.
#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    n_rot: usize,
    ordering: RopeOrdering,
    freq_scale: f64,
    /// `base^(-2i/n_rot) / freq_factor_i`, for `i < n_rot/2`.
    inv_freq: Vec<f64>,
}

impl Rope {
    /// RoPE rotating the first `n_rot` of `head_dim` dims, with frequency base
    /// `freq_base` (e.g. 10000) and linear scaling `freq_scale` (1 for none;
    /// it multiplies positions).
    ///
    /// # Errors
    /// If `n_rot` is odd, zero, larger than `head_dim` or than [`MAX_N_ROT`],
    /// or `freq_base` or `freq_scale` is not finite and positive.
    pub fn new(
        head_dim: usize,
        n_rot: usize,
        freq_base: f32,
        freq_scale: f32,
        ordering: RopeOrdering,
    ) -> Result<Rope, ShapeError> {
        let err = |detail: String| Err(ShapeError { op: "rope", detail });
        if n_rot == 0 || !n_rot.is_multiple_of(2) || n_rot > head_dim || n_rot > MAX_N_ROT {
            return err(format!(
                "n_rot {n_rot} must be even, non-zero and at most head_dim {head_dim} \
                 and {MAX_N_ROT}"
            ));
        }
        if !(freq_base.is_finite() && freq_base > 0.0) {
            return err(format!("freq_base {freq_base} must be finite and positive"));
        }
        if !(freq_scale.is_finite() && freq_scale > 0.0) {
            return err(format!(
                "freq_scale {freq_scale} must be finite and positive"
            ));
        }
        let base = f64::from(freq_base);
        let inv_freq = (0..n_rot / 2)
            .map(|i| base.powf(-2.0 * i as f64 / n_rot as f64))
            .collect();
        Ok(Rope {
            head_dim,
            n_rot,
            ordering,
            freq_scale: f64::from(freq_scale),
            inv_freq,
        })
    }

    /// Divide each pair's frequency by `factors[i]` (ggml's `freq_factors`,
    /// one per pair).
    ///
    /// # Errors
    /// If `factors` does not hold `n_rot / 2` finite positive values.
    pub fn with_freq_factors(mut self, factors: &[f32]) -> Result<Rope, ShapeError> {
        if factors.len() != self.inv_freq.len() {
            return Err(ShapeError {
                op: "rope",
                detail: format!(
                    "{} freq factors for {} rotated pairs",
                    factors.len(),
                    self.inv_freq.len()
                ),
            });
        }
        if let Some(f) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
            return Err(ShapeError {
                op: "rope",
                detail: format!("freq factor {f} must be finite and positive"),
            });
        }
        for (inv, &f) in self.inv_freq.iter_mut().zip(factors) {
            *inv /= f64::from(f);
        }
        Ok(self)
    }

    /// Dims per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Rotated dims per head.
    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// The pair ordering.
    pub fn ordering(&self) -> RopeOrdering {
        self.ordering
    }

    /// The angle of pair `i` at position `pos`, in f64.
    pub fn theta(&self, pos: i32, i: usize) -> f64 {
        f64::from(pos) * self.freq_scale * self.inv_freq[i]
    }

    /// Rotate `x`, laid out `[positions.len()][n_heads][head_dim]`, in place;
    /// token `t` sits at `positions[t]`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len() != positions.len() * n_heads * head_dim`.
    pub fn apply_inplace(&self, x: &mut [f32], n_heads: usize, positions: &[i32]) {
        self.apply_inplace_with(Isa::detect(), x, n_heads, positions);
    }

    /// [`Rope::apply_inplace`] on a chosen instruction set.
    ///
    /// # Panics
    /// As [`Rope::apply_inplace`].
    pub fn apply_inplace_with(&self, isa: Isa, x: &mut [f32], n_heads: usize, positions: &[i32]) {
        let row = n_heads * self.head_dim;
        assert_eq!(
            Some(x.len()),
            positions.len().checked_mul(row),
            "rope: {} floats is not {} tokens of {n_heads} heads of {}",
            x.len(),
            positions.len(),
            self.head_dim
        );
        if row == 0 {
            return;
        }
        // cos/sin of one position, computed once and shared by its heads;
        // laid out for the ordering (see `fill_cache`).
        let mut cache = [0.0f32; 2 * MAX_N_ROT];
        let cache = &mut cache[..2 * self.n_rot];
        for (token, &pos) in x.chunks_exact_mut(row).zip(positions) {
            self.fill_cache(pos, cache);
            for head in token.chunks_exact_mut(self.head_dim) {
                let head = &mut head[..self.n_rot];
                match isa {
                    Isa::Scalar => rotate_scalar(self.ordering, head, cache),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: an `Isa::Avx2` holds a token built only after
                    // AVX2, FMA and F16C were detected on this CPU.
                    Isa::Avx2(_) => unsafe { avx2::rotate(self.ordering, head, cache) },
                    // RoPE is a few multiplies per element on data already in
                    // L1; the AVX2 kernel serves AVX-512 machines too.
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: an `Isa::Avx512` token proves AVX2 and FMA too.
                    Isa::Avx512(_) => unsafe { avx2::rotate(self.ordering, head, cache) },
                }
            }
        }
    }

    /// Normal: `cache = [c0 c0 c1 c1 ..][-s0 s0 -s1 s1 ..]`, each `n_rot` long,
    /// so a pair is `x * c + swap(x) * s` lane by lane.
    /// NeoX: `cache = [c0 c1 ..][s0 s1 ..]`, each `n_rot/2` long.
    fn fill_cache(&self, pos: i32, cache: &mut [f32]) {
        let half = self.n_rot / 2;
        for i in 0..half {
            let (s, c) = self.theta(pos, i).sin_cos();
            let (s, c) = (s as f32, c as f32);
            match self.ordering {
                RopeOrdering::Normal => {
                    cache[2 * i] = c;
                    cache[2 * i + 1] = c;
                    cache[self.n_rot + 2 * i] = -s;
                    cache[self.n_rot + 2 * i + 1] = s;
                }
                RopeOrdering::Neox => {
                    cache[i] = c;
                    cache[half + i] = s;
                }
            }
        }
    }
}

/// Rotate the `n_rot` dims of one head; `cache` from `Rope::fill_cache`.
fn rotate_scalar(ordering: RopeOrdering, x: &mut [f32], cache: &[f32]) {
    let n_rot = x.len();
    let half = n_rot / 2;
    for i in 0..half {
        let (i0, i1, c, s) = match ordering {
            RopeOrdering::Normal => (2 * i, 2 * i + 1, cache[2 * i], cache[n_rot + 2 * i + 1]),
            RopeOrdering::Neox => (i, half + i, cache[i], cache[half + i]),
        };
        let (x0, x1) = (x[i0], x[i1]);
        x[i0] = x0 * c - x1 * s;
        x[i1] = x0 * s + x1 * c;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{rotate_scalar, RopeOrdering};
    use crate::ops::x86::{load, store};
    use std::arch::x86_64::*;

    /// The AVX2 twin of `rotate_scalar`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn rotate(ordering: RopeOrdering, x: &mut [f32], cache: &[f32]) {
        let n_rot = x.len();
        match ordering {
            RopeOrdering::Normal => {
                let (cd, sa) = cache.split_at(n_rot);
                // 8 is even, so no pair straddles the body and the tail.
                let body = n_rot - n_rot % 8;
                for ((c, cc), sc) in x[..body]
                    .chunks_exact_mut(8)
                    .zip(cd.chunks_exact(8))
                    .zip(sa.chunks_exact(8))
                {
                    let v = load(c);
                    let swapped = _mm256_permute_ps::<0b10_11_00_01>(v);
                    store(
                        c,
                        _mm256_fmadd_ps(v, load(cc), _mm256_mul_ps(swapped, load(sc))),
                    );
                }
                let tail = n_rot - body;
                let mut tail_cache = [0.0f32; 16];
                tail_cache[..tail].copy_from_slice(&cd[body..]);
                tail_cache[tail..2 * tail].copy_from_slice(&sa[body..]);
                rotate_scalar(ordering, &mut x[body..], &tail_cache[..2 * tail]);
            }
            RopeOrdering::Neox => {
                let half = n_rot / 2;
                let (cs, ss) = cache.split_at(half);
                let (lo, hi) = x.split_at_mut(half);
                let body = half - half % 8;
                for j in (0..body).step_by(8) {
                    let x0 = load(&lo[j..]);
                    let x1 = load(&hi[j..]);
                    let c = load(&cs[j..]);
                    let s = load(&ss[j..]);
                    store(&mut lo[j..], _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
                    store(&mut hi[j..], _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
                }
                for j in body..half {
                    let (x0, x1) = (lo[j], hi[j]);
                    lo[j] = x0 * cs[j] - x1 * ss[j];
                    hi[j] = x0 * ss[j] + x1 * cs[j];
                }
            }
        }
    }
}
