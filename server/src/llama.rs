//! llama-server's own discovery route, for tools written against llama.cpp:
//! `GET /props` (the slot context, the slot count, the chat template, the
//! default sampling settings).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hearth::sampler::SamplerConfig;
use serde_json::json;

use super::routes::ready;
use super::Shared;

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/props", get(props))
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
