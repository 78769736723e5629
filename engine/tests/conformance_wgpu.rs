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
//! Runs on any adapter: in CI, Mesa's lavapipe. Without an adapter the
//! tests fail under CI and are skipped elsewhere. The wgpu-only tests
//! (WGSL validation, each matmul kernel, split weights, the f16 paths) are
//! in `wgpu_ops.rs`.

#![cfg(feature = "wgpu")]

mod conformance;

use std::sync::OnceLock;

use conformance::{Oracle, Tolerances};
use hearth::backend::wgpu::{shaders, Wgpu};
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
