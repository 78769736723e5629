//! OpenAI's Responses API, stateless and text only: `POST /v1/responses`
//! (and `/responses`), whole or streamed as its typed events. The request's
//! `instructions` and `input` become chat messages and go through the same
//! template, queue and scheduler as chat completions; errors are OpenAI's.
//!
//! Stateless: nothing is stored, so `previous_response_id` and
//! `store: true` are refused with a 400 that says so (Codex and the Agents
//! SDK send `store: false` with the whole conversation). Not yet: `tools`
//! and `function_call`/`function_call_output` items (they wait for the
//! tool-call parser; refused rather than ignored, so that a client does not
//! take plain text for a model that declined to call), structured output
//! (`text.format` other than `text`), images and files.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
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
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
}

/// The roles an input message may have.
const ROLES: &str = "user, assistant, system, developer";

/// The text of one input message's `content`: a string, or parts of type
/// `input_text` (`output_text` for earlier assistant turns, `text` too),
/// joined without separator as chat completions joins its text parts.
fn content_text(v: &Value, param: &str) -> Result<String, ApiError> {
    let parts = match v {
        Value::String(s) => return Ok(s.clone()),
        Value::Array(a) => a,
        v => {
            return Err(ApiError::param(
                param,
                format!(
                    "expected a string or an array of input_text parts, got {}",
                    api::kind(v)
                ),
            ))
        }
    };
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let p = format!("{param}[{j}]");
        match (part.get("type"), part.get("text")) {
            (Some(Value::String(t)), Some(Value::String(s)))
                if matches!(t.as_str(), "input_text" | "output_text" | "text") =>
            {
                text.push_str(s)
            }
            (Some(Value::String(t)), _)
                if !matches!(t.as_str(), "input_text" | "output_text" | "text") =>
            {
                let why = match t.as_str() {
                    "input_image" | "input_file" | "input_audio" => {
                        " (this server reads text only)"
                    }
                    _ => "",
                };
                return Err(ApiError::param(
                    &p,
                    format!("content parts of type {t:?} are not supported; only input_text{why}"),
                ));
            }
            _ => {
                return Err(ApiError::param(
                    &p,
                    "expected {\"type\": \"input_text\", \"text\": \"...\"}",
                ))
            }
        }
    }
    Ok(text)
}

/// `instructions` and `input` as chat messages.
fn read_messages(f: &Fields<'_>) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    if let Some(i) = f.str("instructions")? {
        out.push(Message::new("system", i));
    }
    let items = match f.0.get("input") {
        None | Some(Value::Null) => return Err(ApiError::param("input", "is required")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::param("input", "must not be empty"))
        }
        Some(Value::String(s)) => {
            out.push(Message::new("user", s.clone()));
            return Ok(out);
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::param("input", "must not be empty"))
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::param(
                "input",
                format!(
                    "expected a string or an array of items, got {}",
                    api::kind(v)
                ),
            ))
        }
    };
    for (i, item) in items.iter().enumerate() {
        let p = |field: &str| format!("input[{i}]{field}");
        let Value::Object(m) = item else {
            return Err(ApiError::param(
                &p(""),
                format!("expected an object, got {}", api::kind(item)),
            ));
        };
        match m.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "message" => {}
            Some(Value::String(t)) => {
                let why = match t.as_str() {
                    "function_call" | "function_call_output" => {
                        " (tool calls are not supported yet)"
                    }
                    "item_reference" => " (this server keeps no state)",
                    _ => "",
                };
                return Err(ApiError::param(
                    &p(".type"),
                    format!("input items of type {t:?} are not supported; only \"message\"{why}"),
                ));
            }
            Some(v) => {
                return Err(ApiError::param(
                    &p(".type"),
                    format!("expected a string, got {}", api::kind(v)),
                ))
            }
        }
        let role = match m.get("role") {
            Some(Value::String(r)) => match r.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                r => {
                    return Err(ApiError::param(
                        &p(".role"),
                        format!("unknown role {r:?}; expected one of {ROLES}"),
                    ))
                }
            },
            Some(v) => {
                return Err(ApiError::param(
                    &p(".role"),
                    format!("expected a string, got {}", api::kind(v)),
                ))
            }
            None => return Err(ApiError::param(&p(".role"), "is required")),
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => return Err(ApiError::param(&p(".content"), "is required")),
            Some(v) => content_text(v, &p(".content"))?,
        };
        out.push(Message::new(role, content));
    }
    Ok(out)
}

/// Refuses what a stateless, tool-less server cannot honour.
fn refuse_unsupported(f: &Fields<'_>) -> Result<(), ApiError> {
    if f.str("previous_response_id")?.is_some() {
        return Err(ApiError::param(
            "previous_response_id",
            "this server keeps no state between requests, so it cannot continue an earlier \
             response: send the whole conversation in `input` (with `store: false`)",
        ));
    }
    if f.bool("store")? == Some(true) {
        return Err(ApiError::param(
            "store",
            "this server keeps no state between requests and stores no response: \
             send `store: false` (or leave it out)",
        ));
    }
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
    if let Some(Value::Object(t)) = f.0.get("text") {
        match t.get("format") {
            None | Some(Value::Null) => {}
            Some(Value::Object(fmt)) if fmt.get("type") == Some(&json!("text")) => {}
            Some(_) => {
                return Err(ApiError::param(
                    "text.format",
                    "structured output is not supported yet: only {\"type\": \"text\"}",
                ))
            }
        }
    }
    Ok(())
}

/// The sampling and output options: `max_output_tokens`, `temperature`,
/// `top_p`, `stream` as the chat completions fields [`api::options`] reads.
fn read_options(m: &Map<String, Value>) -> Result<Options, ApiError> {
    let mut o = Map::new();
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stream", "stream"),
    ] {
        if let Some(v) = m.get(from) {
            o.insert(to.to_string(), v.clone());
        }
    }
    api::options(&Fields(&o), Endpoint::Chat, default_seed()).map_err(|mut e| {
        if e.param.as_deref() == Some("max_tokens") {
            e.param = Some("max_output_tokens".into());
            e.message = e.message.replacen("`max_tokens`", "`max_output_tokens`", 1);
        }
        e
    })
}

async fn responses(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, f.str("model")?)?;
        refuse_unsupported(&f)?;
        let mut opts = read_options(&m)?;
        let messages = read_messages(&f)?;
        let template = ready
            .template
            .clone()
            .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
        let tok = Arc::clone(&ready.tok);
        let shared = Arc::clone(&s);
        let prompt =
            blocking(move || encode_chat(&shared, &template, &tok, &messages, "input")).await?;
        // `max_output_tokens` is a ceiling (OpenAI's "upper bound"): past
        // the room the context leaves it becomes that room, and the
        // response ends `incomplete` there.
        let room = ready.n_ctx.saturating_sub(prompt.len());
        if room > 0 {
            opts.max_tokens = opts.max_tokens.map(|n| n.min(room));
        }
        // `text.format` other than text was refused above; llama.cpp's
        // `grammar`/`json_schema`, if sent, still apply.
        let constraint = super::routes::compile_grammar(&s, &opts).await?;
        let rx = submit(&s, prompt, &opts, constraint)?;
        let echo = Echo {
            instructions: m.get("instructions").cloned().unwrap_or(Value::Null),
            max_output_tokens: m.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            metadata: m.get("metadata").cloned().unwrap_or_else(|| json!({})),
            temperature: opts.sampling.temperature,
            top_p: opts.sampling.top_p,
        };
        Ok::<_, ApiError>((rx, opts.stream, echo))
    }
    .await;
    let (rx, stream_it, echo) = match r {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let out = Reply {
        id: format!("resp_{:x}{n:06}", s.started),
        msg_id: format!("msg_{:x}{n:06}", s.started),
        created_at: super::Shared::unix_now(),
        model: s.cfg.model_id.clone(),
        echo,
    };
    if stream_it {
        stream(out, rx).into_response()
    } else {
        whole(out, rx).await
    }
}

/// Request fields the response object repeats.
struct Echo {
    instructions: Value,
    max_output_tokens: Value,
    metadata: Value,
    temperature: f32,
    top_p: f32,
}

/// What every response object of one request repeats.
struct Reply {
    id: String,
    msg_id: String,
    created_at: u64,
    model: String,
    echo: Echo,
}

/// The response's usage, in the Responses API's names.
fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

impl Reply {
    /// The message item; `status` `in_progress`, `completed` or
    /// `incomplete`.
    fn item(&self, status: &str, content: Value) -> Value {
        json!({
            "id": self.msg_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    /// The response object. `done`: the text, why it ended and the usage;
    /// `None` while it is generated.
    fn response(&self, done: Option<(&str, Finish, &Usage)>) -> Value {
        let (status, incomplete, output, usage_v) = match done {
            None => ("in_progress", Value::Null, json!([]), Value::Null),
            Some((text, finish, u)) => {
                let (status, incomplete) = match finish {
                    Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
                    Finish::Stop | Finish::StopString(_) => ("completed", Value::Null),
                };
                let item = self.item(status, json!([text_part(text)]));
                (status, incomplete, json!([item]), usage(u))
            }
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": self.echo.instructions,
            "max_output_tokens": self.echo.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": false,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": false,
            "temperature": self.echo.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "none",
            "tools": [],
            "top_p": self.echo.top_p,
            "truncation": "disabled",
            "usage": usage_v,
            "metadata": self.echo.metadata,
        })
    }
}

async fn whole(out: Reply, rx: mpsc::UnboundedReceiver<Event>) -> Response {
    match collect_text(rx).await {
        Ok((text, finish, u)) => Json(out.response(Some((&text, finish, &u)))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The stream's state: the events' running `sequence_number` and the text
/// so far.
struct Streaming {
    out: Reply,
    rx: Option<mpsc::UnboundedReceiver<Event>>,
    seq: u64,
    text: String,
    tail: Vec<SseEvent>,
}

impl Streaming {
    /// Queues the event `kind` with `fields` and the next sequence number.
    fn push(&mut self, kind: &'static str, fields: Value) {
        let mut v = json!({"type": kind, "sequence_number": self.seq});
        if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
            o.extend(f);
        }
        self.seq += 1;
        self.tail
            .push(SseEvent::default().event(kind).data(v.to_string()));
    }

    fn ids(&self) -> Value {
        json!({"item_id": self.out.msg_id, "output_index": 0, "content_index": 0})
    }

    fn with(mut a: Value, b: Value) -> Value {
        if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
            a.extend(b);
        }
        a
    }
}

/// The Responses API's event order: `response.created`,
/// `response.in_progress`, `response.output_item.added`,
/// `response.content_part.added`, a `response.output_text.delta` per piece
/// of text, `response.output_text.done`, `response.content_part.done`,
/// `response.output_item.done`, then `response.completed` (whose
/// response's `status` is `incomplete` when `max_output_tokens` cut it),
/// each with its `sequence_number`. A failure mid-way is an `error` event, and the end.
fn stream(out: Reply, rx: mpsc::UnboundedReceiver<Event>) -> impl IntoResponse {
    let mut st = Streaming {
        out,
        rx: Some(rx),
        seq: 0,
        text: String::new(),
        tail: Vec::new(),
    };
    let r = st.out.response(None);
    st.push("response.created", json!({ "response": r }));
    st.push("response.in_progress", json!({ "response": r }));
    let item = st.out.item("in_progress", json!([]));
    st.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": item}),
    );
    let added = Streaming::with(st.ids(), json!({"part": text_part("")}));
    st.push("response.content_part.added", added);
    let events = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if !st.tail.is_empty() {
                let e = st.tail.remove(0);
                return Some((Ok::<_, Infallible>(e), st));
            }
            let rx = st.rx.as_mut()?;
            match rx.recv().await {
                Some(Event::Token { text, .. }) if text.is_empty() => {}
                Some(Event::Token { text, .. }) => {
                    st.text.push_str(&text);
                    let d = Streaming::with(st.ids(), json!({"delta": text, "logprobs": []}));
                    st.push("response.output_text.delta", d);
                }
                Some(Event::Done { finish, usage: u }) => {
                    let text = std::mem::take(&mut st.text);
                    let d = Streaming::with(st.ids(), json!({"text": text, "logprobs": []}));
                    st.push("response.output_text.done", d);
                    let d = Streaming::with(st.ids(), json!({"part": text_part(&text)}));
                    st.push("response.content_part.done", d);
                    let r = st.out.response(Some((&text, finish, &u)));
                    st.push(
                        "response.output_item.done",
                        json!({"output_index": 0, "item": r["output"][0]}),
                    );
                    // Always `response.completed`, its `status` saying
                    // `incomplete` when cut: OpenAI names that event
                    // `response.incomplete`, but the `openai` client's
                    // stream helper and the Agents SDK wait for
                    // `response.completed` (as llama-server and vLLM send).
                    st.push("response.completed", json!({ "response": r }));
                    st.rx = None;
                }
                Some(Event::Error(e)) => {
                    let e = event_error(e);
                    st.push(
                        "error",
                        json!({"code": e.code, "message": e.message, "param": null}),
                    );
                    st.rx = None;
                }
                None => {
                    st.push(
                        "error",
                        json!({"code": null, "message": "the scheduler stopped", "param": null}),
                    );
                    st.rx = None;
                }
            }
        }
    });
    Sse::new(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn body(s: &str) -> Map<String, Value> {
        api::parse_body(s.as_bytes()).unwrap()
    }

    #[test]
    fn input_as_a_string_or_message_items_with_instructions() {
        let m = body(r#"{"input": "Hi", "instructions": "Be brief."}"#);
        assert_eq!(
            read_messages(&Fields(&m)).unwrap(),
            [
                Message::new("system", "Be brief."),
                Message::new("user", "Hi")
            ]
        );
        let m = body(
            r#"{"input": [
                {"role": "developer", "content": "Answer in French."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
                {"role": "user", "content": "d"}]}"#,
        );
        assert_eq!(
            read_messages(&Fields(&m)).unwrap(),
            [
                Message::new("system", "Answer in French."),
                Message::new("user", "ab"),
                Message::new("assistant", "c"),
                Message::new("user", "d"),
            ]
        );
    }

    #[test]
    fn bad_input_names_its_item_and_what_is_not_supported() {
        for (b, param, says) in [
            (r#"{}"#, "input", "required"),
            (r#"{"input": ""}"#, "input", "empty"),
            (r#"{"input": []}"#, "input", "empty"),
            (r#"{"input": 5}"#, "input", "a number"),
            (r#"{"input": [3]}"#, "input[0]", "an object"),
            (
                r#"{"input": [{"role": "wizard", "content": "x"}]}"#,
                "input[0].role",
                "wizard",
            ),
            (
                r#"{"input": [{"role": "user"}]}"#,
                "input[0].content",
                "required",
            ),
            (
                r#"{"input": [{"type": "function_call_output", "call_id": "c", "output": "4"}]}"#,
                "input[0].type",
                "tool calls are not supported yet",
            ),
            (
                r#"{"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}"#,
                "input[0].content[0]",
                "text only",
            ),
        ] {
            let e = read_messages(&Fields(&body(b))).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{b}");
            assert_eq!(e.param.as_deref(), Some(param), "{b}: {}", e.message);
            assert!(e.message.contains(says), "{b}: {}", e.message);
        }
    }

    #[test]
    fn state_tools_and_structured_output_are_refused_saying_why() {
        for (b, param, says) in [
            (
                r#"{"previous_response_id": "resp_1"}"#,
                "previous_response_id",
                "no state",
            ),
            (r#"{"store": true}"#, "store", "no state"),
            (
                r#"{"tools": [{"type": "function", "name": "f"}]}"#,
                "tools",
                "not supported yet",
            ),
            (
                r#"{"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}"#,
                "text.format",
                "not supported yet",
            ),
        ] {
            let e = refuse_unsupported(&Fields(&body(b))).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{b}: {}", e.message);
            assert!(e.message.contains(says), "{b}: {}", e.message);
        }
        for b in [
            r#"{"store": false, "tools": [], "text": {"format": {"type": "text"}}}"#,
            r#"{}"#,
        ] {
            assert!(refuse_unsupported(&Fields(&body(b))).is_ok(), "{b}");
        }
    }

    #[test]
    fn max_output_tokens_is_read_and_named_in_errors() {
        let o = read_options(&body(
            r#"{"max_output_tokens": 9, "temperature": 0, "top_p": 0.5}"#,
        ))
        .unwrap();
        assert_eq!(
            (o.max_tokens, o.sampling.temperature, o.sampling.top_p),
            (Some(9), 0.0, 0.5)
        );
        let e = read_options(&body(r#"{"max_output_tokens": 0}"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_output_tokens"));
        assert!(e.message.contains("`max_output_tokens`"), "{}", e.message);
    }
}
