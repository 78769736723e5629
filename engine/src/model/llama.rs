//! The Llama family (llama.cpp's `LLM_ARCH_LLAMA`, `LLM_ARCH_QWEN2`,
//! `LLM_ARCH_QWEN3`): Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2, Qwen3.
//!
//! Per layer: RMSNorm → Q, K, V (Qwen2: with biases; Qwen3: per-head
//! RMSNorm of Q and K) → RoPE (normal ordering for Llama, NeoX for Qwen) →
//! attention (grouped-query) → output projection → residual; RMSNorm →
//! SiLU(gate) * up → down → residual. The output matrix falls back to the
//! token embedding when the file has none (tied embeddings).

use super::{Ends, HParams, Loader, Workspace};
use crate::backend::{AttentionParams, Backend, RopeConfig};
use crate::batch::Batch;
use crate::error::Result;

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    wq: B::Weight, // (n_embd) -> (n_head * head_dim)
    wk: B::Weight, // (n_embd) -> (n_head_kv * head_dim)
    wv: B::Weight,
    bias: Option<[B::Weight; 3]>,    // Qwen2: q, k, v biases
    qk_norm: Option<[B::Weight; 2]>, // Qwen3: (head_dim) each
    wo: B::Weight,                   // (n_head * head_dim) -> (n_embd)
    ffn_norm: B::Weight,
    gate: B::Weight, // (n_embd) -> (n_ff)
    up: B::Weight,
    down: B::Weight, // (n_ff) -> (n_embd)
}

pub struct Llama<B: Backend> {
    ends: Ends<B>,
    layers: Vec<Layer<B>>,
    rope: B::Rope,
}

impl<B: Backend> Llama<B> {
    pub(crate) fn load(l: &Loader<'_, B>, hp: &HParams) -> Result<Self> {
        let (d, hd, q_dim, kv_dim) = (hp.n_embd, hp.head_dim, hp.n_head * hp.head_dim, hp.kv_dim());
        let qwen2 = hp.arch == "qwen2";
        let qwen3 = hp.arch == "qwen3";
        let layers = (0..hp.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                Ok(Layer {
                    attn_norm: l.vector(&n("attn_norm"), d)?,
                    wq: l.matrix(&n("attn_q"), d, q_dim)?,
                    wk: l.matrix(&n("attn_k"), d, kv_dim)?,
                    wv: l.matrix(&n("attn_v"), d, kv_dim)?,
                    bias: if qwen2 {
                        Some([
                            l.vector(&b("attn_q"), q_dim)?,
                            l.vector(&b("attn_k"), kv_dim)?,
                            l.vector(&b("attn_v"), kv_dim)?,
                        ])
                    } else {
                        None
                    },
                    qk_norm: if qwen3 {
                        Some([
                            l.vector(&n("attn_q_norm"), hd)?,
                            l.vector(&n("attn_k_norm"), hd)?,
                        ])
                    } else {
                        None
                    },
                    wo: l.matrix(&n("attn_output"), q_dim, d)?,
                    ffn_norm: l.vector(&n("ffn_norm"), d)?,
                    gate: l.matrix(&n("ffn_gate"), d, hp.n_ff)?,
                    up: l.matrix(&n("ffn_up"), d, hp.n_ff)?,
                    down: l.matrix(&n("ffn_down"), hp.n_ff, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Llama {
            ends: Ends::load(l, hp)?,
            layers,
            rope: l.backend.rope(&RopeConfig {
                head_dim: hd,
                n_rot: hp.n_rot,
                freq_base: hp.rope_base,
                freq_scale: hp.rope_scale,
                // llama.cpp's llama_model_rope_type: NORM for llama, NEOX for qwen2/qwen3.
                neox: qwen2 || qwen3,
            })?,
        })
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
        self.ends.embed(be, batch, 1.0, "embd", ws)?;
        let params = AttentionParams::new(hp.n_head, hp.n_head_kv, hp.head_dim);
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
            if let Some([bq, bk, bv]) = &ly.bias {
                be.add_bias(q, bq)?;
                be.add_bias(k, bk)?;
                be.add_bias(v, bv)?;
            }
            if let Some([qn, kn]) = &ly.qk_norm {
                be.rms_norm_heads(q, qn, hp.eps)?;
                be.rms_norm_heads(k, kn, hp.eps)?;
                tap.heads(be, "Qcur_normed", il, hp.n_head, q)?;
                tap.heads(be, "Kcur_normed", il, hp.n_head_kv, k)?;
            }
            be.apply_rope(q, &self.rope, hp.n_head, pos)?;
            be.apply_rope(k, &self.rope, hp.n_head_kv, pos)?;
            tap.heads(be, "Qcur", il, hp.n_head, q)?;
            tap.heads(be, "Kcur", il, hp.n_head_kv, k)?;
            tap.heads(be, "Vcur", il, hp.n_head_kv, v)?;
            be.attention(cache, il, batch, q, k, v, &params, attn)?;
            tap.rows(be, "kqv_out", il, attn)?;
            be.matmul(&ly.wo, attn, o)?;
            tap.rows(be, "attn_out", il, o)?;
            be.add(x, o)?;
            tap.rows(be, "ffn_inp", il, x)?;

            be.rms_norm(x, &ly.ffn_norm, hp.eps, h)?;
            tap.rows(be, "ffn_norm", il, h)?;
            be.matmul(&ly.gate, h, gate)?;
            be.matmul(&ly.up, h, up)?;
            tap.rows(be, "ffn_gate", il, gate)?;
            tap.rows(be, "ffn_up", il, up)?;
            be.silu_mul(gate, up)?;
            tap.rows(be, "ffn_swiglu", il, gate)?;
            be.matmul(&ly.down, gate, o)?;
            tap.rows(be, "ffn_out", il, o)?;
            be.add(x, o)?;
            tap.rows(be, "l_out", il, x)?;
        }
        self.ends.logits(be, hp, batch, ws)
    }
}
