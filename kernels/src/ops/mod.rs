//! Transformer-layer operations (see the crate docs): f32 in, f32 out.
//!
//! Every op has a plain scalar reference (`*_scalar` or the [`Isa::Scalar`]
//! arm) and, where it pays, x86-64 AVX2+FMA and AVX-512 variants. The
//! variant is chosen at run time, once, by [`Isa::detect`] (the crate's one
//! instruction-set choice, shared with the quant kernels); a default build
//! runs the fast path on whatever machine it lands on, and the scalar path
//! works on every target.
//! Each op also has a `*_with(isa, ..)` form so tests can run every variant
//! this machine supports against the scalar one.
//!
//! - [`norm`]: RMSNorm over a row and per attention head.
//! - [`rope`]: rotary position embedding, normal and NeoX pair orderings.
//! - [`softmax`]: numerically stable softmax with optional scale and mask.
//! - [`act`]: SiLU, tanh-GELU, their gated forms, element-wise add/mul/scale.
//! - [`attention`]: causal, grouped-query attention over an f16 or f32 KV
//!   cache with online softmax, serial and split across threads.

use std::fmt;

pub mod act;
pub mod attention;
pub mod norm;
pub mod rope;
pub mod softmax;

#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use crate::isa::Isa;

/// Operands whose shapes do not fit together. The message names the op and
/// the mismatching lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError {
    /// The op that rejected its operands, e.g. `"attention"`.
    pub op: &'static str,
    /// What did not fit.
    pub detail: String,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.detail)
    }
}

impl std::error::Error for ShapeError {}
