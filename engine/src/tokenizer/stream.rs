//! Decoding one token at a time: [`StreamDecoder`].

use super::{Result, Tokenizer, TokenizerError};

/// Decoding one token at a time, for printing text as it is generated.
///
/// A token may end in the middle of a UTF-8 character (byte-fallback tokens
/// `<0xE2>` `<0x96>` `<0x81>`, or a byte-level BPE token holding part of a
/// character), so bytes are held back until the character is complete. Bytes
/// that can never become UTF-8 are replaced by U+FFFD exactly as
/// `String::from_utf8_lossy` would replace them in the whole text, so the
/// concatenated output equals `String::from_utf8_lossy` of
/// [`Tokenizer::decode_bytes`]; that is [`Tokenizer::decode`] for
/// vocabularies without `clean_spaces`, which can only be applied to a whole
/// text.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    render_special: bool,
    first: bool,
    pending: Vec<u8>,
}

impl<'t> StreamDecoder<'t> {
    pub(crate) fn new(tok: &'t Tokenizer, render_special: bool) -> Self {
        StreamDecoder {
            tok,
            render_special,
            first: true,
            pending: Vec::new(),
        }
    }

    /// Adds token `id`; returns the text completed by it (often all of its
    /// piece, empty while a character is incomplete).
    pub fn push(&mut self, id: u32) -> Result<String> {
        if id as usize >= self.tok.n_vocab() {
            return Err(TokenizerError::TokenOutOfRange {
                id,
                n_vocab: self.tok.n_vocab(),
            });
        }
        let piece = self
            .tok
            .piece_for_output(id, self.first, self.render_special);
        self.first = false;
        self.pending.extend_from_slice(piece);
        Ok(self.take_complete())
    }

    /// The text held back, with an incomplete character at the end replaced
    /// by U+FFFD; the decoder starts afresh.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.first = true;
        out
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is UTF-8 up to `valid_up_to` by the error's contract.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Invalid whatever follows: one U+FFFD, as from_utf8_lossy.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        // An incomplete character at the end: wait for more.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }
}
