//! Builders for test files: a valid file with its layout, and raw bytes
//! assembled field by field for what the writer refuses to produce.
#![allow(dead_code)]

use hearth_gguf::{GgmlType, GgufWriter, Value, ValueType, WrittenLayout};

/// A small random number generator (xorshift64*), so tests are seeded and
/// need no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A writer for a small but complete model-like file: every scalar type,
/// strings, nested arrays and four tensors of different types.
pub fn sample_writer() -> GgufWriter {
    let mut rng = Rng(0x5eed);
    let mut w = GgufWriter::new();
    w.kv("general.architecture", "llama")
        .kv("general.name", "tiny test model")
        .kv("general.alignment", 32u32)
        .kv("llama.block_count", 2u32)
        .kv("llama.context_length", 128u64)
        .kv("llama.embedding_length", 64i32)
        .kv("llama.rope.freq_base", 10000.0f32)
        .kv("llama.attention.layer_norm_rms_epsilon", 1e-5f64)
        .kv("test.u8", 7u8)
        .kv("test.i8", -7i8)
        .kv("test.u16", 65535u16)
        .kv("test.i16", -300i16)
        .kv("test.i64", -5_000_000_000i64)
        .kv("test.bool", true)
        .kv("tokenizer.ggml.model", "llama")
        .kv(
            "tokenizer.ggml.tokens",
            Value::strings(["<unk>", "<s>", "</s>", "▁hi", "é", ""]),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::f32s([0.0, 0.0, 0.0, -1.5, -2.0, -3.0]),
        )
        .kv("tokenizer.ggml.token_type", Value::i32s([2, 3, 3, 1, 1, 1]))
        .kv(
            "test.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::U16, vec![Value::U16(1), Value::U16(2)]),
                    Value::Array(ValueType::String, vec![Value::String("a".into())]),
                    Value::Array(ValueType::Bool, vec![]),
                ],
            ),
        );
    w.tensor(
        "token_embd.weight",
        GgmlType::Q8_0,
        &[64, 6],
        rng.bytes(6 * 2 * 34),
    )
    .tensor(
        "output_norm.weight",
        GgmlType::F32,
        &[64],
        rng.bytes(64 * 4),
    )
    .tensor(
        "blk.0.ffn_down.weight",
        GgmlType::Q4_K,
        &[256, 3],
        rng.bytes(3 * 144),
    )
    .tensor(
        "blk.0.attn_q.weight",
        GgmlType::F16,
        &[64, 2, 1, 1],
        rng.bytes(64 * 2 * 2),
    );
    w
}

pub fn sample() -> (Vec<u8>, WrittenLayout) {
    sample_writer()
        .to_bytes_with_layout()
        .expect("the sample is valid")
}

/// Raw bytes, field by field, little-endian.
#[derive(Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A metadata entry: key, type id, then the caller writes the value.
    pub fn kv(&mut self, key: &[u8], type_id: u32) -> &mut Self {
        self.str(key).u32(type_id)
    }
    /// A tensor info.
    pub fn tensor(&mut self, name: &[u8], dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Pads to a multiple of `a` with zeros.
    pub fn pad(&mut self, a: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(a) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}
