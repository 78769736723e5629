//! What can go wrong reading a vocabulary or tokenizing with it.

/// A vocabulary the tokenizer cannot use, or a failure while tokenizing.
///
/// Every malformed vocabulary is one of these, never a panic: a GGUF file is
/// untrusted input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type.
    #[error("tokenizer metadata: {0}")]
    Gguf(#[from] hearth_gguf::GgufError),
    #[error(
        "tokenizer.ggml.model = {0:?} is not supported; supported: \"llama\" (SentencePiece), \"gpt2\" (byte-level BPE)"
    )]
    UnsupportedModel(String),
    /// [`Tokenizer::encode_with_plain`](super::Tokenizer::encode_with_plain)
    /// was given ranges that are not sorted, disjoint character ranges of
    /// the text.
    #[error("plain-text ranges: {0}")]
    PlainRange(String),
    #[error("tokenizer.ggml.pre = {name:?} is not supported; supported: {}", supported.join(", "))]
    UnsupportedPre {
        name: String,
        supported: Vec<&'static str>,
    },
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocabulary,
    #[error("tokenizer.ggml.tokens has {0} entries, more than 32-bit token ids can name")]
    TooManyTokens(usize),
    #[error("{key} has {found} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("token {text:?} is in the vocabulary twice, as ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{key} = {id} is not a token id of this vocabulary of {n_vocab} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: i64,
        n_vocab: usize,
    },
    #[error("{flag} is true but {key} is not set")]
    MissingSpecialToken {
        flag: &'static str,
        key: &'static str,
    },
    /// A pre-tokenizer pattern failed on this input (fancy-regex's
    /// backtracking limit); only pathological inputs reach it.
    #[error("pre-tokenizer {pre:?}: {message}")]
    PreTokenizer { pre: String, message: String },
    #[error("token id {id} is not in the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { id: u32, n_vocab: usize },
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;
