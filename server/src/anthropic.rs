//! Anthropic's Messages API, text only: `POST /v1/messages` (whole, or
//! streamed as Anthropic's server-sent events) and
//! `POST /v1/messages/count_tokens`. Requests are read into the OpenAI
//! fields [`api::options`] reads (as ollama's are) and go through the same
//! template, queue and scheduler as the OpenAI routes. Errors on these
//! paths, the key check's included, are in Anthropic's shape
//! `{"type": "error", "error": {"type", "message"}}` with the statuses the
//! other routes use.
//!
//! Not yet: `tools`, `tool_choice` and `tool_use`/`tool_result` blocks
//! (they wait for the tool-call parser; `tools` is refused with a 400
//! rather than ignored, so that a client does not take plain text for a
//! model that declined to call), images and documents (no vision), and
//! thinking blocks.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::api::{self, ApiError, Endpoint, Fields, Options};
use super::routes::{
    blocking, body_object, check_model, collect_text, default_seed, encode_chat, event_error,
    ready, submit,
};
use super::scheduler::{Event, Finish, Usage};
use super::Shared;
use hearth::chat::Message;

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
}

/// Whether `path` is one of these routes, whose errors are Anthropic's.
pub(crate) fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// Anthropic's error `type` for an HTTP status (their "Errors" page).
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        // Anthropic says `overloaded_error` with its own 529; the status
        // stays the 503 (and `Retry-After`) every other route sends.
        503 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

fn error_body(e: &ApiError) -> Value {
    json!({"type": "error", "error": {"type": error_type(e.status), "message": e.message}})
}

/// `e` in Anthropic's shape, with the headers [`ApiError`]'s own response
/// carries.
pub(crate) fn error(e: ApiError) -> Response {
    let mut r = (e.status, Json(error_body(&e))).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == StatusCode::REQUEST_TIMEOUT {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A `content` or `system` value as plain text: a string, or a list of
/// `{"type": "text", "text": ...}` blocks joined by newlines (other keys
/// of a block, such as `cache_control`, are ignored). Any other block type
/// is a 400 naming it.
fn text_of(v: &Value, param: &str) -> Result<String, ApiError> {
    let blocks = match v {
        Value::String(s) => return Ok(s.clone()),
        Value::Array(a) => a,
        v => {
            return Err(ApiError::param(
                param,
                format!(
                    "expected a string or an array of text blocks, got {}",
                    api::kind(v)
                ),
            ))
        }
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let p = format!("{param}[{j}]");
        match (b.get("type"), b.get("text")) {
            (Some(Value::String(t)), Some(Value::String(s))) if t == "text" => {
                texts.push(s.as_str())
            }
            (Some(Value::String(t)), _) if t != "text" => {
                let why = match t.as_str() {
                    "tool_use" | "tool_result" => " (tool calls are not supported yet)",
                    "image" | "document" => " (this server has no vision)",
                    _ => "",
                };
                return Err(ApiError::param(
                    &p,
                    format!("content blocks of type {t:?} are not supported; only \"text\"{why}"),
                ));
            }
            _ => {
                return Err(ApiError::param(
                    &p,
                    "expected {\"type\": \"text\", \"text\": \"...\"}",
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// `system` and `messages` as chat messages. Anthropic's roles are `user`
/// and `assistant`; the system prompt is the top-level `system`. `tools`
/// is refused until tool calls exist.
fn read_messages(f: &Fields<'_>) -> Result<Vec<Message>, ApiError> {
    match f.0.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(ApiError::param(
                "tools",
                "tools are not supported yet: send the request without `tools`",
            ))
        }
    }
    let mut out = Vec::new();
    match f.0.get("system") {
        None | Some(Value::Null) => {}
        Some(v) => out.push(Message::new("system", text_of(v, "system")?)),
    }
    let list = match f.0.get("messages") {
        None | Some(Value::Null) => return Err(ApiError::param("messages", "is required")),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::param("messages", "must not be empty"))
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::param(
                "messages",
                format!("expected an array, got {}", api::kind(v)),
            ))
        }
    };
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::param(
                &format!("messages[{i}]"),
                format!("expected an object, got {}", api::kind(m)),
            ));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) if r == "user" || r == "assistant" => r.as_str(),
            Some(Value::String(r)) => {
                return Err(ApiError::param(
                    &format!("messages[{i}].role"),
                    format!(
                        "unknown role {r:?}; expected \"user\" or \"assistant\" \
                         (the system prompt is the top-level `system`)"
                    ),
                ))
            }
            Some(v) => {
                return Err(ApiError::param(
                    &format!("messages[{i}].role"),
                    format!("expected a string, got {}", api::kind(v)),
                ))
            }
            None => {
                return Err(ApiError::param(
                    &format!("messages[{i}].role"),
                    "is required",
                ))
            }
        };
        let p = format!("messages[{i}].content");
        let content = match m.get("content") {
            None | Some(Value::Null) => return Err(ApiError::param(&p, "is required")),
            Some(v) => text_of(v, &p)?,
        };
        out.push(Message::new(role, content));
    }
    Ok(out)
}

/// The sampling and output options: Anthropic's fields as the OpenAI ones
/// [`api::options`] reads. `max_tokens` is required; `temperature` is in
/// [0, 1] as Anthropic's; `metadata` and unknown fields are ignored.
fn read_options(m: &Map<String, Value>) -> Result<Options, ApiError> {
    let f = Fields(m);
    if f.0.get("max_tokens").is_none_or(Value::is_null) {
        return Err(ApiError::param("max_tokens", "is required"));
    }
    f.f32_in("temperature", 0.0, 1.0)?;
    let mut o = Map::new();
    for k in ["max_tokens", "temperature", "top_p", "top_k", "stream"] {
        if let Some(v) = m.get(k) {
            o.insert(k.to_string(), v.clone());
        }
    }
    match m.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Array(_)) => {
            o.insert("stop".into(), v.clone());
        }
        Some(v) => {
            return Err(ApiError::param(
                "stop_sequences",
                format!("expected an array of strings, got {}", api::kind(v)),
            ))
        }
    }
    api::options(&Fields(&o), Endpoint::Chat, default_seed()).map_err(|mut e| {
        // `api::options` names the OpenAI field.
        if e.param.as_deref() == Some("stop") {
            e.param = Some("stop_sequences".into());
            e.message = e.message.replacen("`stop`", "`stop_sequences`", 1);
        }
        e
    })
}

/// The prompt of a request, checked and tokenized.
async fn prompt(s: &Arc<Shared>, f: &Fields<'_>) -> Result<Vec<u32>, ApiError> {
    let ready = ready(s)?;
    check_model(s, f.str("model")?)?;
    let messages = read_messages(f)?;
    let template = ready
        .template
        .clone()
        .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
    let tok = Arc::clone(&ready.tok);
    let shared = Arc::clone(s);
    blocking(move || encode_chat(&shared, &template, &tok, &messages, "messages")).await
}

/// `{"input_tokens": N}`: the tokens `/v1/messages` would run the same
/// request's prompt on.
async fn count_tokens(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let m = body_object(body)?;
        prompt(&s, &Fields(&m)).await
    }
    .await;
    match r {
        Ok(p) => Json(json!({"input_tokens": p.len()})).into_response(),
        Err(e) => error(e),
    }
}

async fn messages(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let m = body_object(body)?;
        let f = Fields(&m);
        // Options first: a missing `max_tokens` is refused before the
        // template runs.
        let mut opts = read_options(&m)?;
        let prompt = prompt(&s, &f).await?;
        // `max_tokens` is required here and clients treat it as a ceiling
        // (Claude Code sends 32000): past the room the context leaves, it
        // becomes that room, and the answer ends with `max_tokens` there.
        let room = ready(&s)?.n_ctx.saturating_sub(prompt.len());
        if room > 0 {
            opts.max_tokens = opts.max_tokens.map(|n| n.min(room));
        }
        let n = prompt.len();
        let rx = submit(&s, prompt, &opts, None)?;
        Ok::<_, ApiError>((rx, opts, n))
    }
    .await;
    let (rx, opts, prompt_tokens) = match r {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let out = Reply {
        id: format!("msg_{:x}{n:06}", s.started),
        prompt_tokens,
        model: s.cfg.model_id.clone(),
        stop: opts.stop,
    };
    if opts.stream {
        stream(out, rx).into_response()
    } else {
        whole(out, rx).await
    }
}

/// What every message object of a response repeats.
struct Reply {
    id: String,
    /// Before the scheduler reports which were cached.
    prompt_tokens: usize,
    model: String,
    /// The request's stop sequences, to name the one that matched.
    stop: Vec<String>,
}

impl Reply {
    /// `stop_reason` and `stop_sequence`.
    fn stop_reason(&self, finish: Finish) -> (&'static str, Value) {
        match finish {
            Finish::Stop => ("end_turn", Value::Null),
            Finish::Length => ("max_tokens", Value::Null),
            Finish::StopString(i) => ("stop_sequence", json!(self.stop.get(i))),
        }
    }

    fn message(&self, content: Value, finish: Option<Finish>, usage: Value) -> Value {
        let (reason, sequence) = match finish {
            Some(f) => {
                let (r, s) = self.stop_reason(f);
                (json!(r), s)
            }
            None => (Value::Null, Value::Null),
        };
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage,
        })
    }
}

/// Anthropic's usage: `input_tokens` are the prompt tokens not read from
/// the cache, so that, as Anthropic counts, the prompt is `input_tokens`
/// plus `cache_read_input_tokens` (plus `cache_creation_input_tokens`,
/// always 0: Hearth's prefix cache costs nothing to write).
fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens - u.cached_tokens.min(u.prompt_tokens),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    })
}

async fn whole(out: Reply, rx: mpsc::UnboundedReceiver<Event>) -> Response {
    match collect_text(rx).await {
        Ok((text, finish, u)) => {
            let content = json!([{"type": "text", "text": text}]);
            Json(out.message(content, Some(finish), usage(&u))).into_response()
        }
        Err(e) => error(e),
    }
}

fn sse(name: &'static str, v: Value) -> SseEvent {
    SseEvent::default().event(name).data(v.to_string())
}

/// Anthropic's event order: `message_start` (no content yet; the prompt
/// counted as uncached until `message_delta` gives the final usage),
/// `content_block_start`, `ping`, a `content_block_delta` per piece of
/// text, `content_block_stop`, `message_delta` (stop reason and usage),
/// `message_stop`. A failure mid-way is an `error` event, and the end.
fn stream(out: Reply, rx: mpsc::UnboundedReceiver<Event>) -> impl IntoResponse {
    let start = out.message(
        json!([]),
        None,
        json!({"input_tokens": out.prompt_tokens, "output_tokens": 0,
               "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}),
    );
    let head = vec![
        sse(
            "message_start",
            json!({"type": "message_start", "message": start}),
        ),
        sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", json!({"type": "ping"})),
    ];
    let st = (out, Some(rx), head);
    let events = futures_util::stream::unfold(st, |(out, mut rx, mut tail)| async move {
        loop {
            if !tail.is_empty() {
                let e = tail.remove(0);
                return Some((Ok::<_, Infallible>(e), (out, rx, tail)));
            }
            let r = rx.as_mut()?;
            match r.recv().await {
                Some(Event::Token { text, .. }) if text.is_empty() => {}
                Some(Event::Token { text, .. }) => tail.push(sse(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": text}}),
                )),
                Some(Event::Done { finish, usage: u }) => {
                    let (reason, sequence) = out.stop_reason(finish);
                    tail.push(sse(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ));
                    tail.push(sse(
                        "message_delta",
                        json!({"type": "message_delta",
                               "delta": {"stop_reason": reason, "stop_sequence": sequence},
                               "usage": usage(&u)}),
                    ));
                    tail.push(sse("message_stop", json!({"type": "message_stop"})));
                    rx = None;
                }
                Some(Event::Error(e)) => {
                    tail.push(sse("error", error_body(&event_error(e))));
                    rx = None;
                }
                None => {
                    let e = ApiError::internal("the scheduler stopped");
                    tail.push(sse("error", error_body(&e)));
                    rx = None;
                }
            }
        }
    });
    Sse::new(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Map<String, Value> {
        api::parse_body(s.as_bytes()).unwrap()
    }

    #[test]
    fn system_as_a_string_or_blocks_and_text_content_blocks() {
        let m = body(
            r#"{"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                           {"type": "text", "text": "Answer in French."}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                             {"role": "assistant", "content": "c"},
                             {"role": "user", "content": "d"}]}"#,
        );
        assert_eq!(
            read_messages(&Fields(&m)).unwrap(),
            [
                Message::new("system", "Be brief.\nAnswer in French."),
                Message::new("user", "a\nb"),
                Message::new("assistant", "c"),
                Message::new("user", "d"),
            ]
        );
        let m = body(r#"{"system": "Be brief.", "messages": [{"role": "user", "content": "d"}]}"#);
        assert_eq!(
            read_messages(&Fields(&m)).unwrap()[0],
            Message::new("system", "Be brief.")
        );
    }

    #[test]
    fn bad_messages_name_their_field_and_block_type() {
        for (b, param, says) in [
            (r#"{}"#, "messages", "required"),
            (r#"{"messages": []}"#, "messages", "empty"),
            (
                r#"{"messages": [{"role": "system", "content": "x"}]}"#,
                "messages[0].role",
                "top-level `system`",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "messages[0].content",
                "required",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}"#,
                "messages[0].content[0]",
                "\"image\"",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": [{"type": "tool_result"}]}]}"#,
                "messages[1].content[0]",
                "\"tool_result\"",
            ),
            (
                r#"{"system": 3, "messages": [{"role": "user", "content": "x"}]}"#,
                "system",
                "a number",
            ),
            (
                r#"{"tools": [{"name": "f", "input_schema": {}}], "messages": [{"role": "user", "content": "x"}]}"#,
                "tools",
                "tools are not supported yet",
            ),
        ] {
            let e = read_messages(&Fields(&body(b))).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{b}");
            assert_eq!(e.param.as_deref(), Some(param), "{b}: {}", e.message);
            assert!(e.message.contains(says), "{b}: {}", e.message);
        }
    }

    #[test]
    fn options_need_max_tokens_and_map_stop_sequences() {
        let e = read_options(&body(r#"{"messages": []}"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(e.message.contains("required"), "{}", e.message);
        let o = read_options(&body(
            r#"{"max_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": 3, "stream": true,
                "stop_sequences": ["\n\n", "END"], "metadata": {"user_id": "u"}, "seed": 9}"#,
        ))
        .unwrap();
        assert_eq!(o.max_tokens, Some(7));
        assert_eq!(o.sampling.temperature, 0.0);
        assert_eq!(o.sampling.top_p, 0.5);
        assert_eq!(o.sampling.top_k, 3);
        assert!(o.stream);
        assert_eq!(o.stop, ["\n\n", "END"]);
        assert_ne!(o.sampling.seed, 9, "seed is not an Anthropic field");
        for (b, param) in [
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"max_tokens": 5, "temperature": 1.5}"#, "temperature"),
            (
                r#"{"max_tokens": 5, "stop_sequences": "x"}"#,
                "stop_sequences",
            ),
            (
                r#"{"max_tokens": 5, "stop_sequences": [""]}"#,
                "stop_sequences",
            ),
        ] {
            let e = read_options(&body(b)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{b}: {}", e.message);
            assert!(e.message.contains(param), "{b}: {}", e.message);
        }
    }

    #[test]
    fn errors_take_anthropics_types_by_status() {
        for (status, t) in [
            (StatusCode::BAD_REQUEST, "invalid_request_error"),
            (StatusCode::UNAUTHORIZED, "authentication_error"),
            (StatusCode::NOT_FOUND, "not_found_error"),
            (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded_error"),
            (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
        ] {
            let b = error_body(&ApiError::new(status, "x", "m"));
            assert_eq!(
                b,
                json!({"type": "error", "error": {"type": t, "message": "m"}})
            );
        }
    }

    #[test]
    fn usage_counts_cached_prompt_tokens_apart() {
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 4,
        };
        assert_eq!(
            usage(&u),
            json!({"input_tokens": 6, "output_tokens": 3,
                   "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
        );
    }
}
