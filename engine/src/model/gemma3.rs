//! Gemma 3 and Gemma 2 (llama.cpp's `LLM_ARCH_GEMMA3`, `LLM_ARCH_GEMMA2`).
//!
//! Per layer: RMSNorm → Q, K, V → per-head RMSNorm of Q and K (QK-norm) →
//! NeoX RoPE → attention → output projection → RMSNorm (post-attention) →
//! residual; RMSNorm → GELU(gate) * up → down → RMSNorm (post-FFN) →
//! residual. The embedding is scaled by sqrt(n_embd) and tied to the output.
//! Facts not in the file, as llama.cpp has them (`llama-model.cpp`):
//! every 6th layer (index 5, 11, …) attends globally with the file's RoPE
//! base; the others use the sliding window with RoPE base 10000; every norm
//! weight is stored as `1 + w` and is used as stored.
//!
//! Gemma 2 differs (`models/gemma2.cpp`): no QK-norm; even layers (0, 2, …)
//! are windowed (`sliding_window`, default 4096; a
//! `sliding_window_pattern` of `n` makes layer `i` windowed when
//! `i % n < n - 1`), with the RoPE base `rope.freq_base_swa` (default: the
//! file's base); attention scores soft-capped by `attn_logit_softcapping`
//! (default 50) and the logits by `final_logit_softcapping` (default 30);
//! attention scaled by `1/sqrt(key_length)` (the 27B, 46 layers:
//! `1/sqrt(n_embd / n_head)`); the output always tied to the embedding.

use super::{Ends, HParams, Loader, Workspace};
use crate::backend::{AttentionParams, Backend, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};
use hearth_gguf::{FromValue, ValueRef};

/// RoPE base of the sliding-window layers (`rope_freq_base_train_swa`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// One layer in this many is global (`hparams.set_swa_pattern(6)`).
const SWA_PATTERN: usize = 6;
/// Gemma 2: every other layer (`load_swa_pattern(ml, 2)`).
const SWA_PATTERN_2: usize = 2;

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    // (n_embd) -> (n_head * head_dim), (n_head_kv * head_dim) x2
    wq: B::Weight,
    wk: B::Weight,
    wv: B::Weight,
    qk_norm: Option<[B::Weight; 2]>, // Gemma 3: (head_dim) each for Q and K
    wo: B::Weight,                   // (n_head * head_dim) -> (n_embd)
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
    attn_scale: f32,
    attn_softcap: Option<f32>,
}

/// llama.cpp's `set_swa_pattern(n)`: layer `i` is windowed when
/// `i % n < n - 1`; 0 makes every layer windowed.
fn swa_pattern(n: usize, n_layer: usize) -> Vec<bool> {
    (0..n_layer).map(|i| n == 0 || i % n < n - 1).collect()
}

/// Gemma 2's windowed layers, as `load_swa_pattern(ml, 2)` reads them:
/// `key` is absent (every other layer), a pattern `n`, or one bool per
/// layer.
fn windowed_layers(l: &Loader<'_, impl Backend>, key: &str, n_layer: usize) -> Result<Vec<bool>> {
    match l.file.get(key) {
        None => Ok(swa_pattern(SWA_PATTERN_2, n_layer)),
        Some(ValueRef::Array(a)) => {
            let flags: Vec<bool> = a.iter().map_while(|v| bool::from_value(v).ok()).collect();
            if flags.len() as u64 != a.len() || flags.len() != n_layer {
                return Err(Error::HyperParameter {
                    key: key.into(),
                    reason: format!(
                        "an array of {} {} for {n_layer} layers; expected one bool per layer",
                        a.len(),
                        a.elem_type().name()
                    ),
                });
            }
            Ok(flags)
        }
        Some(_) => Ok(swa_pattern(l.file.get_as(key)?, n_layer)),
    }
}

/// A soft-cap from `key`, or `default` when absent; positive and finite.
fn softcap(l: &Loader<'_, impl Backend>, key: &str, default: f32) -> Result<f32> {
    let cap = l.file.get_opt_as::<f32>(key)?.unwrap_or(default);
    if cap.is_finite() && cap > 0.0 {
        Ok(cap)
    } else {
        Err(Error::HyperParameter {
            key: key.into(),
            reason: format!("{cap} must be finite and positive"),
        })
    }
}

impl<B: Backend> Gemma3<B> {
    pub(crate) fn load(l: &Loader<'_, B>, hp: &HParams) -> Result<Self> {
        let (d, hd, q_dim, kv_dim) = (hp.n_embd, hp.head_dim, hp.n_head * hp.head_dim, hp.kv_dim());
        let gemma2 = hp.arch == "gemma2";
        let key = |k: &str| format!("{}.{k}", hp.arch);
        let window = if gemma2 {
            l.file
                .get_opt_as::<usize>(&key("attention.sliding_window"))?
                .unwrap_or(4096)
        } else {
            l.file.get_as::<usize>(&key("attention.sliding_window"))?
        };
        if window == 0 {
            return Err(Error::HyperParameter {
                key: key("attention.sliding_window"),
                reason: "must be positive".into(),
            });
        }
        let windowed = if gemma2 {
            windowed_layers(l, &key("attention.sliding_window_pattern"), hp.n_layer)?
        } else {
            swa_pattern(SWA_PATTERN, hp.n_layer)
        };
        let global = |i: usize| !windowed[i];
        let layers = (0..hp.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: l.vector(&n("attn_norm"), d)?,
                    wq: l.matrix(&n("attn_q"), d, q_dim)?,
                    wk: l.matrix(&n("attn_k"), d, kv_dim)?,
                    wv: l.matrix(&n("attn_v"), d, kv_dim)?,
                    qk_norm: if gemma2 {
                        None
                    } else {
                        Some([
                            l.vector(&n("attn_q_norm"), hd)?,
                            l.vector(&n("attn_k_norm"), hd)?,
                        ])
                    },
                    wo: l.matrix(&n("attn_output"), q_dim, d)?,
                    post_attn_norm: l.vector(&n("post_attention_norm"), d)?,
                    ffn_norm: l.vector(&n("ffn_norm"), d)?,
                    gate: l.matrix(&n("ffn_gate"), d, hp.n_ff)?,
                    up: l.matrix(&n("ffn_up"), d, hp.n_ff)?,
                    down: l.matrix(&n("ffn_down"), hp.n_ff, d)?,
                    post_ffw_norm: l.vector(&n("post_ffw_norm"), d)?,
                    global: global(i),
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
        let mut ends = Ends::load(l, hp)?;
        // llama.cpp: f_attention_scale = 1/sqrt(head_dim) (except Gemma 2
        // 27B; Gemma 3 27B's file says so by its key length).
        let mut attn_scale = 1.0 / (hp.head_dim as f32).sqrt();
        let (mut local_base, mut attn_softcap) = (LOCAL_ROPE_BASE, None);
        if gemma2 {
            // llama.cpp takes token_embd as the output, whatever else the file has.
            ends.output = None;
            ends.final_softcap = Some(softcap(l, &key("final_logit_softcapping"), 30.0)?);
            attn_softcap = Some(softcap(l, &key("attn_logit_softcapping"), 50.0)?);
            local_base = l
                .file
                .get_opt_as(&key("rope.freq_base_swa"))?
                .unwrap_or(hp.rope_base);
            if hp.n_layer == 46 {
                attn_scale = 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt();
            }
        }
        Ok(Gemma3 {
            ends,
            layers,
            rope_local: l.backend.rope(&rope(local_base))?,
            rope_global: l.backend.rope(&rope(hp.rope_base))?,
            window,
            attn_scale,
            attn_softcap,
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
        let mut params = AttentionParams::new(hp.n_head, hp.n_head_kv, hp.head_dim);
        params.scale = self.attn_scale;
        params.softcap = self.attn_softcap;
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
            if let Some([qn, kn]) = &ly.qk_norm {
                be.rms_norm_heads(q, qn, hp.eps)?;
                be.rms_norm_heads(k, kn, hp.eps)?;
                tap.heads(be, "Qcur_normed", il, hp.n_head, q)?;
                tap.heads(be, "Kcur_normed", il, hp.n_head_kv, k)?;
            }
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
