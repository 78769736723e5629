//! Token sampling: greedy, temperature, top-k, top-p, min-p, penalties.
//!
//! [`Sampler`] turns one row of logits (one `f32` per vocabulary entry, e.g.
//! 262144 for Gemma 3) into a token id, like llama.cpp's common sampler
//! chain, applied in llama.cpp's order:
//!
//! 1. repetition / frequency / presence penalties over the last
//!    `penalty_last_n` accepted tokens;
//! 2. top-k, 3. top-p, 4. min-p (all three keep a head of the tokens sorted
//!    by logit; top-p and min-p measure probability at temperature 1, as in
//!    llama.cpp, where temperature comes after them);
//! 5. temperature, then a seeded draw. Temperature 0 is greedy.
//!
//! Cost over a 262k vocabulary: greedy is two vectorisable passes (maximum,
//! then its position). Top-k and top-p find the head they keep with a
//! 1024-bucket histogram of the logits (counts for top-k, probability mass
//! for top-p, like llama.cpp's bucket sort), collect only the tokens in the
//! buckets above the cut, and `select_nth_unstable` / sort just those. No
//! path sorts the whole vocabulary.
//!
//! [`logprobs`] gives the log-probability of a token and the top-n
//! alternatives for the server's `logprobs`; [`StopMatcher`] and
//! [`StopCriteria`] decide when generation ends.
//!
//! Every logit must be finite: a NaN or infinity from a broken forward pass
//! is [`SamplerError::NonFiniteLogit`], never a silent token 0.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

/// What can go wrong while configuring a sampler or sampling.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error("invalid sampling parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("logit of token {token} is {value}, not a finite number")]
    NonFiniteLogit { token: u32, value: f32 },
    #[error("the logits row is empty")]
    EmptyLogits,
    #[error("the logits row has {len} entries, more than a u32 token id can index")]
    VocabTooLarge { len: usize },
    #[error("token {token} is outside the vocabulary of {vocab} entries")]
    TokenOutOfRange { token: u32, vocab: usize },
}

pub type Result<T, E = SamplerError> = std::result::Result<T, E>;

/// Sampling parameters. [`Default`] is llama.cpp's `common_params_sampling`
/// default chain except for the seed, which is fixed here (0) so that a run is
/// reproducible unless the caller picks another.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; 0 means greedy. Must be finite and >= 0.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `top_p`; in (0, 1], 1 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely
    /// token's; in [0, 1], 0 disables.
    pub min_p: f32,
    /// llama.cpp's repetition penalty: positive logits of recent tokens are
    /// divided by it, negative ones multiplied. Finite and > 0; 1 disables.
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every token seen in the window.
    pub presence_penalty: f32,
    /// Subtracted `count` times from the logit of a token seen `count` times.
    pub frequency_penalty: f32,
    /// How many of the most recent accepted tokens the penalties look at;
    /// 0 disables the penalties.
    pub penalty_last_n: usize,
    /// Seed of the draw: the same seed, logits and accepted tokens give the
    /// same tokens on every platform.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        // Values from llama.cpp common/common.h `common_params_sampling`.
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token (ties: lowest id).
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        }
    }

    /// Checks every parameter; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        fn bad(name: &'static str, value: f32, reason: &'static str) -> Result<()> {
            Err(SamplerError::InvalidParameter {
                name,
                value: value.to_string(),
                reason,
            })
        }
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return bad("temperature", t, "must be a finite number >= 0");
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return bad("top_p", p, "must be in (0, 1]");
        }
        let m = self.min_p;
        if !(0.0..=1.0).contains(&m) {
            return bad("min_p", m, "must be in [0, 1]");
        }
        let r = self.repeat_penalty;
        if !r.is_finite() || r <= 0.0 {
            return bad("repeat_penalty", r, "must be a finite number > 0");
        }
        if !self.presence_penalty.is_finite() {
            return bad("presence_penalty", self.presence_penalty, "must be finite");
        }
        if !self.frequency_penalty.is_finite() {
            return bad(
                "frequency_penalty",
                self.frequency_penalty,
                "must be finite",
            );
        }
        Ok(())
    }

    fn penalties_active(&self) -> bool {
        self.penalty_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

/// xoshiro256** (Blackman & Vigna, 2018) seeded through SplitMix64, as the
/// authors recommend. Written out here so the sequence of draws for a seed is
/// fixed by this file, not by a dependency's version or the platform.
#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [splitmix(), splitmix(), splitmix(), splitmix()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The index of the largest logit, ties going to the lowest id. A
/// non-finite logit is an error. Two linear passes that vectorise: the
/// maximum, then its first position.
pub fn argmax(logits: &[f32]) -> Result<u32> {
    let (max, _) = max_min(logits)?;
    // `max` is one of the values, so the search finds it.
    let i = logits.iter().position(|&v| v == max).unwrap_or(0);
    Ok(i as u32)
}

/// Lanes of the reductions below: independent accumulators let the
/// compiler keep them in vector registers.
const LANES: usize = 16;

/// The largest and smallest logit, in one pass; the first non-finite logit
/// (NaN or ±inf) is an error.
fn max_min(logits: &[f32]) -> Result<(f32, f32)> {
    check_len(logits)?;
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut lo = [f32::INFINITY; LANES];
    // Set when any exponent field is all ones: NaN or infinity.
    let mut bad = [0u32; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            let v = c[j];
            hi[j] = if v > hi[j] { v } else { hi[j] };
            lo[j] = if v < lo[j] { v } else { lo[j] };
            bad[j] |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
        }
    }
    for (j, &v) in tail.iter().enumerate() {
        hi[j] = if v > hi[j] { v } else { hi[j] };
        lo[j] = if v < lo[j] { v } else { lo[j] };
        bad[j] |= u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
    }
    if bad.iter().any(|&b| b != 0) {
        let i = logits.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(non_finite(i, logits[i]));
    }
    let max = hi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = lo.iter().copied().fold(f32::INFINITY, f32::min);
    Ok((max, min))
}

fn check_len(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(SamplerError::EmptyLogits);
    }
    if u32::try_from(logits.len()).is_err() {
        return Err(SamplerError::VocabTooLarge { len: logits.len() });
    }
    Ok(())
}

fn non_finite(i: usize, value: f32) -> SamplerError {
    SamplerError::NonFiniteLogit {
        token: i as u32,
        value,
    }
}

/// Descending by logit, then ascending by id: a total order, so the
/// unstable selections and sorts below give the same result on every run.
fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Buckets of the logit histograms that find the head of a row without
/// sorting it (the approach of llama.cpp's bucket sort for top-k).
const BUCKETS: usize = 1024;

/// Maps a logit to its histogram bucket over `[min, max]`; higher logits go
/// to higher buckets, so "bucket >= b" is a head of the sorted order.
#[derive(Clone, Copy)]
struct Bucketer {
    min: f32,
    scale: f32,
}

impl Bucketer {
    fn new(min: f32, max: f32) -> Self {
        let range = max - min;
        // An all-equal row, or a range that overflows f32, puts every
        // logit in bucket 0: correct, only slower.
        let scale = if range > 0.0 && range.is_finite() {
            (BUCKETS - 1) as f32 / range
        } else {
            0.0
        };
        Bucketer { min, scale }
    }

    fn bucket(self, v: f32) -> usize {
        // `as` saturates, so rounding below `min` gives bucket 0.
        (((v - self.min) * self.scale) as usize).min(BUCKETS - 1)
    }

    /// A logit that every token in bucket `b` or above reaches, with one
    /// bucket of margin for rounding: collecting `v >= lower_edge(b)` is a
    /// plain comparison and gives a superset of those buckets.
    fn lower_edge(self, b: usize) -> f32 {
        if b <= 1 || self.scale == 0.0 {
            return f32::NEG_INFINITY;
        }
        self.min + (b - 1) as f32 / self.scale
    }
}

/// The `k` best `(id, logit)` pairs, sorted best first, into `out`: a
/// histogram pass finds a bucket whose head holds at least `k` tokens, only
/// those are collected, and only they are selected and sorted.
fn top_k_into(logits: &[f32], min: f32, max: f32, k: usize, out: &mut Vec<(u32, f32)>) {
    out.clear();
    let k = k.min(logits.len());
    if k == 0 {
        return;
    }
    let bk = Bucketer::new(min, max);
    let mut hist = vec![0u32; BUCKETS];
    for &v in logits {
        hist[bk.bucket(v)] += 1;
    }
    let mut cum = 0usize;
    let mut cut = 0;
    for b in (0..BUCKETS).rev() {
        cum += hist[b] as usize;
        if cum >= k {
            cut = b;
            break;
        }
    }
    let edge = bk.lower_edge(cut);
    out.extend(
        logits
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v >= edge)
            .map(|(i, &v)| (i as u32, v)),
    );
    if k < out.len() {
        out.select_nth_unstable_by(k - 1, by_logit_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(by_logit_desc);
}

/// Cuts a sorted candidate list to the shortest head whose probability
/// (`exp(logit - max) / z`) reaches `top_p`; keeps all if none does.
fn cut_nucleus(cand: &mut Vec<(u32, f32)>, max: f32, z: f64, top_p: f32) {
    let target = f64::from(top_p) * z;
    let mut cum = 0.0f64;
    for (i, &(_, v)) in cand.iter().enumerate() {
        cum += f64::from((v - max).exp());
        if cum >= target {
            cand.truncate(i + 1);
            return;
        }
    }
}

/// A stateful sampler: configuration, the seeded generator and the window of
/// recent tokens the penalties look at.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// The last `penalty_last_n` accepted tokens, oldest first.
    window: VecDeque<u32>,
    /// How often each token occurs in `window`.
    counts: HashMap<u32, u32>,
    /// Reused buffers, so that sampling allocates nothing after warm-up.
    work: Vec<f32>,
    cand: Vec<(u32, f32)>,
    weights: Vec<f32>,
}

impl Sampler {
    /// A sampler for `cfg`, which is validated first.
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Sampler {
            rng: Rng::new(cfg.seed),
            cfg,
            window: VecDeque::new(),
            counts: HashMap::new(),
            work: Vec::new(),
            cand: Vec::new(),
            weights: Vec::new(),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records `token` as generated (or as part of the prompt, if the caller
    /// wants prompt tokens penalised as llama.cpp's server does), so the
    /// penalties see it.
    pub fn accept(&mut self, token: u32) {
        let n = self.cfg.penalty_last_n;
        if n == 0 {
            return;
        }
        if self.window.len() == n {
            if let Some(old) = self.window.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.window.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    /// Forgets the accepted tokens and restarts the generator from the seed.
    pub fn reset(&mut self) {
        self.window.clear();
        self.counts.clear();
        self.rng = Rng::new(self.cfg.seed);
    }

    /// Picks the next token from one row of logits. Does not accept it: call
    /// [`accept`](Self::accept) with the token that is actually used.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        check_len(logits)?;
        let penalise = self.cfg.penalties_active() && !self.counts.is_empty();
        if penalise {
            self.apply_penalties(logits)?;
        }
        let Sampler {
            cfg,
            rng,
            work,
            cand,
            weights,
            ..
        } = self;
        let logits: &[f32] = if penalise { work } else { logits };
        // A temperature so small that 1/T overflows is greedy too.
        if cfg.temperature == 0.0 || !(1.0 / cfg.temperature).is_finite() {
            return argmax(logits);
        }
        let n = logits.len();
        let (max, min) = max_min(logits)?;

        // Top-k, top-p and min-p each keep a head of the tokens sorted by
        // logit, so together they keep the shortest of the three heads. They
        // differ in what top-p normalises over: llama.cpp renormalises after
        // each step, so top-p after top-k measures probability within the
        // top k. Everything is at temperature 1 until the draw.
        //
        // min-p: p / p_max >= min_p  <=>  logit >= max + ln(min_p).
        let threshold = if cfg.min_p > 0.0 {
            max + cfg.min_p.ln()
        } else {
            f32::NEG_INFINITY
        };
        let top_p_active = cfg.top_p < 1.0;
        if cfg.top_k > 0 && cfg.top_k < n {
            top_k_into(logits, min, max, cfg.top_k, cand);
            if top_p_active {
                let z: f64 = cand.iter().map(|&(_, v)| f64::from((v - max).exp())).sum();
                cut_nucleus(cand, max, z, cfg.top_p);
            }
            cand.retain(|&(_, v)| v >= threshold);
        } else if top_p_active {
            // One pass for the normaliser and the probability mass per
            // logit bucket; the nucleus then lies in the buckets from the
            // one where the mass from the top reaches top_p (plus margin,
            // see `lower_edge`). Only those are sorted.
            let bk = Bucketer::new(min, max);
            let mut mass = vec![0.0f64; BUCKETS];
            let mut z = 0.0f64;
            for &v in logits {
                let w = f64::from((v - max).exp());
                mass[bk.bucket(v)] += w;
                z += w;
            }
            let target = f64::from(cfg.top_p) * z;
            let mut cum = 0.0;
            let mut cut = 0;
            for b in (0..BUCKETS).rev() {
                cum += mass[b];
                if cum >= target {
                    cut = b;
                    break;
                }
            }
            let edge = bk.lower_edge(cut).max(threshold);
            cand.clear();
            cand.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|&(_, &v)| v >= edge)
                    .map(|(i, &v)| (i as u32, v)),
            );
            cand.sort_unstable_by(by_logit_desc);
            cut_nucleus(cand, max, z, cfg.top_p);
        } else if cfg.min_p > 0.0 {
            cand.clear();
            cand.extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|&(_, &v)| v >= threshold)
                    .map(|(i, &v)| (i as u32, v)),
            );
        } else {
            // No filter: draw over the whole row without building pairs.
            return Ok(draw(
                rng,
                logits.iter().enumerate().map(|(i, &v)| (i as u32, v)),
                max,
                cfg.temperature,
                weights,
            ));
        }
        // The maximum survives every filter above, so `cand` is not empty.
        Ok(draw(
            rng,
            cand.iter().copied(),
            max,
            cfg.temperature,
            weights,
        ))
    }

    /// Copies `logits` into the work buffer and applies llama.cpp's
    /// penalties (src/llama-sampling.cpp, `llama_sampler_penalties_apply`)
    /// to the tokens in the window.
    fn apply_penalties(&mut self, logits: &[f32]) -> Result<()> {
        let cfg = &self.cfg;
        self.work.clear();
        self.work.extend_from_slice(logits);
        for (&token, &count) in &self.counts {
            let Some(l) = self.work.get_mut(token as usize) else {
                // An accepted token outside this row's vocabulary has no
                // logit to penalise.
                continue;
            };
            if !l.is_finite() {
                return Err(non_finite(token as usize, *l));
            }
            if *l <= 0.0 {
                *l *= cfg.repeat_penalty;
            } else {
                *l /= cfg.repeat_penalty;
            }
            *l -= count as f32 * cfg.frequency_penalty + cfg.presence_penalty;
        }
        Ok(())
    }
}

/// Draws one of `cand` with probability proportional to
/// `exp((logit - max) / temperature)`: the weights are computed once into
/// `weights`, then one uniform number in [0, total) picks the token.
fn draw<I>(rng: &mut Rng, cand: I, max: f32, temperature: f32, weights: &mut Vec<f32>) -> u32
where
    I: Iterator<Item = (u32, f32)> + Clone,
{
    let inv_t = 1.0 / temperature;
    weights.clear();
    weights.extend(cand.clone().map(|(_, v)| ((v - max) * inv_t).exp()));
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut r = rng.next_f64() * total;
    let mut last = 0;
    for ((id, _), &w) in cand.zip(weights.iter()) {
        let w = f64::from(w);
        last = id;
        if r < w {
            return id;
        }
        r -= w;
    }
    // Rounding left `r` just above the last weight.
    last
}

/// The log-probability of one token and the `top_n` most likely tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// `(token, logprob)`, most likely first, ties by lower id.
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of the raw logits (the model's distribution before
/// penalties, temperature and filtering, which is what OpenAI-style
/// `logprobs` report) for `token`, and the `top_n` best tokens.
pub fn logprobs(logits: &[f32], token: u32, top_n: usize) -> Result<TokenLogprobs> {
    let (max, min) = max_min(logits)?;
    let Some(&chosen) = logits.get(token as usize) else {
        return Err(SamplerError::TokenOutOfRange {
            token,
            vocab: logits.len(),
        });
    };
    let sum: f64 = logits.iter().map(|&v| f64::from((v - max).exp())).sum();
    let log_z = f64::from(max) + sum.ln();
    let lp = |v: f32| (f64::from(v) - log_z) as f32;
    let mut top = Vec::new();
    top_k_into(logits, min, max, top_n, &mut top);
    Ok(TokenLogprobs {
        token,
        logprob: lp(chosen),
        top: top.into_iter().map(|(i, v)| (i, lp(v))).collect(),
    })
}

/// Most stop strings a [`StopMatcher`] takes (OpenAI allows 4; llama.cpp
/// any number; 16 leaves room for templates with several end markers).
pub const MAX_STOP_STRINGS: usize = 16;
/// Most bytes all stop strings of a [`StopMatcher`] may have together: the
/// matcher's automaton has one state per byte.
pub const MAX_STOP_BYTES: usize = 8192;

/// Finds stop strings in streamed text, across token boundaries.
///
/// Text that could be the start of a stop string is held back until the next
/// push shows whether it is; the stop string itself and anything after it
/// are never emitted. When several stop strings occur in the text of one
/// push, the one that starts first wins (the lower index on a tie).
///
/// The strings are compiled once into an Aho-Corasick automaton (a trie of
/// their bytes with failure links), whose state after each byte is the
/// longest suffix of the text that is a prefix of a stop string: that
/// suffix is exactly the text to hold back. A push therefore costs time
/// linear in its own text (amortised: each byte moves down the trie once and
/// each failure link moves back up), whatever the number and length of the
/// stop strings; nothing is rescanned.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    auto: StopAutomaton,
    state: u32,
    pending: String,
    matched: Option<usize>,
    /// Trie moves made so far (forward and failure), for the linear bound.
    moves: u64,
}

impl StopMatcher {
    /// A matcher for `stops`; an empty stop string is an error (it would
    /// stop before the first character), and so are more than
    /// [`MAX_STOP_STRINGS`] strings or more than [`MAX_STOP_BYTES`] bytes.
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> Result<Self> {
        let stops: Vec<String> = stops.into_iter().map(Into::into).collect();
        if stops.iter().any(String::is_empty) {
            return Err(SamplerError::InvalidParameter {
                name: "stop",
                value: "\"\"".to_string(),
                reason: "stop strings must not be empty",
            });
        }
        if stops.len() > MAX_STOP_STRINGS {
            return Err(SamplerError::InvalidParameter {
                name: "stop",
                value: format!("{} strings", stops.len()),
                reason: "at most 16 stop strings are allowed (MAX_STOP_STRINGS)",
            });
        }
        let total: usize = stops.iter().map(String::len).sum();
        if total > MAX_STOP_BYTES {
            return Err(SamplerError::InvalidParameter {
                name: "stop",
                value: format!("{total} bytes"),
                reason: "stop strings may have at most 8192 bytes together (MAX_STOP_BYTES)",
            });
        }
        Ok(StopMatcher {
            auto: StopAutomaton::new(&stops),
            state: 0,
            pending: String::new(),
            matched: None,
            moves: 0,
        })
    }

    /// Adds `text` and returns what can be shown now, and whether a stop
    /// string was found (after which every push returns `("", true)`).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.matched.is_some() {
            return (String::new(), true);
        }
        let base = self.pending.len();
        self.pending.push_str(text);
        // Every occurrence that ends in `text`; the earliest start wins.
        let mut found: Option<(usize, usize)> = None;
        for (i, &b) in text.as_bytes().iter().enumerate() {
            let (next, moves) = self.auto.next(self.state, b);
            self.state = next;
            self.moves += moves;
            let end = base + i + 1;
            for &p in self.auto.outputs(next) {
                let hit = (end - self.auto.len(p), p as usize);
                found = Some(found.map_or(hit, |f| f.min(hit)));
            }
        }
        if let Some((pos, i)) = found {
            self.matched = Some(i);
            let mut emit = std::mem::take(&mut self.pending);
            emit.truncate(pos);
            return (emit, true);
        }
        // The state's depth is the longest suffix that may still become a
        // stop string; it starts where a stop string starts, on a char
        // boundary.
        let hold = self.auto.depth(self.state);
        let split = self.pending.len() - hold;
        debug_assert!(self.pending.is_char_boundary(split));
        let rest = self.pending.split_off(split);
        let emit = std::mem::replace(&mut self.pending, rest);
        (emit, false)
    }

    /// Trie moves made so far: at most twice the bytes pushed (each byte
    /// goes one level down, each failure link at least one level up).
    pub fn moves(&self) -> u64 {
        self.moves
    }

    /// Ends the stream: the held-back text, which turned out not to be a
    /// stop string (empty once a stop string matched).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// The index (in the list given to [`new`](Self::new)) of the stop
    /// string that matched, if one did.
    pub fn matched(&self) -> Option<usize> {
        self.matched
    }
}

/// The Aho-Corasick automaton of a [`StopMatcher`]: a trie over the stop
/// strings' bytes (state 0 is the root, the empty prefix) with failure
/// links, as in Aho and Corasick, "Efficient string matching" (1975).
#[derive(Debug, Clone)]
struct StopAutomaton {
    /// Per state, its children by byte, sorted by byte.
    children: Vec<Vec<(u8, u32)>>,
    /// Per state, the state of its longest proper suffix that is in the trie.
    fail: Vec<u32>,
    /// Per state, the length of its prefix.
    depth: Vec<u32>,
    /// Per state, the stop strings that end there or at a state down its
    /// failure chain (at most [`MAX_STOP_STRINGS`]).
    out: Vec<Vec<u16>>,
    /// Byte length of each stop string.
    lens: Vec<usize>,
}

impl StopAutomaton {
    fn new(stops: &[String]) -> StopAutomaton {
        let mut a = StopAutomaton {
            children: vec![Vec::new()],
            fail: vec![0],
            depth: vec![0],
            out: vec![Vec::new()],
            lens: stops.iter().map(String::len).collect(),
        };
        for (i, s) in stops.iter().enumerate() {
            let mut st = 0u32;
            for &b in s.as_bytes() {
                st = match a.child(st, b) {
                    Some(c) => c,
                    None => {
                        let c = a.fail.len() as u32;
                        a.children.push(Vec::new());
                        a.fail.push(0);
                        a.depth.push(a.depth[st as usize] + 1);
                        a.out.push(Vec::new());
                        let kids = &mut a.children[st as usize];
                        let at = kids.partition_point(|&(k, _)| k < b);
                        kids.insert(at, (b, c));
                        c
                    }
                };
            }
            a.out[st as usize].push(i as u16);
        }
        // Breadth first, so a state's failure target is done before it.
        let mut queue: VecDeque<u32> = a.children[0].iter().map(|&(_, c)| c).collect();
        while let Some(st) = queue.pop_front() {
            for (b, c) in a.children[st as usize].clone() {
                let mut f = a.fail[st as usize];
                let target = loop {
                    if let Some(t) = a.child(f, b) {
                        break t;
                    }
                    if f == 0 {
                        break 0;
                    }
                    f = a.fail[f as usize];
                };
                a.fail[c as usize] = target;
                let inherited = a.out[target as usize].clone();
                a.out[c as usize].extend(inherited);
                queue.push_back(c);
            }
        }
        a
    }

    fn child(&self, st: u32, b: u8) -> Option<u32> {
        let kids = &self.children[st as usize];
        kids.binary_search_by_key(&b, |&(k, _)| k)
            .ok()
            .map(|i| kids[i].1)
    }

    /// The state after byte `b`, and the trie moves it took.
    fn next(&self, mut st: u32, b: u8) -> (u32, u64) {
        let mut moves = 1;
        loop {
            if let Some(c) = self.child(st, b) {
                return (c, moves);
            }
            if st == 0 {
                return (0, moves);
            }
            st = self.fail[st as usize];
            moves += 1;
        }
    }

    fn outputs(&self, st: u32) -> &[u16] {
        &self.out[st as usize]
    }

    fn depth(&self, st: u32) -> usize {
        self.depth[st as usize] as usize
    }

    fn len(&self, p: u16) -> usize {
        self.lens[p as usize]
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// An end-of-generation token (not shown) was sampled.
    EndOfGeneration(u32),
    /// The stop string with this index appeared in the text.
    StopString(usize),
}

/// What one generated token adds to the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Text to show now.
    pub emit: String,
    /// Set when generation must end after this token.
    pub stop: Option<StopReason>,
}

/// The stop conditions of one generation: a token budget, end-of-generation
/// token ids and stop strings.
#[derive(Debug, Clone)]
pub struct StopCriteria {
    max_tokens: Option<usize>,
    eog: Vec<u32>,
    matcher: StopMatcher,
    generated: usize,
    stopped: Option<StopReason>,
}

impl StopCriteria {
    /// `max_tokens` of `Some(0)` is an error: nothing could be generated.
    pub fn new<S: Into<String>>(
        max_tokens: Option<usize>,
        eog_tokens: impl IntoIterator<Item = u32>,
        stop_strings: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        if max_tokens == Some(0) {
            return Err(SamplerError::InvalidParameter {
                name: "max_tokens",
                value: "0".to_string(),
                reason: "must be at least 1",
            });
        }
        Ok(StopCriteria {
            max_tokens,
            eog: eog_tokens.into_iter().collect(),
            matcher: StopMatcher::new(stop_strings)?,
            generated: 0,
            stopped: None,
        })
    }

    /// Feeds one generated token and its detokenized text.
    pub fn step(&mut self, token: u32, text: &str) -> Step {
        if let Some(reason) = self.stopped {
            return Step {
                emit: String::new(),
                stop: Some(reason),
            };
        }
        self.generated += 1;
        let (emit, stop) = if self.eog.contains(&token) {
            // The end token's own text is not output; what was held back as
            // a possible stop string is.
            (
                self.matcher.finish(),
                Some(StopReason::EndOfGeneration(token)),
            )
        } else {
            let (mut emit, hit) = self.matcher.push(text);
            if hit {
                let i = self.matcher.matched().unwrap_or(0);
                (emit, Some(StopReason::StopString(i)))
            } else if self.max_tokens.is_some_and(|m| self.generated >= m) {
                emit.push_str(&self.matcher.finish());
                (emit, Some(StopReason::MaxTokens))
            } else {
                (emit, None)
            }
        };
        self.stopped = stop;
        Step { emit, stop }
    }

    /// How many tokens have been fed.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Text still held back; call when generation ends for another reason
    /// (e.g. the context is full).
    pub fn finish(&mut self) -> String {
        self.matcher.finish()
    }
}
