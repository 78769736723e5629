//! Continuous batching: one OS thread owns the model's KV cache of
//! `--parallel` slots and runs every forward pass.
//!
//! Each step builds one [`Batch`]: the pending token of every decoding slot
//! (one row each, logits wanted), plus at most one prompt chunk of one
//! prefilling slot (the one admitted first), so a long prompt is evaluated a
//! chunk per step between the others' decode steps instead of stalling them.
//! After the forward pass every slot with a logits row samples its next
//! token and sends it to its client.
//!
//! Requests wait in a bounded [`Queue`]; a free slot takes the queued request
//! whose prompt shares the longest prefix with the tokens it holds, and keeps
//! that prefix in its cache (chat frontends resend the whole conversation).
//! A request whose client went away (its event receiver is dropped) is
//! removed while queued, and its slot freed before the next step.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use hearth::backend::{Backend, CacheSpec, KvType};
use hearth::batch::{Batch, Logits};
use hearth::constraint::Constraint;
use hearth::generate::Generator;
use hearth::model::{Model, Workspace};
use hearth::sampler::{self, SamplerConfig, StopReason, TokenLogprobs};
use hearth::tokenizer::Tokenizer;

/// One generation request, validated and tokenized by the HTTP handler.
pub struct Job {
    /// At least one token; `prompt.len() + max_tokens <= n_ctx`.
    pub prompt: Vec<u32>,
    pub sampling: SamplerConfig,
    /// At least 1.
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Report the chosen token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    /// The grammar the output follows.
    pub constraint: Option<Constraint>,
    pub events: UnboundedSender<Event>,
}

/// Why a generation ended, as OpenAI's `finish_reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Stop,
    /// The request's stop string of this index (Anthropic's
    /// `stop_sequence` names it; OpenAI's `finish_reason` is `stop`).
    StopString(usize),
    /// `max_tokens`, or the context is full.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop | Finish::StopString(_) => "stop",
            Finish::Length => "length",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values were already in the slot's cache.
    pub cached_tokens: usize,
}

/// What the scheduler tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// One generated token: the text it completes (may be empty while a
    /// character or a possible stop string is incomplete).
    Token {
        id: u32,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    Done {
        finish: Finish,
        usage: Usage,
    },
    Error(String),
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Full,
    ShuttingDown,
}

/// The bounded queue between the HTTP handlers and the scheduler thread.
pub struct Queue {
    state: Mutex<QueueState>,
    wake: std::sync::Condvar,
    capacity: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Slots with no request, as the scheduler last counted them: that many
    /// queued requests are about to leave the queue, so they do not hold
    /// queue places.
    free_slots: usize,
}

impl Queue {
    /// A queue holding at most `capacity` waiting requests, in front of no
    /// free slot (see [`with_slots`](Self::with_slots)).
    pub fn new(capacity: usize) -> Queue {
        Queue::with_slots(capacity, 0)
    }

    /// A queue holding at most `capacity` requests waiting for a slot, in
    /// front of `n_slots` slots that start free: a request is refused only
    /// when every slot is busy or spoken for and the queue is full.
    pub fn with_slots(capacity: usize, n_slots: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
                free_slots: n_slots,
            }),
            wake: std::sync::Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves a consistent VecDeque.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, job: Job) -> Result<(), Rejected> {
        let mut q = self.lock();
        if q.closed {
            return Err(Rejected::ShuttingDown);
        }
        // Requests whose clients left do not hold places.
        q.jobs.retain(|j| !j.events.is_closed());
        // Queued requests first fill the free slots (the scheduler takes
        // them before its next step); only the rest wait in queue places.
        if q.jobs.len() >= self.capacity + q.free_slots {
            return Err(Rejected::Full);
        }
        q.jobs.push_back(job);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    /// Requests waiting for a slot.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new requests and fails the waiting ones; the scheduler
    /// finishes the running ones and returns.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        for job in q.jobs.drain(..) {
            let _ = job
                .events
                .send(Event::Error("the server is shutting down".into()));
        }
        drop(q);
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for a request (or for the queue to close).
    fn wait(&self, timeout: Duration) {
        let q = self.lock();
        if q.jobs.is_empty() && !q.closed {
            let _ = self.wake.wait_timeout(q, timeout);
        }
    }
}

/// Shape of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Slots decoding together (`--parallel`).
    pub n_slots: usize,
    /// Context of each slot, in tokens.
    pub n_ctx: usize,
    /// Most prompt tokens evaluated in one step.
    pub chunk: usize,
    pub kv_type: KvType,
}

struct Active<'t> {
    job: Job,
    gen: Generator<'t>,
    /// The next prompt token to evaluate; `prompt.len()` once decoding.
    next: usize,
    /// The sampled token to evaluate next step.
    pending: Option<u32>,
    generated: usize,
    cached: usize,
    /// Admission order: the earliest admitted prefills first.
    order: u64,
}

struct Slot<'t> {
    /// The tokens whose keys and values the slot's cache holds, in order.
    tokens: Vec<u32>,
    active: Option<Active<'t>>,
}

/// The scheduler's state: the model's cache for all slots and the slots.
pub struct Scheduler<'m, B: Backend> {
    model: &'m Model<B>,
    tok: &'m Tokenizer,
    cfg: SchedulerConfig,
    spec: CacheSpec,
    cache: B::Cache,
    ws: Workspace<B>,
    batch: Batch,
    /// The slot of each logits row of the batch.
    rows: Vec<usize>,
    slots: Vec<Slot<'m>>,
    admitted: u64,
    /// `(time, prompt tokens, generated tokens)` of recent steps, for the
    /// throughput gauges.
    recent: VecDeque<(Instant, usize, usize)>,
}

/// Window of the tokens-per-second gauges.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl<'m, B: Backend> Scheduler<'m, B> {
    pub fn new(
        model: &'m Model<B>,
        tok: &'m Tokenizer,
        cfg: SchedulerConfig,
    ) -> hearth::Result<Self> {
        if cfg.n_slots == 0 || cfg.n_ctx == 0 || cfg.chunk == 0 {
            return Err(hearth::Error::Config(
                "slots, context and prefill chunk must all be at least 1".into(),
            ));
        }
        // The cache is made for batches of a whole context, so that the
        // sliding-window layers keep every position in order instead of a
        // ring of `window + chunk`. A ring is exact, but once it wraps it
        // holds keys out of position order, and the attention sums in that
        // order: the rounding differs, and the int8 quantization of the
        // next matmul's activations can turn that into logits ~0.1 apart,
        // enough to flip a near-tie. With the ring, a request's greedy
        // output would depend on what its slot held before. Costs memory:
        // every layer holds `n_ctx` positions per slot.
        let spec = model.cache_spec(
            cfg.n_ctx,
            cfg.n_slots,
            cfg.kv_type,
            cfg.n_ctx.max(cfg.chunk),
        );
        Ok(Scheduler {
            cache: model.backend.new_cache(&spec)?,
            ws: Workspace::new(&model.backend),
            batch: Batch::new(),
            rows: Vec::new(),
            slots: (0..cfg.n_slots)
                .map(|_| Slot {
                    tokens: Vec::new(),
                    active: None,
                })
                .collect(),
            admitted: 0,
            recent: VecDeque::new(),
            spec,
            model,
            tok,
            cfg,
        })
    }

    /// Runs until the queue is closed and every running request is done,
    /// or until `cancel` is set (running requests then get an error).
    pub fn run(&mut self, queue: &Queue, metrics: &Metrics, cancel: &AtomicBool) {
        loop {
            if cancel.load(Ordering::Relaxed) {
                for i in 0..self.slots.len() {
                    self.fail(i, "the server is shutting down", metrics);
                }
                return;
            }
            let closed = self.admit(queue, metrics);
            self.drop_disconnected(metrics);
            let busy = self.slots.iter().filter(|s| s.active.is_some()).count();
            metrics.set_busy_slots(busy);
            if busy == 0 {
                self.publish_rates(metrics);
                if closed {
                    return;
                }
                queue.wait(Duration::from_millis(250));
                continue;
            }
            self.step(metrics);
        }
    }

    /// Moves queued requests into free slots; returns whether the queue is
    /// closed.
    fn admit(&mut self, queue: &Queue, metrics: &Metrics) -> bool {
        let mut q = queue.lock();
        q.jobs.retain(|j| {
            let gone = j.events.is_closed();
            if gone {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            !gone
        });
        while !q.jobs.is_empty() {
            // The free slot whose cache shares the longest prefix with the
            // next request's prompt.
            let job = &q.jobs[0];
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .map(|(i, s)| (common_prefix(&s.tokens, &job.prompt), i))
                .max_by_key(|&(common, i)| (common, std::cmp::Reverse(i)));
            let Some((_, slot)) = best else { break };
            let Some(job) = q.jobs.pop_front() else { break };
            self.start(slot, job, metrics);
        }
        q.free_slots = self.slots.iter().filter(|s| s.active.is_none()).count();
        q.closed
    }

    fn start(&mut self, i: usize, mut job: Job, metrics: &Metrics) {
        // As llama.cpp's server: the penalties see the prompt too.
        let gen = Generator::new(
            self.tok,
            job.sampling.clone(),
            Some(job.max_tokens),
            job.stop.iter().cloned(),
            &job.prompt,
        );
        let constraint = job.constraint.take();
        let gen = match gen {
            Ok(g) => match constraint {
                Some(c) => g.without_special_text().with_constraint(c),
                None => g.without_special_text(),
            },
            Err(e) => {
                let _ = job.events.send(Event::Error(e.to_string()));
                return;
            }
        };
        if job.prompt.is_empty() || job.prompt.len() + job.max_tokens > self.cfg.n_ctx {
            let _ = job.events.send(Event::Error(format!(
                "{} prompt tokens and {} to generate do not fit the context of {}",
                job.prompt.len(),
                job.max_tokens,
                self.cfg.n_ctx
            )));
            return;
        }
        let slot = &mut self.slots[i];
        // At least one prompt token is evaluated, for the first logits.
        let keep = common_prefix(&slot.tokens, &job.prompt).min(job.prompt.len() - 1);
        let keep = self.spec.reusable_prefix(slot.tokens.len(), keep);
        slot.tokens.truncate(keep);
        if keep == 0 {
            // Cannot fail: `i` is a slot of this cache.
            let _ = self.model.backend.clear_seq(&mut self.cache, i);
        }
        metrics.admitted(job.prompt.len(), keep);
        self.admitted += 1;
        slot.active = Some(Active {
            gen,
            next: keep,
            pending: None,
            generated: 0,
            cached: keep,
            order: self.admitted,
            job,
        });
    }

    fn drop_disconnected(&mut self, metrics: &Metrics) {
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.job.events.is_closed())
            {
                slot.active = None;
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends slot `i`'s request with an error.
    fn fail(&mut self, i: usize, message: &str, metrics: &Metrics) {
        if let Some(a) = self.slots[i].active.take() {
            let _ = a.job.events.send(Event::Error(message.to_string()));
            metrics.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One forward pass: every decoding slot's pending token and at most
    /// one prompt chunk.
    fn step(&mut self, metrics: &Metrics) {
        self.batch.clear();
        self.rows.clear();
        let mut n_decode = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(a) = &slot.active else { continue };
            if let Some(t) = a.pending {
                // Positions and sizes are within the context (checked at
                // admission), so push cannot fail.
                let _ = self.batch.push(i, slot.tokens.len(), &[t], Logits::Last);
                self.rows.push(i);
                n_decode += 1;
            }
        }
        let prefilling = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.active.as_ref().map(|a| (i, a)))
            .filter(|(_, a)| a.next < a.job.prompt.len())
            .min_by_key(|(_, a)| a.order)
            .map(|(i, _)| i);
        let mut n_prefill = 0;
        if let Some(i) = prefilling {
            let slot = &self.slots[i];
            if let Some(a) = &slot.active {
                let end = (a.next + self.cfg.chunk).min(a.job.prompt.len());
                let last = end == a.job.prompt.len();
                let want = if last { Logits::Last } else { Logits::None };
                let _ = self
                    .batch
                    .push(i, slot.tokens.len(), &a.job.prompt[a.next..end], want);
                if last {
                    self.rows.push(i);
                }
                n_prefill = end - a.next;
            }
        }
        if self.batch.is_empty() {
            return;
        }
        let Scheduler {
            model,
            cfg,
            cache,
            ws,
            batch,
            rows,
            slots,
            ..
        } = self;
        let logits = match model.forward(batch, cache, ws) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("the forward pass failed: {e}");
                for s in batch.spans() {
                    if let Some(a) = slots[s.seq].active.take() {
                        let _ = a.job.events.send(Event::Error(msg.clone()));
                        metrics.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    slots[s.seq].tokens.clear();
                    let _ = model.backend.clear_seq(cache, s.seq);
                }
                return;
            }
        };
        for s in batch.spans() {
            let slot = &mut slots[s.seq];
            slot.tokens
                .extend_from_slice(&batch.tokens()[s.start..s.start + s.len]);
            if let Some(a) = &mut slot.active {
                if a.pending.take().is_none() {
                    a.next += s.len;
                }
            }
        }
        let n_vocab = model.hparams.n_vocab;
        for (k, &i) in rows.iter().enumerate() {
            let row = &logits[k * n_vocab..(k + 1) * n_vocab];
            sample_slot(&mut slots[i], row, cfg.n_ctx, metrics);
        }
        metrics.stepped(n_prefill, n_decode);
        self.recent.push_back((Instant::now(), n_prefill, n_decode));
        self.publish_rates(metrics);
    }

    fn publish_rates(&mut self, metrics: &Metrics) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|&(t, _, _)| now.duration_since(t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        let (p, d) = self
            .recent
            .iter()
            .fold((0, 0), |(p, d), &(_, a, b)| (p + a, d + b));
        let secs = RATE_WINDOW.as_secs_f64();
        metrics.set_rates(p as f64 / secs, d as f64 / secs);
    }
}

/// Samples slot's next token from its logits row and tells its client.
fn sample_slot(slot: &mut Slot<'_>, row: &[f32], n_ctx: usize, metrics: &Metrics) {
    let Some(a) = &mut slot.active else { return };
    let sampled = a.gen.step(row).map_err(|e| e.to_string()).and_then(|t| {
        let lp = match a.job.logprobs {
            Some(n) => Some(sampler::logprobs(row, t.id, n).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok((t, lp))
    });
    let (t, logprobs) = match sampled {
        Ok(x) => x,
        Err(e) => {
            let _ = a.job.events.send(Event::Error(e));
            slot.active = None;
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    a.generated += 1;
    let (id, mut text) = (t.id, t.text);
    let finish = match t.stop {
        Some(StopReason::StopString(i)) => Some(Finish::StopString(i)),
        Some(StopReason::EndOfGeneration(_)) => Some(Finish::Stop),
        Some(StopReason::MaxTokens) => Some(Finish::Length),
        None if slot.tokens.len() + 1 > n_ctx => {
            text.push_str(&a.gen.finish());
            Some(Finish::Length)
        }
        None => None,
    };
    metrics.generated.fetch_add(1, Ordering::Relaxed);
    let sent = a.job.events.send(Event::Token { id, text, logprobs });
    if sent.is_err() {
        slot.active = None;
        metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match finish {
        Some(finish) => {
            let usage = Usage {
                prompt_tokens: a.job.prompt.len(),
                completion_tokens: a.generated,
                cached_tokens: a.cached,
            };
            // Counted first: a client reading /metrics after its response
            // sees itself.
            metrics.completed.fetch_add(1, Ordering::Relaxed);
            let _ = a.job.events.send(Event::Done { finish, usage });
            slot.active = None;
        }
        None => a.pending = Some(id),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (Job, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            prompt: vec![1],
            sampling: SamplerConfig::default(),
            max_tokens: 1,
            stop: Vec::new(),
            logprobs: None,
            constraint: None,
            events: tx,
        };
        (job, rx)
    }

    /// Issue 17: `--queue-size 2 --parallel 2` refused 5 of 8 simultaneous
    /// requests while a slot was free: requests bound for free slots were
    /// counted as holding queue places.
    #[test]
    fn queue_refuses_only_when_slots_and_queue_are_full() {
        let q = Queue::with_slots(2, 2);
        let mut keep = Vec::new();
        for i in 0..4 {
            let (j, rx) = job();
            assert_eq!(q.push(j), Ok(()), "request {i} of 2 slots + 2 places");
            keep.push(rx);
        }
        let (j, _rx) = job();
        assert_eq!(q.push(j), Err(Rejected::Full), "the fifth");
        // The scheduler took two into the slots: the other two hold both
        // queue places, so the next request is refused.
        {
            let mut s = q.lock();
            s.jobs.pop_front();
            s.jobs.pop_front();
            s.free_slots = 0;
        }
        let (j, _rx) = job();
        assert_eq!(
            q.push(j),
            Err(Rejected::Full),
            "both slots busy, queue full"
        );
        // A slot frees up: exactly one more.
        q.lock().free_slots = 1;
        let (j, rx) = job();
        assert_eq!(q.push(j), Ok(()));
        keep.push(rx);
        let (j, _rx) = job();
        assert_eq!(q.push(j), Err(Rejected::Full));
    }
}
