//! The Llama family (llama.cpp's `LLM_ARCH_LLAMA`, `LLM_ARCH_QWEN2`,
//! `LLM_ARCH_QWEN3`, `LLM_ARCH_GRANITE`): Llama 2/3, Mistral, TinyLlama,
//! SmolLM, Qwen2, Qwen3, IBM Granite (dense).
//!
//! Per layer: RMSNorm → Q, K, V (Qwen2: with biases; Qwen3: per-head
//! RMSNorm of Q and K) → RoPE (normal ordering for Llama, NeoX for Qwen) →
//! attention (grouped-query) → output projection → residual; RMSNorm →
//! SiLU(gate) * up → down → residual. The output matrix falls back to the
//! token embedding when the file has none (tied embeddings).
//!
//! Granite's multipliers, as llama.cpp reads them (`models/granite.cpp`,
//! `llama-graph.cpp`'s `build_inp_embd`): the embedding times
//! `embedding_scale`; attention scaled by `attention.scale` in place of
//! `1/sqrt(head_dim)`; each block's output (attention after its projection,
//! FFN after down) times `residual_scale` before it joins the residual; the
//! logits divided by `logit_scale` (required). An absent or zero optional
//! multiplier is no multiplier. Granite may carry biases on the attention
//! output and the FFN projections, and `rope.scaling.finetuned = false`
//! turns RoPE off.

use super::{Ends, HParams, Loader, Workspace};
use crate::backend::{AttentionParams, Backend, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    wq: B::Weight, // (n_embd) -> (n_head * head_dim)
    wk: B::Weight, // (n_embd) -> (n_head_kv * head_dim)
    wv: B::Weight,
    bias: Option<[B::Weight; 3]>,    // Qwen2: q, k, v biases
    qk_norm: Option<[B::Weight; 2]>, // Qwen3: (head_dim) each
    wo: B::Weight,                   // (n_head * head_dim) -> (n_embd)
    wo_b: Option<B::Weight>,         // Granite: (n_embd)
    ffn_norm: B::Weight,
    ffn_b: [Option<B::Weight>; 3], // Granite: gate, up (n_ff), down (n_embd) biases
    gate: B::Weight,               // (n_embd) -> (n_ff)
    up: B::Weight,
    down: B::Weight, // (n_ff) -> (n_embd)
}

/// Granite's multipliers, each `None` where it is absent (or zero).
#[derive(Clone, Copy, Debug, Default)]
struct Scales {
    embedding: Option<f32>,
    residual: Option<f32>,
    attention: Option<f32>,
}

pub struct Llama<B: Backend> {
    ends: Ends<B>,
    layers: Vec<Layer<B>>,
    rope: Option<B::Rope>, // None: Granite with `rope.scaling.finetuned = false`
    scales: Scales,
}

/// An optional multiplier: absent or zero is none (llama.cpp's test
/// `f != 0.0f`); otherwise finite.
fn multiplier(l: &Loader<'_, impl Backend>, key: &str) -> Result<Option<f32>> {
    match l.file.get_opt_as::<f32>(key)? {
        None | Some(0.0) => Ok(None),
        Some(f) if f.is_finite() => Ok(Some(f)),
        Some(f) => Err(Error::HyperParameter {
            key: key.into(),
            reason: format!("{f} is not finite"),
        }),
    }
}

impl<B: Backend> Llama<B> {
    pub(crate) fn load(l: &Loader<'_, B>, hp: &HParams) -> Result<Self> {
        let (d, hd, q_dim, kv_dim) = (hp.n_embd, hp.head_dim, hp.n_head * hp.head_dim, hp.kv_dim());
        let qwen2 = hp.arch == "qwen2";
        let qwen3 = hp.arch == "qwen3";
        let granite = hp.arch == "granite";
        let opt = |name: String, len: usize| -> Result<Option<B::Weight>> {
            if granite && l.has(&name) {
                l.vector(&name, len).map(Some)
            } else {
                Ok(None)
            }
        };
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
                    wo_b: opt(b("attn_output"), d)?,
                    ffn_norm: l.vector(&n("ffn_norm"), d)?,
                    ffn_b: [
                        opt(b("ffn_gate"), hp.n_ff)?,
                        opt(b("ffn_up"), hp.n_ff)?,
                        opt(b("ffn_down"), d)?,
                    ],
                    gate: l.matrix(&n("ffn_gate"), d, hp.n_ff)?,
                    up: l.matrix(&n("ffn_up"), d, hp.n_ff)?,
                    down: l.matrix(&n("ffn_down"), hp.n_ff, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut ends = Ends::load(l, hp)?;
        let mut scales = Scales::default();
        let mut with_rope = true;
        if granite {
            let key = |k: &str| format!("granite.{k}");
            scales = Scales {
                embedding: multiplier(l, &key("embedding_scale"))?,
                residual: multiplier(l, &key("residual_scale"))?,
                attention: multiplier(l, &key("attention.scale"))?,
            };
            // Required by llama.cpp; the logits are divided by it.
            let logit_scale: f32 = l.file.get_as(&key("logit_scale"))?;
            if !logit_scale.is_finite() || logit_scale == 0.0 {
                return Err(Error::HyperParameter {
                    key: key("logit_scale"),
                    reason: format!("{logit_scale} must be finite and non-zero"),
                });
            }
            ends.logit_mul = 1.0 / logit_scale;
            with_rope = l
                .file
                .get_opt_as::<bool>(&key("rope.scaling.finetuned"))?
                .unwrap_or(true);
        }
        let rope = if with_rope {
            Some(l.backend.rope(&RopeConfig {
                head_dim: hd,
                n_rot: hp.n_rot,
                freq_base: hp.rope_base,
                freq_scale: hp.rope_scale,
                // llama.cpp's llama_model_rope_type: NORM for llama and
                // granite, NEOX for qwen2/qwen3.
                neox: qwen2 || qwen3,
            })?)
        } else {
            None
        };
        Ok(Llama {
            ends,
            layers,
            rope,
            scales,
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
        let s = self.scales;
        self.ends
            .embed(be, batch, s.embedding.unwrap_or(1.0), "embd", ws)?;
        let mut params = AttentionParams::new(hp.n_head, hp.n_head_kv, hp.head_dim);
        if let Some(a) = s.attention {
            params.scale = a;
        }
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
            if let Some(rope) = &self.rope {
                be.apply_rope(q, rope, hp.n_head, pos)?;
                be.apply_rope(k, rope, hp.n_head_kv, pos)?;
            }
            tap.heads(be, "Qcur", il, hp.n_head, q)?;
            tap.heads(be, "Kcur", il, hp.n_head_kv, k)?;
            tap.heads(be, "Vcur", il, hp.n_head_kv, v)?;
            be.attention(cache, il, batch, q, k, v, &params, attn)?;
            tap.rows(be, "kqv_out", il, attn)?;
            be.matmul(&ly.wo, attn, o)?;
            if let Some(b) = &ly.wo_b {
                be.add_bias(o, b)?;
            }
            tap.rows(be, "attn_out", il, o)?;
            if let Some(r) = s.residual {
                be.scale(o, r)?;
            }
            be.add(x, o)?;
            tap.rows(be, "ffn_inp", il, x)?;

            be.rms_norm(x, &ly.ffn_norm, hp.eps, h)?;
            tap.rows(be, "ffn_norm", il, h)?;
            be.matmul(&ly.gate, h, gate)?;
            be.matmul(&ly.up, h, up)?;
            let [bg, bu, bd] = &ly.ffn_b;
            if let Some(b) = bg {
                be.add_bias(gate, b)?;
            }
            if let Some(b) = bu {
                be.add_bias(up, b)?;
            }
            tap.rows(be, "ffn_gate", il, gate)?;
            tap.rows(be, "ffn_up", il, up)?;
            be.silu_mul(gate, up)?;
            tap.rows(be, "ffn_swiglu", il, gate)?;
            be.matmul(&ly.down, gate, o)?;
            if let Some(b) = bd {
                be.add_bias(o, b)?;
            }
            tap.rows(be, "ffn_out", il, o)?;
            if let Some(r) = s.residual {
                be.scale(o, r)?;
            }
            be.add(x, o)?;
            tap.rows(be, "l_out", il, x)?;
        }
        self.ends.logits(be, hp, batch, ws)
    }
}
