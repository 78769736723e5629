//! The WGSL sources (`shaders/` at the repository root) and the parameter
//! block of each, mirrored as `#[repr(C)]` `Pod` structs.
//!
//! WGSL has no `#include`: a kernel that reads GGUF blocks is the byte
//! readers (`bytes.wgsl`), one format's `dequant32` (`quant/*.wgsl`) and the
//! kernel body (`matmul.wgsl`, `embed.wgsl`) joined into one module.
//! Attention is a cache reader prelude (`attention_kv.wgsl`, or
//! `attention_kv_f16.wgsl` with `enable f16;` first) joined to
//! `attention.wgsl`.

use bytemuck::{Pod, Zeroable};
use hearth_kernels::quant::Format;

pub const BYTES: &str = include_str!("../../../../shaders/bytes.wgsl");
pub const MATMUL: &str = include_str!("../../../../shaders/matmul.wgsl");
pub const MATMUL_ROWS: &str = include_str!("../../../../shaders/matmul_rows.wgsl");
pub const MATMUL_SUBGROUP: &str = include_str!("../../../../shaders/matmul_subgroup.wgsl");
pub const EMBED: &str = include_str!("../../../../shaders/embed.wgsl");
pub const RMS_NORM: &str = include_str!("../../../../shaders/rms_norm.wgsl");
pub const ROPE: &str = include_str!("../../../../shaders/rope.wgsl");
pub const GLU: &str = include_str!("../../../../shaders/glu.wgsl");
pub const ADD: &str = include_str!("../../../../shaders/add.wgsl");
pub const KV_STORE: &str = include_str!("../../../../shaders/kv_store.wgsl");
pub const KV_STORE_F16: &str = include_str!("../../../../shaders/kv_store_f16.wgsl");
pub const ATTENTION_BODY: &str = include_str!("../../../../shaders/attention.wgsl");
pub const ATTENTION_KV: &str = include_str!("../../../../shaders/attention_kv.wgsl");
pub const ATTENTION_KV_F16: &str = include_str!("../../../../shaders/attention_kv_f16.wgsl");

/// Attention over a cache of u32 words (f32, or f16 pairs unpacked with
/// `unpack2x16float`): every adapter.
pub fn attention() -> String {
    format!("{ATTENTION_KV}\n{ATTENTION_BODY}")
}

/// Attention over a native f16 cache: adapters with `SHADER_F16`.
pub fn attention_f16() -> String {
    format!("{ATTENTION_KV_F16}\n{ATTENTION_BODY}")
}

/// The weight formats the WGSL kernels read, with their `dequant32` file.
pub const FORMATS: &[(Format, &str, &str)] = &[
    (
        Format::F32,
        "f32",
        include_str!("../../../../shaders/quant/f32.wgsl"),
    ),
    (
        Format::F16,
        "f16",
        include_str!("../../../../shaders/quant/f16.wgsl"),
    ),
    (
        Format::Q4_0,
        "q4_0",
        include_str!("../../../../shaders/quant/q4_0.wgsl"),
    ),
    (
        Format::Q4_1,
        "q4_1",
        include_str!("../../../../shaders/quant/q4_1.wgsl"),
    ),
    (
        Format::Q5_0,
        "q5_0",
        include_str!("../../../../shaders/quant/q5_0.wgsl"),
    ),
    (
        Format::Q5_1,
        "q5_1",
        include_str!("../../../../shaders/quant/q5_1.wgsl"),
    ),
    (
        Format::Q8_0,
        "q8_0",
        include_str!("../../../../shaders/quant/q8_0.wgsl"),
    ),
    (
        Format::Q2_K,
        "q2_k",
        include_str!("../../../../shaders/quant/q2_k.wgsl"),
    ),
    (
        Format::Q3_K,
        "q3_k",
        include_str!("../../../../shaders/quant/q3_k.wgsl"),
    ),
    (
        Format::Q4_K,
        "q4_k",
        include_str!("../../../../shaders/quant/q4_k.wgsl"),
    ),
    (
        Format::Q5_K,
        "q5_k",
        include_str!("../../../../shaders/quant/q5_k.wgsl"),
    ),
    (
        Format::Q6_K,
        "q6_k",
        include_str!("../../../../shaders/quant/q6_k.wgsl"),
    ),
];

/// The `dequant32` source of `format`, if the WGSL kernels read it.
pub fn quant_source(format: Format) -> Option<&'static str> {
    FORMATS
        .iter()
        .find(|(f, _, _)| *f == format)
        .map(|(_, _, s)| *s)
}

/// A kernel over weights of `format`: `body` is [`MATMUL`],
/// [`MATMUL_ROWS`] or [`EMBED`].
pub fn with_format(format: Format, body: &str) -> Option<String> {
    Some(format!("{BYTES}\n{}\n{body}", quant_source(format)?))
}

/// Every module the backend compiles, by name (for validation in tests).
pub fn all_modules() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("rms_norm", RMS_NORM),
        ("rope", ROPE),
        ("glu", GLU),
        ("add", ADD),
        ("kv_store", KV_STORE),
        ("kv_store_f16", KV_STORE_F16),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    v.push(("attention".into(), attention()));
    v.push(("attention_f16".into(), attention_f16()));
    for (f, name, _) in FORMATS {
        for (kind, body) in [
            ("matmul", MATMUL),
            ("matmul_rows", MATMUL_ROWS),
            ("matmul_subgroup", MATMUL_SUBGROUP),
            ("embed", EMBED),
        ] {
            let src = with_format(*f, body).expect("a listed format");
            v.push((format!("{kind}_{name}"), src));
        }
    }
    v
}

/// `matmul.wgsl`'s `MatmulParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub rows: u32,
    pub cols: u32,
    pub n_tok: u32,
    pub y_stride: u32,
    pub y_col0: u32,
    pub row_bytes: u32,
    pub grid_x: u32,
    pub y_off: u32,
}

/// Tokens per matmul workgroup (`TN` in matmul.wgsl and matmul_subgroup.wgsl).
pub const MATMUL_TOKENS: u32 = 8;

/// Tokens per thread of matmul_rows.wgsl (`TN` there).
pub const ROWS_TOKENS: u32 = 16;

/// Rows per thread of matmul_rows.wgsl (`RN`), in workgroups of 32 threads.
pub const ROWS_PER_THREAD: usize = 16;

/// `embed.wgsl`'s `EmbedParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct EmbedParams {
    pub cols: u32,
    pub n: u32,
    pub row_bytes: u32,
    pub scale: f32,
    pub grid_x: u32,
    pub _pad: [u32; 3],
}

/// `rms_norm.wgsl`'s `NormParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct NormParams {
    pub rows: u32,
    pub n: u32,
    pub eps: f32,
    pub grid_x: u32,
}

/// `rope.wgsl`'s `RopeParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RopeParams {
    pub n_tok: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub neox: u32,
    pub grid_x: u32,
    pub _pad: [u32; 2],
}

/// `glu.wgsl`'s `GluParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GluParams {
    pub n: u32,
    /// 0: GELU, 1: SiLU.
    pub op: u32,
    pub grid_x: u32,
    pub _pad: u32,
}

/// `add.wgsl`'s `AddParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AddParams {
    pub n: u32,
    pub b_len: u32,
    pub grid_x: u32,
    pub _pad: u32,
}

/// `kv_store.wgsl`'s and `kv_store_f16.wgsl`'s `KvStoreParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct KvStoreParams {
    pub kv_dim: u32,
    pub n: u32,
    /// The cache is f16 pairs packed in u32 (`kv_store.wgsl`; the f16
    /// kernel always writes f16).
    pub f16: u32,
    pub write_pos: u32,
    pub grid_x: u32,
    pub _pad: [u32; 3],
}

/// `attention.wgsl`'s `AttnParams` (with either cache reader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AttnParams {
    pub n_tok: u32,
    pub q_row0: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_kv: u32,
    pub causal: u32,
    /// 0: no window.
    pub window: u32,
    pub scale: f32,
    /// 0: no soft-capping.
    pub softcap: f32,
    /// The cache is f16 pairs packed in u32 (`attention_kv.wgsl`; the
    /// native f16 reader ignores it).
    pub f16: u32,
    pub _pad: u32,
}

/// Largest head the attention kernel takes (its `qs` array).
pub const ATTN_MAX_HEAD_DIM: usize = 512;

const _: () = assert!(size_of::<MatmulParams>() == 32);
const _: () = assert!(size_of::<EmbedParams>() == 32);
const _: () = assert!(size_of::<NormParams>() == 16);
const _: () = assert!(size_of::<RopeParams>() == 32);
const _: () = assert!(size_of::<GluParams>() == 16);
const _: () = assert!(size_of::<AddParams>() == 16);
const _: () = assert!(size_of::<KvStoreParams>() == 32);
const _: () = assert!(size_of::<AttnParams>() == 48);
