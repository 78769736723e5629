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

mod golden_util;
use golden_util::{argmax, check_against_llama_cpp, references};

#[test]
fn gemma3_logits_match_llama_cpp() {
    let (Some(path), Some(refs)) = (hearth_tests::model_path(), references()) else {
        return;
    };
    let model = Model::load(&path, Cpu::new()).unwrap();
    check_against_llama_cpp(&model, &refs);
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
