//! The engine's error type: every failure a user can cause or meet.

use hearth_gguf::GgmlType;

/// What went wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] hearth_gguf::GgufError),
    #[error("kernel: {0}")]
    Quant(#[from] hearth_kernels::quant::QuantError),
    #[error("kernel: {0}")]
    Shape(#[from] hearth_kernels::ops::ShapeError),
    #[error("unsupported architecture {arch:?}; Hearth runs: {supported}")]
    UnsupportedArchitecture {
        arch: String,
        supported: &'static str,
    },
    #[error("tensor {name:?} is missing from the model file")]
    MissingTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor {name:?} is stored as {ggml_type}, which the {backend} backend cannot compute with yet")]
    UnsupportedTensorType {
        name: String,
        ggml_type: GgmlType,
        backend: &'static str,
    },
    #[error("model hyper-parameter {key}: {reason}")]
    HyperParameter { key: String, reason: String },
    #[error("context overflow: sequence {seq} would reach position {needed}, but the context holds {n_ctx} tokens")]
    ContextOverflow {
        seq: usize,
        needed: usize,
        n_ctx: usize,
    },
    #[error("invalid batch: {0}")]
    Batch(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template that does not parse, rejects the conversation, or
    /// asks for more than its sandbox allows.
    #[error("chat template: {0}")]
    Chat(#[from] crate::chat::ChatError),
    /// The WebGPU backend: no adapter, a device request refused, a limit hit.
    #[error("gpu: {0}")]
    Gpu(String),
    #[error("sampler: {0}")]
    Sampler(#[from] crate::sampler::SamplerError),
    /// A token id the model's embedding has no row for.
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    TokenOutOfVocabulary { id: u32, n_vocab: usize },
    /// A KV cache that cannot be made as asked, or is asked for what it
    /// does not hold.
    #[error("KV cache: {0}")]
    Cache(String),
    /// A setting out of its range (a context of 0 tokens, 0 slots, ...).
    #[error("invalid setting: {0}")]
    Config(String),
    /// Writing out what was asked for (a [`Tap`](crate::tap::Tap)'s dump) failed.
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
    /// Loading the model file at `path` failed.
    #[error("{}: {source}", path.display())]
    Load {
        path: std::path::PathBuf,
        source: Box<Error>,
    },
}

impl Error {
    /// Operands of `op` whose shapes do not fit together.
    pub fn shape(op: &'static str, detail: String) -> Error {
        Error::Shape(hearth_kernels::ops::ShapeError { op, detail })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
