//! Parse and write GGUF files, the model format of llama.cpp and ggml.
//!
//! Architecture invariant: this crate knows nothing of kernels or models. It
//! turns bytes into a checked index of metadata and tensors, and back.
//!
//! - [`parse`] reads a file held in memory; [`open`] memory-maps one
//!   ([`open_with`] can read it into owned memory instead, or lock it). All
//!   return a [`Gguf`] whose tensor data are zero-copy slices of the file.
//! - Hostile input is expected: every count, length, offset and size is
//!   checked against the file before use, nothing is allocated from a count
//!   alone, and every rejection is a [`GgufError`] that says what and where.
//! - [`GgufWriter`] produces valid files (and, for tests, their layout).
//!
//! Format reference: the GGUF spec (ggml/docs/gguf.md) and llama.cpp's
//! `ggml/src/gguf.cpp`.

mod error;
mod file;
mod reader;
mod types;
mod value;
mod writer;

pub use error::{GgufError, Location, Result};
pub use file::{open, open_with, parse, Gguf, OpenOptions, Tensor};
pub use memmap2::Mmap;
pub use reader::{
    TensorInfo, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEY_LEN, MAX_TENSOR_NAME_LEN,
};
pub use types::{file_type_name, removed_type_name, GgmlType};
pub use value::{ArrayIter, ArrayRef, FromValue, Value, ValueRef, ValueType};
pub use writer::{GgufWriter, WriteError, WrittenLayout};
