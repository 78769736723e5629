//! Hearth's compute kernels.
//!
//! Architecture invariant: this crate knows nothing of models or of the GGUF
//! file format. It sees typed slices of blocks and floats; the engine maps a
//! file's tensor types onto the formats here.
//!
//! - [`quant`]: the ggml block formats, one file each: the `#[repr(C)]` block,
//!   the scalar reference `dequantize`/`quantize`/`vec_dot`, then SIMD variants.
//! - [`matmul`]: weights in any format times f32 activations, parallel
//!   over weight rows (GEMV for one token, blocked GEMM for many).
//! - `packed`: the prefill GEMM of Q8_0 and Q5_0 weights on AVX-512 VNNI,
//!   both operands packed once per call into the registers' layout.
//! - [`ops`]: the rest of a transformer layer (norms, RoPE, softmax,
//!   activations, attention).

pub mod isa;
pub mod matmul;
pub mod ops;
mod packed;
pub mod quant;

pub use isa::Isa;
