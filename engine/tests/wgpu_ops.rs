//! The WebGPU backend's own tests: every WGSL file validated by naga, and
//! what only this backend has (weights and outputs split to fit the
//! adapter's binding limit, a typed error for a Q8_0 cache). Every op
//! against the CPU backend, on each matmul kernel and f16 path, is the
//! conformance suite's (`conformance_wgpu.rs`).
//!
//! Thresholds: matmul 5e-4 (against the dequantized f32 product in f64),
//! embed 1e-6.
//!
//! Runs on any adapter: in CI, Mesa's lavapipe. Without an adapter the
//! tests fail under CI and are skipped elsewhere.

#![cfg(feature = "wgpu")]

mod conformance;

use std::sync::OnceLock;

use conformance::{download, product, random_matrix};
use hearth::backend::wgpu::{shaders, MatmulKernel, Wgpu};
use hearth::backend::{Backend, CacheSpec, KvType};
use hearth_kernels::quant::Format;
use hearth_testkit::{as_f64, nmse, Rng};

fn gpu() -> Option<&'static Wgpu> {
    static GPU: OnceLock<Result<Wgpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Wgpu::new().map_err(|e| e.to_string())) {
        Ok(g) => Some(g),
        Err(e) => hearth_tests::missing_gpu(e),
    }
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
    // The host tiles tokens and rows as the matmul kernels do.
    for (src, tokens) in [
        (shaders::MATMUL, shaders::MATMUL_TOKENS),
        (shaders::MATMUL_ROWS, shaders::ROWS_TOKENS),
        (shaders::MATMUL_SUBGROUP, shaders::MATMUL_TOKENS),
    ] {
        let tn = format!("const TN: u32 = {tokens}u;");
        assert!(
            src.contains(&tn),
            "a matmul kernel's TN differs from the host's tile"
        );
    }
    let rn = format!("const RN: u32 = {}u;", shaders::ROWS_PER_THREAD);
    assert!(
        shaders::MATMUL_ROWS.contains(&rn),
        "matmul_rows.wgsl's RN differs from ROWS_PER_THREAD"
    );
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

/// A matrix split into row parts, and an output split into token ranges,
/// as the 178 MB output matrix is on an adapter with 128 MiB bindings.
#[test]
fn matmul_over_split_weights_and_outputs_matches() {
    if gpu().is_none() {
        return;
    }
    // The input (19 x 256 f32, 19 KiB) fits one binding; the weights and
    // the output do not.
    let mut rng = Rng::new(7);
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
        let xs = rng.vec(n_tok * cols, -1.0, 1.0);
        let x = g.tensor_from(n_tok, cols, &xs).unwrap();
        let mut out = g.new_tensor();
        g.matmul(&w, &x, &mut out).unwrap();
        let got = download(&g, &out);
        let e = nmse(&got, &product(&deq, &xs, rows, cols, n_tok)).sqrt();
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
        let e = nmse(&download(&g, &emb), &as_f64(&want)).sqrt();
        eprintln!("normalized error {e:.2e} (line {})", line!());
        assert!(e <= OP_MAX, "{format:?} split embed: error {e:e}");
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
