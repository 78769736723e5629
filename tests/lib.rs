//! Helpers shared by the integration tests: where the real files are.
//!
//! - The Gemma 3 270M Q4_K_M model: `$HEARTH_MODEL`, else
//!   `~/.cache/hearth/models/gemma-3-270m-q4_k_m.gguf`, which
//!   `scripts/fetch-model.sh` downloads.
//! - SmolLM2 135M Instruct Q4_1: `$HEARTH_SMOLLM2`, else
//!   `~/.cache/hearth/models/smollm2-135m-instruct-q4_1.gguf`, which
//!   `scripts/fetch-smollm2.sh` downloads.
//! - llama.cpp's reference data: `$HEARTH_SHARED`, else `../shared` beside the
//!   repository (`shared/golden/...`).
//!
//! A test that needs a missing file fails under CI (`CI` set) and is skipped
//! with a message elsewhere, saying how to get the file.

use std::path::PathBuf;

pub const MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn missing(what: &str, how: &str) -> Option<PathBuf> {
    let msg = format!("{what} not found; {how}");
    assert!(
        !in_ci(),
        "{msg} (CI is set, so this is a failure, not a skip)"
    );
    eprintln!("SKIPPED: {msg}");
    None
}

/// The second real model, SmolLM2 135M Instruct in Q4_1 (llama
/// architecture, byte-level BPE, ChatML): `$HEARTH_SMOLLM2`, else
/// `~/.cache/hearth/models/smollm2-135m-instruct-q4_1.gguf`, which
/// `scripts/fetch-smollm2.sh` downloads.
pub const SMOLLM2_FILE: &str = "smollm2-135m-instruct-q4_1.gguf";

/// The real test model, or `None` (with a message) when it is not here.
pub fn model_path() -> Option<PathBuf> {
    cached_model("HEARTH_MODEL", MODEL_FILE, "scripts/fetch-model.sh")
}

/// SmolLM2, or `None` (with a message) when it is not here.
pub fn smollm2_path() -> Option<PathBuf> {
    cached_model("HEARTH_SMOLLM2", SMOLLM2_FILE, "scripts/fetch-smollm2.sh")
}

fn cached_model(var: &str, file: &str, script: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/hearth/models").join(file)
        }
    };
    if path.is_file() {
        Some(path)
    } else {
        missing(
            &format!("the test model {}", path.display()),
            &format!("run {script} (or set {var})"),
        )
    }
}

/// Reports a missing GPU adapter (`why`): a failure under CI, a skip with a
/// message elsewhere. Returns `None` for `let ... else` chains.
pub fn missing_gpu<T>(why: &str) -> Option<T> {
    missing(
        &format!("a WebGPU adapter ({why})"),
        "install a Vulkan driver (Debian: apt-get install mesa-vulkan-drivers)",
    );
    None
}

/// `shared/golden`, or `None` (with a message) when it is not here.
pub fn golden_dir() -> Option<PathBuf> {
    let shared = match std::env::var_os("HEARTH_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let golden = shared.join("golden");
    if golden.is_dir() {
        Some(golden)
    } else {
        missing(
            &format!("llama.cpp reference data {}", golden.display()),
            "set HEARTH_SHARED to the shared/ folder",
        )
    }
}
pub mod tiny;
