//! The `hearth` command.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use hearth::backend::cpu::Cpu;
use hearth::backend::KvType;
use hearth::chat::{ChatTemplate, Message};
use hearth::model::Model;
use hearth::sampler::{Sampler, SamplerConfig, StopCriteria, StopReason};
use hearth::session::Session;
use hearth::tokenizer::Tokenizer;

type BoxError = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run GGUF language models on your own hardware.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF file holds: model, hyper-parameters, tokenizer, tensors.
    Info {
        /// The GGUF model file.
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list every metadata key with its type and value.
        #[arg(long, short = 'm')]
        metadata: bool,
        /// Also show which CPU kernels (instruction sets) this machine runs.
        #[arg(long)]
        cpu: bool,
    },
    /// Tokenize a file's bytes exactly as they are; print the ids.
    Tokenize {
        /// The GGUF file (a vocabulary-only file is enough).
        model: PathBuf,
        /// The text to tokenize (no trimming, no added newline).
        #[arg(long, short = 'f')]
        text_file: PathBuf,
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
        model: PathBuf,
        /// One prompt per line; `\n`, `\t` and `\\` are unescaped.
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
    /// Generate text from a prompt, streamed to stdout.
    Run {
        model: PathBuf,
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
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        common: Common,
    },
    /// Chat with the model in the terminal (its chat template, history kept).
    Chat {
        model: PathBuf,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Tokens per reply at most.
        #[arg(short = 'n', long, default_value_t = 1024)]
        n_predict: usize,
        #[command(flatten)]
        sampling: Sampling,
        #[command(flatten)]
        common: Common,
    },
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
    /// Keep the KV cache in f32 instead of f16.
    #[arg(long)]
    kv_f32: bool,
}

#[derive(Args)]
struct Sampling {
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty over the last `--repeat-last-n` tokens; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
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
            rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
        }
        Ok(())
    }

    fn kv_type(&self) -> KvType {
        if self.kv_f32 {
            KvType::F32
        } else {
            KvType::F16
        }
    }

    fn n_ctx(&self, model: &Model<Cpu>) -> usize {
        self.ctx_size.unwrap_or_else(|| model.hparams.n_ctx_train.clamp(1, 4096))
    }
}

fn open_model(path: &PathBuf) -> Result<(Model<Cpu>, Tokenizer, f64), BoxError> {
    let t0 = Instant::now();
    let model = Model::load(path, Cpu::new()).map_err(|e| format!("{}: {e}", path.display()))?;
    let tok = Tokenizer::from_gguf(&model.file)?;
    Ok((model, tok, t0.elapsed().as_secs_f64()))
}

/// Tokenizes a chat-rendered prompt: the template writes the BOS text itself,
/// so BOS is added only if the file wants one and the text did not have it.
fn encode_chat(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, BoxError> {
    let mut ids = tok.encode(text, false, true)?;
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    Ok(ids)
}

fn progress_bar(total: usize) -> Option<indicatif::ProgressBar> {
    (total > hearth::session::DEFAULT_BATCH).then(|| {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("prompt {bar:40} {pos}/{len} tokens ({per_sec}, eta {eta})")
                .expect("a valid template"),
        );
        pb
    })
}

/// Generates after the session's prompt, streaming text to `out`. Returns
/// the generated tokens and the decode time.
fn generate(
    session: &mut Session<'_, Cpu>,
    tok: &Tokenizer,
    first_logits: Vec<f32>,
    sampling: &Sampling,
    n_predict: usize,
    out: &mut impl Write,
) -> Result<(Vec<u32>, f64), BoxError> {
    let mut sampler = Sampler::new(sampling.config())?;
    for &t in session.tokens() {
        sampler.accept(t);
    }
    let mut stop = StopCriteria::new(Some(n_predict), tok.eog_ids().iter().copied(), sampling.stop.clone())?;
    let mut decoder = tok.stream_decoder();
    let mut generated = Vec::new();
    let mut logits = first_logits;
    let t0 = Instant::now();
    loop {
        let id = sampler.sample(&logits)?;
        sampler.accept(id);
        let text = if tok.is_eog(id) { String::new() } else { decoder.push(id)? };
        let step = stop.step(id, &text);
        out.write_all(step.emit.as_bytes())?;
        out.flush()?;
        if let Some(reason) = step.stop {
            if !matches!(reason, StopReason::EndOfGeneration(_)) {
                generated.push(id);
            }
            break;
        }
        generated.push(id);
        if session.tokens().len() >= session.n_ctx() {
            out.write_all(stop.finish().as_bytes())?;
            eprintln!("\n[context full: {} tokens]", session.n_ctx());
            break;
        }
        logits = session.feed(&[id], false, |_, _| {})?.to_vec();
    }
    out.write_all(decoder.finish().as_bytes())?;
    Ok((generated, t0.elapsed().as_secs_f64()))
}

fn prefill(session: &mut Session<'_, Cpu>, prompt: &[u32]) -> Result<(Vec<f32>, f64), BoxError> {
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

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Info { model, json, metadata, cpu } => {
            let g = hearth_gguf::open(&model).map_err(|e| match e {
                // An I/O error already names the file.
                hearth_gguf::GgufError::Io { .. } => e.to_string(),
                e => format!("{}: {e}", model.display()),
            })?;
            let summary = hearth::info::Summary::new(&g);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
            } else {
                print!("{}", summary.to_text(metadata));
            }
            if cpu && !json {
                println!("\ncpu kernels\n  {}", hearth::info::cpu_kernels());
            }
        }
        Command::Tokenize { model, text_file, no_bos, parse_special, pieces } => {
            let g = hearth_gguf::open(&model).map_err(|e| format!("{}: {e}", model.display()))?;
            let tok = Tokenizer::from_gguf(&g)?;
            let bytes = std::fs::read(&text_file).map_err(|e| format!("{}: {e}", text_file.display()))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", text_file.display()))?;
            let ids = tok.encode(&text, !no_bos, parse_special)?;
            let mut out = std::io::stdout().lock();
            if pieces {
                for id in ids {
                    writeln!(out, "{id:>7} {:?}", String::from_utf8_lossy(tok.token_to_piece(id)?))?;
                }
            } else {
                let line: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                writeln!(out, "{}", line.join(" "))?;
            }
        }
        Command::Logits { model, prompt_file, top, n_predict, common } => {
            common.setup()?;
            let (m, tok, _) = open_model(&model)?;
            let text = std::fs::read_to_string(&prompt_file).map_err(|e| format!("{}: {e}", prompt_file.display()))?;
            let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?.with_batch_size(common.batch_size);
            let mut out = std::io::stdout().lock();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let prompt = hearth::logits::unescape(line);
                let r = hearth::logits::prompt_logits(&mut session, &tok, &prompt, top, n_predict)?;
                writeln!(out, "{}", r.to_json())?;
            }
        }
        Command::Run { model, prompt, file, n_predict, chat, sampling, common } => {
            common.setup()?;
            let text = match (prompt, file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?,
                (None, None) => return Err("give a prompt with -p TEXT or -f FILE".into()),
            };
            let (m, tok, load_s) = open_model(&model)?;
            let ids = if chat {
                let template = ChatTemplate::for_model(&m.file)?;
                encode_chat(&tok, &template.render(&[Message::new("user", text)], true)?)?
            } else {
                tok.encode(&text, true, true)?
            };
            let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?.with_batch_size(common.batch_size);
            let (logits, prefill_s) = prefill(&mut session, &ids)?;
            let mut out = std::io::stdout().lock();
            let (gen, decode_s) = generate(&mut session, &tok, logits, &sampling, n_predict, &mut out)?;
            writeln!(out)?;
            eprintln!(
                "prompt {} tokens, {:.1} t/s | generated {} tokens, {:.1} t/s | load {:.2} s",
                ids.len(),
                ids.len() as f64 / prefill_s,
                gen.len(),
                gen.len() as f64 / decode_s.max(1e-9),
                load_s
            );
        }
        Command::Chat { model, system, n_predict, sampling, common } => {
            common.setup()?;
            let (m, tok, _) = open_model(&model)?;
            let template = ChatTemplate::for_model(&m.file)?;
            let mut session = Session::new(&m, common.n_ctx(&m), common.kv_type())?.with_batch_size(common.batch_size);
            let mut history: Vec<Message> = system.into_iter().map(|s| Message::new("system", s)).collect();
            eprintln!("chatting with {} ({} tokens of context); /clear forgets, /exit or Ctrl-D ends", model.display(), session.n_ctx());
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
                let ids = encode_chat(&tok, &template.render(&history, true)?)?;
                if ids.len() + 1 >= session.n_ctx() {
                    history.pop();
                    eprintln!("[the conversation no longer fits the context of {} tokens; /clear to start over]", session.n_ctx());
                    continue;
                }
                let (logits, _) = prefill(&mut session, &ids)?;
                let mut reply = Vec::new();
                let (gen, _) = generate(&mut session, &tok, logits, &sampling, n_predict, &mut reply)?;
                let text = String::from_utf8_lossy(&reply).into_owned();
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")?;
                let _ = gen;
                history.push(Message::new("assistant", text));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: error: {e}");
            ExitCode::FAILURE
        }
    }
}
