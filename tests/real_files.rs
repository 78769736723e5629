//! The gguf crate on real files: the Gemma 3 270M model and llama.cpp's
//! vocabulary-only test files.

use std::collections::BTreeSet;
use std::sync::Mutex;

use hearth_gguf::{GgmlType, GgufWriter};
use hearth_tests::{golden_dir, model_path};

/// The RSS check measures the whole process: tests that allocate much run
/// one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Resident set size of this process in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn gemma3_270m_parses_with_the_expected_tensors() {
    let Some(path) = model_path() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rss_before = rss_bytes();
    let g = hearth_gguf::open(&path).unwrap();
    let rss_after = rss_bytes();
    let file_len = std::fs::metadata(&path).unwrap().len();

    // Zero-copy: opening maps the file and reads the metadata, not the weights.
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        let grown = b.saturating_sub(a);
        assert!(
            grown < 32 << 20,
            "open() grew RSS by {grown} bytes for a {file_len}-byte file"
        );
    }

    assert_eq!(g.version(), 3);
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.tensor_infos().len(), 236);
    let types: BTreeSet<GgmlType> = g.tensor_infos().iter().map(|t| t.ggml_type).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            GgmlType::F32,
            GgmlType::Q5_0,
            GgmlType::Q4_K,
            GgmlType::Q8_0,
            GgmlType::Q6_K
        ])
    );
    assert_eq!(g.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(g.get_u32("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(g.get_u32("gemma3.attention.head_count").unwrap(), 4);
    assert_eq!(g.get_u32("gemma3.attention.head_count_kv").unwrap(), 1);
    assert_eq!(g.get_u32("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(g.get_f32("gemma3.rope.freq_base").unwrap(), 1_000_000.0);
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    let tokens = g.get_bytes_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262_144);
    assert_eq!(
        g.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
        262_144
    );
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        262_144
    );
    assert_eq!(tokens[2], b"<bos>");

    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.info.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.info.dims, [640, 262_144]);
    assert_eq!(embd.data.len(), 640 / 32 * 34 * 262_144);
    // The tensor data is a slice of the mapping itself.
    let file = g.bytes().as_ptr_range();
    assert!(file.contains(&embd.data.as_ptr()));

    // Data section: every tensor inside it, the sizes adding up to the file.
    let total: u64 = g.tensor_infos().iter().map(|t| t.size).sum();
    assert!(g.data_start() + total <= file_len);
    assert_eq!(total, 246_587_904);
}

/// Our writer lays a file out as llama.cpp's does: rewriting the real model
/// from its parsed form reproduces it byte for byte.
#[test]
fn gemma3_270m_rewrites_byte_identical() {
    let Some(path) = model_path() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let g = hearth_gguf::open(&path).unwrap();
    let rewritten = GgufWriter::from_gguf(&g).unwrap().to_bytes().unwrap();
    assert_eq!(rewritten.len(), g.bytes().len());
    assert!(rewritten == g.bytes(), "rewritten file differs");
}

#[test]
fn llama_cpp_vocab_files_parse() {
    let Some(golden) = golden_dir() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let expect = [
        ("llama-spm", "llama", 32_000),
        ("phi-3", "llama", 32_064),
        ("llama-bpe", "gpt2", 128_256),
        ("qwen2", "gpt2", 151_936),
        ("gpt-2", "gpt2", 50_257),
    ];
    for (name, model, n_vocab) in expect {
        let path = golden.join(format!("vocab/ggml-vocab-{name}.gguf"));
        let g = hearth_gguf::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), model, "{name}");
        let tokens = g.get_bytes_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), n_vocab, "{name}");
        assert!(g.tensor_infos().is_empty(), "{name} is vocabulary-only");
        if model == "gpt2" {
            assert!(
                !g.get_str_array("tokenizer.ggml.merges").unwrap().is_empty(),
                "{name}"
            );
        } else {
            assert_eq!(
                g.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
                n_vocab,
                "{name}"
            );
        }
    }
}
