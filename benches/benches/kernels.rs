//! CPU kernels against the speed of light (see `benches/RESULTS.md`).
//!
//! - `gemv 2048x2048`: one token through a 2048x2048 weight matrix in every
//!   weight format, reported as GB/s of weight bytes read (decimal). 1.4-8.4 MB
//!   of weights stay in L2/L3 between iterations, so this is the kernel's
//!   compute speed on cache-resident weights, not a memory-bound figure.
//! - `gemv 262144x640`: Gemma 3's tied output layer (178 MB in Q8_0), in
//!   the formats whose blocks divide 640 (F16 and the 32-value blocks; the
//!   256-value K-quant blocks do not). `hot` repeats the call as criterion
//!   does; `cold` first streams a 512 MiB buffer (untimed) so the weights
//!   come from DRAM, as when a whole model is read every token. Compare
//!   `cold` with the `membw` suite's 2-thread read. Set
//!   `HEARTH_BENCH_QUICK=1` to skip this group.
//! - `gemm 512x2048x2048`: 512 tokens (prefill) through 2048x2048, reported
//!   as `elem/s` where one element is one FLOP (`2*rows*cols*tokens` per
//!   call), i.e. `Gelem/s` reads GFLOP/s. A call slower than 1/12 of
//!   the 20 s budget per benchmark is timed 1-3 times and printed in
//!   criterion's style instead of run through criterion (see
//!   [`bench_timed`]); `HEARTH_BENCH_FULL=1` runs criterion regardless.
//! - `attention`: Gemma 3 270M's shape (4 query heads, 1 KV head, head_dim
//!   256, f16 KV cache): decode (1 query) at context 512 and 4096, reported
//!   as GB/s of KV bytes read, and causal prefill of 512 tokens, reported as
//!   FLOP/s (`elem/s`, one element per FLOP of `q.k` and `p.v`).
//! - `ops`: rms_norm, rope, softmax on small rows, elements/s.
//!
//! Weights are random floats quantized once per format; a block of
//! [`TILE_ROWS`] distinct rows is repeated to fill the matrix (the kernels'
//! speed does not depend on the values, and quantizing 167M floats per
//! format with the reference K-quant search would dominate the run).
//! Everything runs on rayon's global pool (all cores; `RAYON_NUM_THREADS`
//! overrides), as the engine does.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use half::f16;
use hearth_kernels::matmul::{matmul, MatmulScratch, QMatrix};
use hearth_kernels::ops::attention::{attention_par, AttentionParams, AttentionScratch, KvCache};
use hearth_kernels::ops::norm::rms_norm;
use hearth_kernels::ops::rope::{Rope, RopeOrdering};
use hearth_kernels::ops::softmax::{softmax, Mask};
use hearth_kernels::quant::{kernels, Format};
use rayon::prelude::*;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The weight formats benchmarked: those with a quantized dot product (the
/// float formats but F16 have only the f32 path), in ggml's type order.
fn weight_formats() -> impl Iterator<Item = Format> {
    Format::weights().filter(|f| !matches!(f, Format::F32 | Format::BF16))
}

/// Distinct quantized rows per matrix; the rest repeat them.
const TILE_ROWS: usize = 256;

/// Uniform floats in [-1, 1) from splitmix64: reproducible, no dependency.
fn random_f32s(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 24 bits over 2^23 lie in [0, 2); shift to [-1, 1).
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `rows x cols` random weights in `format`, row after row.
fn random_matrix(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let row_bytes = format.row_size(cols).expect("cols is a block multiple");
    let quantize = kernels(format)
        .quantizer()
        .expect("weight format quantizes");
    let tile_rows = rows.min(TILE_ROWS);
    let floats = random_f32s(tile_rows * cols, seed);
    let mut tile = vec![0u8; tile_rows * row_bytes];
    tile.par_chunks_mut(row_bytes)
        .zip(floats.par_chunks(cols))
        .for_each(|(q, x)| quantize(x, q).expect("quantize a row"));
    let mut data = Vec::with_capacity(rows * row_bytes);
    while data.len() < rows * row_bytes {
        let take = (rows * row_bytes - data.len()).min(tile.len());
        data.extend_from_slice(&tile[..take]);
    }
    data
}

/// Whether `format` stores rows of `cols` values (a whole number of blocks).
fn fits(format: Format, cols: usize) -> bool {
    format.row_size(cols).is_ok()
}

/// The longest one benchmark may take in the default run: criterion needs
/// at least 11 calls (10 samples and a warm-up), which for a slow kernel
/// (a scalar GEMM takes tens of seconds) would blow the ~10 minute budget of
/// `cargo bench -p hearth-benches`. `HEARTH_BENCH_FULL=1` lifts the cap.
fn budget() -> Duration {
    if env_flag("HEARTH_BENCH_FULL") {
        Duration::MAX
    } else {
        Duration::from_secs(20)
    }
}

/// Whether the environment variable is set to something other than `0`.
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Benchmark `call`, which runs the kernel once and returns the time to
/// count. One probe call first: if criterion's 11+ calls would exceed
/// [`budget`], take up to 3 calls instead and print their median in
/// criterion's style, marked as such, rather than run criterion.
fn bench_timed(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    id: &str,
    throughput: Throughput,
    mut call: impl FnMut() -> Duration,
) {
    if !selected(&format!("{group}/{id}")) {
        return;
    }
    // Outside `cargo bench` (`cargo test --benches` runs each benchmark
    // once; `--list` runs none) criterion already bounds the work.
    let measuring = std::env::args().any(|a| a == "--bench")
        && !std::env::args().any(|a| a == "--list" || a == "--test");
    let probe = if measuring { call() } else { Duration::ZERO };
    if probe.saturating_mul(12) <= budget() {
        g.throughput(throughput);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| call()).sum())
        });
        return;
    }
    let mut times = vec![probe];
    while times.len() < 3 && probe.saturating_mul(times.len() as u32 + 1) <= budget() {
        times.push(call());
    }
    times.sort();
    let n = times.len();
    let median = (times[(n - 1) / 2] + times[n / 2]).as_secs_f64() / 2.0;
    let rate = match throughput {
        Throughput::BytesDecimal(n) | Throughput::Bytes(n) => {
            format!("{:.3} GB/s", n as f64 / median / 1e9)
        }
        Throughput::Elements(n) => format!("{:.3} Gelem/s", n as f64 / median / 1e9),
        other => format!("{other:?}"),
    };
    println!(
        "{}/{}\n                        time:   [median {:.4} s of {} calls; min {:.4} s, max {:.4} s]\n                        thrpt:  [{rate}]  (too slow for criterion's 10 samples in the time budget; HEARTH_BENCH_FULL=1 runs criterion)",
        group,
        id,
        median,
        times.len(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
    );
}

/// Whether criterion's command-line filter (`cargo bench -- FILTER`, the
/// first free argument, a regex; exact with `--exact`) selects `full_id`,
/// so that [`bench_timed`]'s probe and fallback skip what criterion would.
fn selected(full_id: &str) -> bool {
    static FILTER: OnceLock<Option<(String, bool)>> = OnceLock::new();
    let filter = FILTER.get_or_init(|| {
        // Criterion's options that take a separate value.
        const TAKES_VALUE: [&str; 19] = [
            "-b",
            "-c",
            "-s",
            "--baseline",
            "--baseline-lenient",
            "--color",
            "--confidence-level",
            "--format",
            "--load-baseline",
            "--measurement-time",
            "--noise-threshold",
            "--nresamples",
            "--output-format",
            "--plotting-backend",
            "--profile-time",
            "--sample-size",
            "--save-baseline",
            "--significance-level",
            "--warm-up-time",
        ];
        let (mut filter, mut exact) = (None, false);
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            if a == "--exact" {
                exact = true;
            } else if TAKES_VALUE.contains(&a.as_str()) {
                args.next();
            } else if !a.starts_with('-') && filter.is_none() {
                filter = Some(a);
            }
        }
        filter.map(|f| (f, exact))
    });
    match filter {
        None => true,
        Some((f, true)) => f == full_id,
        Some((f, false)) => regex::Regex::new(f).map_or(true, |r| r.is_match(full_id)),
    }
}

/// Reads a buffer twice the size of this machine's last-level cache, so
/// that what was cached before comes from DRAM afterwards.
struct Evictor(Vec<u64>);

impl Evictor {
    fn new() -> Evictor {
        // Every page written, so none is the kernel's shared zero page.
        Evictor((0..(512usize << 20) / 8).map(|i| i as u64).collect())
    }

    fn evict(&self) {
        let s = self
            .0
            .par_chunks(1 << 20)
            .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
            .reduce(|| 0, u64::wrapping_add);
        black_box(s);
    }
}

fn gemv(c: &mut Criterion, rows: usize, cols: usize) {
    let name = format!("gemv {rows}x{cols}");
    let big = rows * cols > 16 << 20;
    let ids = |f: Format| {
        if big {
            vec![format!("{}/hot", f.name()), format!("{}/cold", f.name())]
        } else {
            vec![f.name().to_string()]
        }
    };
    // Build no matrix (up to 335 MB each) that the filter leaves out.
    let wanted =
        |f: Format| fits(f, cols) && ids(f).iter().any(|id| selected(&format!("{name}/{id}")));
    if !weight_formats().any(wanted) {
        return;
    }
    let mut g = c.benchmark_group(&name);
    // Flat sampling: the same number of calls per sample, so slow formats
    // still fit the time budget.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(if big { 10 } else { 20 })
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(if big { 1000 } else { 1500 }))
        .nresamples(10_000);
    let evictor = big.then(Evictor::new);
    let x = random_f32s(cols, 1);
    let mut out = vec![0.0f32; rows];
    let mut scratch = MatmulScratch::default();
    for (i, format) in weight_formats().enumerate() {
        if !wanted(format) {
            continue;
        }
        let data = random_matrix(format, rows, cols, 100 + i as u64);
        let w = QMatrix::new(format, rows, cols, &data).expect("matrix shape");
        let bytes = Throughput::BytesDecimal(data.len() as u64);
        let mut gemv = || {
            let start = Instant::now();
            matmul(&w, black_box(&x), 1, &mut out, &mut scratch).expect("gemv");
            start.elapsed()
        };
        match &evictor {
            None => bench_timed(&mut g, &name, format.name(), bytes, gemv),
            Some(ev) => {
                let id = format!("{}/hot", format.name());
                bench_timed(&mut g, &name, &id, bytes.clone(), &mut gemv);
                let id = format!("{}/cold", format.name());
                bench_timed(&mut g, &name, &id, bytes, || {
                    ev.evict();
                    gemv()
                });
            }
        }
    }
    g.finish();
}

fn gemv_benches(c: &mut Criterion) {
    gemv(c, 2048, 2048);
    if !env_flag("HEARTH_BENCH_QUICK") {
        gemv(c, 262_144, 640);
    }
}

fn gemm_benches(c: &mut Criterion) {
    let (rows, cols, tokens) = (2048, 2048, 512);
    let name = format!("gemm {tokens}x{rows}x{cols} (elem = FLOP)");
    let mut g = c.benchmark_group(&name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .nresamples(10_000);
    let flops = Throughput::Elements((2 * rows * cols * tokens) as u64);
    let x = random_f32s(tokens * cols, 2);
    let mut out = vec![0.0f32; tokens * rows];
    let mut scratch = MatmulScratch::default();
    for (i, format) in weight_formats().enumerate() {
        if !selected(&format!("{name}/{}", format.name())) {
            continue;
        }
        let data = random_matrix(format, rows, cols, 100 + i as u64);
        let w = QMatrix::new(format, rows, cols, &data).expect("matrix shape");
        bench_timed(&mut g, &name, format.name(), flops.clone(), || {
            let start = Instant::now();
            matmul(&w, black_box(&x), tokens, &mut out, &mut scratch).expect("gemm");
            start.elapsed()
        });
    }
    g.finish();
}

/// Gemma 3 270M: 4 query heads sharing 1 KV head of 256 dims.
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 1;
const HEAD_DIM: usize = 256;

/// A full f16 KV cache of `n_kv` entries at positions `0..n_kv`.
fn kv_cache(n_kv: usize) -> (Vec<f16>, Vec<f16>, Vec<i32>) {
    let n = n_kv * N_HEAD_KV * HEAD_DIM;
    let k = random_f32s(n, 3).into_iter().map(f16::from_f32).collect();
    let v = random_f32s(n, 4).into_iter().map(f16::from_f32).collect();
    let pos = (0..n_kv as i32).collect();
    (k, v, pos)
}

fn attention_benches(c: &mut Criterion) {
    let p = AttentionParams::new(N_HEAD, N_HEAD_KV, HEAD_DIM);
    let mut scratch = AttentionScratch::new();
    let mut g = c.benchmark_group("attention decode (4q/1kv x 256, f16 KV)");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(10_000);
    for n_kv in [512usize, 4096] {
        let (k, v, pos) = kv_cache(n_kv);
        let kv = KvCache {
            k: &k,
            v: &v,
            pos: &pos,
        };
        let q = random_f32s(N_HEAD * HEAD_DIM, 5);
        let q_pos = [n_kv as i32 - 1];
        let mut out = vec![0.0f32; q.len()];
        // K and V bytes read once per call.
        g.throughput(Throughput::BytesDecimal((2 * k.len() * 2) as u64));
        g.bench_function(BenchmarkId::new("ctx", n_kv), |b| {
            b.iter(|| {
                attention_par(&p, black_box(&q), &q_pos, &kv, &mut out, &mut scratch)
                    .expect("attention")
            })
        });
    }
    g.finish();

    let n = 512usize;
    let mut g = c.benchmark_group("attention prefill (4q/1kv x 256, f16 KV, elem = FLOP)");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .nresamples(10_000);
    let (k, v, pos) = kv_cache(n);
    let kv = KvCache {
        k: &k,
        v: &v,
        pos: &pos,
    };
    let q = random_f32s(n * N_HEAD * HEAD_DIM, 6);
    let q_pos: Vec<i32> = (0..n as i32).collect();
    let mut out = vec![0.0f32; q.len()];
    // Causal: query t sees t + 1 keys; each costs a q.k and a p.v of
    // HEAD_DIM multiply-adds per query head.
    let pairs = n * (n + 1) / 2;
    g.throughput(Throughput::Elements((pairs * N_HEAD * 4 * HEAD_DIM) as u64));
    g.bench_function(BenchmarkId::new("tokens", n), |b| {
        b.iter(|| {
            attention_par(&p, black_box(&q), &q_pos, &kv, &mut out, &mut scratch)
                .expect("attention")
        })
    });
    g.finish();
}

fn ops_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("ops");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .nresamples(10_000);

    for n in [640usize, 2048] {
        let x = random_f32s(n, 7);
        let w = random_f32s(n, 8);
        let mut y = vec![0.0f32; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("rms_norm", n), |b| {
            b.iter(|| rms_norm(black_box(&x), &w, 1e-6, &mut y))
        });
    }

    // Gemma 3 270M's queries: 4 heads of 256, NeoX pairs over the full head.
    let rope = Rope::new(HEAD_DIM, HEAD_DIM, 10_000.0, 1.0, RopeOrdering::Neox).expect("rope");
    for n_tokens in [1usize, 512] {
        let mut x = random_f32s(n_tokens * N_HEAD * HEAD_DIM, 9);
        let positions: Vec<i32> = (0..n_tokens as i32).map(|t| t + 100).collect();
        g.throughput(Throughput::Elements(x.len() as u64));
        g.bench_function(
            BenchmarkId::new("rope neox 4x256", format!("{n_tokens} tokens")),
            |b| b.iter(|| rope.apply_inplace(black_box(&mut x), N_HEAD, &positions)),
        );
    }

    for n in [512usize, 4096, 262_144] {
        let x = random_f32s(n, 10);
        let mut y = vec![0.0f32; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("softmax", n), |b| {
            b.iter(|| softmax(black_box(&x), 0.0625, Mask::None, &mut y))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    gemv_benches,
    gemm_benches,
    attention_benches,
    ops_benches
);
criterion_main!(benches);
