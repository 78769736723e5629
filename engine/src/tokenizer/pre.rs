//! Pre-tokenizers of byte-level BPE vocabularies, chosen by
//! `tokenizer.ggml.pre`: the table of llama.cpp's `llm_tokenizer_bpe`
//! constructor and the flags its `llama_vocab::impl::load` sets per name.
//!
//! Each pre-tokenizer is a list of patterns applied in turn: pattern i splits
//! every piece that pattern i-1 produced into its matches and the text between
//! them (llama.cpp's `unicode_regex_split`; Hugging Face's `Split` with
//! `behavior: Isolated`). Patterns keep the Unicode classes of the original
//! `tokenizer.json` where llama.cpp had to rewrite them for `std::regex`, so
//! they match what Hugging Face's tokenizers (the source of the test vectors)
//! match. Case-insensitive contractions are spelled out (`'[sS]`), as llama.cpp
//! does, so that `(?i)`'s Unicode case folding (`ſ` folds to `s`) cannot
//! differ between engines.

use fancy_regex::Regex;

use super::error::{Result, TokenizerError};

const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/// GPT-2's pattern (llama.cpp drops the final `|\s+` of the original; the text
/// it would match is kept anyway, as the gap between matches).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

fn llama3() -> String {
    format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
}

fn qwen2() -> String {
    format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
}

fn gpt4o() -> String {
    format!(
        r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
}

const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

/// How a family of vocabularies is pre-tokenized, and the flags llama.cpp sets
/// for it.
#[derive(Clone, Debug)]
pub(crate) struct PreSpec {
    pub patterns: Vec<String>,
    /// A whole pre-token that is in the vocabulary is emitted as is, without
    /// running the merges (Llama 3's `ignore_merges`).
    pub ignore_merges: bool,
    /// Decoding applies llama.cpp's `clean_spaces` (" ." becomes ".").
    pub clean_spaces: bool,
    /// `add_bos_token` when the file does not say.
    pub add_bos: bool,
    /// The family has no BOS token by default (ChatGLM).
    pub no_default_bos: bool,
}

impl PreSpec {
    fn new(patterns: &[&str]) -> PreSpec {
        PreSpec {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ignore_merges: false,
            clean_spaces: true,
            add_bos: false,
            no_default_bos: false,
        }
    }
    fn ignore_merges(mut self) -> Self {
        self.ignore_merges = true;
        self
    }
    fn no_clean(mut self) -> Self {
        self.clean_spaces = false;
        self
    }
    fn add_bos(mut self) -> Self {
        self.add_bos = true;
        self
    }
}

/// Every `tokenizer.ggml.pre` value this module knows.
pub const SUPPORTED_PRE: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "dbrx",
    "smaug-bpe",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "falcon",
    "mpt",
    "starcoder",
    "refact",
    "command-r",
    "smollm",
    "codeshell",
    "exaone",
    "minerva-7b",
    "mellum2",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "olmo",
    "jais",
    "trillion",
    "granite-docling",
    "exaone4",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "megrez",
    "stablelm2",
    "hunyuan",
    "solar-open",
    "grok-2",
    "qwen35",
    "poro-chat",
    "bloom",
    "gpt3-finnish",
    "viking",
    "glm4",
    "chatglm-bpe",
    "tekken",
    "chameleon",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "minimax-m2",
    "tiny_aya",
    "cohere2moe",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "exaone-moe",
    "minicpm5",
    "ufakzeka",
    "laguna",
];

/// The pre-tokenizer called `name`, or `None` when it is not supported.
pub(crate) fn spec(name: &str) -> Option<PreSpec> {
    let llama3 = llama3();
    let qwen2 = qwen2();
    let gpt4o = gpt4o();
    let starcoder = || PreSpec::new(&[r"\p{N}", GPT2]);
    let deepseek3 =
        || PreSpec::new(&[r"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3_MAIN]).no_clean();
    Some(match name {
        "default" => PreSpec::new(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"]),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreSpec::new(&[&llama3]).ignore_merges().add_bos(),
        "dbrx" | "smaug-bpe" => PreSpec::new(&[&llama3]),
        // The Greek and letterlike code points are escaped: several of them
        // (U+1F7D, U+1FBE, U+2126, U+212A, ...) have canonical singleton
        // decompositions, and an editor or tool that normalizes the source
        // would silently turn their ranges around.
        "deepseek-llm" => PreSpec::new(&[
            "[\r\n]",
            r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝ\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}ℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
            r"\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            r"\p{N}+",
        ])
        .no_clean(),
        "deepseek-coder" => PreSpec::new(&[
            "[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            "[一-龥ࠀ-一가-퟿]+",
            r"\p{N}",
        ])
        .no_clean(),
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => deepseek3(),
        "falcon" => PreSpec::new(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"]),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => starcoder(),
        "command-r" | "smollm" => starcoder().no_clean(),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "mpt" | "olmo" | "jais" | "exaone4" => PreSpec::new(&[GPT2]),
        "trillion" | "granite-docling" => PreSpec::new(&[GPT2]).no_clean(),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" | "grok-2" => {
            PreSpec::new(&[&qwen2]).no_clean()
        }
        "megrez" | "stablelm2" => PreSpec::new(&[&qwen2]),
        "qwen35" => PreSpec::new(&[&format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}\p{{M}}]+|\p{{N}}| ?[^\s\p{{L}}\p{{M}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )])
        .no_clean(),
        "poro-chat" => PreSpec::new(&[PORO]).no_clean(),
        "bloom" | "gpt3-finnish" => PreSpec::new(&[PORO]),
        "viking" => PreSpec::new(&[PORO, r"\p{N}"]).no_clean(),
        "glm4" | "chatglm-bpe" => {
            let mut s = PreSpec::new(&[&llama3]);
            s.no_default_bos = true;
            s
        }
        "tekken" => PreSpec::new(&[r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"])
            .no_clean()
            .ignore_merges()
            .add_bos(),
        "chameleon" => PreSpec::new(&[
            "<sentinel:[0-9]+>",
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            r"([\t\n]|    |  )",
            r"\p{N}",
            r"[\p{P}!-/:-@\[-`{-~]",
            GPT2,
        ])
        .no_clean()
        .add_bos(),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => {
            PreSpec::new(&[&gpt4o]).no_clean()
        }
        "tiny_aya" | "cohere2moe" => {
            PreSpec::new(&[r"\d{1,3}(?=(?:\d{3})*\b)", &gpt4o]).no_clean()
        }
        "bailingmoe" | "bailingmoe2" | "llada-moe" => PreSpec::new(&[r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"]).no_clean(),
        "seed-coder" => PreSpec::new(&[&format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1}}| ?[^\s\p{{L}}\p{{N}}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
        )])
        .no_clean(),
        "exaone-moe" => PreSpec::new(&[&format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?(?:\p{{L}}\p{{M}}*(?: \p{{L}}\p{{M}}*)*)+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
        )]),
        "minicpm5" => PreSpec::new(&[
            r"\p{N}{1,3}",
            &format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}+| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            ),
        ])
        .ignore_merges(),
        "ufakzeka" => PreSpec::new(&[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]).no_clean(),
        "laguna" => PreSpec::new(&[r"[^\n]+|[\n]+", &qwen2]).no_clean(),
        _ => return None,
    })
}

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    name: String,
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    pub fn new(name: &str, spec: &PreSpec) -> Result<PreTokenizer> {
        let regexes = spec
            .patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| TokenizerError::PreTokenizer {
                    pre: name.to_string(),
                    message: format!("pattern {p:?} does not compile: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreTokenizer {
            name: name.to_string(),
            regexes,
        })
    }

    /// Splits `text` into pre-tokens, as byte ranges of `text` in order,
    /// covering all of it.
    pub fn split(&self, text: &str) -> Result<Vec<std::ops::Range<usize>>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let mut pieces: Vec<std::ops::Range<usize>> = std::iter::once(0..text.len()).collect();
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                // Each pattern sees one piece alone: its look-arounds and `$`
                // stop at the piece's ends, as in llama.cpp.
                let chunk = &text[piece.clone()];
                let mut at = 0;
                for m in re.find_iter(chunk) {
                    let m = m.map_err(|e| TokenizerError::PreTokenizer {
                        pre: self.name.clone(),
                        message: e.to_string(),
                    })?;
                    if m.start() == m.end() {
                        continue;
                    }
                    if m.start() > at {
                        next.push(piece.start + at..piece.start + m.start());
                    }
                    next.push(piece.start + m.start()..piece.start + m.end());
                    at = m.end();
                }
                if at < chunk.len() {
                    next.push(piece.start + at..piece.end);
                }
            }
            pieces = next;
        }
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_pre_tokenizer_compiles() {
        for name in SUPPORTED_PRE {
            let spec = spec(name).unwrap_or_else(|| panic!("{name} listed but has no spec"));
            PreTokenizer::new(name, &spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(spec("no-such-pre").is_none());
    }

    #[test]
    fn llama3_splits_like_hugging_face() {
        let pre = PreTokenizer::new("llama3", &spec("llama3").unwrap()).unwrap();
        let text = "Hello world's  123456 !!\n\n   x";
        let pieces: Vec<&str> = pre
            .split(text)
            .unwrap()
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(
            pieces,
            ["Hello", " world", "'s", " ", " ", "123", "456", " !!\n\n", "  ", " x"]
        );
    }
}
