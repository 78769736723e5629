//! Writes small valid GGUF files to seed the fuzzer:
//! `cargo run -p hearth-gguf --example fuzz_seeds -- fuzz/corpus/parse`.

use hearth_gguf::{GgmlType, GgufWriter, Value, ValueType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/parse".into());
    std::fs::create_dir_all(&dir)?;

    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv("general.alignment", 16u32)
        .kv("llama.block_count", 1u32)
        .kv("flag", true)
        .kv("tokenizer.ggml.tokens", Value::strings(["a", "b", "▁c"]))
        .kv(
            "nested",
            Value::Array(
                ValueType::Array,
                vec![Value::i32s([1, 2]), Value::f32s([0.5])],
            ),
        )
        .tensor("a", GgmlType::F32, &[4], vec![1; 16])
        .tensor("b", GgmlType::Q8_0, &[32, 2], vec![2; 68])
        .tensor("c", GgmlType::Q4_K, &[256], vec![3; 144]);
    w.write_file(format!("{dir}/model.gguf"))?;

    let mut v2 = GgufWriter::new();
    v2.version(2).kv("general.name", "v2").kv("x", 1.5f64);
    v2.write_file(format!("{dir}/v2.gguf"))?;
    GgufWriter::new().write_file(format!("{dir}/empty.gguf"))?;
    Ok(())
}
