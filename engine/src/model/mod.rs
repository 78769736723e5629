//! Model architectures. One file each, with three parts: hyper-parameters
//! read from GGUF metadata, the tensors it needs (shape-checked at load,
//! with an error naming the tensor), and `forward`. Variants of a family are
//! flags on one file.

pub mod gemma3;
pub mod llama;

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, CacheSpec, KvType, ModelFile};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::tap::{Tap, TapPoint};

pub use hearth_gguf::OpenOptions;

/// The architectures Hearth runs, as `general.architecture` names them.
pub const SUPPORTED: &str = "gemma2, gemma3, granite, llama, qwen2, qwen3";

/// Hyper-parameters common to the decoder-only transformers Hearth runs.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    pub eps: f32,
    pub rope_base: f32,
    pub rope_scale: f32,
    pub n_rot: usize,
}

impl HParams {
    /// Reads `{arch}.*` keys; optional ones get llama.cpp's defaults.
    pub fn read(g: &ModelFile, arch: &str) -> Result<HParams> {
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd: usize = g.get_as(&key("embedding_length"))?;
        let n_head: usize = g.get_as(&key("attention.head_count"))?;
        let n_head_kv = g
            .get_opt_as(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(Error::HyperParameter {
                key: key("attention.head_count_kv"),
                reason: format!("{n_head} query heads are not a multiple of {n_head_kv} KV heads"),
            });
        }
        let head_dim = g
            .get_opt_as(&key("attention.key_length"))?
            .unwrap_or(n_embd / n_head);
        let v_dim: usize = g
            .get_opt_as(&key("attention.value_length"))?
            .unwrap_or(head_dim);
        if v_dim != head_dim || head_dim == 0 {
            return Err(Error::HyperParameter {
                key: key("attention.value_length"),
                reason: format!(
                    "key length {head_dim} and value length {v_dim} must be equal and non-zero"
                ),
            });
        }
        let n_vocab = match g.get(&key("vocab_size")) {
            Some(_) => g.get_as(&key("vocab_size"))?,
            None => g.get_array("tokenizer.ggml.tokens")?.len() as usize,
        };
        let rope_scale = match g.get_opt_as::<f32>(&key("rope.scaling.factor"))? {
            Some(f) if f > 0.0 => 1.0 / f,
            _ => 1.0,
        };
        Ok(HParams {
            arch: arch.to_string(),
            n_vocab,
            n_embd,
            n_layer: g.get_as(&key("block_count"))?,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: g.get_as(&key("feed_forward_length"))?,
            n_ctx_train: g.get_as(&key("context_length"))?,
            eps: g
                .get_opt_as(&key("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5),
            rope_base: g.get_opt_as(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scale,
            n_rot: g
                .get_opt_as(&key("rope.dimension_count"))?
                .unwrap_or(head_dim),
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// Loads tensors by name with their expected shapes.
pub(crate) struct Loader<'a, B: Backend> {
    pub backend: &'a B,
    pub file: &'a Arc<ModelFile>,
}

impl<B: Backend> Loader<'_, B> {
    fn info(&self, name: &str, dims: &[usize]) -> Result<&hearth_gguf::TensorInfo> {
        let t = self.file.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
        })?;
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        if t.info.dims != expected {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected,
                found: t.info.dims.clone(),
            });
        }
        Ok(t.info)
    }

    /// A matrix of `rows` rows of `cols` (GGUF dims `[cols, rows]`).
    pub fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<B::Weight> {
        let info = self.info(name, &[cols, rows])?;
        self.backend.load_matrix(self.file, info)
    }

    pub fn vector(&self, name: &str, len: usize) -> Result<B::Weight> {
        let info = self.info(name, &[len])?;
        self.backend.load_vector(self.file, info)
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }
}

/// A model of any supported architecture on backend `B`.
pub enum Arch<B: Backend> {
    Gemma3(gemma3::Gemma3<B>),
    Llama(llama::Llama<B>),
}

/// The activations of a forward pass, reused from one pass to the next.
/// Shapes are rows x columns for a batch of `n` tokens, of which `n_out`
/// asked for logits; `q_dim = n_head * head_dim`, `kv_dim = n_head_kv * head_dim`.
pub struct Workspace<B: Backend> {
    pub(crate) x: B::Tensor,      // (n, n_embd): the residual stream
    pub(crate) h: B::Tensor, // (n, n_embd): x normed, the input of attention or FFN; (n_out, n_embd) in the tail
    pub(crate) q: B::Tensor, // (n, q_dim)
    pub(crate) k: B::Tensor, // (n, kv_dim)
    pub(crate) v: B::Tensor, // (n, kv_dim)
    pub(crate) attn: B::Tensor, // (n, q_dim): attention's output, before the output projection
    pub(crate) o: B::Tensor, // (n, n_embd): the attention or FFN block's output, added to x
    pub(crate) gate: B::Tensor, // (n, n_ff); act(gate) * up after the activation
    pub(crate) up: B::Tensor, // (n, n_ff)
    pub(crate) logits: B::Tensor, // (n_out, n_vocab)
    pub(crate) tap: TapPoint,
    host_logits: Vec<f32>,
}

impl<B: Backend> Workspace<B> {
    pub fn new(backend: &B) -> Self {
        Workspace {
            x: backend.new_tensor(),
            h: backend.new_tensor(),
            q: backend.new_tensor(),
            k: backend.new_tensor(),
            v: backend.new_tensor(),
            attn: backend.new_tensor(),
            o: backend.new_tensor(),
            gate: backend.new_tensor(),
            up: backend.new_tensor(),
            logits: backend.new_tensor(),
            tap: TapPoint::default(),
            host_logits: Vec::new(),
        }
    }

    /// Sets the [`Tap`] that receives every named intermediate of the
    /// next forward passes (`None`: none, the default); returns the one
    /// set before.
    pub fn set_tap(&mut self, tap: Option<Box<dyn Tap + Send>>) -> Option<Box<dyn Tap + Send>> {
        self.tap.set(tap)
    }
}

/// The two ends of every architecture: the token embedding in, and the
/// tail out (the logit rows of the residual stream, the final RMSNorm, the
/// output matrix, or the embedding when the file ties them).
pub(crate) struct Ends<B: Backend> {
    token_embd: B::Weight,                // (n_vocab, n_embd)
    pub(crate) output: Option<B::Weight>, // (n_vocab, n_embd); None: tied to token_embd
    output_norm: B::Weight,               // (n_embd)
    /// Multiplies the logits (Granite: `1 / logit_scale`); 1: none.
    pub(crate) logit_mul: f32,
    /// Soft-caps the logits (Gemma 2's `final_logit_softcapping`).
    pub(crate) final_softcap: Option<f32>,
}

impl<B: Backend> Ends<B> {
    pub(crate) fn load(l: &Loader<'_, B>, hp: &HParams) -> Result<Self> {
        let d = hp.n_embd;
        Ok(Ends {
            token_embd: l.matrix("token_embd.weight", d, hp.n_vocab)?,
            output: if l.has("output.weight") {
                Some(l.matrix("output.weight", d, hp.n_vocab)?)
            } else {
                None
            },
            output_norm: l.vector("output_norm.weight", d)?,
            logit_mul: 1.0,
            final_softcap: None,
        })
    }

    /// `ws.x` = the batch's token embeddings times `scale`, tapped as `name`.
    pub(crate) fn embed(
        &self,
        be: &B,
        batch: &Batch,
        scale: f32,
        name: &'static str,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        be.embed(&self.token_embd, batch.tokens(), scale, &mut ws.x)?;
        ws.tap.rows(be, name, None, &ws.x)
    }

    /// `ws.logits` from the residual stream `ws.x`, for the batch's logit
    /// rows (none: nothing to do).
    pub(crate) fn logits(
        &self,
        be: &B,
        hp: &HParams,
        batch: &Batch,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        if batch.logit_rows().is_empty() {
            return Ok(());
        }
        let Workspace {
            x, h, logits, tap, ..
        } = ws;
        be.select_rows(x, batch.logit_rows(), h)?;
        be.rms_norm_inplace(h, &self.output_norm, hp.eps)?;
        tap.rows(be, "result_norm", None, h)?;
        be.matmul(self.output.as_ref().unwrap_or(&self.token_embd), h, logits)?;
        if self.logit_mul != 1.0 {
            be.scale(logits, self.logit_mul)?;
        }
        if let Some(cap) = self.final_softcap {
            be.softcap(logits, cap)?;
        }
        tap.rows(be, "result_output", None, logits)
    }
}

/// A loaded model: its file, hyper-parameters, weights and backend.
pub struct Model<B: Backend> {
    pub file: Arc<ModelFile>,
    pub hparams: HParams,
    pub backend: B,
    arch: Arch<B>,
}

impl<B: Backend> Model<B> {
    /// Opens `path` (memory-mapped) and loads the model it holds onto
    /// `backend`.
    pub fn load(path: impl AsRef<Path>, backend: B) -> Result<Self> {
        Self::load_with(path, backend, OpenOptions::default())
    }

    /// Like [`load`](Self::load), with the file mapped or read into owned
    /// memory, and locked or not, as `opts` say (`hearth --no-mmap`,
    /// `--mlock`).
    pub fn load_with(path: impl AsRef<Path>, backend: B, opts: OpenOptions) -> Result<Self> {
        let file = Arc::new(hearth_gguf::open_with(path, opts)?);
        Self::from_file(file, backend)
    }

    pub fn from_file(file: Arc<ModelFile>, backend: B) -> Result<Self> {
        let arch_name = file.architecture()?.to_string();
        if !SUPPORTED.split(", ").any(|a| a == arch_name) {
            return Err(Error::UnsupportedArchitecture {
                arch: arch_name,
                supported: SUPPORTED,
            });
        }
        let hparams = HParams::read(&file, &arch_name)?;
        let loader = Loader {
            backend: &backend,
            file: &file,
        };
        let arch = match arch_name.as_str() {
            "gemma2" | "gemma3" => Arch::Gemma3(gemma3::Gemma3::load(&loader, &hparams)?),
            "granite" | "llama" | "qwen2" | "qwen3" => {
                Arch::Llama(llama::Llama::load(&loader, &hparams)?)
            }
            _ => {
                return Err(Error::UnsupportedArchitecture {
                    arch: arch_name,
                    supported: SUPPORTED,
                })
            }
        };
        Ok(Model {
            file,
            hparams,
            backend,
            arch,
        })
    }

    /// A KV cache for `n_seq` sequences of up to `n_ctx` tokens, taking
    /// batches of up to [`DEFAULT_BATCH`](crate::session::DEFAULT_BATCH)
    /// tokens per sequence.
    pub fn new_cache(&self, n_ctx: usize, n_seq: usize, kv_type: KvType) -> Result<B::Cache> {
        self.new_cache_with_batch(n_ctx, n_seq, kv_type, crate::session::DEFAULT_BATCH)
    }

    /// A KV cache taking batches of up to `n_batch` tokens per sequence.
    pub fn new_cache_with_batch(
        &self,
        n_ctx: usize,
        n_seq: usize,
        kv_type: KvType,
        n_batch: usize,
    ) -> Result<B::Cache> {
        self.backend
            .new_cache(&self.cache_spec(n_ctx, n_seq, kv_type, n_batch))
    }

    /// The shape of the cache [`new_cache_with_batch`](Self::new_cache_with_batch) makes.
    pub fn cache_spec(
        &self,
        n_ctx: usize,
        n_seq: usize,
        kv_type: KvType,
        n_batch: usize,
    ) -> CacheSpec {
        CacheSpec {
            n_layer: self.hparams.n_layer,
            n_seq,
            n_ctx,
            kv_dim: self.hparams.kv_dim(),
            kv_type,
            windows: self.layer_windows(),
            n_batch: n_batch.max(1),
        }
    }

    /// Per layer, the sliding window of its attention, if any.
    pub fn layer_windows(&self) -> Vec<Option<usize>> {
        match &self.arch {
            Arch::Gemma3(m) => m.layer_windows(),
            Arch::Llama(_) => vec![None; self.hparams.n_layer],
        }
    }

    /// Runs `batch` through the model, storing its keys and values in
    /// `cache`, and returns the logits of the batch's logit rows
    /// (`batch.logit_rows().len()` rows of `n_vocab`).
    pub fn forward<'w>(
        &self,
        batch: &Batch,
        cache: &mut B::Cache,
        ws: &'w mut Workspace<B>,
    ) -> Result<&'w [f32]> {
        if batch.is_empty() {
            return Err(Error::Batch("empty batch".into()));
        }
        match &self.arch {
            Arch::Gemma3(m) => m.forward(&self.backend, &self.hparams, batch, cache, ws)?,
            Arch::Llama(m) => m.forward(&self.backend, &self.hparams, batch, cache, ws)?,
        }
        self.backend.commit(cache, batch)?;
        if batch.logit_rows().is_empty() {
            ws.host_logits.clear();
        } else {
            let (rows, cols) = self.backend.read(&ws.logits, &mut ws.host_logits)?;
            debug_assert_eq!(
                (rows, cols),
                (batch.logit_rows().len(), self.hparams.n_vocab)
            );
        }
        Ok(&ws.host_logits)
    }
}
