//! The subset of ollama's API that frontends speaking only ollama need:
//! `GET /api/version`, `GET /api/tags`, `POST /api/show`, `GET /api/ps`,
//! `POST /api/chat`, `POST /api/generate`. Streams are newline-delimited
//! JSON (ollama's default is to stream); errors are `{"error": "message"}`.
//! Requests go through the same validation, queue and scheduler as the
//! OpenAI routes. ollama's model management (`/api/pull`, `/api/create`,
//! ...) is answered 501: Hearth serves the one file it was started with.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::api::{self, ApiError, Endpoint, Fields};
use super::routes::{
    blocking, body_object, check_model, check_model_exact, check_prompt_bytes, compile_grammar,
    default_seed, encode_chat, ready, submit,
};
use super::scheduler::Event;
use super::Shared;
use hearth::chat::Message;

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/ps", get(ps))
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/{*rest}", any(not_implemented))
}

/// The ollama version whose API this subset follows. Clients gate features
/// on it (VS Code Copilot wants 0.6.4 or later), so it is ollama's number,
/// not Hearth's.
pub(crate) const OLLAMA_VERSION: &str = "0.9.0";

fn error(e: ApiError) -> Response {
    let mut r = (e.status, Json(json!({"error": e.message}))).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
    }
    r
}

async fn version() -> Json<Value> {
    Json(json!({"version": OLLAMA_VERSION}))
}

async fn not_implemented(req: axum::extract::Request) -> Response {
    let msg = format!(
        "{} is not supported: hearth serves the one model file it was started with \
         (ollama's model management has no meaning here)",
        req.uri().path()
    );
    (StatusCode::NOT_IMPLEMENTED, Json(json!({"error": msg}))).into_response()
}

/// The served model as `/api/tags` lists it: every field Zed's strict parser
/// reads (`name`, `modified_at`, `size`, `digest`, `details`) and `model`,
/// which Copilot reads. `digest` is empty: Hearth does not hash the file.
fn model_entry(s: &Shared) -> Value {
    let id = &s.cfg.model_id;
    let (size, details) = match s.ready.get() {
        Some(r) => (r.info.file_size, r.info.details()),
        None => (0, json!({"format": "gguf"})),
    };
    json!({
        "name": id,
        "model": id,
        "modified_at": rfc3339(s.started),
        "size": size,
        "digest": "",
        "details": details,
    })
}

async fn tags(State(s): St) -> Json<Value> {
    Json(json!({"models": [model_entry(&s)]}))
}

/// `/api/ps`: the one model, always loaded. Weights are in host memory
/// (`size_vram` 0) on the CPU backend; it never expires.
async fn ps(State(s): St) -> Json<Value> {
    let mut m = model_entry(&s);
    m["expires_at"] = json!("2999-01-01T00:00:00Z");
    m["size_vram"] = json!(0);
    if let Some(r) = s.ready.get() {
        m["context_length"] = json!(r.n_ctx);
    }
    Json(json!({"models": [m]}))
}

/// `/api/show`: the template, the metadata (`model_info`, with
/// `<arch>.context_length` as the file says), and `capabilities` as far as
/// Hearth serves them: text completion only for now (no tool calls, images,
/// thinking or embeddings yet).
async fn show(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = (|| {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        // `name` is the older spelling of `model`.
        let name = match model_name(&f)? {
            Some(n) => Some(n),
            None => f
                .str("name")?
                .map(|n| n.strip_suffix(":latest").unwrap_or(n).to_string()),
        };
        let name = name.ok_or_else(|| ApiError::param("model", "is required"))?;
        check_model_exact(&s, Some(&name))?;
        let info = &ready.info;
        Ok::<_, ApiError>(json!({
            "license": info.model_info.get("general.license").and_then(Value::as_str).unwrap_or(""),
            "modelfile": format!("# served by hearth\nFROM {}\n", s.cfg.model_id),
            "parameters": format!("num_ctx {}", ready.n_ctx),
            "template": info.chat_template.as_deref().unwrap_or(""),
            "details": info.details(),
            "model_info": info.model_info,
            "capabilities": ["completion"],
            "modified_at": rfc3339(s.started),
        }))
    })();
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

/// ollama names models `name:tag`; `:latest` is the default tag.
fn model_name(f: &Fields<'_>) -> Result<Option<String>, ApiError> {
    Ok(f.str("model")?
        .map(|m| m.strip_suffix(":latest").unwrap_or(m).to_string()))
}

/// ollama's `options` and `stream` as the OpenAI fields `api::options` reads.
fn openai_fields(m: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    out.insert(
        "stream".into(),
        m.get("stream").cloned().unwrap_or(Value::Bool(true)),
    );
    out.insert("temperature".into(), json!(0.8));
    let opts = match m.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(ApiError::param("options", "expected an object")),
    };
    for (k, v) in opts {
        let name = match k.as_str() {
            // -1 (and -2, "fill the context") mean no limit.
            "num_predict" if v.as_i64().is_some_and(|n| n < 0) => continue,
            "num_predict" => "max_tokens",
            "temperature" | "top_p" | "top_k" | "min_p" | "seed" | "stop" | "repeat_penalty"
            | "presence_penalty" | "frequency_penalty" => k.as_str(),
            // Options that do not apply here (num_ctx, num_thread, ...).
            _ => continue,
        };
        out.insert(name.to_string(), v);
    }
    Ok(out)
}

async fn chat(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, model_name(&f)?.as_deref())?;
        let messages = api::messages(&f)?;
        let o = openai_fields(&m)?;
        let mut opts = api::options(&Fields(&o), Endpoint::Chat, default_seed())?;
        opts.grammar = api::ollama_format(&f)?;
        let constraint = compile_grammar(&s, &opts).await?;
        let template = ready
            .template
            .clone()
            .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
        let tok = Arc::clone(&ready.tok);
        let shared = Arc::clone(&s);
        let prompt =
            blocking(move || encode_chat(&shared, &template, &tok, &messages, "messages")).await?;
        let rx = submit(&s, prompt, &opts, constraint)?;
        Ok::<_, ApiError>((rx, opts.stream))
    }
    .await;
    match r {
        Ok((rx, stream)) => respond(&s, rx, stream, Kind::Chat).await,
        Err(e) => error(e),
    }
}

async fn generate(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, model_name(&f)?.as_deref())?;
        let prompt = f
            .str("prompt")?
            .ok_or_else(|| ApiError::param("prompt", "is required"))?
            .to_string();
        let system = f.str("system")?.map(str::to_string);
        let raw = f.bool("raw")?.unwrap_or(false);
        let o = openai_fields(&m)?;
        let mut opts = api::options(&Fields(&o), Endpoint::Completion, default_seed())?;
        opts.grammar = api::ollama_format(&f)?;
        let constraint = compile_grammar(&s, &opts).await?;
        // With a non-empty `suffix` (Continue's autocompletion), a
        // fill-in-the-middle prompt, as ollama builds one from a template
        // that supports it; a model without FIM tokens gets a 400.
        if let Some(suffix) = f.str("suffix")?.filter(|x| !x.is_empty()) {
            let parts = super::fim::Parts {
                prefix: prompt,
                suffix: suffix.to_string(),
                ..Default::default()
            };
            let n_predict = opts.max_tokens.unwrap_or(0);
            let ids = super::fim::encode(ready, parts, n_predict, Some("suffix")).await?;
            let rx = submit(&s, ids, &opts, constraint)?;
            return Ok((rx, opts.stream));
        }
        let tok = Arc::clone(&ready.tok);
        let n_ctx = ready.n_ctx;
        let template = ready.template.clone();
        let shared = Arc::clone(&s);
        // As ollama: the prompt goes through the chat template unless `raw`.
        let ids = blocking(move || {
            if raw {
                check_prompt_bytes(&tok, n_ctx, prompt.len())?;
                return tok
                    .encode_at_most(&prompt, true, true, n_ctx)
                    .map_err(|e| ApiError::param("prompt", e.to_string()));
            }
            let template = template
                .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
            let mut msgs: Vec<Message> = system
                .into_iter()
                .map(|s| Message::new("system", s))
                .collect();
            msgs.push(Message::new("user", prompt));
            encode_chat(&shared, &template, &tok, &msgs, "prompt")
        })
        .await?;
        let rx = submit(&s, ids, &opts, constraint)?;
        Ok::<_, ApiError>((rx, opts.stream))
    }
    .await;
    match r {
        Ok((rx, stream)) => respond(&s, rx, stream, Kind::Generate).await,
        Err(e) => error(e),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Generate,
}

struct Reply {
    model: String,
    kind: Kind,
    t0: Instant,
}

impl Reply {
    fn object(&self, text: &str, done: Option<(&str, usize, usize)>) -> Value {
        let mut v = json!({
            "model": self.model,
            "created_at": rfc3339(Shared::unix_now()),
            "done": done.is_some(),
        });
        match self.kind {
            Kind::Chat => v["message"] = json!({"role": "assistant", "content": text}),
            Kind::Generate => v["response"] = json!(text),
        }
        if let Some((reason, prompt, generated)) = done {
            v["done_reason"] = json!(reason);
            v["total_duration"] = json!(self.t0.elapsed().as_nanos() as u64);
            v["prompt_eval_count"] = json!(prompt);
            v["eval_count"] = json!(generated);
        }
        v
    }
}

async fn respond(
    s: &Shared,
    mut rx: mpsc::UnboundedReceiver<Event>,
    stream: bool,
    kind: Kind,
) -> Response {
    let reply = Reply {
        model: s.cfg.model_id.clone(),
        kind,
        t0: Instant::now(),
    };
    if !stream {
        let mut text = String::new();
        loop {
            match rx.recv().await {
                Some(Event::Token { text: t, .. }) => text.push_str(&t),
                Some(Event::Done { finish, usage }) => {
                    let done = (
                        finish.as_str(),
                        usage.prompt_tokens,
                        usage.completion_tokens,
                    );
                    return Json(reply.object(&text, Some(done))).into_response();
                }
                Some(Event::Error(e)) => return error(ApiError::internal(e)),
                None => return error(ApiError::internal("the scheduler stopped")),
            }
        }
    }
    let lines = futures_util::stream::unfold(Some((rx, reply)), |st| async move {
        let (mut rx, reply) = st?;
        loop {
            let line = match rx.recv().await {
                Some(Event::Token { text, .. }) if text.is_empty() => continue,
                Some(Event::Token { text, .. }) => reply.object(&text, None),
                Some(Event::Done { finish, usage }) => {
                    let done = (
                        finish.as_str(),
                        usage.prompt_tokens,
                        usage.completion_tokens,
                    );
                    let v = reply.object("", Some(done));
                    return Some((Ok::<_, Infallible>(ndjson(&v)), None));
                }
                Some(Event::Error(e)) => return Some((Ok(ndjson(&json!({"error": e}))), None)),
                None => return None,
            };
            return Some((Ok(ndjson(&line)), Some((rx, reply))));
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn ndjson(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC), by
/// Howard Hinnant's `civil_from_days`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ollama_options_map_to_openai_fields() {
        let m = api::parse_body(
            br#"{"options": {"num_predict": 5, "temperature": 0, "seed": 3, "num_ctx": 99, "stop": ["x"]}}"#,
        )
        .unwrap();
        let o = openai_fields(&m).unwrap();
        let opts = api::options(&Fields(&o), Endpoint::Chat, 0).unwrap();
        assert_eq!(opts.max_tokens, Some(5));
        assert_eq!(opts.sampling.temperature, 0.0);
        assert_eq!(opts.sampling.seed, 3);
        assert_eq!(opts.stop, ["x"]);
        assert!(opts.stream, "ollama streams by default");
        let m = api::parse_body(br#"{"stream": false, "options": {"num_predict": -1}}"#).unwrap();
        let opts = api::options(&Fields(&openai_fields(&m).unwrap()), Endpoint::Chat, 0).unwrap();
        assert_eq!(opts.max_tokens, None);
        assert!(!opts.stream);
        assert_eq!(opts.sampling.temperature, 0.8);
    }
}
