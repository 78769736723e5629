//! Properties of every format on random data: quantize -> dequantize error
//! bounds, the quantized dot products against an f64 reference computed from
//! the dequantized rows, and typed errors (never panics) on malformed input.

use hearth_kernels::quant::{kernels, vec_dot_for, Format, QuantError};

use hearth_testkit::Rng;

fn normals(rng: &mut Rng, n: usize, sigma: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gaussian() * sigma).collect()
}

fn quantize(format: Format, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; format.row_size(x.len()).unwrap()];
    kernels(format).quantizer().unwrap()(x, &mut q).unwrap();
    q
}

fn dequantize(format: Format, q: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0.0; n];
    (kernels(format).dequantize_row)(q, &mut y).unwrap();
    y
}

/// `rms(x - y) / rms(x)`.
fn normalized_rmse(x: &[f32], y: &[f32]) -> f64 {
    let num: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Upper bounds on the normalized RMS error of quantize -> dequantize for
/// Gaussian data. A uniform quantizer has an RMS error near step/sqrt(12);
/// each bound is about 1.5x what the ggml-reference algorithms reach on this
/// data (F16 0.0002, BF16 0.0016, Q8_0 0.0054, Q8_K 0.0066, Q6_K 0.018,
/// Q5_K 0.037, Q4_K 0.072, Q3_K 0.149, Q2_K 0.299, ...), so a wrong level,
/// scale or packing bit fails by a wide margin.
const RMSE_BOUNDS: [(Format, f64); 17] = [
    (Format::F32, 0.0),
    (Format::F16, 0.0003),
    (Format::BF16, 0.0025),
    (Format::Q8_0, 0.008),
    (Format::Q8_1, 0.008),
    (Format::Q8_K, 0.01),
    (Format::Q6_K, 0.027),
    (Format::Q5_0, 0.062),
    (Format::Q5_1, 0.056),
    (Format::Q5_K, 0.055),
    (Format::Q4_0, 0.125),
    (Format::Q4_1, 0.115),
    (Format::Q4_K, 0.105),
    (Format::IQ4_NL, 0.115),
    (Format::IQ4_XS, 0.115),
    (Format::Q3_K, 0.22),
    (Format::Q2_K, 0.45),
];

#[test]
fn every_format_has_a_roundtrip_bound() {
    for format in Format::ALL {
        assert!(RMSE_BOUNDS.iter().any(|&(f, _)| f == format), "{format}");
    }
}

#[test]
fn quantize_dequantize_error_is_bounded() {
    let mut rng = Rng(1);
    for (format, bound) in RMSE_BOUNDS {
        // Scale-invariance: the same bound holds for tiny and large values.
        for sigma in [1e-3f32, 1.0, 300.0] {
            let n = 16 * 256;
            let x = normals(&mut rng, n, sigma);
            let y = dequantize(format, &quantize(format, &x), n);
            let e = normalized_rmse(&x, &y);
            assert!(
                e <= bound,
                "{format} sigma {sigma}: normalized rmse {e} > {bound}"
            );
        }
    }
}

/// Rows with awkward contents: one block of zeros (must come back as exact
/// zeros), one all-positive block, one block with a single large outlier,
/// one block of a constant.
#[test]
fn quantize_handles_zero_constant_and_outlier_blocks() {
    let mut rng = Rng(2);
    for (format, _) in RMSE_BOUNDS {
        let qk = format.block_size().max(32);
        let mut x = vec![0.0f32; 4 * qk];
        for v in &mut x[qk..2 * qk] {
            *v = rng.gaussian().abs() + 0.1;
        }
        for v in &mut x[2 * qk..3 * qk] {
            *v = rng.gaussian() * 0.01;
        }
        x[2 * qk + 5] = 40.0;
        x[3 * qk..].fill(-0.75);
        let y = dequantize(format, &quantize(format, &x), x.len());
        assert!(y[..qk].iter().all(|&v| v == 0.0), "{format}: zero block");
        assert!(
            y.iter().all(|v| v.is_finite()),
            "{format}: non-finite output"
        );
        // The outlier survives within the format's relative precision.
        let out = y[2 * qk + 5];
        assert!(
            (out - 40.0).abs() <= 40.0 * 0.15,
            "{format}: outlier became {out}"
        );
    }
}

/// The weight formats, each with its activation format (ggml-cpu.c's
/// `type_traits_cpu[].vec_dot_type`).
const PAIRS: [(Format, Format); 15] = [
    (Format::F32, Format::F32),
    (Format::F16, Format::F16),
    (Format::BF16, Format::BF16),
    (Format::Q4_0, Format::Q8_0),
    (Format::Q4_1, Format::Q8_1),
    (Format::Q5_0, Format::Q8_0),
    (Format::Q5_1, Format::Q8_1),
    (Format::Q8_0, Format::Q8_0),
    (Format::Q2_K, Format::Q8_K),
    (Format::Q3_K, Format::Q8_K),
    (Format::Q4_K, Format::Q8_K),
    (Format::Q5_K, Format::Q8_K),
    (Format::Q6_K, Format::Q8_K),
    (Format::IQ4_NL, Format::Q8_0),
    (Format::IQ4_XS, Format::Q8_K),
];

#[test]
fn kernel_table_pairs_match_ggml() {
    for (w, a) in PAIRS {
        assert_eq!(kernels(w).vec_dot_type, a, "{w}");
        assert_eq!(kernels(w).format, w);
        assert!(vec_dot_for(w, a).is_ok(), "{w} x {a}");
    }
    for f in [Format::Q8_1, Format::Q8_K] {
        assert_eq!(vec_dot_for(f, f), Err(QuantError::NoVecDot(f)));
    }
}

/// Where the dot product uses a value the dequantized rows do not carry:
/// Q8_1's `s = d * sum(q)` is stored rounded to f16, and Q4_1/Q5_1 multiply
/// their offset `m` by it. Returns `sum_b |m_b| * |s_b - d_b * sum(q_b)|`,
/// the most that rounding can move the result.
fn q8_1_s_rounding(weight: Format, w: &[u8], a: &[u8]) -> f64 {
    use hearth_kernels::quant::{blocks_from_bytes, BlockQ4_1, BlockQ5_1, BlockQ8_1};
    let ms: Vec<f32> = match weight {
        Format::Q4_1 => blocks_from_bytes::<BlockQ4_1>(w)
            .unwrap()
            .iter()
            .map(|b| b.m())
            .collect(),
        Format::Q5_1 => blocks_from_bytes::<BlockQ5_1>(w)
            .unwrap()
            .iter()
            .map(|b| b.m())
            .collect(),
        _ => return 0.0,
    };
    let ys = blocks_from_bytes::<BlockQ8_1>(a).unwrap();
    ms.iter()
        .zip(ys)
        .map(|(&m, y)| {
            let exact = y.d() as f64 * y.qs.iter().map(|&q| q as f64).sum::<f64>();
            m.abs() as f64 * (y.s() as f64 - exact).abs()
        })
        .sum()
}

/// The quantized dot products equal `sum_i dequant(w)_i * dequant(a)_i`
/// (computed in f64) up to f32 rounding. The integer parts are exact, so the
/// only error is the f32 arithmetic on the per-block sums: one rounding per
/// multiply and add, a relative 6e-8 each, over at most a few hundred
/// blocks here. The threshold is `1e-5 * sum_i |w_i a_i|` (plus the f16
/// rounding of Q8_1's `s`, see `q8_1_s_rounding`).
#[test]
fn vec_dot_matches_f64_reference_on_dequantized_rows() {
    let mut rng = Rng(3);
    for (wf, af) in PAIRS {
        let qk = wf.block_size().max(af.block_size()).max(32);
        for n_blocks in [1, 2, 3, 7, 16] {
            let n = n_blocks * qk;
            let x = normals(&mut rng, n, 0.5);
            let act = normals(&mut rng, n, 2.0);
            let wq = quantize(wf, &x);
            let aq = quantize(af, &act);
            let got = vec_dot_for(wf, af).unwrap()(&wq, &aq).unwrap();
            let wd = dequantize(wf, &wq, n);
            let ad = dequantize(af, &aq, n);
            let reference: f64 = wd.iter().zip(&ad).map(|(&a, &b)| a as f64 * b as f64).sum();
            let scale: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let tol = 1e-5 * scale + q8_1_s_rounding(wf, &wq, &aq);
            let err = (got as f64 - reference).abs();
            assert!(
                err <= tol,
                "{wf} x {af}, {n} values: got {got}, reference {reference}, error {err} > {tol}"
            );
        }
    }
}

#[test]
fn malformed_lengths_are_typed_errors() {
    for format in Format::ALL {
        let k = kernels(format);
        let (qk, ts) = (format.block_size(), format.type_size());
        // A byte buffer that ends mid-block.
        let mut out = vec![0.0f32; qk];
        let err = (k.dequantize_row)(&vec![0u8; ts + 1], &mut out).unwrap_err();
        assert!(
            matches!(err, QuantError::PartialBlock { format: f, len, type_size }
                if f == format && len == ts + 1 && type_size == ts),
            "{format}: {err:?}"
        );
        // Whole blocks, but an output of the wrong size.
        let mut out = vec![0.0f32; 3 * qk];
        let err = (k.dequantize_row)(&vec![0u8; 2 * ts], &mut out).unwrap_err();
        assert!(
            matches!(err, QuantError::LengthMismatch { .. }),
            "{format}: {err:?}"
        );
        if qk > 1 {
            let mut out = vec![0.0f32; qk + 1];
            let err = (k.dequantize_row)(&vec![0u8; ts], &mut out).unwrap_err();
            assert!(
                matches!(err, QuantError::NotBlockMultiple { .. }),
                "{format}: {err:?}"
            );
            // A float row that is not a whole number of blocks.
            let x = vec![1.0f32; qk + 1];
            let mut q = vec![0u8; 2 * ts];
            let err = k.quantizer().unwrap()(&x, &mut q).unwrap_err();
            assert!(
                matches!(err, QuantError::NotBlockMultiple { .. }),
                "{format}: {err:?}"
            );
            assert!(format.row_size(qk + 1).is_err());
        }
        assert_eq!(format.row_size(2 * qk), Ok(2 * ts));
    }
    for (wf, af) in PAIRS {
        let f = vec_dot_for(wf, af).unwrap();
        let w = vec![0u8; wf.row_size(256).unwrap()];
        let a = vec![0u8; af.row_size(512).unwrap()];
        assert!(
            matches!(f(&w, &a), Err(QuantError::LengthMismatch { .. })),
            "{wf}"
        );
        let a = vec![0u8; af.row_size(256).unwrap() + 1];
        assert!(
            matches!(f(&w, &a), Err(QuantError::PartialBlock { .. })),
            "{wf}"
        );
        let a = vec![0u8; af.row_size(256).unwrap()];
        assert_eq!(f(&w, &a), Ok(0.0), "{wf}: zero rows");
    }
}

#[test]
fn unsupported_pairs_are_typed_errors() {
    assert_eq!(
        vec_dot_for(Format::Q4_K, Format::Q8_0).unwrap_err(),
        QuantError::UnsupportedPair {
            weight: Format::Q4_K,
            activation: Format::Q8_0,
            expected: Format::Q8_K,
        }
    );
    for (wf, af) in PAIRS {
        for other in Format::ALL {
            if other != af {
                assert!(
                    matches!(
                        vec_dot_for(wf, other),
                        Err(QuantError::UnsupportedPair { .. })
                    ),
                    "{wf} x {other}"
                );
            }
        }
    }
}

/// Non-finite and extreme inputs give unspecified blocks (as in ggml) but
/// never a panic: no integer overflow, no out-of-range index.
#[test]
fn quantize_never_panics_on_non_finite_or_extreme_input() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX,
        1e30,
        -1e-30,
        f32::MIN_POSITIVE / 4.0,
        0.0,
        -0.0,
    ];
    let mut rng = Rng(4);
    for format in Format::ALL {
        let qk = format.block_size().max(32);
        for &s in &specials {
            // The special value alone, and mixed into ordinary data.
            let alone = vec![s; qk];
            let mut mixed = normals(&mut rng, qk, 1.0);
            mixed[qk / 3] = s;
            for x in [alone, mixed] {
                let q = quantize(format, &x);
                let y = dequantize(format, &q, x.len());
                assert_eq!(y.len(), x.len());
            }
        }
    }
}

/// Any bytes are a valid row to decode and to take a dot product of: no
/// panic, whatever the scales decode to (NaN and infinity included).
#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(5);
    for (wf, af) in PAIRS {
        let n = wf.block_size().max(af.block_size()).max(32) * 3;
        let mut w = vec![0u8; wf.row_size(n).unwrap()];
        let mut a = vec![0u8; af.row_size(n).unwrap()];
        for _ in 0..20 {
            w.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            a.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            let mut y = vec![0.0; n];
            (kernels(wf).dequantize_row)(&w, &mut y).unwrap();
            (kernels(af).dequantize_row)(&a, &mut y).unwrap();
            vec_dot_for(wf, af).unwrap()(&w, &a).unwrap();
        }
    }
}
