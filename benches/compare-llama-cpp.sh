#!/usr/bin/env bash
# Hearth against llama.cpp on the same model, threads and tests, measured in
# the same run: alternating rounds of `llama-bench` and `hearth bench`
# (machines here are shared and noisy, so the two must see the same noise).
# Prints both tools' tokens/s per test (every repetition of every round
# pooled: median, mean ± sample stddev) and the ratios Hearth/llama.cpp.
#
# Usage: benches/compare-llama-cpp.sh [MODEL]
#   MODEL        default ~/.cache/hearth/models/gemma-3-270m-q4_k_m.gguf
# Environment:
#   THREADS=2  P=512  N=128  REPS=3 (repetitions per round)  ROUNDS=3
#   LLAMA_BENCH=/path/to/llama-bench   use this binary, skip the build
#   LLAMA_CPP_CACHE=~/.cache/hearth/llama.cpp   where llama.cpp is built once
#   CARGO_TARGET_DIR                   where Hearth's release build goes
#
# llama.cpp comes from the registry's llama-cpp-python source package, which
# vendors it (see shared/golden/README.md, "Getting llama.cpp's tools here");
# the build needs cmake and a C++ compiler and takes 10-15 minutes on two
# cores, once. Nothing of llama.cpp is written inside this repository.
set -euo pipefail

model=${1:-$HOME/.cache/hearth/models/gemma-3-270m-q4_k_m.gguf}
threads=${THREADS:-2}
p=${P:-512}
n=${N:-128}
reps=${REPS:-3}
rounds=${ROUNDS:-3}
lcp_version=0.3.36
cache=${LLAMA_CPP_CACHE:-$HOME/.cache/hearth/llama.cpp}
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "compare-llama-cpp: $*" >&2; exit 1; }
[[ -f $model ]] || die "no model at $model (scripts/fetch-model.sh fetches the test model)"
command -v python3 >/dev/null || die "python3 is needed to summarise the results"

build_llama_bench() {
  local src=$cache/llama_cpp_python-$lcp_version/vendor/llama.cpp
  local bin=$src/build/bin/llama-bench
  if [[ -x $bin ]]; then echo "$bin"; return; fi
  command -v cmake >/dev/null || die "cmake is needed to build llama.cpp (apt-get install -y cmake), or set LLAMA_BENCH"
  mkdir -p "$cache"
  if [[ ! -d $src ]]; then
    echo "compare-llama-cpp: fetching llama-cpp-python $lcp_version (source) into $cache ..." >&2
    python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "llama-cpp-python==$lcp_version" -d "$cache" >&2
    tar xzf "$cache/llama_cpp_python-$lcp_version.tar.gz" -C "$cache"
  fi
  echo "compare-llama-cpp: building llama-bench (once; 10-15 minutes on 2 cores) ..." >&2
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF >&2
  cmake --build "$src/build" -j"$(nproc)" --target llama-bench llama-perplexity >&2
  [[ -x $bin ]] || die "the build did not produce $bin"
  echo "$bin"
}

llama_bench=${LLAMA_BENCH:-$(build_llama_bench)}
[[ -x $llama_bench ]] || die "LLAMA_BENCH=$llama_bench is not an executable"

echo "compare-llama-cpp: building Hearth (release) ..." >&2
(cd "$root" && cargo build -q --release -p hearth-cli)
hearth=${CARGO_TARGET_DIR:-$root/target}/release/hearth
[[ -x $hearth ]] || die "no Hearth binary at $hearth"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((r = 1; r <= rounds; r++)); do
  echo "compare-llama-cpp: round $r/$rounds: llama-bench ..." >&2
  "$llama_bench" -m "$model" -t "$threads" -p "$p" -n "$n" -r "$reps" -o json >"$out/llama-$r.json" 2>"$out/llama-$r.err" \
    || { cat "$out/llama-$r.err" >&2; die "llama-bench failed"; }
  echo "compare-llama-cpp: round $r/$rounds: hearth bench ..." >&2
  "$hearth" bench "$model" -t "$threads" -p "$p" -n "$n" -r "$reps" -o json >"$out/hearth-$r.json" 2>"$out/hearth-$r.err" \
    || { cat "$out/hearth-$r.err" >&2; die "hearth bench failed"; }
done

python3 - "$out" "$rounds" "$model" "$threads" "$(nproc)" <<'EOF'
import json, statistics, sys
out, rounds, model, threads, nproc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def samples(tool):
    by_test = {}
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{out}/{tool}-{r}.json")):
            np, ng = row["n_prompt"], row["n_gen"]
            name = f"pp{np}" if ng == 0 else f"tg{ng}" if np == 0 else f"pp{np}+tg{ng}"
            by_test.setdefault(name, []).extend(row["samples_ts"])
    return by_test

ll, he = samples("llama"), samples("hearth")
print(f"model {model}, {threads} threads ({nproc} cores here); {rounds} alternating rounds,")
print("every repetition of every round pooled; t/s as median, then mean ± sample stddev\n")
print(f"| test   | llama.cpp median | llama.cpp mean ± sd | Hearth median | Hearth mean ± sd | Hearth/llama.cpp (medians) |")
print(f"| ------ | ---------------: | ------------------: | ------------: | ---------------: | -------------------------: |")
for test in sorted(set(ll) | set(he)):
    a, b = ll.get(test, []), he.get(test, [])
    def fmt(xs):
        if not xs:
            return "-", "-"
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.median(xs):.2f}", f"{statistics.mean(xs):.2f} ± {sd:.2f}"
    (am, ams), (bm, bms) = fmt(a), fmt(b)
    ratio = f"{statistics.median(b) / statistics.median(a):.3f}" if a and b else "-"
    print(f"| {test:<6} | {am:>16} | {ams:>19} | {bm:>13} | {bms:>16} | {ratio:>26} |")
EOF
