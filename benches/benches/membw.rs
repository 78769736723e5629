//! This machine's memory bandwidth: the speed of light for decoding, which
//! reads every weight once per token. Hearth's GEMV numbers (the `kernels`
//! suite) are reported as a fraction of the 2-thread streaming read here.
//!
//! - `read`: sum a buffer of `u64` (the loads auto-vectorised to the widest
//!   vector unit this machine has, chosen at run time), 1 and 2 threads.
//!   1 GiB is far larger than any last-level cache, so it measures DRAM;
//!   64 MiB shows what an L3-resident working set reads at.
//! - `copy`: `copy_from_slice` of 1 GiB (glibc `memcpy`). Its throughput
//!   counts bytes read plus bytes written (STREAM's convention), so it is
//!   comparable to `read`.
//!
//! - `membw on-CPU`: the 1-thread read of 1 GiB timed by the thread's CPU
//!   clock (`CLOCK_THREAD_CPUTIME_ID`, Linux) instead of the wall clock:
//!   memory stalls count, time spent waiting for a core does not. On a
//!   shared, oversubscribed machine the wall-clock figures above fall with
//!   the load; this one estimates what one core reads while it runs. It
//!   also prints the share of wall time the thread was on a core.
//!
//! Throughput is decimal (`BytesDecimal`, GB/s = 1e9 bytes/s), the unit
//! llama.cpp's notes use (~21 GB/s for a 2-thread read of 1 GiB on this
//! machine kind).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use hearth_kernels::membw::{par_sum, sum, TASK_BYTES};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

fn par_copy(src: &[u64], dst: &mut [u64]) {
    dst.par_chunks_mut(TASK_BYTES / 8)
        .zip(src.par_chunks(TASK_BYTES / 8))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// A buffer of `bytes` bytes, every page written (a zeroed `Vec` would map
/// the kernel's shared zero page and read from cache).
fn buffer(bytes: usize) -> Vec<u64> {
    (0..bytes / 8).map(|i| i as u64).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon thread pool")
}

fn membw(c: &mut Criterion) {
    // This machine has 2 cores; llama.cpp's reference figure is for 2 threads.
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2].map(|t| (t, pool(t))).into();

    let mut g = c.benchmark_group("membw");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .nresamples(10_000);

    for (size, label) in [(GIB, "1GiB"), (64 * MIB, "64MiB")] {
        let buf = buffer(size);
        g.throughput(Throughput::BytesDecimal(size as u64));
        for (t, p) in &pools {
            g.bench_function(
                BenchmarkId::new(format!("read {label}"), format!("{t}t")),
                |b| b.iter(|| p.install(|| par_sum(black_box(&buf)))),
            );
        }
    }

    let src = buffer(GIB);
    let mut dst = buffer(GIB);
    g.throughput(Throughput::BytesDecimal(2 * GIB as u64));
    for (t, p) in &pools {
        g.bench_function(
            BenchmarkId::new("copy 1GiB (read+write)", format!("{t}t")),
            |b| b.iter(|| p.install(|| par_copy(black_box(&src), black_box(&mut dst)))),
        );
    }
    g.finish();
    #[cfg(target_os = "linux")]
    on_cpu(c);
}

/// CPU time of the calling thread: on a core, memory stalls included, time
/// waiting for a core excluded.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` that outlives the call;
    // CLOCK_THREAD_CPUTIME_ID is supported by every Linux since 2.6.12.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(target_os = "linux")]
fn on_cpu(c: &mut Criterion) {
    use std::time::Instant;
    let buf = buffer(GIB);
    let mut g = c.benchmark_group("membw on-CPU");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .nresamples(10_000)
        .throughput(Throughput::BytesDecimal(GIB as u64));
    let (mut cpu_total, mut wall_total) = (Duration::ZERO, Duration::ZERO);
    g.bench_function(BenchmarkId::new("read 1GiB", "1t"), |b| {
        b.iter_custom(|iters| {
            let mut cpu = Duration::ZERO;
            let wall = Instant::now();
            for _ in 0..iters {
                let t0 = thread_cpu_time();
                black_box(sum(black_box(&buf)));
                cpu += thread_cpu_time() - t0;
            }
            cpu_total += cpu;
            wall_total += wall.elapsed();
            cpu
        })
    });
    g.finish();
    println!(
        "membw on-CPU/read 1GiB/1t: the thread was on a core {:.0}% of the wall time",
        100.0 * cpu_total.as_secs_f64() / wall_total.as_secs_f64()
    );
}

criterion_group!(benches, membw);
criterion_main!(benches);
