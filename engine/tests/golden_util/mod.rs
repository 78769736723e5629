//! llama.cpp's reference logits for the real models
//! (`shared/golden/<model>/reference.jsonl`) and the check the golden tests
//! of both backends and both models apply to them.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use hearth::backend::{Backend, KvType};
use hearth::batch::{Batch, Logits};
use hearth::model::{Model, Workspace};
use serde_json::Value;

pub struct Reference {
    pub prompt: String,
    pub tokens: Vec<u32>,
    pub top: Vec<Vec<(u32, f32)>>,
    /// llama.cpp's greedy continuation.
    pub greedy: Vec<u32>,
}

/// Gemma 3 270M's references.
pub fn references() -> Option<Vec<Reference>> {
    references_of("gemma-3-270m-q4_k_m")
}

/// The references in `shared/golden/<model>/reference.jsonl`.
pub fn references_of(model: &str) -> Option<Vec<Reference>> {
    let golden = hearth_tests::golden_dir()?;
    let text = std::fs::read_to_string(golden.join(model).join("reference.jsonl")).unwrap();
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
                    greedy: v["greedy"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_u64().unwrap() as u32)
                        .collect(),
                }
            })
            .collect(),
    )
}

/// Bounds on the difference from llama.cpp's logits, over its top 10 at
/// every position.
pub struct Criteria {
    pub mean: f64,
    pub max: f32,
    /// Least top-1 agreement where llama.cpp's margin exceeds 0.5.
    pub agree: f64,
}

/// Gemma 3's (see golden_gemma3.rs).
pub const GEMMA: Criteria = Criteria {
    mean: 0.3,
    max: 3.5,
    agree: 0.99,
};

pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Evaluates each reference prompt in one batch and compares the logits of
/// llama.cpp's top 10 at every position. Asserts: mean |difference| <= 0.3,
/// largest <= 3.5, top-1 equal wherever llama.cpp's margin is above 1.0, and
/// top-1 agreement >= 99% where the margin is above 0.5 (8-bit activations
/// make the logits sensitive to summation order; see golden_gemma3.rs).
pub fn check_against_llama_cpp<B: Backend>(model: &Model<B>, refs: &[Reference]) {
    check_with(model, refs, &GEMMA);
}

/// [`check_against_llama_cpp`] with other bounds.
pub fn check_with<B: Backend>(model: &Model<B>, refs: &[Reference], c: &Criteria) {
    let n_vocab = model.hparams.n_vocab;
    let mut ws = Workspace::new(&model.backend);
    let (mut sum, mut count, mut max) = (0f64, 0usize, 0f32);
    let (mut clear, mut clear_agree) = (0usize, 0usize);
    let t0 = std::time::Instant::now();
    for r in refs {
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
    eprintln!(
        "{} prompts in {:.1} s: mean |d| {mean:.3}, max |d| {max:.3}, top-1 agreement where margin > 0.5: {:.2}% of {clear}",
        refs.len(),
        t0.elapsed().as_secs_f64(),
        100.0 * agree
    );
    assert!(mean <= c.mean, "mean |logit difference| {mean}");
    assert!(max <= c.max, "largest |logit difference| {max}");
    assert!(agree >= c.agree, "top-1 agreement {agree}");
}
