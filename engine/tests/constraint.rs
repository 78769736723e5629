//! Constrained decoding on real vocabularies (issue 14 item 1): the trie
//! marks control and end-of-generation tokens, and a `Generator` with a
//! grammar follows it even when the "model" wants a control token.

use hearth::constraint::{trie_words, ConstraintVocab, Grammar};
use hearth::generate::Generator;
use hearth::sampler::{SamplerConfig, StopReason};
use hearth::tokenizer::Tokenizer;

fn tokenizer(path: Option<std::path::PathBuf>) -> Option<Tokenizer> {
    let g = hearth_gguf::open(path?).unwrap();
    Some(Tokenizer::from_gguf(&g).unwrap())
}

/// Every end-of-generation and control token is `0xFF` + its text in the
/// trie (so no grammar can spell it), and a plain token is its bytes.
fn check_words(tok: &Tokenizer) {
    let words = trie_words(tok);
    assert_eq!(words.len(), tok.n_vocab());
    for &id in tok.eog_ids() {
        assert_eq!(words[id as usize][0], 0xFF, "eog {id}");
    }
    let control = (0..tok.n_vocab() as u32).filter(|&i| tok.is_control(i));
    for id in control {
        assert_eq!(words[id as usize][0], 0xFF, "control {id}");
    }
    let brace = tok.encode("{", false, false).unwrap();
    assert_eq!(brace.len(), 1);
    assert_eq!(words[brace[0] as usize], b"{");
}

/// Greedy decoding where the logits favour a control token and then the
/// end token: under the regex the output is three digits, and the end
/// token is taken only once they are complete.
fn digits_despite_the_model(tok: &Tokenizer, favoured: u32) {
    let vocab = ConstraintVocab::new(tok).unwrap();
    let c = vocab.compile(&Grammar::Regex("[0-9]{3}".into())).unwrap();
    let mut gen = Generator::new(
        tok,
        SamplerConfig::greedy(),
        Some(16),
        Vec::<String>::new(),
        &[],
    )
    .unwrap()
    .with_constraint(c);
    let mut logits = vec![0.0f32; tok.n_vocab()];
    logits[favoured as usize] = 10.0;
    for &e in tok.eog_ids() {
        logits[e as usize] = 5.0;
    }
    let mut text = String::new();
    let stop = loop {
        let t = gen.step(&logits).unwrap();
        text.push_str(&t.text);
        if let Some(s) = t.stop {
            break s;
        }
    };
    assert!(matches!(stop, StopReason::EndOfGeneration(_)), "{stop:?}");
    assert!(
        text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );
}

#[test]
fn smollm2_trie_and_a_grammar_over_a_control_token() {
    let Some(tok) = tokenizer(hearth_tests::smollm2_path()) else {
        return;
    };
    check_words(&tok);
    digits_despite_the_model(&tok, tok.token_id("<|im_start|>").unwrap());
}

#[test]
fn gemma_262k_trie_and_a_grammar_over_a_control_token() {
    let Some(tok) = tokenizer(hearth_tests::model_path()) else {
        return;
    };
    check_words(&tok);
    digits_despite_the_model(&tok, tok.token_id("<start_of_turn>").unwrap());
}
