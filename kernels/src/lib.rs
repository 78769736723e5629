//! Hearth's compute kernels.
//!
//! Architecture invariant: this crate knows nothing of models or of the GGUF
//! file format. It sees typed slices of blocks and floats; the engine maps a
//! file's tensor types onto the formats here.
//!
//! - [`quant`]: the ggml block formats, one file each: the `#[repr(C)]` block,
//!   the scalar reference `dequantize`/`quantize`/`vec_dot`, then SIMD variants.
//! - [`ops`]: the rest of a transformer layer (norms, RoPE, softmax,
//!   activations, attention).

pub mod ops;
pub mod quant;
