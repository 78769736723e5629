//! The op tier for every backend, on the pattern of ggml's
//! `test-backend-ops`: each op of [`Backend`] on random inputs with awkward
//! shapes (widths and token counts that are not multiples of a block or a
//! tile, one-row tensors, GQA, rings that wrap), against a reference, by
//! normalized error `|got - want| / |want|` (L2 norms, [`hearth_testkit::nmse`]).
//!
//! A backend joins with one line in its own test file,
//! `backend_conformance!(backend(), tolerances())`, which writes one test per
//! op (`conformance_cpu.rs`, `conformance_wgpu.rs`). Each entry file states
//! its thresholds ([`Tolerances`]) and the errors measured against them.
//!
//! The references:
//! - matmul and embed: the weights' dequantized f32 values (the scalar
//!   dequantizers of `hearth-kernels`), the product in f64. Not the CPU
//!   backend's matmul: it rounds activations to 8 bits, so its own error
//!   is ~1e-3.
//! - every other op: the CPU backend ([`Oracle::Cpu`]: a backend that does
//!   the same f32 arithmetic is held to 1e-6), or plain f64 code
//!   ([`Oracle::Scalar`]: how the CPU backend itself is judged). The f64
//!   attention keeps every position of every sequence and rounds keys and
//!   values as the cache type does (f16, Q8_0 blocks), so a ring that drops
//!   a position still in the window shows as an error.
//! - `select_rows`, `write` and `read`: exact.
//!
//! Each op prints its largest error; `CONFORMANCE_VERBOSE=1` prints every
//! case's.
//!
//! Inputs reach the backend as a model's do: weights through a GGUF file (in
//! memory) and [`Backend::load_matrix`] / [`Backend::load_vector`],
//! activations through [`Backend::write`].

#![allow(dead_code)] // each test crate uses part of the suite

use std::sync::Arc;

use half::f16;
use hearth::backend::cpu::{kernel_format, Cpu, CpuTensor, CpuWeight};
use hearth::backend::{AttentionParams, Backend, CacheSpec, KvType, ModelFile, RopeConfig};
use hearth::batch::{Batch, Logits};
use hearth::error::Error;
use hearth_gguf::{GgmlType, Gguf, GgufWriter};
use hearth_kernels::quant::{kernels, Format};
use hearth_testkit::{as_f64, nmse, Rng};

/// What the ops other than matmul and embed are compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// The CPU backend, on the same inputs.
    Cpu,
    /// Plain f64 code.
    Scalar,
}

/// A backend's bounds on normalized error, per op, and what it supports.
#[derive(Clone, Debug)]
pub struct Tolerances {
    pub oracle: Oracle,
    /// Weight formats of `matmul` and `embed` (each needs a quantizer).
    pub formats: Vec<Format>,
    /// Per weight format.
    pub matmul: fn(Format) -> f64,
    /// The matmul reference rounds the activations first, as the weight
    /// format's `vec_dot_type` (the CPU's Q8_0 / Q8_K blocks) holds them:
    /// judged against the unrounded product, a single dot product's
    /// relative error is unbounded when the dot is near 0.
    pub round_activations: bool,
    pub embed: f64,
    /// `rms_norm`, `rms_norm_inplace`, `rms_norm_heads`.
    pub norm: f64,
    pub rope: f64,
    /// `gelu_mul`, `silu_mul`.
    pub glu: f64,
    /// `add`, `add_bias`.
    pub add: f64,
    /// KV cache types the backend keeps, each with its attention bound.
    pub attention: Vec<(KvType, f64)>,
}

/// One `#[test]` per op for `$backend` (an `Option<&B>`; `None` skips) held
/// to `$tol` (a [`Tolerances`]).
#[macro_export]
macro_rules! backend_conformance {
    ($backend:expr, $tol:expr) => {
        #[test]
        fn matmul_matches_the_dequantized_product_for_every_format() {
            if let Some(b) = $backend {
                conformance::matmul(b, &$tol);
            }
        }
        #[test]
        fn embed_matches_the_dequantized_rows_for_every_format() {
            if let Some(b) = $backend {
                conformance::embed(b, &$tol);
            }
        }
        #[test]
        fn norms_match_the_reference() {
            if let Some(b) = $backend {
                conformance::norms(b, &$tol);
            }
        }
        #[test]
        fn rope_matches_the_reference() {
            if let Some(b) = $backend {
                conformance::rope(b, &$tol);
            }
        }
        #[test]
        fn elementwise_ops_select_rows_and_read_match_the_reference() {
            if let Some(b) = $backend {
                conformance::elementwise(b, &$tol);
            }
        }
        #[test]
        fn scale_and_softcap_match_the_reference() {
            if let Some(b) = $backend {
                conformance::scale_and_softcap(b, &$tol);
            }
        }
        #[test]
        fn attention_through_the_cache_matches_the_reference() {
            if let Some(b) = $backend {
                conformance::attention(b, &$tol);
            }
        }
        #[test]
        fn bad_attention_spans_and_commits_are_typed_errors() {
            if let Some(b) = $backend {
                conformance::bad_spans(b);
            }
        }
    };
}

/// Checks `got` against `want`; returns the normalized error.
fn check(what: &dyn std::fmt::Display, got: &[f32], want: &[f64], max: f64) -> f64 {
    let e = nmse(got, want).sqrt();
    if std::env::var_os("CONFORMANCE_VERBOSE").is_some() {
        eprintln!("{what}: {e:.2e}");
    }
    assert!(e <= max, "{what}: normalized error {e:e} > {max:e}");
    e
}

fn report(op: &str, worst: f64, max: f64) {
    eprintln!("{op}: largest normalized error {worst:.2e} (bound {max:.0e})");
}

/// Uniform in `[-scale, scale)`.
fn vals(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    rng.vec(n, -scale, scale)
}

pub fn upload<B: Backend>(b: &B, rows: usize, cols: usize, data: &[f32]) -> B::Tensor {
    let mut t = b.new_tensor();
    b.write(&mut t, rows, cols, data).unwrap();
    t
}

pub fn download<B: Backend>(b: &B, t: &B::Tensor) -> Vec<f32> {
    let mut v = Vec::new();
    b.read(t, &mut v).unwrap();
    v
}

/// A GGUF file in memory (an anonymous mapping) holding one tensor.
fn model_file(ggml_type: GgmlType, dims: &[u64], data: Vec<u8>) -> Arc<ModelFile> {
    let bytes = GgufWriter::new()
        .tensor("t", ggml_type, dims, data)
        .to_bytes()
        .unwrap();
    let mut map = memmap2::MmapMut::map_anon(bytes.len()).unwrap();
    map.copy_from_slice(&bytes);
    Arc::new(Gguf::from_bytes(map.make_read_only().unwrap()).unwrap())
}

fn ggml_type(format: Format) -> GgmlType {
    *GgmlType::ALL
        .iter()
        .find(|&&t| kernel_format(t) == Some(format))
        .unwrap_or_else(|| panic!("no GGUF type for {format:?}"))
}

/// `rows x cols` weights in `format`, loaded as a model's are.
pub fn matrix<B: Backend>(
    b: &B,
    format: Format,
    rows: usize,
    cols: usize,
    data: &[u8],
) -> B::Weight {
    let file = model_file(
        ggml_type(format),
        &[cols as u64, rows as u64],
        data.to_vec(),
    );
    b.load_matrix(&file, &file.tensor_infos()[0]).unwrap()
}

/// An f32 weight vector, loaded as a model's norm weights are.
pub fn vector<B: Backend>(b: &B, v: &[f32]) -> B::Weight {
    let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let file = model_file(GgmlType::F32, &[v.len() as u64], data);
    b.load_vector(&file, &file.tensor_infos()[0]).unwrap()
}

/// Random weights of `format`, quantized by the CPU quantizer, and their
/// dequantized f32 values.
pub fn random_matrix(
    rng: &mut Rng,
    format: Format,
    rows: usize,
    cols: usize,
) -> (Vec<u8>, Vec<f32>) {
    let k = kernels(format);
    let row_bytes = cols / format.block_size() * format.type_size();
    let mut bytes = vec![0u8; rows * row_bytes];
    let mut deq = vec![0f32; rows * cols];
    for r in 0..rows {
        let src = vals(rng, cols, 1.0);
        let b = &mut bytes[r * row_bytes..(r + 1) * row_bytes];
        (k.quantize_row.expect("a quantizer"))(&src, b).unwrap();
        (k.dequantize_row)(b, &mut deq[r * cols..(r + 1) * cols]).unwrap();
    }
    (bytes, deq)
}

/// Rows of `cols` values of `x` quantized to `format` and back.
fn round_as(format: Format, x: &[f32], cols: usize) -> Vec<f32> {
    let k = kernels(format);
    let mut bytes = vec![0u8; cols / format.block_size() * format.type_size()];
    let mut out = vec![0f32; x.len()];
    for (xr, or) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        (k.quantize_row.expect("an activation quantizer"))(xr, &mut bytes).unwrap();
        (k.dequantize_row)(&bytes, or).unwrap();
    }
    out
}

/// `x (n_tok x cols) . w^T (rows x cols)` in f64.
pub fn product(deq: &[f32], xs: &[f32], rows: usize, cols: usize, n_tok: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n_tok * rows);
    for t in 0..n_tok {
        let x = &xs[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let w = &deq[r * cols..(r + 1) * cols];
            out.push(
                w.iter()
                    .zip(x)
                    .map(|(&w, &x)| f64::from(w) * f64::from(x))
                    .sum(),
            );
        }
    }
    out
}

/// `(rows, blocks, tokens)`: one of everything, rows and tokens past a
/// tile, 33 tokens (a tile of 32 plus one), and a tall thin matrix.
const MATMUL_SHAPES: [(usize, usize, usize); 5] =
    [(1, 1, 1), (33, 3, 2), (100, 2, 7), (67, 5, 33), (300, 1, 9)];

/// Columns of a matrix of `blocks` blocks (at least 32 values each, which
/// GPU kernels read in chunks of).
fn cols_of(format: Format, blocks: usize) -> usize {
    blocks * format.block_size().max(32)
}

pub fn matmul<B: Backend>(b: &B, tol: &Tolerances) {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for &format in &tol.formats {
        let (max, mut worst) = ((tol.matmul)(format), 0f64);
        for (rows, blocks, n_tok) in MATMUL_SHAPES {
            let cols = cols_of(format, blocks);
            let (bytes, deq) = random_matrix(&mut rng, format, rows, cols);
            let w = matrix(b, format, rows, cols, &bytes);
            let xs = vals(&mut rng, n_tok * cols, 1.0);
            let mut out = b.new_tensor();
            b.matmul(&w, &upload(b, n_tok, cols, &xs), &mut out)
                .unwrap();
            let xr = if tol.round_activations {
                round_as(kernels(format).vec_dot_type, &xs, cols)
            } else {
                xs.clone()
            };
            let what = format!(
                "{} matmul {format:?} {rows}x{cols}, {n_tok} tokens",
                b.name()
            );
            let e = check(
                &what,
                &download(b, &out),
                &product(&deq, &xr, rows, cols, n_tok),
                max,
            );
            worst = worst.max(e);
        }
        report(&format!("matmul {format:?}"), worst, max);
        // A width that does not match the weights is refused.
        let (rows, cols) = (3, cols_of(format, 1));
        let (bytes, _) = random_matrix(&mut rng, format, rows, cols);
        let w = matrix(b, format, rows, cols, &bytes);
        let x = upload(b, 1, cols + 32, &vec![0.5; cols + 32]);
        assert!(
            b.matmul(&w, &x, &mut b.new_tensor()).is_err(),
            "{format:?}: width"
        );
    }
}

pub fn embed<B: Backend>(b: &B, tol: &Tolerances) {
    let mut rng = Rng::new(11);
    let mut worst = 0f64;
    for &format in &tol.formats {
        let (rows, cols) = (37, cols_of(format, 2));
        let (bytes, deq) = random_matrix(&mut rng, format, rows, cols);
        let w = matrix(b, format, rows, cols, &bytes);
        for (ids, scale) in [(&[5u32, 0, 36, 5, 17, 1, 2][..], 1.75f32), (&[36], 1.0)] {
            let mut out = b.new_tensor();
            b.embed(&w, ids, scale, &mut out).unwrap();
            let want: Vec<f64> = ids
                .iter()
                .flat_map(|&id| {
                    deq[id as usize * cols..(id as usize + 1) * cols]
                        .iter()
                        .map(move |&v| f64::from(v) * f64::from(scale))
                })
                .collect();
            let what = format!("{} embed {format:?} {ids:?} x {scale}", b.name());
            worst = worst.max(check(&what, &download(b, &out), &want, tol.embed));
        }
        let err = b.embed(&w, &[3, 37], 1.0, &mut b.new_tensor());
        assert!(
            matches!(
                err,
                Err(hearth::Error::TokenOutOfVocabulary {
                    id: 37,
                    n_vocab: 37
                })
            ),
            "{format:?}: an id outside the vocabulary must be an error naming it: {err:?}"
        );
    }
    report("embed", worst, tol.embed);
}

fn cpu_t(rows: usize, cols: usize, data: &[f32]) -> CpuTensor {
    CpuTensor::from_rows(rows, cols, data.to_vec())
}

/// RMSNorm of each `w.len()` values of `x`, times `w`, in f64.
fn rms_norm_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    x.chunks(w.len())
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / row.len() as f64;
            let r = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &w)| f64::from(v) * r * f64::from(w))
        })
        .collect()
}

pub fn norms<B: Backend>(b: &B, tol: &Tolerances) {
    let cpu = Cpu::new();
    let mut rng = Rng::new(3);
    let mut worst = 0f64;
    for (rows, cols, head) in [(1, 640, 64), (7, 100, 25), (33, 256, 256), (2, 1030, 103)] {
        let xs = vals(&mut rng, rows * cols, 3.0);
        let wv = vals(&mut rng, cols, 1.0);
        let hv = vals(&mut rng, head, 1.0);
        let (w, h) = (vector(b, &wv), vector(b, &hv));
        let (wc, hc) = (CpuWeight::Vector(wv.clone()), CpuWeight::Vector(hv.clone()));
        let x = upload(b, rows, cols, &xs);

        let mut out = b.new_tensor();
        b.rms_norm(&x, &w, 1e-6, &mut out).unwrap();
        let want = match tol.oracle {
            Oracle::Cpu => {
                let mut o = cpu.new_tensor();
                cpu.rms_norm(&cpu_t(rows, cols, &xs), &wc, 1e-6, &mut o)
                    .unwrap();
                as_f64(&o.data)
            }
            Oracle::Scalar => rms_norm_ref(&xs, &wv, 1e-6),
        };
        let what = format!("{} rms_norm {rows}x{cols}", b.name());
        worst = worst.max(check(&what, &download(b, &out), &want, tol.norm));
        assert_eq!(download(b, &x), xs, "rms_norm must not touch its input");

        let mut xi = upload(b, rows, cols, &xs);
        b.rms_norm_inplace(&mut xi, &w, 1e-5).unwrap();
        let want = match tol.oracle {
            Oracle::Cpu => {
                let mut o = cpu_t(rows, cols, &xs);
                cpu.rms_norm_inplace(&mut o, &wc, 1e-5).unwrap();
                as_f64(&o.data)
            }
            Oracle::Scalar => rms_norm_ref(&xs, &wv, 1e-5),
        };
        let what = format!("{} rms_norm_inplace {rows}x{cols}", b.name());
        worst = worst.max(check(&what, &download(b, &xi), &want, tol.norm));

        let mut xh = upload(b, rows, cols, &xs);
        b.rms_norm_heads(&mut xh, &h, 1e-6).unwrap();
        let want = match tol.oracle {
            Oracle::Cpu => {
                let mut o = cpu_t(rows, cols, &xs);
                cpu.rms_norm_heads(&mut o, &hc, 1e-6).unwrap();
                as_f64(&o.data)
            }
            Oracle::Scalar => rms_norm_ref(&xs, &hv, 1e-6),
        };
        let what = format!("{} rms_norm_heads {rows}x{cols}/{head}", b.name());
        worst = worst.max(check(&what, &download(b, &xh), &want, tol.norm));

        // Widths that do not match the weights are refused.
        let bad = vector(b, &vals(&mut rng, head + 1, 1.0));
        assert!(
            b.rms_norm_heads(&mut xh, &bad, 1e-6).is_err(),
            "heads of {}",
            head + 1
        );
        assert!(b.rms_norm(&x, &h, 1e-6, &mut out).is_err() || head == cols);
    }
    report(
        "rms_norm, rms_norm_inplace, rms_norm_heads",
        worst,
        tol.norm,
    );
}

/// RoPE of each head of each row in f64 (see `hearth_kernels::ops::rope`).
fn rope_ref(cfg: &RopeConfig, x: &[f32], n_heads: usize, positions: &[i32]) -> Vec<f64> {
    let mut out = as_f64(x);
    let (hd, half) = (cfg.head_dim, cfg.n_rot / 2);
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..n_heads {
            let head = &mut out[(t * n_heads + h) * hd..][..hd];
            for i in 0..half {
                let inv = f64::from(cfg.freq_base).powf(-2.0 * i as f64 / cfg.n_rot as f64);
                let theta = f64::from(pos) * f64::from(cfg.freq_scale) * inv;
                let (s, c) = theta.sin_cos();
                let (i0, i1) = if cfg.neox {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (head[i0], head[i1]);
                head[i0] = x0 * c - x1 * s;
                head[i1] = x0 * s + x1 * c;
            }
        }
    }
    out
}

pub fn rope<B: Backend>(b: &B, tol: &Tolerances) {
    let cpu = Cpu::new();
    let mut rng = Rng::new(5);
    let mut worst = 0f64;
    for neox in [true, false] {
        // Full rotation, partial (n_rot < head_dim) with linear scaling, a
        // head of 6.
        for (head_dim, n_rot, n_heads, base, scale) in [
            (256, 256, 4, 1e6, 1.0),
            (64, 32, 3, 10_000.0, 0.5),
            (6, 6, 1, 500.0, 1.0),
        ] {
            let cfg = RopeConfig {
                head_dim,
                n_rot,
                freq_base: base,
                freq_scale: scale,
                neox,
            };
            let r = b.rope(&cfg).unwrap();
            for positions in [
                vec![0],
                vec![5, 6],
                (1000..1033).collect::<Vec<i32>>(),
                vec![70_000, 3, 9],
            ] {
                let n = positions.len();
                let cols = n_heads * head_dim;
                let xs = vals(&mut rng, n * cols, 2.0);
                let mut x = upload(b, n, cols, &xs);
                b.apply_rope(&mut x, &r, n_heads, &positions).unwrap();
                let want = match tol.oracle {
                    Oracle::Cpu => {
                        let mut o = cpu_t(n, cols, &xs);
                        cpu.apply_rope(&mut o, &cpu.rope(&cfg).unwrap(), n_heads, &positions)
                            .unwrap();
                        as_f64(&o.data)
                    }
                    Oracle::Scalar => rope_ref(&cfg, &xs, n_heads, &positions),
                };
                let what = format!("{} rope {cfg:?} at {positions:?}", b.name());
                worst = worst.max(check(&what, &download(b, &x), &want, tol.rope));
                // One position per row.
                assert!(b.apply_rope(&mut x, &r, n_heads, &[1; 40]).is_err());
            }
        }
    }
    report("apply_rope", worst, tol.rope);
}

/// `scale` (Granite's multipliers) and `softcap` (Gemma 2's final logits)
/// against f64, on caps that bite (values up to 4x the cap) and shapes
/// that keep.
pub fn scale_and_softcap<B: Backend>(b: &B, tol: &Tolerances) {
    let mut rng = Rng::new(17);
    let (mut worst_scale, mut worst_cap) = (0f64, 0f64);
    for (rows, cols) in [(1, 1), (3, 7), (5, 320)] {
        let a = vals(&mut rng, rows * cols, 12.0);
        for s in [0.5f32, -3.0, 0.125] {
            let mut t = upload(b, rows, cols, &a);
            b.scale(&mut t, s).unwrap();
            let want: Vec<f64> = a.iter().map(|&x| f64::from(x) * f64::from(s)).collect();
            let what = format!("{} scale {s} {rows}x{cols}", b.name());
            worst_scale = worst_scale.max(check(&what, &download(b, &t), &want, tol.add));
            let mut back = Vec::new();
            assert_eq!(b.read(&t, &mut back).unwrap(), (rows, cols), "{what}");
        }
        for cap in [3.0f32, 30.0] {
            let mut t = upload(b, rows, cols, &a);
            b.softcap(&mut t, cap).unwrap();
            let c = f64::from(cap);
            let want: Vec<f64> = a.iter().map(|&x| c * (f64::from(x) / c).tanh()).collect();
            let what = format!("{} softcap {cap} {rows}x{cols}", b.name());
            let got = download(b, &t);
            assert!(got.iter().all(|v| v.abs() <= cap), "{what}: beyond the cap");
            worst_cap = worst_cap.max(check(&what, &got, &want, tol.glu));
        }
    }
    report("scale", worst_scale, tol.add);
    report("softcap", worst_cap, tol.glu);
}

fn gelu_ref(a: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * a * (1.0 + (c * a * (1.0 + 0.044715 * a * a)).tanh())
}

fn silu_ref(a: f64) -> f64 {
    a / (1.0 + (-a).exp())
}

pub fn elementwise<B: Backend>(b: &B, tol: &Tolerances) {
    let cpu = Cpu::new();
    let mut rng = Rng::new(13);
    let (mut worst_glu, mut worst_add) = (0f64, 0f64);
    for (rows, cols) in [(1, 1), (3, 7), (33, 2048), (7, 65)] {
        let (a, bv) = (
            vals(&mut rng, rows * cols, 6.0),
            vals(&mut rng, rows * cols, 2.0),
        );
        let bt = upload(b, rows, cols, &bv);
        for op in ["gelu_mul", "silu_mul", "add"] {
            let mut at = upload(b, rows, cols, &a);
            match op {
                "gelu_mul" => b.gelu_mul(&mut at, &bt),
                "silu_mul" => b.silu_mul(&mut at, &bt),
                _ => b.add(&mut at, &bt),
            }
            .unwrap();
            let want = match tol.oracle {
                Oracle::Cpu => {
                    let (mut ac, bc) = (cpu_t(rows, cols, &a), cpu_t(rows, cols, &bv));
                    match op {
                        "gelu_mul" => cpu.gelu_mul(&mut ac, &bc),
                        "silu_mul" => cpu.silu_mul(&mut ac, &bc),
                        _ => cpu.add(&mut ac, &bc),
                    }
                    .unwrap();
                    as_f64(&ac.data)
                }
                Oracle::Scalar => a
                    .iter()
                    .zip(&bv)
                    .map(|(&x, &y)| {
                        let (x, y) = (f64::from(x), f64::from(y));
                        match op {
                            "gelu_mul" => gelu_ref(x) * y,
                            "silu_mul" => silu_ref(x) * y,
                            _ => x + y,
                        }
                    })
                    .collect(),
            };
            let (max, worst) = if op == "add" {
                (tol.add, &mut worst_add)
            } else {
                (tol.glu, &mut worst_glu)
            };
            let what = format!("{} {op} {rows}x{cols}", b.name());
            *worst = worst.max(check(&what, &download(b, &at), &want, max));
        }
        // Operands of different sizes are refused.
        let mut at = upload(b, rows, cols, &a);
        let short = upload(b, 1, 1, &[1.0]);
        if rows * cols != 1 {
            assert!(b.add(&mut at, &short).is_err(), "add {rows}x{cols} + 1x1");
            assert!(
                b.gelu_mul(&mut at, &short).is_err(),
                "gelu_mul {rows}x{cols}"
            );
            assert!(
                b.silu_mul(&mut at, &short).is_err(),
                "silu_mul {rows}x{cols}"
            );
        }

        let bias = vals(&mut rng, cols, 1.0);
        let mut at = upload(b, rows, cols, &a);
        b.add_bias(&mut at, &vector(b, &bias)).unwrap();
        let want: Vec<f64> = match tol.oracle {
            Oracle::Cpu => {
                let mut ac = cpu_t(rows, cols, &a);
                cpu.add_bias(&mut ac, &CpuWeight::Vector(bias.clone()))
                    .unwrap();
                as_f64(&ac.data)
            }
            Oracle::Scalar => a
                .iter()
                .enumerate()
                .map(|(i, &x)| f64::from(x) + f64::from(bias[i % cols]))
                .collect(),
        };
        let what = format!("{} add_bias {rows}x{cols}", b.name());
        worst_add = worst_add.max(check(&what, &download(b, &at), &want, tol.add));

        // write and read are exact and keep the shape.
        let x = upload(b, rows, cols, &a);
        let mut back = Vec::new();
        assert_eq!(b.read(&x, &mut back).unwrap(), (rows, cols));
        assert_eq!(back, a, "read after write {rows}x{cols}");
        assert!(b.write(&mut b.new_tensor(), rows, cols + 1, &a).is_err());

        // select_rows copies rows exactly, repeats and reorders included.
        let pick = [rows - 1, 0, rows / 2, rows - 1];
        let mut out = b.new_tensor();
        b.select_rows(&x, &pick, &mut out).unwrap();
        let want: Vec<f32> = pick
            .iter()
            .flat_map(|&r| a[r * cols..(r + 1) * cols].iter().copied())
            .collect();
        let mut got = Vec::new();
        assert_eq!(b.read(&out, &mut got).unwrap(), (pick.len(), cols));
        assert_eq!(got, want, "select_rows {pick:?} of {rows}x{cols}");
        assert!(b.select_rows(&out, &[4], &mut b.new_tensor()).is_err());
    }
    report("gelu_mul, silu_mul", worst_glu, tol.glu);
    report("add, add_bias", worst_add, tol.add);
}

/// A position's key and value rows, as the cache holds them.
type KvRow = (Vec<f64>, Vec<f64>);

/// The f64 attention: every key and value row of each (sequence, layer) by
/// position, rounded as the cache type stores it.
struct ScalarKv {
    kv_type: KvType,
    /// `[seq][layer][pos]`.
    rows: Vec<Vec<Vec<Option<KvRow>>>>,
}

impl ScalarKv {
    fn round(&self, x: &[f32]) -> Vec<f64> {
        match self.kv_type {
            KvType::F32 => as_f64(x),
            KvType::F16 => x
                .iter()
                .map(|&v| f64::from(f16::from_f32(v).to_f32()))
                .collect(),
            KvType::Q8_0 => {
                let k = kernels(Format::Q8_0);
                let mut bytes = vec![0u8; x.len() / 32 * Format::Q8_0.type_size()];
                (k.quantize_row.unwrap())(x, &mut bytes).unwrap();
                let mut y = vec![0f32; x.len()];
                (k.dequantize_row)(&bytes, &mut y).unwrap();
                as_f64(&y)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        layer: usize,
        batch: &Batch,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        p: &AttentionParams,
    ) -> Vec<f64> {
        let (hd, kd) = (p.head_dim, p.n_head_kv * p.head_dim);
        let qd = p.n_head * hd;
        let group = p.n_head / p.n_head_kv;
        let mut out = vec![0f64; batch.len() * qd];
        for s in batch.spans() {
            for i in 0..s.len {
                let (row, pos) = (s.start + i, s.pos0 + i);
                let kv = (
                    self.round(&k[row * kd..(row + 1) * kd]),
                    self.round(&v[row * kd..(row + 1) * kd]),
                );
                let hist = &mut self.rows[s.seq][layer];
                if hist.len() <= pos {
                    hist.resize(pos + 1, None);
                }
                hist[pos] = Some(kv);
            }
            let hist = &self.rows[s.seq][layer];
            for i in 0..s.len {
                let (row, qp) = (s.start + i, (s.pos0 + i) as i32);
                for h in 0..p.n_head {
                    let qh = &q[row * qd + h * hd..][..hd];
                    let kh = (h / group) * hd;
                    let seen: Vec<(f64, &[f64])> = hist
                        .iter()
                        .enumerate()
                        .filter_map(|(pk, kv)| {
                            let (kr, vr) = kv.as_ref()?;
                            p.visible(qp, pk as i32).then(|| {
                                let dot: f64 = qh
                                    .iter()
                                    .zip(&kr[kh..kh + hd])
                                    .map(|(&a, &b)| f64::from(a) * b)
                                    .sum();
                                let mut s = dot * f64::from(p.scale);
                                if let Some(cap) = p.softcap {
                                    let cap = f64::from(cap);
                                    s = cap * (s / cap).tanh();
                                }
                                (s, &vr[kh..kh + hd])
                            })
                        })
                        .collect();
                    let m = seen.iter().map(|e| e.0).fold(f64::NEG_INFINITY, f64::max);
                    let l: f64 = seen.iter().map(|e| (e.0 - m).exp()).sum();
                    let o = &mut out[row * qd + h * hd..][..hd];
                    for (s, vr) in &seen {
                        let w = (s - m).exp() / l;
                        o.iter_mut().zip(*vr).for_each(|(o, &v)| *o += w * v);
                    }
                }
            }
        }
        out
    }

    fn clear_seq(&mut self, seq: usize) {
        self.rows[seq].iter_mut().for_each(Vec::clear);
    }
}

/// The reference side of an attention run.
enum AttnRef {
    Cpu(Cpu, Box<<Cpu as Backend>::Cache>),
    Scalar(ScalarKv),
}

impl AttnRef {
    fn new(oracle: Oracle, spec: &CacheSpec) -> AttnRef {
        match oracle {
            Oracle::Cpu => {
                let cpu = Cpu::new();
                let cache = Box::new(cpu.new_cache(spec).unwrap());
                AttnRef::Cpu(cpu, cache)
            }
            Oracle::Scalar => AttnRef::Scalar(ScalarKv {
                kv_type: spec.kv_type,
                rows: vec![vec![Vec::new(); spec.n_layer]; spec.n_seq],
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        layer: usize,
        batch: &Batch,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        p: &AttentionParams,
    ) -> Vec<f64> {
        let n = batch.len();
        match self {
            AttnRef::Cpu(cpu, cache) => {
                let mut o = cpu.new_tensor();
                let kd = k.len() / n;
                cpu.attention(
                    cache,
                    layer,
                    batch,
                    &cpu_t(n, q.len() / n, q),
                    &cpu_t(n, kd, k),
                    &cpu_t(n, kd, v),
                    p,
                    &mut o,
                )
                .unwrap();
                as_f64(&o.data)
            }
            AttnRef::Scalar(s) => s.attention(layer, batch, q, k, v, p),
        }
    }

    fn commit(&mut self, batch: &Batch) {
        if let AttnRef::Cpu(cpu, cache) = self {
            cpu.commit(cache, batch).unwrap();
        }
    }

    fn clear_seq(&mut self, seq: usize) {
        match self {
            AttnRef::Cpu(cpu, cache) => cpu.clear_seq(cache, seq).unwrap(),
            AttnRef::Scalar(s) => s.clear_seq(seq),
        }
    }
}

/// `(n_head, n_head_kv, head_dim)`: GQA 2:1 with heads of 64, 2:1 with
/// heads of 32, and 5:1 with heads of 40 (not a whole Q8_0 block: f32 and
/// f16 caches only).
const ATTENTION_SHAPES: [(usize, usize, usize); 3] = [(4, 2, 64), (6, 3, 32), (5, 1, 40)];

/// `(window of layer 0, soft-cap)`: layer 1 is always global.
const ATTENTION_VARIANTS: [(Option<usize>, Option<f32>); 4] = [
    (None, None),
    (Some(7), Some(2.0)),
    (Some(6), None),
    (None, Some(3.0)),
];

pub fn attention<B: Backend>(b: &B, tol: &Tolerances) {
    for &(kv_type, max) in &tol.attention {
        let mut worst = 0f64;
        for shape in ATTENTION_SHAPES {
            if kv_type == KvType::Q8_0 && !shape.2.is_multiple_of(32) {
                continue;
            }
            for (window, softcap) in ATTENTION_VARIANTS {
                worst = worst.max(attention_case(
                    b, tol.oracle, kv_type, shape, window, softcap, max,
                ));
            }
        }
        report(&format!("attention, {kv_type:?} cache"), worst, max);
    }
}

/// Batches of two sequences through a cache of two layers (layer 0
/// windowed or not, layer 1 global): prefill in chunks, then decode, one
/// sequence cut back to a shorter history, the other cleared and started
/// over; outputs compared after every batch and layer. Returns the largest
/// normalized error.
pub fn attention_case<B: Backend>(
    b: &B,
    oracle: Oracle,
    kv_type: KvType,
    (n_head, n_head_kv, head_dim): (usize, usize, usize),
    window: Option<usize>,
    softcap: Option<f32>,
    max: f64,
) -> f64 {
    let mut rng = Rng::new(17);
    let kv_dim = n_head_kv * head_dim;
    let qd = n_head * head_dim;
    let spec = CacheSpec {
        n_layer: 2,
        n_seq: 2,
        n_ctx: 40,
        kv_dim,
        kv_type,
        windows: vec![window, None],
        n_batch: 5,
    };
    let mut cache = b.new_cache(&spec).unwrap();
    let mut want = AttnRef::new(oracle, &spec);
    let mut p = AttentionParams::new(n_head, n_head_kv, head_dim);
    p.softcap = softcap;
    // (seq 0 tokens, seq 1 tokens) per step; 0 leaves a sequence out.
    let steps = [
        (5, 3),
        (5, 1),
        (1, 5),
        (4, 4),
        (1, 1),
        (5, 2),
        (3, 5),
        (1, 1),
        (5, 5),
        // After sequence 0 is cut back and sequence 1 cleared:
        (2, 3),
        (0, 5),
        (1, 1),
        (3, 0),
    ];
    let mut pos = [0usize; 2];
    let mut worst = 0f64;
    for (step, &(n0, n1)) in steps.iter().enumerate() {
        if step == 9 {
            let keep = pos[0] - 3;
            assert_eq!(
                spec.reusable_prefix(pos[0], keep),
                keep,
                "the cut keeps the window"
            );
            pos[0] = keep;
            b.clear_seq(&mut cache, 1).unwrap();
            want.clear_seq(1);
            pos[1] = 0;
        }
        let mut batch = Batch::new();
        for (seq, n) in [(0, n0), (1, n1)] {
            if n > 0 {
                batch
                    .push(seq, pos[seq], &vec![1; n], Logits::None)
                    .unwrap();
            }
        }
        let n = batch.len();
        let q = vals(&mut rng, n * qd, 1.0);
        let k = vals(&mut rng, n * kv_dim, 1.0);
        let v = vals(&mut rng, n * kv_dim, 1.0);
        let (qt, kt, vt) = (
            upload(b, n, qd, &q),
            upload(b, n, kv_dim, &k),
            upload(b, n, kv_dim, &v),
        );
        for layer in 0..2 {
            p.window = spec.windows[layer];
            let mut out = b.new_tensor();
            b.attention(&mut cache, layer, &batch, &qt, &kt, &vt, &p, &mut out)
                .unwrap();
            let what = format!(
                "{} attention {kv_type:?} heads {n_head}/{n_head_kv}x{head_dim} window {window:?} cap {softcap:?}, step {step} layer {layer}",
                b.name()
            );
            let w = want.attention(layer, &batch, &q, &k, &v, &p);
            worst = worst.max(check(&what, &download(b, &out), &w, max));
        }
        b.commit(&mut cache, &batch).unwrap();
        want.commit(&batch);
        pos[0] += n0;
        pos[1] += n1;
    }
    worst
}

/// What every backend's cache refuses, with a typed error and without
/// changing what it holds: a span that skips positions, one past the
/// context, one longer than a batch on a ring, a sequence not in the cache,
/// operands of the wrong number of rows or width, a layer not in the cache;
/// a commit of such a span.
pub fn bad_spans<B: Backend>(b: &B) {
    let (n_head, n_head_kv, head_dim) = (2, 1, 32);
    let spec = CacheSpec {
        n_layer: 2,
        n_seq: 2,
        n_ctx: 12,
        kv_dim: 32,
        kv_type: KvType::F32,
        windows: vec![Some(4), None],
        n_batch: 3,
    };
    let mut cache = b.new_cache(&spec).unwrap();
    let mut p = AttentionParams::new(n_head, n_head_kv, head_dim);
    let batch = |spans: &[(usize, usize, usize)]| {
        let mut bt = Batch::new();
        for &(seq, pos0, len) in spans {
            bt.push(seq, pos0, &vec![1; len], Logits::None).unwrap();
        }
        bt
    };
    let mut rng = Rng::new(23);
    let mut run =
        |cache: &mut B::Cache, layer: usize, bt: &Batch, rows: [usize; 3], p: &AttentionParams| {
            let q = upload(b, rows[0], 64, &vals(&mut rng, rows[0] * 64, 1.0));
            let k = upload(b, rows[1], 32, &vals(&mut rng, rows[1] * 32, 1.0));
            let v = upload(b, rows[2], 32, &vals(&mut rng, rows[2] * 32, 1.0));
            let mut out = b.new_tensor();
            b.attention(cache, layer, bt, &q, &k, &v, p, &mut out)
        };
    let first = batch(&[(0, 0, 3)]);
    for layer in 0..2 {
        p.window = spec.windows[layer];
        run(&mut cache, layer, &first, [3; 3], &p).unwrap();
    }
    b.commit(&mut cache, &first).unwrap();
    p.window = None;
    for (what, bt, rows) in [
        ("a gap", batch(&[(0, 4, 1)]), [1; 3]),
        ("past the context", batch(&[(1, 0, 13)]), [13; 3]),
        ("no such sequence", batch(&[(2, 0, 1)]), [1; 3]),
        ("q rows", batch(&[(0, 3, 2)]), [3, 2, 2]),
        ("k rows", batch(&[(0, 3, 2)]), [2, 1, 2]),
        ("v rows", batch(&[(0, 3, 2)]), [2, 2, 3]),
    ] {
        assert!(
            run(&mut cache, 1, &bt, rows, &p).is_err(),
            "{}: {what}",
            b.name()
        );
    }
    assert!(
        matches!(
            run(&mut cache, 1, &batch(&[(1, 0, 13)]), [13; 3], &p),
            Err(Error::ContextOverflow {
                needed: 13,
                n_ctx: 12,
                ..
            })
        ),
        "past the context is a ContextOverflow"
    );
    p.window = Some(4);
    let long = batch(&[(1, 0, 4)]);
    assert!(
        run(&mut cache, 0, &long, [4; 3], &p).is_err(),
        "longer than a batch on a ring"
    );
    assert!(
        run(&mut cache, 2, &first, [3; 3], &p).is_err(),
        "layer 2 of 2"
    );
    p.window = None;
    assert!(
        run(&mut cache, 0, &batch(&[(0, 3, 1)]), [1; 3], &p).is_err(),
        "no window on a ring"
    );
    for bt in [
        batch(&[(0, 4, 1)]),
        batch(&[(1, 0, 13)]),
        batch(&[(2, 0, 1)]),
    ] {
        assert!(
            b.commit(&mut cache, &bt).is_err(),
            "commit {:?}",
            bt.spans()
        );
    }
    assert!(b.clear_seq(&mut cache, 2).is_err());
    // Nothing above changed the cache: sequence 0 continues at 3.
    let next = batch(&[(0, 3, 1)]);
    for layer in 0..2 {
        p.window = spec.windows[layer];
        run(&mut cache, layer, &next, [1; 3], &p).unwrap();
    }
    b.commit(&mut cache, &next).unwrap();
}
