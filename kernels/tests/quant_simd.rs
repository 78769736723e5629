//! Each SIMD variant of a dot product against the scalar reference, on
//! random blocks of every kind (the full i8 range, -128 included, which
//! ggml's own quantizers never emit but a file may hold), for row lengths
//! from one block up, odd counts included.
//!
//! The integer sum of each block must match exactly. The row result is f32
//! arithmetic in a different order (per-lane partial sums reduced at the
//! end), so it is compared by normalized error: `|simd - scalar| /
//! sum_b |d_b * isum_b|` must be at most 1e-6.

use hearth_kernels::quant::{q4_k, q5_0, q6_k, q8_0, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0};

mod common;
use common::{normalized_error, random_q8_0, random_q8_k, Rng};

#[test]
fn q8_0_isa_list_starts_with_scalar_and_includes_the_best() {
    let isas = q8_0::simd::available();
    assert_eq!(isas[0], q8_0::simd::Isa::Scalar);
    assert_eq!(isas.last(), Some(&q8_0::simd::best()));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        assert!(isas.contains(&q8_0::simd::Isa::Avx2));
    }
}

#[test]
fn q8_0_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(11);
    let scalar = q8_0::simd::isum_kernel(q8_0::simd::Isa::Scalar).unwrap();
    // Extremes first: all -128 times all -128 is the largest sum.
    let mut blocks = vec![
        BlockQ8_0 {
            d: [0, 0x3c],
            qs: [-128; 32],
        },
        BlockQ8_0 {
            d: [0, 0x3c],
            qs: [127; 32],
        },
    ];
    blocks.extend(random_q8_0(&mut rng, 500));
    for isa in q8_0::simd::available() {
        let simd = q8_0::simd::isum_kernel(isa).unwrap();
        for x in &blocks {
            for y in blocks.iter().take(20) {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q8_0_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(12);
    let isum = q8_0::simd::isum_kernel(q8_0::simd::Isa::Scalar).unwrap();
    let scalar = q8_0::simd::kernel(q8_0::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_q8_0(&mut rng, n);
        let y = random_q8_0(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in q8_0::simd::available() {
            let got = q8_0::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        // The public entry point dispatches to one of them.
        let got = q8_0::vec_dot_q8_0_q8_0(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
    }
}

fn random_q4_k(rng: &mut Rng, n: usize) -> Vec<BlockQ4K> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ4K {
                d: rng.f16_scale(),
                dmin: rng.f16_scale(),
                scales: [0; 12],
                qs: [0; 128],
            };
            rng.fill(&mut b.scales);
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q4_k_isa_list_starts_with_scalar_and_includes_the_best() {
    let isas = q4_k::simd::available();
    assert_eq!(isas[0], q4_k::simd::Isa::Scalar);
    assert_eq!(isas.last(), Some(&q4_k::simd::best()));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        assert!(isas.contains(&q4_k::simd::Isa::Avx2));
    }
}

#[test]
fn q4_k_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(21);
    let scalar = q4_k::simd::isum_kernel(q4_k::simd::Isa::Scalar).unwrap();
    let mut xs = random_q4_k(&mut rng, 200);
    let mut ys = random_q8_k(&mut rng, 20);
    // Extremes: every nibble 15 and every scale/min 63 against all -128.
    xs.push(BlockQ4K {
        d: [0, 0x3c],
        dmin: [0, 0x3c],
        scales: [0xFF; 12],
        qs: [0xFF; 128],
    });
    let mut extreme = random_q8_k(&mut rng, 1).remove(0);
    extreme.qs = [-128; 256];
    for j in 0..16 {
        extreme.bsums[2 * j..2 * j + 2].copy_from_slice(&(-2048i16).to_le_bytes());
    }
    ys.push(extreme);
    for isa in q4_k::simd::available() {
        let simd = q4_k::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q4_k_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(22);
    let isum = q4_k::simd::isum_kernel(q4_k::simd::Isa::Scalar).unwrap();
    let scalar = q4_k::simd::kernel(q4_k::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_q4_k(&mut rng, n);
        let y = random_q8_k(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| {
                let (s, m) = isum(a, b);
                (a.d() as f64 * b.d() as f64 * s as f64).abs()
                    + (a.dmin() as f64 * b.d() as f64 * m as f64).abs()
            })
            .sum();
        for isa in q4_k::simd::available() {
            let got = q4_k::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        let got = q4_k::vec_dot_q4_K_q8_K(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
    }
}

/// The dispatcher picks the AVX-512 VNNI variant exactly when the CPU has
/// it (so a default build runs the fast path where it lands).
#[test]
fn avx512_vnni_is_used_where_the_cpu_has_it() {
    #[cfg(target_arch = "x86_64")]
    {
        let has = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        assert_eq!(q8_0::simd::best() == q8_0::simd::Isa::Avx512Vnni, has);
        assert_eq!(q4_k::simd::best() == q4_k::simd::Isa::Avx512Vnni, has);
        assert_eq!(q5_0::simd::best() == q5_0::simd::Isa::Avx512Vnni, has);
        assert_eq!(q6_k::simd::best() == q6_k::simd::Isa::Avx512Vnni, has);
    }
}

fn random_q5_0(rng: &mut Rng, n: usize) -> Vec<BlockQ5_0> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ5_0 {
                d: rng.f16_scale(),
                qh: [0; 4],
                qs: [0; 16],
            };
            rng.fill(&mut b.qh);
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q5_0_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(31);
    let scalar = q5_0::simd::isum_kernel(q5_0::simd::Isa::Scalar).unwrap();
    let mut xs = random_q5_0(&mut rng, 300);
    // Extremes: every quant 0 (-16) and every quant 31 (+15).
    for (qh, qs) in [([0u8; 4], [0u8; 16]), ([0xFF; 4], [0xFF; 16])] {
        xs.push(BlockQ5_0 {
            d: [0, 0x3c],
            qh,
            qs,
        });
    }
    let mut ys = random_q8_0(&mut rng, 20);
    for q in [-128i8, 127] {
        ys.push(BlockQ8_0 {
            d: [0, 0x3c],
            qs: [q; 32],
        });
    }
    for isa in q5_0::simd::available() {
        let simd = q5_0::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q5_0_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(32);
    let isum = q5_0::simd::isum_kernel(q5_0::simd::Isa::Scalar).unwrap();
    let scalar = q5_0::simd::kernel(q5_0::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_q5_0(&mut rng, n);
        let y = random_q8_0(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in q5_0::simd::available() {
            let got = q5_0::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        let got = q5_0::vec_dot_q5_0_q8_0(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
    }
}

fn random_q6_k(rng: &mut Rng, n: usize) -> Vec<BlockQ6K> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ6K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: rng.f16_scale(),
            };
            rng.fill(&mut b.ql);
            rng.fill(&mut b.qh);
            let mut sc = [0u8; 16];
            rng.fill(&mut sc);
            b.scales = sc.map(|v| v as i8);
            b
        })
        .collect()
}

#[test]
fn q6_k_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(41);
    let scalar = q6_k::simd::isum_kernel(q6_k::simd::Isa::Scalar).unwrap();
    let mut xs = random_q6_k(&mut rng, 200);
    // Extremes: every quant 0 (-32) or 63 (+31), every scale -128 or 127.
    for (q, sc) in [(0u8, -128i8), (0xFF, -128), (0, 127), (0xFF, 127)] {
        xs.push(BlockQ6K {
            ql: [q; 128],
            qh: [q; 64],
            scales: [sc; 16],
            d: [0, 0x3c],
        });
    }
    let mut ys = random_q8_k(&mut rng, 20);
    for q in [-128i8, 127] {
        let mut y = random_q8_k(&mut rng, 1).remove(0);
        y.qs = [q; 256];
        for j in 0..16 {
            y.bsums[2 * j..2 * j + 2].copy_from_slice(&(16 * q as i16).to_le_bytes());
        }
        ys.push(y);
    }
    for isa in q6_k::simd::available() {
        let simd = q6_k::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q6_k_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(42);
    let isum = q6_k::simd::isum_kernel(q6_k::simd::Isa::Scalar).unwrap();
    let scalar = q6_k::simd::kernel(q6_k::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_q6_k(&mut rng, n);
        let y = random_q8_k(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in q6_k::simd::available() {
            let got = q6_k::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        let got = q6_k::vec_dot_q6_K_q8_K(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
    }
}

/// Every four-row kernel gives, for each of its four activation rows,
/// exactly (bit for bit) what the one-row kernel of the same ISA gives.
macro_rules! four_rows_test {
    ($name:ident, $module:ident, $wgen:ident, $agen:ident, $lens:expr) => {
        #[test]
        fn $name() {
            let mut rng = Rng(51);
            for n in $lens {
                let x = $wgen(&mut rng, n);
                let ys: Vec<_> = (0..4).map(|_| $agen(&mut rng, n)).collect();
                let ys = [&ys[0][..], &ys[1][..], &ys[2][..], &ys[3][..]];
                for isa in $module::simd::available() {
                    let one = $module::simd::kernel(isa).unwrap();
                    let four = $module::simd::kernel4(isa).unwrap();
                    let want = ys.map(|y| one(&x, y).to_bits());
                    let got = four(&x, ys).map(f32::to_bits);
                    assert_eq!(got, want, "{isa:?}, {n} blocks");
                }
            }
        }
    };
}

four_rows_test!(
    q8_0_four_rows_equal_one_row,
    q8_0,
    random_q8_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q5_0_four_rows_equal_one_row,
    q5_0,
    random_q5_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q4_k_four_rows_equal_one_row,
    q4_k,
    random_q4_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_rows_test!(
    q6_k_four_rows_equal_one_row,
    q6_k,
    random_q6_k,
    random_q8_k,
    [1, 2, 3, 5]
);

/// Every four-weight-row kernel gives, for each of its four weight rows,
/// exactly (bit for bit) what the one-row kernel of the same ISA gives.
macro_rules! four_weight_rows_test {
    ($name:ident, $module:ident, $wgen:ident, $agen:ident, $lens:expr) => {
        #[test]
        fn $name() {
            let mut rng = Rng(61);
            for n in $lens {
                let xs: Vec<_> = (0..4).map(|_| $wgen(&mut rng, n)).collect();
                let xs = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
                let y = $agen(&mut rng, n);
                for isa in $module::simd::available() {
                    let one = $module::simd::kernel(isa).unwrap();
                    let four = $module::simd::kernel_rows4(isa).unwrap();
                    let want = xs.map(|x| one(x, &y).to_bits());
                    let got = four(xs, &y).map(f32::to_bits);
                    assert_eq!(got, want, "{isa:?}, {n} blocks");
                }
            }
        }
    };
}

four_weight_rows_test!(
    q8_0_four_weight_rows_equal_one_row,
    q8_0,
    random_q8_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_weight_rows_test!(
    q5_0_four_weight_rows_equal_one_row,
    q5_0,
    random_q5_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);

/// Every two-by-four kernel gives, for each of its eight results, exactly
/// (bit for bit) what the one-row kernel of the same ISA gives.
macro_rules! two_by_four_test {
    ($name:ident, $module:ident, $wgen:ident, $agen:ident, $lens:expr) => {
        #[test]
        fn $name() {
            let mut rng = Rng(71);
            for n in $lens {
                let xs: Vec<_> = (0..2).map(|_| $wgen(&mut rng, n)).collect();
                let xs = [&xs[0][..], &xs[1][..]];
                let ys: Vec<_> = (0..4).map(|_| $agen(&mut rng, n)).collect();
                let ys = [&ys[0][..], &ys[1][..], &ys[2][..], &ys[3][..]];
                for isa in $module::simd::available() {
                    let one = $module::simd::kernel(isa).unwrap();
                    let tile = $module::simd::kernel2x4(isa).unwrap();
                    let want = xs.map(|x| ys.map(|y| one(x, y).to_bits()));
                    let got = tile(xs, ys).map(|r| r.map(f32::to_bits));
                    assert_eq!(got, want, "{isa:?}, {n} blocks");
                }
            }
        }
    };
}

two_by_four_test!(
    q8_0_two_by_four_equals_one_row,
    q8_0,
    random_q8_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
two_by_four_test!(
    q5_0_two_by_four_equals_one_row,
    q5_0,
    random_q5_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);

four_weight_rows_test!(
    q4_k_four_weight_rows_equal_one_row,
    q4_k,
    random_q4_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_weight_rows_test!(
    q6_k_four_weight_rows_equal_one_row,
    q6_k,
    random_q6_k,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    q4_k_two_by_four_equals_one_row,
    q4_k,
    random_q4_k,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    q6_k_two_by_four_equals_one_row,
    q6_k,
    random_q6_k,
    random_q8_k,
    [1, 2, 3, 5]
);

/// The activation quantizer (`quantize_row_q8_0`, which takes the AVX-512
/// twin where the CPU has it) gives exactly the scalar reference's blocks:
/// random rows of several scales, a zero block, exact halves (the rounding
/// ties, away from zero) and values at the block maximum.
#[test]
fn q8_0_quantize_simd_matches_scalar_exactly() {
    let mut rng = Rng(0xa11ce);
    for n_blocks in [1usize, 2, 3, 20, 64] {
        for scale in [1e-3f32, 1.0, 37.0] {
            let mut x: Vec<f32> = (0..32 * n_blocks)
                .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
                .collect();
            // A zero block, and a block of exact ties: amax 127 gives
            // d = 1, so each `k + 0.5` is a tie.
            x[..32].fill(0.0);
            if n_blocks > 1 {
                for (i, v) in x[32..64].iter_mut().enumerate() {
                    *v = if i == 0 {
                        127.0
                    } else {
                        (i as f32 - 16.0) + 0.5
                    };
                }
            }
            let mut got = vec![
                BlockQ8_0 {
                    d: [0; 2],
                    qs: [0; 32]
                };
                n_blocks
            ];
            let mut want = got.clone();
            q8_0::quantize_row_q8_0(&x, &mut got).unwrap();
            q8_0::quantize_row_q8_0_scalar(&x, &mut want).unwrap();
            assert_eq!(got, want, "{n_blocks} blocks, scale {scale}");
        }
    }
}

/// The K-quant activation quantizer (`quantize_row_q8_K`, AVX-512 where
/// the CPU has it) gives exactly the scalar reference's blocks: random
/// rows, a zero block, and a block whose largest magnitude appears twice
/// with both signs (the first one sets the scale's sign).
#[test]
fn q8_k_quantize_simd_matches_scalar_exactly() {
    use hearth_kernels::quant::{q8_k, BlockQ8K};
    let mut rng = Rng(0xb0b);
    for n_blocks in [1usize, 2, 3, 5] {
        for scale in [1e-3f32, 1.0, 37.0] {
            let mut x: Vec<f32> = (0..256 * n_blocks)
                .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
                .collect();
            if n_blocks > 1 {
                x[..256].fill(0.0);
                x[300] = -2.0 * scale;
                x[400] = 2.0 * scale;
            }
            let zero = BlockQ8K {
                d: [0; 4],
                qs: [0; 256],
                bsums: [0; 32],
            };
            let mut got = vec![zero; n_blocks];
            let mut want = got.clone();
            q8_k::quantize_row_q8_K(&x, &mut got).unwrap();
            q8_k::quantize_row_q8_K_scalar(&x, &mut want).unwrap();
            assert_eq!(got, want, "{n_blocks} blocks, scale {scale}");
        }
    }
}
