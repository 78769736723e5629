//! An opt-in per-op timer for the CPU backend: with `HEARTH_PROFILE=1` in
//! the environment, every backend op adds its wall time to a counter of its
//! kind (split into one-token calls, "decode", and many-token calls,
//! "prefill"); [`report`] formats the table (the `hearth` command prints it
//! to stderr at exit; the library itself never prints). Off (the default),
//! an op costs one load of a cached flag.
//!
//! Wall time of each op as the calling thread sees it, including the wait
//! for rayon's workers: the table says where a forward pass spends its time,
//! not how busy each core was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The op kinds timed, in the order printed.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Embed,
    MatmulQ5_0,
    MatmulQ8_0,
    MatmulQ4K,
    MatmulQ6K,
    MatmulOther,
    /// A matrix of more than 65536 rows: the output (vocabulary) matmul.
    MatmulOutput,
    RmsNorm,
    Rope,
    Attention,
    GeluMul,
    Add,
    Other,
}

const OPS: [(&str, Op); 13] = [
    ("embed", Op::Embed),
    ("matmul q5_0", Op::MatmulQ5_0),
    ("matmul q8_0", Op::MatmulQ8_0),
    ("matmul q4_K", Op::MatmulQ4K),
    ("matmul q6_K", Op::MatmulQ6K),
    ("matmul other", Op::MatmulOther),
    ("matmul output", Op::MatmulOutput),
    ("rms_norm", Op::RmsNorm),
    ("rope", Op::Rope),
    ("attention", Op::Attention),
    ("gelu_mul", Op::GeluMul),
    ("add", Op::Add),
    ("other", Op::Other),
];

/// `[decode, prefill][op]`: nanoseconds and calls.
static NANOS: [[AtomicU64; OPS.len()]; 2] = [const { [const { AtomicU64::new(0) }; OPS.len()] }; 2];
static CALLS: [[AtomicU64; OPS.len()]; 2] = [const { [const { AtomicU64::new(0) }; OPS.len()] }; 2];

/// Whether `HEARTH_PROFILE` is set (to anything but `0`), read once.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HEARTH_PROFILE").is_some_and(|v| v != "0"))
}

/// Times one op from [`start`] until dropped.
pub struct Timer(Option<(Op, usize, Instant)>);

/// Starts timing `op` over `n_tokens` rows (nothing when profiling is off).
#[inline]
pub fn start(op: Op, n_tokens: usize) -> Timer {
    Timer(enabled().then(|| (op, usize::from(n_tokens > 1), Instant::now())))
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((op, phase, t0)) = self.0 {
            let ns = t0.elapsed().as_nanos() as u64;
            NANOS[phase][op as usize].fetch_add(ns, Ordering::Relaxed);
            CALLS[phase][op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The table of accumulated times, or `None` when nothing was timed.
pub fn report() -> Option<String> {
    let mut s = String::new();
    for (phase, name) in ["decode (1 token)", "prefill (many tokens)"]
        .iter()
        .enumerate()
    {
        let total: u64 = NANOS[phase].iter().map(|n| n.load(Ordering::Relaxed)).sum();
        if total == 0 {
            continue;
        }
        s += &format!(
            "HEARTH_PROFILE {name}: {:.1} ms in ops\n",
            total as f64 / 1e6
        );
        for (i, (op, _)) in OPS.iter().enumerate() {
            let ns = NANOS[phase][i].load(Ordering::Relaxed);
            let calls = CALLS[phase][i].load(Ordering::Relaxed);
            if calls > 0 {
                s += &format!(
                    "  {op:<14} {:>10.1} ms {:>5.1}%  {calls:>7} calls {:>9.1} us/call\n",
                    ns as f64 / 1e6,
                    100.0 * ns as f64 / total as f64,
                    ns as f64 / 1e3 / calls as f64
                );
            }
        }
    }
    (!s.is_empty()).then_some(s)
}
