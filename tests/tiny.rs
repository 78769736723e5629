//! Tiny random-weight models of the architectures that have no real model
//! here (llama, qwen2, qwen3, granite, gemma2), written with Hearth's GGUF writer. The same
//! seed always gives the same file, so the reference logits made from these
//! files by llama.cpp (`tests/fixtures/tiny/make_reference.py`) can be
//! checked against files the tests rebuild in memory.

use hearth_gguf::{GgmlType, GgufWriter, Value};
use hearth_kernels::quant::{kernels, Format};

/// Dimensions of every tiny model: K-quant rows need multiples of 256.
pub const N_EMBD: usize = 256;
pub const N_HEAD: usize = 4;
pub const N_HEAD_KV: usize = 2;
pub const HEAD_DIM: usize = 64;
pub const N_FF: usize = 512;
pub const N_LAYER: usize = 2;
/// `<unk>`, `<s>`, `</s>`, 256 byte tokens and a few pieces.
pub const N_VOCAB: usize = 3 + 256 + 61;

/// The architectures built here, as `general.architecture` names them.
pub const ARCHS: &[&str] = &["llama", "qwen2", "qwen3", "granite", "gemma2"];

/// The quirks of the tiny granite and gemma2, chosen to bite: multipliers
/// far from 1, soft-caps near the size of the scores and logits, a window
/// shorter than [`tiny_prompt`]. `(key without the arch prefix, value)`.
pub const GRANITE_QUIRKS: &[(&str, f32)] = &[
    ("embedding_scale", 3.0),
    ("residual_scale", 0.5),
    ("attention.scale", 0.3),
    ("logit_scale", 2.0),
];
pub const GEMMA2_QUIRKS: &[(&str, f32)] = &[
    ("attn_logit_softcapping", 2.0),
    ("final_logit_softcapping", 6.0),
];
/// Gemma 2's window on its even layers (layer 0 of the two).
pub const GEMMA2_WINDOW: u32 = 5;

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self, std: f32) -> f32 {
        ((0..4).map(|_| self.uniform()).sum::<f32>() - 2.0) * std * 1.732
    }
}

fn quantized(rng: &mut Rng, format: Format, rows: usize, cols: usize, std: f32) -> Vec<u8> {
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal(std)).collect();
    let row_bytes = format.row_size(cols).expect("whole blocks");
    let mut out = vec![0u8; rows * row_bytes];
    let q = kernels(format).quantizer().expect("a quantizer");
    for (src, dst) in x.chunks(cols).zip(out.chunks_mut(row_bytes)) {
        q(src, dst).expect("sizes match");
    }
    out
}

fn vector(rng: &mut Rng, n: usize, mean: f32, std: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| (mean + rng.normal(std)).to_le_bytes())
        .collect()
}

/// The GGUF bytes of a tiny `arch` model. Weights mix formats (Q8_0, Q4_K,
/// Q6_K, F16) so that the quantized paths of both engines are compared.
pub fn tiny_model(arch: &str) -> Vec<u8> {
    let mut rng =
        Rng(0x7417_0000 ^ arch.len() as u64 ^ ((arch.as_bytes()[arch.len() - 1] as u64) << 20));
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.kv("general.architecture", arch)
        .kv("general.name", format!("tiny random {arch}"))
        .kv(k("block_count"), N_LAYER as u32)
        .kv(k("context_length"), 256u32)
        .kv(k("embedding_length"), N_EMBD as u32)
        .kv(k("feed_forward_length"), N_FF as u32)
        .kv(k("attention.head_count"), N_HEAD as u32)
        .kv(k("attention.head_count_kv"), N_HEAD_KV as u32)
        .kv(k("attention.layer_norm_rms_epsilon"), 1e-5f32)
        .kv(k("rope.freq_base"), 10_000.0f32)
        .kv(k("rope.dimension_count"), HEAD_DIM as u32);
    if arch == "granite" {
        for &(key, v) in GRANITE_QUIRKS {
            w.kv(k(key), v);
        }
    }
    if arch == "gemma2" {
        for &(key, v) in GEMMA2_QUIRKS {
            w.kv(k(key), v);
        }
        w.kv(k("attention.sliding_window"), GEMMA2_WINDOW)
            .kv(k("attention.key_length"), HEAD_DIM as u32)
            .kv(k("attention.value_length"), HEAD_DIM as u32);
    }
    // A SentencePiece vocabulary llama.cpp accepts: control tokens, byte
    // fallback tokens, then pieces.
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    let pieces = [
        "▁", "e", "t", "a", "o", "i", "n", "s", "h", "r", "▁t", "▁a", "he", "in", "er", "an",
        "▁the", "re", "on", "at",
    ];
    tokens.extend(pieces.iter().map(|s| s.to_string()));
    tokens.extend((tokens.len()..N_VOCAB).map(|i| format!("▁w{i}")));
    let n = tokens.len();
    let mut types = vec![3i32, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    types.extend(std::iter::repeat_n(1, n - 259));
    let scores: Vec<f32> = (0..n)
        .map(|i| if i < 259 { 0.0 } else { -(i as f32) })
        .collect();
    w.kv("tokenizer.ggml.model", "llama")
        .kv("tokenizer.ggml.tokens", Value::strings(tokens))
        .kv("tokenizer.ggml.scores", Value::f32s(scores))
        .kv("tokenizer.ggml.token_type", Value::i32s(types))
        .kv("tokenizer.ggml.bos_token_id", 1u32)
        .kv("tokenizer.ggml.eos_token_id", 2u32)
        .kv("tokenizer.ggml.unknown_token_id", 0u32);

    let (d, q_dim, kv_dim) = (
        N_EMBD as u64,
        (N_HEAD * HEAD_DIM) as u64,
        (N_HEAD_KV * HEAD_DIM) as u64,
    );
    let f32s = GgmlType::F32;
    w.tensor(
        "token_embd.weight",
        GgmlType::Q8_0,
        &[d, N_VOCAB as u64],
        quantized(&mut rng, Format::Q8_0, N_VOCAB, N_EMBD, 0.5),
    );
    w.tensor(
        "output_norm.weight",
        f32s,
        &[d],
        vector(&mut rng, N_EMBD, 1.0, 0.1),
    );
    if arch != "qwen3" && arch != "gemma2" {
        // Qwen3 and Gemma 2 tie the output to the embedding here; the others have their own.
        w.tensor(
            "output.weight",
            GgmlType::Q6_K,
            &[d, N_VOCAB as u64],
            quantized(&mut rng, Format::Q6_K, N_VOCAB, N_EMBD, 0.1),
        );
    }
    for i in 0..N_LAYER {
        let n = |s: &str| format!("blk.{i}.{s}");
        w.tensor(
            n("attn_norm.weight"),
            f32s,
            &[d],
            vector(&mut rng, N_EMBD, 1.0, 0.1),
        );
        w.tensor(
            n("attn_q.weight"),
            GgmlType::Q8_0,
            &[d, q_dim],
            quantized(&mut rng, Format::Q8_0, q_dim as usize, N_EMBD, 0.1),
        );
        w.tensor(
            n("attn_k.weight"),
            GgmlType::Q4_K,
            &[d, kv_dim],
            quantized(&mut rng, Format::Q4_K, kv_dim as usize, N_EMBD, 0.1),
        );
        w.tensor(
            n("attn_v.weight"),
            GgmlType::F16,
            &[d, kv_dim],
            quantized(&mut rng, Format::F16, kv_dim as usize, N_EMBD, 0.1),
        );
        if arch == "qwen2" {
            w.tensor(
                n("attn_q.bias"),
                f32s,
                &[q_dim],
                vector(&mut rng, q_dim as usize, 0.0, 0.2),
            );
            w.tensor(
                n("attn_k.bias"),
                f32s,
                &[kv_dim],
                vector(&mut rng, kv_dim as usize, 0.0, 0.2),
            );
            w.tensor(
                n("attn_v.bias"),
                f32s,
                &[kv_dim],
                vector(&mut rng, kv_dim as usize, 0.0, 0.2),
            );
        }
        if arch == "qwen3" {
            w.tensor(
                n("attn_q_norm.weight"),
                f32s,
                &[HEAD_DIM as u64],
                vector(&mut rng, HEAD_DIM, 1.0, 0.1),
            );
            w.tensor(
                n("attn_k_norm.weight"),
                f32s,
                &[HEAD_DIM as u64],
                vector(&mut rng, HEAD_DIM, 1.0, 0.1),
            );
        }
        w.tensor(
            n("attn_output.weight"),
            GgmlType::Q4_K,
            &[q_dim, d],
            quantized(&mut rng, Format::Q4_K, N_EMBD, q_dim as usize, 0.1),
        );
        if arch == "granite" {
            // Granite's optional biases (llama.cpp loads them when present),
            // large enough to matter.
            w.tensor(
                n("attn_output.bias"),
                f32s,
                &[d],
                vector(&mut rng, N_EMBD, 0.0, 1.0),
            );
        }
        if arch == "gemma2" {
            w.tensor(
                n("post_attention_norm.weight"),
                f32s,
                &[d],
                vector(&mut rng, N_EMBD, 1.0, 0.1),
            );
        }
        w.tensor(
            n("ffn_norm.weight"),
            f32s,
            &[d],
            vector(&mut rng, N_EMBD, 1.0, 0.1),
        );
        w.tensor(
            n("ffn_gate.weight"),
            GgmlType::Q8_0,
            &[d, N_FF as u64],
            quantized(&mut rng, Format::Q8_0, N_FF, N_EMBD, 0.1),
        );
        w.tensor(
            n("ffn_up.weight"),
            GgmlType::Q4_K,
            &[d, N_FF as u64],
            quantized(&mut rng, Format::Q4_K, N_FF, N_EMBD, 0.1),
        );
        w.tensor(
            n("ffn_down.weight"),
            GgmlType::Q6_K,
            &[N_FF as u64, d],
            quantized(&mut rng, Format::Q6_K, N_EMBD, N_FF, 0.1),
        );
        if arch == "granite" {
            for (name, len) in [
                ("ffn_gate.bias", N_FF),
                ("ffn_up.bias", N_FF),
                ("ffn_down.bias", N_EMBD),
            ] {
                w.tensor(
                    n(name),
                    f32s,
                    &[len as u64],
                    vector(&mut rng, len, 0.0, 1.0),
                );
            }
        }
        if arch == "gemma2" {
            w.tensor(
                n("post_ffw_norm.weight"),
                f32s,
                &[d],
                vector(&mut rng, N_EMBD, 1.0, 0.1),
            );
        }
    }
    w.to_bytes().expect("the tiny model is valid")
}

/// Token ids the reference logits were computed for (BOS, then a spread of
/// ids across the vocabulary).
pub fn tiny_prompt() -> Vec<u32> {
    let mut ids = vec![1u32];
    ids.extend((0..23).map(|i| 259 + (i * 37 % (N_VOCAB as u32 - 259))));
    ids
}

/// The tiny `arch` model with `tokenizer.ggml.fim_{pre,suf,mid}_token_id`
/// naming the three ids of `fim` (ordinary pieces of its vocabulary), for
/// the fill-in-the-middle routes: neither real model here has FIM tokens.
pub fn tiny_fim_model(arch: &str, fim: [u32; 3]) -> Vec<u8> {
    let bytes = tiny_model(arch);
    let g = hearth_gguf::parse(&bytes).expect("the tiny model parses");
    let mut w = GgufWriter::from_gguf(&g).expect("its metadata is UTF-8");
    for (k, id) in ["pre", "suf", "mid"].iter().zip(fim) {
        w.kv(format!("tokenizer.ggml.fim_{k}_token_id"), id);
    }
    w.to_bytes().expect("the tiny model is valid")
}
