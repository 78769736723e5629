//! Constrained decoding: a grammar (a JSON schema, Lark, a regular
//! expression, llama.cpp's GBNF) narrows each step's choice to the tokens
//! that keep the output inside the language, with Microsoft's `llguidance`
//! (the library llama.cpp, vLLM, SGLang and mistral.rs use).
//!
//! [`ConstraintVocab`] is built once per vocabulary: the token trie of every
//! token's bytes, control tokens marked with llguidance's `0xFF` prefix so
//! the grammar never matches their text, every end-of-generation id as an
//! end token. [`ConstraintVocab::compile`] turns a [`Grammar`] into a
//! [`Constraint`] for one generation (a grammar that does not compile is
//! [`ConstraintError::Grammar`] naming the problem); each step
//! [`Constraint::mask_logits`] pushes the logits of every token the grammar
//! forbids down to [`MASKED_LOGIT`] and [`Constraint::accept`] advances it
//! by the sampled token. When the grammar allows no token at all, the step
//! is [`ConstraintError::Unsatisfiable`], never a loop.
//!
//! ```no_run
//! # use hearth::constraint::{ConstraintVocab, Grammar};
//! # fn f(tok: &hearth::tokenizer::Tokenizer, mut logits: Vec<f32>) -> Result<(), hearth::constraint::ConstraintError> {
//! let vocab = ConstraintVocab::new(tok)?;
//! let mut c = vocab.compile(&Grammar::JsonObject)?;
//! c.mask_logits(&mut logits)?;
//! // sample `id` from `logits`, then:
//! # let id = 0;
//! c.accept(id)?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};

use crate::tokenizer::{TokenType, Tokenizer};

/// What a forbidden token's logit becomes: finite (the sampler refuses
/// infinities as the sign of a broken forward pass) and so low that its
/// probability is exactly 0 at any temperature the sampler accepts.
pub const MASKED_LOGIT: f32 = -1.0e30;

/// Why a constraint could not be built or followed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstraintError {
    /// The vocabulary cannot carry a grammar (no end-of-generation token,
    /// or more tokens than a token id holds).
    #[error("the vocabulary cannot be used for constrained decoding: {0}")]
    Vocabulary(String),
    /// The grammar or schema does not compile.
    #[error("invalid grammar: {0}")]
    Grammar(String),
    /// No token of the vocabulary continues the output inside the grammar.
    #[error("no token of the vocabulary can continue the output under the grammar (after {generated} tokens)")]
    Unsatisfiable { generated: usize },
    /// The token sampled is not one the grammar allows (a caller that
    /// sampled from unmasked logits).
    #[error("token {token} is not allowed by the grammar: {reason}")]
    Rejected { token: u32, reason: String },
}

/// A grammar for [`ConstraintVocab::compile`].
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `{"type": "json_object"}`).
    JsonObject,
    /// A value matching this JSON schema.
    JsonSchema(serde_json::Value),
    /// llguidance's Lark dialect.
    Lark(String),
    /// A regular expression the whole output matches.
    Regex(String),
    /// llama.cpp's GBNF (`root ::= ...`), translated to Lark.
    Gbnf(String),
}

/// The token trie of one vocabulary and llguidance's compiled lexer slices:
/// made once per model (about a second of CPU on a 262k vocabulary), shared
/// by every generation.
#[derive(Clone)]
pub struct ConstraintVocab {
    factory: Arc<ParserFactory>,
    n_vocab: usize,
}

impl std::fmt::Debug for ConstraintVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintVocab")
            .field("n_vocab", &self.n_vocab)
            .finish_non_exhaustive()
    }
}

/// llguidance's view of the vocabulary: the trie alone. Forced text is
/// tokenized greedily on the trie (llguidance's own fallback), so the
/// environment holds no reference to the [`Tokenizer`].
struct TrieEnv {
    trie: TokTrie,
}

impl TokenizerEnv for TrieEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Whether the token is marked special in the trie: it never matches text
/// (control tokens, `<unk>`, unused slots, every end-of-generation token).
fn is_special(tok: &Tokenizer, id: u32) -> bool {
    tok.is_control(id)
        || tok.is_eog(id)
        || matches!(
            tok.token_type(id),
            Some(TokenType::Unknown | TokenType::Unused)
        )
}

/// The bytes each token stands for in the trie: its decoded piece, or for
/// a special token `0xFF` followed by its text (llguidance's convention,
/// `docs/special_tokens.md`).
pub fn trie_words(tok: &Tokenizer) -> Vec<Vec<u8>> {
    (0..tok.n_vocab() as u32)
        .map(|id| {
            if is_special(tok, id) {
                let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                w.extend_from_slice(tok.token_text(id).unwrap_or_default());
                w
            } else {
                tok.token_to_piece(id).unwrap_or_default().to_vec()
            }
        })
        .collect()
}

impl ConstraintVocab {
    /// The trie of `tok`'s vocabulary, with every end-of-generation id as an
    /// end token.
    pub fn new(tok: &Tokenizer) -> Result<Self, ConstraintError> {
        let words = trie_words(tok);
        let mut eog: Vec<u32> = tok.eog_ids().to_vec();
        if let Some(eos) = tok.eos() {
            if !eog.contains(&eos) {
                eog.insert(0, eos);
            }
        }
        Self::from_words(&words, &eog, tok.bos())
    }

    /// The trie of a vocabulary given as the bytes of each token (special
    /// ones prefixed with `0xFF`) and its end tokens, the first being EOS.
    pub fn from_words(
        words: &[Vec<u8>],
        eog: &[u32],
        bos: Option<u32>,
    ) -> Result<Self, ConstraintError> {
        let n_vocab = words.len();
        let vocab_size = u32::try_from(n_vocab)
            .ok()
            .filter(|&n| n > 0 && n < u32::MAX)
            .ok_or_else(|| {
                ConstraintError::Vocabulary(format!("{n_vocab} tokens is not a usable size"))
            })?;
        let eog: Vec<u32> = eog.iter().copied().filter(|&t| t < vocab_size).collect();
        let Some(&eos) = eog.first() else {
            return Err(ConstraintError::Vocabulary(
                "it has no end-of-generation token, so no grammar could ever end".into(),
            ));
        };
        let mut info = TokRxInfo::new(vocab_size, eos);
        info.tok_bos = bos.filter(|&b| b < vocab_size);
        let trie = TokTrie::from(&info, words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(TrieEnv { trie });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| ConstraintError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(ConstraintVocab {
            factory: Arc::new(factory),
            n_vocab,
        })
    }

    /// Tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Compiles `grammar` for one generation.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint, ConstraintError> {
        let top = top_level(grammar)?;
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| ConstraintError::Grammar(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::Grammar(e));
        }
        Ok(Constraint {
            matcher,
            n_vocab: self.n_vocab,
            generated: 0,
        })
    }
}

/// JSON as the small models write it best: one line, a space after `:`
/// and `,` (OpenAI's and Python's `json.dumps` layout), no free whitespace
/// a model could repeat until `max_tokens`.
fn json_options() -> JsonCompileOptions {
    JsonCompileOptions {
        item_separator: ", ".into(),
        key_separator: ": ".into(),
        whitespace_flexible: false,
        ..JsonCompileOptions::default()
    }
}

fn top_level(grammar: &Grammar) -> Result<TopLevelGrammar, ConstraintError> {
    Ok(match grammar {
        Grammar::JsonObject => json_schema(serde_json::json!({"type": "object"}))?,
        Grammar::JsonSchema(s) => json_schema(s.clone())?,
        Grammar::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        Grammar::Regex(r) => TopLevelGrammar::from_regex(r),
        Grammar::Gbnf(g) => TopLevelGrammar::from_lark(gbnf_to_lark(g)?),
    })
}

fn json_schema(mut schema: serde_json::Value) -> Result<TopLevelGrammar, ConstraintError> {
    match &mut schema {
        serde_json::Value::Object(map) => {
            if !map.contains_key("x-guidance") {
                let opts = serde_json::to_value(json_options())
                    .map_err(|e| ConstraintError::Grammar(e.to_string()))?;
                map.insert("x-guidance".into(), opts);
            }
        }
        serde_json::Value::Bool(_) => {}
        other => {
            return Err(ConstraintError::Grammar(format!(
                "a JSON schema is an object or a boolean, not {}",
                kind(other)
            )))
        }
    }
    Ok(TopLevelGrammar::from_json_schema(schema))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One generation's grammar state.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    n_vocab: usize,
    generated: usize,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// The tokens allowed next (an end-of-generation token once the output
    /// is complete). Fails when none is.
    pub fn allowed(&mut self) -> Result<SimpleVob, ConstraintError> {
        let generated = self.generated;
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| {
            let e = e.to_string();
            // llguidance's stop reason when the mask comes out empty.
            if e.starts_with("NoExtensionBias") {
                ConstraintError::Unsatisfiable { generated }
            } else {
                ConstraintError::Grammar(format!("after {generated} tokens: {e}"))
            }
        })?;
        if mask.is_zero() {
            return Err(ConstraintError::Unsatisfiable {
                generated: self.generated,
            });
        }
        Ok(mask)
    }

    /// Sets the logit of every token the grammar forbids to
    /// [`MASKED_LOGIT`]; entries past the vocabulary (a padded output
    /// matrix) are forbidden too.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let mask = self.allowed()?;
        let n = self.n_vocab.min(logits.len());
        logits[n..].fill(MASKED_LOGIT);
        // A 32-token word of the bit set at a time: most are all-zero (one
        // `fill`) or all-one (nothing to do).
        for (&bits, row) in mask.as_slice().iter().zip(logits[..n].chunks_mut(32)) {
            match bits {
                u32::MAX if row.len() == 32 => {}
                0 => row.fill(MASKED_LOGIT),
                _ => {
                    for (b, l) in row.iter_mut().enumerate() {
                        if bits & (1 << b) == 0 {
                            *l = MASKED_LOGIT;
                        }
                    }
                }
            }
        }
        // Tokens past the mask's words (none: it has a bit per token).
        let covered = (mask.as_slice().len() * 32).min(n);
        logits[covered..n].fill(MASKED_LOGIT);
        Ok(())
    }

    /// Advances the grammar by the token sampled.
    pub fn accept(&mut self, token: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Rejected {
                token,
                reason: e.to_string(),
            })?;
        self.generated += 1;
        Ok(())
    }

    /// Whether the output so far is a complete sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether the grammar allows nothing but the end.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Translates llama.cpp's GBNF (`grammars/README.md`) into llguidance's
/// Lark: `name ::= body` becomes `name: body` on one line (Lark ends a rule
/// at a new line, GBNF at the next `name ::=`), `root` is the start rule,
/// `-` in names becomes `_`, a character class `[...]` becomes the regular
/// expression `/[...]/`, `.` becomes `/(?s:.)/`; strings, grouping, `|`,
/// `*`, `+`, `?` and `{m,n}` mean the same in both.
pub fn gbnf_to_lark(src: &str) -> Result<String, ConstraintError> {
    let err = |m: String| ConstraintError::Grammar(format!("GBNF: {m}"));
    let chars: Vec<char> = src.chars().collect();
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let n = chars.len();
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    while i < n {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' {
            let start = i;
            i += 1;
            let mut s = String::new();
            while i < n && chars[i] != '"' {
                if chars[i] == '\\' {
                    let (ch, len) = gbnf_escape(&chars[i..]).ok_or_else(|| {
                        err(format!("bad escape in the string at character {start}"))
                    })?;
                    s.push(ch);
                    i += len;
                } else {
                    s.push(chars[i]);
                    i += 1;
                }
            }
            if i >= n {
                return Err(err(format!("unterminated string at character {start}")));
            }
            i += 1;
            let lit = serde_json::to_string(&s).map_err(|e| err(e.to_string()))?;
            push_body(&mut rules, &lit).map_err(err)?;
        } else if c == '[' {
            let start = i;
            let mut class = String::from("/[");
            i += 1;
            if i < n && chars[i] == '^' {
                class.push('^');
                i += 1;
            }
            while i < n && chars[i] != ']' {
                if chars[i] == '\\' {
                    let (ch, len) = gbnf_escape(&chars[i..]).ok_or_else(|| {
                        err(format!("bad escape in the class at character {start}"))
                    })?;
                    push_class_char(&mut class, ch);
                    i += len;
                } else {
                    push_class_char(&mut class, chars[i]);
                    i += 1;
                }
            }
            if i >= n {
                return Err(err(format!(
                    "unterminated character class at character {start}"
                )));
            }
            i += 1;
            class.push_str("]/");
            push_body(&mut rules, &class).map_err(err)?;
        } else if name_char(c) {
            let start = i;
            while i < n && name_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < n && chars[j].is_whitespace() {
                j += 1;
            }
            let lark_name = lark_rule_name(&name);
            if chars[j..].starts_with(&[':', ':', '=']) {
                rules.push((lark_name, String::new()));
                i = j + 3;
            } else {
                push_body(&mut rules, &lark_name).map_err(err)?;
            }
        } else if c == '.' {
            i += 1;
            push_body(&mut rules, "/(?s:.)/").map_err(err)?;
        } else if c == '{' {
            let start = i;
            while i < n && chars[i] != '}' {
                i += 1;
            }
            if i >= n {
                return Err(err(format!("unterminated repetition at character {start}")));
            }
            i += 1;
            let rep: String = chars[start..i].iter().collect();
            push_raw(&mut rules, &rep).map_err(err)?;
        } else if "()|*+?".contains(c) {
            i += 1;
            let tok = c.to_string();
            if "*+?)".contains(c) {
                push_raw(&mut rules, &tok).map_err(err)?;
            } else {
                push_body(&mut rules, &tok).map_err(err)?;
            }
        } else {
            return Err(err(format!("unexpected `{c}` at character {i}")));
        }
    }
    if !rules.iter().any(|(name, _)| name == "root") {
        return Err(err("there is no `root` rule".into()));
    }
    let mut out = String::from("start: root\n");
    for (name, body) in &rules {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(body.trim());
        out.push('\n');
    }
    Ok(out)
}

/// GBNF names may hold `-`; Lark's may not, and upper case would make a
/// terminal.
fn lark_rule_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'r');
    }
    s
}

fn push_body(rules: &mut [(String, String)], item: &str) -> Result<(), String> {
    let Some((_, body)) = rules.last_mut() else {
        return Err(format!("`{item}` comes before any rule"));
    };
    body.push(' ');
    body.push_str(item);
    Ok(())
}

/// A postfix operator, glued to what it follows.
fn push_raw(rules: &mut [(String, String)], item: &str) -> Result<(), String> {
    let Some((_, body)) = rules.last_mut() else {
        return Err(format!("`{item}` comes before any rule"));
    };
    body.push_str(item);
    Ok(())
}

fn push_class_char(class: &mut String, c: char) {
    match c {
        '\\' | ']' | '[' | '/' | '^' => {
            class.push('\\');
            class.push(c);
        }
        '\n' => class.push_str("\\n"),
        '\r' => class.push_str("\\r"),
        '\t' => class.push_str("\\t"),
        c if (c as u32) < 0x20 => class.push_str(&format!("\\x{:02x}", c as u32)),
        c => class.push(c),
    }
}

/// A GBNF escape at `s[0] == '\\'`: the character and how many characters
/// it took (`\n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH`).
fn gbnf_escape(s: &[char]) -> Option<(char, usize)> {
    let hex = |len: usize| -> Option<(char, usize)> {
        let digits: String = s.get(2..2 + len)?.iter().collect();
        let v = u32::from_str_radix(&digits, 16).ok()?;
        Some((char::from_u32(v)?, 2 + len))
    };
    match *s.get(1)? {
        'n' => Some(('\n', 2)),
        'r' => Some(('\r', 2)),
        't' => Some(('\t', 2)),
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        c => Some((c, 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of single characters, a few longer pieces, and an end
    /// token: enough to spell small JSON values.
    fn vocab() -> (ConstraintVocab, Vec<Vec<u8>>) {
        let mut words: Vec<Vec<u8>> = vec![b"\xff</s>".to_vec()];
        for b in 0x20u8..0x7f {
            words.push(vec![b]);
        }
        for w in ["{\"", "\": ", "true", "false", "null", "\"}", "ab", "aaaa"] {
            words.push(w.as_bytes().to_vec());
        }
        (
            ConstraintVocab::from_words(&words, &[0], None).unwrap(),
            words,
        )
    }

    /// Greedy decoding where the "model" prefers the tokens of `wanted` in
    /// order of appearance, else the first allowed token: the output must
    /// satisfy the grammar whatever the preference.
    fn run(v: &ConstraintVocab, words: &[Vec<u8>], g: &Grammar, prefer: &[u8]) -> Vec<u8> {
        let mut c = v.compile(g).unwrap();
        let mut out = Vec::new();
        for _ in 0..64 {
            let mut logits = vec![0.0f32; words.len() + 3];
            for (t, w) in words.iter().enumerate() {
                if !w.is_empty() && prefer.starts_with(&[&out[..], &w[..]].concat()) {
                    logits[t] = 1.0 + w.len() as f32;
                }
            }
            c.mask_logits(&mut logits).unwrap();
            assert!(logits[words.len()..].iter().all(|&l| l == MASKED_LOGIT));
            let id = crate::sampler::argmax(&logits).unwrap();
            // The end token is not fed back: generation stops there.
            if id == 0 {
                assert!(c.is_accepting());
                return out;
            }
            c.accept(id).unwrap();
            out.extend_from_slice(&words[id as usize]);
        }
        panic!("no end after 64 tokens: {}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn json_schema_forces_its_shape_on_a_model_that_wants_otherwise() {
        let (v, words) = vocab();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": false
        });
        let out = run(&v, &words, &Grammar::JsonSchema(schema), b"hello");
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(parsed["ok"].is_boolean(), "{parsed}");
        assert_eq!(parsed.as_object().unwrap().len(), 1);
    }

    #[test]
    fn a_preferred_valid_output_is_kept() {
        let (v, words) = vocab();
        let schema = serde_json::json!({"enum": ["ab", "ba"]});
        let out = run(&v, &words, &Grammar::JsonSchema(schema), br#""ba""#);
        assert_eq!(out, br#""ba""#);
    }

    #[test]
    fn regex_and_gbnf_constrain_the_output() {
        let (v, words) = vocab();
        let out = run(&v, &words, &Grammar::Regex("a{3}b".into()), b"aaaaaaaa");
        assert_eq!(out, b"aaab");
        let gbnf = "root ::= \"x\" digit-pair # two digits\ndigit-pair ::= [0-9] [0-9]\n";
        let out = run(&v, &words, &Grammar::Gbnf(gbnf.into()), b"x42zz");
        assert_eq!(out, b"x42");
    }

    #[test]
    fn an_invalid_schema_or_grammar_is_a_typed_error_naming_it() {
        let (v, _) = vocab();
        let bad = [
            Grammar::JsonSchema(serde_json::json!({"type": "integer", "minimum": 5, "maximum": 1})),
            Grammar::JsonSchema(serde_json::json!([1, 2])),
            Grammar::JsonSchema(serde_json::json!({"type": "no-such-type"})),
            Grammar::Gbnf("rule ::= \"a\"".into()),
            Grammar::Gbnf("root ::= [a-z".into()),
            Grammar::Lark("start: missing_rule".into()),
        ];
        for g in bad {
            match v.compile(&g) {
                Err(ConstraintError::Grammar(m)) => assert!(!m.is_empty()),
                other => panic!("{g:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_grammar_the_vocabulary_cannot_spell_is_unsatisfiable_not_a_hang() {
        let (v, _) = vocab();
        // No token holds a byte >= 0x80.
        let mut c = v.compile(&Grammar::Regex("é".into())).unwrap();
        let mut logits = vec![0.0f32; v.n_vocab()];
        assert_eq!(
            c.mask_logits(&mut logits),
            Err(ConstraintError::Unsatisfiable { generated: 0 })
        );
    }

    #[test]
    fn a_token_outside_the_grammar_is_rejected() {
        let (v, words) = vocab();
        let mut c = v.compile(&Grammar::Regex("ab".into())).unwrap();
        let z = words.iter().position(|w| w == b"z").unwrap() as u32;
        assert!(matches!(
            c.accept(z),
            Err(ConstraintError::Rejected { token, .. }) if token == z
        ));
    }

    #[test]
    fn a_vocabulary_without_an_end_token_is_refused() {
        let words = vec![b"a".to_vec()];
        assert!(matches!(
            ConstraintVocab::from_words(&words, &[], None),
            Err(ConstraintError::Vocabulary(_))
        ));
    }

    #[test]
    fn gbnf_translation() {
        let lark =
            gbnf_to_lark("root ::= (item \",\")* [^\\]\\n] .\nitem ::= \"\\x41\"{1,2}").unwrap();
        assert_eq!(
            lark,
            "start: root\nroot: ( item \",\")* /[^\\]\\n]/ /(?s:.)/\nitem: \"A\"{1,2}\n"
        );
    }
}
