#!/usr/bin/env python3
"""Finds the first tensor of a forward pass where Hearth and llama.cpp part.

Both programs print a prompt's named intermediates in one format: llama.cpp's
`llama-eval-callback` prints every node of its graph, `hearth tap` the tensors
Hearth's model files name, under llama.cpp's names (`attn_norm-3`). Each entry
is a header `PREFIX: NAME = (TYPE) OP(...) = {ne0, ne1, ne2, ne3}`, the first
and last three values of each dimension in brackets, then `sum = S`.

For every tensor Hearth printed, in Hearth's order, this takes the last node
llama.cpp gave the same name (llama.cpp names the matmul, the reshape and the
RoPE of Q all `Qcur-N`; the last is the one its model file named), compares
the values both printed by normalized error, ||hearth - llama|| / ||llama||,
and reports the first tensor above the threshold. Where llama.cpp kept only
the rows that produce logits (its last layer after attention) the last rows
of Hearth's tensor are compared with them.

  compare-tap.py LLAMA.txt HEARTH.txt        compare two dumps
  compare-tap.py --model M.gguf --prompt P   run both programs, then compare
  compare-tap.py --subset LLAMA.txt HEARTH.txt
      print, verbatim, only the llama.cpp entries that HEARTH.txt names
      (how the test fixtures in cli/tests/fixtures/tap were cut)

The second form finds `hearth` (HEARTH, else target/release/hearth, built if
missing) and `llama-eval-callback` (LLAMA_EVAL_CALLBACK, else the build that
scripts/build-llama-cpp.sh makes). Exit status: 0 when nothing diverges, 1 at
the first divergence, 2 when the dumps cannot be compared.

Two correct engines differ: llama.cpp rounds activations to 8 bits before
each quantized product (shared/golden/README.md), so errors of a few percent
build up over the layers: on Gemma 3 270M and SmolLM2 135M, prompts of 5 to
40 tokens, the largest error of a correct Hearth was 0.22 (Gemma's last
layer). The default threshold, 0.35, is above that and below what a real
fault does: with the sliding-window layers' RoPE base set wrong, Gemma's
Qcur-0 is off by 0.69 and is the tensor reported.
"""

import argparse
import math
import os
import re
import subprocess
import sys

HEADER = re.compile(r"^\S+: +(.+?) = \((\w+)\) (.*) = \{(\d+), (\d+), (\d+), (\d+)\}\s*$")
ROW = re.compile(r"^\s*\[(.*\d.*)\],?\s*$")
SUM = re.compile(r"^\s*sum = (\S+)\s*$")
BODY = re.compile(r"^\s*(\[|\]|\.\.\.|sum = )")
EDGE = 3


def printed(ne):
    """The indices of a dimension of length ne that the dump prints."""
    if ne > 2 * EDGE:
        return list(range(EDGE)) + list(range(ne - EDGE, ne))
    return list(range(ne))


class Tensor:
    def __init__(self, name, dtype, ne):
        self.name, self.dtype, self.ne = name, dtype, ne
        self.values = {}  # (i0, i1, i2, i3) -> value
        self.sum = None
        self.lines = []  # the entry as printed

    def shape(self):
        ne = list(self.ne)
        while len(ne) > 1 and ne[-1] == 1:
            ne.pop()
        return "x".join(map(str, ne))


def parse(path):
    """The tensors of a dump, in order, with their printed values."""
    tensors = []
    cur, rows = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()

    def finish():
        if cur is None or not rows:
            return
        n0, n1, n2, n3 = cur.ne
        keys = [(i1, i2, i3) for i3 in range(n3) for i2 in printed(n2) for i1 in printed(n1)]
        if len(keys) != len(rows):
            raise ValueError(f"{path}: {cur.name}: {len(rows)} rows printed, {len(keys)} expected")
        for (i1, i2, i3), row in zip(keys, rows):
            if len(row) != len(printed(n0)):
                raise ValueError(f"{path}: {cur.name}: a row of {len(row)} values, {len(printed(n0))} expected")
            for i0, v in zip(printed(n0), row):
                cur.values[(i0, i1, i2, i3)] = v

    for line in lines:
        m = HEADER.match(line)
        if m:
            finish()
            cur = Tensor(m.group(1).strip(), m.group(2), tuple(int(m.group(i)) for i in range(4, 8)))
            rows = []
            tensors.append(cur)
            cur.lines.append(line)
            continue
        if cur is None:
            continue
        cur.lines.append(line)
        m = SUM.match(line)
        if m:
            cur.sum = float(m.group(1))
            continue
        m = ROW.match(line)
        if m:
            rows.append([float(x) for x in m.group(1).split(",") if x.strip() not in ("", "...")])
    finish()
    return tensors


def align(h, l):
    """Pairs of (hearth, llama) values at the same logical position, or None
    when the shapes cannot be matched."""
    if h.ne == l.ne:
        keys = [k for k in l.values if k in h.values]
        return [(h.values[k], l.values[k]) for k in keys]
    diff = [d for d in range(4) if h.ne[d] != l.ne[d]]
    if len(diff) != 1 or l.ne[diff[0]] > h.ne[diff[0]]:
        return None
    d, off = diff[0], h.ne[diff[0]] - l.ne[diff[0]]
    pairs = []
    for k, v in l.values.items():
        hk = tuple(i + off if j == d else i for j, i in enumerate(k))
        if hk in h.values:
            pairs.append((h.values[hk], v))
    return pairs


def nerr(pairs):
    num = sum((a - b) ** 2 for a, b in pairs)
    den = sum(b * b for _, b in pairs)
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return math.sqrt(num / den)


def compare(llama_path, hearth_path, threshold, out=sys.stdout):
    llama = {}
    for t in parse(llama_path):
        llama[t.name] = t  # the last node of each name
    hearth = parse(hearth_path)
    if not hearth:
        print(f"compare-tap: no tensors in {hearth_path}", file=sys.stderr)
        return 2
    print(f"{'tensor':<20} {'hearth':>14} {'llama.cpp':>14} {'values':>6} {'nerr':>9} {'max|d|':>9} {'sum hearth':>14} {'sum llama':>14}", file=out)
    first, compared, missing = None, 0, []
    for h in hearth:
        l = llama.get(h.name)
        if l is None:
            missing.append(h.name)
            continue
        pairs = align(h, l)
        if pairs is None or not pairs:
            print(f"{h.name:<20} {h.shape():>14} {l.shape():>14}  shapes do not match", file=out)
            first = first or (h.name, math.inf)
            continue
        compared += 1
        e = nerr(pairs)
        big = max(abs(a - b) for a, b in pairs)
        sums = (f"{h.sum:14.4f} {l.sum:14.4f}" if h.ne == l.ne and h.sum is not None and l.sum is not None else f"{'':>14} {'':>14}")
        flag = "  <-- diverges" if e > threshold and first is None else ""
        print(f"{h.name:<20} {h.shape():>14} {l.shape():>14} {len(pairs):>6} {e:9.2e} {big:9.3g} {sums}{flag}", file=out)
        if e > threshold and first is None:
            first = (h.name, e)
    if missing:
        print(f"only in hearth (llama.cpp names no such node): {', '.join(missing)}", file=out)
    if compared == 0:
        print("compare-tap: no tensor of the same name in both dumps", file=sys.stderr)
        return 2
    if first:
        print(f"first divergence: {first[0]} (normalized error {first[1]:.3g} > {threshold})", file=out)
        return 1
    print(f"no divergence: {compared} tensors within normalized error {threshold}", file=out)
    return 0


def subset(llama_path, hearth_path, out=sys.stdout):
    llama = {t.name: t for t in parse(llama_path)}
    for h in parse(hearth_path):
        if h.name in llama:
            header, *body = llama[h.name].lines
            print(header, file=out)
            for line in body:
                if BODY.match(line):
                    print(line, file=out)
    return 0


def run_both(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hearth = os.environ.get("HEARTH") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "hearth")
    if not os.environ.get("HEARTH"):
        subprocess.run(["cargo", "build", "-q", "--release", "-p", "hearth-cli"], cwd=root, check=True)
    lec = os.environ.get("LLAMA_EVAL_CALLBACK")
    if not lec:
        bindir = subprocess.run([os.path.join(root, "scripts", "build-llama-cpp.sh"), "llama-eval-callback"],
                                check=True, capture_output=True, text=True).stdout.strip()
        lec = os.path.join(bindir, "llama-eval-callback")
    outdir = args.keep or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"compare-tap-{os.getpid()}")
    os.makedirs(outdir, exist_ok=True)
    lpath, hpath = os.path.join(outdir, "llama.txt"), os.path.join(outdir, "hearth.txt")
    with open(lpath, "w") as f:
        r = subprocess.run([lec, "-m", args.model, "-p", args.prompt, "-t", str(args.threads)],
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print(f"compare-tap: llama-eval-callback failed, see {lpath}", file=sys.stderr)
        return 2
    r = subprocess.run([hearth, "tap", args.model, "-p", args.prompt, "-t", str(args.threads), "-o", hpath])
    if r.returncode != 0:
        print("compare-tap: hearth tap failed", file=sys.stderr)
        return 2
    print(f"dumps: {lpath} {hpath}", file=sys.stderr)
    return compare(lpath, hpath, args.threshold)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("llama", nargs="?", help="llama-eval-callback's output")
    p.add_argument("hearth", nargs="?", help="hearth tap's output")
    p.add_argument("--model", help="run both programs on this GGUF file")
    p.add_argument("--prompt", default="The capital of France is", help="with --model (default: %(default)r)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.35, help="normalized error that counts as diverging (default: %(default)s)")
    p.add_argument("--keep", help="with --model: write the two dumps to this folder")
    p.add_argument("--subset", action="store_true", help="print the llama.cpp entries HEARTH names")
    args = p.parse_args()
    try:
        if args.model:
            return run_both(args)
        if not (args.llama and args.hearth):
            p.error("give two dumps, or --model")
        if args.subset:
            return subset(args.llama, args.hearth)
        return compare(args.llama, args.hearth, args.threshold)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"compare-tap: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
