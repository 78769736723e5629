//! Tokenizers read from GGUF metadata alone, matching llama.cpp
//! (`src/llama-vocab.cpp`, `src/unicode.cpp`).
//!
//! Two kinds, chosen by `tokenizer.ggml.model`:
//! - `"llama"`: SentencePiece-style BPE over characters, merged by token
//!   score, with `<0xNN>` byte fallback (`spm.rs`);
//! - `"gpt2"`: byte-level BPE, merged by `tokenizer.ggml.merges` rank, after a
//!   pre-tokenizer chosen by `tokenizer.ggml.pre` (`pre.rs`, `bpe.rs`).
//!
//! Before either runs, [`Tokenizer::encode`] cuts the text at special tokens
//! (control and user-defined tokens, llama.cpp's `tokenizer_st_partition`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = hearth_gguf::open("model.gguf")?;
//! let tok = hearth::tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<start_of_turn>user\nHi", true, true)?;
//! assert_eq!(tok.decode(&ids[1..]), "<start_of_turn>user\nHi");
//! # Ok(()) }
//! ```

mod bpe;
mod error;
mod pre;
mod special;
mod spm;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;

use hearth_gguf::{Gguf, GgufError};

pub use error::{Result, TokenizerError};
pub use pre::SUPPORTED_PRE;
pub use stream::StreamDecoder;

use bpe::{ByteCodec, Merges};
use pre::PreTokenizer;
use special::{Fragment, SpecialMatcher};

/// Token attributes, as llama.cpp's `llama_token_attr` bits.
mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    /// Whitespace before the token is dropped when it is cut out of text.
    pub const LSTRIP: u16 = 1 << 7;
    /// Whitespace after the token is dropped when it is cut out of text.
    pub const RSTRIP: u16 = 1 << 8;
}

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_gguf(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    fn attr(self) -> u16 {
        match self {
            TokenType::Undefined => 0,
            TokenType::Normal => attr::NORMAL,
            TokenType::Unknown => attr::UNKNOWN,
            TokenType::Control => attr::CONTROL,
            TokenType::UserDefined => attr::USER_DEFINED,
            TokenType::Unused => attr::UNUSED,
            TokenType::Byte => attr::BYTE,
        }
    }
}

/// Which algorithm a vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `tokenizer.ggml.model = "llama"`.
    SentencePiece,
    /// `tokenizer.ggml.model = "gpt2"`.
    BytePairEncoding,
}

/// The vocabulary: token texts, scores, attributes and the text → id map.
pub(crate) struct Vocab {
    texts: Vec<Box<[u8]>>,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    types: Vec<TokenType>,
    ids: HashMap<Box<[u8]>, u32>,
    /// SentencePiece byte fallback: `<0xNN>`, else the byte itself, else
    /// `<unk>`.
    byte_fallback: [Option<u32>; 256],
}

impl Vocab {
    pub(crate) fn lookup(&self, text: &[u8]) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub(crate) fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    pub(crate) fn byte_fallback(&self, b: u8) -> Option<u32> {
        self.byte_fallback[usize::from(b)]
    }

    fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.texts.len()
    }
}

enum Model {
    Spm,
    Bpe(Box<BpeModel>),
}

struct BpeModel {
    pre: PreTokenizer,
    merges: Merges,
    codec: ByteCodec,
    ignore_merges: bool,
}

/// Ids of the special tokens llama.cpp tracks; `None` when the vocabulary has
/// none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
}

/// A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata (an
/// example: the [module docs](self)).
pub struct Tokenizer {
    kind: TokenizerKind,
    pre_name: String,
    vocab: Vocab,
    model: Model,
    special: SpecialTokens,
    /// End-of-generation tokens, sorted.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    matcher: SpecialMatcher,
    /// Every token's text as decoded (llama.cpp's `cache_token_to_piece`):
    /// `pieces[piece_ends[id - 1]..piece_ends[id]]`.
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    /// See [`Tokenizer::max_token_bytes`].
    max_token_bytes: usize,
}

// A tokenizer is shared between threads (a server's requests).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
};

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.vocab.len())
            .field("special", &self.special)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("add_space_prefix", &self.add_space_prefix)
            .field("clean_spaces", &self.clean_spaces)
            .finish_non_exhaustive()
    }
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";

/// Texts llama.cpp takes as end-of-turn when the file names no EOT token.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts llama.cpp takes as end-of-generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Reads a special-token id: absent is `None`; present but not a token id is
/// an error (llama.cpp only warns and keeps its default, but a file that names
/// a token it does not have is broken).
fn special_id<B: Deref<Target = [u8]>>(
    g: &Gguf<B>,
    key: &'static str,
    n_vocab: usize,
) -> Result<Option<u32>> {
    let Some(id) = g.get_opt_as::<i64>(key)? else {
        return Ok(None);
    };
    match u32::try_from(id) {
        Ok(v) if (v as usize) < n_vocab => Ok(Some(v)),
        _ => Err(TokenizerError::SpecialIdOutOfRange { key, id, n_vocab }),
    }
}

/// `tokenizer.ggml.scores`, which llama.cpp accepts as f32 or i32.
fn read_scores<B: Deref<Target = [u8]>>(g: &Gguf<B>) -> Result<Option<Vec<f32>>> {
    if g.get(KEY_SCORES).is_none() {
        return Ok(None);
    }
    match g.get_f32_array(KEY_SCORES) {
        Ok(s) => Ok(Some(s)),
        Err(GgufError::WrongType { .. }) => {
            let ints = g.get_i32_array(KEY_SCORES)?;
            Ok(Some(ints.into_iter().map(|v| v as f32).collect()))
        }
        Err(e) => Err(e.into()),
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes, as llama.cpp's
    /// `llama_vocab::impl::load` does.
    pub fn from_gguf<B: Deref<Target = [u8]>>(g: &Gguf<B>) -> Result<Tokenizer> {
        let model_name = g.get_str(KEY_MODEL)?;
        let kind = match model_name {
            "llama" => TokenizerKind::SentencePiece,
            "gpt2" => TokenizerKind::BytePairEncoding,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let pre_name = g.get_opt_as::<&str>(KEY_PRE)?.unwrap_or("default");
        let pre_spec = match kind {
            TokenizerKind::SentencePiece => None,
            TokenizerKind::BytePairEncoding => {
                Some(
                    pre::spec(pre_name).ok_or_else(|| TokenizerError::UnsupportedPre {
                        name: pre_name.to_string(),
                        supported: SUPPORTED_PRE.to_vec(),
                    })?,
                )
            }
        };

        let tokens = g.get_bytes_array(KEY_TOKENS)?;
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        if u32::try_from(n).is_err() || n > i32::MAX as usize {
            return Err(TokenizerError::TooManyTokens(n));
        }
        let mut scores = read_scores(g)?.unwrap_or_else(|| vec![0.0; n]);
        if scores.len() != n {
            return Err(TokenizerError::LengthMismatch {
                key: KEY_SCORES,
                expected: n,
                found: scores.len(),
            });
        }
        // -0.0 and 0.0 tie in llama.cpp's comparison; make them tie here too.
        for s in &mut scores {
            if *s == 0.0 {
                *s = 0.0;
            }
        }
        let types: Vec<TokenType> = match g.get(KEY_TYPES) {
            None => vec![TokenType::Normal; n],
            Some(_) => {
                let raw = g.get_i32_array(KEY_TYPES)?;
                if raw.len() != n {
                    return Err(TokenizerError::LengthMismatch {
                        key: KEY_TYPES,
                        expected: n,
                        found: raw.len(),
                    });
                }
                raw.into_iter().map(TokenType::from_gguf).collect()
            }
        };

        let mut texts: Vec<Box<[u8]>> = Vec::with_capacity(n);
        let mut ids: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let i = i as u32;
            // An empty token could never be produced and would match
            // everywhere as a special token; llama.cpp renames it the same way.
            let text: Box<[u8]> = if t.is_empty() {
                format!("[EMPTY_{i}]").into_bytes().into()
            } else {
                (*t).into()
            };
            if let Some(&first) = ids.get(&text) {
                return Err(TokenizerError::DuplicateToken {
                    text: String::from_utf8_lossy(&text).into_owned(),
                    first,
                    second: i,
                });
            }
            ids.insert(text.clone(), i);
            texts.push(text);
        }
        let mut attrs: Vec<u16> = types.iter().map(|t| t.attr()).collect();

        let mut vocab = Vocab {
            texts,
            scores,
            attrs: Vec::new(),
            types,
            ids,
            byte_fallback: [None; 256],
        };

        // Defaults of llama.cpp, dropped when outside this vocabulary.
        let default = |id: u32| (id < n as u32).then_some(id);
        let mut special = match kind {
            TokenizerKind::SentencePiece => SpecialTokens {
                bos: default(1),
                eos: default(2),
                unk: default(0),
                ..SpecialTokens::default()
            },
            TokenizerKind::BytePairEncoding => SpecialTokens {
                bos: if pre_spec.as_ref().is_some_and(|s| s.no_default_bos) {
                    None
                } else {
                    default(11)
                },
                eos: default(11),
                ..SpecialTokens::default()
            },
        };
        let keys: [(&'static str, &mut Option<u32>); 8] = [
            (KEY_BOS, &mut special.bos),
            (KEY_EOS, &mut special.eos),
            ("tokenizer.ggml.eot_token_id", &mut special.eot),
            ("tokenizer.ggml.eom_token_id", &mut special.eom),
            ("tokenizer.ggml.unknown_token_id", &mut special.unk),
            // sic: llama.cpp's key is spelled "seperator".
            ("tokenizer.ggml.seperator_token_id", &mut special.sep),
            ("tokenizer.ggml.padding_token_id", &mut special.pad),
            ("tokenizer.ggml.mask_token_id", &mut special.mask),
        ];
        for (key, slot) in keys {
            if let Some(id) = special_id(g, key, n)? {
                *slot = Some(id);
            }
        }

        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces) = match kind {
            TokenizerKind::SentencePiece => (true, false, true, false),
            TokenizerKind::BytePairEncoding => {
                let s = pre_spec.as_ref().map(|s| (s.add_bos, s.clean_spaces));
                let (bos, clean) = s.unwrap_or((false, true));
                (bos, false, false, clean)
            }
        };
        if let Some(v) = g.get_opt_as::<bool>(KEY_ADD_PREFIX)? {
            add_space_prefix = v;
        }
        if let Some(v) = g.get_opt_as::<bool>(KEY_ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = g.get_opt_as::<bool>(KEY_ADD_EOS)? {
            add_eos = v;
        }
        if add_bos && special.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: KEY_ADD_BOS,
                key: KEY_BOS,
            });
        }
        if add_eos && special.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: KEY_ADD_EOS,
                key: KEY_EOS,
            });
        }

        // End-of-turn and end-of-generation tokens found by their text, and
        // marked as control tokens (llama.cpp's "auto-detect special tokens").
        let by_text = |t: &str| vocab.lookup(t.as_bytes());
        if special.eot.is_none() {
            special.eot = EOT_TEXTS.iter().filter_map(|t| by_text(t)).min();
            attrs_or(&mut attrs, special.eot, attr::CONTROL);
        }
        if special.eom.is_none() {
            special.eom = by_text("<|eom_id|>");
            attrs_or(&mut attrs, special.eom, attr::CONTROL);
        }
        let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| by_text(t)).collect();
        for &id in &eog {
            attrs[id as usize] |= attr::CONTROL;
        }
        eog.extend(special.eos);
        eog.extend(special.eot);
        eog.extend(special.eom);
        eog.sort_unstable();
        eog.dedup();
        let in_eog =
            |eog: &[u32], t: &str| by_text(t).is_some_and(|id| eog.binary_search(&id).is_ok());
        // gpt-oss and Solar Open: "<|end|>" ends a message, not the generation.
        if (in_eog(&eog, "<|return|>") && in_eog(&eog, "<|call|>") && in_eog(&eog, "<|end|>"))
            || (in_eog(&eog, "<|calls|>") && in_eog(&eog, "<|flush|>") && in_eog(&eog, "<|end|>"))
        {
            if let Some(end) = by_text("<|end|>") {
                eog.retain(|&id| id != end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        // Gemma 4 and PaddleOCR: "</s>" is a normal token there.
        if in_eog(&eog, "<|tool_response>") && in_eog(&eog, "</s>") {
            if let Some(s) = by_text("</s>") {
                eog.retain(|&id| id != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = by_text(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }

        let special_mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        // Phi-3's special tokens swallow the whitespace after them, as its
        // Hugging Face tokenizer does (llama.cpp sets this by model name).
        let general_name = g
            .get_opt_as::<&str>("general.name")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_lowercase();
        if general_name.contains("phi-3") || general_name.contains("phi3") {
            for a in attrs.iter_mut() {
                if *a & special_mask != 0 {
                    *a |= attr::RSTRIP;
                }
            }
            if let Some(id) = by_text("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = by_text(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }
        vocab.attrs = attrs;

        if kind == TokenizerKind::SentencePiece {
            for b in 0..=255u8 {
                vocab.byte_fallback[usize::from(b)] = vocab
                    .lookup(format!("<0x{b:02X}>").as_bytes())
                    .or_else(|| vocab.lookup(&[b]))
                    .or(special.unk);
            }
        }

        let model = match pre_spec {
            None => Model::Spm,
            Some(spec) => {
                let merges = g.get_bytes_array(KEY_MERGES)?;
                Model::Bpe(Box::new(BpeModel {
                    pre: PreTokenizer::new(pre_name, &spec)?,
                    merges: Merges::new(&merges),
                    codec: ByteCodec::new(),
                    ignore_merges: spec.ignore_merges,
                }))
            }
        };

        let specials: Vec<u32> = (0..n as u32)
            .filter(|&id| vocab.attr(id) & special_mask != 0)
            .collect();
        let matcher = SpecialMatcher::new(&vocab.texts, specials);

        let mut tok = Tokenizer {
            kind,
            pre_name: pre_name.to_string(),
            vocab,
            model,
            special,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            matcher,
            pieces: Vec::new(),
            max_token_bytes: 0,
            piece_ends: Vec::new(),
        };
        tok.build_pieces();
        Ok(tok)
    }

    /// Fills the decoded text of every token (llama.cpp's `token_to_piece`
    /// with `special = true`).
    fn build_pieces(&mut self) {
        let mut pieces = Vec::with_capacity(self.vocab.texts.iter().map(|t| t.len()).sum());
        let mut ends = Vec::with_capacity(self.vocab.len());
        for id in 0..self.vocab.len() {
            let text = &self.vocab.texts[id];
            let a = self.vocab.attrs[id];
            if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                pieces.extend_from_slice(text);
            } else if a & attr::NORMAL != 0 {
                match &self.model {
                    Model::Spm => unescape_spaces(text, &mut pieces),
                    Model::Bpe(bpe) => decode_byte_level(&bpe.codec, text, &mut pieces),
                }
            } else if a & attr::BYTE != 0 {
                match parse_byte_token(text) {
                    Some(b) => pieces.push(b),
                    None => pieces.extend_from_slice(text),
                }
            }
            // Unused and undefined tokens decode to nothing, as in llama.cpp.
            ends.push(pieces.len());
        }
        // A token stands for at most its decoded piece (byte-level BPE,
        // SPM's spaces); one that decodes to nothing (unused) at most for
        // its text (escapes are longer than what they stand for); an SPM
        // `<unk>` for one unknown character (at most 4 bytes of UTF-8).
        let mut start = 0;
        let mut most = 4;
        for (id, &end) in ends.iter().enumerate() {
            let len = match end - start {
                0 => self.vocab.texts[id].len(),
                n => n,
            };
            most = most.max(len);
            start = end;
        }
        self.max_token_bytes = most;
        self.pieces = pieces;
        self.piece_ends = ends;
    }

    /// The most bytes of input text one token can stand for: a text of more
    /// than `n * max_token_bytes()` bytes has more than `n` tokens, which a
    /// server can tell before it spends time tokenizing it.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Tokenizes `text`.
    ///
    /// With `add_special`, BOS (and EOS) are added when the file asks for them
    /// (`add_bos_token`, `add_eos_token`). With `parse_special`, the text of a
    /// control token (`<start_of_turn>`) becomes that token; user-defined
    /// tokens are cut out of the text either way, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_at_most(text, add_special, parse_special, usize::MAX)
    }

    /// [`encode`](Self::encode), but it stops early once it has more than
    /// `limit` tokens: a result longer than `limit` is then incomplete, and
    /// says only that the text does not fit in `limit` tokens. A server that
    /// will refuse such a prompt anyway need not tokenize megabytes of it.
    ///
    /// It stops between pieces it tokenizes on their own: BPE pre-tokenizer
    /// words, special tokens, and SentencePiece's texts between special
    /// tokens (SentencePiece tokenizes each such text as a whole, so a long
    /// one is tokenized in full before the count is looked at).
    pub fn encode_at_most(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        limit: usize,
    ) -> Result<Vec<u32>> {
        let fragments = self.matcher.partition(&self.vocab, text, parse_special);
        self.encode_fragments(text, fragments, add_special, limit)
    }

    /// Tokenizes `text` with special-token text parsed, except inside the
    /// byte ranges `plain` (sorted, disjoint, on character boundaries), where
    /// it stays text: a rendered chat prompt whose message contents must not
    /// become the template's markers (a user typing `<|im_start|>system`
    /// would otherwise open a real system turn). Text on both sides of a
    /// range boundary is tokenized as one piece, so without special-token
    /// text in the ranges the ids are those of `encode(text, add_special,
    /// true)`.
    pub fn encode_with_plain(
        &self,
        text: &str,
        add_special: bool,
        plain: &[std::ops::Range<usize>],
    ) -> Result<Vec<u32>> {
        self.encode_with_plain_at_most(text, add_special, plain, usize::MAX)
    }

    /// [`encode_with_plain`](Self::encode_with_plain), stopping early as
    /// [`encode_at_most`](Self::encode_at_most) does.
    pub fn encode_with_plain_at_most(
        &self,
        text: &str,
        add_special: bool,
        plain: &[std::ops::Range<usize>],
        limit: usize,
    ) -> Result<Vec<u32>> {
        let mut fragments: Vec<Fragment> = Vec::new();
        let push = |f: Fragment, fragments: &mut Vec<Fragment>| match (fragments.last_mut(), f) {
            (Some(Fragment::Text(prev)), Fragment::Text(r)) if prev.end == r.start => {
                prev.end = r.end
            }
            (_, f) => fragments.push(f),
        };
        let mut at = 0;
        let segment =
            |range: std::ops::Range<usize>, parse: bool, fragments: &mut Vec<Fragment>| {
                let Some(sub) = text.get(range.clone()) else {
                    return Err(TokenizerError::PlainRange(format!(
                        "plain range {range:?} is not on character boundaries of the text"
                    )));
                };
                for f in self.matcher.partition(&self.vocab, sub, parse) {
                    push(
                        match f {
                            Fragment::Text(r) => {
                                Fragment::Text(r.start + range.start..r.end + range.start)
                            }
                            t => t,
                        },
                        fragments,
                    );
                }
                Ok(())
            };
        for r in plain {
            if r.start < at || r.end < r.start || r.end > text.len() {
                return Err(TokenizerError::PlainRange(format!(
                    "plain ranges must be sorted, disjoint and inside the text ({r:?})"
                )));
            }
            segment(at..r.start, true, &mut fragments)?;
            segment(r.clone(), false, &mut fragments)?;
            at = r.end;
        }
        segment(at..text.len(), true, &mut fragments)?;
        self.encode_fragments(text, fragments, add_special, limit)
    }

    fn encode_fragments(
        &self,
        text: &str,
        fragments: Vec<Fragment>,
        add_special: bool,
        limit: usize,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity((text.len() / 3).min(limit) + 2);
        if add_special && self.add_bos {
            out.extend(self.special.bos);
        }
        match &self.model {
            Model::Spm => {
                // A space is prefixed to the text at the start and after each
                // special token, when the file asks for it.
                let mut prev_special = true;
                let mut buf = String::new();
                for f in fragments {
                    if out.len() > limit {
                        return Ok(out);
                    }
                    match f {
                        Fragment::Text(r) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for ch in text[r].chars() {
                                buf.push(if ch == ' ' { '▁' } else { ch });
                            }
                            spm::tokenize(&self.vocab, &buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                let BpeModel {
                    pre,
                    merges,
                    codec,
                    ignore_merges,
                } = &**bpe;
                let mut word = String::new();
                for f in fragments {
                    if out.len() > limit {
                        return Ok(out);
                    }
                    match f {
                        Fragment::Text(r) => {
                            let fragment = &text[r];
                            for piece in pre.split(fragment)? {
                                if out.len() > limit {
                                    return Ok(out);
                                }
                                word.clear();
                                codec.encode_into(fragment[piece].as_bytes(), &mut word);
                                bpe::tokenize_word(
                                    &self.vocab,
                                    merges,
                                    *ignore_merges,
                                    &word,
                                    &mut out,
                                );
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        Ok(out)
    }

    /// The bytes token `id` decodes to. Control and user-defined tokens give
    /// their text; a byte token gives its one byte, which may be part of a
    /// UTF-8 sequence.
    pub fn token_to_piece(&self, id: u32) -> Result<&[u8]> {
        self.piece(id).ok_or(TokenizerError::TokenOutOfRange {
            id,
            n_vocab: self.vocab.len(),
        })
    }

    fn piece(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let end = *self.piece_ends.get(i)?;
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        self.pieces.get(start..end)
    }

    /// The piece as the decoders emit it: `render_special = false` drops
    /// control and unknown tokens; the first token of a text loses one leading
    /// space when the tokenizer adds one (`add_space_prefix`).
    pub(crate) fn piece_for_output(&self, id: u32, first: bool, render_special: bool) -> &[u8] {
        let Some(p) = self.piece(id) else {
            return "\u{FFFD}".as_bytes();
        };
        if !render_special && self.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return &[];
        }
        if first && self.add_space_prefix {
            p.strip_prefix(b" ").unwrap_or(p)
        } else {
            p
        }
    }

    /// The bytes of `ids` decoded, without the clean-up of [`decode`]: what a
    /// [`StreamDecoder`] produces. An id outside the vocabulary decodes to
    /// U+FFFD.
    ///
    /// [`decode`]: Tokenizer::decode
    pub fn decode_bytes(&self, ids: &[u32], render_special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            out.extend_from_slice(self.piece_for_output(id, i == 0, render_special));
        }
        out
    }

    /// Decodes `ids` to text, special tokens included, as llama.cpp's
    /// `llama_detokenize(remove_special = false, unparse_special = true)`:
    /// the leading space the tokenizer added is removed, and vocabularies
    /// that ask for it get llama.cpp's `clean_spaces` (" ," → ","). Bytes that
    /// are not UTF-8 (an incomplete sequence at the end) become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = self.decode_bytes(ids, true);
        if self.clean_spaces {
            clean_spaces(&mut bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// A decoder that takes one id at a time and returns text as soon as it
    /// is complete UTF-8, special tokens rendered.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self, true)
    }

    /// Like [`stream_decoder`](Self::stream_decoder); with
    /// `render_special = false`, control tokens produce no text.
    pub fn stream_decoder_with(&self, render_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, render_special)
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// `tokenizer.ggml.pre` ("default" when absent).
    pub fn pre(&self) -> &str {
        &self.pre_name
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn bos(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.special.eos
    }

    pub fn eot(&self) -> Option<u32> {
        self.special.eot
    }

    /// Whether generation stops at `id` (EOS, EOT, EOM and the tokens
    /// llama.cpp recognises by their text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether [`encode`](Self::encode) with `add_special` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether [`encode`](Self::encode) with `add_special` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether [`decode`](Self::decode) cleans spaces before punctuation.
    pub fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }

    /// The token's text as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.vocab.texts.get(id as usize).map(|t| &t[..])
    }

    /// The token's type as stored in the file.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.types.get(id as usize).copied()
    }

    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.lookup(text.as_bytes())
    }

    /// Whether `id` is a control token (after llama.cpp's auto-detection of
    /// end-of-turn tokens).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// Number of merges (byte-level BPE; 0 for SentencePiece).
    pub fn n_merges(&self) -> usize {
        match &self.model {
            Model::Spm => 0,
            Model::Bpe(bpe) => bpe.merges.len(),
        }
    }
}

fn attrs_or(attrs: &mut [u16], id: Option<u32>, bits: u16) {
    if let Some(a) = id.and_then(|id| attrs.get_mut(id as usize)) {
        *a |= bits;
    }
}

/// `▁` (U+2581) back to a space.
fn unescape_spaces(text: &[u8], out: &mut Vec<u8>) {
    const ESC: &[u8] = "▁".as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(ESC) {
            out.push(b' ');
            i += ESC.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
}

/// A byte-level token's characters back to bytes (llama.cpp's
/// `llama_decode_text`, including its marker for a character that stands for
/// no byte).
fn decode_byte_level(codec: &ByteCodec, text: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(text);
    for ch in text.chars() {
        match codec.decode(ch) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// The byte of a `<0xNN>` token.
fn parse_byte_token(text: &[u8]) -> Option<u8> {
    let hex = text.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// llama.cpp's `clean_spaces` passes in `llama_detokenize`, byte for byte
/// (they mirror Hugging Face's `clean_up_tokenization`).
fn clean_spaces(t: &mut Vec<u8>) {
    // " ?", " !", " .", " ,": drop the space.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);

    // " ' ": drop both spaces around a lone apostrophe.
    let n = t.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    t.truncate(total);

    // " 's", " 'm", " 're", " 've": drop the space.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if i + 2 < n {
                let x2 = t[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        clean_spaces(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn clean_spaces_matches_llama_cpp() {
        assert_eq!(cleaned("Hello , world !"), "Hello, world!");
        assert_eq!(cleaned("a ' b"), "a'b");
        assert_eq!(
            cleaned("it 's I 'm we 're you 've"),
            "it's I'm we're you've"
        );
        assert_eq!(cleaned("don 't we 'll"), "don 't we 'll");
        assert_eq!(cleaned(" ."), ".");
        assert_eq!(cleaned(""), "");
    }

    #[test]
    fn byte_tokens_parse_only_when_well_formed() {
        assert_eq!(parse_byte_token(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_token(b"<0xff>"), Some(255));
        assert_eq!(parse_byte_token(b"<0x1>"), None);
        assert_eq!(parse_byte_token(b"<0xZZ>"), None);
        assert_eq!(parse_byte_token(b"0x0A"), None);
    }
}
