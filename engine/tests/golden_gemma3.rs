//! The model tier: Gemma 3 270M on the CPU against llama.cpp's reference
//! logits (`shared/golden/gemma-3-270m-q4_k_m/reference.jsonl`), fed the
//! reference token ids so that only the forward pass is under test.
//!
//! Criteria (calibrated in shared/golden/README.md: an exact f32
//! implementation lands at mean 0.19, max 2.7, 100% top-1 where the margin
//! exceeds 0.5, because llama.cpp rounds activations to 8 bits):
//! - where llama.cpp's top-1 leads its second by more than 1.0, the same top-1;
//! - where it leads by more than 0.5, the same top-1 at least 99% of the time;
//! - over llama.cpp's top-10 ids at every position, mean |logit difference|
//!   at most 0.3 and largest at most 3.5.

use hearth::backend::cpu::Cpu;
use hearth::backend::KvType;
use hearth::batch::{Batch, Logits};
use hearth::model::{Model, Workspace};
use serde_json::Value;

struct Reference {
    prompt: String,
    tokens: Vec<u32>,
    top: Vec<Vec<(u32, f32)>>,
}

fn references() -> Option<Vec<Reference>> {
    let golden = hearth_tests::golden_dir()?;
    let text = std::fs::read_to_string(golden.join("gemma-3-270m-q4_k_m/reference.jsonl")).unwrap();
    Some(
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Reference {
                    prompt: v["prompt"].as_str().unwrap().to_string(),
                    tokens: v["tokens"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_u64().unwrap() as u32)
                        .collect(),
                    top: v["top_logits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|pos| {
                            pos.as_array()
                                .unwrap()
                                .iter()
                                .map(|p| {
                                    (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32)
                                })
                                .collect()
                        })
                        .collect(),
                }
            })
            .collect(),
    )
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn gemma3_logits_match_llama_cpp() {
    let (Some(path), Some(refs)) = (hearth_tests::model_path(), references()) else {
        return;
    };
    let model = Model::load(&path, Cpu::new()).unwrap();
    let n_vocab = model.hparams.n_vocab;
    let mut ws = Workspace::new(&model.backend);
    let (mut sum, mut count, mut max) = (0f64, 0usize, 0f32);
    let (mut clear, mut clear_agree) = (0usize, 0usize);
    for r in &refs {
        let mut cache = model
            .new_cache_with_batch(r.tokens.len(), 1, KvType::F16, r.tokens.len())
            .unwrap();
        let mut batch = Batch::new();
        batch.push(0, 0, &r.tokens, Logits::All).unwrap();
        let logits = model.forward(&batch, &mut cache, &mut ws).unwrap();
        assert_eq!(logits.len(), r.tokens.len() * n_vocab);
        let (mut p_sum, mut p_max) = (0f64, 0f32);
        for (pos, top) in r.top.iter().enumerate() {
            let row = &logits[pos * n_vocab..(pos + 1) * n_vocab];
            for &(id, want) in top {
                let d = (row[id as usize] - want).abs();
                p_sum += d as f64;
                p_max = p_max.max(d);
            }
            let margin = top[0].1 - top[1].1;
            let ours = argmax(row);
            if margin > 1.0 {
                assert_eq!(
                    ours, top[0].0,
                    "{:?} position {pos}: top-1 differs with margin {margin}",
                    r.prompt
                );
            }
            if margin > 0.5 {
                clear += 1;
                clear_agree += usize::from(ours == top[0].0);
            }
        }
        let n = r.top.len() * 10;
        eprintln!(
            "{:<50.50} tokens {:>4}  mean |d| {:.3}  max |d| {:.3}",
            format!("{:?}", r.prompt),
            r.tokens.len(),
            p_sum / n as f64,
            p_max
        );
        sum += p_sum;
        count += n;
        max = max.max(p_max);
    }
    let mean = sum / count as f64;
    let agree = clear_agree as f64 / clear as f64;
    eprintln!("all prompts: mean |d| {mean:.3}, max |d| {max:.3}, top-1 agreement where margin > 0.5: {:.2}% of {clear}", 100.0 * agree);
    assert!(mean <= 0.3, "mean |logit difference| {mean}");
    assert!(max <= 3.5, "largest |logit difference| {max}");
    assert!(agree >= 0.99, "top-1 agreement {agree}");
}

/// Gemma 3's sliding-window layers keep only `window + n_batch` rows of
/// keys and values (a ring). Evaluating the 783-token prompt in chunks of 64
/// wraps those rings several times; the logits must be those of a cache that
/// holds everything.
#[test]
fn ring_cache_of_window_layers_matches_a_full_cache() {
    let (Some(path), Some(refs)) = (hearth_tests::model_path(), references()) else {
        return;
    };
    let long = refs.iter().max_by_key(|r| r.tokens.len()).unwrap();
    assert!(
        long.tokens.len() > 512 + 64,
        "the prompt must outrun window + batch"
    );
    let model = Model::load(&path, Cpu::new()).unwrap();
    let n_vocab = model.hparams.n_vocab;
    let n = long.tokens.len();
    let mut ws = Workspace::new(&model.backend);

    // A cache that holds every position in every layer (window + batch >= n).
    let mut full = model.new_cache_with_batch(n, 1, KvType::F32, n).unwrap();
    let mut b = Batch::new();
    b.push(0, 0, &long.tokens, Logits::All).unwrap();
    let want = model.forward(&b, &mut full, &mut ws).unwrap().to_vec();

    let mut ring = model.new_cache_with_batch(n, 1, KvType::F32, 64).unwrap();
    let mut got = Vec::new();
    for (i, chunk) in long.tokens.chunks(64).enumerate() {
        b.clear();
        b.push(0, i * 64, chunk, Logits::All).unwrap();
        got.extend_from_slice(model.forward(&b, &mut ring, &mut ws).unwrap());
    }
    assert_eq!(got.len(), n * n_vocab);
    // The same arithmetic with keys visited in another order and the prompt
    // in other chunks: float-rounding noise, which Gemma's 8-bit-rounded
    // activations amplify (as between llama.cpp and an f32 engine, see the
    // golden README). A wrong window or a stale key would move logits by
    // whole units at most positions, so: top-1 identical wherever the full
    // cache's leads by more than 1.0, and a mean difference well under the
    // 0.19 that separates llama.cpp from an exact f32 engine (measured here:
    // 0.052, largest 1.7, top-1 380 of 380).
    let (mut sum, mut worst, mut clear, mut agree) = (0f64, 0f32, 0, 0);
    for (g, w) in got.chunks(n_vocab).zip(want.chunks(n_vocab)) {
        for (a, b) in g.iter().zip(w) {
            sum += f64::from((a - b).abs());
            worst = worst.max((a - b).abs());
        }
        let top = hearth::logits::top_n(w, 2);
        if top[0].1 - top[1].1 > 1.0 {
            clear += 1;
            agree += usize::from(argmax(g) == top[0].0);
        }
    }
    let mean = sum / got.len() as f64;
    eprintln!("ring vs full cache: mean |d| {mean:.4}, max |d| {worst:.3}, top-1 {agree}/{clear}");
    assert!(mean < 0.1, "mean logit difference {mean}");
    assert_eq!(agree, clear, "top-1 differs where the margin exceeds 1.0");
}
