//! Fill-in-the-middle: the vocabulary's FIM tokens, found once at load, and
//! the prompt llama-server builds of a prefix, a suffix and extra context
//! (`format_infill` in llama.cpp's `tools/server/utils.hpp`), for
//! `/v1/completions` with `suffix` and llama-server's `/infill`.

use std::ops::Deref;
use std::sync::Arc;

use hearth_gguf::Gguf;

use super::api::ApiError;
use super::routes::{blocking, check_prompt_bytes};
use super::Ready;
use hearth::tokenizer::Tokenizer;

/// The FIM tokens of a vocabulary: prefix, suffix and middle are needed;
/// the repository and file-separator tokens, where the model has them, lay
/// out `input_extra` as the repo-level pattern of Qwen2.5-Coder
/// (arXiv 2409.12186).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fim {
    pub pre: u32,
    pub suf: u32,
    pub mid: u32,
    pub rep: Option<u32>,
    pub sep: Option<u32>,
}

/// Each FIM token's GGUF key and, where the file lacks the key, the texts
/// llama.cpp looks for in the vocabulary (`llama_vocab::impl::load`).
const PRE: (&str, &[&str]) = (
    "tokenizer.ggml.fim_pre_token_id",
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
    ],
);
const SUF: (&str, &[&str]) = (
    "tokenizer.ggml.fim_suf_token_id",
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
    ],
);
const MID: (&str, &[&str]) = (
    "tokenizer.ggml.fim_mid_token_id",
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
    ],
);
const REP: (&str, &[&str]) = (
    "tokenizer.ggml.fim_rep_token_id",
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
);
const SEP: (&str, &[&str]) = (
    "tokenizer.ggml.fim_sep_token_id",
    &["<|file_sep|>", "<file_sep>", "<fim-sep>"],
);

impl Fim {
    /// The FIM tokens of the model, or `None` when it lacks any of
    /// prefix, suffix and middle. A key naming an id outside the
    /// vocabulary counts as absent.
    pub fn find<B: Deref<Target = [u8]>>(g: &Gguf<B>, tok: &Tokenizer) -> Option<Fim> {
        let n_vocab = tok.n_vocab();
        let find = |(key, texts): (&str, &[&str])| match g.get_opt_as::<u32>(key).ok().flatten() {
            Some(id) if (id as usize) < n_vocab => Some(id),
            _ => texts.iter().find_map(|t| tok.token_id(t)),
        };
        Some(Fim {
            pre: find(PRE)?,
            suf: find(SUF)?,
            mid: find(MID)?,
            rep: find(REP),
            sep: find(SEP),
        })
    }
}

/// A file of `input_extra`: `{"filename", "text"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub filename: String,
    pub text: String,
}

/// The sizes llama-server fits the parts into: the prefix and suffix share
/// one batch 3:1, extra context fills what the context has left beside the
/// batch and twice the tokens to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub n_batch: usize,
    pub n_ctx: usize,
    pub n_predict: usize,
}

/// llama-server's infill prompt:
///
/// ```text
/// [FIM_REP]myproject\n [FIM_SEP]file0\n text0 ... [FIM_SEP]filename\n
/// [BOS] [FIM_PRE] prefix prompt [FIM_SUF] suffix [FIM_MID]
/// ```
///
/// without the repository lines when the model lacks those tokens (each
/// extra chunk is then preceded by `\n\n--- snippet ---\n\n`), keeping the
/// end of the prefix, the start of the suffix and the end of the extra
/// context when they do not fit `budget`. `encode` tokenizes without BOS
/// and with special-token text as plain text; `bos` is the BOS to add, if
/// the model adds one. `parts.prompt` is the start of the middle.
pub(crate) fn infill_prompt<E>(
    fim: &Fim,
    bos: Option<u32>,
    budget: Budget,
    parts: &Parts,
    mut encode: impl FnMut(&str) -> Result<Vec<u32>, E>,
) -> Result<Vec<u32>, E> {
    let mut extra_tokens = Vec::new();
    if let Some(rep) = fim.rep {
        extra_tokens.push(rep);
        extra_tokens.extend(encode("myproject\n")?);
    }
    for c in &parts.extra {
        match fim.sep {
            Some(sep) => {
                extra_tokens.push(sep);
                extra_tokens.extend(encode(&format!("{}\n", c.filename))?);
            }
            None => extra_tokens.extend(encode("\n\n--- snippet ---\n\n")?),
        }
        extra_tokens.extend(encode(&c.text)?);
    }
    if let Some(sep) = fim.sep {
        extra_tokens.push(sep);
        extra_tokens.extend(encode("filename\n")?);
    }
    let mut pre = encode(&parts.prefix)?;
    let mut suf = encode(&parts.suffix)?;
    let prompt = encode(&parts.prompt)?;
    let quarter = budget.n_batch / 4;
    let pre_take = pre.len().min(3 * quarter);
    let suf_take = suf.len().min(quarter.saturating_sub(2 + prompt.len()));
    let extra_take = extra_tokens.len().min(
        budget
            .n_ctx
            .saturating_sub(budget.n_batch)
            .saturating_sub(budget.n_predict.saturating_mul(2)),
    );
    pre.drain(..pre.len() - pre_take);
    suf.truncate(suf_take);

    let mut out = Vec::with_capacity(extra_take + pre.len() + suf.len() + prompt.len() + 5);
    // llama-server puts the extra context before the BOS.
    out.extend_from_slice(&extra_tokens[extra_tokens.len() - extra_take..]);
    out.extend(bos);
    out.push(fim.pre);
    out.extend(pre);
    out.extend(prompt);
    out.push(fim.suf);
    out.extend(suf);
    out.push(fim.mid);
    Ok(out)
}

/// Why a model cannot infill, after "this model".
const NO_FIM: &str = " has no fill-in-the-middle tokens (no tokenizer.ggml.fim_pre_token_id, \
     fim_suf_token_id and fim_mid_token_id in its GGUF, nor <|fim_prefix|>, <fim_prefix> or \
     similar tokens in its vocabulary): it cannot infill";

/// What an infill request gives: the text before and after the cursor,
/// other files, and text to start the middle with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parts {
    pub prefix: String,
    pub suffix: String,
    pub extra: Vec<Chunk>,
    pub prompt: String,
}

impl Parts {
    /// Bytes of text in all the parts.
    pub fn bytes(&self) -> usize {
        let extra: usize = self
            .extra
            .iter()
            .map(|c| c.text.len() + c.filename.len())
            .sum();
        self.prefix.len() + self.suffix.len() + self.prompt.len() + extra
    }
}

/// The infill prompt of `parts` for the served model ([`infill_prompt`]),
/// with llama-server's batch of 2048 tokens (half the context if that is
/// less) for the prefix and suffix. A model without FIM tokens is a 400
/// naming `param`; text that cannot fit the context is refused by its
/// length before it is tokenized (`param`: the field a refusal names, if
/// any). Parts are tokenized without BOS, their
/// special-token text as plain text.
pub(crate) async fn encode(
    ready: &Ready,
    parts: Parts,
    n_predict: usize,
    param: Option<&'static str>,
) -> Result<Vec<u32>, ApiError> {
    let Some(fim) = ready.fim else {
        let why = "this model";
        return Err(match param {
            Some(p) => ApiError::param(p, format!("{why}{NO_FIM}")),
            None => ApiError::bad_request(format!("{why}{NO_FIM}")),
        });
    };
    let budget = Budget {
        n_batch: (ready.n_ctx / 2).min(2048),
        n_ctx: ready.n_ctx,
        n_predict,
    };
    // Only the end of the prefix and the start of the suffix are used:
    // cut them by bytes first, so that a whole file sent around the
    // cursor is neither refused nor tokenized in full. A token spans at
    // most `max_token_bytes` bytes, so what is kept has more tokens than
    // are taken (one more than that, for the word the cut splits).
    let most = ready.tok.max_token_bytes().max(1);
    let quarter = budget.n_batch / 4;
    let mut parts = parts;
    parts.prefix = tail(&parts.prefix, (3 * quarter + 2) * most).to_string();
    parts.suffix = head(&parts.suffix, (quarter + 2) * most).to_string();
    check_prompt_bytes(&ready.tok, ready.n_ctx, parts.bytes())?;
    let tok = Arc::clone(&ready.tok);
    blocking(move || {
        let bos = tok.add_bos().then(|| tok.bos()).flatten();
        infill_prompt(&fim, bos, budget, &parts, |t| tok.encode(t, false, false))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await
}

/// The last `n` bytes of `s` or a little less, starting on a character.
fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// The first `n` bytes of `s` or a little less, ending on a character.
fn head(s: &str, n: usize) -> &str {
    let mut i = n.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per byte, ids 1000 + byte.
    fn bytes(s: &str) -> Result<Vec<u32>, ()> {
        Ok(s.bytes().map(|b| 1000 + u32::from(b)).collect())
    }

    const FIM: Fim = Fim {
        pre: 1,
        suf: 2,
        mid: 3,
        rep: None,
        sep: None,
    };

    fn parts(prefix: &str, suffix: &str, extra: &[Chunk], prompt: &str) -> Parts {
        Parts {
            prefix: prefix.into(),
            suffix: suffix.into(),
            extra: extra.to_vec(),
            prompt: prompt.into(),
        }
    }

    fn big() -> Budget {
        Budget {
            n_batch: 2048,
            n_ctx: 8192,
            n_predict: 16,
        }
    }

    #[test]
    fn cuts_by_bytes_fall_on_characters() {
        assert_eq!(tail("abcdef", 2), "ef");
        assert_eq!(tail("ab", 9), "ab");
        assert_eq!(head("abcdef", 2), "ab");
        assert_eq!(head("ab", 9), "ab");
        // "é" is two bytes: a cut inside it leaves it out.
        assert_eq!(tail("aé", 1), "");
        assert_eq!(head("éa", 1), "");
        assert_eq!(tail("aé", 2), "é");
    }

    #[test]
    fn prefix_prompt_suffix_middle_in_llamas_order() {
        let p = infill_prompt(&FIM, Some(9), big(), &parts("ab", "c", &[], "d"), bytes).unwrap();
        let t = |s| bytes(s).unwrap();
        let want: Vec<u32> = [vec![9, 1], t("ab"), t("d"), vec![2], t("c"), vec![3]].concat();
        assert_eq!(p, want);
        let p = infill_prompt(&FIM, None, big(), &parts("", "", &[], ""), bytes).unwrap();
        assert_eq!(p, [1, 2, 3]);
    }

    #[test]
    fn extra_chunks_go_first_as_files_or_snippets() {
        let t = |s| bytes(s).unwrap();
        let extra = [Chunk {
            filename: "a.py".into(),
            text: "x=1".into(),
        }];
        let p = infill_prompt(&FIM, None, big(), &parts("p", "s", &extra, ""), bytes).unwrap();
        let want = [
            t("\n\n--- snippet ---\n\n"),
            t("x=1"),
            vec![1],
            t("p"),
            vec![2],
            t("s"),
            vec![3],
        ]
        .concat();
        assert_eq!(p, want);
        let repo = Fim {
            rep: Some(4),
            sep: Some(5),
            ..FIM
        };
        let p = infill_prompt(&repo, Some(9), big(), &parts("p", "s", &extra, ""), bytes).unwrap();
        let want = [
            vec![4],
            t("myproject\n"),
            vec![5],
            t("a.py\n"),
            t("x=1"),
            vec![5],
            t("filename\n"),
            vec![9, 1],
            t("p"),
            vec![2],
            t("s"),
            vec![3],
        ]
        .concat();
        assert_eq!(p, want);
    }

    #[test]
    fn long_parts_keep_the_prefix_end_the_suffix_start_and_the_extra_end() {
        let budget = Budget {
            n_batch: 16,
            n_ctx: 24,
            n_predict: 2,
        };
        let extra = [Chunk {
            filename: String::new(),
            text: "0123456789".into(),
        }];
        let long = parts("abcdefghijkl", "uvwxyz", &extra, "");
        let p = infill_prompt(&FIM, None, budget, &long, bytes).unwrap();
        let t = |s| bytes(s).unwrap();
        // Prefix: 3 x 16/4 = 12 of 12; suffix 16/4 - 2 = 2; extra
        // 24 - 16 - 4 = 4 from the end.
        let want = [
            t("6789"),
            vec![1],
            t("abcdefghijkl"),
            vec![2],
            t("uv"),
            vec![3],
        ]
        .concat();
        assert_eq!(p, want);
        let p = infill_prompt(
            &FIM,
            None,
            budget,
            &parts("abcdefghijklmn", "", &[], ""),
            bytes,
        )
        .unwrap();
        assert_eq!(p, [vec![1], t("cdefghijklmn"), vec![2, 3]].concat());
    }
}
