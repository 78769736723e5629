//! The `hearth` command.

mod bench;
mod info;
mod sigbus;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use hearth::backend::cpu::Cpu;
use hearth::backend::wgpu::Wgpu;
use hearth::backend::{Backend, KvType};
use hearth::batch::{Batch, Logits};
use hearth::chat::{ChatTemplate, Message};
use hearth::generate::Generator;
use hearth::model::{Model, OpenOptions, Workspace};
use hearth::sampler::{SamplerConfig, StopReason};
use hearth::session::Session;
use hearth::tokenizer::Tokenizer;

type BoxError = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Run GGUF language models on your own hardware."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF file holds: model, hyper-parameters, tokenizer, tensors.
    Info {
        /// The GGUF model file.
        #[arg(required_unless_present = "gpus")]
        model: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list every metadata key with its type and value.
        #[arg(long, short = 'm')]
        metadata: bool,
        /// Also show which CPU kernels (instruction sets) this machine runs.
        #[arg(long)]
        cpu: bool,
        /// List the WebGPU adapters `--backend wgpu` can use (no model needed).
        #[arg(long)]
        gpus: bool,
    },
    /// Tokenize a text (a file's bytes exactly as they are, or -p); print the ids.
    Tokenize {
        /// The GGUF file (a vocabulary-only file is enough).
        model: PathBuf,
        /// A file holding the UTF-8 text to tokenize (no trimming, no added
        /// newline).
        #[arg(long, short = 'f', conflicts_with = "prompt")]
        text_file: Option<PathBuf>,
        /// The text to tokenize, given on the command line.
        #[arg(long, short = 'p')]
        prompt: Option<String>,
        /// Do not add the BOS token the file asks for.
        #[arg(long)]
        no_bos: bool,
        /// Turn special-token text (e.g. `<start_of_turn>`) into those tokens.
        #[arg(long)]
        parse_special: bool,
        /// Print each token's piece beside its id, one per line.
        #[arg(long)]
        pieces: bool,
    },
    /// Top logits at every position and a greedy continuation for each prompt,
    /// as JSON lines in the format of llama.cpp's reference files.
    Logits {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// One prompt per line, with JSON string escapes (`\n`, `\"`, `\uXXXX`, ...).
        #[arg(long)]
        prompt_file: PathBuf,
        /// Logits kept per position.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Greedy tokens generated after each prompt.
        #[arg(short = 'n', long, default_value_t = 32)]
        n_predict: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Run a prompt once and print its named intermediates, layer by layer,
    /// as llama.cpp's `llama-eval-callback` prints them (`attn_norm-3`, ...);
    /// `scripts/compare-tap.py` then finds the first that differs from llama.cpp's.
    Tap {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// The prompt, tokenized as llama-eval-callback does (BOS if the file
        /// asks for it, special-token text parsed); evaluated in one batch,
        /// logits for its last token.
        #[arg(short = 'p', long)]
        prompt: String,
        /// Only these steps, comma-separated (e.g. `attn_norm,l_out`).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Only these layers, comma-separated (the embedding and the tail are
        /// always printed).
        #[arg(long, value_delimiter = ',')]
        layers: Vec<usize>,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Generate text from a prompt, streamed to stdout.
    Run {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// The prompt.
        #[arg(short = 'p', long, conflicts_with = "file")]
        prompt: Option<String>,
        /// Read the prompt from a file.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Tokens to generate at most.
        #[arg(short = 'n', long, default_value_t = 256)]
        n_predict: usize,
        /// Wrap the prompt in the model's chat template as a user message.
        #[arg(long)]
        chat: bool,
        /// With --chat: parse special-token text inside the prompt as those
        /// tokens (llama.cpp's behaviour). By default the prompt is plain
        /// text inside the template's markers.
        #[arg(long, requires = "chat")]
        special_in_content: bool,
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        common: Common,
    },
    /// Measure prompt processing and generation speed as llama-bench does,
    /// against this machine's memory bandwidth.
    Bench {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Prompt tokens (test ppN); 0 skips the test.
        #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
        n_prompt: usize,
        /// Generated tokens (test tgN); 0 skips the test.
        #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
        n_gen: usize,
        /// Timed repetitions of each test, after one warm-up run.
        #[arg(short = 'r', long, default_value_t = 5)]
        repetitions: usize,
        /// Threads (default: all cores).
        #[arg(short = 't', long)]
        threads: Option<usize>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = BenchFormat::Md)]
        output: BenchFormat,
        /// Also measure the memory bandwidth (a streaming read of 1 GiB,
        /// median of 7 passes) and report decode as a fraction of it.
        #[arg(long)]
        membw: bool,
        /// Element type of the KV cache.
        #[arg(long, value_enum, default_value_t = KvArg::F16)]
        kv_type: KvArg,
        /// Where the model runs.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        /// With --backend wgpu: time every kernel with timestamp queries and
        /// print the time per kernel (if the adapter has timestamp queries).
        #[arg(long)]
        profile: bool,
    },
    /// Perplexity of a text file with llama-perplexity's protocol, and the KL
    /// divergence of this run from a saved one.
    Perplexity {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// The text (optional with --kl-divergence: the base file holds the tokens).
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Tokens per chunk; the second half of each is scored.
        #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
        ctx_size: usize,
        /// Tokens per forward pass.
        #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
        batch_size: usize,
        /// Evaluate at most this many chunks.
        #[arg(long)]
        chunks: Option<usize>,
        /// Threads (default: all cores).
        #[arg(short = 't', long)]
        threads: Option<usize>,
        /// Save this run's top log-probabilities to FILE (or, with
        /// --kl-divergence, compare this run with FILE).
        #[arg(long, value_name = "FILE")]
        kl_divergence_base: Option<PathBuf>,
        /// Compare with the run saved in --kl-divergence-base.
        #[arg(long, requires = "kl_divergence_base")]
        kl_divergence: bool,
        /// Log-probabilities saved per token in a base file.
        #[arg(long, default_value_t = hearth::perplexity::DEFAULT_TOP_K)]
        kl_top_k: usize,
        /// Element type of the KV cache.
        #[arg(long, value_enum, default_value_t = KvArg::F16)]
        kv_type: KvArg,
        /// Where the model runs.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
    },
    /// Chat with the model in the terminal (its chat template, history kept).
    Chat {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Parse special-token text inside message contents as those tokens
        /// (llama.cpp's behaviour). By default contents are plain text, so a
        /// message cannot forge the template's turn markers.
        #[arg(long)]
        special_in_content: bool,
        /// Tokens per reply at most.
        #[arg(short = 'n', long, default_value_t = 1024)]
        n_predict: usize,
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        common: Common,
    },
    /// Serve the model over HTTP: an OpenAI-compatible API (chat and text
    /// completions, streaming) with continuous batching of --parallel slots.
    #[command(
        after_help = "Exit status: 0 after SIGINT/SIGTERM; 1 on an error at start; \
        74 (EX_IOERR) when the memory-mapped model file changed or was truncated while \
        serving (/health answers 503 \"model file changed\" first; --no-mmap avoids it)."
    )]
    Serve {
        /// The GGUF model file.
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// The address to listen on (a non-loopback one exposes the API to
        /// the network: set --api-key).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks a free port (the address is printed to stderr).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Requests decoded together, in one batched forward pass per token
        /// (as llama-server's default, 4).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Context of each slot in tokens (default: the model's, at most 4096).
        #[arg(short = 'c', long)]
        ctx_size: Option<usize>,
        /// Require `Authorization: Bearer KEY` (or `x-api-key: KEY`) on every
        /// route but /health. A key on the command line is visible to every
        /// user in `ps`: prefer --api-key-file or the HEARTH_API_KEY variable
        /// (used when neither flag is given).
        #[arg(long, conflicts_with = "api_key_file")]
        api_key: Option<String>,
        /// Read the API key from the first line of this file.
        #[arg(long, value_name = "PATH")]
        api_key_file: Option<PathBuf>,
        /// Seconds a client has to send a whole request head, from its first
        /// byte (slowloris).
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        header_timeout: f64,
        /// Seconds a client has to send a whole request body, from the end of
        /// its head; a stalled body is answered 408 and the connection closed.
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        body_timeout: f64,
        /// Seconds a connection with no request in flight may stay silent
        /// before it is closed (keep-alive, or a client that sends nothing).
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        idle_timeout: f64,
        /// Most open connections; more wait in the listen backlog until one
        /// closes.
        #[arg(long, default_value_t = 512)]
        max_connections: usize,
        /// A host name to accept in the `Host` header besides IP literals and
        /// localhost (DNS-rebinding guard); repeat for more, `*` for any.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_host: Vec<String>,
        /// A web origin allowed to call the API from a browser (CORS); repeat
        /// for more, `*` for any. Requests from other origins get 403.
        #[arg(long = "cors-origin", value_name = "ORIGIN")]
        cors_origin: Vec<String>,
        /// Threads for compute (default: all cores).
        #[arg(short = 't', long)]
        threads: Option<usize>,
        /// Requests that may wait for a slot; more get 503 with Retry-After.
        #[arg(long, default_value_t = 64)]
        queue_size: usize,
        /// Most prompt tokens evaluated per step, between decode steps.
        #[arg(long, default_value_t = 256)]
        prefill_chunk: usize,
        /// Element type of the KV cache.
        #[arg(long, value_enum, default_value_t = KvArg::F16)]
        kv_type: KvArg,
        /// The model id clients use (default: the file name without .gguf).
        #[arg(long)]
        alias: Option<String>,
        /// Parse special-token text inside message contents as those tokens
        /// (llama.cpp's behaviour). By default contents are plain text, so a
        /// message cannot forge the template's turn markers.
        #[arg(long)]
        special_in_content: bool,
        /// Answer 404 to a request naming a model other than the one served
        /// (by default any name is served by it, and the reply names the
        /// real id).
        #[arg(long)]
        strict_model: bool,
        /// Where the model runs.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchFormat {
    Md,
    Json,
    Csv,
}

/// How the model file is held, for every command that loads one.
#[derive(Args, Clone, Copy)]
struct LoadArgs {
    /// Read the whole model into memory instead of mapping it: slower to
    /// start and never shared with other processes, but a later change to
    /// the file (a re-download over it, a truncation) cannot reach the
    /// running process. With the default mapping such a change makes
    /// hearth print "model file ... changed or was truncated while in use"
    /// and exit with code 74.
    #[arg(long)]
    no_mmap: bool,
    /// Lock the model's memory in RAM (mlock) so it is never paged out;
    /// fails if `ulimit -l` is smaller than the file.
    #[arg(long)]
    mlock: bool,
}

impl LoadArgs {
    fn options(&self) -> OpenOptions {
        OpenOptions {
            mmap: !self.no_mmap,
            mlock: self.mlock,
        }
    }
}

/// Loads the model at `path` as `load` says; a mapped file gets the SIGBUS
/// guard (`sigbus.rs`), so a truncation while we run is one clear line and
/// exit code 74 rather than a death by signal.
fn load_model<B: Backend>(path: &Path, backend: B, load: LoadArgs) -> hearth::Result<Model<B>> {
    let model =
        Model::load_with(path, backend, load.options()).map_err(|e| hearth::Error::Load {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    if !load.no_mmap {
        sigbus::guard(path, model.file.bytes())?;
    }
    Ok(model)
}

#[derive(Args)]
struct Common {
    /// Threads for compute (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long)]
    ctx_size: Option<usize>,
    /// Tokens evaluated per forward pass during prompt processing.
    #[arg(short = 'b', long, default_value_t = hearth::session::DEFAULT_BATCH)]
    batch_size: usize,
    /// Element type of the KV cache.
    #[arg(long, value_enum, default_value_t = KvArg::F16)]
    kv_type: KvArg,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
}

/// `--backend`: where the model runs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BackendArg {
    /// This machine's CPU cores (SIMD kernels).
    Cpu,
    /// A GPU through WebGPU (Vulkan, Metal, DX12): `hearth info --gpus` lists them.
    Wgpu,
}

/// Runs `$body` with `$be` bound to the backend `$arg` names: the command
/// functions are generic over `B: Backend`, so each backend gets its own
/// monomorphic copy.
macro_rules! with_backend {
    ($arg:expr, $profile:expr, |$be:ident| $body:expr) => {
        match $arg {
            BackendArg::Cpu => {
                let $be = Cpu::new();
                $body
            }
            BackendArg::Wgpu => {
                let $be = Wgpu::with_options($profile)?;
                eprintln!("wgpu: {}", $be.adapter().name);
                $body
            }
        }
    };
}

/// `--kv-type`: what the KV cache stores.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KvArg {
    /// Half precision (the default, as llama.cpp).
    F16,
    /// Full precision: twice the memory.
    F32,
    /// ggml's Q8_0 blocks: about half the memory of f16.
    #[value(name = "q8_0")]
    Q8_0,
}

impl From<KvArg> for KvType {
    fn from(k: KvArg) -> KvType {
        match k {
            KvArg::F16 => KvType::F16,
            KvArg::F32 => KvType::F32,
            KvArg::Q8_0 => KvType::Q8_0,
        }
    }
}

#[derive(Args)]
struct Sampling {
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Keep only the K most likely tokens; 0 keeps all.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to P; 1 is off.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than P times the most likely one; 0 is off.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty over the last `--repeat-last-n` tokens; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Tokens the repeat, presence and frequency penalties look back over;
    /// 0 turns them off.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Subtracted from the logit of every token seen in the last
    /// `--repeat-last-n` tokens; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was seen in the last
    /// `--repeat-last-n` tokens; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this text appears (may be repeated).
    #[arg(long)]
    stop: Vec<String>,
}

impl Sampling {
    fn config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: self.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }),
        }
    }
}

impl Common {
    fn setup(&self) -> Result<(), BoxError> {
        if let Some(n) = self.threads {
            if n == 0 {
                return Err("--threads must be at least 1".into());
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()?;
        }
        Ok(())
    }

    fn kv_type(&self) -> KvType {
        self.kv_type.into()
    }

    fn n_ctx<B: Backend>(&self, model: &Model<B>) -> usize {
        self.ctx_size
            .unwrap_or_else(|| model.hparams.n_ctx_train.clamp(1, 4096))
    }
}

/// Reads a UTF-8 text file; invalid UTF-8 is an error naming the file and
/// the offset of the first bad byte.
fn read_text(path: &Path) -> Result<String, BoxError> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
        .into()
    })
}

/// Whether `e` is a write to a closed pipe (`hearth run ... | head`): the
/// reader has what it wanted, so that is not a failure.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

fn open_model<B: Backend>(
    path: &Path,
    backend: B,
    load: LoadArgs,
) -> Result<(Model<B>, Tokenizer, f64), BoxError> {
    let t0 = Instant::now();
    let model = load_model(path, backend, load)?;
    let tok = Tokenizer::from_gguf(&model.file)?;
    Ok((model, tok, t0.elapsed().as_secs_f64()))
}

fn progress_bar(total: usize) -> Option<indicatif::ProgressBar> {
    (total > hearth::session::DEFAULT_BATCH).then(|| {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "prompt {bar:40} {pos}/{len} tokens ({per_sec}, eta {eta})",
            )
            .expect("a valid template"),
        );
        pb
    })
}

/// Generates after the session's prompt, streaming text to `out`. Returns
/// the generated tokens and the decode time.
fn generate<B: Backend>(
    session: &mut Session<'_, B>,
    tok: &Tokenizer,
    first_logits: Vec<f32>,
    sampling: &Sampling,
    n_predict: usize,
    out: &mut impl Write,
) -> Result<(Vec<u32>, f64), BoxError> {
    let mut gen = Generator::new(
        tok,
        sampling.config(),
        Some(n_predict),
        sampling.stop.clone(),
        session.tokens(),
    )?;
    let mut generated = Vec::new();
    let mut logits = first_logits;
    let t0 = Instant::now();
    loop {
        let t = gen.step(&logits)?;
        out.write_all(t.text.as_bytes())?;
        out.flush()?;
        if let Some(reason) = t.stop {
            if !matches!(reason, StopReason::EndOfGeneration(_)) {
                generated.push(t.id);
            }
            break;
        }
        generated.push(t.id);
        if session.tokens().len() >= session.n_ctx() {
            out.write_all(gen.finish().as_bytes())?;
            eprintln!("\n[context full: {} tokens]", session.n_ctx());
            break;
        }
        // Reuse the buffer: one copy of the logits row per token, no allocation.
        let next = session.feed(&[t.id], false, |_, _| {})?;
        logits.clear();
        logits.extend_from_slice(next);
    }
    Ok((generated, t0.elapsed().as_secs_f64()))
}

fn prefill<B: Backend>(
    session: &mut Session<'_, B>,
    prompt: &[u32],
) -> Result<(Vec<f32>, f64), BoxError> {
    let pb = progress_bar(prompt.len());
    let t0 = Instant::now();
    let logits = session
        .set_prompt(prompt, |done, _| {
            if let Some(pb) = &pb {
                pb.set_position(done as u64);
            }
        })?
        .to_vec();
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok((logits, t0.elapsed().as_secs_f64()))
}

/// A rayon pool of `threads` (default: all cores) for one command.
fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool, BoxError> {
    let n = match threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(rayon::ThreadPoolBuilder::new().num_threads(n).build()?)
}

#[allow(clippy::too_many_arguments)]
fn bench<B: Backend + 'static>(
    backend: B,
    model: &Path,
    n_prompt: usize,
    n_gen: usize,
    repetitions: usize,
    threads: Option<usize>,
    output: BenchFormat,
    membw: bool,
    kv_type: KvArg,
    profile: bool,
    load: LoadArgs,
) -> Result<(), BoxError> {
    use crate::bench::{self, BenchConfig, Report, WeightStats};
    let gpu = (&backend as &dyn std::any::Any).downcast_ref::<Wgpu>();
    if profile && !gpu.is_some_and(|g| g.profiling()) {
        return Err(match gpu {
            None => "--profile times GPU kernels: use it with --backend wgpu".into(),
            Some(g) => format!(
                "--profile: the adapter {} has no timestamp queries",
                g.adapter().name
            )
            .into(),
        });
    }
    let pool = thread_pool(threads)?;
    let m = load_model(model, backend, load)?;
    let cfg = BenchConfig {
        n_prompt,
        n_gen,
        repetitions,
        kv_type: kv_type.into(),
    };
    let report = pool.install(|| -> Result<Report, hearth::Error> {
        let membw = membw.then(|| {
            eprintln!(
                "measuring memory bandwidth (1 GiB streaming read, {} threads)...",
                rayon::current_num_threads()
            );
            bench::measure_membw(1 << 30, 7)
        });
        let results = bench::run(&m, &cfg, |r| {
            let (mean, sd, median) = r.ts();
            eprintln!(
                "{}: {mean:.2} ± {sd:.2} t/s (median {median:.2})",
                r.test.name()
            );
        })?;
        Ok(Report {
            model_desc: bench::model_desc(&m.file),
            backend: match m.backend.name() {
                "cpu" => "CPU".into(),
                other => other.into(),
            },
            threads: rayon::current_num_threads(),
            weights: WeightStats::new(&m.file),
            results,
            membw,
        })
    })?;
    match output {
        BenchFormat::Md => {
            print!("{}", report.to_markdown());
            println!();
            print!("{}", report.notes());
        }
        BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        BenchFormat::Csv => print!("{}", report.to_csv()),
    }
    if let Some(g) = (&m.backend as &dyn std::any::Any).downcast_ref::<Wgpu>() {
        let times = g.take_profile();
        if !times.is_empty() {
            let total: f64 = times.iter().map(|k| k.ms).sum();
            println!("\nGPU time per kernel (all runs, warm-up included; timestamp queries):");
            println!("| kernel | calls | total ms | share | us per call |");
            println!("| --- | ---: | ---: | ---: | ---: |");
            for k in &times {
                println!(
                    "| {} | {} | {:.2} | {:.1}% | {:.1} |",
                    k.name,
                    k.calls,
                    k.ms,
                    100.0 * k.ms / total.max(1e-12),
                    1e3 * k.ms / k.calls.max(1) as f64
                );
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn perplexity<B: Backend>(
    backend: B,
    model: &Path,
    file: Option<PathBuf>,
    n_ctx: usize,
    n_batch: usize,
    max_chunks: Option<usize>,
    threads: Option<usize>,
    kl_base: Option<PathBuf>,
    kl_compare: bool,
    kl_top_k: usize,
    kv_type: KvArg,
    load: LoadArgs,
) -> Result<(), BoxError> {
    use hearth::perplexity::{self as ppl, KlMode, KlReader, KlWriter, PerplexityConfig};
    let pool = thread_pool(threads)?;
    let (m, tok, _) = open_model(model, backend, load)?;
    let bos = tok.bos().filter(|_| tok.add_bos());
    let mut reader = match (&kl_base, kl_compare) {
        (Some(path), true) => {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(
                KlReader::new(Box::new(std::io::BufReader::new(f)))
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        _ => None,
    };
    let chunks = match (&file, &reader) {
        (Some(f), _) => {
            let text = read_text(f)?;
            eprintln!("perplexity: tokenizing the input ..");
            // As llama-perplexity: with BOS, special-token text left as text.
            let tokens = tok.encode(&text, true, false)?;
            let c = ppl::chunks(&tokens, n_ctx, bos, max_chunks)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            eprintln!(
                "perplexity: {} tokens, {} chunks of {n_ctx}",
                tokens.len(),
                c.len()
            );
            c
        }
        (None, Some(r)) => r
            .chunks
            .iter()
            .take(max_chunks.unwrap_or(usize::MAX))
            .cloned()
            .collect(),
        (None, None) => return Err("give the text with -f FILE".into()),
    };
    let cfg = PerplexityConfig {
        n_ctx,
        n_batch,
        kv_type: kv_type.into(),
    };
    let mut writer = match (&kl_base, kl_compare) {
        (Some(path), false) => {
            let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("perplexity: saving the top {kl_top_k} log-probabilities of each scored token to {}", path.display());
            Some(KlWriter::new(
                Box::new(std::io::BufWriter::new(f)),
                m.hparams.n_vocab,
                n_ctx,
                kl_top_k,
                &chunks,
            )?)
        }
        _ => None,
    };
    let mode = match (&mut writer, &mut reader) {
        (Some(w), _) => KlMode::Save(w),
        (None, Some(r)) => KlMode::Compare(r),
        (None, None) => KlMode::Off,
    };
    eprintln!(
        "perplexity: calculating perplexity over {} chunks, n_ctx={n_ctx}, batch_size={}, {} threads",
        chunks.len(),
        n_batch.clamp(1, n_ctx),
        pool.current_num_threads()
    );
    let result = pool.install(|| {
        ppl::run(&m, &chunks, &cfg, mode, |p| {
            if p.chunk == 1 {
                eprintln!(
                    "perplexity: {:.2} seconds per pass - ETA {:.2} minutes",
                    p.seconds,
                    p.seconds * p.n_chunks as f64 / 60.0
                );
            }
            print!("[{}]{:.4},", p.chunk, p.running_ppl);
            let _ = std::io::stdout().flush();
        })
    })?;
    println!();
    if let Some(w) = writer {
        w.finish()?;
    }
    match result.nll.ppl_error() {
        Some(err) => println!(
            "Final estimate: PPL = {:.4} +/- {:.5}",
            result.nll.ppl(),
            err
        ),
        None => println!(
            "Final estimate: PPL = {:.4} (no spread: too few or identical values)",
            result.nll.ppl()
        ),
    }
    eprintln!(
        "perplexity: {} chunks, {} scored tokens, {:.1} s",
        result.n_chunks, result.nll.count, result.seconds
    );
    if let Some(k) = result.kl {
        let (q, dq) = ppl::mean_and_uncertainty(k.nll.sum, k.nll.sum2, k.count());
        let (b, db) = ppl::mean_and_uncertainty(k.nll_base.sum, k.nll_base.sum2, k.count());
        let (r, dr) = k.ln_ppl_ratio();
        let (kld, dkld) = k.kld();
        let (top, dtop) = k.same_top();
        let top_k = reader.as_ref().map_or(0, |r| r.top_k);
        println!("====== Perplexity statistics ======");
        println!(
            "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
            q.exp(),
            q.exp() * dq
        );
        println!(
            "Mean PPL(base)                : {:10.6} ± {:10.6}",
            b.exp(),
            b.exp() * db
        );
        println!("Mean ln(PPL(Q)/PPL(base))     : {r:10.6} ± {dr:10.6}");
        println!();
        println!("====== KL divergence statistics (base's top {top_k} + the rest) ======");
        println!("Mean    KLD: {kld:10.6} ± {dkld:10.6}");
        println!("Same top p: {:6.3} ± {:5.3} %", 100.0 * top, 100.0 * dtop);
    }
    Ok(())
}

fn logits_cmd<B: Backend>(
    backend: B,
    model: &Path,
    prompt_file: &Path,
    top: usize,
    n_predict: usize,
    common: &Common,
    load: LoadArgs,
) -> Result<(), BoxError> {
    let (m, tok, _) = open_model(model, backend, load)?;
    let text = read_text(prompt_file)?;
    let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?
        .with_batch_size(common.batch_size, common.kv_type())?;
    let mut out = std::io::stdout().lock();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let prompt = hearth::logits::unescape(line);
        let r = hearth::logits::prompt_logits(&mut session, &tok, &prompt, top, n_predict)?;
        writeln!(out, "{}", r.to_json())?;
    }
    Ok(())
}

fn tap_cmd<B: Backend>(
    backend: B,
    model: &Path,
    prompt: &str,
    tap: Box<dyn hearth::tap::Tap + Send>,
    common: &Common,
    load: LoadArgs,
) -> Result<(), BoxError> {
    let (m, tok, _) = open_model(model, backend, load)?;
    let ids = tok.encode(prompt, true, true)?;
    eprintln!("{} tokens: {ids:?}", ids.len());
    let mut cache = m.new_cache_with_batch(
        common.n_ctx(&m).max(ids.len()),
        1,
        common.kv_type(),
        ids.len(),
    )?;
    let mut ws = Workspace::new(&m.backend);
    ws.set_tap(Some(tap));
    let mut batch = Batch::new();
    batch.push(0, 0, &ids, Logits::Last)?;
    m.forward(&batch, &mut cache, &mut ws)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_cmd<B: Backend>(
    backend: B,
    model: &Path,
    text: String,
    n_predict: usize,
    chat: Option<bool>,
    sampling: &Sampling,
    common: &Common,
    load: LoadArgs,
) -> Result<(), BoxError> {
    let (m, tok, load_s) = open_model(model, backend, load)?;
    // `chat`: Some(special_in_content) with --chat.
    let ids = if let Some(special_in_content) = chat {
        let template = ChatTemplate::for_model(&m.file)?;
        template.encode(
            &tok,
            &[Message::new("user", text)],
            true,
            special_in_content,
        )?
    } else {
        tok.encode(&text, true, true)?
    };
    let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?
        .with_batch_size(common.batch_size, common.kv_type())?;
    let (logits, prefill_s) = prefill(&mut session, &ids)?;
    let mut out = std::io::stdout().lock();
    let (gen, decode_s) = generate(&mut session, &tok, logits, sampling, n_predict, &mut out)?;
    writeln!(out)?;
    eprintln!(
        "prompt {} tokens, {:.1} t/s | generated {} tokens, {:.1} t/s | load {:.2} s",
        ids.len(),
        ids.len() as f64 / prefill_s,
        gen.len(),
        gen.len() as f64 / decode_s.max(1e-9),
        load_s
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn chat_cmd<B: Backend>(
    backend: B,
    model: &Path,
    system: Option<String>,
    special_in_content: bool,
    n_predict: usize,
    sampling: &Sampling,
    common: &Common,
    load: LoadArgs,
) -> Result<(), BoxError> {
    let (m, tok, _) = open_model(model, backend, load)?;
    let template = ChatTemplate::for_model(&m.file)?;
    let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?
        .with_batch_size(common.batch_size, common.kv_type())?;
    let mut history: Vec<Message> = system
        .into_iter()
        .map(|s| Message::new("system", s))
        .collect();
    eprintln!(
        "chatting with {} ({} tokens of context); /clear forgets, /exit or Ctrl-D ends",
        model.display(),
        session.n_ctx()
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let input = line.trim_end_matches(['\n', '\r']);
        match input {
            "/exit" | "/quit" => break,
            "/clear" => {
                history.retain(|m| m.role == "system");
                session.truncate(0);
                continue;
            }
            "" => continue,
            _ => {}
        }
        history.push(Message::new("user", input));
        let ids = template.encode(&tok, &history, true, special_in_content)?;
        if ids.len() + 1 >= session.n_ctx() {
            history.pop();
            eprintln!(
                "[the conversation no longer fits the context of {} tokens; /clear to start over]",
                session.n_ctx()
            );
            continue;
        }
        let (logits, _) = prefill(&mut session, &ids)?;
        let mut reply = Vec::new();
        let (gen, _) = generate(&mut session, &tok, logits, sampling, n_predict, &mut reply)?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        let _ = gen;
        history.push(Message::new("assistant", text));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Bench {
            model,
            load,
            n_prompt,
            n_gen,
            repetitions,
            threads,
            output,
            membw,
            kv_type,
            backend,
            profile,
        } => {
            with_backend!(backend, profile, |be| bench(
                be,
                &model,
                n_prompt,
                n_gen,
                repetitions,
                threads,
                output,
                membw,
                kv_type,
                profile,
                load,
            ))?;
        }
        Command::Perplexity {
            model,
            load,
            file,
            ctx_size,
            batch_size,
            chunks,
            threads,
            kl_divergence_base,
            kl_divergence,
            kl_top_k,
            kv_type,
            backend,
        } => {
            with_backend!(backend, false, |be| perplexity(
                be,
                &model,
                file,
                ctx_size,
                batch_size,
                chunks,
                threads,
                kl_divergence_base,
                kl_divergence,
                kl_top_k,
                kv_type,
                load,
            ))?;
        }
        Command::Serve {
            model,
            load,
            host,
            port,
            parallel,
            ctx_size,
            api_key,
            api_key_file,
            header_timeout,
            body_timeout,
            idle_timeout,
            max_connections,
            allow_host,
            cors_origin,
            threads,
            queue_size,
            prefill_chunk,
            kv_type,
            alias,
            special_in_content,
            strict_model,
            backend,
        } => {
            let api_key = api_key_from(api_key, api_key_file, std::env::var_os("HEARTH_API_KEY"))?;
            let secs = |name: &str, v: f64| {
                if v.is_finite() && v > 0.0 && v <= 1e6 {
                    Ok(std::time::Duration::from_secs_f64(v))
                } else {
                    Err(format!(
                        "--{name} must be a number of seconds above 0, got {v}"
                    ))
                }
            };
            if max_connections == 0 {
                return Err("--max-connections must be at least 1".into());
            }
            let limits = hearth_server::conn::Limits {
                header: secs("header-timeout", header_timeout)?,
                body: secs("body-timeout", body_timeout)?,
                idle: secs("idle-timeout", idle_timeout)?,
                max_connections,
            };
            let id = alias.unwrap_or_else(|| {
                model
                    .file_stem()
                    .map_or("model".into(), |s| s.to_string_lossy().into_owned())
            });
            let cfg = hearth_server::ServeConfig {
                host,
                port,
                parallel,
                ctx_size,
                api_key,
                queue_size,
                prefill_chunk,
                kv_type: kv_type.into(),
                allowed_hosts: allow_host,
                cors_origins: cors_origin,
                model_path: Some(model.clone()),
                watch_file: (!load.no_mmap).then(|| model.clone()),
                special_in_content,
                strict_model,
                limits,
                ..hearth_server::ServeConfig::new(id)
            };
            with_backend!(backend, false, |be| hearth_server::run(
                cfg,
                threads,
                move || load_model(&model, be, load)
            )
            .map_err(|e| e.to_string())?);
        }
        Command::Info {
            model,
            json,
            metadata,
            cpu,
            gpus,
        } => {
            if gpus {
                let list = hearth::backend::wgpu::list_adapters();
                if list.is_empty() {
                    println!("no WebGPU adapter found (no Vulkan, Metal or DX12 driver; on Debian, `apt-get install mesa-vulkan-drivers` gives lavapipe)");
                }
                for (i, a) in list.iter().enumerate() {
                    println!(
                        "{i}: {} ({}, {}, {})\n   max storage binding {} MiB, max buffer {} MiB; shader-f16 {}, subgroups {}, timestamps {}",
                        a.name,
                        a.device_type,
                        a.backend,
                        a.driver,
                        a.max_storage_binding >> 20,
                        a.max_buffer >> 20,
                        a.shader_f16,
                        a.subgroups,
                        a.timestamps
                    );
                }
                if !list.is_empty() {
                    println!("(--backend wgpu uses 0; HEARTH_WGPU_ADAPTER=i picks another)");
                    println!("(with shader-f16, an f16 KV cache is read and written as native f16; HEARTH_WGPU_F16=0 packs it in u32 words instead)");
                }
            }
            let Some(model) = model else {
                return Ok(());
            };
            let g = hearth_gguf::open(&model).map_err(|e| match e {
                // An I/O error already names the file.
                hearth_gguf::GgufError::Io { .. } => e.to_string(),
                e => format!("{}: {e}", model.display()),
            })?;
            let summary = crate::info::Summary::new(&g);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
            } else {
                print!("{}", summary.to_text(metadata));
            }
            if cpu && !json {
                println!("\ncpu kernels\n  {}", crate::info::cpu_kernels());
            }
        }
        Command::Tokenize {
            model,
            text_file,
            prompt,
            no_bos,
            parse_special,
            pieces,
        } => {
            let g = hearth_gguf::open(&model).map_err(|e| format!("{}: {e}", model.display()))?;
            let tok = Tokenizer::from_gguf(&g)?;
            let text = match (prompt, text_file) {
                (Some(p), _) => p,
                (None, Some(f)) => read_text(&f)?,
                (None, None) => return Err("give the text with -p TEXT or -f FILE".into()),
            };
            let ids = tok.encode(&text, !no_bos, parse_special)?;
            let mut out = std::io::stdout().lock();
            if pieces {
                for id in ids {
                    writeln!(
                        out,
                        "{id:>7} {:?}",
                        String::from_utf8_lossy(tok.token_to_piece(id)?)
                    )?;
                }
            } else {
                let line: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                writeln!(out, "{}", line.join(" "))?;
            }
        }
        Command::Logits {
            model,
            load,
            prompt_file,
            top,
            n_predict,
            common,
        } => {
            common.setup()?;
            with_backend!(common.backend, false, |be| logits_cmd(
                be,
                &model,
                &prompt_file,
                top,
                n_predict,
                &common,
                load
            ))?;
        }
        Command::Tap {
            model,
            load,
            prompt,
            ops,
            layers,
            output,
            common,
        } => {
            common.setup()?;
            let out: Box<dyn Write + Send> = match &output {
                Some(path) => Box::new(
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let out = std::io::BufWriter::new(out);
            let tap = Box::new(hearth::tap::EvalCallbackWriter::new(out, ops, layers));
            with_backend!(common.backend, false, |be| tap_cmd(
                be, &model, &prompt, tap, &common, load
            ))?;
        }
        Command::Run {
            model,
            load,
            prompt,
            file,
            n_predict,
            chat,
            special_in_content,
            sampling,
            common,
        } => {
            common.setup()?;
            let text = match (prompt, file) {
                (Some(p), _) => p,
                (None, Some(f)) => read_text(&f)?,
                (None, None) => return Err("give a prompt with -p TEXT or -f FILE".into()),
            };
            if text.is_empty() {
                return Err("the prompt is empty".into());
            }
            with_backend!(common.backend, false, |be| run_cmd(
                be,
                &model,
                text,
                n_predict,
                chat.then_some(special_in_content),
                &sampling,
                &common,
                load
            ))?;
        }
        Command::Chat {
            model,
            load,
            system,
            special_in_content,
            n_predict,
            sampling,
            common,
        } => {
            common.setup()?;
            with_backend!(common.backend, false, |be| chat_cmd(
                be,
                &model,
                system,
                special_in_content,
                n_predict,
                &sampling,
                &common,
                load
            ))?;
        }
    }
    Ok(())
}

/// The API key of `hearth serve`: `--api-key`, else the first line of
/// `--api-key-file`, else `HEARTH_API_KEY`. An empty key is an error, never
/// an open server the user thinks is locked.
fn api_key_from(
    flag: Option<String>,
    file: Option<PathBuf>,
    env: Option<std::ffi::OsString>,
) -> Result<Option<String>, String> {
    let (key, from) = if let Some(k) = flag {
        (k, "--api-key".to_string())
    } else if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("--api-key-file {}: {e}", path.display()))?;
        let first = text.lines().next().unwrap_or("").trim().to_string();
        (
            first,
            format!("the first line of --api-key-file {}", path.display()),
        )
    } else if let Some(v) = env {
        let k = v
            .into_string()
            .map_err(|_| "HEARTH_API_KEY is not valid UTF-8".to_string())?;
        (k.trim().to_string(), "HEARTH_API_KEY".to_string())
    } else {
        return Ok(None);
    };
    if key.is_empty() {
        return Err(format!("the API key from {from} is empty"));
    }
    Ok(Some(key))
}

fn main() -> ExitCode {
    let result = run(Cli::parse());
    // `HEARTH_PROFILE=1`: the CPU backend's per-op times (the library
    // only counts; printing is the application's).
    if let Some(table) = hearth::backend::profile::report() {
        eprint!("{table}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Issue 17: `<MODEL>`, `--top-k`, `--top-p`, `--min-p`,
    /// `--repeat-last-n` and the penalties had no help text.
    #[test]
    fn every_option_of_every_command_has_help_text() {
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
