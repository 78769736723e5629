//! llama-server's own routes, for tools written against llama.cpp:
//! `GET /props` (the slot context, the slot count, the chat template, the
//! default sampling settings), `POST /apply-template` (the chat template
//! rendered, not run) and `GET /slots` (501, as llama-server without
//! `--slots`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth::sampler::SamplerConfig;
use serde_json::json;

use super::api::{self, ApiError, Fields};
use super::routes::{blocking, body_object, ready};
use super::Shared;

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/props", get(props))
        .route("/apply-template", post(apply_template))
        .route("/slots", get(slots))
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
