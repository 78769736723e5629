//! The crate's one run-time instruction-set choice.
//!
//! [`Isa::detect`] asks the CPU once and caches the answer; every op and
//! every quant kernel set is chosen from it. A SIMD arm carries a token that
//! can only be built after run-time feature detection succeeded, so holding
//! an `Isa` is proof that its arm is safe to run here (memchr's pattern:
//! `Avx2::new() -> Option<Self>`, `#[target_feature]` inner functions).

use std::sync::OnceLock;

/// The instruction set a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive] // more instruction sets will come (NEON, AVX-512 FP16)
pub enum Isa {
    /// Plain Rust; the reference every other arm is tested against.
    Scalar,
    /// AVX2 + FMA + F16C (Intel Haswell, AMD Zen and later).
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    /// AVX-512 F/BW/VL on top of AVX2 (Intel Skylake-SP, AMD Zen 4 and
    /// later). Kernels without a 512-bit variant run their AVX2 one; the
    /// quant kernels' 512-bit variants need VNNI too ([`Isa::avx512_vnni`]).
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
}

impl Isa {
    /// The best instruction set on this machine, detected on first call and
    /// cached for the life of the process.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| *Isa::all().last().unwrap_or(&Isa::Scalar))
    }

    /// Every instruction set this machine can run, scalar first and the best
    /// last; what tests iterate over.
    pub fn all() -> Vec<Isa> {
        #[allow(unused_mut)] // only pushed to on x86-64
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = Avx2::new() {
            v.push(Isa::Avx2(t));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = Avx512::new() {
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

    /// The AVX2 token this ISA includes, if any.
    #[cfg(target_arch = "x86_64")]
    pub fn avx2(self) -> Option<Avx2> {
        match self {
            Isa::Scalar => None,
            Isa::Avx2(t) => Some(t),
            Isa::Avx512(t) => Some(t.avx2()),
        }
    }

    /// The AVX-512 VNNI token, if this ISA is AVX-512 on a CPU with VNNI
    /// (Intel Cascade Lake, AMD Zen 4 and later): what the quant kernels'
    /// 512-bit integer dot products (`vpdpbusd`, `vpdpwssd`) and activation
    /// quantizers need.
    #[cfg(target_arch = "x86_64")]
    pub fn avx512_vnni(self) -> Option<Avx512Vnni> {
        match self {
            Isa::Avx512(t) => t.vnni(),
            _ => None,
        }
    }
}

/// Proof that this CPU has AVX2, FMA and F16C. Build it with [`Avx2::new`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2 {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `Some` when the running CPU supports AVX2, FMA and F16C.
    ///
    /// `is_x86_feature_detected!` caches its answer; [`Isa::detect`] caches
    /// the resulting choice on top.
    pub fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some(Avx2 { _private: () })
    }
}

/// Proof that this CPU has AVX-512 F, BW and VL, and AVX2, FMA and F16C
/// (which every AVX-512 CPU has). Build it with [`Avx512::new`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512 {
    _private: (),
}

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// `Some` when the running CPU supports AVX-512 F/BW/VL and [`Avx2`]'s
    /// set.
    pub fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && Avx2::new().is_some())
        .then_some(Avx512 { _private: () })
    }

    /// The AVX2 set, which AVX-512 implies here (checked by [`Avx512::new`]).
    pub fn avx2(self) -> Avx2 {
        Avx2 { _private: () }
    }

    /// The VNNI token, when this CPU has AVX-512 VNNI and DQ too.
    pub fn vnni(self) -> Option<Avx512Vnni> {
        (is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512dq"))
            .then_some(Avx512Vnni { _private: () })
    }
}

/// Proof that this CPU has AVX-512 F/BW/VL/DQ with VNNI, and AVX2, FMA and
/// F16C: the feature set the quant kernels' 512-bit variants are compiled
/// for (every CPU with VNNI has DQ: Cascade Lake, Ice Lake, Zen 4). Only
/// [`Avx512::vnni`] builds it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx512Vnni {
    _private: (),
}
