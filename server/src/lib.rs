//! `hearth serve`: an OpenAI-compatible HTTP server with continuous batching.
//!
//! Threads: a small tokio runtime runs the HTTP handlers (axum), which only
//! validate, render chat templates, tokenize (on tokio's blocking pool) and
//! relay events; one dedicated OS thread runs the [`scheduler`], which owns
//! the model's KV cache and runs every forward pass on rayon's pool. They
//! meet at the bounded [`scheduler::Queue`]: a request that finds it full is
//! answered 503 with `Retry-After`. Each request gets an unbounded channel of
//! [`scheduler::Event`]s back (at most `max_tokens` + 2 events); dropping
//! its receiver (the client went away) frees its queue place or slot.
//!
//! The server is generic over the backend: [`run`] takes a function that
//! loads a `Model<B>` for any `B: Backend`, and calls it on the scheduler
//! thread while `/health` answers 503.

mod anthropic;
pub mod api;
pub mod conn;
mod fim;
mod llama;
pub mod metrics;
mod model_info;
mod ollama;
mod responses;
mod routes;
pub mod scheduler;
mod security;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hearth::backend::{Backend, KvType};
use hearth::chat::ChatTemplate;
use hearth::model::Model;
use hearth::tokenizer::Tokenizer;
use metrics::Metrics;
use scheduler::{Queue, Scheduler, SchedulerConfig};

/// Everything `hearth serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port; the bound address is printed to stderr.
    pub port: u16,
    /// Slots decoding together.
    pub parallel: usize,
    /// Context of each slot (default: the model's, at most 4096).
    pub ctx_size: Option<usize>,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Requests waiting for a slot before 503.
    pub queue_size: usize,
    /// Most prompt tokens evaluated per step.
    pub prefill_chunk: usize,
    pub kv_type: KvType,
    /// The model's id in `/v1/models`. A generation request naming another
    /// model is served by this one, the reply naming this id (as
    /// llama-server: frontends come configured with names like
    /// `gpt-4o-mini`), unless `strict_model`.
    pub model_id: String,
    /// `--strict-model`: a request naming another model gets 404.
    pub strict_model: bool,
    /// The file served, as given (`/props` reports it).
    pub model_path: Option<std::path::PathBuf>,
    /// Largest request body, in bytes (413 above).
    pub max_body: usize,
    /// How long a shutdown waits for running requests before cancelling them.
    pub drain: Duration,
    /// Host names accepted besides IP literals and `localhost`
    /// (`--allow-host`; `*` for any).
    pub allowed_hosts: Vec<String>,
    /// Web origins that may call the API (`--cors-origin`; `*` for any);
    /// a request from any other origin is refused.
    pub cors_origins: Vec<String>,
    /// The model file when it is memory-mapped: `/health` answers 503
    /// "model file changed" once its length or modification time differ
    /// from what was loaded (the next touch of a truncated mapping is a
    /// SIGBUS, which `hearth` turns into exit code 74).
    pub watch_file: Option<std::path::PathBuf>,
    /// Parse special-token text inside chat message contents
    /// (`--special-in-content`, llama.cpp's behaviour); by default contents
    /// are plain text and cannot forge the template's markers.
    pub special_in_content: bool,
    /// Timeouts and the connection cap of the accept loop.
    pub limits: conn::Limits,
}

impl ServeConfig {
    /// Defaults for everything but the model's id.
    pub fn new(model_id: impl Into<String>) -> ServeConfig {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            ctx_size: None,
            api_key: None,
            queue_size: 64,
            prefill_chunk: 256,
            kv_type: KvType::F16,
            model_id: model_id.into(),
            strict_model: false,
            model_path: None,
            max_body: 8 << 20,
            drain: Duration::from_secs(30),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            watch_file: None,
            special_in_content: false,
            limits: conn::Limits::default(),
        }
    }
}

/// What the handlers need once the model is loaded.
pub(crate) struct Ready {
    pub tok: Arc<Tokenizer>,
    pub template: Result<ChatTemplate, String>,
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub info: model_info::ModelInfo,
    /// The vocabulary's fill-in-the-middle tokens, if it has them.
    pub fim: Option<fim::Fim>,
    pub watch: Option<FileWatch>,
    /// The token trie for constrained decoding, built on the first request
    /// that asks for a grammar (about a second on a 262k vocabulary).
    pub constraint_vocab: OnceLock<Result<hearth::constraint::ConstraintVocab, String>>,
}

/// The mapped model file as it was loaded. `fstat` on our own descriptor
/// sees the inode we mapped: a new file renamed over the path leaves the
/// mapping intact and is not a change; a truncation or an in-place write is.
pub(crate) struct FileWatch {
    file: std::fs::File,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileWatch {
    fn new(path: &std::path::Path) -> std::io::Result<FileWatch> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        Ok(FileWatch {
            len: meta.len(),
            modified: meta.modified().ok(),
            file,
        })
    }

    /// Whether the file differs from what was loaded (or can no longer be
    /// asked).
    pub fn changed(&self) -> bool {
        match self.file.metadata() {
            Ok(m) => m.len() != self.len || m.modified().ok() != self.modified,
            Err(_) => true,
        }
    }
}

/// State shared by the handlers and the scheduler thread.
pub(crate) struct Shared {
    pub cfg: ServeConfig,
    pub ready: OnceLock<Ready>,
    pub queue: Queue,
    pub metrics: Metrics,
    pub shutting_down: AtomicBool,
    pub cancel: AtomicBool,
    pub started: u64,
    pub next_id: AtomicU64,
}

impl Shared {
    pub fn unix_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the server until SIGINT or SIGTERM. `load` runs on the scheduler
/// thread; `threads` sizes rayon's global pool (default: all cores).
pub fn run<B, F>(cfg: ServeConfig, threads: Option<usize>, load: F) -> Result<(), BoxError>
where
    B: Backend + 'static,
    F: FnOnce() -> hearth::Result<Model<B>> + Send + 'static,
{
    if cfg.parallel == 0 || cfg.queue_size == 0 || cfg.prefill_chunk == 0 {
        return Err("--parallel, --queue-size and --prefill-chunk must be at least 1".into());
    }
    if let Some(n) = threads {
        if n == 0 {
            return Err("--threads must be at least 1".into());
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Templates and tokenizing run here; a flood of requests must not
        // start hundreds of threads.
        .max_blocking_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, load))
}

async fn serve<B, F>(cfg: ServeConfig, load: F) -> Result<(), BoxError>
where
    B: Backend + 'static,
    F: FnOnce() -> hearth::Result<Model<B>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        queue: Queue::with_slots(cfg.queue_size, cfg.parallel),
        cfg,
        ready: OnceLock::new(),
        metrics: Metrics::default(),
        shutting_down: AtomicBool::new(false),
        cancel: AtomicBool::new(false),
        started: Shared::unix_now(),
        next_id: AtomicU64::new(1),
    });
    eprintln!("hearth: listening on http://{addr}");

    let (load_tx, load_rx) = tokio::sync::oneshot::channel::<String>();
    let sched = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("hearth-scheduler".into())
            .spawn(move || {
                if let Err(e) = scheduler_thread(&shared, load) {
                    let _ = load_tx.send(e.to_string());
                }
            })?
    };

    let app = routes::router(Arc::clone(&shared));
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<String>();
    let signal = {
        let shared = Arc::clone(&shared);
        async move {
            let why = tokio::select! {
                _ = shutdown_signal() => None,
                e = load_rx => e.ok(),
            };
            match &why {
                None => eprintln!("hearth: shutting down: finishing running requests"),
                Some(e) => {
                    let _ = fail_tx.send(e.clone());
                }
            }
            begin_shutdown(&shared);
        }
    };
    let limits = shared.cfg.limits;
    conn::serve(listener, app, limits, signal).await;
    begin_shutdown(&shared);
    // Every connection is closed: whatever still runs has no client.
    shared.cancel.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || sched.join()).await;
    if let Ok(e) = fail_rx.await {
        return Err(e.into());
    }
    eprintln!("hearth: stopped");
    Ok(())
}

/// Stops taking requests, fails the queued ones, and cancels the running
/// ones if they are not done within the drain time.
fn begin_shutdown(shared: &Arc<Shared>) {
    if shared.shutting_down.swap(true, Ordering::SeqCst) {
        return;
    }
    shared.queue.close();
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::time::sleep(shared.cfg.drain).await;
        shared.cancel.store(true, Ordering::Relaxed);
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn scheduler_thread<B, F>(shared: &Shared, load: F) -> Result<(), BoxError>
where
    B: Backend,
    F: FnOnce() -> hearth::Result<Model<B>>,
{
    let t0 = std::time::Instant::now();
    let model = load()?;
    let watch = match &shared.cfg.watch_file {
        Some(path) => Some(FileWatch::new(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    let tok = Arc::new(Tokenizer::from_gguf(&model.file)?);
    let template = ChatTemplate::for_model(&model.file).map_err(|e| e.to_string());
    let n_ctx = shared
        .cfg
        .ctx_size
        .unwrap_or_else(|| model.hparams.n_ctx_train.clamp(1, 4096));
    let cfg = SchedulerConfig {
        n_slots: shared.cfg.parallel,
        n_ctx,
        chunk: shared.cfg.prefill_chunk,
        kv_type: shared.cfg.kv_type,
    };
    let mut sched = Scheduler::new(&model, &tok, cfg)?;
    let info = model_info::ModelInfo::new(
        &model.file,
        &shared.cfg.model_id,
        model.hparams.n_ctx_train,
        template.as_ref().ok().and_then(ChatTemplate::source),
    );
    let fim = fim::Fim::find(&model.file, &tok);
    let _ = shared.ready.set(Ready {
        fim,
        tok: Arc::clone(&tok),
        template,
        n_ctx,
        n_vocab: model.hparams.n_vocab,
        info,
        watch,
        constraint_vocab: OnceLock::new(),
    });
    eprintln!(
        "hearth: model {} loaded in {:.2} s: {} slots of {n_ctx} tokens, {} threads",
        shared.cfg.model_id,
        t0.elapsed().as_secs_f64(),
        shared.cfg.parallel,
        rayon::current_num_threads()
    );
    sched.run(&shared.queue, &shared.metrics, &shared.cancel);
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths,
/// not on where they differ (API keys).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len() {
        let y = if b.is_empty() { 0 } else { b[i % b.len()] };
        diff |= u64::from(a[i] ^ y);
    }
    // Keep the comparison from being short-circuited by the optimiser.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        for other in [&b"secreT"[..], b"secret!", b"secre", b"", b"terces"] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
            assert!(!constant_time_eq(b"secret", other), "{other:?}");
        }
    }
}
