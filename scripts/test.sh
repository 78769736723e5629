#!/usr/bin/env bash
# Runs Hearth's test suite: fetches the test model if it is not cached yet
# (scripts/fetch-model.sh), then runs every test of the workspace.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p hearth-gguf`).
set -euo pipefail
cd "$(dirname "$0")/.."
HEARTH_MODEL=${HEARTH_MODEL:-$(scripts/fetch-model.sh)}
export HEARTH_MODEL
cargo test --workspace "$@"
