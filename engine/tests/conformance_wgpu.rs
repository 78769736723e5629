//! The WebGPU backend through the conformance suite (`conformance/`),
//! against the CPU backend (matmul and embed against the dequantized
//! weights, as for every backend).
//!
//! Thresholds (normalized error): matmul 5e-4, everything else 1e-6. Matmul
//! is held to the dequantized f32 product in f64, not to the CPU backend's
//! matmul, because the CPU rounds activations to 8 bits (its own error is
//! ~1e-3); the GPU keeps them in f32. Both backends round f16 keys and
//! values to nearest even, so an f16 cache is held to 1e-6 too.
//!
//! Measured on lavapipe (largest over formats and shapes): matmul 1.9e-6
//! (Q6_K), embed 2.8e-8, norms 1.1e-7, rope 3.7e-8, gelu/silu 1.8e-8,
//! add 0, attention 2.2e-7 (f32 and f16 caches).
//!
//! Runs on any adapter: in CI, Mesa's lavapipe. Without an adapter the
//! tests fail under CI and are skipped elsewhere. Below the one line that
//! runs the suite, the suite again over this backend's variants (each
//! matmul kernel, native and packed f16); the wgpu-only tests (WGSL
//! validation, split weights) are in `wgpu_ops.rs`.

#![cfg(feature = "wgpu")]

mod conformance;

use std::sync::OnceLock;

use conformance::{Oracle, Tolerances};
use hearth::backend::wgpu::{shaders, MatmulKernel, Wgpu};
use hearth::backend::KvType;

fn gpu() -> Option<&'static Wgpu> {
    static GPU: OnceLock<Result<Wgpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Wgpu::new().map_err(|e| e.to_string())) {
        Ok(g) => Some(g),
        Err(e) => hearth_tests::missing_gpu(e),
    }
}

pub const MATMUL_MAX: f64 = 5e-4;
pub const OP_MAX: f64 = 1e-6;

/// Every format with a WGSL kernel; f32 and f16 caches (Q8_0 is a typed
/// error, `wgpu_ops.rs`).
pub fn tolerances() -> Tolerances {
    Tolerances {
        oracle: Oracle::Cpu,
        formats: shaders::FORMATS.iter().map(|f| f.0).collect(),
        matmul: |_| MATMUL_MAX,
        round_activations: false,
        embed: OP_MAX,
        norm: OP_MAX,
        rope: OP_MAX,
        glu: OP_MAX,
        add: OP_MAX,
        attention: vec![(KvType::F32, OP_MAX), (KvType::F16, OP_MAX)],
    }
}

backend_conformance!(gpu(), tolerances());

#[test]
fn every_matmul_kernel_matches_the_dequantized_product() {
    if gpu().is_none() {
        return;
    }
    for kernel in [
        MatmulKernel::Workgroup,
        MatmulKernel::Rows,
        MatmulKernel::Subgroup,
    ] {
        let g = Wgpu::new().unwrap().with_matmul_kernel(kernel);
        // Subgroup falls back to Workgroup where the adapter has no subgroups.
        eprintln!("{kernel:?} (runs {:?})", g.matmul_kernel());
        conformance::matmul(&g, &tolerances());
    }
}

/// Both backends round keys and values to f16 (round to nearest even);
/// the threshold stays 1e-6 unless the adapter rounds differently. Run
/// with the native f16 kernels (`SHADER_F16` adapters; lavapipe has it)
/// and with the packed-u32 fallback, on the same adapter.
#[test]
fn attention_with_native_and_packed_f16_matches_the_cpu_backend() {
    if gpu().is_none() {
        return;
    }
    for native in [true, false] {
        let g = Wgpu::new().unwrap().with_f16_shaders(native);
        let has = g.adapter().shader_f16;
        assert_eq!(g.f16_shaders(), native && has, "f16 kernel choice");
        if native && !has {
            eprintln!(
                "{}: no SHADER_F16, the native f16 path is not exercised",
                g.adapter().name
            );
        }
        let tol = Tolerances {
            attention: vec![(KvType::F16, OP_MAX)],
            ..tolerances()
        };
        conformance::attention(&g, &tol);
    }
}
