#!/usr/bin/env python3
"""Generate the quantized-format fixtures for kernels/tests/quant_*.rs.

The expected values come from the `gguf` Python package (gguf-py, ggml's own
Python reader), an implementation independent of the Rust kernels:

* dequantize fixtures: random blocks (random bytes, with the f16 scale fields
  replaced by finite normally distributed values) run through
  `gguf.quants.dequantize`;
* quantize fixtures: random f32 rows run through `gguf.quants.quantize`, for
  the types gguf-py can quantize (its Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 quantizers are
  ports of ggml's `quantize_row_*_ref`);
* real rows: the first blocks of one tensor of each quantized type found in a
  real model file, if one is given (default: the Gemma 3 270M Q4_K_M file in
  ~/.cache/hearth/models), dequantized the same way.

Files, all little-endian, in kernels/tests/fixtures/quant/:
  <type>.bin, <type>.f32            raw blocks, expected f32 values
  <type>.quant_in.f32, .quant_out.bin   quantizer input and expected blocks
  real_<type>.bin, real_<type>.f32  blocks from the model file, expected f32

With `--ggml-ref BIN` (see gen_ggml_fixtures.sh, which builds BIN from ggml's
own ggml-quants.c) it instead writes the quantize fixtures of the types
gguf-py cannot quantize:
  ggml_quant_in.f32, <type>.ggml_out.bin
  <act>.ggml_act.bin          activations (q8_0/q8_1 for 256 values, q8_K
                              for 1024) quantized by ggml
  <type>.ggml_dot.f32         ggml_vec_dot_<type>_<act>_generic of the
                              <type>.bin dequantize fixture with them

Usage: pip install gguf numpy; python3 kernels/scripts/gen_quant_fixtures.py [model.gguf]
`cargo test` reads only the generated files; it never runs Python.
"""

import os
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "quant")
DEFAULT_MODEL = os.path.expanduser("~/.cache/hearth/models/gemma-3-270m-q4_k_m.gguf")

# type -> (values per block, bytes per block, byte offsets of f16 fields),
# from the block structs in ggml-common.h. Q8_1 (36 bytes in ggml today; the
# gguf-py size table still says 40) and Q8_K have no gguf-py dequantizer.
BLOCKS = {
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q8_0: (32, 34, [0]),
    T.Q2_K: (256, 84, [80, 82]),
    T.Q3_K: (256, 110, [108]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
    T.IQ4_NL: (32, 18, [0]),
    T.IQ4_XS: (256, 136, [0]),
}
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def name(t):
    # ggml's type names: q4_K, iq4_nl, ...
    n = t.name.lower()
    return n[:-2] + "_K" if n.endswith("_k") else n


def write(path, arr):
    with open(os.path.join(OUT, path), "wb") as f:
        f.write(np.ascontiguousarray(arr).tobytes())


def random_blocks(rng, t, n_blocks):
    _, size, f16_at = BLOCKS[t]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in f16_at:
        # Finite scales of a realistic magnitude; a few exact zeros too.
        d = (rng.normal(0.0, 0.02, size=n_blocks)).astype(np.float16)
        d[rng.random(n_blocks) < 0.05] = 0
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw


GGML_REF_TYPES = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "q8_1", "iq4_nl", "iq4_xs"]


def ggml_ref_fixtures(binary):
    """Quantize one awkward f32 row with ggml's C reference quantizers."""
    rng = np.random.default_rng(20261126)
    x = rng.normal(0.0, 1.0, size=4 * 256).astype(np.float32)
    x[:256] *= 1e-3                        # a super-block of small values
    x[256:512] = np.abs(x[256:512]) + 0.1  # all positive: min > 0
    x[512:544] = 0.0                       # a zero sub-block
    x[600] = 25.0                          # an outlier
    x[768:] = rng.standard_t(3, size=256)  # heavy tails
    path_in = os.path.join(OUT, "ggml_quant_in.f32")
    write("ggml_quant_in.f32", x)
    for t in GGML_REF_TYPES:
        subprocess.run([binary, t, path_in, os.path.join(OUT, f"{t}.ggml_out.bin")], check=True)
        print(f"ggml {t}")

    # Activations, quantized by ggml: 256 values for the 32-blocks
    # fixtures (8 blocks), 1024 for the super-block ones (4 blocks).
    a = rng.normal(0.0, 2.0, size=1024).astype(np.float32)
    write("ggml_act_in_256.f32", a[:256])
    write("ggml_act_in_1024.f32", a)
    for act, n in (("q8_0", 256), ("q8_1", 256), ("q8_K", 1024)):
        subprocess.run([binary, act, os.path.join(OUT, f"ggml_act_in_{n}.f32"),
                        os.path.join(OUT, f"{act}.ggml_act.bin")], check=True)
    os.remove(os.path.join(OUT, "ggml_act_in_256.f32"))
    os.remove(os.path.join(OUT, "ggml_act_in_1024.f32"))
    pairs = {"q4_0": "q8_0", "q4_1": "q8_1", "q5_0": "q8_0", "q5_1": "q8_1", "q8_0": "q8_0",
             "q2_K": "q8_K", "q3_K": "q8_K", "q4_K": "q8_K", "q5_K": "q8_K", "q6_K": "q8_K",
             "iq4_nl": "q8_0", "iq4_xs": "q8_K"}
    for w, act in pairs.items():
        subprocess.run([binary, "dot", w, os.path.join(OUT, f"{w}.bin"),
                        os.path.join(OUT, f"{act}.ggml_act.bin"),
                        os.path.join(OUT, f"{w}.ggml_dot.f32")], check=True)
        print(f"ggml dot {w} x {act}")


def main():
    os.makedirs(OUT, exist_ok=True)
    if len(sys.argv) == 3 and sys.argv[1] == "--ggml-ref":
        ggml_ref_fixtures(sys.argv[2])
        return
    rng = np.random.default_rng(20261125)

    for t, (qk, _, _) in BLOCKS.items():
        n_blocks = 8 if qk == 32 else 4
        raw = random_blocks(rng, t, n_blocks)
        expect = dequantize(raw.reshape(-1), t).astype(np.float32)
        assert expect.size == n_blocks * qk and np.all(np.isfinite(expect))
        write(f"{name(t)}.bin", raw)
        write(f"{name(t)}.f32", expect)

    for t in QUANTIZABLE:
        x = rng.normal(0.0, 1.0, size=8 * 32).astype(np.float32)
        x[:32] *= 1e-3  # one block of small values
        x[32:64] = np.abs(x[32:64])  # one all-positive block (max > 0)
        x[64:96] = 0.0  # one all-zero block
        write(f"{name(t)}.quant_in.f32", x)
        write(f"{name(t)}.quant_out.bin", quantize(x, t))

    # F16 / BF16 rows: values round-trip through the float conversions.
    x = rng.normal(0.0, 3.0, size=256).astype(np.float32)
    x[:4] = [0.0, -0.0, 65504.0, 1e-7]
    for t in (T.F16, T.BF16):
        q = quantize(x, t)
        write(f"{name(t)}.quant_in.f32", x)
        write(f"{name(t)}.quant_out.bin", q)
        write(f"{name(t)}.bin", q)
        write(f"{name(t)}.f32", dequantize(q.view(np.uint8).reshape(-1), t).astype(np.float32))

    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    if os.path.exists(model):
        reader = GGUFReader(model)
        seen = set()
        for tensor in reader.tensors:
            t = T(tensor.tensor_type)
            if t not in BLOCKS or t in seen:
                continue
            seen.add(t)
            qk, size, _ = BLOCKS[t]
            n_blocks = 8 if qk == 32 else 4
            raw = np.asarray(tensor.data).view(np.uint8).reshape(-1)[: n_blocks * size]
            write(f"real_{name(t)}.bin", raw)
            write(f"real_{name(t)}.f32", dequantize(raw, t).astype(np.float32))
            print(f"real {name(t)}: {tensor.name}")
    else:
        print(f"no model at {model}: skipping real rows")


if __name__ == "__main__":
    main()
