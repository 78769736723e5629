//! `hearth info`: what is in a GGUF file, readable by people (`gguf-dump`
//! without the noise) or by machines (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Deref;

use hearth_gguf::{GgmlType, Gguf, ValueRef};
use serde_json::{json, Value as Json};

/// Tokenizer metadata keys shown as scalars (the large arrays are counted).
const TOKENIZER_SCALARS: &[&str] = &[
    "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
];

/// Everything `hearth info` reports, gathered once and rendered as text or JSON.
pub struct Summary {
    file_size: u64,
    version: u32,
    alignment: u64,
    data_start: u64,
    general: Vec<(&'static str, String)>,
    /// `{arch}.*` keys with scalar values (and short arrays), in file order.
    hparams: Vec<(String, String)>,
    tokenizer: Vec<(String, String)>,
    tensors: Vec<TensorRow>,
    /// Per type: (count, bytes, elements).
    totals: BTreeMap<GgmlType, (u64, u64, u64)>,
    metadata: Vec<(String, String, Json)>,
}

struct TensorRow {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    bytes: u64,
}

fn json_value(v: ValueRef<'_>) -> Json {
    match v {
        ValueRef::U8(x) => json!(x),
        ValueRef::I8(x) => json!(x),
        ValueRef::U16(x) => json!(x),
        ValueRef::I16(x) => json!(x),
        ValueRef::U32(x) => json!(x),
        ValueRef::I32(x) => json!(x),
        ValueRef::F32(x) => json!(x),
        ValueRef::Bool(x) => json!(x),
        ValueRef::String(b) => json!(String::from_utf8_lossy(b)),
        ValueRef::U64(x) => json!(x),
        ValueRef::I64(x) => json!(x),
        ValueRef::F64(x) => json!(x),
        // Vocabularies have 100k+ entries: describe arrays, do not dump them.
        ValueRef::Array(a) => {
            json!({ "type": format!("array of {}", a.elem_type()), "len": a.len() })
        }
    }
}

impl Summary {
    pub fn new<B: Deref<Target = [u8]>>(g: &Gguf<B>) -> Summary {
        let arch = g.architecture().ok().map(str::to_string);
        let mut general = Vec::new();
        let text = |k: &str| {
            g.get(k).map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
        };
        for (label, key) in [
            ("architecture", "general.architecture"),
            ("name", "general.name"),
            ("size label", "general.size_label"),
            ("quantized by", "general.quantized_by"),
            ("license", "general.license"),
        ] {
            if let Some(v) = text(key) {
                general.push((label, v));
            }
        }
        if let Ok(ft) = g.get_u32("general.file_type") {
            general.push((
                "file type",
                hearth_gguf::file_type_name(ft).map_or(format!("{ft}"), |n| format!("{n} ({ft})")),
            ));
        }
        if let Some(arch) = &arch {
            if let Some(v) = g.get(&format!("{arch}.context_length")) {
                general.push(("context length", v.to_string()));
            }
        }
        let n_params: u64 = g.tensor_infos().iter().map(|t| t.n_elements()).sum();
        general.push(("parameters", format_count(n_params)));

        let mut hparams = Vec::new();
        let mut tokenizer = Vec::new();
        let mut metadata = Vec::new();
        for (key, v) in g.metadata() {
            metadata.push((key.to_string(), v.type_description(), json_value(v)));
            if let Some(rest) = arch
                .as_deref()
                .and_then(|a| key.strip_prefix(a))
                .and_then(|r| r.strip_prefix('.'))
            {
                if !matches!(v, ValueRef::Array(a) if a.len() > 8) {
                    hparams.push((rest.to_string(), v.to_string()));
                }
            }
        }
        if let Some(m) = text("tokenizer.ggml.model") {
            let kind = match m.as_str() {
                "llama" => " (SentencePiece)",
                "gpt2" => " (byte-level BPE)",
                _ => "",
            };
            tokenizer.push(("model".to_string(), format!("{m}{kind}")));
        }
        for (label, key) in [
            ("vocabulary", "tokenizer.ggml.tokens"),
            ("merges", "tokenizer.ggml.merges"),
        ] {
            if let Some(ValueRef::Array(a)) = g.get(key) {
                tokenizer.push((label.to_string(), a.len().to_string()));
            }
        }
        for key in TOKENIZER_SCALARS {
            if let Some(v) = g.get(key) {
                tokenizer.push((
                    key.trim_start_matches("tokenizer.ggml.").to_string(),
                    v.to_string(),
                ));
            }
        }
        if let Some(ValueRef::String(t)) = g.get("tokenizer.chat_template") {
            tokenizer.push(("chat template".to_string(), format!("{} bytes", t.len())));
        }

        let mut totals: BTreeMap<GgmlType, (u64, u64, u64)> = BTreeMap::new();
        let tensors = g
            .tensor_infos()
            .iter()
            .map(|t| {
                let e = totals.entry(t.ggml_type).or_default();
                e.0 += 1;
                e.1 += t.size;
                e.2 += t.n_elements();
                TensorRow {
                    name: t.name.clone(),
                    ggml_type: t.ggml_type,
                    dims: t.dims.clone(),
                    bytes: t.size,
                }
            })
            .collect();

        Summary {
            file_size: g.bytes().len() as u64,
            version: g.version(),
            alignment: g.alignment(),
            data_start: g.data_start(),
            general,
            hparams,
            tokenizer,
            tensors,
            totals,
            metadata,
        }
    }

    /// The report for people. `all_metadata` adds every key with its type.
    pub fn to_text(&self, all_metadata: bool) -> String {
        let mut s = String::new();
        let kv = |s: &mut String, k: &str, v: &str| {
            let _ = writeln!(s, "  {k:<34} {v}");
        };
        let _ = writeln!(
            s,
            "GGUF v{}, {}, {} metadata entries, {} tensors (data at byte {}, aligned to {})",
            self.version,
            format_bytes(self.file_size),
            self.metadata.len(),
            self.tensors.len(),
            self.data_start,
            self.alignment
        );
        let _ = writeln!(s, "\nmodel");
        for (k, v) in &self.general {
            kv(&mut s, k, v);
        }
        if !self.hparams.is_empty() {
            let _ = writeln!(s, "\nhyper-parameters");
            for (k, v) in &self.hparams {
                kv(&mut s, k, v);
            }
        }
        if !self.tokenizer.is_empty() {
            let _ = writeln!(s, "\ntokenizer");
            for (k, v) in &self.tokenizer {
                kv(&mut s, k, v);
            }
        }
        if all_metadata {
            let _ = writeln!(s, "\nmetadata");
            for (k, ty, v) in &self.metadata {
                let _ = writeln!(s, "  {k:<40} {ty:<16} {v}");
            }
        }
        if !self.tensors.is_empty() {
            let w = self
                .tensors
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(
                s,
                "\ntensors\n  {:<w$}  {:<7}  {:<22}  {:>12}",
                "name", "type", "shape", "bytes"
            );
            for t in &self.tensors {
                let _ = writeln!(
                    s,
                    "  {:<w$}  {:<7}  {:<22}  {:>12}",
                    t.name,
                    t.ggml_type.name(),
                    format!("{:?}", t.dims),
                    t.bytes
                );
            }
            let _ = writeln!(
                s,
                "\ntotals by type\n  {:<7}  {:>7}  {:>14}  {:>12}  {:>10}",
                "type", "tensors", "elements", "bytes", "bits/weight"
            );
            let (mut n, mut b, mut e) = (0, 0, 0);
            for (t, (count, bytes, elems)) in &self.totals {
                let bpw = *bytes as f64 * 8.0 / *elems as f64;
                let _ = writeln!(
                    s,
                    "  {:<7}  {count:>7}  {elems:>14}  {bytes:>12}  {bpw:>10.2}",
                    t.name()
                );
                (n, b, e) = (n + count, b + bytes, e + elems);
            }
            let _ = writeln!(
                s,
                "  {:<7}  {n:>7}  {e:>14}  {b:>12}  {:>10.2}  ({})",
                "all",
                b as f64 * 8.0 / e.max(1) as f64,
                format_bytes(b)
            );
        }
        s
    }

    /// The report for machines.
    pub fn to_json(&self) -> Json {
        json!({
            "file_size": self.file_size,
            "version": self.version,
            "alignment": self.alignment,
            "data_start": self.data_start,
            "general": self.general.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "metadata": self.metadata.iter().map(|(k, ty, v)| json!({"key": k, "type": ty, "value": v})).collect::<Vec<_>>(),
            "tensors": self.tensors.iter().map(|t| json!({
                "name": t.name, "type": t.ggml_type.name(), "shape": t.dims, "bytes": t.bytes,
            })).collect::<Vec<_>>(),
            "totals": self.totals.iter().map(|(t, (count, bytes, elems))| json!({
                "type": t.name(), "tensors": count, "bytes": bytes, "elements": elems,
            })).collect::<Vec<_>>(),
        })
    }
}

fn format_bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (MIB * 1024.0))
    } else {
        format!("{:.2} MiB", b as f64 / MIB)
    }
}

fn format_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

/// Which instruction sets the CPU kernels picked on this machine (each
/// chosen once, at first use, from what the CPU reports).
pub fn cpu_kernels() -> String {
    use hearth_kernels::quant::simd;
    use hearth_kernels::Isa;
    let isa = Isa::detect();
    let mut dots: Vec<String> = simd::variants(isa)
        .iter()
        .map(|(f, v)| format!("{f} {v}"))
        .collect();
    dots.push(format!("f16/bf16 {}", isa.name()));
    format!(
        "dot products: {}\n  ops (norm, rope, softmax, attention): {}\n  rayon threads: {}",
        dots.join(", "),
        isa.name(),
        rayon::current_num_threads()
    )
}
