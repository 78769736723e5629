//! `hearth perplexity`: llama.cpp's `llama-perplexity` protocol
//! (`tools/perplexity/perplexity.cpp`, `perplexity()`), and its
//! KL-divergence mode for judging a kernel change against a saved run.
//!
//! The protocol, step by step:
//! 1. tokenize the whole text with BOS;
//! 2. cut the ids into consecutive chunks of `n_ctx` (the remainder is
//!    dropped) and replace each chunk's first id with BOS;
//! 3. evaluate each chunk from an empty KV cache;
//! 4. score only the predictions of the second half: the logits at
//!    positions `n_ctx/2 .. n_ctx-2` predict the ids at `n_ctx/2+1 .. n_ctx-1`
//!    (255 per chunk of 512), with log-softmax in f64 over the whole vocabulary;
//! 5. PPL = exp(mean NLL); its ± is llama.cpp's:
//!    `PPL * sqrt((mean(NLL²) - mean(NLL)²) / (count - 1))`.
//!
//! Two deliberate differences: llama.cpp refuses texts shorter than two
//! chunks, Hearth needs one; and the first half of each chunk is evaluated in
//! forward passes that ask for no logits, the second half in passes that ask
//! for all (a `Batch` asks for none, the last or all of a sequence's rows),
//! so the 262144-wide output matrix is applied to the rows that are scored
//! only. Both halves see the same KV cache contents a single pass would.
//!
//! # The KL-divergence base file (`--kl-divergence-base`)
//!
//! llama.cpp saves every scored token's full distribution as 16-bit
//! log-probabilities: 134 MB per chunk for Gemma 3's 262144-token
//! vocabulary. Hearth saves each scored token's top-K log-probabilities in
//! full precision instead (K = [`DEFAULT_TOP_K`] = 64: 0.2 MB per chunk of 512)
//! and computes the KL divergence over K + 1 bins: the K tokens and "the
//! rest". By the data-processing inequality this is a lower bound on the full
//! KL divergence, exact when the base puts all its mass on the K tokens;
//! llama.cpp likewise ignores base tokens below e^-16. Identical runs give
//! exactly 0. The format, all little-endian:
//!
//! ```text
//! offset  size            field
//! 0       8               magic "HEARTHKL"
//! 8       4   u32         version (1)
//! 12      4   u32         n_vocab
//! 16      4   u32         n_ctx
//! 20      4   u32         top_k (K)
//! 24      4   u32         n_chunks
//! 28      4*n_chunks*n_ctx  u32 token ids as evaluated (BOS-replaced)
//! then, per chunk, per scored token (n_ctx - 1 - n_ctx/2 of them):
//!         8   f64         log p(the actual next token)
//!         K * (4 u32 id, 8 f64 log p)   the K most likely, most likely first
//!                         (ties broken by the lower id)
//! ```

use std::io::{Read, Write};
use std::time::Instant;

use rayon::prelude::*;

use crate::backend::{Backend, KvType};
use crate::batch::{Batch, Logits};
use crate::model::{Model, Workspace};

/// Entries per token in a KL-divergence base file unless asked otherwise.
pub const DEFAULT_TOP_K: usize = 64;

const MAGIC: &[u8; 8] = b"HEARTHKL";
const VERSION: u32 = 1;
/// Header limits: what a base file may make us allocate.
const MAX_TOP_K: usize = 4096;
const MAX_HEADER_TOKENS: usize = 1 << 28;

/// What can go wrong computing perplexity or reading a base file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerplexityError {
    #[error("the text tokenizes to {n_tokens} tokens, fewer than one chunk of {n_ctx}")]
    TooFewTokens { n_tokens: usize, n_ctx: usize },
    #[error(
        "the context size must be at least 3 tokens (half is context, the rest scored), got {0}"
    )]
    ContextTooSmall(usize),
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("KL-divergence base: {0}")]
    BaseFile(String),
    #[error("KL-divergence base: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

pub type Result<T, E = PerplexityError> = std::result::Result<T, E>;

/// Step 2: consecutive chunks of `n_ctx` ids, remainder dropped, each
/// chunk's first id replaced by `bos` (when the vocabulary adds one), at
/// most `max_chunks` of them.
pub fn chunks(
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
) -> Result<Vec<Vec<u32>>> {
    if n_ctx < 3 {
        return Err(PerplexityError::ContextTooSmall(n_ctx));
    }
    if tokens.len() < n_ctx {
        return Err(PerplexityError::TooFewTokens {
            n_tokens: tokens.len(),
            n_ctx,
        });
    }
    let n = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX));
    Ok(tokens
        .chunks_exact(n_ctx)
        .take(n)
        .map(|c| {
            let mut c = c.to_vec();
            if let Some(b) = bos {
                c[0] = b;
            }
            c
        })
        .collect())
}

/// Index of the first scored logit row of a chunk (`n_ctx / 2`).
pub fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

/// Predictions scored per chunk: `n_ctx - 1 - n_ctx/2`.
pub fn scored_per_chunk(n_ctx: usize) -> usize {
    n_ctx - 1 - first_scored(n_ctx)
}

/// `ln sum(exp(row))`, in f64, shifted by the maximum.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln()
}

/// `log softmax(row)[target]` in f64.
pub fn log_prob(row: &[f32], target: u32) -> f64 {
    row[target as usize] as f64 - log_sum_exp(row)
}

/// Running sums of negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NllStats {
    pub sum: f64,
    pub sum2: f64,
    pub count: usize,
}

impl NllStats {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        self.mean().exp()
    }

    /// llama-perplexity's ±: `PPL * sqrt((mean(v²) - mean(v)²) / (count - 1))`,
    /// or `None` where it prints "Unexpected negative standard deviation".
    pub fn ppl_error(&self) -> Option<f64> {
        let n = self.count as f64;
        let var = self.sum2 / n - self.mean() * self.mean();
        (var > 0.0 && self.count > 1).then(|| (var / (n - 1.0)).sqrt() * self.ppl())
    }
}

/// llama-perplexity's `mean_and_uncertainty`: the mean and its standard
/// error (0 for fewer than 11 values).
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    (
        f,
        if df > 0.0 && count > 10 {
            (df / (n - 1.0)).sqrt()
        } else {
            0.0
        },
    )
}

/// One scored token of a base run: log p of the actual next token, and the
/// top-K `(id, log p)`, most likely first.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseToken {
    pub target_lp: f64,
    pub top: Vec<(u32, f64)>,
}

/// The `k` most likely ids of `row` with their log-probabilities (`lse` is
/// `log_sum_exp(row)`), most likely first, ties by the lower id.
pub fn top_k(row: &[f32], k: usize, lse: f64) -> Vec<(u32, f64)> {
    let k = k.min(row.len());
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_unstable_by(cmp);
    idx.into_iter()
        .map(|i| (i, row[i as usize] as f64 - lse))
        .collect()
}

/// KL-divergence sums, as llama-perplexity keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KlStats {
    pub nll: NllStats,
    pub nll_base: NllStats,
    pub sum_nll_nll_base: f64,
    pub sum_kld: f64,
    pub sum_kld2: f64,
    pub n_same_top: usize,
}

impl KlStats {
    pub fn count(&self) -> usize {
        self.nll.count
    }

    /// Mean KL divergence and its standard error.
    pub fn kld(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count())
    }

    /// Fraction of tokens whose most likely id is the base's, and its
    /// standard error.
    pub fn same_top(&self) -> (f64, f64) {
        let n = self.count() as f64;
        let p = self.n_same_top as f64 / n;
        (
            p,
            if self.count() > 1 {
                (p * (1.0 - p) / (n - 1.0)).sqrt()
            } else {
                0.0
            },
        )
    }

    /// Mean ln(PPL(Q)/PPL(base)) and its uncertainty (with the covariance
    /// of the two NLLs, as llama-perplexity).
    pub fn ln_ppl_ratio(&self) -> (f64, f64) {
        let n = self.count();
        let (q, dq) = mean_and_uncertainty(self.nll.sum, self.nll.sum2, n);
        let (b, db) = mean_and_uncertainty(self.nll_base.sum, self.nll_base.sum2, n);
        let nf = n as f64;
        let cov = if n > 1 {
            (self.sum_nll_nll_base / nf - (self.nll.sum / nf) * (self.nll_base.sum / nf))
                / (nf - 1.0)
        } else {
            0.0
        };
        (q - b, (dq * dq + db * db - 2.0 * cov).max(0.0).sqrt())
    }

    /// Adds one token: `row` is the current run's logits, `base` the saved
    /// run's record, `target` the actual next id.
    pub fn add(&mut self, row: &[f32], target: u32, base: &BaseToken) {
        let lse = log_sum_exp(row);
        let nll = lse - row[target as usize] as f64;
        let nll_base = -base.target_lp;
        self.nll.add(nll);
        self.nll_base.add(nll_base);
        self.sum_nll_nll_base += nll * nll_base;
        let kld = kl_top_k(row, lse, &base.top);
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        let argmax = top_k(row, 1, lse)[0].0;
        if base.top.first().map(|t| t.0) == Some(argmax) {
            self.n_same_top += 1;
        }
    }

    fn merge(&mut self, o: &KlStats) {
        for (a, b) in [(&mut self.nll, &o.nll), (&mut self.nll_base, &o.nll_base)] {
            a.sum += b.sum;
            a.sum2 += b.sum2;
            a.count += b.count;
        }
        self.sum_nll_nll_base += o.sum_nll_nll_base;
        self.sum_kld += o.sum_kld;
        self.sum_kld2 += o.sum_kld2;
        self.n_same_top += o.n_same_top;
    }
}

/// KL(base || current) over the base's top-K ids plus one bin for the rest
/// of the vocabulary (see the module docs).
pub fn kl_top_k(row: &[f32], lse: f64, base_top: &[(u32, f64)]) -> f64 {
    let (mut kl, mut p_in, mut q_in) = (0.0f64, 0.0f64, 0.0f64);
    for &(id, lp) in base_top {
        let lq = row[id as usize] as f64 - lse;
        let p = lp.exp();
        kl += p * (lp - lq);
        p_in += p;
        q_in += lq.exp();
    }
    let p_rest = 1.0 - p_in;
    let q_rest = 1.0 - q_in;
    if p_rest > 0.0 {
        kl += p_rest * (p_rest.ln() - q_rest.max(f64::MIN_POSITIVE).ln());
    }
    kl
}

/// Writes a base file (see the module docs).
pub struct KlWriter {
    out: Box<dyn Write + Send>,
    top_k: usize,
}

impl KlWriter {
    /// Writes the header: the vocabulary size, context, K, and the chunks
    /// that will follow.
    pub fn new(
        mut out: Box<dyn Write + Send>,
        n_vocab: usize,
        n_ctx: usize,
        top_k: usize,
        chunks: &[Vec<u32>],
    ) -> Result<KlWriter> {
        if top_k == 0 || top_k > MAX_TOP_K.min(n_vocab) {
            return Err(PerplexityError::BaseFile(format!(
                "top-K must be between 1 and {}, got {top_k}",
                MAX_TOP_K.min(n_vocab)
            )));
        }
        let u32_of = |v: usize, what: &str| {
            u32::try_from(v).map_err(|_| {
                PerplexityError::BaseFile(format!("{what} {v} does not fit the format"))
            })
        };
        out.write_all(MAGIC)?;
        for v in [
            VERSION,
            u32_of(n_vocab, "n_vocab")?,
            u32_of(n_ctx, "n_ctx")?,
            top_k as u32,
            u32_of(chunks.len(), "n_chunks")?,
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        for c in chunks {
            for &t in c {
                out.write_all(&t.to_le_bytes())?;
            }
        }
        Ok(KlWriter { out, top_k })
    }

    pub fn write_token(&mut self, t: &BaseToken) -> Result<()> {
        let mut buf = Vec::with_capacity(8 + 12 * t.top.len());
        buf.extend_from_slice(&t.target_lp.to_le_bytes());
        for &(id, lp) in &t.top {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&lp.to_le_bytes());
        }
        self.out.write_all(&buf)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Reads a base file (see the module docs), checking every field.
pub struct KlReader {
    input: Box<dyn Read + Send>,
    pub n_vocab: usize,
    pub n_ctx: usize,
    pub top_k: usize,
    /// The chunks the base run evaluated (BOS-replaced).
    pub chunks: Vec<Vec<u32>>,
}

fn read_u32(r: &mut dyn Read) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u32::from_le_bytes(b))
}

fn truncated(e: std::io::Error) -> PerplexityError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        PerplexityError::BaseFile("the file is truncated".into())
    } else {
        PerplexityError::Io(e)
    }
}

impl KlReader {
    pub fn new(mut input: Box<dyn Read + Send>) -> Result<KlReader> {
        let bad = |m: String| PerplexityError::BaseFile(m);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err(bad(
                "not a Hearth KL-divergence base file (bad magic)".into()
            ));
        }
        let version = read_u32(&mut input)?;
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}, this Hearth reads {VERSION}"
            )));
        }
        let n_vocab = read_u32(&mut input)? as usize;
        let n_ctx = read_u32(&mut input)? as usize;
        let top_k = read_u32(&mut input)? as usize;
        let n_chunks = read_u32(&mut input)? as usize;
        if n_ctx < 3 {
            return Err(bad(format!("context {n_ctx} is too small")));
        }
        if top_k == 0 || top_k > MAX_TOP_K || top_k > n_vocab {
            return Err(bad(format!(
                "top-K {top_k} is not in 1..={}",
                MAX_TOP_K.min(n_vocab)
            )));
        }
        let n_tok = n_chunks
            .checked_mul(n_ctx)
            .filter(|&n| n <= MAX_HEADER_TOKENS && n_chunks > 0)
            .ok_or_else(|| {
                bad(format!(
                    "{n_chunks} chunks of {n_ctx} tokens is not a plausible run"
                ))
            })?;
        let mut raw = vec![0u8; n_tok * 4];
        input.read_exact(&mut raw).map_err(truncated)?;
        let ids: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(PerplexityError::TokenOutOfRange { id, n_vocab });
        }
        Ok(KlReader {
            input,
            n_vocab,
            n_ctx,
            top_k,
            chunks: ids.chunks_exact(n_ctx).map(<[u32]>::to_vec).collect(),
        })
    }

    pub fn read_token(&mut self) -> Result<BaseToken> {
        let mut buf = vec![0u8; 8 + 12 * self.top_k];
        self.input.read_exact(&mut buf).map_err(truncated)?;
        let f64_at = |o: usize| f64::from_le_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
        let lp_ok = |lp: f64| lp.is_finite() && lp <= 1e-9;
        let target_lp = f64_at(0);
        let mut top = Vec::with_capacity(self.top_k);
        for e in 0..self.top_k {
            let o = 8 + 12 * e;
            let id = u32::from_le_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
            let lp = f64_at(o + 4);
            if id as usize >= self.n_vocab {
                return Err(PerplexityError::TokenOutOfRange {
                    id,
                    n_vocab: self.n_vocab,
                });
            }
            if !lp_ok(lp) {
                return Err(PerplexityError::BaseFile(format!(
                    "log-probability {lp} is not a log-probability"
                )));
            }
            top.push((id, lp));
        }
        if !lp_ok(target_lp) {
            return Err(PerplexityError::BaseFile(format!(
                "log-probability {target_lp} is not a log-probability"
            )));
        }
        Ok(BaseToken { target_lp, top })
    }
}

/// What a perplexity run does besides computing the perplexity.
pub enum KlMode<'a> {
    Off,
    /// Save the run as a KL-divergence base.
    Save(&'a mut KlWriter),
    /// Compare the run with a saved base.
    Compare(&'a mut KlReader),
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct PerplexityConfig {
    pub n_ctx: usize,
    /// Tokens per forward pass (at most `n_ctx` are used).
    pub n_batch: usize,
    pub kv_type: KvType,
}

/// Reported after each chunk.
#[derive(Clone, Copy, Debug)]
pub struct ChunkProgress {
    /// 1-based chunk number.
    pub chunk: usize,
    pub n_chunks: usize,
    /// exp(mean NLL) over all chunks so far.
    pub running_ppl: f64,
    /// Seconds this chunk took (forward passes and scoring).
    pub seconds: f64,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct PerplexityResult {
    pub nll: NllStats,
    pub n_chunks: usize,
    pub kl: Option<KlStats>,
    pub seconds: f64,
}

/// The logits of rows `first..n` of `chunk` evaluated from an empty cache
/// (step 3): the first half in passes without logits, then the rest.
fn chunk_logits<'w, B: Backend>(
    model: &Model<B>,
    cache: &mut B::Cache,
    ws: &'w mut Workspace<B>,
    scratch: &'w mut Vec<f32>,
    chunk: &[u32],
    n_batch: usize,
) -> Result<&'w [f32]> {
    let first = first_scored(chunk.len());
    model.backend.clear_seq(cache, 0)?;
    scratch.clear();
    let mut batch = Batch::new();
    for (range, want) in [(0..first, Logits::None), (first..chunk.len(), Logits::All)] {
        let mut pos = range.start;
        for piece in chunk[range].chunks(n_batch) {
            batch.clear();
            batch.push(0, pos, piece, want)?;
            let out = model.forward(&batch, cache, ws)?;
            scratch.extend_from_slice(out);
            pos += piece.len();
        }
    }
    Ok(scratch)
}

/// Runs the protocol over `chunks` (from [`chunks`]), calling `progress`
/// after each chunk.
pub fn run<B: Backend>(
    model: &Model<B>,
    chunks: &[Vec<u32>],
    cfg: &PerplexityConfig,
    mut kl: KlMode<'_>,
    mut progress: impl FnMut(&ChunkProgress),
) -> Result<PerplexityResult> {
    let n_ctx = cfg.n_ctx;
    if n_ctx < 3 {
        return Err(PerplexityError::ContextTooSmall(n_ctx));
    }
    let n_vocab = model.hparams.n_vocab;
    if let Some(c) = chunks.iter().find(|c| c.len() != n_ctx) {
        return Err(PerplexityError::BaseFile(format!(
            "a chunk of {} tokens in a run with context {n_ctx}",
            c.len()
        )));
    }
    if let Some(&id) = chunks.iter().flatten().find(|&&id| id as usize >= n_vocab) {
        return Err(PerplexityError::TokenOutOfRange { id, n_vocab });
    }
    if let KlMode::Compare(r) = &kl {
        if r.n_vocab != n_vocab || r.n_ctx != n_ctx {
            return Err(PerplexityError::BaseFile(format!(
                "saved with a vocabulary of {} and context {}, this run has {n_vocab} and {n_ctx}",
                r.n_vocab, r.n_ctx
            )));
        }
        if chunks.len() > r.chunks.len() || r.chunks[..chunks.len()] != *chunks {
            return Err(PerplexityError::BaseFile(
                "the base run evaluated other tokens (a different text or tokenizer)".into(),
            ));
        }
    }
    let first = first_scored(n_ctx);
    let n_scored = scored_per_chunk(n_ctx);
    let t_run = Instant::now();
    let n_batch = cfg.n_batch.clamp(1, n_ctx);
    // A sliding-window layer's ring must hold the window plus one pass.
    let mut cache = model.new_cache_with_batch(n_ctx, 1, cfg.kv_type, n_batch)?;
    let mut ws = Workspace::new(&model.backend);
    let mut scratch = Vec::new();
    let mut nll = NllStats::default();
    let mut kls = KlStats::default();
    for (ci, chunk) in chunks.iter().enumerate() {
        let t0 = Instant::now();
        let logits = chunk_logits(model, &mut cache, &mut ws, &mut scratch, chunk, n_batch)?;
        // Row i is position first + i and predicts the id at first + i + 1.
        let rows: Vec<&[f32]> = logits.chunks_exact(n_vocab).take(n_scored).collect();
        let targets = &chunk[first + 1..];
        match &mut kl {
            KlMode::Off => {
                let lps: Vec<f64> = rows
                    .par_iter()
                    .zip(targets.par_iter())
                    .map(|(r, &t)| log_prob(r, t))
                    .collect();
                lps.iter().for_each(|lp| nll.add(-lp));
            }
            KlMode::Save(w) => {
                let k = w.top_k;
                let recs: Vec<BaseToken> = rows
                    .par_iter()
                    .zip(targets.par_iter())
                    .map(|(r, &t)| {
                        let lse = log_sum_exp(r);
                        BaseToken {
                            target_lp: r[t as usize] as f64 - lse,
                            top: top_k(r, k, lse),
                        }
                    })
                    .collect();
                for rec in &recs {
                    nll.add(-rec.target_lp);
                    w.write_token(rec)?;
                }
            }
            KlMode::Compare(r) => {
                let base: Vec<BaseToken> = (0..n_scored)
                    .map(|_| r.read_token())
                    .collect::<Result<_>>()?;
                let part = rows
                    .par_iter()
                    .zip(targets.par_iter())
                    .zip(base.par_iter())
                    .map(|((row, &t), b)| {
                        let mut s = KlStats::default();
                        s.add(row, t, b);
                        s
                    })
                    .reduce(KlStats::default, |mut a, b| {
                        a.merge(&b);
                        a
                    });
                nll.sum += part.nll.sum;
                nll.sum2 += part.nll.sum2;
                nll.count += part.nll.count;
                kls.merge(&part);
            }
        }
        progress(&ChunkProgress {
            chunk: ci + 1,
            n_chunks: chunks.len(),
            running_ppl: nll.ppl(),
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(PerplexityResult {
        nll,
        n_chunks: chunks.len(),
        kl: matches!(kl, KlMode::Compare(_)).then_some(kls),
        seconds: t_run.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prob_of_uniform_logits_is_minus_ln_vocab() {
        let row = vec![3.5f32; 262_144];
        assert!((log_prob(&row, 17) + (262_144f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn log_prob_matches_a_hand_computed_softmax() {
        let row = [1.0f32, 2.0, 3.0];
        let z = 1f64.exp() + 2f64.exp() + 3f64.exp();
        assert!((log_prob(&row, 2) - (3f64.exp() / z).ln()).abs() < 1e-12);
        // Large logits do not overflow (the max is subtracted).
        let big = [1000.0f32, 1000.0];
        assert!((log_prob(&big, 0) - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn ppl_and_its_error_follow_llama_perplexity() {
        let mut s = NllStats::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.add(v);
        }
        assert!((s.ppl() - 2.5f64.exp()).abs() < 1e-12);
        // mean(v²) = 7.5, mean² = 6.25, var = 1.25, / (n-1) = 1.25/3.
        let want = (1.25f64 / 3.0).sqrt() * 2.5f64.exp();
        assert!((s.ppl_error().unwrap() - want).abs() < 1e-12);
        let mut flat = NllStats::default();
        flat.add(2.0);
        flat.add(2.0);
        assert_eq!(
            flat.ppl_error(),
            None,
            "zero variance has no error, as in llama.cpp"
        );
    }

    #[test]
    fn a_model_that_always_gives_the_target_probability_one_half_has_ppl_two() {
        // Two-token vocabulary with equal logits: every prediction is 1/2.
        let mut s = NllStats::default();
        for t in 0..255u32 {
            s.add(-log_prob(&[0.25, 0.25], t % 2));
        }
        assert!((s.ppl() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn chunks_drop_the_remainder_and_start_with_bos() {
        let tokens: Vec<u32> = (10..10 + 1300).collect();
        let c = chunks(&tokens, 512, Some(2), None).unwrap();
        assert_eq!(
            c.len(),
            2,
            "1300 tokens make two chunks of 512; 276 are dropped"
        );
        assert_eq!(c[0][0], 2);
        assert_eq!(c[1][0], 2);
        assert_eq!(&c[0][1..], &tokens[1..512]);
        assert_eq!(&c[1][1..], &tokens[513..1024]);
        assert_eq!(chunks(&tokens, 512, Some(2), Some(1)).unwrap().len(), 1);
        // Without BOS the ids stay.
        assert_eq!(chunks(&tokens, 512, None, None).unwrap()[1][0], tokens[512]);
        assert_eq!(scored_per_chunk(512), 255);
        assert_eq!(first_scored(512), 256);
    }

    #[test]
    fn fewer_tokens_than_one_chunk_is_a_typed_error() {
        let tokens: Vec<u32> = (0..511).collect();
        assert!(matches!(
            chunks(&tokens, 512, Some(2), None),
            Err(PerplexityError::TooFewTokens {
                n_tokens: 511,
                n_ctx: 512
            })
        ));
        assert!(matches!(
            chunks(&[], 512, Some(2), None),
            Err(PerplexityError::TooFewTokens { .. })
        ));
        assert!(matches!(
            chunks(&tokens, 2, Some(2), None),
            Err(PerplexityError::ContextTooSmall(2))
        ));
    }

    /// Synthetic logits: `n` rows over a vocabulary of `v`.
    fn synthetic_rows(n: usize, v: usize, seed: u32) -> Vec<Vec<f32>> {
        (0..n)
            .map(|r| {
                (0..v)
                    .map(|i| {
                        let x = (i as u32)
                            .wrapping_mul(2_654_435_761)
                            .wrapping_add((r as u32 + seed) * 40_503);
                        (x % 1000) as f32 / 100.0
                    })
                    .collect()
            })
            .collect()
    }

    fn base_of(rows: &[Vec<f32>], targets: &[u32], k: usize) -> Vec<BaseToken> {
        rows.iter()
            .zip(targets)
            .map(|(r, &t)| {
                let lse = log_sum_exp(r);
                BaseToken {
                    target_lp: r[t as usize] as f64 - lse,
                    top: top_k(r, k, lse),
                }
            })
            .collect()
    }

    #[test]
    fn kld_of_identical_runs_is_zero_and_top1_agrees_everywhere() {
        let rows = synthetic_rows(40, 300, 1);
        let targets: Vec<u32> = (0..40).map(|i| (i * 7) % 300).collect();
        let base = base_of(&rows, &targets, 16);
        let mut s = KlStats::default();
        for ((r, &t), b) in rows.iter().zip(&targets).zip(&base) {
            s.add(r, t, b);
        }
        assert_eq!(s.kld().0, 0.0);
        assert_eq!(s.same_top(), (1.0, 0.0));
        assert_eq!(s.ln_ppl_ratio().0, 0.0);
    }

    #[test]
    fn kld_of_different_runs_is_positive_and_at_most_the_full_kld() {
        let p_rows = synthetic_rows(20, 200, 1);
        let q_rows = synthetic_rows(20, 200, 2);
        let targets = vec![5u32; 20];
        for k in [1, 8, 200] {
            let base = base_of(&p_rows, &targets, k);
            for ((p, q), b) in p_rows.iter().zip(&q_rows).zip(&base) {
                let (lp, lq) = (log_sum_exp(p), log_sum_exp(q));
                let full: f64 = p
                    .iter()
                    .zip(q)
                    .map(|(&a, &c)| {
                        let la = a as f64 - lp;
                        la.exp() * (la - (c as f64 - lq))
                    })
                    .sum();
                let binned = kl_top_k(q, lq, &b.top);
                assert!(
                    binned > 0.0 && binned <= full + 1e-12,
                    "k {k}: {binned} vs full {full}"
                );
                if k == 200 {
                    assert!((binned - full).abs() < 1e-9, "all of the vocabulary: exact");
                }
            }
        }
    }

    #[test]
    fn top_k_is_sorted_with_ties_by_lower_id() {
        let row = [1.0f32, 5.0, 3.0, 5.0, -2.0];
        let lse = log_sum_exp(&row);
        let t = top_k(&row, 3, lse);
        let ids: Vec<u32> = t.iter().map(|e| e.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!((t[0].1 - (5.0 - lse)).abs() < 1e-12);
    }

    fn write_base(chunks_: &[Vec<u32>], recs: &[BaseToken], k: usize, n_vocab: usize) -> Vec<u8> {
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let n_ctx = chunks_[0].len();
        let mut w =
            KlWriter::new(Box::new(Shared(buf.clone())), n_vocab, n_ctx, k, chunks_).unwrap();
        for r in recs {
            w.write_token(r).unwrap();
        }
        w.finish().unwrap();
        // `finish` consumed the writer, so this is the last reference.
        std::sync::Arc::try_unwrap(buf)
            .unwrap()
            .into_inner()
            .unwrap()
    }

    #[test]
    fn base_file_round_trips() {
        let ch = vec![vec![2u32, 7, 9, 11, 4]];
        let rows = synthetic_rows(2, 50, 3);
        let recs = base_of(&rows, &[9, 11], 4);
        let bytes = write_base(&ch, &recs, 4, 50);
        assert_eq!(bytes.len(), 28 + 5 * 4 + 2 * (8 + 12 * 4));
        let mut r = KlReader::new(Box::new(std::io::Cursor::new(bytes))).unwrap();
        assert_eq!((r.n_vocab, r.n_ctx, r.top_k), (50, 5, 4));
        assert_eq!(r.chunks, ch);
        assert_eq!(r.read_token().unwrap(), recs[0]);
        assert_eq!(r.read_token().unwrap(), recs[1]);
        assert!(
            matches!(r.read_token(), Err(PerplexityError::BaseFile(m)) if m.contains("truncated"))
        );
    }

    #[test]
    fn malformed_base_files_are_typed_errors() {
        let ch = vec![vec![2u32, 7, 9, 11, 4]];
        let rows = synthetic_rows(2, 50, 3);
        let good = write_base(&ch, &base_of(&rows, &[9, 11], 4), 4, 50);
        let open = |b: Vec<u8>| KlReader::new(Box::new(std::io::Cursor::new(b)));
        // Empty, short, and wrong magic.
        assert!(matches!(open(vec![]), Err(PerplexityError::BaseFile(_))));
        assert!(matches!(
            open(good[..20].to_vec()),
            Err(PerplexityError::BaseFile(_))
        ));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(open(b), Err(PerplexityError::BaseFile(m)) if m.contains("magic")));
        // Unknown version.
        let mut b = good.clone();
        b[8] = 9;
        assert!(matches!(open(b), Err(PerplexityError::BaseFile(m)) if m.contains("version")));
        // A header asking for a huge allocation.
        let mut b = good.clone();
        b[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(open(b), Err(PerplexityError::BaseFile(m)) if m.contains("plausible")));
        // top-K of zero.
        let mut b = good.clone();
        b[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(open(b), Err(PerplexityError::BaseFile(_))));
        // A token id outside the vocabulary in the header.
        let mut b = good.clone();
        b[28..32].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            open(b),
            Err(PerplexityError::TokenOutOfRange {
                id: 1000,
                n_vocab: 50
            })
        ));
        // A NaN log-probability in a record.
        let mut b = good.clone();
        let rec = 28 + 20;
        b[rec..rec + 8].copy_from_slice(&f64::NAN.to_le_bytes());
        let mut r = open(b).unwrap();
        assert!(matches!(r.read_token(), Err(PerplexityError::BaseFile(_))));
    }
}
