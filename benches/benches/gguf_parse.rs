//! How long opening a model takes: parsing the index of the real Gemma file
//! (a 262k-entry vocabulary in its metadata) and of a small synthetic file.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hearth_gguf::{GgmlType, GgufWriter, Value};

fn parse_benches(c: &mut Criterion) {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv(
            "tokenizer.ggml.tokens",
            Value::strings((0..32_000).map(|i| format!("tok{i}"))),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::f32s((0..32_000).map(|i| i as f32)),
        );
    for i in 0..200 {
        w.tensor(
            format!("blk.{i}.w"),
            GgmlType::Q4_K,
            &[256, 4],
            vec![0u8; 4 * 144],
        );
    }
    let small = w.to_bytes().unwrap();
    let mut g = c.benchmark_group("gguf");
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("parse synthetic (32k vocab, 200 tensors)", |b| {
        b.iter(|| {
            hearth_gguf::parse(std::hint::black_box(&small))
                .unwrap()
                .tensor_infos()
                .len()
        })
    });
    if let Some(path) = hearth_tests::model_path() {
        let bytes = std::fs::read(&path).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function("parse gemma-3-270m index", |b| {
            b.iter(|| {
                hearth_gguf::parse(std::hint::black_box(&bytes))
                    .unwrap()
                    .tensor_infos()
                    .len()
            })
        });
        g.bench_function("open (mmap + parse) gemma-3-270m", |b| {
            b.iter(|| hearth_gguf::open(&path).unwrap().tensor_infos().len())
        });
    }
    g.finish();
}

criterion_group!(benches, parse_benches);
criterion_main!(benches);
