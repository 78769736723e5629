//! `--backend wgpu` in a build without the `wgpu` feature: the same names
//! as `backend/wgpu/`, and a typed error where a device would be opened.

use std::convert::Infallible;
use std::sync::Arc;

use hearth_gguf::TensorInfo;

use super::{AttentionParams, Backend, CacheSpec, ModelFile, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};

/// An adapter as `hearth info --gpus` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
}

/// Time spent in one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: &'static str,
    pub calls: usize,
    pub ms: f64,
}

/// No adapters: this build has no WebGPU backend.
pub fn list_adapters() -> Vec<AdapterSummary> {
    Vec::new()
}

/// The WebGPU backend, which this build lacks: it cannot be made.
pub struct Wgpu(Infallible);

impl Wgpu {
    pub fn new() -> Result<Wgpu> {
        Wgpu::with_options(false)
    }

    pub fn with_options(_profile: bool) -> Result<Wgpu> {
        Err(Error::Gpu(
            "this hearth was built without the `wgpu` feature (cargo build --features wgpu)".into(),
        ))
    }

    pub fn adapter(&self) -> &AdapterSummary {
        match self.0 {}
    }

    pub fn profiling(&self) -> bool {
        match self.0 {}
    }

    pub fn take_profile(&self) -> Vec<KernelTime> {
        match self.0 {}
    }
}

impl Backend for Wgpu {
    type Weight = Infallible;
    type Tensor = Infallible;
    type Cache = Infallible;
    type Rope = Infallible;

    fn name(&self) -> &'static str {
        "wgpu"
    }
    fn load_matrix(&self, _: &Arc<ModelFile>, _: &TensorInfo) -> Result<Infallible> {
        match self.0 {}
    }
    fn load_vector(&self, _: &Arc<ModelFile>, _: &TensorInfo) -> Result<Infallible> {
        match self.0 {}
    }
    fn new_tensor(&self) -> Infallible {
        match self.0 {}
    }
    fn new_cache(&self, _: &CacheSpec) -> Result<Infallible> {
        match self.0 {}
    }
    fn clear_seq(&self, _: &mut Infallible, _: usize) -> Result<()> {
        match self.0 {}
    }
    fn rope(&self, _: &RopeConfig) -> Result<Infallible> {
        match self.0 {}
    }
    fn embed(&self, _: &Infallible, _: &[u32], _: f32, _: &mut Infallible) -> Result<()> {
        match self.0 {}
    }
    fn matmul(&self, _: &Infallible, _: &Infallible, _: &mut Infallible) -> Result<()> {
        match self.0 {}
    }
    fn add_bias(&self, _: &mut Infallible, _: &Infallible) -> Result<()> {
        match self.0 {}
    }
    fn rms_norm(&self, _: &Infallible, _: &Infallible, _: f32, _: &mut Infallible) -> Result<()> {
        match self.0 {}
    }
    fn rms_norm_inplace(&self, _: &mut Infallible, _: &Infallible, _: f32) -> Result<()> {
        match self.0 {}
    }
    fn rms_norm_heads(&self, _: &mut Infallible, _: &Infallible, _: f32) -> Result<()> {
        match self.0 {}
    }
    fn apply_rope(&self, _: &mut Infallible, _: &Infallible, _: usize, _: &[i32]) -> Result<()> {
        match self.0 {}
    }
    fn attention(
        &self,
        _: &mut Infallible,
        _: usize,
        _: &Batch,
        _: &Infallible,
        _: &Infallible,
        _: &Infallible,
        _: &AttentionParams,
        _: &mut Infallible,
    ) -> Result<()> {
        match self.0 {}
    }
    fn commit(&self, _: &mut Infallible, _: &Batch) -> Result<()> {
        match self.0 {}
    }
    fn gelu_mul(&self, _: &mut Infallible, _: &Infallible) -> Result<()> {
        match self.0 {}
    }
    fn silu_mul(&self, _: &mut Infallible, _: &Infallible) -> Result<()> {
        match self.0 {}
    }
    fn add(&self, _: &mut Infallible, _: &Infallible) -> Result<()> {
        match self.0 {}
    }
    fn select_rows(&self, _: &Infallible, _: &[usize], _: &mut Infallible) -> Result<()> {
        match self.0 {}
    }
    fn read(&self, _: &Infallible, _: &mut Vec<f32>) -> Result<(usize, usize)> {
        match self.0 {}
    }
    fn write(&self, _: &mut Infallible, _: usize, _: usize, _: &[f32]) -> Result<()> {
        match self.0 {}
    }
}
