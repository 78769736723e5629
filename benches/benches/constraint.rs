//! The per-token cost of constrained decoding on Gemma 3's 262k-token
//! vocabulary: llguidance's mask for the next token plus writing it into a
//! logits row (`Constraint::mask_logits`) and advancing the grammar by the
//! token (`Constraint::accept`), over a JSON schema's whole output. Each
//! sample starts from a freshly compiled grammar (not timed), so the
//! lexer's caches are as cold as at the start of a request. The one-time
//! cost per model (the token trie and llguidance's slices) is printed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hearth::constraint::{ConstraintVocab, Grammar};
use hearth::tokenizer::Tokenizer;

fn mask_benches(c: &mut Criterion) {
    let Some(path) = hearth_tests::model_path() else {
        return;
    };
    let file = hearth_gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let t0 = Instant::now();
    let vocab = ConstraintVocab::new(&tok).unwrap();
    eprintln!(
        "constraint: token trie and slices of {} tokens built in {:.0} ms",
        tok.n_vocab(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 32},
            "population": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"enum": ["capital", "city", "port"]}, "maxItems": 4},
            "coords": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                       "required": ["lat", "lon"], "additionalProperties": false}
        },
        "required": ["name", "population", "tags", "coords"],
        "additionalProperties": false
    });
    let text = r#"{"name": "Paris", "population": 2161000, "tags": ["capital", "city"], "coords": {"lat": 48.8566, "lon": 2.3522}}"#;
    let grammars = [
        ("json schema", Grammar::JsonSchema(schema), text),
        ("json object", Grammar::JsonObject, text),
    ];
    let mut g = c.benchmark_group("constraint");
    g.measurement_time(Duration::from_secs(10));
    for (name, grammar, text) in grammars {
        let ids = tok.encode(text, false, false).unwrap();
        // The output must be one the grammar accepts, token by token.
        let mut check = vocab.compile(&grammar).unwrap();
        let mut logits = vec![0.0f32; tok.n_vocab()];
        for &id in &ids {
            check.mask_logits(&mut logits).unwrap();
            assert!(logits[id as usize] == 0.0, "{name}: token {id} masked");
            logits.fill(0.0);
            check.accept(id).unwrap();
        }
        g.throughput(Throughput::Elements(ids.len() as u64));
        g.bench_function(
            format!(
                "mask + accept per token, {name}, {} tokens, 262k vocab",
                ids.len()
            ),
            |b| {
                b.iter_batched(
                    || vocab.compile(&grammar).unwrap(),
                    |mut c| {
                        for &id in &ids {
                            c.mask_logits(&mut logits).unwrap();
                            c.accept(id).unwrap();
                        }
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, mask_benches);
criterion_main!(benches);
