//! The OpenAI request bodies, read field by field so that every bad value
//! gets a 400 naming the parameter, and the error shape
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use hearth::chat::Message;
use hearth::constraint::Grammar;
use hearth::sampler::SamplerConfig;

/// An error response in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, for the `Retry-After` header of a 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 for a bad value of `param`.
    pub fn param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            code: Some("invalid_value"),
            ..ApiError::bad_request(format!("`{param}`: {}", message.into()))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: the connection cannot
            // be reused.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// Parses a request body: UTF-8, then a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Typed access to the fields of a request object; `null` counts as absent.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(ApiError::param(
                k,
                format!("expected a boolean, got {}", kind(v)),
            )),
        }
    }

    pub fn str(&self, k: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ApiError::param(
                k,
                format!("expected a string, got {}", kind(v)),
            )),
        }
    }

    /// A number within `lo..=hi`.
    pub fn f32_in(&self, k: &str, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if x >= f64::from(lo) && x <= f64::from(hi) {
                    Ok(Some(x as f32))
                } else {
                    Err(ApiError::param(k, format!("{n} is not in [{lo}, {hi}]")))
                }
            }
            Some(v) => Err(ApiError::param(
                k,
                format!("expected a number, got {}", kind(v)),
            )),
        }
    }

    /// An integer within `lo..=hi`.
    pub fn int_in(&self, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                // `2.0` is a float in JSON: as OpenAI, not an integer.
                _ if n.is_f64() => Err(ApiError::param(k, format!("must be an integer, got {n}"))),
                _ => Err(ApiError::param(k, format!("{n} is not in [{lo}, {hi}]"))),
            },
            Some(v) => Err(ApiError::param(
                k,
                format!("expected an integer, got {}", kind(v)),
            )),
        }
    }
}

/// A JSON value's kind as an error message names it ("a string").
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Most stop strings a request may give (OpenAI allows 4; more is kept for
/// clients that send several end markers), and their most bytes together.
pub const MAX_STOP: usize = hearth::sampler::MAX_STOP_STRINGS;
pub const MAX_STOP_BYTES: usize = hearth::sampler::MAX_STOP_BYTES;
/// Most alternatives `top_logprobs` may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// The options common to chat and text completions.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: until the context is full.
    pub max_tokens: Option<usize>,
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// The grammar the output must follow (`response_format`, `grammar`,
    /// `json_schema`).
    pub grammar: Option<GrammarRequest>,
}

/// A grammar asked for, and the parameter that asked (named by the 400 when
/// it does not compile).
#[derive(Debug, Clone, PartialEq)]
pub struct GrammarRequest {
    pub param: String,
    pub grammar: Grammar,
}

impl GrammarRequest {
    fn new(param: &str, grammar: Grammar) -> Option<GrammarRequest> {
        Some(GrammarRequest {
            param: param.to_string(),
            grammar,
        })
    }
}

/// A JSON schema: an object or a boolean.
fn schema_value(param: &str, v: &Value) -> Result<Value, ApiError> {
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(v.clone()),
        v => Err(ApiError::param(
            param,
            format!("a JSON schema is an object or a boolean, got {}", kind(v)),
        )),
    }
}

/// Reads OpenAI's `response_format` (`text`, `json_object`, `json_schema`
/// with `{name, schema, strict}`) and llama.cpp's `grammar` (GBNF) and
/// `json_schema`; at most one of them may ask for a grammar.
pub fn grammar(f: &Fields<'_>) -> Result<Option<GrammarRequest>, ApiError> {
    let mut found: Vec<GrammarRequest> = Vec::new();
    if let Some(rf) = f.get("response_format") {
        let Value::Object(rf) = rf else {
            return Err(ApiError::param(
                "response_format",
                format!("expected an object, got {}", kind(rf)),
            ));
        };
        let rf = Fields(rf);
        let t = rf
            .str("type")
            .map_err(|_| ApiError::param("response_format.type", "expected a string"))?;
        match t {
            Some("text") => {}
            Some("json_object") => {
                // llama.cpp also takes a schema here.
                let g = match rf.get("schema") {
                    Some(v) => Grammar::JsonSchema(schema_value("response_format.schema", v)?),
                    None => Grammar::JsonObject,
                };
                found.extend(GrammarRequest::new("response_format", g));
            }
            Some("json_schema") => {
                let p = "response_format.json_schema";
                let js = match rf.get("json_schema") {
                    Some(Value::Object(o)) => o,
                    Some(v) => {
                        return Err(ApiError::param(
                            p,
                            format!("expected an object, got {}", kind(v)),
                        ))
                    }
                    None => return Err(ApiError::param(p, "is required")),
                };
                let js = Fields(js);
                js.str("name")
                    .map_err(|_| ApiError::param(&format!("{p}.name"), "expected a string"))?;
                js.bool("strict")
                    .map_err(|_| ApiError::param(&format!("{p}.strict"), "expected a boolean"))?;
                let sp = format!("{p}.schema");
                // OpenAI: a missing schema is any JSON value.
                let schema = match js.get("schema") {
                    Some(v) => schema_value(&sp, v)?,
                    None => Value::Bool(true),
                };
                found.extend(GrammarRequest::new(&sp, Grammar::JsonSchema(schema)));
            }
            Some(t) => {
                return Err(ApiError::param(
                    "response_format.type",
                    format!("unknown type {t:?}; expected text, json_object or json_schema"),
                ))
            }
            None => return Err(ApiError::param("response_format.type", "is required")),
        }
    }
    if let Some(g) = f.str("grammar")? {
        // llama.cpp's convention: a grammar that starts `%llguidance` is
        // llguidance's Lark, any other GBNF.
        let grammar = match g.trim_start().strip_prefix("%llguidance") {
            Some(rest) => Grammar::Lark(rest.trim_start_matches(|c| c != '\n').to_string()),
            None => Grammar::Gbnf(g.to_string()),
        };
        if !g.trim().is_empty() {
            found.extend(GrammarRequest::new("grammar", grammar));
        }
    }
    if let Some(v) = f.get("json_schema") {
        let schema = schema_value("json_schema", v)?;
        found.extend(GrammarRequest::new(
            "json_schema",
            Grammar::JsonSchema(schema),
        ));
    }
    // vLLM's names.
    if let Some(v) = f.get("guided_json") {
        let schema = schema_value("guided_json", v)?;
        found.extend(GrammarRequest::new(
            "guided_json",
            Grammar::JsonSchema(schema),
        ));
    }
    if let Some(r) = f.str("guided_regex")? {
        found.extend(GrammarRequest::new(
            "guided_regex",
            Grammar::Regex(r.to_string()),
        ));
    }
    if let Some(g) = f.str("guided_grammar")? {
        found.extend(GrammarRequest::new(
            "guided_grammar",
            Grammar::Lark(g.to_string()),
        ));
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|g| g.param.as_str()).collect();
        return Err(ApiError::param(
            &found[1].param,
            format!("give only one grammar; got {}", names.join(" and ")),
        ));
    }
    Ok(found.pop())
}

/// Reads ollama's `format`: `"json"`, or a JSON schema object.
pub fn ollama_format(f: &Fields<'_>) -> Result<Option<GrammarRequest>, ApiError> {
    match f.get("format") {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => {
            Ok(GrammarRequest::new("format", Grammar::JsonObject))
        }
        Some(Value::Object(_)) | Some(Value::Bool(_)) => {
            let schema = schema_value("format", f.get("format").unwrap_or(&Value::Null))?;
            Ok(GrammarRequest::new("format", Grammar::JsonSchema(schema)))
        }
        Some(v) => Err(ApiError::param(
            "format",
            format!("expected \"json\" or a JSON schema object, got {}", kind(v)),
        )),
    }
}

/// Whose format `logprobs` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `logprobs: bool` plus `top_logprobs: int`.
    Chat,
    /// Legacy completions: `logprobs: int` (alternatives, at most 5).
    Completion,
}

/// Reads the sampling and output options. `seed` defaults to `default_seed`.
pub fn options(f: &Fields<'_>, endpoint: Endpoint, default_seed: u64) -> Result<Options, ApiError> {
    if let Some(n) = f.int_in("n", i64::MIN, i64::MAX)? {
        if n != 1 {
            return Err(ApiError::param(
                "n",
                format!("only n = 1 is supported, got {n}"),
            ));
        }
    }
    let max_a = f.int_in("max_tokens", 1, i64::from(u32::MAX))?;
    let max_b = f.int_in("max_completion_tokens", 1, i64::from(u32::MAX))?;
    let max_tokens = max_b.or(max_a).map(|m| m as usize);
    let mut sampling = SamplerConfig {
        // OpenAI's defaults: temperature 1, no top-k or min-p filtering.
        temperature: f.f32_in("temperature", 0.0, 2.0)?.unwrap_or(1.0),
        top_p: 1.0,
        top_k: 0,
        min_p: 0.0,
        ..SamplerConfig::default()
    };
    if let Some(p) = f.f32_in("top_p", 0.0, 1.0)? {
        if p == 0.0 {
            return Err(ApiError::param("top_p", "must be greater than 0"));
        }
        sampling.top_p = p;
    }
    // llama.cpp's extensions.
    if let Some(k) = f.int_in("top_k", 0, i64::from(u32::MAX))? {
        sampling.top_k = k as usize;
    }
    if let Some(m) = f.f32_in("min_p", 0.0, 1.0)? {
        sampling.min_p = m;
    }
    if let Some(r) = f.f32_in("repeat_penalty", 0.01, 100.0)? {
        sampling.repeat_penalty = r;
    }
    sampling.frequency_penalty = f.f32_in("frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    sampling.presence_penalty = f.f32_in("presence_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    sampling.seed = match f.0.get("seed").filter(|v| !v.is_null()) {
        None => default_seed,
        Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or(0),
        // Negative seeds (OpenAI allows them) map to their two's complement.
        Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or(0) as u64,
        Some(v) => {
            return Err(ApiError::param(
                "seed",
                format!("expected an integer, got {}", kind(v)),
            ))
        }
    };
    sampling
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;

    let stop = match f.0.get("stop").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > MAX_STOP {
                return Err(ApiError::param(
                    "stop",
                    format!("at most {MAX_STOP} stop strings, got {}", a.len()),
                ));
            }
            a.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(ApiError::param(
                        "stop",
                        format!("expected strings, got {}", kind(v)),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(v) => {
            return Err(ApiError::param(
                "stop",
                format!("expected a string or an array of strings, got {}", kind(v)),
            ))
        }
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::param("stop", "stop strings must not be empty"));
    }
    let bytes: usize = stop.iter().map(String::len).sum();
    if bytes > MAX_STOP_BYTES {
        return Err(ApiError::param(
            "stop",
            format!("stop strings may have at most {MAX_STOP_BYTES} bytes together, got {bytes}"),
        ));
    }

    let logprobs = match endpoint {
        Endpoint::Chat => {
            let on = f.bool("logprobs")?.unwrap_or(false);
            let top = f.int_in("top_logprobs", 0, MAX_TOP_LOGPROBS)?;
            if top.is_some() && !on {
                return Err(ApiError::param(
                    "top_logprobs",
                    "needs `logprobs` set to true",
                ));
            }
            on.then_some(top.unwrap_or(0) as usize)
        }
        Endpoint::Completion => f.int_in("logprobs", 0, 5)?.map(|n| n as usize),
    };

    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.0.get("stream_options").filter(|v| !v.is_null()) {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage")?.unwrap_or(false),
        Some(v) => {
            return Err(ApiError::param(
                "stream_options",
                format!("expected an object, got {}", kind(v)),
            ))
        }
    };
    Ok(Options {
        max_tokens,
        sampling,
        stop,
        logprobs,
        stream,
        include_usage,
        grammar: grammar(f)?,
    })
}

/// The roles a chat request may use.
const ROLES: &str = "system, developer, user, assistant";

/// Reads `messages`: a non-empty array of `{role, content}` with text
/// content (a string, or an array of `{"type": "text", "text": ...}` parts).
pub fn messages(f: &Fields<'_>) -> Result<Vec<Message>, ApiError> {
    let list = match f.0.get("messages") {
        None | Some(Value::Null) => return Err(ApiError::param("messages", "is required")),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::param(
                "messages",
                format!("expected an array, got {}", kind(v)),
            ))
        }
    };
    if list.is_empty() {
        return Err(ApiError::param("messages", "must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let p = |field: &str| format!("messages[{i}].{field}");
            let Value::Object(m) = m else {
                return Err(ApiError::param(
                    &format!("messages[{i}]"),
                    format!("expected an object, got {}", kind(m)),
                ));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => r.as_str(),
                Some(v) => {
                    return Err(ApiError::param(
                        &p("role"),
                        format!("expected a string, got {}", kind(v)),
                    ))
                }
                None => return Err(ApiError::param(&p("role"), "is required")),
            };
            let role = match role {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                r => {
                    return Err(ApiError::param(
                        &p("role"),
                        format!("unknown role {r:?}; expected one of {ROLES}"),
                    ))
                }
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) if role == "assistant" => String::new(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.iter().enumerate() {
                        let pp = format!("messages[{i}].content[{j}]");
                        match (part.get("type"), part.get("text")) {
                            (Some(Value::String(t)), Some(Value::String(s))) if t == "text" => {
                                text.push_str(s)
                            }
                            (Some(Value::String(t)), _) if is_media(t) => {
                                return Err(ApiError::param(
                                    &pp,
                                    format!(
                                        "this model has no vision or audio input: content of \
                                         type {t:?} cannot be read; send text parts only"
                                    ),
                                )
                                .with_code("unsupported_content"))
                            }
                            (Some(Value::String(t)), _) if t != "text" => {
                                return Err(ApiError::param(
                                    &pp,
                                    format!("content of type {t:?} is not supported; only text"),
                                ))
                            }
                            _ => {
                                return Err(ApiError::param(
                                    &pp,
                                    "expected {\"type\": \"text\", \"text\": \"...\"}",
                                ))
                            }
                        }
                    }
                    text
                }
                Some(v) => {
                    return Err(ApiError::param(
                        &p("content"),
                        format!(
                            "expected a string or an array of text parts, got {}",
                            kind(v)
                        ),
                    ))
                }
                None => return Err(ApiError::param(&p("content"), "is required")),
            };
            Ok(Message::new(role, content))
        })
        .collect()
}

/// Content part types that carry images, audio or files (OpenAI's chat and
/// Responses names).
fn is_media(t: &str) -> bool {
    matches!(
        t,
        "image_url" | "input_image" | "image" | "input_audio" | "audio" | "file" | "input_file"
    )
}

/// A completion's prompt: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// Reads `prompt`: a string, an array of one string, or an array of token
/// ids below `n_vocab`.
pub fn prompt(f: &Fields<'_>, n_vocab: usize) -> Result<Prompt, ApiError> {
    let bad = |m: String| ApiError::param("prompt", m);
    match f.0.get("prompt") {
        None | Some(Value::Null) => Err(bad("is required".into())),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Ok(Prompt::Text(s.clone())),
            [] => Err(bad("must not be empty".into())),
            a if a.iter().all(Value::is_number) => a
                .iter()
                .map(|v| match v.as_u64() {
                    Some(id) if (id as usize) < n_vocab => Ok(id as u32),
                    _ => Err(bad(format!(
                        "token {v} is not an id of this vocabulary (0..{n_vocab})"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Prompt::Tokens),
            _ => Err(bad(
                "expected a string, an array of one string, or an array of token ids".into(),
            )),
        },
        Some(v) => Err(bad(format!("expected a string, got {}", kind(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(body: &str, e: Endpoint) -> Result<Options, ApiError> {
        let m = parse_body(body.as_bytes())?;
        options(&Fields(&m), e, 7)
    }

    /// Issue 17: `2.0` was reported as "2.0 is not in [1, 4294967295]".
    #[test]
    fn a_float_for_an_integer_says_it_must_be_an_integer() {
        for body in [r#"{"max_tokens": 2.0}"#, r#"{"max_tokens": 2.5}"#] {
            let e = opts(body, Endpoint::Chat).unwrap_err();
            assert!(
                e.message.contains("must be an integer"),
                "{body}: {}",
                e.message
            );
        }
        let e = opts(r#"{"max_tokens": 0}"#, Endpoint::Chat).unwrap_err();
        assert!(e.message.contains("not in [1,"), "{}", e.message);
    }

    #[test]
    fn stop_strings_past_16_or_8192_bytes_together_are_refused() {
        let body = |stops: Vec<String>| json!({ "stop": stops }).to_string();
        let ok = opts(&body(vec!["x".into(); MAX_STOP]), Endpoint::Chat).unwrap();
        assert_eq!(ok.stop.len(), 16);
        let e = opts(&body(vec!["x".into(); MAX_STOP + 1]), Endpoint::Chat).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (StatusCode::BAD_REQUEST, Some("stop"))
        );
        let half = "a".repeat(MAX_STOP_BYTES / 2);
        assert!(opts(&body(vec![half.clone(), half.clone()]), Endpoint::Chat).is_ok());
        let e = opts(&body(vec![half.clone(), half, "b".into()]), Endpoint::Chat).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stop"));
        assert!(e.message.contains("8192"), "{}", e.message);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let cases = [
            (r#"{"max_tokens": -1}"#, "max_tokens"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"max_tokens": 1e30}"#, "max_tokens"),
            (r#"{"max_tokens": "5"}"#, "max_tokens"),
            (r#"{"max_tokens": 2.5}"#, "max_tokens"),
            (r#"{"temperature": 3}"#, "temperature"),
            (r#"{"temperature": "hot"}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"n": 2}"#, "n"),
            (r#"{"stop": 5}"#, "stop"),
            (r#"{"stop": [""]}"#, "stop"),
            (r#"{"seed": "x"}"#, "seed"),
            (r#"{"frequency_penalty": 9}"#, "frequency_penalty"),
            (r#"{"top_logprobs": 3}"#, "top_logprobs"),
            (r#"{"logprobs": true, "top_logprobs": 21}"#, "top_logprobs"),
            (r#"{"stream": "yes"}"#, "stream"),
            (
                r#"{"stream_options": {"include_usage": 1}}"#,
                "include_usage",
            ),
        ];
        for (body, param) in cases {
            let e = opts(body, Endpoint::Chat).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(e.message.contains(param), "{body}: {}", e.message);
        }
        let e = opts(r#"{"logprobs": 6}"#, Endpoint::Completion).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logprobs"));
    }

    #[test]
    fn good_values_are_read() {
        let o = opts(
            r#"{"max_completion_tokens": 9, "max_tokens": 3, "temperature": 0, "top_p": 0.5,
                "seed": -1, "stop": ["a", "b"], "logprobs": true, "top_logprobs": 2,
                "stream": true, "stream_options": {"include_usage": true}, "n": 1,
                "presence_penalty": 0.5, "frequency_penalty": -0.5, "unknown": {"x": 1}}"#,
            Endpoint::Chat,
        )
        .unwrap();
        assert_eq!(o.max_tokens, Some(9));
        assert_eq!(o.sampling.temperature, 0.0);
        assert_eq!(o.sampling.top_p, 0.5);
        assert_eq!(o.sampling.seed, u64::MAX);
        assert_eq!(o.stop, ["a", "b"]);
        assert_eq!(o.logprobs, Some(2));
        assert!(o.stream && o.include_usage);
        assert_eq!(o.sampling.presence_penalty, 0.5);
        assert_eq!(o.sampling.frequency_penalty, -0.5);
        let o = opts("{}", Endpoint::Completion).unwrap();
        assert_eq!(o.max_tokens, None);
        assert_eq!(o.sampling.seed, 7);
        assert_eq!(o.logprobs, None);
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        for body in [&b"{"[..], b"[1]", b"\xff\xfe", b"", b"null"] {
            let e = parse_body(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        let e = parse_body(b"{\"a\": \"\xc3\x28\"}").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn messages_are_checked() {
        let read = |body: &str| {
            let m = parse_body(body.as_bytes()).unwrap();
            messages(&Fields(&m))
        };
        for (body, param) in [
            (r#"{}"#, "messages"),
            (r#"{"messages": []}"#, "messages"),
            (r#"{"messages": "hi"}"#, "messages"),
            (r#"{"messages": [1]}"#, "messages[0]"),
            (
                r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages": [{"role": 3, "content": "x"}]}"#,
                "messages[0].role",
            ),
            (r#"{"messages": [{"role": "user"}]}"#, "messages[0].content"),
            (
                r#"{"messages": [{"role": "user", "content": 5}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
                "messages[0].content[0]",
            ),
        ] {
            let e = read(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        let m = read(
            r#"{"messages": [{"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null}]}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            [
                Message::new("system", "be brief"),
                Message::new("user", "ab"),
                Message::new("assistant", "")
            ]
        );
    }

    #[test]
    fn image_and_audio_parts_say_the_model_has_no_vision() {
        for part in [
            r#"{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}"#,
            r#"{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}"#,
        ] {
            let body = format!(
                r#"{{"messages": [{{"role": "user", "content": [{{"type": "text", "text": "what is this?"}}, {part}]}}]}}"#
            );
            let m = parse_body(body.as_bytes()).unwrap();
            let e = messages(&Fields(&m)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.param.as_deref(), Some("messages[0].content[1]"));
            assert!(e.message.contains("has no vision"), "{}", e.message);
        }
    }

    #[test]
    fn grammars_are_read_and_checked() {
        let read = |body: &str| {
            let m = parse_body(body.as_bytes()).unwrap();
            grammar(&Fields(&m))
        };
        let g = |body: &str| read(body).unwrap().map(|g| (g.param, g.grammar));
        assert_eq!(g(r#"{}"#), None);
        assert_eq!(g(r#"{"response_format": {"type": "text"}}"#), None);
        assert_eq!(
            g(r#"{"response_format": {"type": "json_object"}}"#),
            Some(("response_format".into(), Grammar::JsonObject))
        );
        assert_eq!(
            g(
                r#"{"response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": {"type": "integer"}}}}"#
            ),
            Some((
                "response_format.json_schema.schema".into(),
                Grammar::JsonSchema(json!({"type": "integer"}))
            ))
        );
        assert_eq!(
            g(r#"{"grammar": "root ::= \"a\""}"#),
            Some(("grammar".into(), Grammar::Gbnf("root ::= \"a\"".into())))
        );
        assert_eq!(
            g(r#"{"grammar": "%llguidance {}\nstart: \"a\""}"#),
            Some(("grammar".into(), Grammar::Lark("\nstart: \"a\"".into())))
        );
        assert_eq!(
            g(r#"{"guided_regex": "[a-z]+"}"#),
            Some(("guided_regex".into(), Grammar::Regex("[a-z]+".into())))
        );
        assert_eq!(
            g(r#"{"guided_grammar": "start: \"a\""}"#),
            Some((
                "guided_grammar".into(),
                Grammar::Lark("start: \"a\"".into())
            ))
        );
        assert_eq!(
            g(r#"{"guided_json": {"type": "string"}}"#),
            Some((
                "guided_json".into(),
                Grammar::JsonSchema(json!({"type": "string"}))
            ))
        );
        assert_eq!(
            g(r#"{"json_schema": {"type": "string"}}"#),
            Some((
                "json_schema".into(),
                Grammar::JsonSchema(json!({"type": "string"}))
            ))
        );
        for (body, param) in [
            (r#"{"response_format": "json"}"#, "response_format"),
            (
                r#"{"response_format": {"type": "xml"}}"#,
                "response_format.type",
            ),
            (r#"{"response_format": {}}"#, "response_format.type"),
            (
                r#"{"response_format": {"type": "json_schema"}}"#,
                "response_format.json_schema",
            ),
            (
                r#"{"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}"#,
                "response_format.json_schema.schema",
            ),
            (
                r#"{"response_format": {"type": "json_schema", "json_schema": {"strict": "yes"}}}"#,
                "response_format.json_schema.strict",
            ),
            (r#"{"grammar": 5}"#, "grammar"),
            (r#"{"json_schema": "x"}"#, "json_schema"),
            (
                r#"{"json_schema": {}, "grammar": "root ::= \"a\""}"#,
                "json_schema",
            ),
        ] {
            let e = read(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    #[test]
    fn ollama_format_is_json_or_a_schema() {
        let read = |body: &str| {
            let m = parse_body(body.as_bytes()).unwrap();
            ollama_format(&Fields(&m))
        };
        assert_eq!(read(r#"{"format": ""}"#).unwrap(), None);
        assert_eq!(
            read(r#"{"format": "json"}"#).unwrap().map(|g| g.grammar),
            Some(Grammar::JsonObject)
        );
        assert_eq!(
            read(r#"{"format": {"type": "object"}}"#)
                .unwrap()
                .map(|g| g.grammar),
            Some(Grammar::JsonSchema(json!({"type": "object"})))
        );
        assert_eq!(
            read(r#"{"format": "yaml"}"#).unwrap_err().param.as_deref(),
            Some("format")
        );
    }

    #[test]
    fn prompts_are_checked() {
        let read = |body: &str| {
            let m = parse_body(body.as_bytes()).unwrap();
            prompt(&Fields(&m), 100)
        };
        assert_eq!(
            read(r#"{"prompt": "hi"}"#).unwrap(),
            Prompt::Text("hi".into())
        );
        assert_eq!(
            read(r#"{"prompt": ["hi"]}"#).unwrap(),
            Prompt::Text("hi".into())
        );
        assert_eq!(
            read(r#"{"prompt": [1, 99]}"#).unwrap(),
            Prompt::Tokens(vec![1, 99])
        );
        for body in [
            r#"{}"#,
            r#"{"prompt": []}"#,
            r#"{"prompt": [100]}"#,
            r#"{"prompt": [-1]}"#,
            r#"{"prompt": ["a", "b"]}"#,
            r#"{"prompt": 3}"#,
        ] {
            let e = read(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("prompt"), "{body}");
        }
    }
}
