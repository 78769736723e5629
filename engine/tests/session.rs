//! `Session::set_prompt` prefix reuse on the real Gemma 3 model, whose
//! sliding-window layers keep a ring of `window + batch` positions.

use hearth::backend::cpu::Cpu;
use hearth::backend::KvType;
use hearth::model::Model;
use hearth::session::Session;
use hearth::tokenizer::Tokenizer;

/// Pins the bug where a new prompt sharing only the start of a long
/// history reused that start although the ring had overwritten it: the new
/// tokens then attended to fewer keys than a fresh session's.
#[test]
fn set_prompt_after_a_long_history_equals_a_fresh_session() {
    let Some(path) = hearth_tests::model_path() else {
        return;
    };
    let m = Model::load(&path, Cpu::new()).unwrap();
    let tok = Tokenizer::from_gguf(&m.file).unwrap();
    let text: String = (0..120)
        .map(|i| format!("Item {i} is a {} stone. ", ["red", "blue", "green"][i % 3]))
        .collect();
    let a = tok.encode(&text, true, false).unwrap();
    assert!(a.len() >= 700, "{}", a.len());
    let a = &a[..700];
    // Gemma 3 270M: window 512; batches of 64 make the ring 576 positions.
    let session = || {
        Session::new(&m, 1024, KvType::F16)
            .unwrap()
            .with_batch_size(64, KvType::F16)
            .unwrap()
    };
    let shares_start: Vec<u32> = [&a[..40], &a[500..560]].concat();
    let shares_end: Vec<u32> = [&a[..690], &a[10..20]].concat();
    for b in [shares_start, shares_end] {
        let fresh = session().set_prompt(&b, |_, _| {}).unwrap().to_vec();
        let mut s = session();
        s.set_prompt(a, |_, _| {}).unwrap();
        let reused = s.set_prompt(&b, |_, _| {}).unwrap().to_vec();
        let diff = fresh
            .iter()
            .zip(&reused)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // Positions are visited in the same order as in the fresh session
        // (the shared start is evaluated again; the shared end's window
        // lies in the ring in order), so the logits match closely.
        assert!(diff < 1e-3, "prefix of {}: max |diff| {diff}", b.len());
    }
}
