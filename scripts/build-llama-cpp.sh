#!/usr/bin/env bash
# Builds llama.cpp's command-line tools once, outside this repository, and
# prints the folder that holds them. For side-by-side work only (speed in
# benches/compare-llama-cpp.sh, layer-by-layer checks in
# scripts/compare-tap.py); nothing of llama.cpp is written in this tree.
#
# Usage: scripts/build-llama-cpp.sh [TARGET...]
#   TARGET   default: llama-bench llama-perplexity llama-eval-callback
# Environment:
#   LLAMA_CPP_CACHE=~/.cache/hearth/llama.cpp   where it is fetched and built
#
# llama.cpp comes from the registry's llama-cpp-python source package, which
# vendors it (commit 0c1e570 in 0.3.36, the version shared/golden/ was made
# with). The build needs cmake and a C++ compiler and takes 10-15 minutes on
# two cores, once; later calls build only targets not yet built.
set -euo pipefail

lcp_version=0.3.36
cache=${LLAMA_CPP_CACHE:-$HOME/.cache/hearth/llama.cpp}
src=$cache/llama_cpp_python-$lcp_version/vendor/llama.cpp
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(llama-bench llama-perplexity llama-eval-callback)

die() { echo "build-llama-cpp: $*" >&2; exit 1; }

missing=()
for t in "${targets[@]}"; do
  [[ -x $src/build/bin/$t ]] || missing+=("$t")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  command -v cmake >/dev/null || die "cmake is needed to build llama.cpp (apt-get install -y cmake)"
  mkdir -p "$cache"
  if [[ ! -d $src ]]; then
    echo "build-llama-cpp: fetching llama-cpp-python $lcp_version (source) into $cache ..." >&2
    python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "llama-cpp-python==$lcp_version" -d "$cache" >&2 \
      || die "pip could not fetch the source package (it needs scikit-build-core: pip install scikit-build-core)"
    tar xzf "$cache/llama_cpp_python-$lcp_version.tar.gz" -C "$cache"
  fi
  echo "build-llama-cpp: building ${missing[*]} (10-15 minutes on 2 cores the first time) ..." >&2
  [[ -f $src/build/CMakeCache.txt ]] ||
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >&2
  cmake --build "$src/build" -j"$(nproc)" --target "${missing[@]}" >&2
  for t in "${missing[@]}"; do
    [[ -x $src/build/bin/$t ]] || die "the build did not produce $src/build/bin/$t"
  done
fi
echo "$src/build/bin"
