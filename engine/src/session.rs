//! A generation session: one sequence of a model with its KV cache, the
//! tokens the cache holds, prompt prefill in chunks and decoding step by
//! step. `hearth run`, `chat` and `logits` are built on it.

use crate::backend::{Backend, KvType};
use crate::batch::{Batch, Logits};
use crate::error::{Error, Result};
use crate::model::{Model, Workspace};

/// Default prefill chunk (llama.cpp's `n_batch`).
pub const DEFAULT_BATCH: usize = 512;

/// One sequence of a model: its KV cache and the tokens it holds.
///
/// ```no_run
/// use hearth::backend::{cpu::Cpu, KvType};
/// use hearth::model::Model;
/// use hearth::session::Session;
///
/// # fn main() -> hearth::Result<()> {
/// let model = Model::load("model.gguf", Cpu::new())?;
/// let mut session = Session::new(&model, 2048, KvType::F16)?;
/// // The logits of the token after the prompt's last one...
/// let logits = session.set_prompt(&[2, 651, 6037], |done, total| eprintln!("{done}/{total}"))?;
/// assert_eq!(logits.len(), model.hparams.n_vocab);
/// // ...and, one token fed back, of the token after that.
/// let next = session.feed(&[563], false, |_, _| {})?;
/// assert_eq!(next.len(), model.hparams.n_vocab);
/// # Ok(())
/// # }
/// ```
pub struct Session<'m, B: Backend> {
    model: &'m Model<B>,
    cache: B::Cache,
    ws: Workspace<B>,
    batch: Batch,
    /// The tokens whose keys and values the cache holds, in order.
    tokens: Vec<u32>,
    n_ctx: usize,
    n_batch: usize,
    logits: Vec<f32>,
}

impl<'m, B: Backend> Session<'m, B> {
    pub fn new(model: &'m Model<B>, n_ctx: usize, kv_type: KvType) -> Result<Self> {
        if n_ctx == 0 {
            return Err(Error::Config("the context size must be at least 1".into()));
        }
        Ok(Session {
            cache: model.new_cache(n_ctx, 1, kv_type)?,
            ws: Workspace::new(&model.backend),
            batch: Batch::new(),
            tokens: Vec::new(),
            n_ctx,
            n_batch: DEFAULT_BATCH,
            logits: Vec::new(),
            model,
        })
    }

    /// Sets the most tokens evaluated in one forward pass (the cache, empty
    /// at this point, is remade to take batches that large).
    pub fn with_batch_size(mut self, n_batch: usize, kv_type: KvType) -> Result<Self> {
        self.n_batch = n_batch.max(1);
        self.cache = self
            .model
            .new_cache_with_batch(self.n_ctx, 1, kv_type, self.n_batch)?;
        self.tokens.clear();
        Ok(self)
    }

    pub fn model(&self) -> &'m Model<B> {
        self.model
    }

    /// The tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forgets everything after the first `n` tokens (the cache keeps them).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }

    /// Evaluates `tokens` after what the cache holds, in chunks of the
    /// batch size, calling `progress(done, total)` after each chunk. Returns
    /// the logits of every token if `all_logits`, else of the last one.
    pub fn feed(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(Error::Batch("nothing to evaluate".into()));
        }
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(Error::ContextOverflow {
                seq: 0,
                needed,
                n_ctx: self.n_ctx,
            });
        }
        self.logits.clear();
        let mut done = 0;
        for chunk in tokens.chunks(self.n_batch) {
            let last = done + chunk.len() == tokens.len();
            let want = match (all_logits, last) {
                (true, _) => Logits::All,
                (false, true) => Logits::Last,
                (false, false) => Logits::None,
            };
            self.batch.clear();
            self.batch.push(0, self.tokens.len(), chunk, want)?;
            let out = self
                .model
                .forward(&self.batch, &mut self.cache, &mut self.ws)?;
            self.logits.extend_from_slice(out);
            self.tokens.extend_from_slice(chunk);
            done += chunk.len();
            progress(done, tokens.len());
        }
        Ok(&self.logits)
    }

    /// Makes the cache hold exactly `prompt` and returns the logits of its
    /// last token, reusing the longest prefix already in the cache (chat
    /// frontends resend the whole conversation each turn).
    pub fn set_prompt(
        &mut self,
        prompt: &[u32],
        progress: impl FnMut(usize, usize),
    ) -> Result<&[f32]> {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must be evaluated to have logits.
        let keep = common.min(prompt.len().saturating_sub(1));
        // A sliding-window layer may have overwritten what the kept prefix
        // needs (the history went on far past it); then start afresh.
        let keep = self
            .model
            .cache_spec(self.n_ctx, 1, KvType::F16, self.n_batch)
            .reusable_prefix(self.tokens.len(), keep);
        self.tokens.truncate(keep);
        self.feed(&prompt[keep..], false, progress)
    }
}
