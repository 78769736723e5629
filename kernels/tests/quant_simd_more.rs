//! SIMD variants of the dot products of the formats beyond those of
//! `quant_simd.rs`, against their scalar references, in the same style:
//! random blocks over the full range of every field (extremes included), row
//! lengths from one block up, odd counts included. Integer sums per block
//! must match exactly; row results by normalized error `|simd - scalar| /
//! sum_b |d_b * isum_b|` at most 1e-6; tiles bit for bit against the one-row
//! kernel of the same ISA; the kernel table dispatches to the fast variant.

use hearth_kernels::quant::{
    float, iq4_nl, iq4_xs, kernels, q2_k, q3_k, q4_0, q4_1, q5_1, q5_k, BlockIQ4NL, BlockIQ4XS,
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_1, BlockQ8_0, BlockQ8_1, Format,
};

mod common;
use common::{normalized_error, random_q8_0, random_q8_k, Rng};

/// The dispatcher picks the best ISA of the CPU, AVX-512 VNNI exactly where
/// the CPU has it.
#[test]
fn best_isa_is_the_last_available() {
    assert_eq!(Some(&q4_0::simd::best()), q4_0::simd::available().last());
    assert_eq!(q4_0::simd::available()[0], q4_0::simd::Isa::Scalar);
    assert_eq!(Some(&q5_k::simd::best()), q5_k::simd::available().last());
    assert_eq!(q5_k::simd::available()[0], q5_k::simd::Isa::Scalar);
    assert_eq!(
        Some(&iq4_nl::simd::best()),
        iq4_nl::simd::available().last()
    );
    assert_eq!(iq4_nl::simd::available()[0], iq4_nl::simd::Isa::Scalar);
    assert_eq!(Some(&q3_k::simd::best()), q3_k::simd::available().last());
    assert_eq!(q3_k::simd::available()[0], q3_k::simd::Isa::Scalar);
    assert_eq!(Some(&q2_k::simd::best()), q2_k::simd::available().last());
    assert_eq!(q2_k::simd::available()[0], q2_k::simd::Isa::Scalar);
    assert_eq!(
        Some(&iq4_xs::simd::best()),
        iq4_xs::simd::available().last()
    );
    assert_eq!(iq4_xs::simd::available()[0], iq4_xs::simd::Isa::Scalar);
    assert_eq!(Some(&q4_1::simd::best()), q4_1::simd::available().last());
    assert_eq!(q4_1::simd::available()[0], q4_1::simd::Isa::Scalar);
    assert_eq!(Some(&q5_1::simd::best()), q5_1::simd::available().last());
    assert_eq!(q5_1::simd::available()[0], q5_1::simd::Isa::Scalar);
    #[cfg(target_arch = "x86_64")]
    {
        let has = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("f16c");
        assert_eq!(q4_0::simd::best() == q4_0::simd::Isa::Avx512Vnni, has);
        assert_eq!(q5_k::simd::best() == q5_k::simd::Isa::Avx512Vnni, has);
        assert_eq!(iq4_nl::simd::best() == iq4_nl::simd::Isa::Avx512Vnni, has);
        assert_eq!(q3_k::simd::best() == q3_k::simd::Isa::Avx512Vnni, has);
        assert_eq!(q2_k::simd::best() == q2_k::simd::Isa::Avx512Vnni, has);
        assert_eq!(q4_1::simd::best() == q4_1::simd::Isa::Avx512Vnni, has);
        assert_eq!(q5_1::simd::best() == q5_1::simd::Isa::Avx512Vnni, has);
        assert_eq!(iq4_xs::simd::best() == iq4_xs::simd::Isa::Avx512Vnni, has);
    }
}

fn random_q4_0(rng: &mut Rng, n: usize) -> Vec<BlockQ4_0> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ4_0 {
                d: rng.f16_scale(),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q4_0_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(131);
    let scalar = q4_0::simd::isum_kernel(q4_0::simd::Isa::Scalar).unwrap();
    let mut xs = random_q4_0(&mut rng, 300);
    // Extremes: every quant 0 (-8) and every quant 15 (+7).
    for qs in [[0u8; 16], [0xFF; 16]] {
        xs.push(BlockQ4_0 { d: [0, 0x3c], qs });
    }
    let mut ys = random_q8_0(&mut rng, 20);
    for q in [-128i8, 127] {
        ys.push(BlockQ8_0 {
            d: [0, 0x3c],
            qs: [q; 32],
        });
    }
    for isa in q4_0::simd::available() {
        let simd = q4_0::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q4_0_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(132);
    let isum = q4_0::simd::isum_kernel(q4_0::simd::Isa::Scalar).unwrap();
    let scalar = q4_0::simd::kernel(q4_0::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_q4_0(&mut rng, n);
        let y = random_q8_0(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in q4_0::simd::available() {
            let got = q4_0::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
            // The f32 part follows the scalar order: bit-identical.
            assert_eq!(got.to_bits(), want.to_bits(), "{isa:?}, {n} blocks");
        }
        let got = q4_0::vec_dot_q4_0_q8_0(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
        // The kernel table's byte-level `vec_dot` is the dispatched kernel.
        let table = kernels(Format::Q4_0).vec_dot_with(Format::Q8_0).unwrap();
        let best = q4_0::simd::kernel(q4_0::simd::best()).unwrap()(&x, &y);
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), best.to_bits(), "{n} blocks");
    }
}

fn random_q5_k(rng: &mut Rng, n: usize) -> Vec<BlockQ5K> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ5K {
                d: rng.f16_scale(),
                dmin: rng.f16_scale(),
                scales: [0; 12],
                qh: [0; 32],
                qs: [0; 128],
            };
            rng.fill(&mut b.scales);
            rng.fill(&mut b.qh);
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q5_k_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(121);
    let scalar = q5_k::simd::isum_kernel(q5_k::simd::Isa::Scalar).unwrap();
    let mut xs = random_q5_k(&mut rng, 200);
    let mut ys = random_q8_k(&mut rng, 20);
    // Extremes: every quant 31 (and every quant 0) with every scale/min 63,
    // against all -128 and all 127.
    for (qh, qs) in [([0xFF; 32], [0xFF; 128]), ([0; 32], [0; 128])] {
        xs.push(BlockQ5K {
            d: [0, 0x3c],
            dmin: [0, 0x3c],
            scales: [0xFF; 12],
            qh,
            qs,
        });
    }
    for q in [-128i8, 127] {
        let mut extreme = random_q8_k(&mut rng, 1).remove(0);
        extreme.qs = [q; 256];
        for j in 0..16 {
            let s = (16 * q as i32) as i16;
            extreme.bsums[2 * j..2 * j + 2].copy_from_slice(&s.to_le_bytes());
        }
        ys.push(extreme);
    }
    for isa in q5_k::simd::available() {
        let simd = q5_k::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q5_k_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(122);
    let isum = q5_k::simd::isum_kernel(q5_k::simd::Isa::Scalar).unwrap();
    let scalar = q5_k::simd::kernel(q5_k::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_q5_k(&mut rng, n);
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
        for isa in q5_k::simd::available() {
            let got = q5_k::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        let got = q5_k::vec_dot_q5_K_q8_K(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
        // The kernel table dispatches to the best variant, bit for bit.
        let table = kernels(Format::Q5_K).vec_dot_with(Format::Q8_K).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        let best = q5_k::simd::kernel(q5_k::simd::best()).unwrap()(&x, &y);
        assert_eq!(got.to_bits(), best.to_bits(), "{n} blocks");
    }
}

/// `n` finite halves, random over most of the range (normal, subnormal
/// and zero values, either sign, up to `max_exp`), as little-endian bytes.
fn random_halves(rng: &mut Rng, n: usize, bf16: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let r = rng.next_u64();
        let bits = if bf16 {
            // Exponents 0..=254 scaled down to keep products and sums finite
            // in f32: biased exponent in 0..=190 (magnitude below 2^63).
            let e = (r >> 8) % 191;
            (r & 0x807F) as u16 | ((e as u16) << 7)
        } else {
            // Any finite f16: biased exponent 0..=30.
            let e = (r >> 16) % 31;
            (r & 0x83FF) as u16 | ((e as u16) << 10)
        };
        out.extend_from_slice(&bits.to_le_bytes());
    }
    out
}

fn half_values(b: &[u8], bf16: bool) -> Vec<f64> {
    b.chunks_exact(2)
        .map(|c| {
            let h = u16::from_le_bytes([c[0], c[1]]);
            if bf16 {
                f32::from_bits((h as u32) << 16) as f64
            } else {
                half::f16::from_bits(h).to_f64()
            }
        })
        .collect()
}

#[test]
fn half_isa_list_starts_with_scalar_and_includes_the_best() {
    let isas = float::simd::available();
    assert_eq!(isas[0], float::simd::Isa::Scalar);
    assert_eq!(isas.last(), Some(&float::simd::best()));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        assert!(isas.contains(&float::simd::Isa::Avx2));
    }
}

#[test]
fn f16_and_bf16_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(141);
    for bf16 in [false, true] {
        let kernel = |isa| {
            if bf16 {
                float::simd::kernel_bf16(isa)
            } else {
                float::simd::kernel_f16(isa)
            }
        };
        let format = if bf16 { Format::BF16 } else { Format::F16 };
        let table_dot = |x: &[u8], y: &[u8]| {
            if bf16 {
                float::vec_dot_bf16_bf16(x, y)
            } else {
                float::vec_dot_f16_f16(x, y)
            }
        };
        let scalar = kernel(float::simd::Isa::Scalar).unwrap();
        for n in (0..=70).chain([127, 128, 129, 255, 256, 257, 511, 513, 1000, 4096, 4103]) {
            let x = random_halves(&mut rng, n, bf16);
            let y = random_halves(&mut rng, n, bf16);
            let want = scalar(&x, &y);
            let scale: f64 = half_values(&x, bf16)
                .iter()
                .zip(half_values(&y, bf16))
                .map(|(a, b)| (a * b).abs())
                .sum();
            for isa in float::simd::available() {
                let got = kernel(isa).unwrap()(&x, &y);
                let e = normalized_error(got, want, scale);
                assert!(
                    e <= 1e-6,
                    "{format} {isa:?}, {n} values: {got} vs {want}, error {e}"
                );
            }
            let best = kernel(float::simd::best()).unwrap()(&x, &y);
            let got = table_dot(&x, &y).unwrap();
            assert_eq!(got.to_bits(), best.to_bits(), "{format}, {n} values");
            let table = kernels(format).vec_dot_with(format).unwrap();
            assert_eq!(table(&x, &y).unwrap().to_bits(), best.to_bits());
        }
    }
}

/// Exact cases: small integers (exact in every order of summation) and the
/// extremes of f16 (65504 squared, smallest subnormal squared).
#[test]
fn f16_and_bf16_exact_cases_match_scalar() {
    for bf16 in [false, true] {
        let enc = |v: f32| -> [u8; 2] {
            if bf16 {
                float::f32_to_bf16(v).to_bits().to_le_bytes()
            } else {
                float::f32_to_f16(v).to_bits().to_le_bytes()
            }
        };
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for n in [1usize, 7, 8, 9, 33, 300] {
            let x: Vec<u8> = (0..n).flat_map(|i| enc((i % 7) as f32 - 3.0)).collect();
            let y: Vec<u8> = (0..n).flat_map(|i| enc((i % 5) as f32 - 2.0)).collect();
            cases.push((x, y));
        }
        if !bf16 {
            let max = [0xFF, 0x7B]; // 65504
            let tiny = [0x01, 0x00]; // 2^-24
            cases.push((max.repeat(40), max.repeat(40)));
            cases.push((tiny.repeat(40), tiny.repeat(40)));
        }
        for (x, y) in &cases {
            let want = if bf16 {
                float::simd::kernel_bf16(float::simd::Isa::Scalar).unwrap()(x, y)
            } else {
                float::simd::kernel_f16(float::simd::Isa::Scalar).unwrap()(x, y)
            };
            for isa in float::simd::available() {
                let got = if bf16 {
                    float::simd::kernel_bf16(isa).unwrap()(x, y)
                } else {
                    float::simd::kernel_f16(isa).unwrap()(x, y)
                };
                assert_eq!(got, want, "bf16 {bf16}, {isa:?}, {} values", x.len() / 2);
            }
        }
    }
}

fn random_iq4_nl(rng: &mut Rng, n: usize) -> Vec<BlockIQ4NL> {
    (0..n)
        .map(|_| {
            let mut b = BlockIQ4NL {
                d: rng.f16_scale(),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn iq4_nl_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(151);
    let scalar = iq4_nl::simd::isum_kernel(iq4_nl::simd::Isa::Scalar).unwrap();
    let mut xs = random_iq4_nl(&mut rng, 300);
    // Extremes: every index 0 (-127) and every index 15 (+113), and each
    // index once per nibble.
    for qs in [
        [0u8; 16],
        [0xFF; 16],
        core::array::from_fn(|j| (j as u8) | ((15 - j as u8) << 4)),
    ] {
        xs.push(BlockIQ4NL { d: [0, 0x3c], qs });
    }
    let mut ys = random_q8_0(&mut rng, 20);
    for q in [-128i8, 127] {
        ys.push(BlockQ8_0 {
            d: [0, 0x3c],
            qs: [q; 32],
        });
    }
    for isa in iq4_nl::simd::available() {
        let simd = iq4_nl::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn iq4_nl_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(152);
    let isum = iq4_nl::simd::isum_kernel(iq4_nl::simd::Isa::Scalar).unwrap();
    let scalar = iq4_nl::simd::kernel(iq4_nl::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_iq4_nl(&mut rng, n);
        let y = random_q8_0(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in iq4_nl::simd::available() {
            let got = iq4_nl::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
            // The f32 part follows the scalar order: bit-identical.
            assert_eq!(got.to_bits(), want.to_bits(), "{isa:?}, {n} blocks");
        }
        let got = iq4_nl::vec_dot_iq4_nl_q8_0(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
        let table = kernels(Format::IQ4_NL).vec_dot_with(Format::Q8_0).unwrap();
        let best = iq4_nl::simd::kernel(iq4_nl::simd::best()).unwrap()(&x, &y);
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), best.to_bits(), "{n} blocks");
    }
}

fn random_q3_k(rng: &mut Rng, n: usize) -> Vec<BlockQ3K> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ3K {
                hmask: [0; 32],
                qs: [0; 64],
                scales: [0; 12],
                d: rng.f16_scale(),
            };
            rng.fill(&mut b.hmask);
            rng.fill(&mut b.qs);
            rng.fill(&mut b.scales);
            b
        })
        .collect()
}

#[test]
fn q3_k_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(161);
    let scalar = q3_k::simd::isum_kernel(q3_k::simd::Isa::Scalar).unwrap();
    let mut xs = random_q3_k(&mut rng, 200);
    let mut ys = random_q8_k(&mut rng, 20);
    // Extremes: every quant -4 (high bits clear, low bits 0) with every
    // scale -32 (all scale bits clear), and every quant +3 with every scale
    // +31.
    xs.push(BlockQ3K {
        hmask: [0; 32],
        qs: [0; 64],
        scales: [0; 12],
        d: [0, 0x3c],
    });
    xs.push(BlockQ3K {
        hmask: [0xFF; 32],
        qs: [0xFF; 64],
        scales: [0xFF; 12],
        d: [0, 0x3c],
    });
    for q in [-128i8, 127] {
        let mut extreme = random_q8_k(&mut rng, 1).remove(0);
        extreme.qs = [q; 256];
        for j in 0..16 {
            let s = (16 * q as i32) as i16;
            extreme.bsums[2 * j..2 * j + 2].copy_from_slice(&s.to_le_bytes());
        }
        ys.push(extreme);
    }
    for isa in q3_k::simd::available() {
        let simd = q3_k::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q3_k_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng(162);
    let isum = q3_k::simd::isum_kernel(q3_k::simd::Isa::Scalar).unwrap();
    let scalar = q3_k::simd::kernel(q3_k::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_q3_k(&mut rng, n);
        let y = random_q8_k(&mut rng, n);
        let want = scalar(&x, &y);
        let scale: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a.d() as f64 * b.d() as f64 * isum(a, b) as f64).abs())
            .sum();
        for isa in q3_k::simd::available() {
            let got = q3_k::simd::kernel(isa).unwrap()(&x, &y);
            let e = normalized_error(got, want, scale);
            assert!(e <= 1e-6, "{isa:?}, {n} blocks: {got} vs {want}, error {e}");
        }
        let got = q3_k::vec_dot_q3_K_q8_K(&x, &y).unwrap();
        assert!(normalized_error(got, want, scale) <= 1e-6);
        // The kernel table dispatches to the best variant, bit for bit.
        let table = kernels(Format::Q3_K).vec_dot_with(Format::Q8_K).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        let best = q3_k::simd::kernel(q3_k::simd::best()).unwrap()(&x, &y);
        assert_eq!(got.to_bits(), best.to_bits(), "{n} blocks");
    }
}

fn random_q8_1(rng: &mut Rng, n: usize) -> Vec<BlockQ8_1> {
    (0..n)
        .map(|_| {
            let mut qs = [0u8; 32];
            rng.fill(&mut qs);
            BlockQ8_1 {
                d: rng.f16_scale(),
                s: rng.f16_scale(),
                qs: qs.map(|b| b as i8),
            }
        })
        .collect()
}

fn random_q4_1(rng: &mut Rng, n: usize) -> Vec<BlockQ4_1> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ4_1 {
                d: rng.f16_scale(),
                m: rng.f16_scale(),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q4_1_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(171);
    let scalar = q4_1::simd::isum_kernel(q4_1::simd::Isa::Scalar).unwrap();
    let mut xs = random_q4_1(&mut rng, 300);
    // Extremes: every quant 0 and every quant 15.
    for qs in [[0u8; 16], [0xFF; 16]] {
        xs.push(BlockQ4_1 {
            d: [0, 0x3c],
            m: [0, 0x3c],
            qs,
        });
    }
    let mut ys = random_q8_1(&mut rng, 20);
    for q in [-128i8, 127] {
        ys.push(BlockQ8_1 {
            d: [0, 0x3c],
            s: [0, 0x3c],
            qs: [q; 32],
        });
    }
    for isa in q4_1::simd::available() {
        let simd = q4_1::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q4_1_rows_match_scalar_bit_for_bit() {
    let mut rng = Rng(172);
    let scalar = q4_1::simd::kernel(q4_1::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_q4_1(&mut rng, n);
        let y = random_q8_1(&mut rng, n);
        let want = scalar(&x, &y);
        for isa in q4_1::simd::available() {
            let got = q4_1::simd::kernel(isa).unwrap()(&x, &y);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{isa:?}, {n} blocks: {got} vs {want}"
            );
        }
        let got = q4_1::vec_dot_q4_1_q8_1(&x, &y).unwrap();
        assert_eq!(got.to_bits(), want.to_bits());
        let table = kernels(Format::Q4_1).vec_dot_with(Format::Q8_1).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{n} blocks");
    }
}

fn random_q5_1(rng: &mut Rng, n: usize) -> Vec<BlockQ5_1> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ5_1 {
                d: rng.f16_scale(),
                m: rng.f16_scale(),
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
fn q5_1_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(181);
    let scalar = q5_1::simd::isum_kernel(q5_1::simd::Isa::Scalar).unwrap();
    let mut xs = random_q5_1(&mut rng, 300);
    // Extremes: every quant 0 and every quant 31.
    for (qh, qs) in [([0u8; 4], [0u8; 16]), ([0xFF; 4], [0xFF; 16])] {
        xs.push(BlockQ5_1 {
            d: [0, 0x3c],
            m: [0, 0x3c],
            qh,
            qs,
        });
    }
    let mut ys = random_q8_1(&mut rng, 20);
    for q in [-128i8, 127] {
        ys.push(BlockQ8_1 {
            d: [0, 0x3c],
            s: [0, 0x3c],
            qs: [q; 32],
        });
    }
    for isa in q5_1::simd::available() {
        let simd = q5_1::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q5_1_rows_match_scalar_bit_for_bit() {
    let mut rng = Rng(182);
    let scalar = q5_1::simd::kernel(q5_1::simd::Isa::Scalar).unwrap();
    for n in (1..=40).chain([63, 64, 65, 257]) {
        let x = random_q5_1(&mut rng, n);
        let y = random_q8_1(&mut rng, n);
        let want = scalar(&x, &y);
        for isa in q5_1::simd::available() {
            let got = q5_1::simd::kernel(isa).unwrap()(&x, &y);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{isa:?}, {n} blocks: {got} vs {want}"
            );
        }
        let got = q5_1::vec_dot_q5_1_q8_1(&x, &y).unwrap();
        assert_eq!(got.to_bits(), want.to_bits());
        let table = kernels(Format::Q5_1).vec_dot_with(Format::Q8_1).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{n} blocks");
    }
}

fn random_q2_k(rng: &mut Rng, n: usize) -> Vec<BlockQ2K> {
    (0..n)
        .map(|_| {
            let mut b = BlockQ2K {
                scales: [0; 16],
                qs: [0; 64],
                d: rng.f16_scale(),
                dmin: rng.f16_scale(),
            };
            rng.fill(&mut b.scales);
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn q2_k_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(191);
    let scalar = q2_k::simd::isum_kernel(q2_k::simd::Isa::Scalar).unwrap();
    let mut xs = random_q2_k(&mut rng, 200);
    let mut ys = random_q8_k(&mut rng, 20);
    // Extremes: every quant 3 with every scale and min 15, and all zero.
    for (scales, qs) in [([0xFF; 16], [0xFF; 64]), ([0; 16], [0; 64])] {
        xs.push(BlockQ2K {
            scales,
            qs,
            d: [0, 0x3c],
            dmin: [0, 0x3c],
        });
    }
    for q in [-128i8, 127] {
        let mut extreme = random_q8_k(&mut rng, 1).remove(0);
        extreme.qs = [q; 256];
        for j in 0..16 {
            let s = (16 * q as i32) as i16;
            extreme.bsums[2 * j..2 * j + 2].copy_from_slice(&s.to_le_bytes());
        }
        ys.push(extreme);
    }
    for isa in q2_k::simd::available() {
        let simd = q2_k::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn q2_k_rows_match_scalar_bit_for_bit() {
    let mut rng = Rng(192);
    let scalar = q2_k::simd::kernel(q2_k::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_q2_k(&mut rng, n);
        let y = random_q8_k(&mut rng, n);
        let want = scalar(&x, &y);
        for isa in q2_k::simd::available() {
            let got = q2_k::simd::kernel(isa).unwrap()(&x, &y);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{isa:?}, {n} blocks: {got} vs {want}"
            );
        }
        let got = q2_k::vec_dot_q2_K_q8_K(&x, &y).unwrap();
        assert_eq!(got.to_bits(), want.to_bits());
        let table = kernels(Format::Q2_K).vec_dot_with(Format::Q8_K).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{n} blocks");
    }
}

fn random_iq4_xs(rng: &mut Rng, n: usize) -> Vec<BlockIQ4XS> {
    (0..n)
        .map(|_| {
            let mut b = BlockIQ4XS {
                d: rng.f16_scale(),
                scales_h: [0; 2],
                scales_l: [0; 4],
                qs: [0; 128],
            };
            rng.fill(&mut b.scales_h);
            rng.fill(&mut b.scales_l);
            rng.fill(&mut b.qs);
            b
        })
        .collect()
}

#[test]
fn iq4_xs_block_integer_sums_match_scalar_exactly() {
    let mut rng = Rng(201);
    let scalar = iq4_xs::simd::isum_kernel(iq4_xs::simd::Isa::Scalar).unwrap();
    let mut xs = random_iq4_xs(&mut rng, 200);
    let mut ys = random_q8_k(&mut rng, 20);
    // Extremes: every index 0 (-127) and every index 15 (+113).
    for qs in [[0u8; 128], [0xFF; 128]] {
        xs.push(BlockIQ4XS {
            d: [0, 0x3c],
            scales_h: [0xFF; 2],
            scales_l: [0xFF; 4],
            qs,
        });
    }
    for q in [-128i8, 127] {
        let mut extreme = random_q8_k(&mut rng, 1).remove(0);
        extreme.qs = [q; 256];
        ys.push(extreme);
    }
    for isa in iq4_xs::simd::available() {
        let simd = iq4_xs::simd::isum_kernel(isa).unwrap();
        for x in &xs {
            for y in &ys {
                assert_eq!(simd(x, y), scalar(x, y), "{isa:?}");
            }
        }
    }
}

#[test]
fn iq4_xs_rows_match_scalar_bit_for_bit() {
    let mut rng = Rng(202);
    let scalar = iq4_xs::simd::kernel(iq4_xs::simd::Isa::Scalar).unwrap();
    for n in (1..=12).chain([31, 32, 33]) {
        let x = random_iq4_xs(&mut rng, n);
        let y = random_q8_k(&mut rng, n);
        let want = scalar(&x, &y);
        for isa in iq4_xs::simd::available() {
            let got = iq4_xs::simd::kernel(isa).unwrap()(&x, &y);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{isa:?}, {n} blocks: {got} vs {want}"
            );
        }
        let got = iq4_xs::vec_dot_iq4_xs_q8_K(&x, &y).unwrap();
        assert_eq!(got.to_bits(), want.to_bits());
        let table = kernels(Format::IQ4_XS).vec_dot_with(Format::Q8_K).unwrap();
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{n} blocks");
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

four_rows_test!(
    q4_0_four_rows_equal_one_row,
    q4_0,
    random_q4_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_weight_rows_test!(
    q4_0_four_weight_rows_equal_one_row,
    q4_0,
    random_q4_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
two_by_four_test!(
    q4_0_two_by_four_equals_one_row,
    q4_0,
    random_q4_0,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q5_k_four_rows_equal_one_row,
    q5_k,
    random_q5_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_weight_rows_test!(
    q5_k_four_weight_rows_equal_one_row,
    q5_k,
    random_q5_k,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    q5_k_two_by_four_equals_one_row,
    q5_k,
    random_q5_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_rows_test!(
    iq4_nl_four_rows_equal_one_row,
    iq4_nl,
    random_iq4_nl,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_weight_rows_test!(
    iq4_nl_four_weight_rows_equal_one_row,
    iq4_nl,
    random_iq4_nl,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
two_by_four_test!(
    iq4_nl_two_by_four_equals_one_row,
    iq4_nl,
    random_iq4_nl,
    random_q8_0,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q3_k_four_rows_equal_one_row,
    q3_k,
    random_q3_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_weight_rows_test!(
    q3_k_four_weight_rows_equal_one_row,
    q3_k,
    random_q3_k,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    q3_k_two_by_four_equals_one_row,
    q3_k,
    random_q3_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_rows_test!(
    q4_1_four_rows_equal_one_row,
    q4_1,
    random_q4_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
four_weight_rows_test!(
    q4_1_four_weight_rows_equal_one_row,
    q4_1,
    random_q4_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
two_by_four_test!(
    q4_1_two_by_four_equals_one_row,
    q4_1,
    random_q4_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q5_1_four_rows_equal_one_row,
    q5_1,
    random_q5_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
four_weight_rows_test!(
    q5_1_four_weight_rows_equal_one_row,
    q5_1,
    random_q5_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
two_by_four_test!(
    q5_1_two_by_four_equals_one_row,
    q5_1,
    random_q5_1,
    random_q8_1,
    [1, 2, 3, 20, 21]
);
four_rows_test!(
    q2_k_four_rows_equal_one_row,
    q2_k,
    random_q2_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_weight_rows_test!(
    q2_k_four_weight_rows_equal_one_row,
    q2_k,
    random_q2_k,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    q2_k_two_by_four_equals_one_row,
    q2_k,
    random_q2_k,
    random_q8_k,
    [1, 2, 3, 5]
);
four_rows_test!(
    iq4_xs_four_rows_equal_one_row,
    iq4_xs,
    random_iq4_xs,
    random_q8_k,
    [1, 2, 3, 5]
);
four_weight_rows_test!(
    iq4_xs_four_weight_rows_equal_one_row,
    iq4_xs,
    random_iq4_xs,
    random_q8_k,
    [1, 2, 3, 5]
);
two_by_four_test!(
    iq4_xs_two_by_four_equals_one_row,
    iq4_xs,
    random_iq4_xs,
    random_q8_k,
    [1, 2, 3, 5]
);
