//! `matmul` for every weight format against a plain f64 reference
//! (dequantize the weights, multiply), by normalized mean squared error.
//!
//! Threshold 5e-4: the activations are quantized to 8 bits per value
//! (Q8_0/Q8_K, as ggml does) before the dot products, which alone costs
//! around 1e-5..1e-4 of NMSE on Gaussian data; a wrong block layout or
//! row mix-up gives NMSE near 1 or more.

use hearth_kernels::matmul::{matmul, MatmulScratch, QMatrix};
use hearth_kernels::quant::{kernels, vec_dot_for, Format};

use hearth_testkit::{nmse, Rng};

/// Roughly Gaussian (sum of uniforms). Measured here: NMSE at most
/// 8e-5 over all formats and batch sizes. (With 1% of activations
/// 8x larger, as real outliers are, one Q8_K scale per 256 values lets
/// Q2_K reach 5.4e-4: the cost ggml's 8-bit activations pay too.)
fn normal(rng: &mut Rng) -> f32 {
    rng.normal(1.0 / 3f32.sqrt())
}

#[test]
fn matmul_matches_f64_reference_for_every_format_and_batch() {
    let (rows, cols) = (37, 512);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut scratch = MatmulScratch::default();
    for format in Format::weights() {
        let k = kernels(format);
        let wf: Vec<f32> = (0..rows * cols).map(|_| normal(&mut rng)).collect();
        let row_bytes = format.row_size(cols).unwrap();
        let mut wq = vec![0u8; rows * row_bytes];
        let quantize = k.quantizer().unwrap();
        for (src, dst) in wf.chunks(cols).zip(wq.chunks_mut(row_bytes)) {
            quantize(src, dst).unwrap();
        }
        // The reference multiplies the weights exactly as stored.
        let mut wd = vec![0f32; rows * cols];
        for (src, dst) in wq.chunks(row_bytes).zip(wd.chunks_mut(cols)) {
            (k.dequantize_row)(src, dst).unwrap();
        }
        let w = QMatrix::new(format, rows, cols, &wq).unwrap();
        for n_tokens in [1, 2, 3, 5, 7, 8, 9, 64, 513] {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| normal(&mut rng)).collect();
            let want: Vec<f64> = (0..n_tokens)
                .flat_map(|t| {
                    let (x, wd) = (&x, &wd);
                    (0..rows).map(move |r| {
                        (0..cols)
                            .map(|c| wd[r * cols + c] as f64 * x[t * cols + c] as f64)
                            .sum()
                    })
                })
                .collect();
            // Poison: an output the kernel forgets to write stays NaN.
            let mut out = vec![f32::NAN; n_tokens * rows];
            matmul(&w, &x, n_tokens, &mut out, &mut scratch).unwrap();
            assert!(
                out.iter().all(|v| v.is_finite()),
                "{format} x{n_tokens}: unwritten output"
            );
            let e = nmse(&out, &want);
            assert!(e <= 5e-4, "{format} x{n_tokens}: NMSE {e:e}");
        }
    }
}

#[test]
fn matmul_rejects_mismatched_operands() {
    let data = vec![0u8; 2 * 34];
    let w = QMatrix::new(Format::Q8_0, 2, 32, &data).unwrap();
    let mut s = MatmulScratch::default();
    let mut out = vec![0.0; 2];
    assert!(matmul(&w, &[0.0; 31], 1, &mut out, &mut s).is_err());
    assert!(matmul(&w, &[0.0; 32], 1, &mut out[..1], &mut s).is_err());
    assert!(QMatrix::new(Format::Q8_0, 3, 32, &data).is_err());
    assert!(QMatrix::new(Format::Q4_K, 1, 100, &data).is_err());
    assert!(
        QMatrix::new(Format::Q8_K, 1, 256, &[0u8; 292])
            .map(|w| matmul(&w, &[0.0; 256], 1, &mut [0.0], &mut s))
            .unwrap()
            .is_err(),
        "Q8_K is activation-only"
    );
}

/// Random weights of `format`, `rows` x `cols`, as stored.
fn random_matrix(rng: &mut Rng, format: Format, rows: usize, cols: usize) -> Vec<u8> {
    let quantize = kernels(format).quantizer().unwrap();
    let row_bytes = format.row_size(cols).unwrap();
    let mut wq = vec![0u8; rows * row_bytes];
    for dst in wq.chunks_mut(row_bytes) {
        let src: Vec<f32> = (0..cols).map(|_| normal(rng)).collect();
        quantize(&src, dst).unwrap();
    }
    wq
}

/// The many-token path (four activation rows per weight row at a time for
/// Q8_0, Q5_0, Q4_K, Q6_K; token blocks; a remainder of one to three tokens)
/// gives bit for bit what one `vec_dot` per output gives: the four-row
/// kernels compute each result exactly as the one-row kernel does, and each
/// token's activations are quantized alone.
#[test]
fn many_tokens_equal_one_vec_dot_per_output_bit_for_bit() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut scratch = MatmulScratch::default();
    // 1024 columns: 32 Q8_0 blocks, 4 K-quant blocks; an odd row count.
    let (rows, cols) = (41, 1024);
    for format in Format::weights() {
        let wq = random_matrix(&mut rng, format, rows, cols);
        let w = QMatrix::new(format, rows, cols, &wq).unwrap();
        for n_tokens in [1, 2, 3, 5, 7, 9, 64, 513] {
            assert_matmul_is_vec_dot(&mut rng, &w, n_tokens, &mut scratch);
        }
    }
}

/// `matmul(w, x)` for random `x` of `n_tokens` rows equals, bit for bit, one
/// `vec_dot` per output on each token's activations quantized alone.
fn assert_matmul_is_vec_dot(
    rng: &mut Rng,
    w: &QMatrix,
    n_tokens: usize,
    scratch: &mut MatmulScratch,
) {
    let (format, rows, cols) = (w.format(), w.rows(), w.cols());
    let act_format = kernels(format).vec_dot_type;
    let vec_dot = vec_dot_for(format, act_format).unwrap();
    let quantize = kernels(act_format).quantizer().unwrap();
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| normal(rng)).collect();
    let mut out = vec![f32::NAN; n_tokens * rows];
    matmul(w, &x, n_tokens, &mut out, scratch).unwrap();
    let mut act = vec![0u8; act_format.row_size(cols).unwrap()];
    for t in 0..n_tokens {
        quantize(&x[t * cols..(t + 1) * cols], &mut act).unwrap();
        for r in 0..rows {
            let want = vec_dot(w.row(r), &act).unwrap();
            let got = out[t * rows + r];
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{format} {rows}x{cols} x{n_tokens}: token {t} row {r}: {got} vs {want}"
            );
        }
    }
}

/// Sizes at which the parallel split gives uneven tasks: a single row, rows
/// fewer than threads, and a row count just past a task boundary.
#[test]
fn matmul_handles_awkward_row_counts() {
    let mut rng = Rng(77);
    let mut scratch = MatmulScratch::default();
    for format in [Format::Q8_0, Format::Q5_0, Format::Q4_K, Format::Q6_K] {
        let act_format = kernels(format).vec_dot_type;
        let vec_dot = vec_dot_for(format, act_format).unwrap();
        let quantize = kernels(act_format).quantizer().unwrap();
        let cols = 256;
        let act_row = act_format.row_size(cols).unwrap();
        for rows in [1, 2, 3, 65, 257] {
            let wq = random_matrix(&mut rng, format, rows, cols);
            let w = QMatrix::new(format, rows, cols, &wq).unwrap();
            for n_tokens in [1, 4, 6, 9, 13] {
                let x: Vec<f32> = (0..n_tokens * cols).map(|_| normal(&mut rng)).collect();
                let mut out = vec![f32::NAN; n_tokens * rows];
                matmul(&w, &x, n_tokens, &mut out, &mut scratch).unwrap();
                let mut act = vec![0u8; act_row];
                for t in 0..n_tokens {
                    quantize(&x[t * cols..(t + 1) * cols], &mut act).unwrap();
                    for r in 0..rows {
                        let want = vec_dot(w.row(r), &act).unwrap();
                        assert_eq!(out[t * rows + r].to_bits(), want.to_bits(), "{format}");
                    }
                }
            }
        }
    }
}

/// An odd number of 32-value blocks per row: the packed prefill path of
/// Q8_0 and Q5_0 pairs the last block with a zero block where the one-row
/// kernel pairs it with a weighted-0 copy; both must give the same bits,
/// for token counts that do and do not fill its 4x4 tiles.
#[test]
fn odd_block_counts_match_one_vec_dot_bit_for_bit() {
    let mut rng = Rng(0x5eed);
    let mut scratch = MatmulScratch::default();
    for format in [Format::Q8_0, Format::Q5_0] {
        for (rows, cols) in [(7, 32), (13, 96), (6, 608)] {
            let wq = random_matrix(&mut rng, format, rows, cols);
            let w = QMatrix::new(format, rows, cols, &wq).unwrap();
            for n_tokens in [8, 11, 33] {
                assert_matmul_is_vec_dot(&mut rng, &w, n_tokens, &mut scratch);
            }
        }
    }
}

/// No tokens, no rows or no columns: nothing to compute, no panic, and an
/// empty product (no columns) is zero.
#[test]
fn matmul_handles_empty_operands() {
    let mut s = MatmulScratch::default();
    let data = vec![0u8; 3 * 34];
    let w = QMatrix::new(Format::Q8_0, 3, 32, &data).unwrap();
    matmul(&w, &[], 0, &mut [], &mut s).unwrap();
    let w = QMatrix::new(Format::Q8_0, 0, 32, &[]).unwrap();
    matmul(&w, &[0.5; 64], 2, &mut [], &mut s).unwrap();
    for format in [Format::Q8_0, Format::Q4_K, Format::F32] {
        let w = QMatrix::new(format, 3, 0, &[]).unwrap();
        let mut out = [f32::NAN; 6];
        matmul(&w, &[], 2, &mut out, &mut s).unwrap();
        assert_eq!(out, [0.0; 6], "{format}");
    }
}
