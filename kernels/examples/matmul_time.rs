//! Times one matmul shape for quick A/B comparisons of kernel changes:
//! `cargo run --release -p hearth-kernels --example matmul_time -- FORMAT ROWS COLS TOKENS [REPS]`
//! (e.g. `q5_0 2048 640 512`). Prints the minimum and median wall time of
//! REPS calls (default 30) and the GFLOP/s of the minimum. The minimum is
//! the figure to compare on a shared, noisy machine: it is the run least
//! disturbed by other work. The CPU time per call (from `/proc/self/stat`,
//! all threads) is the other robust figure there. Set `RAYON_NUM_THREADS`
//! to fix the threads.

use std::time::Instant;

use hearth_kernels::matmul::{matmul, MatmulScratch, QMatrix};
use hearth_kernels::quant::{kernels, Format};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: matmul_time FORMAT ROWS COLS TOKENS [REPS]");
        std::process::exit(2);
    }
    let format: Format = match args[0].to_lowercase().as_str() {
        "q8_0" => Format::Q8_0,
        "q5_0" => Format::Q5_0,
        "q4_0" => Format::Q4_0,
        "q4_1" => Format::Q4_1,
        "q5_1" => Format::Q5_1,
        "iq4_nl" => Format::IQ4_NL,
        "q4_k" => Format::Q4_K,
        "q5_k" => Format::Q5_K,
        "q6_k" => Format::Q6_K,
        other => {
            eprintln!("unknown format {other}");
            std::process::exit(2);
        }
    };
    let num = |i: usize| -> usize { args[i].parse().expect("a number") };
    let (rows, cols, tokens) = (num(1), num(2), num(3));
    let reps = if args.len() > 4 { num(4) } else { 30 };

    // A fixed xorshift stream: the same matrix in every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let quantize = kernels(format).quantizer().expect("a quantizer");
    let row_bytes = format.row_size(cols).expect("whole blocks");
    let mut data = vec![0u8; rows * row_bytes];
    for dst in data.chunks_mut(row_bytes) {
        let src: Vec<f32> = (0..cols).map(|_| next()).collect();
        quantize(&src, dst).expect("quantize");
    }
    let w = QMatrix::new(format, rows, cols, &data).expect("matrix");
    let x: Vec<f32> = (0..tokens * cols).map(|_| next()).collect();
    let mut out = vec![0.0f32; tokens * rows];
    let mut scratch = MatmulScratch::default();
    let mut times = Vec::with_capacity(reps);
    let mut cpu0 = None;
    for i in 0..reps + 2 {
        if i == 2 {
            cpu0 = cpu_ms();
        }
        let t0 = Instant::now();
        matmul(&w, &x, tokens, &mut out, &mut scratch).expect("matmul");
        times.push(t0.elapsed().as_secs_f64());
    }
    let cpu = cpu0.zip(cpu_ms()).map(|(a, b)| (b - a) / reps as f64);
    times.drain(..2);
    times.sort_by(f64::total_cmp);
    let (min, med) = (times[0], times[times.len() / 2]);
    let flops = 2.0 * rows as f64 * cols as f64 * tokens as f64;
    println!(
        "{format} {rows}x{cols} x {tokens} tokens: min {:.3} ms, median {:.3} ms, CPU time {} ms per call, {:.1} GFLOP/s at the min, {:.2} GB/s of weights at the min (checksum {:.4})",
        min * 1e3,
        med * 1e3,
        cpu.map_or("?".to_string(), |c| format!("{c:.3}")),
        flops / min / 1e9,
        data.len() as f64 / min / 1e9,
        out.iter().map(|v| *v as f64).sum::<f64>()
    );
}

/// User plus system CPU time of this process so far, in ms (Linux:
/// `/proc/self/stat`, in clock ticks of 10 ms), or `None` elsewhere. On a
/// shared machine it shows the work done, whether or not the threads had to
/// wait for a core; it does include time stalled on memory.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}
