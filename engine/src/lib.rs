//! Hearth, the library: run GGUF language models on your own hardware.
//!
//! - [`model`]: the architectures, each written once against the backend
//!   contract ([`backend::Backend`]); [`backend::cpu`] and
//!   [`backend::wgpu`] implement it.
//! - [`tokenizer`]: SentencePiece and byte-level BPE vocabularies from the
//!   file; [`chat`]: the file's chat template.
//! - [`session::Session`]: one sequence and its KV cache;
//!   [`generate::Generator`]: sample, stop and stream-decode, one token at
//!   a time; [`sampler`]: the samplers and stop criteria.
//! - [`perplexity`], [`logits`]: scoring text and comparing logits;
//!   [`tap`]: a forward pass's named intermediates, to compare with
//!   llama.cpp's layer by layer.
//!
//! The whole loop, in `examples/generate.rs`:
//! `cargo run --release -p hearth --example generate -- model.gguf "Hello"`.
//! The `hearth` command (`hearth-cli`) and the OpenAI-compatible server
//! (`hearth-server`) are built on this crate; it depends on neither.
pub mod backend;
pub mod batch;
pub mod chat;
pub mod constraint;
pub mod error;
pub mod generate;
pub mod logits;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod session;
pub mod tap;
pub mod tokenizer;

pub use error::{Error, Result};
