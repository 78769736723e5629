//! `hearth bench`: prompt processing and generation speed, measured the way
//! llama.cpp's `llama-bench` measures them, and reported against the speed
//! of light (weight bytes read per decoded token against this machine's
//! measured memory bandwidth; matmul GFLOP/s for prefill).
//!
//! The two tests, as `llama-bench` (`tools/llama-bench/llama-bench.cpp`,
//! `test_prompt` and `test_gen`) runs them:
//! - `ppN`: N token ids (BOS first when the vocabulary adds one, then ids
//!   drawn from a fixed-seed generator) evaluated from an empty KV cache in
//!   forward passes of `n_batch` = 512 tokens (so `pp512` is one batched
//!   pass), logits of the last token only;
//! - `tgN`: from an empty KV cache, N forward passes of one token each (BOS,
//!   then random ids), logits every pass.
//!
//! Each test is run once to warm up (page in the mapped weights, size the
//! scratch buffers), then `repetitions` times; each repetition starts from a
//! cleared cache. Speeds are tokens per second per repetition, reported as
//! mean ± sample standard deviation (llama-bench's convention) and median.

use std::time::Instant;

use rayon::prelude::*;
use serde_json::{json, Value as Json};

use hearth::backend::{Backend, KvType};
use hearth::batch::{Batch, Logits};
use hearth::error::{Error, Result};
use hearth::model::{Model, Workspace};

/// Tokens per forward pass during the prompt test (llama-bench's `n_batch`).
pub const BENCH_BATCH: usize = 512;

/// What a benchmark run measures.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Prompt tokens (`pp`); 0 skips the test.
    pub n_prompt: usize,
    /// Generated tokens (`tg`); 0 skips the test.
    pub n_gen: usize,
    /// Timed repetitions of each test (after one warm-up run).
    pub repetitions: usize,
    pub kv_type: KvType,
}

/// The test a row reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    Prompt(usize),
    Gen(usize),
}

impl Test {
    /// llama-bench's name: `pp512`, `tg128`.
    pub fn name(self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Gen(n) => format!("tg{n}"),
        }
    }

    fn tokens(self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => n,
        }
    }
}

/// Timings of one test.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub test: Test,
    /// Seconds per repetition.
    pub samples_s: Vec<f64>,
}

/// Mean, sample standard deviation (n - 1) and median of `xs`.
pub fn stats(xs: &[f64]) -> (f64, f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() > 1 {
        (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        0.5 * (sorted[m - 1] + sorted[m])
    } else {
        sorted[m]
    };
    (mean, sd, median)
}

impl TestResult {
    /// Tokens per second of each repetition.
    pub fn samples_ts(&self) -> Vec<f64> {
        let n = self.test.tokens() as f64;
        self.samples_s.iter().map(|s| n / s).collect()
    }

    /// Mean, standard deviation and median of the tokens per second.
    pub fn ts(&self) -> (f64, f64, f64) {
        stats(&self.samples_ts())
    }
}

/// What the benchmark counts about a model's weights, from its tensor infos.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightStats {
    /// Bytes of all tensors in the file (llama-bench's `size`).
    pub total_bytes: u64,
    /// Elements of all tensors (llama-bench's `params`).
    pub total_params: u64,
    /// Bytes read from weights to decode one token: every tensor in full,
    /// except that the token embedding contributes one row when the model has
    /// a separate `output.weight` (a lookup); when the output is tied to
    /// `token_embd.weight`, that matrix is read in full by the output matmul.
    pub decode_bytes: u64,
    /// Weights of the matrices every token goes through (all `blk.*` tensors
    /// of two or more dimensions).
    pub layer_matmul_params: u64,
    /// Weights of the output matrix (`output.weight`, or the tied
    /// `token_embd.weight`).
    pub output_params: u64,
}

impl WeightStats {
    pub fn new<D: std::ops::Deref<Target = [u8]>>(g: &hearth_gguf::Gguf<D>) -> WeightStats {
        let infos = g.tensor_infos();
        let tied = !infos.iter().any(|t| t.name == "output.weight");
        let mut s = WeightStats {
            total_bytes: 0,
            total_params: 0,
            decode_bytes: 0,
            layer_matmul_params: 0,
            output_params: 0,
        };
        for t in infos {
            let n = t.n_elements();
            s.total_bytes += t.size;
            s.total_params += n;
            let is_embd = t.name == "token_embd.weight";
            s.decode_bytes += if is_embd && !tied {
                t.size / t.n_rows().max(1)
            } else {
                t.size
            };
            if t.name.starts_with("blk.") && t.dims.len() >= 2 {
                s.layer_matmul_params += n;
            }
            if t.name == "output.weight" || (is_embd && tied) {
                s.output_params = n;
            }
        }
        s
    }

    /// Matmul floating-point operations of a prompt test of `n` tokens:
    /// 2 per weight per token through the layers, plus the output matrix
    /// for the one token whose logits are computed. Attention's own
    /// products (QK^T, softmax·V), norms and activations are not counted.
    pub fn prompt_flops(&self, n: usize) -> f64 {
        2.0 * self.layer_matmul_params as f64 * n as f64 + 2.0 * self.output_params as f64
    }
}

/// The ids a test evaluates: BOS first when the model adds one, then ids
/// from a fixed-seed SplitMix64 (llama-bench uses `std::rand() % n_vocab`;
/// the speed does not depend on which ids).
pub fn bench_tokens(n: usize, n_vocab: usize, bos: Option<u32>, seed: u64) -> Vec<u32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| match (i, bos) {
            (0, Some(b)) => b,
            _ => (next() % n_vocab.max(1) as u64) as u32,
        })
        .collect()
}

/// The BOS id if the file's vocabulary adds one (`tokenizer.ggml.add_bos_token`,
/// default true as in llama.cpp when a BOS id is present).
fn bos_of<B: Backend>(model: &Model<B>) -> Option<u32> {
    let bos: Option<u32> = model
        .file
        .get_opt_as("tokenizer.ggml.bos_token_id")
        .ok()
        .flatten();
    let add: bool = model
        .file
        .get_opt_as("tokenizer.ggml.add_bos_token")
        .ok()
        .flatten()
        .unwrap_or(true);
    bos.filter(|_| add)
}

/// Runs the prompt and generation tests on the calling thread's rayon pool.
/// `progress` is called with each finished test.
pub fn run<B: Backend>(
    model: &Model<B>,
    cfg: &BenchConfig,
    mut progress: impl FnMut(&TestResult),
) -> Result<Vec<TestResult>> {
    if cfg.repetitions == 0 {
        return Err(Error::Config(
            "the number of repetitions must be at least 1".into(),
        ));
    }
    let n_ctx = cfg.n_prompt.max(cfg.n_gen).max(1);
    let n_vocab = model.hparams.n_vocab;
    let bos = bos_of(model);
    let mut cache = model.new_cache_with_batch(n_ctx, 1, cfg.kv_type, BENCH_BATCH)?;
    let mut ws = Workspace::new(&model.backend);
    let mut batch = Batch::new();
    let mut results = Vec::new();

    if cfg.n_prompt > 0 {
        let tokens = bench_tokens(cfg.n_prompt, n_vocab, bos, 1);
        let mut samples = Vec::with_capacity(cfg.repetitions);
        for rep in 0..=cfg.repetitions {
            model.backend.clear_seq(&mut cache, 0)?;
            let t0 = Instant::now();
            let mut pos = 0;
            for chunk in tokens.chunks(BENCH_BATCH) {
                let last = pos + chunk.len() == tokens.len();
                batch.clear();
                batch.push(
                    0,
                    pos,
                    chunk,
                    if last { Logits::Last } else { Logits::None },
                )?;
                model.forward(&batch, &mut cache, &mut ws)?;
                pos += chunk.len();
            }
            // Repetition 0 is the warm-up.
            if rep > 0 {
                samples.push(t0.elapsed().as_secs_f64());
            }
        }
        let r = TestResult {
            test: Test::Prompt(cfg.n_prompt),
            samples_s: samples,
        };
        progress(&r);
        results.push(r);
    }

    if cfg.n_gen > 0 {
        let tokens = bench_tokens(cfg.n_gen, n_vocab, bos, 2);
        let mut samples = Vec::with_capacity(cfg.repetitions);
        for rep in 0..=cfg.repetitions {
            model.backend.clear_seq(&mut cache, 0)?;
            let t0 = Instant::now();
            for (pos, t) in tokens.iter().enumerate() {
                batch.clear();
                batch.push(0, pos, std::slice::from_ref(t), Logits::Last)?;
                model.forward(&batch, &mut cache, &mut ws)?;
            }
            if rep > 0 {
                samples.push(t0.elapsed().as_secs_f64());
            }
        }
        let r = TestResult {
            test: Test::Gen(cfg.n_gen),
            samples_s: samples,
        };
        progress(&r);
        results.push(r);
    }
    Ok(results)
}

/// Memory bandwidth measured by a streaming read.
#[derive(Clone, Debug)]
pub struct MemBw {
    pub bytes: usize,
    pub threads: usize,
    /// GB/s (1e9 bytes/s) of each timed pass.
    pub samples_gbs: Vec<f64>,
}

impl MemBw {
    pub fn median_gbs(&self) -> f64 {
        stats(&self.samples_gbs).2
    }
}

/// Reads a buffer of `bytes` (at least 1 GiB to defeat every cache) with the
/// current rayon pool's threads, `runs` timed passes after one warm-up, and
/// returns GB/s of each pass. Every page is written first, so the read does
/// not hit the kernel's shared zero page.
pub fn measure_membw(bytes: usize, runs: usize) -> MemBw {
    let words = (bytes / 8).max(1);
    let mut buf = vec![0u64; words];
    buf.par_chunks_mut(hearth_kernels::membw::TASK_BYTES / 8)
        .enumerate()
        .for_each(|(c, s)| {
            s.iter_mut()
                .enumerate()
                .for_each(|(i, w)| *w = (c + i) as u64)
        });
    let mut samples = Vec::with_capacity(runs);
    for run in 0..=runs.max(1) {
        let t0 = Instant::now();
        let s = hearth_kernels::membw::par_sum(&buf);
        let dt = t0.elapsed().as_secs_f64();
        std::hint::black_box(s);
        if run > 0 {
            samples.push((words * 8) as f64 / dt / 1e9);
        }
    }
    MemBw {
        bytes: words * 8,
        threads: rayon::current_num_threads(),
        samples_gbs: samples,
    }
}

/// Everything one `hearth bench` run reports.
pub struct Report {
    /// llama-bench's model column: architecture, size label, file type.
    pub model_desc: String,
    pub backend: String,
    pub threads: usize,
    pub weights: WeightStats,
    pub results: Vec<TestResult>,
    pub membw: Option<MemBw>,
}

/// llama.cpp's names of `general.file_type` (`llama_model_ftype_name`) for
/// the types it commonly reports; others print as the number.
fn ftype_name(ftype: u32) -> String {
    match ftype {
        0 => "all F32".into(),
        1 => "F16".into(),
        2 => "Q4_0".into(),
        3 => "Q4_1".into(),
        7 => "Q8_0".into(),
        8 => "Q5_0".into(),
        9 => "Q5_1".into(),
        10 => "Q2_K - Medium".into(),
        12 => "Q3_K - Medium".into(),
        14 => "Q4_K - Small".into(),
        15 => "Q4_K - Medium".into(),
        16 => "Q5_K - Small".into(),
        17 => "Q5_K - Medium".into(),
        18 => "Q6_K".into(),
        32 => "BF16".into(),
        n => format!("ftype {n}"),
    }
}

/// "gemma3 270M Q4_K - Medium", from `general.*` metadata.
pub fn model_desc<D: std::ops::Deref<Target = [u8]>>(g: &hearth_gguf::Gguf<D>) -> String {
    let arch = g.architecture().unwrap_or("?").to_string();
    let size: Option<&str> = g.get_opt_as("general.size_label").ok().flatten();
    let ftype: Option<u32> = g.get_opt_as("general.file_type").ok().flatten();
    let mut parts = vec![arch];
    parts.extend(size.map(str::to_string));
    parts.extend(ftype.map(ftype_name));
    parts.join(" ")
}

/// llama-bench's size column: MiB below 1 GiB, else GiB.
fn fmt_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b < (1u64 << 30) as f64 {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    }
}

/// llama-bench's params column: M below 1e9, else B.
fn fmt_params(n: u64) -> String {
    let n = n as f64;
    if n < 1e9 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} B", n / 1e9)
    }
}

/// The derived figures of one test row.
struct Derived {
    mean: f64,
    sd: f64,
    median: f64,
    /// Decode: weight GB/s at the mean speed.
    weight_gbs: Option<f64>,
    /// Decode: that as a fraction of the measured bandwidth.
    membw_frac: Option<f64>,
    /// Prefill: matmul GFLOP/s at the mean speed.
    gflops: Option<f64>,
}

impl Report {
    fn derived(&self, r: &TestResult) -> Derived {
        let (mean, sd, median) = r.ts();
        let (mut weight_gbs, mut membw_frac, mut gflops) = (None, None, None);
        match r.test {
            Test::Gen(_) => {
                let gbs = self.weights.decode_bytes as f64 * mean / 1e9;
                weight_gbs = Some(gbs);
                membw_frac = self.membw.as_ref().map(|m| gbs / m.median_gbs());
            }
            Test::Prompt(n) => {
                let mean_s = stats(&r.samples_s).0;
                gflops = Some(self.weights.prompt_flops(n) / mean_s / 1e9);
            }
        }
        Derived {
            mean,
            sd,
            median,
            weight_gbs,
            membw_frac,
            gflops,
        }
    }

    /// A Markdown table in llama-bench's shape, with the speed-of-light
    /// columns after `t/s`.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| model                          |       size |     params | backend    | threads |            test |                  t/s |   median t/s | weights GB/s | % membw | GFLOP/s |\n");
        s.push_str("| ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: | -----------: | -----------: | ------: | ------: |\n");
        for r in &self.results {
            let d = self.derived(r);
            let opt =
                |v: Option<f64>, prec: usize| v.map_or(String::new(), |v| format!("{v:.prec$}"));
            s.push_str(&format!(
                "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:>15} | {:>20} | {:>12.2} | {:>12} | {:>7} | {:>7} |\n",
                self.model_desc,
                fmt_size(self.weights.total_bytes),
                fmt_params(self.weights.total_params),
                self.backend,
                self.threads,
                r.test.name(),
                format!("{:.2} ± {:.2}", d.mean, d.sd),
                d.median,
                opt(d.weight_gbs, 2),
                opt(d.membw_frac.map(|f| 100.0 * f), 1),
                opt(d.gflops, 1),
            ));
        }
        s
    }

    /// One JSON object per test, with llama-bench's field names where it has one.
    pub fn to_json(&self) -> Json {
        let rows: Vec<Json> = self
            .results
            .iter()
            .map(|r| {
                let d = self.derived(r);
                let (n_prompt, n_gen) = match r.test {
                    Test::Prompt(n) => (n, 0),
                    Test::Gen(n) => (0, n),
                };
                let ns: Vec<u64> = r.samples_s.iter().map(|s| (s * 1e9) as u64).collect();
                let (avg_s, sd_s, _) = stats(&r.samples_s);
                json!({
                    "model_type": self.model_desc,
                    "model_size": self.weights.total_bytes,
                    "model_n_params": self.weights.total_params,
                    "backends": self.backend,
                    "n_threads": self.threads,
                    "n_batch": BENCH_BATCH,
                    "n_prompt": n_prompt,
                    "n_gen": n_gen,
                    "test": r.test.name(),
                    "avg_ns": (avg_s * 1e9) as u64,
                    "stddev_ns": (sd_s * 1e9) as u64,
                    "avg_ts": d.mean,
                    "stddev_ts": d.sd,
                    "median_ts": d.median,
                    "samples_ns": ns,
                    "samples_ts": r.samples_ts(),
                    "decode_weight_bytes": self.weights.decode_bytes,
                    "weight_gbs": d.weight_gbs,
                    "membw_gbs": self.membw.as_ref().map(MemBw::median_gbs),
                    "membw_fraction": d.membw_frac,
                    "matmul_gflops": d.gflops,
                })
            })
            .collect();
        Json::Array(rows)
    }

    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "model_type,model_size,model_n_params,backends,n_threads,n_prompt,n_gen,test,avg_ts,stddev_ts,median_ts,weight_gbs,membw_gbs,membw_fraction,matmul_gflops\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        for r in &self.results {
            let d = self.derived(r);
            let (n_prompt, n_gen) = match r.test {
                Test::Prompt(n) => (n, 0),
                Test::Gen(n) => (0, n),
            };
            s.push_str(&format!(
                "\"{}\",{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{},{},{},{}\n",
                self.model_desc.replace('"', "\"\""),
                self.weights.total_bytes,
                self.weights.total_params,
                self.backend,
                self.threads,
                n_prompt,
                n_gen,
                r.test.name(),
                d.mean,
                d.sd,
                d.median,
                opt(d.weight_gbs),
                opt(self.membw.as_ref().map(MemBw::median_gbs)),
                opt(d.membw_frac),
                opt(d.gflops),
            ));
        }
        s
    }

    /// The notes printed under the Markdown table: what was counted.
    pub fn notes(&self) -> String {
        let w = &self.weights;
        let mut s = String::new();
        for r in &self.results {
            s.push_str(&match r.test {
                Test::Prompt(n) => format!(
                    "pp{n}: {n} prompt tokens from an empty cache in {} forward pass(es) of at most {BENCH_BATCH} tokens, logits of the last token only; ",
                    n.div_ceil(BENCH_BATCH)
                ),
                Test::Gen(n) => {
                    format!("tg{n}: {n} tokens, one per forward pass, from an empty cache; ")
                }
            });
        }
        s.push_str(&format!(
            "t/s: mean ± sample stddev over the repetitions, then the median.\n\
             weights GB/s = {:.1} MB of weights read per decoded token (every tensor; the tied output matrix in full) x mean tg t/s.\n\
             GFLOP/s = 2 x ({:.1} M layer matmul weights x tokens + {:.1} M output weights x 1) / mean time; attention products are not counted.\n",
            w.decode_bytes as f64 / 1e6,
            w.layer_matmul_params as f64 / 1e6,
            w.output_params as f64 / 1e6,
        ));
        match &self.membw {
            Some(m) => {
                let (_, sd, med) = stats(&m.samples_gbs);
                s.push_str(&format!(
                    "membw: streaming read of {:.2} GiB with {} threads: median {:.2} GB/s (sd {:.2}) over {} passes; \
                     decode speed of light {:.1} t/s.\n",
                    m.bytes as f64 / (1u64 << 30) as f64,
                    m.threads,
                    med,
                    sd,
                    m.samples_gbs.len(),
                    med * 1e9 / w.decode_bytes as f64,
                ));
            }
            None => s.push_str(
                "% membw: run with --membw to measure this machine's memory bandwidth.\n",
            ),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_mean_sample_sd_and_median() {
        let (mean, sd, median) = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(median, 2.5);
        assert_eq!(stats(&[7.0]), (7.0, 0.0, 7.0));
        assert!(stats(&[]).0.is_nan());
    }

    #[test]
    fn bench_tokens_start_with_bos_and_stay_in_the_vocabulary() {
        let t = bench_tokens(1000, 50, Some(2), 1);
        assert_eq!(t[0], 2);
        assert!(t.iter().all(|&id| id < 50));
        // Not a constant sequence (the test is not BOS-only).
        assert!(t[1..].iter().any(|&id| id != t[1]));
        assert_eq!(
            t,
            bench_tokens(1000, 50, Some(2), 1),
            "fixed seed, same ids"
        );
        assert_ne!(bench_tokens(3, 1 << 20, None, 1)[0], 2);
    }

    #[test]
    fn prompt_flops_count_the_output_matrix_once() {
        let w = WeightStats {
            total_bytes: 0,
            total_params: 0,
            decode_bytes: 0,
            layer_matmul_params: 100,
            output_params: 1000,
        };
        assert_eq!(w.prompt_flops(512), 2.0 * 100.0 * 512.0 + 2000.0);
    }

    /// Issue 17: the footnote described pp512/tg128 whatever `-p`/`-n` said.
    #[test]
    fn notes_describe_the_tests_that_ran() {
        let report = |tests: &[Test]| Report {
            model_desc: String::new(),
            backend: "CPU".into(),
            threads: 1,
            weights: WeightStats {
                total_bytes: 0,
                total_params: 0,
                decode_bytes: 1,
                layer_matmul_params: 1,
                output_params: 1,
            },
            results: tests
                .iter()
                .map(|&test| TestResult {
                    test,
                    samples_s: vec![1.0],
                })
                .collect(),
            membw: None,
        };
        let n = report(&[Test::Prompt(1000), Test::Gen(7)]).notes();
        assert!(n.contains("pp1000: 1000 prompt tokens"), "{n}");
        assert!(n.contains("2 forward pass(es) of at most 512"), "{n}");
        assert!(n.contains("tg7: 7 tokens, one per forward pass"), "{n}");
        let n = report(&[Test::Prompt(64)]).notes();
        assert!(
            n.contains("pp64: 64 prompt tokens") && n.contains("in 1 forward"),
            "{n}"
        );
        assert!(!n.contains("one per forward pass"), "{n}");
    }

    #[test]
    fn membw_reads_the_whole_buffer() {
        let m = measure_membw(1 << 20, 3);
        assert_eq!(m.bytes, 1 << 20);
        assert_eq!(m.samples_gbs.len(), 3);
        assert!(m.samples_gbs.iter().all(|&g| g.is_finite() && g > 0.0));
    }
}
