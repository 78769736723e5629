//! Cutting special tokens out of the text before tokenizing: llama.cpp's
//! `tokenizer_st_partition`.
//!
//! llama.cpp takes the special tokens longest first and, for each, cuts every
//! occurrence out of the text fragments left by the longer ones. Doing that
//! for each of Gemma's 6414 special tokens would scan the text 6414 times, so
//! a trie first finds which special tokens occur in the text at all (one pass,
//! as deep as the longest special token); only those run llama.cpp's loop, in
//! its order, which gives the same fragments.

use std::ops::Range;

use super::{attr, Vocab};

/// A piece of the text to tokenize, or a special token cut out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

#[derive(Default)]
struct Node {
    /// (byte, child node), sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index in `SpecialMatcher::order` of the token ending here.
    rank: Option<u32>,
}

pub(crate) struct SpecialMatcher {
    /// Special token ids, longest text first (ties by id).
    order: Vec<u32>,
    trie: Vec<Node>,
}

impl SpecialMatcher {
    /// `specials`: the ids of control, user-defined and unknown tokens.
    pub fn new(texts: &[Box<[u8]>], mut specials: Vec<u32>) -> SpecialMatcher {
        // A text that is not UTF-8 could match inside a character of the
        // input, and no &str can be cut there; such tokens cannot be typed.
        specials.retain(|&id| std::str::from_utf8(&texts[id as usize]).is_ok());
        specials.sort_by(|&a, &b| {
            texts[b as usize]
                .len()
                .cmp(&texts[a as usize].len())
                .then(a.cmp(&b))
        });
        let mut trie = vec![Node::default()];
        for (rank, &id) in specials.iter().enumerate() {
            let mut node = 0usize;
            for &b in texts[id as usize].iter() {
                node = match trie[node].children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => trie[node].children[i].1 as usize,
                    Err(i) => {
                        let child = trie.len();
                        trie.push(Node::default());
                        trie[node].children.insert(i, (b, child as u32));
                        child
                    }
                };
            }
            // Texts are unique, so each end node gets one rank.
            trie[node].rank = Some(rank as u32);
        }
        SpecialMatcher {
            order: specials,
            trie,
        }
    }

    /// Ranks of the special tokens that occur in `text`, sorted.
    fn present(&self, text: &[u8]) -> Vec<u32> {
        let mut found = Vec::new();
        if self.order.is_empty() {
            return found;
        }
        for start in 0..text.len() {
            let mut node = 0usize;
            for &b in &text[start..] {
                let children = &self.trie[node].children;
                match children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => node = children[i].1 as usize,
                    Err(_) => break,
                }
                found.extend(self.trie[node].rank);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Splits `text` into text fragments and special tokens. Control and
    /// unknown tokens are cut out only with `parse_special`; user-defined
    /// tokens always are (as Hugging Face's tokenizers do).
    pub fn partition(&self, vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let bytes = text.as_bytes();
        let mut fragments = vec![Fragment::Text(0..text.len())];
        for rank in self.present(bytes) {
            let id = self.order[rank as usize];
            let a = vocab.attr(id);
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let pat = &vocab.texts[id as usize][..];
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text(r) = f else {
                    next.push(f);
                    continue;
                };
                let (mut start, end) = (r.start, r.end);
                loop {
                    let Some(m) = find(&bytes[start..end], pat).map(|p| p + start) else {
                        if start < end {
                            next.push(Fragment::Text(start..end));
                        }
                        break;
                    };
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && c_isspace(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text(start..left_end));
                    }
                    next.push(Fragment::Token(id));
                    let mut right = m + pat.len();
                    if a & attr::RSTRIP != 0 {
                        while right < end && c_isspace(bytes[right]) {
                            right += 1;
                        }
                    }
                    start = right;
                }
            }
            fragments = next;
        }
        fragments
    }
}

/// C's `isspace` in the "C" locale, which llama.cpp uses for LSTRIP/RSTRIP
/// (it includes the vertical tab, unlike `u8::is_ascii_whitespace`).
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The first occurrence of `needle` (not empty) in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_finds_the_first_occurrence() {
        assert_eq!(find(b"abcabc", b"bc"), Some(1));
        assert_eq!(find(b"abcabc", b"cab"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(find(b"aaab", b"ab"), Some(2));
    }
}
