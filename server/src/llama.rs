//! llama-server's own routes, for tools written against llama.cpp:
//! `POST /completion` (its native completion: `n_predict`, `n_probs`,
//! `return_tokens`, its result and streaming shapes, its errors),
//! `POST /infill` (the same with a fill-in-the-middle prompt),
//! `GET /props` (the slot context, the slot count, the chat template, the
//! default sampling settings), `POST /apply-template` (the chat template
//! rendered, not run) and `GET /slots` (501, as llama-server without
//! `--slots`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth::sampler::{SamplerConfig, TokenLogprobs};
use hearth::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::api::{self, ApiError, Endpoint, Fields, Options, Prompt};
use super::fim::{self, Chunk, Parts};
use super::routes::{
    blocking, body_object, check_model, default_seed, encode_prompt, piece_text, ready, submit,
};
use super::scheduler::{Event, Finish, Usage};
use super::Shared;

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/props", get(props))
        .route("/apply-template", post(apply_template))
        .route("/slots", get(slots))
        .route("/completion", post(completion))
        .route("/infill", post(infill))
}

/// `{"messages": [...]}` → `{"prompt": "..."}`: the text the chat template
/// makes of the messages, with the generation prompt, as llama-server's.
async fn apply_template(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let messages = api::messages(&Fields(&m))?;
        let template = ready
            .template
            .clone()
            .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
        blocking(move || {
            template
                .render(&messages, true)
                .map_err(|e| ApiError::param("messages", e.to_string()))
        })
        .await
    }
    .await;
    match r {
        Ok(prompt) => Json(json!({ "prompt": prompt })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// llama-server answers `/slots` only with `--slots`; Hearth does not keep
/// that view, and says so the same way.
async fn slots() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_supported_error",
        "this server does not expose slots (GET /metrics has busy slots and queue depth)",
    )
}

/// llama-server's `/props`, the fields clients read: `n_ctx` is one slot's
/// context (as llama-server's, whose `n_ctx` is also per slot).
async fn props(State(s): St) -> Response {
    let r = match ready(&s) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let d = SamplerConfig::default();
    let model_path = s.cfg.model_path.as_ref().map_or_else(
        || format!("{}.gguf", s.cfg.model_id),
        |p| p.display().to_string(),
    );
    Json(json!({
        "default_generation_settings": {
            "n_ctx": r.n_ctx,
            "params": {
                "n_predict": -1,
                "temperature": d.temperature,
                "top_k": d.top_k,
                "top_p": d.top_p,
                "min_p": d.min_p,
                "repeat_penalty": d.repeat_penalty,
                "repeat_last_n": d.penalty_last_n,
                "presence_penalty": d.presence_penalty,
                "frequency_penalty": d.frequency_penalty,
            },
        },
        "total_slots": s.cfg.parallel,
        "model_path": model_path,
        "chat_template": r.info.chat_template.as_deref().unwrap_or(""),
        "modalities": {"vision": false, "audio": false},
        "build_info": concat!("hearth ", env!("CARGO_PKG_VERSION")),
    }))
    .into_response()
}

/// An error in llama-server's shape, `{"error": {"code", "message",
/// "type"}}` with the HTTP status as `code`; a prompt that does not fit the
/// context is its `exceed_context_size_error` with both counts.
pub(crate) struct Error {
    e: ApiError,
    /// `n_prompt_tokens` and `n_ctx` of a prompt past the context.
    context: Option<(usize, usize)>,
}

impl Error {
    /// `n_prompt` tokens (or at least that many: prompts are tokenized only
    /// until they pass the context) do not fit a context of `n_ctx`.
    fn context(n_prompt: usize, n_ctx: usize) -> Error {
        Error {
            e: ApiError::new(
                StatusCode::BAD_REQUEST,
                "exceed_context_size_error",
                format!(
                    "the request ({n_prompt} prompt tokens or more) exceeds the available \
                     context size ({n_ctx} tokens): shorten the prompt"
                ),
            ),
            context: Some((n_prompt, n_ctx)),
        }
    }

    fn body(&self) -> Value {
        let mut e = json!({
            "code": self.e.status.as_u16(),
            "message": self.e.message,
            "type": self.e.kind,
        });
        if let Some((n_prompt, n_ctx)) = self.context {
            e["n_prompt_tokens"] = json!(n_prompt);
            e["n_ctx"] = json!(n_ctx);
        }
        json!({ "error": e })
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error { e, context: None }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut r = (self.e.status, Json(self.body())).into_response();
        if let Some(s) = self.e.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// What `/completion` reads besides [`Options`].
#[derive(Debug, Clone, Copy, Default)]
struct Native {
    /// `None`: `n_predict` -1 or absent, until the context is full.
    n_predict: Option<usize>,
    /// Alternatives reported per token in `completion_probabilities`.
    n_probs: usize,
    /// Whether `tokens` lists the generated ids.
    return_tokens: bool,
}

/// `/completion`'s fields as the OpenAI ones [`api::options`] reads, with
/// llama-server's sampling defaults (temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05: [`SamplerConfig::default`]) for those left out. `seed` -1
/// draws one; `cache_prompt` is accepted and changes nothing (a slot always
/// reuses the longest cached prefix, and the result does not depend on it).
fn read_options(m: &Map<String, Value>, n_ctx: usize) -> Result<(Options, Native), ApiError> {
    let f = Fields(m);
    // llama-server reads `max_tokens` where `n_predict` is absent.
    let n_predict = match f.int_in("n_predict", -1, i64::from(u32::MAX))? {
        Some(n) => Some(n),
        None => f.int_in("max_tokens", -1, i64::from(u32::MAX))?,
    };
    let n_probs = f.int_in("n_probs", 0, api::MAX_TOP_LOGPROBS)?.unwrap_or(0) as usize;
    let return_tokens = f.bool("return_tokens")?.unwrap_or(false);
    f.bool("cache_prompt")?;
    let repeat_last_n = f.int_in("repeat_last_n", -1, i64::from(u32::MAX))?;
    let mut o = Map::new();
    for k in [
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "stream",
        "seed",
    ] {
        if let Some(v) = m.get(k) {
            o.insert(k.to_string(), v.clone());
        }
    }
    if o.get("seed") == Some(&json!(-1)) {
        o.remove("seed");
    }
    let mut opts = api::options(&Fields(&o), Endpoint::Completion, default_seed())?;
    let d = SamplerConfig::default();
    let absent = |k: &str| m.get(k).is_none_or(Value::is_null);
    if absent("temperature") {
        opts.sampling.temperature = d.temperature;
    }
    if absent("top_k") {
        opts.sampling.top_k = d.top_k;
    }
    if absent("top_p") {
        opts.sampling.top_p = d.top_p;
    }
    if absent("min_p") {
        opts.sampling.min_p = d.min_p;
    }
    if let Some(n) = repeat_last_n {
        // -1 is the whole context, as llama-server's.
        opts.sampling.penalty_last_n = usize::try_from(n).map_or(n_ctx, |n| n.min(n_ctx));
    }
    let n_predict = n_predict.and_then(|n| usize::try_from(n).ok());
    opts.max_tokens = n_predict;
    opts.logprobs = (n_probs > 0).then_some(n_probs);
    Ok((
        opts,
        Native {
            n_predict,
            n_probs,
            return_tokens,
        },
    ))
}

/// The tokens of a `/completion` prompt, refused in llama's shape when
/// they fill the context (llama-server needs room for one token).
async fn native_prompt(s: &Shared, prompt: Prompt) -> Result<Vec<u32>, Error> {
    let ready = ready(s)?;
    let n_ctx = ready.n_ctx;
    let bytes = match &prompt {
        Prompt::Text(t) => t.len(),
        Prompt::Tokens(_) => 0,
    };
    let ids = match encode_prompt(ready, prompt).await {
        Err(e) if e.code == Some("context_length_exceeded") => {
            // Refused by its length before tokenizing: each token stands
            // for at most `max_token_bytes` bytes.
            let least = bytes.div_ceil(ready.tok.max_token_bytes().max(1));
            return Err(Error::context(least, n_ctx));
        }
        r => r?,
    };
    if ids.len() >= n_ctx {
        return Err(Error::context(ids.len(), n_ctx));
    }
    Ok(ids)
}

/// `input_extra`: `[{"filename": ..., "text": ...}]` (`filename`
/// defaults to `tmp`, as llama-server's).
fn read_extra(m: &Map<String, Value>) -> Result<Vec<Chunk>, ApiError> {
    let list = match m.get("input_extra") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::param(
                "input_extra",
                format!(
                    "expected an array of {{\"filename\", \"text\"}}, got {}",
                    api::kind(v)
                ),
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let p = format!("input_extra[{i}]");
            let Value::Object(c) = c else {
                return Err(ApiError::param(
                    &p,
                    format!("expected an object, got {}", api::kind(c)),
                ));
            };
            let f = Fields(c);
            let text = f
                .str("text")
                .map_err(|_| ApiError::param(&p, "`text` must be a string"))?;
            let filename = f
                .str("filename")
                .map_err(|_| ApiError::param(&p, "`filename` must be a string"))?;
            Ok(Chunk {
                filename: filename.unwrap_or("tmp").to_string(),
                text: text
                    .ok_or_else(|| ApiError::param(&p, "`text` is required"))?
                    .to_string(),
            })
        })
        .collect()
}

/// llama-server's `/infill`: `input_prefix`, `input_suffix`, `input_extra`
/// and `prompt` (the start of the middle) laid out with the model's FIM
/// tokens ([`fim::infill_prompt`]), then run and answered as `/completion`.
async fn infill(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, f.str("model")?)?;
        let (opts, native) = read_options(&m, ready.n_ctx)?;
        let text = |k: &str| Ok::<_, ApiError>(f.str(k)?.unwrap_or("").to_string());
        let parts = Parts {
            prefix: text("input_prefix")?,
            suffix: text("input_suffix")?,
            extra: read_extra(&m)?,
            prompt: text("prompt")?,
        };
        let bytes = parts.bytes();
        let n_predict = opts.max_tokens.unwrap_or(0);
        let ids = match fim::encode(ready, parts, n_predict, None).await {
            Err(e) if e.code == Some("context_length_exceeded") => {
                let least = bytes.div_ceil(ready.tok.max_token_bytes().max(1));
                return Err(Error::context(least, ready.n_ctx));
            }
            r => r?,
        };
        if ids.len() >= ready.n_ctx {
            return Err(Error::context(ids.len(), ready.n_ctx));
        }
        Ok::<_, Error>((ids, opts, native))
    }
    .await;
    match r {
        Ok((prompt, opts, native)) => run(&s, prompt, opts, native).await,
        Err(e) => e.into_response(),
    }
}

async fn completion(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let n_ctx = ready(&s)?.n_ctx;
        let n_vocab = ready(&s)?.n_vocab;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, f.str("model")?)?;
        let (opts, native) = read_options(&m, n_ctx)?;
        let prompt = api::prompt(&f, n_vocab)?;
        Ok::<_, Error>((native_prompt(&s, prompt).await?, opts, native))
    }
    .await;
    match r {
        Ok((prompt, opts, native)) => run(&s, prompt, opts, native).await,
        Err(e) => e.into_response(),
    }
}

/// Queues a native completion and answers in llama-server's shapes.
async fn run(s: &Arc<Shared>, prompt: Vec<u32>, mut opts: Options, native: Native) -> Response {
    let r = match ready(s) {
        Ok(r) => r,
        Err(e) => return Error::from(e).into_response(),
    };
    let room = r.n_ctx.saturating_sub(prompt.len());
    opts.max_tokens = opts.max_tokens.map(|n| n.min(room));
    let mut reply = Reply {
        model: s.cfg.model_id.clone(),
        tok: Arc::clone(&r.tok),
        prompt_text: r.tok.decode(&prompt),
        prompt_tokens: prompt.len(),
        settings: settings(&opts, &native),
        stop: opts.stop.clone(),
        native,
        stream: opts.stream,
        started: Instant::now(),
        first: None,
        content: String::new(),
        tokens: Vec::new(),
        probs: Vec::new(),
    };
    if opts.max_tokens == Some(0) {
        // llama-server evaluates nothing and answers at once.
        let usage = Usage {
            prompt_tokens: reply.prompt_tokens,
            ..Usage::default()
        };
        let v = reply.done(Finish::Length, &usage);
        return if opts.stream {
            let one = futures_util::stream::iter([Ok::<_, Infallible>(sse_json(&v))]);
            Sse::new(one).into_response()
        } else {
            Json(v).into_response()
        };
    }
    // llama.cpp's `grammar` and `json_schema` (and `response_format`).
    let constraint = match super::routes::compile_grammar(s, &opts).await {
        Ok(c) => c,
        Err(e) => return Error::from(e).into_response(),
    };
    let rx = match submit(s, prompt, &opts, constraint) {
        Ok(rx) => rx,
        Err(e) => return Error::from(e).into_response(),
    };
    if opts.stream {
        stream(reply, rx).into_response()
    } else {
        whole(&mut reply, rx).await
    }
}

/// `generation_settings`: what the request ran with, in llama's names.
fn settings(opts: &Options, native: &Native) -> Value {
    let c = &opts.sampling;
    json!({
        "n_predict": native.n_predict.map_or(-1, |n| n as i64),
        "seed": c.seed,
        "temperature": c.temperature,
        "top_k": c.top_k,
        "top_p": c.top_p,
        "min_p": c.min_p,
        "repeat_penalty": c.repeat_penalty,
        "repeat_last_n": c.penalty_last_n,
        "presence_penalty": c.presence_penalty,
        "frequency_penalty": c.frequency_penalty,
        "stop": opts.stop,
        "n_probs": native.n_probs,
        "stream": opts.stream,
    })
}

/// A native completion as it is generated.
struct Reply {
    model: String,
    tok: Arc<Tokenizer>,
    prompt_text: String,
    prompt_tokens: usize,
    settings: Value,
    stop: Vec<String>,
    native: Native,
    stream: bool,
    started: Instant,
    /// When the first token came (the end of the prompt's evaluation).
    first: Option<Instant>,
    content: String,
    tokens: Vec<u32>,
    probs: Vec<Value>,
}

/// One entry of `completion_probabilities`: the token and its
/// alternatives, with log-probabilities (llama-server's form without
/// `post_sampling_probs`).
fn probability(tok: &Tokenizer, lp: &TokenLogprobs) -> Value {
    let entry = |id: u32, logprob: f32| {
        let bytes = tok.token_to_piece(id).unwrap_or_default();
        json!({"id": id, "token": piece_text(tok, id), "bytes": bytes, "logprob": logprob})
    };
    let mut e = entry(lp.token, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    e
}

impl Reply {
    /// Takes in one generated token; returns its streamed chunk.
    fn token(&mut self, id: u32, text: &str, lp: Option<&TokenLogprobs>) -> Value {
        self.first.get_or_insert_with(Instant::now);
        self.content.push_str(text);
        self.tokens.push(id);
        let prob = lp.map(|lp| probability(&self.tok, lp));
        let mut c = json!({
            "index": 0,
            "content": text,
            "tokens": if self.native.return_tokens { json!([id]) } else { json!([]) },
            "stop": false,
            "id_slot": -1,
            "tokens_predicted": self.tokens.len(),
            "tokens_evaluated": self.prompt_tokens,
        });
        if let Some(p) = prob {
            c["completion_probabilities"] = json!([p.clone()]);
            self.probs.push(p);
        }
        c
    }

    /// The final result: the whole content (empty when streamed, as
    /// llama-server's last chunk), why it stopped, counts and timings.
    fn done(&self, finish: Finish, u: &Usage) -> Value {
        let (stop_type, word) = match finish {
            Finish::Stop => ("eos", ""),
            Finish::Length => ("limit", ""),
            Finish::StopString(i) => ("word", self.stop.get(i).map_or("", String::as_str)),
        };
        let end = Instant::now();
        let first = self.first.unwrap_or(end);
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
        let (prompt_ms, predicted_ms) = (ms(self.started, first), ms(first, end));
        let prompt_n = u.prompt_tokens.saturating_sub(u.cached_tokens);
        let per = |ms: f64, n: usize| if n > 0 { ms / n as f64 } else { 0.0 };
        let rate = |ms: f64, n: usize| if ms > 0.0 { 1e3 * n as f64 / ms } else { 0.0 };
        let mut v = json!({
            "index": 0,
            "content": if self.stream { "" } else { self.content.as_str() },
            "tokens": if self.native.return_tokens && !self.stream {
                json!(self.tokens)
            } else {
                json!([])
            },
            "id_slot": -1,
            "stop": true,
            "model": self.model,
            "tokens_predicted": u.completion_tokens,
            "tokens_evaluated": u.prompt_tokens,
            "generation_settings": self.settings,
            "prompt": self.prompt_text,
            "has_new_line": self.content.contains('\n'),
            "truncated": false,
            "stop_type": stop_type,
            "stopping_word": word,
            // As llama-server documents it: prompt tokens reused from the
            // slot's cache.
            "tokens_cached": u.cached_tokens,
            "timings": {
                "cache_n": u.cached_tokens,
                "prompt_n": prompt_n,
                "prompt_ms": prompt_ms,
                "prompt_per_token_ms": per(prompt_ms, prompt_n),
                "prompt_per_second": rate(prompt_ms, prompt_n),
                "predicted_n": u.completion_tokens,
                "predicted_ms": predicted_ms,
                "predicted_per_token_ms": per(predicted_ms, u.completion_tokens),
                "predicted_per_second": rate(predicted_ms, u.completion_tokens),
            },
        });
        if self.native.n_probs > 0 && !self.stream {
            v["completion_probabilities"] = json!(self.probs);
        }
        v
    }
}

/// A mid-generation failure, in llama's error shape.
fn event_error(message: String) -> Error {
    Error::from(super::routes::event_error(message))
}

async fn whole(reply: &mut Reply, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    loop {
        match rx.recv().await {
            Some(Event::Token { id, text, logprobs }) => {
                reply.token(id, &text, logprobs.as_ref());
            }
            Some(Event::Done { finish, usage }) => {
                return Json(reply.done(finish, &usage)).into_response()
            }
            Some(Event::Error(e)) => return event_error(e).into_response(),
            None => {
                return Error::from(ApiError::internal("the scheduler stopped")).into_response()
            }
        }
    }
}

fn sse_json(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// llama-server's stream: `data: {"content": ..., "stop": false}` per
/// token (a token whose text is still incomplete is sent only when its id
/// or probabilities were asked for), then the final result with
/// `"stop": true` and empty content; no `[DONE]`. A failure mid-way is
/// `data: {"error": ...}`, and the end.
fn stream(reply: Reply, rx: mpsc::UnboundedReceiver<Event>) -> impl IntoResponse {
    let events =
        futures_util::stream::unfold((reply, Some(rx)), |(mut reply, mut rx)| async move {
            loop {
                let r = rx.as_mut()?;
                let v = match r.recv().await {
                    Some(Event::Token { id, text, logprobs }) => {
                        let c = reply.token(id, &text, logprobs.as_ref());
                        if text.is_empty() && logprobs.is_none() && !reply.native.return_tokens {
                            continue;
                        }
                        c
                    }
                    Some(Event::Done { finish, usage }) => {
                        rx = None;
                        reply.done(finish, &usage)
                    }
                    Some(Event::Error(e)) => {
                        rx = None;
                        event_error(e).body()
                    }
                    None => {
                        rx = None;
                        Error::from(ApiError::internal("the scheduler stopped")).body()
                    }
                };
                return Some((Ok::<_, Infallible>(sse_json(&v)), (reply, rx)));
            }
        });
    Sse::new(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<(Options, Native), ApiError> {
        read_options(&api::parse_body(body.as_bytes()).unwrap(), 256)
    }

    #[test]
    fn completion_options_take_llamas_defaults_and_names() {
        let (o, n) = read("{}").unwrap();
        let d = SamplerConfig::default();
        assert_eq!(
            (
                o.sampling.temperature,
                o.sampling.top_k,
                o.sampling.top_p,
                o.sampling.min_p
            ),
            (d.temperature, d.top_k, d.top_p, d.min_p)
        );
        assert_eq!(
            (o.max_tokens, n.n_predict, o.logprobs, o.stream),
            (None, None, None, false)
        );
        let (o, n) = read(
            r#"{"n_predict": 5, "n_probs": 3, "temperature": 0, "top_k": 1, "seed": 42,
                "stop": ["x"], "stream": true, "cache_prompt": true, "return_tokens": true,
                "repeat_last_n": -1}"#,
        )
        .unwrap();
        assert_eq!((o.max_tokens, n.n_predict), (Some(5), Some(5)));
        assert_eq!((o.logprobs, n.n_probs), (Some(3), 3));
        assert_eq!((o.sampling.temperature, o.sampling.top_k), (0.0, 1));
        assert_eq!((o.sampling.seed, o.sampling.penalty_last_n), (42, 256));
        assert!(o.stream && n.return_tokens);
        assert_eq!(o.stop, ["x"]);
        let (o, _) = read(r#"{"max_tokens": 3}"#).unwrap();
        assert_eq!(o.max_tokens, Some(3));
        let (o, n) = read(r#"{"n_predict": -1, "seed": -1, "max_tokens": 3}"#).unwrap();
        assert_eq!((o.max_tokens, n.n_predict), (None, None));
        assert_ne!(o.sampling.seed, u64::MAX, "-1 draws a seed");
        for (b, param) in [
            (r#"{"n_predict": -2}"#, "n_predict"),
            (r#"{"n_probs": 21}"#, "n_probs"),
            (r#"{"cache_prompt": 1}"#, "cache_prompt"),
            (r#"{"return_tokens": "yes"}"#, "return_tokens"),
            (r#"{"top_p": 0}"#, "top_p"),
        ] {
            let e = read(b).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{b}: {}", e.message);
        }
    }

    #[test]
    fn errors_take_llamas_shape_and_context_overflow_names_both_counts() {
        let e = Error::context(300, 128).body();
        assert_eq!(e["error"]["code"], 400);
        assert_eq!(e["error"]["type"], "exceed_context_size_error");
        assert_eq!(
            (
                e["error"]["n_prompt_tokens"].as_u64(),
                e["error"]["n_ctx"].as_u64()
            ),
            (Some(300), Some(128))
        );
        let e = Error::from(ApiError::param("n_probs", "bad")).body();
        assert_eq!(
            e,
            json!({"error": {"code": 400, "message": "`n_probs`: bad", "type": "invalid_request_error"}})
        );
    }
}
