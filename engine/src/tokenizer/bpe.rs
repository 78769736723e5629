//! GPT-2 byte-level BPE (`tokenizer.ggml.model = "gpt2"`): llama.cpp's
//! `llm_tokenizer_bpe_session`.
//!
//! Each pre-token's bytes are first mapped to printable characters (GPT-2's
//! `bytes_to_unicode`), so the vocabulary and the merges hold only printable
//! text. The pre-token starts as one symbol per character; the adjacent pair
//! with the lowest merge rank (its line in `tokenizer.ggml.merges`) is merged
//! until no pair has a rank.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::Vocab;

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves,
/// the 68 others for U+0100 upwards, in byte order.
pub(crate) struct ByteCodec {
    encode: [char; 256],
    /// Indexed by code point, for the 324 code points `encode` produces.
    decode: Vec<Option<u8>>,
}

impl ByteCodec {
    pub fn new() -> ByteCodec {
        let mut encode = ['\0'; 256];
        let mut decode = vec![None; 256 + 68];
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let cp = if printable {
                u32::from(b)
            } else {
                n += 1;
                255 + n
            };
            // cp < 256 + 68, always a valid scalar value.
            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
            encode[usize::from(b)] = ch;
            decode[cp as usize] = Some(b);
        }
        ByteCodec { encode, decode }
    }

    /// Appends the printable spelling of `bytes` to `out`.
    pub fn encode_into(&self, bytes: &[u8], out: &mut String) {
        out.extend(bytes.iter().map(|&b| self.encode[usize::from(b)]));
    }

    /// The byte a character of the printable spelling stands for.
    pub fn decode(&self, ch: char) -> Option<u8> {
        self.decode.get(ch as usize).copied().flatten()
    }
}

/// `tokenizer.ggml.merges` as a rank per (left, right) pair.
///
/// Both halves are interned so that a lookup during merging hashes two byte
/// slices of the word and allocates nothing.
#[derive(Default)]
pub(crate) struct Merges {
    parts: HashMap<Box<[u8]>, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl Merges {
    /// Parses the merge lines "left right" in rank order. As in llama.cpp the
    /// separator is the first space after the first byte (so a left half may
    /// be a lone space), the first of duplicate pairs keeps its rank, and a
    /// line without a separator merges nothing.
    pub fn new(lines: &[&[u8]]) -> Merges {
        let mut m = Merges::default();
        for (rank, line) in lines.iter().enumerate() {
            let Some(sep) = line.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&line[..sep], &line[sep + 1..]);
            let l = m.intern(left);
            let r = m.intern(right);
            // `lines` came from a u64-counted array no longer than the file;
            // ranks past u32::MAX cannot occur in a file we can map.
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            m.ranks.entry((l, r)).or_insert(rank);
        }
        m
    }

    fn intern(&mut self, part: &[u8]) -> u32 {
        if let Some(&id) = self.parts.get(part) {
            return id;
        }
        let id = self.parts.len() as u32;
        self.parts.insert(part.into(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    fn rank(&self, left: &[u8], right: &[u8]) -> Option<u32> {
        let l = *self.parts.get(left)?;
        let r = *self.parts.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

impl Ord for Bigram {
    /// Lowest rank first; on a tie, the leftmost pair (llama.cpp's
    /// `llm_bigram_bpe::comparator`).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Tokenizes one pre-token `word` (in its printable spelling) and appends the
/// ids to `out`.
pub(crate) fn tokenize_word(
    vocab: &Vocab,
    merges: &Merges,
    ignore_merges: bool,
    word: &str,
    out: &mut Vec<u32>,
) {
    let bytes = word.as_bytes();
    if word.is_empty() {
        return;
    }
    if ignore_merges {
        if let Some(id) = vocab.lookup(bytes) {
            out.push(id);
            return;
        }
    }

    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    for (i, (start, ch)) in word.char_indices().enumerate() {
        let end = start + ch.len_utf8();
        symbols.push(Symbol {
            start,
            len: ch.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: if end == word.len() { NONE } else { i + 1 },
        });
    }

    let mut queue = BinaryHeap::with_capacity(symbols.len());
    let try_add =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (symbols[left], symbols[right]);
            let lt = &bytes[l.start..l.start + l.len];
            let rt = &bytes[r.start..r.start + r.len];
            if let Some(rank) = merges.rank(lt, rt) {
                queue.push(Bigram {
                    rank,
                    left,
                    right,
                    left_len: l.len,
                    right_len: r.len,
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Symbols keep their start, so equal lengths mean equal text: the
        // pair is still the one that was queued.
        if l.len == 0 || r.len == 0 || l.len != b.left_len || r.len != b.right_len {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = b.left;
        }
        let prev = symbols[b.left].prev;
        let next = symbols[b.left].next;
        try_add(&mut queue, &symbols, prev, b.left);
        try_add(&mut queue, &symbols, b.left, next);
    }

    let mut i = 0;
    while i != NONE {
        let s = symbols[i];
        let piece = &bytes[s.start..s.start + s.len];
        match vocab.lookup(piece) {
            Some(id) => out.push(id),
            // A merge whose result is not a token (a malformed vocabulary):
            // llama.cpp looks each byte up alone and drops those that are not
            // tokens.
            None => {
                for b in piece {
                    if let Some(id) = vocab.lookup(std::slice::from_ref(b)) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_codec_is_gpt2s_bytes_to_unicode() {
        let c = ByteCodec::new();
        let mut s = String::new();
        c.encode_into(b" \n!\xff\x00\xad", &mut s);
        // Space is byte 32, the 33rd non-printable byte: U+0100 + 32.
        assert_eq!(s, "\u{120}\u{10a}!\u{ff}\u{100}\u{143}");
        for b in 0..=255u8 {
            let mut s = String::new();
            c.encode_into(&[b], &mut s);
            let ch = s.chars().next().unwrap();
            assert_eq!(c.decode(ch), Some(b));
        }
        assert_eq!(c.decode('\u{144}'), None);
        assert_eq!(c.decode('€'), None);
    }

    #[test]
    fn merge_lines_split_at_the_first_space_after_the_first_byte() {
        let m = Merges::new(&[b"a b", b"  c", b"nospace", b"a b"]);
        assert_eq!(m.rank(b"a", b"b"), Some(0));
        assert_eq!(m.rank(b" ", b"c"), Some(1));
        assert_eq!(m.len(), 2);
    }
}
