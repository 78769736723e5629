//! The `hearth` binary on the WebGPU backend (the library's model tier is
//! `engine/tests/wgpu_model.rs`).

#![cfg(feature = "wgpu")]

use hearth::backend::wgpu::Wgpu;
use serde_json::Value;

#[path = "../../engine/tests/golden_util/mod.rs"]
mod golden_util;
use golden_util::references;

/// `hearth logits --backend wgpu` end to end: the command's JSON for the
/// first golden prompt has llama.cpp's tokens, its top-1 wherever the
/// margin exceeds 1.0, logits within the golden bounds over llama.cpp's
/// top-10, and llama.cpp's first greedy tokens.
#[test]
fn hearth_logits_backend_wgpu_matches_llama_cpp() {
    let Some(refs) = references() else { return };
    let Some(path) = hearth_tests::model_path() else {
        return;
    };
    if let Err(e) = Wgpu::new() {
        hearth_tests::missing_gpu::<()>(&e.to_string());
        return;
    }
    let golden = hearth_tests::golden_dir().unwrap();
    let line = std::fs::read_to_string(golden.join("gemma-3-270m-q4_k_m/reference.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let reference: Value = serde_json::from_str(&line).unwrap();
    let r = &refs[0];
    let prompt_file =
        std::env::temp_dir().join(format!("hearth-wgpu-prompt-{}.txt", std::process::id()));
    std::fs::write(&prompt_file, format!("{}\n", r.prompt)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("logits")
        .arg(&path)
        .arg("--backend")
        .arg("wgpu")
        .arg("--prompt-file")
        .arg(&prompt_file)
        .args(["-n", "4"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&prompt_file);
    assert!(
        out.status.success(),
        "hearth logits --backend wgpu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let got: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(got["tokens"], reference["tokens"]);
    let (mut sum, mut n, mut max) = (0f64, 0usize, 0f32);
    for (pos, top) in r.top.iter().enumerate() {
        let ours: Vec<(u32, f32)> = got["top_logits"][pos]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
            .collect();
        if top[0].1 - top[1].1 > 1.0 {
            assert_eq!(ours[0].0, top[0].0, "position {pos}: top-1 differs");
        }
        // llama.cpp's top-10 ids that are also in ours (the command prints
        // only its own top-10).
        for &(id, want) in top {
            if let Some(&(_, v)) = ours.iter().find(|o| o.0 == id) {
                let d = (v - want).abs();
                sum += f64::from(d);
                n += 1;
                max = max.max(d);
            }
        }
    }
    let mean = sum / n as f64;
    eprintln!(
        "hearth logits --backend wgpu: mean |d| {mean:.3}, max |d| {max:.3} over {n} shared ids"
    );
    assert!(
        n >= r.top.len() * 8,
        "only {n} of llama.cpp's top ids in ours"
    );
    assert!(mean <= 0.3 && max <= 3.5, "mean {mean}, max {max}");
    let greedy: Vec<u64> = got["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = reference["greedy"].as_array().unwrap()[..4]
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(greedy, want, "greedy continuation");
}
