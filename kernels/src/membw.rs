//! The memory-bandwidth probe: a streaming read, the speed of light of a
//! decode step (every weight byte read once per token). `hearth bench
//! --membw` and the `membw` criterion suite both measure with it.

use rayon::prelude::*;

use crate::Isa;

/// Bytes each rayon task of [`par_sum`] reads: small enough for the
/// threads to balance, large enough that scheduling is noise.
pub const TASK_BYTES: usize = 8 << 20;

fn sum_scalar(x: &[u64]) -> u64 {
    x.iter().fold(0u64, |a, &v| a.wrapping_add(v))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_avx2(x: &[u64]) -> u64 {
    sum_scalar(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_avx512(x: &[u64]) -> u64 {
    sum_scalar(x)
}

/// The wrapping sum of `x` with the widest loads this CPU has: the same
/// loop compiled per ISA (LLVM vectorises and unrolls an integer sum).
pub fn sum(x: &[u64]) -> u64 {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512 F on this CPU.
        Isa::Avx512(_) => unsafe { sum_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2 on this CPU.
        Isa::Avx2(_) => unsafe { sum_avx2(x) },
        _ => sum_scalar(x),
    }
}

/// [`sum`] in tasks of [`TASK_BYTES`] on the current rayon pool.
pub fn par_sum(x: &[u64]) -> u64 {
    x.par_chunks(TASK_BYTES / 8)
        .map(sum)
        .reduce(|| 0, u64::wrapping_add)
}
