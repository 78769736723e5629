//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`): llama.cpp's
//! `llm_tokenizer_spm_session`.
//!
//! The text (spaces already escaped to `▁`) starts as one symbol per UTF-8
//! character. Every adjacent pair whose concatenation is a token goes into a
//! priority queue keyed by that token's score; the best pair is merged, and
//! the pairs it forms with its neighbours are queued. A symbol left that is
//! not a token falls back to one `<0xNN>` token per byte.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    /// Neighbours in the chain, `usize::MAX` for none.
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the pair when queued: a pair whose symbols have changed
    /// since is stale.
    size: usize,
}

impl Ord for Bigram {
    /// Highest score first; on a tie, the leftmost pair (llama.cpp's
    /// `llm_bigram_spm::comparator`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Tokenizes `text` (already escaped) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, ch)) in text.char_indices().enumerate() {
        let end = start + ch.len_utf8();
        symbols.push(Symbol {
            start,
            len: ch.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: if end == text.len() { NONE } else { i + 1 },
        });
    }
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::with_capacity(symbols.len());
    let try_add =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (symbols[left], symbols[right]);
            let pair = &bytes[l.start..r.start + r.len];
            if let Some(id) = vocab.lookup(pair) {
                queue.push(Bigram {
                    score: vocab.score(id),
                    left,
                    right,
                    size: pair.len(),
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
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
            // Every merge made a token, so a symbol that is not one is a
            // single character outside the vocabulary: spell it in bytes.
            None => {
                for &b in piece {
                    if let Some(id) = vocab.byte_fallback(b) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
