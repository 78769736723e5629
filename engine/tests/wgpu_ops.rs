//! The op tier of the WebGPU backend: every WGSL kernel against the CPU
//! backend (or, for matmul and embed, the scalar dequantizers of
//! `hearth-kernels`) on random inputs with awkward shapes, by normalized
//! error `|got - want| / |want|` (L2 norms).
//!
//! Thresholds: matmul 5e-4, everything else 1e-6. Matmul is held to the
//! dequantized f32 product in f64, not to the CPU backend's matmul, because
//! the CPU rounds activations to 8 bits (its own error is ~1e-3); the GPU
//! keeps them in f32.
//!
//! Runs on any adapter: in CI, Mesa's lavapipe. Without an adapter the
//! tests fail under CI and are skipped elsewhere.

#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use hearth::backend::cpu::{Cpu, CpuTensor, CpuWeight};
use hearth::backend::wgpu::{shaders, MatmulKernel, Wgpu, WgpuTensor};
use hearth::backend::{AttentionParams, Backend, CacheSpec, KvType, RopeConfig};
use hearth::batch::{Batch, Logits};
use hearth_kernels::quant::{kernels, Format};

fn gpu() -> Option<&'static Wgpu> {
    static GPU: OnceLock<Result<Wgpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Wgpu::new().map_err(|e| e.to_string())) {
        Ok(g) => Some(g),
        Err(e) => hearth_tests::missing_gpu(e),
    }
}

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

fn nerr(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let (mut d, mut w) = (0f64, 0f64);
    for (&g, &x) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g}");
        d += (f64::from(g) - f64::from(x)).powi(2);
        w += f64::from(x).powi(2);
    }
    (d / w.max(1e-30)).sqrt()
}

fn read(g: &Wgpu, t: &WgpuTensor) -> Vec<f32> {
    let mut v = Vec::new();
    g.read(t, &mut v).unwrap();
    v
}

const MATMUL_MAX: f64 = 5e-4;
const OP_MAX: f64 = 1e-6;

#[test]
fn every_wgsl_file_is_valid_and_compiled() {
    let modules = shaders::all_modules();
    for (name, src) in &modules {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        // pack2x16float / unpack2x16float are core WGSL; naga files them
        // under this capability, which wgpu grants on Vulkan, Metal and DX12
        // (it lacks it only on some GL ES drivers, which Hearth does not use).
        // SUBGROUP: matmul_subgroup.wgsl, and SHADER_FLOAT16: the `enable
        // f16;` modules (kv_store_f16, attention_f16), each used only where
        // the adapter has the feature.
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default()
                | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
                | naga::valid::Capabilities::SHADER_FLOAT16
                | naga::valid::Capabilities::SUBGROUP,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    }
    // Only the f16 modules need SHADER_FLOAT16: the fallbacks validate
    // without it.
    for (name, src) in &modules {
        let module = naga::front::wgsl::parse_str(src).unwrap();
        let r = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default()
                | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
                | naga::valid::Capabilities::SUBGROUP,
        )
        .validate(&module);
        assert_eq!(
            r.is_err(),
            ["kv_store_f16", "attention_f16"].contains(&name.as_str()),
            "{name}: SHADER_FLOAT16 needed only by the enable-f16 modules"
        );
    }
    // The host tiles tokens as the matmul kernels do.
    for src in [
        shaders::MATMUL,
        shaders::MATMUL_ROWS,
        shaders::MATMUL_SUBGROUP,
    ] {
        let tn = format!("const TN: u32 = {}u;", shaders::MATMUL_TOKENS);
        assert!(
            src.contains(&tn),
            "a matmul kernel's TN differs from MATMUL_TOKENS"
        );
    }
    // Every file under shaders/ is part of a validated module.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders");
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "wgsl") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 20, "found only {} WGSL files", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            modules.iter().any(|(_, src)| src.contains(&text)),
            "{} is in no compiled module",
            f.display()
        );
    }
}

/// Random weights of `format`, quantized by the CPU quantizer, and their
/// dequantized f32 values.
fn random_matrix(rng: &mut Rng, format: Format, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let k = kernels(format);
    let row_bytes = cols / format.block_size() * format.type_size();
    let mut bytes = vec![0u8; rows * row_bytes];
    let mut deq = vec![0f32; rows * cols];
    for r in 0..rows {
        let src = rng.vec(cols, 1.0);
        let b = &mut bytes[r * row_bytes..(r + 1) * row_bytes];
        (k.quantize_row.expect("a quantizer"))(&src, b).unwrap();
        (k.dequantize_row)(b, &mut deq[r * cols..(r + 1) * cols]).unwrap();
    }
    (bytes, deq)
}

fn formats() -> Vec<Format> {
    shaders::FORMATS.iter().map(|f| f.0).collect()
}

#[test]
fn matmul_matches_the_dequantized_product_for_every_format_and_kernel() {
    if gpu().is_none() {
        return;
    }
    for kernel in [
        MatmulKernel::Workgroup,
        MatmulKernel::Rows,
        MatmulKernel::Subgroup,
    ] {
        let g = Wgpu::new().unwrap().with_matmul_kernel(kernel);
        // Subgroup falls back to Workgroup where the adapter has no subgroups.
        matmul_case(&g, g.matmul_kernel());
    }
}

fn matmul_case(g: &Wgpu, kernel: MatmulKernel) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut worst = 0f64;
    for format in formats() {
        let qk = format.block_size();
        for &(rows, blocks, n_tok) in
            &[(1, 1, 1), (33, 3, 2), (100, 2, 7), (67, 5, 33), (300, 1, 9)]
        {
            let cols = blocks * qk.max(32);
            let (bytes, deq) = random_matrix(&mut rng, format, rows, cols);
            let w = g.matrix_from("w", format, rows, cols, &bytes).unwrap();
            let xs = rng.vec(n_tok * cols, 1.0);
            let x = g.tensor_from(n_tok, cols, &xs).unwrap();
            let mut out = g.new_tensor();
            g.matmul(&w, &x, &mut out).unwrap();
            let got = read(g, &out);
            let want: Vec<f32> = (0..n_tok)
                .flat_map(|t| {
                    let (xs, deq) = (&xs, &deq);
                    (0..rows).map(move |r| {
                        (0..cols)
                            .map(|c| f64::from(deq[r * cols + c]) * f64::from(xs[t * cols + c]))
                            .sum::<f64>() as f32
                    })
                })
                .collect();
            let e = nerr(&got, &want);
            eprintln!("normalized error {e:.2e} (line {})", line!());
            assert!(
                e <= MATMUL_MAX,
                "{kernel:?} {format:?} {rows}x{cols}, {n_tok} tokens: error {e:e}"
            );
            worst = worst.max(e);
        }
    }
    eprintln!("matmul ({kernel:?}), all formats: largest normalized error {worst:e}");
}

/// A matrix split into row parts, and an output split into token ranges,
/// as the 178 MB output matrix is on an adapter with 128 MiB bindings.
#[test]
fn matmul_over_split_weights_and_outputs_matches() {
    if gpu().is_none() {
        return;
    }
    // The input (19 x 256 f32, 19 KiB) fits one binding; the weights and
    // the output do not.
    let mut rng = Rng(7);
    for (format, kernel) in [
        (Format::Q8_0, MatmulKernel::Workgroup),
        (Format::Q6_K, MatmulKernel::Rows),
        (Format::F32, MatmulKernel::Workgroup),
        (Format::Q4_K, MatmulKernel::Rows),
        (Format::Q5_0, MatmulKernel::Subgroup),
    ] {
        let g = Wgpu::new()
            .unwrap()
            .with_matmul_kernel(kernel)
            .with_binding_limit(20 << 10);
        let (rows, cols, n_tok) = (301, 256, 19);
        let (bytes, deq) = random_matrix(&mut rng, format, rows, cols);
        let w = g.matrix_from("w", format, rows, cols, &bytes).unwrap();
        let xs = rng.vec(n_tok * cols, 1.0);
        let x = g.tensor_from(n_tok, cols, &xs).unwrap();
        let mut out = g.new_tensor();
        g.matmul(&w, &x, &mut out).unwrap();
        let got = read(&g, &out);
        let mut want = vec![0f32; n_tok * rows];
        for t in 0..n_tok {
            for r in 0..rows {
                want[t * rows + r] = (0..cols)
                    .map(|c| f64::from(deq[r * cols + c]) * f64::from(xs[t * cols + c]))
                    .sum::<f64>() as f32;
            }
        }
        let e = nerr(&got, &want);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= MATMUL_MAX, "{format:?} split: error {e:e}");

        // Embedding rows from several parts.
        let ids = [0u32, 300, 17, 150, 299, 17];
        let mut emb = g.new_tensor();
        g.embed(&w, &ids, 0.5, &mut emb).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                deq[id as usize * cols..(id as usize + 1) * cols]
                    .iter()
                    .map(|v| v * 0.5)
            })
            .collect();
        let e = nerr(&read(&g, &emb), &want);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "{format:?} split embed: error {e:e}");
    }
}

#[test]
fn embed_matches_the_dequantized_rows_for_every_format() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(11);
    for format in formats() {
        let cols = 2 * format.block_size().max(32);
        let rows = 37;
        let (bytes, deq) = random_matrix(&mut rng, format, rows, cols);
        let w = g.matrix_from("w", format, rows, cols, &bytes).unwrap();
        let ids = [5u32, 0, 36, 5, 17, 1, 2];
        let mut out = g.new_tensor();
        g.embed(&w, &ids, 1.75, &mut out).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                deq[id as usize * cols..(id as usize + 1) * cols]
                    .iter()
                    .map(|v| v * 1.75)
            })
            .collect();
        let e = nerr(&read(g, &out), &want);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "{format:?} embed: error {e:e}");
        let err = g.embed(&w, &[3, 37], 1.0, &mut out);
        assert!(
            err.is_err(),
            "an id outside the vocabulary must be an error"
        );
    }
}

fn cpu_t(rows: usize, cols: usize, data: &[f32]) -> CpuTensor {
    CpuTensor::from_rows(rows, cols, data.to_vec())
}

#[test]
fn norms_match_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng(3);
    for &(rows, cols, head) in &[(1, 640, 64), (7, 100, 25), (33, 256, 256), (2, 1030, 103)] {
        let xs = rng.vec(rows * cols, 3.0);
        let wv = rng.vec(cols, 1.0);
        let hv = rng.vec(head, 1.0);
        let (wc, wg) = (CpuWeight::Vector(wv.clone()), g.vector_from(&wv));
        let (hc, hg) = (CpuWeight::Vector(hv.clone()), g.vector_from(&hv));

        let mut oc = cpu.new_tensor();
        cpu.rms_norm(&cpu_t(rows, cols, &xs), &wc, 1e-6, &mut oc)
            .unwrap();
        let x = g.tensor_from(rows, cols, &xs).unwrap();
        let mut og = g.new_tensor();
        g.rms_norm(&x, &wg, 1e-6, &mut og).unwrap();
        let e = nerr(&read(g, &og), &oc.data);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "rms_norm {rows}x{cols}: {e:e}");
        assert_eq!(read(g, &x), xs, "rms_norm must not touch its input");

        let mut xc = cpu_t(rows, cols, &xs);
        cpu.rms_norm_inplace(&mut xc, &wc, 1e-5).unwrap();
        let mut xg = g.tensor_from(rows, cols, &xs).unwrap();
        g.rms_norm_inplace(&mut xg, &wg, 1e-5).unwrap();
        let e = nerr(&read(g, &xg), &xc.data);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "rms_norm_inplace {rows}x{cols}: {e:e}");

        let mut xc = cpu_t(rows, cols, &xs);
        cpu.rms_norm_heads(&mut xc, &hc, 1e-6).unwrap();
        let mut xg = g.tensor_from(rows, cols, &xs).unwrap();
        g.rms_norm_heads(&mut xg, &hg, 1e-6).unwrap();
        let e = nerr(&read(g, &xg), &xc.data);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "rms_norm_heads {rows}x{cols}/{head}: {e:e}");
    }
}

#[test]
fn rope_matches_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng(5);
    for neox in [true, false] {
        for &(head_dim, n_rot, n_heads, base, scale) in &[
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
            for positions in [
                vec![0],
                vec![5, 6],
                (1000..1033).collect::<Vec<i32>>(),
                vec![70_000, 3, 9],
            ] {
                let n = positions.len();
                let cols = n_heads * head_dim;
                let xs = rng.vec(n * cols, 2.0);
                let mut xc = cpu_t(n, cols, &xs);
                cpu.apply_rope(&mut xc, &cpu.rope(&cfg).unwrap(), n_heads, &positions)
                    .unwrap();
                let mut xg = g.tensor_from(n, cols, &xs).unwrap();
                g.apply_rope(&mut xg, &g.rope(&cfg).unwrap(), n_heads, &positions)
                    .unwrap();
                let e = nerr(&read(g, &xg), &xc.data);
                eprintln!("normalized error {e:.2e} (line {})", line!());
                assert!(e <= OP_MAX, "rope {cfg:?} at {positions:?}: {e:e}");
            }
        }
    }
}

#[test]
fn elementwise_ops_and_select_rows_match_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    let cpu = Cpu::new();
    let mut rng = Rng(13);
    for &(rows, cols) in &[(1, 1), (3, 7), (33, 2048), (7, 65)] {
        let (a, b) = (rng.vec(rows * cols, 6.0), rng.vec(rows * cols, 2.0));
        for op in ["gelu", "silu", "add"] {
            let mut ac = cpu_t(rows, cols, &a);
            let bc = cpu_t(rows, cols, &b);
            let mut ag = g.tensor_from(rows, cols, &a).unwrap();
            let bg = g.tensor_from(rows, cols, &b).unwrap();
            match op {
                "gelu" => {
                    cpu.gelu_mul(&mut ac, &bc).unwrap();
                    g.gelu_mul(&mut ag, &bg).unwrap();
                }
                "silu" => {
                    cpu.silu_mul(&mut ac, &bc).unwrap();
                    g.silu_mul(&mut ag, &bg).unwrap();
                }
                _ => {
                    cpu.add(&mut ac, &bc).unwrap();
                    g.add(&mut ag, &bg).unwrap();
                }
            }
            let e = nerr(&read(g, &ag), &ac.data);
            eprintln!("normalized error {e:.2e} (line {})", line!());
            assert!(e <= OP_MAX, "{op} {rows}x{cols}: {e:e}");
        }
        let bias = rng.vec(cols, 1.0);
        let mut ac = cpu_t(rows, cols, &a);
        cpu.add_bias(&mut ac, &CpuWeight::Vector(bias.clone()))
            .unwrap();
        let mut ag = g.tensor_from(rows, cols, &a).unwrap();
        g.add_bias(&mut ag, &g.vector_from(&bias)).unwrap();
        let e = nerr(&read(g, &ag), &ac.data);
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "add_bias {rows}x{cols}: {e:e}");

        let pick: Vec<usize> = [rows - 1, 0, rows / 2, rows - 1].to_vec();
        let mut oc = cpu.new_tensor();
        cpu.select_rows(&cpu_t(rows, cols, &a), &pick, &mut oc)
            .unwrap();
        let mut og = g.new_tensor();
        g.select_rows(&g.tensor_from(rows, cols, &a).unwrap(), &pick, &mut og)
            .unwrap();
        assert_eq!(read(g, &og), oc.data, "select_rows {pick:?}");
        assert!(g.select_rows(&og, &[4], &mut oc_g(g)).is_err());
    }
}

fn oc_g(g: &Wgpu) -> WgpuTensor {
    g.new_tensor()
}

/// Batches of two sequences through both backends' caches: prefill in
/// chunks, then decode, with GQA, a sliding window whose ring wraps, and
/// soft-capping; outputs compared after every batch.
fn attention_case(
    g: &Wgpu,
    kv_type: KvType,
    window: Option<usize>,
    softcap: Option<f32>,
    max: f64,
) {
    let cpu = Cpu::new();
    let mut rng = Rng(17);
    let (n_head, n_head_kv, head_dim) = (4, 2, 64);
    let kv_dim = n_head_kv * head_dim;
    let n_batch = 5;
    let spec = CacheSpec {
        n_layer: 2,
        n_seq: 2,
        n_ctx: 40,
        kv_dim,
        kv_type,
        windows: vec![window, None],
        n_batch,
    };
    let mut cc = cpu.new_cache(&spec).unwrap();
    let mut gc = g.new_cache(&spec).unwrap();
    let mut p = AttentionParams::new(n_head, n_head_kv, head_dim);
    p.softcap = softcap;
    // (seq 0 tokens, seq 1 tokens) per step.
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
    ];
    let mut pos = [0usize; 2];
    for (step, &(n0, n1)) in steps.iter().enumerate() {
        let mut batch = Batch::new();
        batch.push(0, pos[0], &vec![1; n0], Logits::None).unwrap();
        batch.push(1, pos[1], &vec![1; n1], Logits::None).unwrap();
        let n = n0 + n1;
        let q = rng.vec(n * n_head * head_dim, 1.0);
        let k = rng.vec(n * kv_dim, 1.0);
        let v = rng.vec(n * kv_dim, 1.0);
        for layer in 0..2 {
            p.window = spec.windows[layer];
            let mut oc = cpu.new_tensor();
            cpu.attention(
                &mut cc,
                layer,
                &batch,
                &cpu_t(n, n_head * head_dim, &q),
                &cpu_t(n, kv_dim, &k),
                &cpu_t(n, kv_dim, &v),
                &p,
                &mut oc,
            )
            .unwrap();
            let mut og = g.new_tensor();
            g.attention(
                &mut gc,
                layer,
                &batch,
                &g.tensor_from(n, n_head * head_dim, &q).unwrap(),
                &g.tensor_from(n, kv_dim, &k).unwrap(),
                &g.tensor_from(n, kv_dim, &v).unwrap(),
                &p,
                &mut og,
            )
            .unwrap();
            let e = nerr(&read(g, &og), &oc.data);
            eprintln!("normalized error {e:.2e} (line {})", line!());
            assert!(
                e <= max,
                "attention {kv_type:?} (f16 shaders {}) window {window:?} cap {softcap:?}, step {step} layer {layer}: {e:e}",
                g.f16_shaders()
            );
        }
        cpu.commit(&mut cc, &batch).unwrap();
        g.commit(&mut gc, &batch).unwrap();
        pos[0] += n0;
        pos[1] += n1;
    }
    // Starting sequence 1 over: its old positions must be hidden again.
    cpu.clear_seq(&mut cc, 1).unwrap();
    g.clear_seq(&mut gc, 1).unwrap();
}

#[test]
fn attention_matches_the_cpu_backend_f32_cache() {
    let Some(g) = gpu() else { return };
    attention_case(g, KvType::F32, None, None, OP_MAX);
}

#[test]
fn attention_with_a_wrapping_window_ring_and_softcap_matches_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    attention_case(g, KvType::F32, Some(7), Some(2.0), OP_MAX);
}

/// Both backends round keys and values to f16 (round to nearest even);
/// the threshold stays 1e-6 unless the adapter rounds differently. Run
/// with the native f16 kernels (`SHADER_F16` adapters; lavapipe has it)
/// and with the packed-u32 fallback, on the same adapter.
#[test]
fn attention_matches_the_cpu_backend_f16_cache_native_and_packed() {
    if gpu().is_none() {
        return;
    }
    for native in [true, false] {
        let g = Wgpu::new().unwrap().with_f16_shaders(native);
        let has = g.adapter().shader_f16;
        assert_eq!(g.f16_shaders(), native && has, "f16 kernel choice");
        if native && !has {
            eprintln!(
                "{}: no SHADER_F16, the native f16 path is not exercised",
                g.adapter().name
            );
        }
        attention_case(&g, KvType::F16, Some(6), None, OP_MAX);
        attention_case(&g, KvType::F16, None, Some(3.0), OP_MAX);
    }
}

#[test]
fn a_q8_0_kv_cache_is_a_typed_error() {
    let Some(g) = gpu() else { return };
    let spec = CacheSpec {
        n_layer: 1,
        n_seq: 1,
        n_ctx: 8,
        kv_dim: 64,
        kv_type: KvType::Q8_0,
        windows: vec![None],
        n_batch: 8,
    };
    assert!(g.new_cache(&spec).is_err());
}
