//! The CPU backend through the conformance suite (`conformance/`), against
//! plain f64 code: against itself it would prove nothing.
//!
//! Thresholds (normalized error), with the largest error measured here
//! (x86-64, AVX2 kernels):
//! - matmul 1e-5 (measured 1.8e-6, Q6_K, one output), against the product
//!   with the activations rounded as the CPU rounds them (to the weight
//!   format's `vec_dot_type`, Q8_0 / Q8_1 / Q8_K blocks); unrounded, the
//!   error is ~4e-3 and a single dot near 0 reaches 1e-1. Q4_1 and Q5_1:
//!   1e-3 (measured 5.8e-4), because Q8_1 keeps each block's sum in f16,
//!   as ggml does, and the min term uses that sum.
//! - embed 1e-6 (measured 2.8e-8): the dequantized rows.
//! - rms_norm (all three) 1e-6 (6.4e-8), rope 1e-6 (4.7e-8), gelu_mul and
//!   silu_mul 1e-6 (5.8e-8), add and add_bias 1e-6 (2.9e-8).
//! - attention 1e-6 for f32, f16 and Q8_0 caches (measured 1.3e-7, 1.3e-7,
//!   1.6e-7): the f64 reference rounds keys and values as the cache does.

mod conformance;

use std::sync::OnceLock;

use conformance::{Oracle, Tolerances};
use hearth::backend::cpu::{kernel_format, Cpu};
use hearth::backend::KvType;
use hearth_gguf::GgmlType;
use hearth_kernels::quant::{kernels, Format};

fn cpu() -> Option<&'static Cpu> {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    Some(CPU.get_or_init(Cpu::new))
}

/// Every weight format the CPU reads and can quantize test data into.
fn formats() -> Vec<Format> {
    Format::ALL
        .into_iter()
        .filter(|&f| {
            let k = kernels(f);
            k.quantize_row.is_some()
                && k.vec_dot.is_some()
                && GgmlType::ALL.iter().any(|&t| kernel_format(t) == Some(f))
        })
        .collect()
}

fn tolerances() -> Tolerances {
    Tolerances {
        oracle: Oracle::Scalar,
        formats: formats(),
        matmul: |f| match f {
            Format::Q4_1 | Format::Q5_1 => 1e-3,
            _ => 1e-5,
        },
        round_activations: true,
        embed: 1e-6,
        norm: 1e-6,
        rope: 1e-6,
        glu: 1e-6,
        add: 1e-6,
        attention: vec![
            (KvType::F32, 1e-6),
            (KvType::F16, 1e-6),
            (KvType::Q8_0, 1e-6),
        ],
    }
}

backend_conformance!(cpu(), tolerances());
