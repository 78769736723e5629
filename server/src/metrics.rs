//! Counters and gauges for `GET /metrics`, in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Updated by the handlers and the scheduler thread without locks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Generation requests that passed validation.
    pub requests: AtomicU64,
    /// Requests answered with a 4xx status.
    pub rejected_invalid: AtomicU64,
    /// Requests refused with 503 because the queue was full.
    pub rejected_full: AtomicU64,
    pub completed: AtomicU64,
    /// Requests whose client went away before the end.
    pub cancelled: AtomicU64,
    /// Requests that ended with an error.
    pub failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens found in a slot's cache (not evaluated again).
    pub prompt_tokens_cached: AtomicU64,
    /// Prompt tokens evaluated.
    pub prefill_tokens: AtomicU64,
    pub generated: AtomicU64,
    pub steps: AtomicU64,
    busy_slots: AtomicU64,
    /// f64 bits.
    prefill_rate: AtomicU64,
    decode_rate: AtomicU64,
}

impl Metrics {
    pub fn admitted(&self, prompt: usize, cached: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.prompt_tokens_cached
            .fetch_add(cached as u64, Ordering::Relaxed);
    }

    pub fn stepped(&self, prefill: usize, _decode: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.prefill_tokens
            .fetch_add(prefill as u64, Ordering::Relaxed);
    }

    pub fn set_busy_slots(&self, n: usize) {
        self.busy_slots.store(n as u64, Ordering::Relaxed);
    }

    pub fn busy_slots(&self) -> u64 {
        self.busy_slots.load(Ordering::Relaxed)
    }

    pub fn set_rates(&self, prefill: f64, decode: f64) {
        self.prefill_rate
            .store(prefill.to_bits(), Ordering::Relaxed);
        self.decode_rate.store(decode.to_bits(), Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, queue_depth: usize, slots: usize) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rate = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP hearth_{name} {help}");
            let _ = writeln!(out, "# TYPE hearth_{name} {kind}");
            let _ = writeln!(out, "hearth_{name} {value}");
        };
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "requests_total",
                "Generation requests accepted.",
                &self.requests,
            ),
            (
                "requests_completed_total",
                "Generation requests completed.",
                &self.completed,
            ),
            (
                "requests_cancelled_total",
                "Requests whose client disconnected before the end.",
                &self.cancelled,
            ),
            (
                "requests_failed_total",
                "Requests that ended with an error.",
                &self.failed,
            ),
            (
                "requests_rejected_total",
                "Requests refused with 503: the queue was full.",
                &self.rejected_full,
            ),
            (
                "requests_invalid_total",
                "Requests answered with a 4xx status (bad input, key, route, size).",
                &self.rejected_invalid,
            ),
            (
                "prompt_tokens_total",
                "Prompt tokens of admitted requests (tokens in).",
                &self.prompt_tokens,
            ),
            (
                "prompt_tokens_cached_total",
                "Prompt tokens reused from a slot's KV cache.",
                &self.prompt_tokens_cached,
            ),
            (
                "prefill_tokens_total",
                "Prompt tokens evaluated.",
                &self.prefill_tokens,
            ),
            (
                "tokens_generated_total",
                "Tokens generated (tokens out).",
                &self.generated,
            ),
            ("steps_total", "Batched forward passes.", &self.steps),
        ];
        for (name, help, v) in counters {
            metric(name, "counter", help, get(v).to_string());
        }
        metric(
            "prefill_tokens_per_second",
            "gauge",
            "Prompt tokens evaluated per second over the last 10 s.",
            format!("{:.3}", rate(&self.prefill_rate)),
        );
        metric(
            "decode_tokens_per_second",
            "gauge",
            "Tokens generated per second, all slots together, over the last 10 s.",
            format!("{:.3}", rate(&self.decode_rate)),
        );
        metric(
            "queue_depth",
            "gauge",
            "Requests waiting for a slot.",
            queue_depth.to_string(),
        );
        metric(
            "slots_busy",
            "gauge",
            "Slots running a request.",
            self.busy_slots().to_string(),
        );
        metric(
            "slots_total",
            "gauge",
            "Slots (--parallel).",
            slots.to_string(),
        );
        out
    }
}
