//! Gemma 3 (llama.cpp's `LLM_ARCH_GEMMA3`).
//!
//! Per layer: RMSNorm → Q, K, V → per-head RMSNorm of Q and K (QK-norm) →
//! NeoX RoPE → attention → output projection → RMSNorm (post-attention) →
//! residual; RMSNorm → GELU(gate) * up → down → RMSNorm (post-FFN) →
//! residual. The embedding is scaled by sqrt(n_embd) and tied to the output.
//! Facts not in the file, as llama.cpp has them (`llama-model.cpp`):
//! every 6th layer (index 5, 11, …) attends globally with the file's RoPE
//! base; the others use the sliding window with RoPE base 10000; every norm
//! weight is stored as `1 + w` and is used as stored.

use super::{Ends, HParams, Loader, Workspace};
use crate::backend::{AttentionParams, Backend, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};

/// RoPE base of the sliding-window layers (`rope_freq_base_train_swa`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// One layer in this many is global (`hparams.set_swa_pattern(6)`).
const SWA_PATTERN: usize = 6;

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    // (n_embd) -> (n_head * head_dim), (n_head_kv * head_dim) x2
    wq: B::Weight,
    wk: B::Weight,
    wv: B::Weight,
    q_norm: B::Weight, // (head_dim)
    k_norm: B::Weight, // (head_dim)
    wo: B::Weight,     // (n_head * head_dim) -> (n_embd)
    post_attn_norm: B::Weight,
    ffn_norm: B::Weight,
    gate: B::Weight, // (n_embd) -> (n_ff)
    up: B::Weight,   // (n_embd) -> (n_ff)
    down: B::Weight, // (n_ff) -> (n_embd)
    post_ffw_norm: B::Weight,
    global: bool,
}

pub struct Gemma3<B: Backend> {
    ends: Ends<B>,
    layers: Vec<Layer<B>>,
    rope_local: B::Rope,
    rope_global: B::Rope,
    window: usize,
}

impl<B: Backend> Gemma3<B> {
    pub(crate) fn load(l: &Loader<'_, B>, hp: &HParams) -> Result<Self> {
        let (d, hd, q_dim, kv_dim) = (hp.n_embd, hp.head_dim, hp.n_head * hp.head_dim, hp.kv_dim());
        let window = l.file.get_as::<usize>("gemma3.attention.sliding_window")?;
        if window == 0 {
            return Err(Error::HyperParameter {
                key: "gemma3.attention.sliding_window".into(),
                reason: "must be positive".into(),
            });
        }
        let layers = (0..hp.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: l.vector(&n("attn_norm"), d)?,
                    wq: l.matrix(&n("attn_q"), d, q_dim)?,
                    wk: l.matrix(&n("attn_k"), d, kv_dim)?,
                    wv: l.matrix(&n("attn_v"), d, kv_dim)?,
                    q_norm: l.vector(&n("attn_q_norm"), hd)?,
                    k_norm: l.vector(&n("attn_k_norm"), hd)?,
                    wo: l.matrix(&n("attn_output"), q_dim, d)?,
                    post_attn_norm: l.vector(&n("post_attention_norm"), d)?,
                    ffn_norm: l.vector(&n("ffn_norm"), d)?,
                    gate: l.matrix(&n("ffn_gate"), d, hp.n_ff)?,
                    up: l.matrix(&n("ffn_up"), d, hp.n_ff)?,
                    down: l.matrix(&n("ffn_down"), hp.n_ff, d)?,
                    post_ffw_norm: l.vector(&n("post_ffw_norm"), d)?,
                    global: i % SWA_PATTERN == SWA_PATTERN - 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rope = |freq_base| RopeConfig {
            head_dim: hd,
            n_rot: hp.n_rot,
            freq_base,
            freq_scale: hp.rope_scale,
            neox: true,
        };
        Ok(Gemma3 {
            ends: Ends::load(l, hp)?,
            layers,
            rope_local: l.backend.rope(&rope(LOCAL_ROPE_BASE))?,
            rope_global: l.backend.rope(&rope(hp.rope_base))?,
            window,
        })
    }

    pub(crate) fn layer_windows(&self) -> Vec<Option<usize>> {
        self.layers
            .iter()
            .map(|l| (!l.global).then_some(self.window))
            .collect()
    }

    pub(crate) fn forward(
        &self,
        be: &B,
        hp: &HParams,
        batch: &Batch,
        cache: &mut B::Cache,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let pos = batch.positions();
        // The scale is rounded to f32 before use, as llama.cpp does.
        let scale = (hp.n_embd as f32).sqrt();
        self.ends.embed(be, batch, scale, "inp_scaled", ws)?;
        // llama.cpp: f_attention_scale = 1/sqrt(head_dim) (except Gemma 3 27B).
        let mut params = AttentionParams::new(hp.n_head, hp.n_head_kv, hp.head_dim);
        params.scale = 1.0 / (hp.head_dim as f32).sqrt();
        let Workspace {
            x,
            h,
            q,
            k,
            v,
            attn,
            o,
            gate,
            up,
            tap,
            ..
        } = ws;
        for (il, ly) in self.layers.iter().enumerate() {
            be.rms_norm(x, &ly.attn_norm, hp.eps, h)?;
            tap.rows(be, "attn_norm", il, h)?;
            be.matmul(&ly.wq, h, q)?;
            be.matmul(&ly.wk, h, k)?;
            be.matmul(&ly.wv, h, v)?;
            be.rms_norm_heads(q, &ly.q_norm, hp.eps)?;
            be.rms_norm_heads(k, &ly.k_norm, hp.eps)?;
            tap.heads(be, "Qcur_normed", il, hp.n_head, q)?;
            tap.heads(be, "Kcur_normed", il, hp.n_head_kv, k)?;
            let rope = if ly.global {
                &self.rope_global
            } else {
                &self.rope_local
            };
            be.apply_rope(q, rope, hp.n_head, pos)?;
            be.apply_rope(k, rope, hp.n_head_kv, pos)?;
            tap.heads(be, "Qcur", il, hp.n_head, q)?;
            tap.heads(be, "Kcur", il, hp.n_head_kv, k)?;
            tap.heads(be, "Vcur", il, hp.n_head_kv, v)?;
            params.window = if ly.global { None } else { Some(self.window) };
            be.attention(cache, il, batch, q, k, v, &params, attn)?;
            tap.rows(be, "kqv_out", il, attn)?;
            be.matmul(&ly.wo, attn, o)?;
            tap.rows(be, "attn_out", il, o)?;
            be.rms_norm_inplace(o, &ly.post_attn_norm, hp.eps)?;
            tap.rows(be, "attn_post_norm", il, o)?;
            be.add(x, o)?;
            tap.rows(be, "sa_out", il, x)?;

            be.rms_norm(x, &ly.ffn_norm, hp.eps, h)?;
            tap.rows(be, "ffn_norm", il, h)?;
            be.matmul(&ly.gate, h, gate)?;
            be.matmul(&ly.up, h, up)?;
            tap.rows(be, "ffn_gate", il, gate)?;
            tap.rows(be, "ffn_up", il, up)?;
            be.gelu_mul(gate, up)?;
            tap.rows(be, "ffn_geglu", il, gate)?;
            be.matmul(&ly.down, gate, o)?;
            tap.rows(be, "ffn_out", il, o)?;
            be.rms_norm_inplace(o, &ly.post_ffw_norm, hp.eps)?;
            tap.rows(be, "ffn_post_norm", il, o)?;
            be.add(x, o)?;
            tap.rows(be, "l_out", il, x)?;
        }
        self.ends.logits(be, hp, batch, ws)
    }
}
