//! The HTTP routes: OpenAI's chat and text completions, models, health,
//! metrics, tokenize and detokenize; ollama's, llama-server's and
//! Anthropic's are merged in from their modules.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::api::{self, ApiError, Endpoint, Fields, Options, Prompt};
use super::scheduler::{Event, Finish, Job, Rejected, Usage};
use super::{Ready, Shared};
use hearth::chat::{ChatTemplate, Message};
use hearth::constraint::{Constraint, ConstraintVocab};
use hearth::sampler::TokenLogprobs;
use hearth::tokenizer::Tokenizer;

type St = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        // llama-server also answers the OpenAI routes without `/v1`, and
        // tools written for it call them so.
        .route("/models", get(models))
        .route("/completions", post(completions))
        .route("/chat/completions", post(chat_completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .merge(super::ollama::routes())
        .merge(super::llama::routes())
        .merge(super::anthropic::routes())
        .merge(super::responses::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .layer(DefaultBodyLimit::max(shared.cfg.max_body))
        .with_state(shared)
}

/// Checks who is asking (the `Host`, the `Origin`, a JSON body's type; see
/// [`super::security`]), answers CORS preflights, checks the API key (all
/// routes but `/health` and preflights) and counts refusals.
async fn guard(State(s): St, req: Request, next: Next) -> Response {
    use super::security;
    // Refusals in the error shape of the API the path belongs to.
    let anthropic = super::anthropic::is_anthropic_path(req.uri().path());
    let refuse = |e: ApiError| {
        if anthropic {
            super::anthropic::error(e)
        } else {
            e.into_response()
        }
    };
    if let Some(host) = req.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !security::host_allowed(host, &s.cfg.allowed_hosts) {
            s.metrics.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            return refuse(security::forbidden(format!(
                "the Host `{host}` is not this server's (DNS rebinding?): \
                 start it with --allow-host NAME to accept it"
            )));
        }
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    if let Some(o) = &origin {
        if !security::origin_allowed(o.to_str().unwrap_or(""), &s.cfg.cors_origins) {
            s.metrics.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            return refuse(security::forbidden(format!(
                "requests from the web origin `{}` are not allowed: start the server \
                 with --cors-origin ORIGIN to accept them",
                o.to_str().unwrap_or("?")
            )));
        }
        if req.method() == axum::http::Method::OPTIONS {
            let asked = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned();
            return security::preflight(o, asked.as_ref());
        }
    }
    if security::has_json_body(req.method()) && !security::json_content_type(req.headers()) {
        s.metrics.rejected_invalid.fetch_add(1, Ordering::Relaxed);
        return refuse(
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "the body must be JSON: send `Content-Type: application/json`",
            )
            .with_code("unsupported_media_type"),
        );
    }
    if let Some(key) = &s.cfg.api_key {
        if req.uri().path() != "/health" {
            let given = security::presented_key(req.headers()).unwrap_or("");
            if !super::constant_time_eq(given.as_bytes(), key.as_bytes()) {
                s.metrics.rejected_invalid.fetch_add(1, Ordering::Relaxed);
                return refuse(
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "authentication_error",
                        "a missing or wrong API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
                    )
                    .with_code("invalid_api_key"),
                );
            }
        }
    }
    let mut r = next.run(req).await;
    if r.status().is_client_error() {
        s.metrics.rejected_invalid.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(o) = &origin {
        security::add_cors_headers(r.headers_mut(), o);
    }
    r
}

async fn not_found(req: Request) -> Response {
    let e = ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
    .with_code("not_found");
    if super::anthropic::is_anthropic_path(req.uri().path()) {
        super::anthropic::error(e)
    } else {
        e.into_response()
    }
}

pub(crate) fn ready(s: &Shared) -> Result<&Ready, ApiError> {
    if s.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("the server is shutting down", 5));
    }
    s.ready
        .get()
        .ok_or_else(|| ApiError::unavailable("the model is still loading", 1))
}

async fn health(State(s): St) -> Response {
    match ready(&s) {
        Ok(r) if r.watch.as_ref().is_some_and(|w| w.changed()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "error": "model file changed"})),
        )
            .into_response(),
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            let status = if s.ready.get().is_some() {
                "shutting down"
            } else {
                "loading"
            };
            let mut r = (e.status, Json(json!({"status": status}))).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(1u64));
            r
        }
    }
}

/// OpenAI's model object, with the context length where frontends look for
/// it (vLLM's `max_model_len`, others' `context_length`): each slot's
/// context, once the model has loaded.
fn model_object(s: &Shared) -> Value {
    let mut m = json!({
        "id": s.cfg.model_id,
        "object": "model",
        "created": s.started,
        "owned_by": "hearth",
    });
    if let Some(r) = s.ready.get() {
        m["context_length"] = json!(r.n_ctx);
        m["max_model_len"] = json!(r.n_ctx);
    }
    m
}

async fn models(State(s): St) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&s)]}))
}

async fn model(State(s): St, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match check_model_exact(&s, Some(&id)) {
        Ok(()) => Json(model_object(&s)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The model a generation request names: any name is served by the one
/// model unless `--strict-model`, where another name is 404.
pub(crate) fn check_model(s: &Shared, name: Option<&str>) -> Result<(), ApiError> {
    if s.cfg.strict_model {
        check_model_exact(s, name)
    } else {
        Ok(())
    }
}

/// A model looked up by name (`/v1/models/{id}`, ollama's `show`): only
/// the served id exists.
pub(crate) fn check_model_exact(s: &Shared, name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(m) if m != s.cfg.model_id => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model `{m}` does not exist; this server has `{}`",
                s.cfg.model_id
            ),
        )
        .with_code("model_not_found")),
        _ => Ok(()),
    }
}

async fn metrics(State(s): St) -> Response {
    let text = s.metrics.render(s.queue.len(), s.cfg.parallel);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The body as a JSON object; an over-long body is 413.
pub(crate) fn body_object(
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        if let Some(t) = super::conn::body_timed_out(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                t.to_string(),
            )
            .with_code("request_timeout")
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "invalid_request_error",
                "the request body is too large",
            )
            .with_code("request_too_large")
        } else {
            ApiError::new(status, "invalid_request_error", e.body_text())
        }
    })?;
    api::parse_body(&body)
}

async fn tokenize(
    State(s): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let r = ready(&s)?;
    let m = body_object(body)?;
    let f = Fields(&m);
    let content = f
        .str("content")?
        .ok_or_else(|| ApiError::param("content", "is required"))?
        .to_string();
    // Its cost must be bounded: four requests of 7 MB held all four
    // blocking threads for 8 s. The bound is that of a prompt: text that
    // cannot fit the context is not tokenized.
    let most = r.n_ctx.saturating_mul(r.tok.max_token_bytes());
    if content.len() > most {
        return Err(ApiError::param(
            "content",
            format!(
                "{} bytes is more than this server tokenizes at once ({most} bytes, more \
                 than the context of {} tokens can hold): tokenize it in parts",
                content.len(),
                r.n_ctx
            ),
        ));
    }
    let add_special = f.bool("add_special")?.unwrap_or(false);
    // As llama-server: special-token text becomes those tokens unless
    // `"parse_special": false`.
    let parse_special = f.bool("parse_special")?.unwrap_or(true);
    let pieces = f.bool("with_pieces")?.unwrap_or(false);
    let tok = Arc::clone(&r.tok);
    // Texts longer than a prompt are tokenized too (a client counting a
    // document), up to four contexts' worth of tokens.
    let most_tokens = r.n_ctx.saturating_mul(4);
    blocking(move || {
        let ids = tok
            .encode_at_most(&content, add_special, parse_special, most_tokens)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if ids.len() > most_tokens {
            return Err(ApiError::param(
                "content",
                format!(
                    "the text has more than {most_tokens} tokens, more than this server \
                     tokenizes at once (four contexts): tokenize it in parts"
                ),
            ));
        }
        let tokens: Vec<Value> = if pieces {
            ids.iter()
                .map(|&id| json!({"id": id, "piece": piece_text(&tok, id)}))
                .collect()
        } else {
            ids.iter().map(|&id| json!(id)).collect()
        };
        Ok(Json(json!({"tokens": tokens})))
    })
    .await
}

async fn detokenize(
    State(s): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let r = ready(&s)?;
    let m = body_object(body)?;
    let ids = match m.get("tokens") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_u64() {
                Some(id) if (id as usize) < r.n_vocab => Ok(id as u32),
                _ => Err(ApiError::param(
                    "tokens",
                    format!(
                        "{v} is not a token id of this vocabulary (0..{})",
                        r.n_vocab
                    ),
                )),
            })
            .collect::<Result<Vec<u32>, _>>()?,
        _ => return Err(ApiError::param("tokens", "expected an array of token ids")),
    };
    Ok(Json(json!({"content": r.tok.decode(&ids)})))
}

pub(crate) fn piece_text(tok: &Tokenizer, id: u32) -> String {
    String::from_utf8_lossy(tok.token_to_piece(id).unwrap_or_default()).into_owned()
}

/// Runs CPU work (templates, tokenizing) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?
}

/// Refuses a prompt text that cannot fit the context before it is tokenized:
/// a token stands for at most `max_token_bytes` bytes, so a text of more
/// than `n_ctx` times that has more tokens than the context holds (a 7 MB
/// message took 31 s to tokenize only to be refused).
pub(crate) fn check_prompt_bytes(
    tok: &Tokenizer,
    n_ctx: usize,
    bytes: usize,
) -> Result<(), ApiError> {
    let most = n_ctx.saturating_mul(tok.max_token_bytes());
    if bytes > most {
        return Err(ApiError::bad_request(format!(
            "the prompt has {bytes} bytes, more than the context of {n_ctx} tokens can hold \
             (a token of this model stands for at most {} bytes, so at most {most} bytes fit): \
             shorten the prompt",
            tok.max_token_bytes()
        ))
        .with_code("context_length_exceeded"));
    }
    Ok(())
}

/// Renders and tokenizes a chat prompt: message contents as plain text
/// unless the server runs with `--special-in-content`
/// ([`ChatTemplate::encode`]); `param` names the field a template error is
/// reported under. Contents that cannot fit the context are refused by
/// their length before the template runs.
pub(crate) fn encode_chat(
    s: &Shared,
    template: &ChatTemplate,
    tok: &Tokenizer,
    messages: &[Message],
    param: &'static str,
) -> Result<Vec<u32>, ApiError> {
    if let Some(r) = s.ready.get() {
        let bytes = messages.iter().map(|m| m.content.len()).sum();
        check_prompt_bytes(tok, r.n_ctx, bytes)?;
    }
    let limit = s.ready.get().map_or(usize::MAX, |r| r.n_ctx);
    template
        .encode_at_most(tok, messages, true, s.cfg.special_in_content, limit)
        .map_err(|e| match e {
            hearth::Error::Chat(e) => ApiError::param(param, e.to_string()),
            e => ApiError::bad_request(e.to_string()),
        })
}

pub(crate) fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn chat_completions(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, f.str("model")?)?;
        let messages = api::messages(&f)?;
        let opts = api::options(&f, Endpoint::Chat, default_seed())?;
        let template = ready
            .template
            .clone()
            .map_err(|e| ApiError::bad_request(format!("chat is not available: {e}")))?;
        let tok = Arc::clone(&ready.tok);
        let shared = Arc::clone(&s);
        let prompt =
            blocking(move || encode_chat(&shared, &template, &tok, &messages, "messages")).await?;
        Ok::<_, ApiError>((prompt, opts))
    }
    .await;
    match r {
        Ok((prompt, opts)) => generate(s, prompt, opts, Endpoint::Chat).await,
        Err(e) => e.into_response(),
    }
}

async fn completions(State(s): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let ready = ready(&s)?;
        let m = body_object(body)?;
        let f = Fields(&m);
        check_model(&s, f.str("model")?)?;
        let prompt = api::prompt(&f, ready.n_vocab)?;
        let opts = api::options(&f, Endpoint::Completion, default_seed())?;
        let prompt = match (f.str("suffix")?, prompt) {
            // Fill-in-the-middle, as the editors' autocompletion sends it;
            // an empty suffix to a model that cannot infill is a plain
            // completion.
            (Some(suffix), Prompt::Text(prefix)) if ready.fim.is_some() || !suffix.is_empty() => {
                let parts = super::fim::Parts {
                    prefix,
                    suffix: suffix.to_string(),
                    ..Default::default()
                };
                let n_predict = opts.max_tokens.unwrap_or(0);
                super::fim::encode(ready, parts, n_predict, Some("suffix")).await?
            }
            (Some(s), Prompt::Tokens(_)) if !s.is_empty() => {
                return Err(ApiError::param(
                    "suffix",
                    "fill-in-the-middle needs the prompt as text, not token ids",
                ))
            }
            (_, prompt) => encode_prompt(ready, prompt).await?,
        };
        Ok::<_, ApiError>((prompt, opts))
    }
    .await;
    match r {
        Ok((prompt, opts)) => generate(s, prompt, opts, Endpoint::Completion).await,
        Err(e) => e.into_response(),
    }
}

/// A completion's prompt as tokens: text is tokenized with the model's
/// BOS and special-token text parsed (as llama-server), only until it
/// passes the context; token ids are taken as they are.
pub(crate) async fn encode_prompt(ready: &Ready, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Prompt::Tokens(t) => Ok(t),
        Prompt::Text(text) => {
            check_prompt_bytes(&ready.tok, ready.n_ctx, text.len())?;
            let tok = Arc::clone(&ready.tok);
            let n_ctx = ready.n_ctx;
            blocking(move || {
                tok.encode_at_most(&text, true, true, n_ctx)
                    .map_err(|e| ApiError::param("prompt", e.to_string()))
            })
            .await
        }
    }
}

/// Checks the prompt against the context and queues the request; returns
/// the receiver of its events.
pub(crate) fn submit(
    s: &Shared,
    prompt: Vec<u32>,
    opts: &Options,
    constraint: Option<Constraint>,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let n_ctx = ready(s)?.n_ctx;
    if prompt.is_empty() {
        return Err(ApiError::param("prompt", "the prompt has no tokens"));
    }
    let room = n_ctx.saturating_sub(prompt.len());
    let max_tokens = match opts.max_tokens {
        Some(m) if m <= room => m,
        None if room > 0 => room,
        // Prompts are tokenized only until they pass the context
        // (`encode_at_most`): past it, the count is not the whole prompt's.
        _ if prompt.len() > n_ctx => {
            return Err(ApiError::bad_request(format!(
                "the prompt has more than {n_ctx} tokens, and the context holds {n_ctx}: \
                 shorten the prompt"
            ))
            .with_code("context_length_exceeded"));
        }
        asked => {
            let asked = asked.map_or("at least 1".to_string(), |m| m.to_string());
            return Err(ApiError::bad_request(format!(
                "the prompt has {} tokens and {asked} are to be generated, but the context \
                 holds {n_ctx} tokens: shorten the prompt or lower max_tokens",
                prompt.len()
            ))
            .with_code("context_length_exceeded"));
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job {
        prompt,
        sampling: opts.sampling.clone(),
        max_tokens,
        stop: opts.stop.clone(),
        logprobs: opts.logprobs,
        constraint,
        events: tx,
    };
    match s.queue.push(job) {
        Ok(()) => {}
        Err(Rejected::Full) => {
            s.metrics.rejected_full.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::unavailable(
                "the server is busy: every slot and queue place is taken",
                1,
            )
            .with_code("queue_full"));
        }
        Err(Rejected::ShuttingDown) => {
            return Err(ApiError::unavailable("the server is shutting down", 5))
        }
    }
    s.metrics.requests.fetch_add(1, Ordering::Relaxed);
    Ok(rx)
}

/// Compiles the request's grammar against the model's vocabulary (the
/// vocabulary's trie is built on the first such request); a grammar that
/// does not compile is a 400 naming the parameter that gave it.
pub(crate) async fn compile_grammar(
    s: &Arc<Shared>,
    opts: &Options,
) -> Result<Option<Constraint>, ApiError> {
    let Some(req) = opts.grammar.clone() else {
        return Ok(None);
    };
    let shared = Arc::clone(s);
    blocking(move || {
        let r = ready(&shared)?;
        let vocab = r
            .constraint_vocab
            .get_or_init(|| ConstraintVocab::new(&r.tok).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ApiError::bad_request(e.clone()))?;
        vocab
            .compile(&req.grammar)
            .map(Some)
            .map_err(|e| ApiError::param(&req.param, e.to_string()))
    })
    .await
}

/// Queues the request and answers with the whole completion or a stream of
/// server-sent events.
async fn generate(s: Arc<Shared>, prompt: Vec<u32>, opts: Options, endpoint: Endpoint) -> Response {
    let constraint = match compile_grammar(&s, &opts).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let rx = match submit(&s, prompt, &opts, constraint) {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let id = match endpoint {
        Endpoint::Chat => format!("chatcmpl-{:x}{n:06}", s.started),
        Endpoint::Completion => format!("cmpl-{:x}{n:06}", s.started),
    };
    let out = Output {
        id,
        created: super::Shared::unix_now(),
        model: s.cfg.model_id.clone(),
        endpoint,
        tok: s.ready.get().map(|r| Arc::clone(&r.tok)),
    };
    if opts.stream {
        stream(out, rx, opts.include_usage).into_response()
    } else {
        whole(out, rx).await
    }
}

/// What every response object repeats.
struct Output {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    tok: Option<Arc<Tokenizer>>,
}

impl Output {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    fn piece(&self, id: u32) -> String {
        self.tok
            .as_ref()
            .map_or(String::new(), |t| piece_text(t, id))
    }

    /// One entry of a chat `logprobs.content` list.
    fn chat_logprob(&self, lp: &TokenLogprobs) -> Value {
        let entry = |id: u32, logprob: f32| {
            let t = self.piece(id);
            json!({"token": t, "logprob": logprob, "bytes": t.as_bytes()})
        };
        let mut e = entry(lp.token, lp.logprob);
        e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
        e
    }

    fn usage(u: &Usage) -> Value {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        })
    }
}

/// Legacy completions' `logprobs` object, built token by token.
#[derive(Default)]
struct LegacyLogprobs {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top: Vec<Value>,
    offsets: Vec<Value>,
}

impl LegacyLogprobs {
    fn push(&mut self, out: &Output, lp: &TokenLogprobs, offset: usize) {
        self.tokens.push(json!(out.piece(lp.token)));
        self.token_logprobs.push(json!(lp.logprob));
        let top: Map<String, Value> = lp
            .top
            .iter()
            .map(|&(id, l)| (out.piece(id), json!(l)))
            .collect();
        self.top.push(Value::Object(top));
        self.offsets.push(json!(offset));
    }

    fn to_json(&self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top,
            "text_offset": self.offsets,
        })
    }
}

/// A mid-generation failure (an [`Event::Error`]) as an error object:
/// every protocol's routes answer it this way.
pub(crate) fn event_error(message: String) -> ApiError {
    if message.contains("shutting down") {
        ApiError::unavailable(message, 5)
    } else {
        ApiError::internal(message)
    }
}

/// The whole text of a generation without logprobs, its finish and usage
/// (the Anthropic and Responses routes answer from these).
pub(crate) async fn collect_text(
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Result<(String, Finish, Usage), ApiError> {
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Token { text: t, .. }) => text.push_str(&t),
            Some(Event::Done { finish, usage }) => return Ok((text, finish, usage)),
            Some(Event::Error(e)) => return Err(event_error(e)),
            None => return Err(ApiError::internal("the scheduler stopped")),
        }
    }
}

/// Collects the whole completion.
async fn whole(out: Output, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    let mut chat_lp = Vec::new();
    let mut legacy = LegacyLogprobs::default();
    let mut want_lp = false;
    let (finish, usage) = loop {
        match rx.recv().await {
            Some(Event::Token {
                text: t, logprobs, ..
            }) => {
                if let Some(lp) = logprobs {
                    want_lp = true;
                    match out.endpoint {
                        Endpoint::Chat => chat_lp.push(out.chat_logprob(&lp)),
                        Endpoint::Completion => legacy.push(&out, &lp, text.len()),
                    }
                }
                text.push_str(&t);
            }
            Some(Event::Done { finish, usage }) => break (finish, usage),
            Some(Event::Error(e)) => return event_error(e).into_response(),
            None => return ApiError::internal("the scheduler stopped").into_response(),
        }
    };
    let choice = match out.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": if want_lp { json!({"content": chat_lp}) } else { Value::Null },
            "finish_reason": finish.as_str(),
        }),
        Endpoint::Completion => json!({
            "index": 0,
            "text": text,
            "logprobs": if want_lp { legacy.to_json() } else { Value::Null },
            "finish_reason": finish.as_str(),
        }),
    };
    Json(json!({
        "id": out.id,
        "object": out.object(false),
        "created": out.created,
        "model": out.model,
        "choices": [choice],
        "usage": Output::usage(&usage),
        "system_fingerprint": concat!("hearth-", env!("CARGO_PKG_VERSION")),
    }))
    .into_response()
}

/// State of a streamed response.
struct Streaming {
    out: Output,
    rx: mpsc::UnboundedReceiver<Event>,
    include_usage: bool,
    sent_role: bool,
    text_len: usize,
    /// Events left to send after the last one from the scheduler.
    tail: Vec<SseEvent>,
    done: bool,
}

impl Streaming {
    fn chunk(&self, delta_text: Option<&str>, lp: Option<Value>, finish: Option<Finish>) -> Value {
        let finish = finish.map(|f| f.as_str());
        let choice = match self.out.endpoint {
            Endpoint::Chat => {
                let mut delta = Map::new();
                if !self.sent_role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = delta_text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish})
            }
            Endpoint::Completion => json!({
                "index": 0,
                "text": delta_text.unwrap_or(""),
                "logprobs": lp,
                "finish_reason": finish,
            }),
        };
        let mut c = json!({
            "id": self.out.id,
            "object": self.out.object(true),
            "created": self.out.created,
            "model": self.out.model,
            "choices": [choice],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The next SSE event, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if !self.tail.is_empty() {
                return Some(self.tail.remove(0));
            }
            if self.done {
                return None;
            }
            if self.out.endpoint == Endpoint::Chat && !self.sent_role {
                // As llama-server and OpenAI: the first chunk carries the
                // role alone (with empty content), the text comes after.
                let c = self.chunk(Some(""), None, None);
                self.sent_role = true;
                return Some(sse_json(&c));
            }
            match self.rx.recv().await {
                Some(Event::Token { text, logprobs, .. }) => {
                    let lp = logprobs.map(|lp| match self.out.endpoint {
                        Endpoint::Chat => json!({"content": [self.out.chat_logprob(&lp)]}),
                        Endpoint::Completion => {
                            let mut l = LegacyLogprobs::default();
                            l.push(&self.out, &lp, self.text_len);
                            l.to_json()
                        }
                    });
                    if text.is_empty() && lp.is_none() {
                        continue;
                    }
                    self.text_len += text.len();
                    let c = self.chunk(Some(&text), lp, None);
                    return Some(sse_json(&c));
                }
                Some(Event::Done { finish, usage }) => {
                    let last = self.chunk(None, None, Some(finish));
                    self.tail.push(sse_json(&last));
                    if self.include_usage {
                        let mut u = self.chunk(None, None, None);
                        u["choices"] = json!([]);
                        u["usage"] = Output::usage(&usage);
                        self.tail.push(sse_json(&u));
                    }
                    self.tail.push(SseEvent::default().data("[DONE]"));
                    self.done = true;
                }
                Some(Event::Error(e)) => {
                    self.tail.push(sse_json(&event_error(e).body()));
                    self.done = true;
                }
                None => {
                    self.tail.push(sse_json(
                        &ApiError::internal("the scheduler stopped").body(),
                    ));
                    self.done = true;
                }
            }
        }
    }
}

fn sse_json(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

fn stream(
    out: Output,
    rx: mpsc::UnboundedReceiver<Event>,
    include_usage: bool,
) -> impl IntoResponse {
    let st = Streaming {
        out,
        rx,
        include_usage,
        sent_role: false,
        text_len: 0,
        tail: Vec::new(),
        done: false,
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        let e = st.next().await?;
        Some((Ok::<_, Infallible>(e), st))
    });
    Sse::new(events)
}
