//! Transformer-layer operations (see the crate docs): f32 in, f32 out.
//!
//! Every op has a plain scalar reference (`*_scalar` or the [`Isa::Scalar`]
//! arm) and, where it pays, x86-64 AVX2+FMA and AVX-512 variants. The
//! variant is chosen at run time, once, by [`Isa::detect`]; a default build
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
use std::sync::OnceLock;

pub mod act;
pub mod attention;
pub mod norm;
pub mod rope;
pub mod softmax;

#[cfg(target_arch = "x86_64")]
pub mod x86;

/// The instruction set an op runs on.
///
/// A SIMD arm carries a token that can only be built after run-time feature
/// detection succeeded, so holding an `Isa` is proof that its arm is safe to
/// run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive] // more instruction sets will come (NEON, AVX-512 FP16)
pub enum Isa {
    /// Plain Rust; the reference every other arm is tested against.
    Scalar,
    /// AVX2 + FMA + F16C (Intel Haswell, AMD Zen and later).
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    /// AVX-512 F/BW/VL on top of AVX2 (Intel Skylake-SP, AMD Zen 4 and
    /// later). Ops without a 512-bit variant run their AVX2 one.
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
}

impl Isa {
    /// The best instruction set on this machine, detected on first call and
    /// cached for the life of the process.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if let Some(t) = x86::Avx512::new() {
                return Isa::Avx512(t);
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(t) = x86::Avx2::new() {
                return Isa::Avx2(t);
            }
            Isa::Scalar
        })
    }

    /// Every instruction set this machine can run, scalar first and the best
    /// last; what tests iterate over.
    pub fn all() -> Vec<Isa> {
        #[allow(unused_mut)] // only pushed to on x86-64
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = x86::Avx2::new() {
            v.push(Isa::Avx2(t));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = x86::Avx512::new() {
            v.push(Isa::Avx512(t));
        }
        v
    }

    /// A short name for logs and test messages.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => "avx512",
        }
    }
}

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
