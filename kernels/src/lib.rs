//! Hearth's compute kernels.
//!
//! Architecture invariant: this crate knows nothing of models or of the GGUF
//! file format. It sees typed slices of blocks and floats; the engine maps a
//! file's tensor types onto the formats here.
//!
//! - [`isa`]: the one run-time instruction-set choice ([`Isa::detect`], made
//!   once), whose tokens prove a SIMD arm safe to run.
//! - [`quant`]: the ggml block formats, one file each: the `#[repr(C)]` block,
//!   the scalar reference `dequantize`/`quantize`/`vec_dot`, then SIMD variants;
//!   [`quant::simd`] derives every format's tiles and their dispatch once.
//! - [`matmul`]: weights in any format times f32 activations, parallel
//!   over weight rows (GEMV for one token, blocked GEMM for many).
//! - `packed`: the prefill GEMM (and the Q8_0/Q5_0 GEMV) of Q8_0, Q5_0, Q4_K
//!   and Q6_K weights on AVX-512 VNNI, both operands packed once per call
//!   into the registers' layout.
//! - [`ops`]: the rest of a transformer layer (norms, RoPE, softmax,
//!   activations, attention).

pub mod isa;
pub mod matmul;
pub mod membw;
pub mod ops;
mod packed;
pub mod quant;

pub use isa::Isa;
