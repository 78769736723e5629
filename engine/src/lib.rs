//! Hearth's engine: model architectures written once against a backend
//! contract, the CPU backend, tokenizers, chat templates, sampling, and the
//! `hearth` command's subcommands.
pub mod backend;
pub mod batch;
pub mod chat;
pub mod error;
pub mod generate;
pub mod logits;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod session;
pub mod tokenizer;

pub use error::{Error, Result};
