//! What the discovery routes say about the served model: ollama's
//! `/api/show`, `/api/tags` and `/api/ps`, llama-server's `/props`, the
//! context length in `/v1/models`. Gathered once from the GGUF when the model
//! loads, so that no handler touches the file.

use hearth::backend::ModelFile;
use serde_json::{json, Map, Value};

/// Arrays longer than this are `null` in `model_info`, as ollama shows
/// `tokenizer.ggml.tokens` without `verbose`: a 262k-entry vocabulary is not
/// metadata a frontend reads.
const MAX_ARRAY: usize = 64;

/// The served model as the discovery routes describe it.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    /// `general.architecture` (ollama's `family`).
    pub arch: String,
    /// Bytes of the GGUF file.
    pub file_size: u64,
    /// Elements of every tensor.
    pub parameter_count: u64,
    /// `general.file_type` by name (`Q4_K_M`), else `unknown`.
    pub quantization: String,
    /// The chat template served (the file's, or the one Hearth supplies).
    pub chat_template: Option<String>,
    /// Every metadata key, arrays longer than [`MAX_ARRAY`] as `null`. Where
    /// the file lacks them, added as ollama does: `general.parameter_count`,
    /// `general.basename` (`general.name`, else the model id) and
    /// `<arch>.context_length` (the context the model was trained for),
    /// which Copilot reads.
    pub model_info: Map<String, Value>,
}

impl ModelInfo {
    pub fn new(
        g: &ModelFile,
        model_id: &str,
        n_ctx_train: usize,
        chat_template: Option<String>,
    ) -> ModelInfo {
        let text = |k: &str| g.get_opt_as::<&str>(k).ok().flatten().map(str::to_string);
        let parameter_count = g.tensor_infos().iter().map(|t| t.n_elements()).sum();
        let mut model_info = Map::new();
        for (key, v) in g.metadata() {
            model_info.insert(key.to_string(), json_value(&v));
        }
        let arch = text("general.architecture").unwrap_or_default();
        model_info
            .entry("general.parameter_count")
            .or_insert(json!(parameter_count));
        model_info
            .entry("general.basename")
            .or_insert_with(|| json!(text("general.name").unwrap_or_else(|| model_id.into())));
        model_info
            .entry(format!("{arch}.context_length"))
            .or_insert(json!(n_ctx_train));
        ModelInfo {
            arch,
            file_size: g.bytes().len() as u64,
            parameter_count,
            quantization: g
                .get_u32("general.file_type")
                .ok()
                .and_then(hearth_gguf::file_type_name)
                .unwrap_or("unknown")
                .to_string(),
            chat_template,
            model_info,
        }
    }

    /// ollama's `parameter_size`: `268.10M`, `1.24B`.
    pub fn parameter_size(&self) -> String {
        let n = self.parameter_count as f64;
        if n >= 1e9 {
            format!("{:.2}B", n / 1e9)
        } else {
            format!("{:.2}M", n / 1e6)
        }
    }

    /// ollama's `details` object (`/api/tags`, `/api/show`, `/api/ps`).
    pub fn details(&self) -> Value {
        json!({
            "parent_model": "",
            "format": "gguf",
            "family": self.arch,
            "families": [self.arch],
            "parameter_size": self.parameter_size(),
            "quantization_level": self.quantization,
        })
    }
}

fn json_value(v: &hearth_gguf::ValueRef<'_>) -> Value {
    use hearth_gguf::ValueRef as V;
    match v {
        V::U8(x) => json!(x),
        V::I8(x) => json!(x),
        V::U16(x) => json!(x),
        V::I16(x) => json!(x),
        V::U32(x) => json!(x),
        V::I32(x) => json!(x),
        V::U64(x) => json!(x),
        V::I64(x) => json!(x),
        V::F32(x) => json!(x),
        V::F64(x) => json!(x),
        V::Bool(x) => json!(x),
        V::String(b) => json!(String::from_utf8_lossy(b)),
        V::Array(a) if a.len() <= MAX_ARRAY as u64 => {
            Value::Array(a.iter().map(|e| json_value(&e)).collect())
        }
        V::Array(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_as_ollama_writes_them() {
        let mut m = ModelInfo {
            arch: "llama".into(),
            file_size: 0,
            parameter_count: 134_515_008,
            quantization: "Q4_1".into(),
            chat_template: None,
            model_info: Map::new(),
        };
        assert_eq!(m.parameter_size(), "134.52M");
        m.parameter_count = 1_235_814_400;
        assert_eq!(m.parameter_size(), "1.24B");
        assert_eq!(m.details()["family"], "llama");
        assert_eq!(m.details()["quantization_level"], "Q4_1");
    }
}
