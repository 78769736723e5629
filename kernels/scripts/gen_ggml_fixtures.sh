#!/usr/bin/env bash
# Build ggml's reference quantizers and scalar dot products from a llama.cpp
# source tree and write the fixtures gguf-py cannot make (quantize: K-quants,
# Q8_1, Q8_K, IQ4_NL, IQ4_XS; every vec_dot) into kernels/tests/fixtures/quant/.
#
# usage: kernels/scripts/gen_ggml_fixtures.sh /path/to/llama.cpp
# (any tree with ggml/src/ggml-quants.c; e.g. the vendor/llama.cpp of the
# llama-cpp-python sdist). The dot fixtures read the <type>.bin blocks that
# gen_quant_fixtures.py writes (seeded, so they come out the same each run);
# run that first. `cargo test` only reads the files these scripts write.
set -euo pipefail
src=${1:?usage: $0 /path/to/llama.cpp}
here=$(cd "$(dirname "$0")" && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# -ffp-contract=off: no fused multiply-add, as in Rust, so the float search
# in make_qkx2_quants & co. takes the same branches.
cflags=(-O2 -ffp-contract=off -I"$src/ggml/include" -I"$src/ggml/src")
gcc "${cflags[@]}" -c "$src/ggml/src/ggml-quants.c" -o "$build/quants.o"
gcc "${cflags[@]}" -I"$src/ggml/src/ggml-cpu" -c "$src/ggml/src/ggml-cpu/quants.c" -o "$build/cpu_quants.o"
gcc "${cflags[@]}" -c "$here/ggml_quantize_ref.c" -o "$build/drv.o"
gcc "$build/drv.o" "$build/quants.o" "$build/cpu_quants.o" -lm -o "$build/ggml_quantize_ref"
python3 "$here/gen_quant_fixtures.py" --ggml-ref "$build/ggml_quantize_ref"
