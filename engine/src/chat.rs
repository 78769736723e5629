//! Chat templates: render `tokenizer.chat_template` with minijinja.
//!
//! A GGUF converted from a Hugging Face model carries the model's chat
//! template, a Jinja2 template, in `tokenizer.chat_template`. [`ChatTemplate`]
//! renders it the way `transformers` does (`apply_chat_template`):
//!
//! - whitespace: `trim_blocks` and `lstrip_blocks` on, as in
//!   `transformers`' `_compile_jinja_template`;
//! - variables: `messages` (a list of `{role, content}` maps),
//!   `add_generation_prompt`, `bos_token`, `eos_token`;
//! - helpers: `raise_exception(msg)` (becomes [`ChatError::Raised`]),
//!   `strftime_now(fmt)` (UTC; see [`ChatTemplate::with_fixed_time`]), a
//!   `tojson` filter that writes what Python's `json.dumps` writes, Python
//!   string/list/dict methods (`.strip()`, `.startswith()`, `.split()`,
//!   `.items()`, ...) from `minijinja_contrib::pycompat`, and `break` /
//!   `continue`.
//!
//! The template comes from a file we did not write, so rendering is
//! sandboxed: minijinja has no file or network access, a fuel budget bounds
//! the instructions run and the memory allocated ([`ChatError::OutOfFuel`]),
//! and the output is capped ([`ChatError::OutputTooLarge`]).
//!
//! A file without a template is [`ChatError::NoTemplate`]. Callers then have
//! two explicit fallbacks: [`ChatTemplate::for_model`] uses a built-in copy of
//! the template of a known architecture (Gemma), and [`ChatTemplate::plain`]
//! writes `role: content` lines, which any model can continue but none was
//! trained on, so it is only used when the caller asks for it.
//!
//! The rendered text usually starts with the BOS token's text (`<bos>`): the
//! caller tokenizes it with special tokens parsed and must not add a second
//! BOS.

use std::fmt::Write as _;
use std::io;
use std::ops::Deref;
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_gguf::{Gguf, GgufError};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// What can go wrong while loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(
        "the model has no chat template (`tokenizer.chat_template`); pass one \
         with ChatTemplate::new, or ask for the plain `role: content` format \
         with ChatTemplate::plain"
    )]
    NoTemplate,
    #[error("reading the chat template from the model: {0}")]
    Gguf(#[from] GgufError),
    #[error("token id {id} (`{key}`) is not in the vocabulary")]
    BadSpecialToken { key: &'static str, id: u32 },
    #[error("the chat template does not parse: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`; templates do this to
    /// reject a conversation (e.g. roles that do not alternate).
    #[error("the chat template rejected the conversation: {0}")]
    Raised(String),
    #[error("the chat template ran out of fuel ({fuel} units): it loops or allocates too much")]
    OutOfFuel { fuel: u64 },
    #[error("the chat template's output exceeds the cap of {limit} bytes")]
    OutputTooLarge { limit: usize },
    #[error("rendering the chat template: {0}")]
    Render(String),
    /// The template rewrote message `message`'s content so that it cannot be
    /// told apart from the template's own text, and the content holds
    /// special-token text: tokenized, it could forge the template's
    /// markers, so it is refused (`--special-in-content` allows it).
    #[error(
        "message {message} holds special-token text and the chat template rewrites its \
         content, so it cannot be kept as plain text; refused (--special-in-content allows it)"
    )]
    UntrackedContent { message: usize },
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, or whatever the template knows.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The sandbox of a render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja fuel: about one unit per instruction and one per 64 bytes
    /// allocated. Each render gets this much plus one unit per 4 bytes of
    /// message text, so long conversations are not refused; a template can
    /// thus copy its input about 16 times over.
    pub fuel: u64,
    /// The most bytes a render may write.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A Gemma render of a short conversation uses a few hundred units;
        // 1M is about a million instructions or 64 MB, tens of milliseconds.
        Limits {
            fuel: 1_000_000,
            max_output: 16 << 20,
        }
    }
}

/// The Gemma 3 chat template, for GGUF files converted without one: our
/// reconstruction of the template Google ships with the instruction-tuned
/// Gemma 3 models (same output). Gemma has no system role: the system
/// prompt is prepended to the first user turn, followed by a blank line.
pub const GEMMA_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if message['role'] == 'assistant' -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"#;

/// A compiled chat template with the special-token text it refers to.
#[derive(Clone)]
pub struct ChatTemplate {
    kind: Kind,
    bos_token: String,
    eos_token: String,
    limits: Limits,
    fixed_time: Option<i64>,
}

#[derive(Clone)]
enum Kind {
    Jinja(Box<Environment<'static>>),
    Plain,
}

const NAME: &str = "chat_template";

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Jinja(_) => "jinja",
            Kind::Plain => "plain",
        };
        f.debug_struct("ChatTemplate")
            .field("kind", &kind)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are the texts the
    /// template sees under those names. A syntax error is reported here, not
    /// at the first render.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        // transformers compiles chat templates with these two on.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        let cap = Limits::default().max_output;
        env.set_unknown_method_callback(move |st, v, m, a| python_method(st, v, m, a, cap));
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", |v: &Value, kw: Kwargs| tojson(v, kw, usize::MAX));
        env.add_template_owned(NAME, source.into())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            kind: Kind::Jinja(Box::new(env)),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            limits: Limits::default(),
            fixed_time: None,
        })
    }

    /// The model's own template (`tokenizer.chat_template`), with the texts
    /// of its BOS and EOS tokens. No template is [`ChatError::NoTemplate`].
    pub fn from_gguf<B: Deref<Target = [u8]>>(gguf: &Gguf<B>) -> Result<Self> {
        let Some(source) = gguf.get_opt_as::<&str>("tokenizer.chat_template")? else {
            return Err(ChatError::NoTemplate);
        };
        let (bos, eos) = special_token_texts(gguf)?;
        Self::new(source, bos, eos)
    }

    /// Like [`from_gguf`](Self::from_gguf), but a file without a template
    /// whose `general.architecture` is a Gemma gets [`GEMMA_TEMPLATE`]
    /// (llama.cpp likewise recognises Gemma's format without a template).
    /// Any other architecture without a template is still
    /// [`ChatError::NoTemplate`].
    pub fn for_model<B: Deref<Target = [u8]>>(gguf: &Gguf<B>) -> Result<Self> {
        match Self::from_gguf(gguf) {
            Err(ChatError::NoTemplate) => {}
            other => return other,
        }
        let arch = gguf.get_opt_as::<&str>("general.architecture")?;
        match arch {
            Some("gemma" | "gemma2" | "gemma3" | "gemma3n") => {
                let (bos, eos) = special_token_texts(gguf)?;
                Self::new(GEMMA_TEMPLATE, bos, eos)
            }
            _ => Err(ChatError::NoTemplate),
        }
    }

    /// The Jinja source this template renders (the file's, or
    /// [`GEMMA_TEMPLATE`] where [`for_model`](Self::for_model) supplied it);
    /// `None` for [`plain`](Self::plain).
    pub fn source(&self) -> Option<String> {
        match &self.kind {
            Kind::Jinja(env) => env.get_template(NAME).ok().map(|t| t.source().to_string()),
            Kind::Plain => None,
        }
    }

    /// The fallback format, only for callers that ask for it: one
    /// `role: content` line per message, then `assistant:` when a generation
    /// prompt is asked for. No BOS text is written.
    pub fn plain() -> Self {
        ChatTemplate {
            kind: Kind::Plain,
            bos_token: String::new(),
            eos_token: String::new(),
            limits: Limits::default(),
            fixed_time: None,
        }
    }

    /// Replaces the sandbox limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Makes `strftime_now` report this time (seconds since the Unix epoch,
    /// UTC) instead of the clock, for reproducible prompts and tests.
    pub fn with_fixed_time(mut self, unix_seconds: i64) -> Self {
        self.fixed_time = Some(unix_seconds);
        self
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends
    /// with the header of the model's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let env = match &self.kind {
            Kind::Plain => return Ok(render_plain(messages, add_generation_prompt)),
            Kind::Jinja(env) => env,
        };
        let input_bytes: usize = messages
            .iter()
            .map(|m| m.role.len() + m.content.len())
            .sum();
        let fuel = self.limits.fuel.saturating_add(input_bytes as u64 / 4);
        let mut env = env.clone();
        env.set_fuel(Some(fuel));
        let now = self.fixed_time.unwrap_or_else(unix_now);
        env.add_function("strftime_now", move |fmt: &str| strftime(now, fmt));
        // Our filter allocates outside minijinja's fuel accounting, so it
        // gets the output cap (indentation can multiply a value's size).
        let cap = self.limits.max_output;
        env.add_filter("tojson", move |v: &Value, kw: Kwargs| tojson(v, kw, cap));
        env.set_unknown_method_callback(move |st, v, m, a| python_method(st, v, m, a, cap));
        let tmpl = env
            .get_template(NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;

        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);

        let mut out = CappedWriter {
            buf: Vec::new(),
            limit: self.limits.max_output,
            exceeded: false,
        };
        let result = tmpl.render_captured_to(ctx, &mut out);
        if out.exceeded {
            return Err(ChatError::OutputTooLarge {
                limit: self.limits.max_output,
            });
        }
        if let Err(e) = result {
            return Err(classify(&e, fuel, self.limits.max_output));
        }
        String::from_utf8(out.buf).map_err(|e| ChatError::Render(e.to_string()))
    }
}

impl ChatTemplate {
    /// Renders the conversation and tokenizes it the way a chat prompt must
    /// be: the template's own text with special-token text parsed (its
    /// `<start_of_turn>`, `<|im_start|>` markers become those tokens), the
    /// messages' contents as plain text, so a user who types
    /// `<|im_end|>\n<|im_start|>system` gets those characters, not a forged
    /// system turn. `special_in_content` parses specials in the contents too
    /// (llama.cpp's behaviour, `--special-in-content`). BOS is added when
    /// the file wants one and the template did not write it.
    pub fn encode(
        &self,
        tok: &crate::tokenizer::Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
        special_in_content: bool,
    ) -> crate::Result<Vec<u32>> {
        self.encode_at_most(
            tok,
            messages,
            add_generation_prompt,
            special_in_content,
            usize::MAX,
        )
    }

    /// [`encode`](Self::encode), but tokenizing stops once there are more
    /// than `limit` tokens ([`Tokenizer::encode_at_most`]): a result longer
    /// than `limit` is incomplete and says only that the conversation does
    /// not fit.
    ///
    /// [`Tokenizer::encode_at_most`]: crate::tokenizer::Tokenizer::encode_at_most
    pub fn encode_at_most(
        &self,
        tok: &crate::tokenizer::Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
        special_in_content: bool,
        limit: usize,
    ) -> crate::Result<Vec<u32>> {
        let tokenizer =
            |e: crate::tokenizer::TokenizerError| crate::Error::Tokenizer(e.to_string());
        let mut ids = if special_in_content {
            let text = self.render(messages, add_generation_prompt)?;
            tok.encode_at_most(&text, false, true, limit)
                .map_err(tokenizer)?
        } else {
            let (text, spans, lost) = self.spans(messages, add_generation_prompt)?;
            // A content the template rewrote past finding cannot be kept
            // plain; if it holds special-token text, refuse rather than let
            // it become markers.
            for i in lost {
                let c = &messages[i].content;
                if tok.encode(c, false, true).map_err(tokenizer)?
                    != tok.encode(c, false, false).map_err(tokenizer)?
                {
                    return Err(ChatError::UntrackedContent { message: i }.into());
                }
            }
            tok.encode_with_plain_at_most(&text, false, &spans, limit)
                .map_err(tokenizer)?
        };
        if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Renders the conversation and says which byte ranges of the text came
    /// from message contents (sorted, disjoint).
    ///
    /// The template is rendered twice: as is, and with each content's
    /// non-blank core wrapped in two private-use characters (U+E000, U+E001;
    /// leading and trailing whitespace stay outside, so `trim` and `strip`
    /// act as before). When the second render with the marks removed is the
    /// first, the marks are the spans. A template that rewrites contents so
    /// that this fails (it slices or splits them) falls back to finding each
    /// content, or its trimmed form, in the text in message order; a
    /// content found neither way has no span ([`encode`](Self::encode) then
    /// refuses it if it holds special-token text), and a content holding
    /// the marks themselves is found the second way.
    pub fn render_with_spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<std::ops::Range<usize>>)> {
        let (text, spans, _) = self.spans(messages, add_generation_prompt)?;
        Ok((text, spans))
    }

    /// [`render_with_spans`](Self::render_with_spans), and the indices of
    /// the messages whose content could not be found in the text.
    fn spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<std::ops::Range<usize>>, Vec<usize>)> {
        let text = self.render(messages, add_generation_prompt)?;
        let marked_ok = !messages.iter().any(|m| m.content.contains([OPEN, CLOSE]));
        if marked_ok {
            let marked: Vec<Message> = messages
                .iter()
                .map(|m| {
                    let core = m.content.trim();
                    if core.is_empty() {
                        return m.clone();
                    }
                    let lead = m.content.len() - m.content.trim_start().len();
                    let c = &m.content;
                    Message {
                        role: m.role.clone(),
                        content: format!(
                            "{}{OPEN}{core}{CLOSE}{}",
                            &c[..lead],
                            &c[lead + core.len()..]
                        ),
                    }
                })
                .collect();
            if let Ok(with_marks) = self.render(&marked, add_generation_prompt) {
                if let Some(spans) = spans_of_marks(&with_marks, &text) {
                    // Every content the text holds is inside marks.
                    return Ok((text, spans, Vec::new()));
                }
            }
        }
        let mut spans = Vec::new();
        let mut lost = Vec::new();
        let mut at = 0;
        for (i, m) in messages.iter().enumerate() {
            if m.content.trim().is_empty() {
                continue;
            }
            let found = [m.content.as_str(), m.content.trim()]
                .into_iter()
                .find_map(|needle| text[at..].find(needle).map(|p| (at + p, needle.len())));
            match found {
                Some((p, n)) => {
                    spans.push(p..p + n);
                    at = p + n;
                }
                None => lost.push(i),
            }
        }
        Ok((text, spans, lost))
    }
}

/// Marks around a content's core in [`ChatTemplate::render_with_spans`].
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The spans between balanced marks of `marked`, in the coordinates of
/// `marked` with the marks removed; `None` unless that text is `plain`.
fn spans_of_marks(marked: &str, plain: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = String::with_capacity(plain.len());
    let mut spans = Vec::new();
    let mut open: Option<usize> = None;
    for c in marked.chars() {
        match (c, open) {
            (OPEN, None) => open = Some(out.len()),
            (CLOSE, Some(start)) => {
                spans.push(start..out.len());
                open = None;
            }
            (OPEN | CLOSE, _) => return None,
            (c, _) => out.push(c),
        }
    }
    (open.is_none() && out == plain).then_some(spans)
}

/// The texts of `tokenizer.ggml.bos_token_id` and `eos_token_id` (empty when
/// the file has no such id).
fn special_token_texts<B: Deref<Target = [u8]>>(gguf: &Gguf<B>) -> Result<(String, String)> {
    let text = |key: &'static str| -> Result<String> {
        let Some(id) = gguf.get_opt_as::<u32>(key)? else {
            return Ok(String::new());
        };
        let tokens = gguf.get_array("tokenizer.ggml.tokens")?;
        tokens
            .iter()
            .nth(id as usize)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or(ChatError::BadSpecialToken { key, id })
    };
    Ok((
        text("tokenizer.ggml.bos_token_id")?,
        text("tokenizer.ggml.eos_token_id")?,
    ))
}

fn render_plain(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut s = String::new();
    for m in messages {
        let _ = writeln!(s, "{}: {}", m.role, m.content.trim());
    }
    if add_generation_prompt {
        s.push_str("assistant:");
    }
    s
}

/// Collects the output and fails the render once it passes `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("chat template output cap reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Carries a `raise_exception` message through minijinja's error.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Marks an error as the output cap being reached inside a filter.
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output cap reached")
    }
}

impl std::error::Error for TooLarge {}

/// Python's string, list and dict methods (`minijinja_contrib::pycompat`),
/// with `str.format` bounded first: pycompat pads to the width and
/// precision a format spec asks for before fuel or the output cap see the
/// result (`'{:>20000000000}'.format('a')` aborted the process on a failed
/// 20 GB allocation), so the widths and precisions of a format string may
/// together ask for at most `cap` bytes. The other amplifiers are bounded
/// by minijinja itself: the `format` filter and `indent` check the fuel
/// before they allocate, `range` stops at 100 000 items, `*` at 100 MB and
/// then pays fuel, `join` pays for its separator as it grows
/// (`tests/chat.rs` pins each).
fn python_method(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
    cap: usize,
) -> std::result::Result<Value, Error> {
    if method == "format" {
        if let Some(spec) = value.as_str() {
            let asked = format_widths(spec);
            if asked > cap as u128 {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("str.format: widths and precisions ask for {asked} bytes"),
                )
                .with_source(TooLarge));
            }
            // Pay for the padding before it is made, as pycompat does for
            // `replace`; the engine charges the result once it exists.
            state.consume_fuel((asked / 64) as u64)?;
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// An upper bound on the bytes the width and precision fields of a
/// `str.format` string ask for: the sum of every number inside a
/// replacement field's format spec (after its `:`). minijinja's grammar has
/// no nested `{}` inside a spec (`format_spec -> [options] [width]
/// [grouping] ['.' precision] [type]`), so the numbers are all literal.
/// Over-counting (a `0` fill, say) only makes the bound looser.
fn format_widths(s: &str) -> u128 {
    let mut total: u128 = 0;
    let mut in_spec = false;
    let mut in_field = false;
    let mut num: u128 = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !in_field {
            if c == '{' {
                if chars.peek() == Some(&'{') {
                    chars.next();
                } else {
                    in_field = true;
                    in_spec = false;
                }
            }
            continue;
        }
        match c {
            '}' => {
                total = total.saturating_add(num);
                num = 0;
                in_field = false;
            }
            ':' if !in_spec => in_spec = true,
            '0'..='9' if in_spec => {
                num = num
                    .saturating_mul(10)
                    .saturating_add(u128::from(c as u8 - b'0'));
            }
            _ => {
                total = total.saturating_add(num);
                num = 0;
            }
        }
    }
    total.saturating_add(num)
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// minijinja's message, which names the template line ("... (in
/// chat_template:3)").
fn describe(e: &Error) -> String {
    e.to_string()
}

fn classify(e: &Error, fuel: u64, limit: usize) -> ChatError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Raised>() {
            return ChatError::Raised(r.0.clone());
        }
        if s.is::<TooLarge>() {
            return ChatError::OutputTooLarge { limit };
        }
        if let Some(inner) = s.downcast_ref::<Error>() {
            if inner.kind() == ErrorKind::OutOfFuel {
                return ChatError::OutOfFuel { fuel };
            }
        }
        source = s.source();
    }
    ChatError::Render(describe(e))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), Howard
/// Hinnant's `civil_from_days` (chrono-compatible date algorithms).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Python's `strftime` for the directives chat templates use, in UTC.
fn strftime(unix: i64, fmt: &str) -> std::result::Result<String, Error> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let wd = (days + 3).rem_euclid(7) as usize;
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[mo as usize - 1] + d + u32::from(mo > 2 && is_leap(y));
    let month = MONTHS[mo as usize - 1];
    let weekday = WEEKDAYS[wd];

    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match spec {
            'Y' => write!(out, "{y}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'm' => write!(out, "{mo:02}"),
            'd' => write!(out, "{d:02}"),
            '-' if chars.clone().next() == Some('d') => {
                chars.next();
                write!(out, "{d}")
            }
            'e' => write!(out, "{d:>2}"),
            'B' => write!(out, "{month}"),
            'b' | 'h' => write!(out, "{}", &month[..3]),
            'A' => write!(out, "{weekday}"),
            'a' => write!(out, "{}", &weekday[..3]),
            'H' => write!(out, "{h:02}"),
            'I' => write!(out, "{:02}", (h + 11) % 12 + 1),
            'p' => write!(out, "{}", if h < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{mi:02}"),
            'S' => write!(out, "{s:02}"),
            'j' => write!(out, "{yday:03}"),
            'F' => write!(out, "{y}-{mo:02}-{d:02}"),
            'T' => write!(out, "{h:02}:{mi:02}:{s:02}"),
            'Z' => write!(out, "UTC"),
            'z' => write!(out, "+0000"),
            '%' => write!(out, "%"),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ))
            }
        };
    }
    Ok(out)
}

/// `tojson` as `transformers` defines it: Python's `json.dumps` with
/// `ensure_ascii=False`, so `", "` / `": "` separators without `indent`
/// and `","` / `": "` with it, and no HTML escaping (minijinja's own
/// `tojson` escapes `<`, `>`, `&` and `'`, which would change prompts).
fn tojson(value: &Value, kwargs: Kwargs, cap: usize) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=64).contains(&n) => Some(" ".repeat(n as usize)),
            _ => match v.as_str() {
                Some(s) if s.len() <= 64 => Some(s.to_string()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer in 0..=64 or a short string",
                    ))
                }
            },
        },
    };
    let mut out = String::new();
    let opts = JsonOpts {
        indent,
        sort_keys: sort_keys.unwrap_or(false),
        cap,
    };
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOpts {
    indent: Option<String>,
    sort_keys: bool,
    /// Stop once the text passes this many bytes.
    cap: usize,
}

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_JSON_DEPTH: usize = 128;

fn write_json(
    out: &mut String,
    v: &Value,
    opts: &JsonOpts,
    depth: usize,
) -> std::result::Result<(), Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    if out.len() > opts.cap {
        return Err(
            Error::new(ErrorKind::InvalidOperation, "tojson: output cap reached")
                .with_source(TooLarge),
        );
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    let item_sep = if opts.indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Ok(f) = f64::try_from(v.clone()) {
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else if f.fract() == 0.0 && f.abs() < 1e16 {
                    // Python writes integral floats as `1.0`.
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            } else {
                // i128 / u128 beyond f64: the decimal digits are still JSON.
                let _ = write!(out, "{v}");
            }
        }
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in v.try_iter()? {
                let val = v.get_item(&key)?;
                let key = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                entries.push((key, val));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json_str(out, key);
                out.push_str(": ");
                write_json(out, val, opts, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, opts, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        _ => write_json_str(out, &v.to_string()),
    }
    Ok(())
}

/// A JSON string as `json.dumps(..., ensure_ascii=False)` writes it.
fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
