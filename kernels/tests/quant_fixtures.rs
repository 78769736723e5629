//! The quantized formats against fixtures made by an independent
//! implementation: gguf-py's `gguf.quants` (see
//! kernels/scripts/gen_quant_fixtures.py, which wrote every file read here).
//!
//! Dequantization must agree bit for bit: each kernel evaluates the same f32
//! expression as ggml's `dequantize_row_*` (and gguf-py's numpy port of it),
//! in the same order, so no rounding difference is allowed. The quantizers
//! that gguf-py implements (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16) must
//! produce identical bytes.

use hearth_kernels::quant::simd::{dot_kernels, SimdDot};
use hearth_kernels::quant::{
    self, blocks_from_bytes, kernels, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8_0,
    Format,
};
use hearth_kernels::Isa;

/// The scalar reference row of `W` (ggml's `_generic` kernel) on raw bytes.
fn scalar_dot<W: SimdDot>(w: &[u8], a: &[u8]) -> f32 {
    let k = dot_kernels::<W>(Isa::Scalar);
    (k.row)(blocks_from_bytes(w).unwrap(), blocks_from_bytes(a).unwrap())
}

/// A fixture file from kernels/tests/fixtures/quant, compiled in so the test
/// needs no working directory and no Python.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quant/",
            $name
        ))
        .as_slice()
    };
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Every dequantize fixture: (format, raw blocks, expected values).
fn dequant_fixtures() -> Vec<(Format, &'static str, &'static [u8], &'static [u8])> {
    vec![
        (
            Format::Q4_0,
            "q4_0",
            fixture!("q4_0.bin"),
            fixture!("q4_0.f32"),
        ),
        (
            Format::Q4_1,
            "q4_1",
            fixture!("q4_1.bin"),
            fixture!("q4_1.f32"),
        ),
        (
            Format::Q5_0,
            "q5_0",
            fixture!("q5_0.bin"),
            fixture!("q5_0.f32"),
        ),
        (
            Format::Q5_1,
            "q5_1",
            fixture!("q5_1.bin"),
            fixture!("q5_1.f32"),
        ),
        (
            Format::Q8_0,
            "q8_0",
            fixture!("q8_0.bin"),
            fixture!("q8_0.f32"),
        ),
        (
            Format::Q2_K,
            "q2_K",
            fixture!("q2_K.bin"),
            fixture!("q2_K.f32"),
        ),
        (
            Format::Q3_K,
            "q3_K",
            fixture!("q3_K.bin"),
            fixture!("q3_K.f32"),
        ),
        (
            Format::Q4_K,
            "q4_K",
            fixture!("q4_K.bin"),
            fixture!("q4_K.f32"),
        ),
        (
            Format::Q5_K,
            "q5_K",
            fixture!("q5_K.bin"),
            fixture!("q5_K.f32"),
        ),
        (
            Format::Q6_K,
            "q6_K",
            fixture!("q6_K.bin"),
            fixture!("q6_K.f32"),
        ),
        (
            Format::IQ4_NL,
            "iq4_nl",
            fixture!("iq4_nl.bin"),
            fixture!("iq4_nl.f32"),
        ),
        (
            Format::IQ4_XS,
            "iq4_xs",
            fixture!("iq4_xs.bin"),
            fixture!("iq4_xs.f32"),
        ),
        (Format::F16, "f16", fixture!("f16.bin"), fixture!("f16.f32")),
        (
            Format::BF16,
            "bf16",
            fixture!("bf16.bin"),
            fixture!("bf16.f32"),
        ),
        // Blocks cut from the Gemma 3 270M Q4_K_M model file.
        (
            Format::Q8_0,
            "real q8_0",
            fixture!("real_q8_0.bin"),
            fixture!("real_q8_0.f32"),
        ),
        (
            Format::Q5_0,
            "real q5_0",
            fixture!("real_q5_0.bin"),
            fixture!("real_q5_0.f32"),
        ),
        (
            Format::Q4_K,
            "real q4_K",
            fixture!("real_q4_K.bin"),
            fixture!("real_q4_K.f32"),
        ),
        (
            Format::Q6_K,
            "real q6_K",
            fixture!("real_q6_K.bin"),
            fixture!("real_q6_K.f32"),
        ),
    ]
}

fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: value {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for (format, what, raw, expect) in dequant_fixtures() {
        let want = f32s(expect);
        let mut got = vec![f32::NAN; want.len()];
        (kernels(format).dequantize_row)(raw, &mut got).unwrap();
        assert_bits_eq(what, &got, &want);
    }
}

/// One block alone, and every run of consecutive blocks starting anywhere,
/// so a kernel cannot depend on the row starting at block 0 or on a minimum
/// number of blocks.
#[test]
fn dequantize_single_blocks_and_sub_rows() {
    for (format, what, raw, expect) in dequant_fixtures() {
        let want = f32s(expect);
        let (ts, qk) = (format.type_size(), format.block_size());
        let n_blocks = raw.len() / ts;
        for start in 0..n_blocks {
            for end in start + 1..=n_blocks {
                let mut got = vec![0.0; (end - start) * qk];
                (kernels(format).dequantize_row)(&raw[start * ts..end * ts], &mut got).unwrap();
                assert_bits_eq(what, &got, &want[start * qk..end * qk]);
            }
        }
    }
}

/// GGUF tensor data sits at any offset of a memory map; the blocks have
/// alignment 1 and must decode the same from an odd address.
#[test]
fn dequantize_from_misaligned_bytes() {
    for (format, what, raw, expect) in dequant_fixtures() {
        let want = f32s(expect);
        for offset in 1..4 {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(raw);
            let mut got = vec![0.0; want.len()];
            (kernels(format).dequantize_row)(&buf[offset..], &mut got).unwrap();
            assert_bits_eq(what, &got, &want);
        }
    }
}

#[test]
fn quantize_matches_gguf_py_byte_for_byte() {
    let cases: [(Format, &[u8], &[u8]); 7] = [
        (
            Format::Q4_0,
            fixture!("q4_0.quant_in.f32"),
            fixture!("q4_0.quant_out.bin"),
        ),
        (
            Format::Q4_1,
            fixture!("q4_1.quant_in.f32"),
            fixture!("q4_1.quant_out.bin"),
        ),
        (
            Format::Q5_0,
            fixture!("q5_0.quant_in.f32"),
            fixture!("q5_0.quant_out.bin"),
        ),
        (
            Format::Q5_1,
            fixture!("q5_1.quant_in.f32"),
            fixture!("q5_1.quant_out.bin"),
        ),
        (
            Format::Q8_0,
            fixture!("q8_0.quant_in.f32"),
            fixture!("q8_0.quant_out.bin"),
        ),
        (
            Format::F16,
            fixture!("f16.quant_in.f32"),
            fixture!("f16.quant_out.bin"),
        ),
        (
            Format::BF16,
            fixture!("bf16.quant_in.f32"),
            fixture!("bf16.quant_out.bin"),
        ),
    ];
    for (format, input, expect) in cases {
        let x = f32s(input);
        let mut got = vec![0xAAu8; expect.len()];
        kernels(format).quantizer().unwrap()(&x, &mut got).unwrap();
        let ts = format.type_size();
        for (i, (g, w)) in got.chunks(ts).zip(expect.chunks(ts)).enumerate() {
            assert_eq!(g, w, "{format}: block {i}");
        }
    }
}

/// The quantizers gguf-py lacks, against ggml's own C reference
/// (`quantize_row_*_ref` from ggml-quants.c, built without FMA contraction by
/// kernels/scripts/gen_ggml_fixtures.sh) on one awkward row: a super-block of
/// tiny values, an all-positive one, a zero sub-block, an outlier and heavy
/// tails. The K-quant searches (`make_qkx2_quants`, `make_q3_quants`,
/// `make_qx_quants`) branch on float comparisons, so this pins every rounding
/// step of them: any reordering shows up as a different byte.
#[test]
fn quantize_matches_ggml_c_reference_byte_for_byte() {
    let x = f32s(fixture!("ggml_quant_in.f32"));
    let cases: [(Format, &[u8]); 9] = [
        (Format::Q2_K, fixture!("q2_K.ggml_out.bin")),
        (Format::Q3_K, fixture!("q3_K.ggml_out.bin")),
        (Format::Q4_K, fixture!("q4_K.ggml_out.bin")),
        (Format::Q5_K, fixture!("q5_K.ggml_out.bin")),
        (Format::Q6_K, fixture!("q6_K.ggml_out.bin")),
        (Format::Q8_K, fixture!("q8_K.ggml_out.bin")),
        (Format::Q8_1, fixture!("q8_1.ggml_out.bin")),
        (Format::IQ4_NL, fixture!("iq4_nl.ggml_out.bin")),
        (Format::IQ4_XS, fixture!("iq4_xs.ggml_out.bin")),
    ];
    for (format, expect) in cases {
        let mut got = vec![0xAAu8; expect.len()];
        kernels(format).quantizer().unwrap()(&x, &mut got).unwrap();
        let ts = format.type_size();
        for (i, (g, w)) in got.chunks(ts).zip(expect.chunks(ts)).enumerate() {
            assert_eq!(g, w, "{format}: block {i}");
        }
    }
}

/// Every scalar dot product against ggml's `ggml_vec_dot_*_generic` (from
/// ggml-cpu/quants.c, built without FMA contraction), bit for bit: the
/// weights are the random dequantize fixtures, the activations a Gaussian
/// row quantized by ggml. The scalar kernels keep ggml's integer lanes and
/// f32 accumulation order, so not even the last bit may differ. Q8_0, Q5_0,
/// Q4_K and Q6_K dispatch to SIMD by default; their scalar variants are
/// checked here exactly and the dispatched ones by normalized error in
/// quant_simd.rs.
#[test]
fn vec_dot_matches_ggml_generic_bit_for_bit() {
    // (weights, activations, weight blocks, activation blocks, ggml's result)
    type Case = (Format, Format, &'static [u8], &'static [u8], &'static [u8]);
    let cases: [Case; 12] = [
        (
            Format::Q4_0,
            Format::Q8_0,
            fixture!("q4_0.bin"),
            fixture!("q8_0.ggml_act.bin"),
            fixture!("q4_0.ggml_dot.f32"),
        ),
        (
            Format::Q4_1,
            Format::Q8_1,
            fixture!("q4_1.bin"),
            fixture!("q8_1.ggml_act.bin"),
            fixture!("q4_1.ggml_dot.f32"),
        ),
        (
            Format::Q5_0,
            Format::Q8_0,
            fixture!("q5_0.bin"),
            fixture!("q8_0.ggml_act.bin"),
            fixture!("q5_0.ggml_dot.f32"),
        ),
        (
            Format::Q5_1,
            Format::Q8_1,
            fixture!("q5_1.bin"),
            fixture!("q8_1.ggml_act.bin"),
            fixture!("q5_1.ggml_dot.f32"),
        ),
        (
            Format::Q8_0,
            Format::Q8_0,
            fixture!("q8_0.bin"),
            fixture!("q8_0.ggml_act.bin"),
            fixture!("q8_0.ggml_dot.f32"),
        ),
        (
            Format::Q2_K,
            Format::Q8_K,
            fixture!("q2_K.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("q2_K.ggml_dot.f32"),
        ),
        (
            Format::Q3_K,
            Format::Q8_K,
            fixture!("q3_K.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("q3_K.ggml_dot.f32"),
        ),
        (
            Format::Q4_K,
            Format::Q8_K,
            fixture!("q4_K.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("q4_K.ggml_dot.f32"),
        ),
        (
            Format::Q5_K,
            Format::Q8_K,
            fixture!("q5_K.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("q5_K.ggml_dot.f32"),
        ),
        (
            Format::Q6_K,
            Format::Q8_K,
            fixture!("q6_K.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("q6_K.ggml_dot.f32"),
        ),
        (
            Format::IQ4_NL,
            Format::Q8_0,
            fixture!("iq4_nl.bin"),
            fixture!("q8_0.ggml_act.bin"),
            fixture!("iq4_nl.ggml_dot.f32"),
        ),
        (
            Format::IQ4_XS,
            Format::Q8_K,
            fixture!("iq4_xs.bin"),
            fixture!("q8_K.ggml_act.bin"),
            fixture!("iq4_xs.ggml_dot.f32"),
        ),
    ];
    for (wf, af, w, a, expect) in cases {
        let want = f32s(expect)[0];
        let got = match wf {
            Format::Q8_0 => scalar_dot::<BlockQ8_0>(w, a),
            Format::Q4_K => scalar_dot::<BlockQ4K>(w, a),
            Format::Q5_K => scalar_dot::<BlockQ5K>(w, a),
            Format::Q3_K => scalar_dot::<BlockQ3K>(w, a),
            Format::Q5_0 => scalar_dot::<BlockQ5_0>(w, a),
            Format::Q6_K => scalar_dot::<BlockQ6K>(w, a),
            _ => quant::vec_dot_for(wf, af).unwrap()(w, a).unwrap(),
        };
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{wf} x {af}: got {got}, ggml {want}"
        );
        // Through the table (SIMD where there is one): equal up to rounding.
        let table = quant::vec_dot_for(wf, af).unwrap()(w, a).unwrap();
        assert!(
            (table - want).abs() <= 1e-5 * want.abs().max(1e-3),
            "{wf}: {table} vs {want}"
        );
    }
}

/// The typed API and the byte-level table agree (the table only casts).
#[test]
fn typed_and_table_dequantize_agree() {
    let raw = fixture!("q4_K.bin");
    let blocks: &[quant::BlockQ4K] = quant::blocks_from_bytes(raw).unwrap();
    let mut a = vec![0.0; blocks.len() * 256];
    let mut b = a.clone();
    quant::q4_k::dequantize_row_q4_K(blocks, &mut a).unwrap();
    (kernels(Format::Q4_K).dequantize_row)(raw, &mut b).unwrap();
    assert_bits_eq("q4_K", &a, &b);
}
