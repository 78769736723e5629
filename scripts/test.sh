#!/usr/bin/env bash
# Runs Hearth's test suite: fetches the two test models if they are not
# cached yet (scripts/fetch-model.sh, scripts/fetch-smollm2.sh), then runs
# every test of the workspace and the library's example.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p hearth-gguf`).
set -euo pipefail
cd "$(dirname "$0")/.."
HEARTH_MODEL=${HEARTH_MODEL:-$(scripts/fetch-model.sh)}
HEARTH_SMOLLM2=${HEARTH_SMOLLM2:-$(scripts/fetch-smollm2.sh)}
export HEARTH_MODEL HEARTH_SMOLLM2
# Without a desktop session Mesa's Vulkan driver (the WebGPU tests' lavapipe)
# prints "XDG_RUNTIME_DIR is invalid or not set" on every load: give it a
# private folder.
if [[ -z ${XDG_RUNTIME_DIR:-} || ! -d ${XDG_RUNTIME_DIR:-} ]]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
fi
cargo test --workspace "$@"

# The library's example (engine/examples/generate.rs) streams text from the
# real model: it must run and continue the prompt.
prompt="The capital of France is"
out=$(cargo run -q -p hearth --example generate -- "$HEARTH_MODEL" "$prompt" 8)
if [[ $out != "$prompt"?* ]]; then
  echo "examples/generate.rs printed no continuation: $out" >&2
  exit 1
fi
echo "example generate: $out"
