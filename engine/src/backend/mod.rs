//! The backend contract: the op set model code is written against.
//!
//! Model code never asks which device it runs on. Weights are made usable
//! once at load ([`Backend::load_matrix`], [`Backend::load_vector`]: the CPU
//! maps them in place, a GPU uploads them); activations ([`Backend::Tensor`])
//! and the KV cache ([`Backend::Cache`]) are owned by the backend. Every op
//! takes whole tensors of `rows x cols` f32 (rows are tokens), so a GPU
//! implementation can record them into one command stream.

pub mod cpu;
pub mod kv;
pub mod profile;
#[cfg(feature = "wgpu")]
pub mod wgpu;
/// Without the `wgpu` feature: the same names, and a typed error.
#[cfg(not(feature = "wgpu"))]
#[path = "wgpu_unavailable.rs"]
pub mod wgpu;

use std::sync::Arc;

use hearth_gguf::{Gguf, Mmap, TensorInfo};
pub use hearth_kernels::ops::attention::AttentionParams;

use crate::batch::Batch;
use crate::error::Result;

/// A model file shared by the model and, on the CPU, by its weights.
pub type ModelFile = Gguf<Mmap>;

/// How RoPE rotates a head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig {
    pub head_dim: usize,
    /// Dims rotated (the rest pass through).
    pub n_rot: usize,
    pub freq_base: f32,
    /// Linear scaling: positions are multiplied by this.
    pub freq_scale: f32,
    /// NeoX ordering (pairs `i`, `i + n_rot/2`) rather than adjacent pairs.
    pub neox: bool,
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    #[default]
    F16,
    F32,
    /// ggml's Q8_0 blocks: 8.5 bits per value, half the memory of f16
    /// (rows must be whole blocks of 32).
    Q8_0,
}

/// Shape of a KV cache: per sequence and layer, rows of `kv_dim` keys and
/// values for up to `n_ctx` positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    pub n_layer: usize,
    pub n_seq: usize,
    pub n_ctx: usize,
    /// `n_head_kv * head_dim`.
    pub kv_dim: usize,
    pub kv_type: KvType,
    /// Per layer, the sliding window if the layer has one: such a layer keeps
    /// only `window + n_batch` rows (a ring), not `n_ctx`.
    pub windows: Vec<Option<usize>>,
    /// Most tokens of one sequence in one batch.
    pub n_batch: usize,
}

impl CacheSpec {
    /// Rows kept for `layer`: a windowed layer needs the window behind the
    /// first query of a batch plus the batch itself.
    pub fn capacity(&self, layer: usize) -> usize {
        match self.windows.get(layer).copied().flatten() {
            Some(w) => self.n_ctx.min(w.saturating_add(self.n_batch)),
            None => self.n_ctx,
        }
    }

    /// How much of a sequence's cached prefix can be kept when its history
    /// of `filled` positions is cut back to its first `keep` positions.
    ///
    /// A global layer keeps every position, but a sliding-window layer's
    /// ring (see [`capacity`](Self::capacity)) has overwritten position `p`
    /// once position `p + capacity` was written. The first query after the
    /// cut (position `keep`) needs its window `keep + 1 - window .. keep`, so
    /// the cut is usable only if none of those were overwritten; a shorter
    /// prefix only needs older positions, so the answer is `keep` or 0.
    pub fn reusable_prefix(&self, filled: usize, keep: usize) -> usize {
        let keep = keep.min(filled);
        let intact = (0..self.n_layer).all(|layer| {
            let Some(window) = self.windows.get(layer).copied().flatten() else {
                return true;
            };
            let oldest_needed = (keep + 1).saturating_sub(window);
            keep == 0 || oldest_needed + self.capacity(layer) >= filled
        });
        if intact {
            keep
        } else {
            0
        }
    }
}

/// A compute backend. See the module docs.
pub trait Backend: Sync {
    type Weight: Send + Sync;
    type Tensor: Send;
    type Cache: Send;
    type Rope: Send + Sync;

    fn name(&self) -> &'static str;

    /// A weight matrix (`dims = [cols, rows]`) for `matmul` and `embed`.
    fn load_matrix(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<Self::Weight>;
    /// A weight vector (norm weights, biases), as f32.
    fn load_vector(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<Self::Weight>;
    /// An empty activation tensor; ops size their outputs.
    fn new_tensor(&self) -> Self::Tensor;
    fn new_cache(&self, spec: &CacheSpec) -> Result<Self::Cache>;
    /// Empties sequence `seq` of the cache.
    fn clear_seq(&self, cache: &mut Self::Cache, seq: usize) -> Result<()>;
    fn rope(&self, cfg: &RopeConfig) -> Result<Self::Rope>;

    /// `out[t] = w.row(ids[t]) * scale`: embedding lookup.
    fn embed(
        &self,
        w: &Self::Weight,
        ids: &[u32],
        scale: f32,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// `out[t][r] = w.row(r) . x[t]`.
    fn matmul(&self, w: &Self::Weight, x: &Self::Tensor, out: &mut Self::Tensor) -> Result<()>;
    /// `x[t] += b`.
    fn add_bias(&self, x: &mut Self::Tensor, b: &Self::Weight) -> Result<()>;
    /// RMSNorm of each row of `x` times `w`, into `out`.
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        w: &Self::Weight,
        eps: f32,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// RMSNorm of each row in place.
    fn rms_norm_inplace(&self, x: &mut Self::Tensor, w: &Self::Weight, eps: f32) -> Result<()>;
    /// RMSNorm of each head (`w.len()` values) of each row, in place.
    fn rms_norm_heads(&self, x: &mut Self::Tensor, w: &Self::Weight, eps: f32) -> Result<()>;
    /// RoPE on each head of each row, row `t` at `positions[t]`.
    fn apply_rope(
        &self,
        x: &mut Self::Tensor,
        rope: &Self::Rope,
        n_heads: usize,
        positions: &[i32],
    ) -> Result<()>;
    /// Stores the batch's `k`, `v` rows in the cache of `layer` at their
    /// sequences and positions, then attends each query row over its
    /// sequence's cache.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        batch: &Batch,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        params: &AttentionParams,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// Marks the batch's positions as filled in the cache (after all layers).
    fn commit(&self, cache: &mut Self::Cache, batch: &Batch) -> Result<()>;
    /// `a = gelu(a) * b` (tanh approximation).
    fn gelu_mul(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `a = silu(a) * b`.
    fn silu_mul(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `a += b`.
    fn add(&self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// `x *= s`, every value (Granite's residual and logit scales).
    ///
    /// The default goes through the host ([`read`](Self::read), then
    /// [`write`](Self::write)): correct on any backend, a round trip on a
    /// device; a backend overrides it with a kernel.
    fn scale(&self, x: &mut Self::Tensor, s: f32) -> Result<()> {
        map_on_host(self, x, |v| v * s)
    }
    /// `x = cap * tanh(x / cap)`, every value (Gemma 2's final logit
    /// soft-capping, in llama.cpp's order: scale, tanh, scale). The default
    /// goes through the host, as for [`scale`](Self::scale).
    fn softcap(&self, x: &mut Self::Tensor, cap: f32) -> Result<()> {
        map_on_host(self, x, |v| (v * (1.0 / cap)).tanh() * cap)
    }
    /// `out = x[rows]`.
    fn select_rows(&self, x: &Self::Tensor, rows: &[usize], out: &mut Self::Tensor) -> Result<()>;
    /// Copies `x` to the host: `out` gets `rows * cols` values; returns `(rows, cols)`.
    fn read(&self, x: &Self::Tensor, out: &mut Vec<f32>) -> Result<(usize, usize)>;
    /// Copies `rows x cols` host values into `x` (the inverse of
    /// [`read`](Self::read)): how a test, or a caller with its own
    /// activations, hands them to any backend.
    fn write(&self, x: &mut Self::Tensor, rows: usize, cols: usize, data: &[f32]) -> Result<()>;
}

/// Applies `f` to every value of `x` on the host: the default of the
/// element-wise ops a backend has no kernel for.
fn map_on_host<B: Backend + ?Sized>(
    be: &B,
    x: &mut B::Tensor,
    f: impl Fn(f32) -> f32,
) -> Result<()> {
    let mut host = Vec::new();
    let (rows, cols) = be.read(x, &mut host)?;
    host.iter_mut().for_each(|v| *v = f(*v));
    be.write(x, rows, cols, &host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n_ctx: usize, window: usize, n_batch: usize) -> CacheSpec {
        CacheSpec {
            n_layer: 2,
            n_seq: 1,
            n_ctx,
            kv_dim: 8,
            kv_type: KvType::F32,
            windows: vec![None, Some(window)],
            n_batch,
        }
    }

    #[test]
    fn a_prefix_is_reusable_only_while_the_ring_still_holds_its_window() {
        // Window 8, batches of 4: the windowed layer keeps 12 positions.
        let s = spec(100, 8, 4);
        assert_eq!(s.capacity(1), 12);
        // Nothing wrapped yet: any cut is fine.
        assert_eq!(s.reusable_prefix(12, 5), 5);
        // History of 40: position p was overwritten once p + 12 <= 39. The
        // query at `keep` needs keep - 7 ..= keep - 1.
        assert_eq!(s.reusable_prefix(40, 39), 39);
        assert_eq!(s.reusable_prefix(40, 35), 35); // needs 28.., kept 28..39
        assert_eq!(s.reusable_prefix(40, 34), 0); // needs 27, overwritten by 39
        assert_eq!(s.reusable_prefix(40, 5), 0);
        assert_eq!(s.reusable_prefix(40, 0), 0);
        // keep is clamped to what the cache holds.
        assert_eq!(s.reusable_prefix(10, 50), 10);
        // A cache made for batches of a whole context never wraps.
        let s = spec(100, 8, 100);
        assert_eq!(s.reusable_prefix(100, 1), 1);
    }
}
