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
#   HEARTH=/path/to/hearth             bench this binary, skip the build
#   HEARTH_BASE=/path/to/hearth        also bench this Hearth binary (an older
#                                      commit's build) in every round: a
#                                      before/after in one run
#
# llama.cpp is built once by scripts/build-llama-cpp.sh (from the registry's
# llama-cpp-python source package; cmake, a C++ compiler, 10-15 minutes on
# two cores). Nothing of llama.cpp is written inside this repository.
set -euo pipefail

model=${1:-$HOME/.cache/hearth/models/gemma-3-270m-q4_k_m.gguf}
threads=${THREADS:-2}
p=${P:-512}
n=${N:-128}
reps=${REPS:-3}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "compare-llama-cpp: $*" >&2; exit 1; }
[[ -f $model ]] || die "no model at $model (scripts/fetch-model.sh fetches the test model)"
command -v python3 >/dev/null || die "python3 is needed to summarise the results"

llama_bench=${LLAMA_BENCH:-$("$root/scripts/build-llama-cpp.sh" llama-bench)/llama-bench}
[[ -x $llama_bench ]] || die "LLAMA_BENCH=$llama_bench is not an executable"

if [[ -n ${HEARTH:-} ]]; then
  hearth=$HEARTH
else
  echo "compare-llama-cpp: building Hearth (release) ..." >&2
  (cd "$root" && cargo build -q --release -p hearth-cli)
  hearth=${CARGO_TARGET_DIR:-$root/target}/release/hearth
fi
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
  if [[ -n ${HEARTH_BASE:-} ]]; then
    echo "compare-llama-cpp: round $r/$rounds: $HEARTH_BASE bench ..." >&2
    "$HEARTH_BASE" bench "$model" -t "$threads" -p "$p" -n "$n" -r "$reps" -o json >"$out/base-$r.json" 2>"$out/base-$r.err" \
      || { cat "$out/base-$r.err" >&2; die "HEARTH_BASE bench failed"; }
  fi
done

python3 - "$out" "$rounds" "$model" "$threads" "$(nproc)" "${HEARTH_BASE:-}" <<'EOF'
import json, statistics, sys
out, rounds, model, threads, nproc, base = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

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

if base:
    ba = samples("base")
    print(f"\nHEARTH_BASE = {base}, in the same rounds\n")
    print("| test   | base median | base mean ± sd | base/llama.cpp | Hearth/base (medians) |")
    print("| ------ | ----------: | -------------: | -------------: | --------------------: |")
    for test in sorted(ba):
        xs, a, b = ba[test], ll.get(test, []), he.get(test, [])
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        m = statistics.median(xs)
        r_ll = f"{m / statistics.median(a):.3f}" if a else "-"
        r_he = f"{statistics.median(b) / m:.3f}" if b else "-"
        print(f"| {test:<6} | {m:>11.2f} | {statistics.mean(xs):>7.2f} ± {sd:.2f} | {r_ll:>14} | {r_he:>21} |")
EOF
