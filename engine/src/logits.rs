//! `hearth logits`: for each prompt, the token ids, the top logits at every
//! position and a greedy continuation, as JSON lines in exactly the format
//! of llama.cpp's reference file (shared/golden/.../reference.jsonl), so a
//! kernel change can be compared against llama.cpp or another build.

use serde_json::json;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::sampler::argmax;
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// One prompt's result.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptLogits {
    pub prompt: String,
    pub tokens: Vec<u32>,
    /// Per position, the `top` highest logits as `(id, logit)`, highest first.
    pub top_logits: Vec<Vec<(u32, f32)>>,
    pub greedy: Vec<u32>,
    pub greedy_text: String,
}

impl PromptLogits {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "prompt": self.prompt,
            "tokens": self.tokens,
            // Five decimals, as llama.cpp's reference files have them.
            "top_logits": self.top_logits.iter().map(|p| p.iter().map(|&(id, l)| json!([id, (f64::from(l) * 1e5).round() / 1e5])).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "greedy": self.greedy,
            "greedy_text": self.greedy_text,
        })
    }
}

/// The `n` highest values of `row` as `(index, value)`, highest first (ties:
/// lower index first).
pub fn top_n(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &v) in row.iter().enumerate() {
        if top.len() == n && top.last().is_some_and(|&(_, m)| v <= m) {
            continue;
        }
        let at = top.partition_point(|&(_, m)| m >= v);
        top.insert(at, (i as u32, v));
        top.truncate(n);
    }
    top
}

/// Undoes the escaping of a prompt file line: JSON's string escapes (`\n`,
/// `\t`, `\r`, `\"`, `\\`, `\/`, `\b`, `\f`, `\uXXXX` with surrogate pairs),
/// so a line may be a JSON string body as in the golden files. An invalid
/// escape is kept as written.
pub fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i + 1..];
        let (text, used): (Option<String>, usize) = match esc.chars().next() {
            Some('n') => (Some("\n".into()), 1),
            Some('t') => (Some("\t".into()), 1),
            Some('r') => (Some("\r".into()), 1),
            Some('b') => (Some("\u{8}".into()), 1),
            Some('f') => (Some("\u{c}".into()), 1),
            Some(c @ ('"' | '\\' | '/')) => (Some(c.to_string()), 1),
            Some('u') => match hex4(&esc[1..]) {
                Some(hi @ 0xD800..=0xDBFF) => match esc
                    .get(5..7)
                    .filter(|s| *s == "\\u")
                    .and_then(|_| hex4(&esc[7..]))
                {
                    Some(lo @ 0xDC00..=0xDFFF) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c).map(String::from), 11)
                    }
                    _ => (None, 0),
                },
                Some(c) => (char::from_u32(c).map(String::from), 5),
                None => (None, 0),
            },
            _ => (None, 0),
        };
        match text {
            Some(t) => out.push_str(&t),
            None => out.push('\\'),
        }
        rest = &esc[used..];
    }
    out.push_str(rest);
    out
}

fn hex4(s: &str) -> Option<u32> {
    s.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// Tokenizes `prompt` (BOS as the file says, special tokens parsed),
/// evaluates it from an empty cache and continues greedily for up to
/// `n_predict` tokens, stopping at an end-of-generation token.
pub fn prompt_logits<B: Backend>(
    session: &mut Session<'_, B>,
    tok: &Tokenizer,
    prompt: &str,
    top: usize,
    n_predict: usize,
) -> Result<PromptLogits> {
    let tokens = tok
        .encode(prompt, true, true)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    if tokens.is_empty() {
        return Err(Error::Tokenizer("the prompt has no tokens".into()));
    }
    session.truncate(0);
    let n_vocab = session.model().hparams.n_vocab;
    let logits = session.feed(&tokens, true, |_, _| {})?;
    let top_logits: Vec<_> = logits.chunks(n_vocab).map(|row| top_n(row, top)).collect();
    let mut next = argmax(&logits[logits.len() - n_vocab..])?;
    let mut greedy = Vec::new();
    while greedy.len() < n_predict && session.tokens().len() < session.n_ctx() {
        if tok.is_eog(next) {
            break;
        }
        greedy.push(next);
        if greedy.len() == n_predict || session.tokens().len() + 1 > session.n_ctx() {
            break;
        }
        let l = session.feed(&[next], false, |_, _| {})?;
        next = argmax(l)?;
    }
    Ok(PromptLogits {
        prompt: prompt.to_string(),
        greedy_text: tok.decode(&greedy),
        tokens,
        top_logits,
        greedy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_orders_and_breaks_ties_by_index() {
        let row = [1.0, 5.0, 3.0, 5.0, -1.0, 4.0];
        assert_eq!(top_n(&row, 3), vec![(1, 5.0), (3, 5.0), (5, 4.0)]);
        assert_eq!(top_n(&row, 10).len(), 6);
        assert!(top_n(&row, 0).is_empty());
    }

    #[test]
    fn unescape_handles_json_escapes() {
        assert_eq!(unescape(r"a\nb\tc\\n"), "a\nb\tc\\n");
        assert_eq!(unescape(r"end\"), "end\\");
        assert_eq!(unescape(r"\q"), "\\q");
        assert_eq!(
            unescape(r#"say \"hi\" \u00e9 \ud83e\udd99"#),
            "say \"hi\" é 🦙"
        );
        assert_eq!(unescape(r"\ud83e alone \u12"), "\\ud83e alone \\u12");
    }
}
