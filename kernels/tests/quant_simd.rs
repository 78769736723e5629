//! The SIMD suite: every variant of every quantized dot product against its
//! scalar reference, one generic runner and one line per format (memchr's
//! `Runner` pattern), on random blocks over the full range of every field
//! and the format's extreme blocks (`common`), for row lengths from one
//! block up, odd counts included.
//!
//! Per format and for every ISA this CPU runs (`Isa::all()`):
//! - the integer sums of each block pair equal the scalar ones exactly;
//! - a row equals the scalar row bit for bit where the f32 part follows the
//!   scalar order (`exact`), else by normalized error `|simd - scalar| /
//!   sum_b |d_b * isum_b|` at most 1e-6 (per-lane partial sums reduced at
//!   the end round differently);
//! - every tile (one by four, four by one, two by four) equals the one-row
//!   kernel of the same ISA bit for bit;
//! - the public `vec_dot_*` and the kernel table's byte-level `vec_dot`
//!   are the dispatched kernel, and the dispatcher picks AVX-512 VNNI
//!   exactly where the CPU has it.
//!
//! Then the f16/bf16 dot products and the activation quantizers.

use hearth_kernels::quant::simd::{best, dot_kernels, SimdDot};
use hearth_kernels::quant::{
    float, kernels, Block, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0,
    BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, Format, VecDot,
};
use hearth_kernels::Isa;

mod common;
use common::{normalized_error, random_blocks, RandomBlock, Rng};

/// How a format's rows are held to the scalar row.
enum Rows<W: SimdDot> {
    /// Bit for bit.
    Exact,
    /// By normalized error at most 1e-6, against the magnitude
    /// `|d_x d_y isum|` (plus the min term) of each block pair.
    Normalized(fn(&W, &W::Act, W::Isum) -> f64),
}

/// A format under test: its blocks can be generated, its activations too.
trait Case: SimdDot<Act: RandomBlock> + RandomBlock + VecDot<Self::Act> {
    const ROWS: Rows<Self>;
}

/// Row lengths in blocks: one block up to a few hundred values' worth
/// beyond the 512-bit kernels' two-block steps, odd counts included.
fn row_lens<W: Block>() -> Vec<usize> {
    if W::QK == 32 {
        (1..=40).chain([63, 64, 65, 257]).collect()
    } else {
        (1..=12).chain([31, 32, 33]).collect()
    }
}

fn tile_lens<W: Block>() -> &'static [usize] {
    if W::QK == 32 {
        &[1, 2, 3, 20, 21]
    } else {
        &[1, 2, 3, 5]
    }
}

fn check_isums<W: Case>(seed: u64) {
    let mut rng = Rng::new(seed);
    let scalar = dot_kernels::<W>(Isa::Scalar).isum;
    let mut xs: Vec<W> = random_blocks(&mut rng, if W::QK == 32 { 300 } else { 200 });
    xs.extend(W::extremes());
    let mut ys: Vec<W::Act> = random_blocks(&mut rng, 20);
    ys.extend(W::Act::extremes());
    for isa in Isa::all() {
        let k = dot_kernels::<W>(isa);
        for x in &xs {
            for y in &ys {
                assert_eq!((k.isum)(x, y), scalar(x, y), "{} {k:?}", W::FORMAT);
            }
        }
    }
}

fn check_rows<W: Case>(seed: u64) {
    let mut rng = Rng::new(seed);
    let reference = dot_kernels::<W>(Isa::Scalar);
    let fast = best::<W>();
    let table = kernels(W::FORMAT)
        .vec_dot_with(<W::Act as Block>::FORMAT)
        .unwrap();
    for n in row_lens::<W>() {
        let x: Vec<W> = random_blocks(&mut rng, n);
        let y: Vec<W::Act> = random_blocks(&mut rng, n);
        let want = (reference.row)(&x, &y);
        for isa in Isa::all() {
            let k = dot_kernels::<W>(isa);
            let got = (k.row)(&x, &y);
            match W::ROWS {
                Rows::Exact => assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{} {k:?}, {n} blocks: {got} vs {want}",
                    W::FORMAT
                ),
                Rows::Normalized(magnitude) => {
                    let scale: f64 = x
                        .iter()
                        .zip(&y)
                        .map(|(a, b)| magnitude(a, b, (reference.isum)(a, b)))
                        .sum();
                    let e = normalized_error(got, want, scale);
                    assert!(
                        e <= 1e-6,
                        "{} {k:?}, {n} blocks: {got} vs {want}, error {e}",
                        W::FORMAT
                    );
                }
            }
        }
        // The public entry point and the kernel table's byte-level
        // `vec_dot` are the dispatched kernel.
        let best = (fast.row)(&x, &y).to_bits();
        assert_eq!(W::vec_dot(&x, &y).unwrap().to_bits(), best, "{n} blocks");
        let got = table(bytemuck::cast_slice(&x), bytemuck::cast_slice(&y)).unwrap();
        assert_eq!(got.to_bits(), best, "{n} blocks");
    }
}

/// Every tile gives, for each of its outputs, exactly (bit for bit) what
/// the one-row kernel of the same ISA gives.
fn check_tiles<W: Case>(seed: u64) {
    let mut rng = Rng::new(seed);
    for &n in tile_lens::<W>() {
        let xs: Vec<Vec<W>> = (0..4).map(|_| random_blocks(&mut rng, n)).collect();
        let ys: Vec<Vec<W::Act>> = (0..4).map(|_| random_blocks(&mut rng, n)).collect();
        let x4 = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
        let y4 = [&ys[0][..], &ys[1][..], &ys[2][..], &ys[3][..]];
        for isa in Isa::all() {
            let k = dot_kernels::<W>(isa);
            let one = |x: &[W], y: &[W::Act]| (k.row)(x, y).to_bits();
            let got = (k.row_x4)(x4[0], y4).map(f32::to_bits);
            assert_eq!(got, y4.map(|y| one(x4[0], y)), "row_x4 {k:?}, {n} blocks");
            let got = (k.rows4)(x4, y4[0]).map(f32::to_bits);
            assert_eq!(got, x4.map(|x| one(x, y4[0])), "rows4 {k:?}, {n} blocks");
            let x2 = [x4[0], x4[1]];
            let got = (k.tile2x4)(x2, y4).map(|r| r.map(f32::to_bits));
            let want = x2.map(|x| y4.map(|y| one(x, y)));
            assert_eq!(got, want, "tile2x4 {k:?}, {n} blocks");
        }
    }
}

/// The dispatcher runs the best variant of this CPU: AVX-512 VNNI exactly
/// where the CPU has it (so a default build runs the fast path where it
/// lands), AVX2 where it has that, and every ISA gets a kernel set.
fn check_dispatch<W: Case>() {
    assert_eq!(dot_kernels::<W>(Isa::Scalar).variant, "scalar");
    let variants: Vec<_> = Isa::all()
        .into_iter()
        .map(|isa| dot_kernels::<W>(isa).variant)
        .collect();
    assert_eq!(best::<W>().variant, *variants.last().unwrap());
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let vnni = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vnni");
        assert_eq!(best::<W>().variant == "avx512-vnni", vnni, "{variants:?}");
        assert_eq!(variants.contains(&"avx2"), avx2, "{variants:?}");
    }
}

/// One line per format: its case, the seed of its runs.
macro_rules! suite {
    ($($name:ident: $w:ty, $seed:expr;)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn block_integer_sums_match_scalar_exactly() {
                check_isums::<$w>($seed);
            }
            #[test]
            fn rows_match_scalar() {
                check_rows::<$w>($seed + 1);
            }
            #[test]
            fn tiles_equal_one_row() {
                check_tiles::<$w>($seed + 2);
            }
            #[test]
            fn dispatch_picks_the_best() {
                check_dispatch::<$w>();
            }
        }
    )*};
}

suite! {
    q8_0: BlockQ8_0, 10;
    q4_0: BlockQ4_0, 130;
    q4_1: BlockQ4_1, 170;
    q5_0: BlockQ5_0, 30;
    q5_1: BlockQ5_1, 180;
    iq4_nl: BlockIQ4NL, 150;
    q2_k: BlockQ2K, 190;
    q3_k: BlockQ3K, 160;
    q4_k: BlockQ4K, 20;
    q5_k: BlockQ5K, 120;
    q6_k: BlockQ6K, 40;
    iq4_xs: BlockIQ4XS, 200;
}

/// `|d_x d_y isum|`, for the formats with one scale per block.
fn d_isum(dx: f32, dy: f32, isum: i32) -> f64 {
    (dx as f64 * dy as f64 * isum as f64).abs()
}

impl Case for BlockQ8_0 {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8_0, s| d_isum(x.d(), y.d(), s));
}
impl Case for BlockQ4_0 {
    const ROWS: Rows<Self> = Rows::Exact;
}
impl Case for BlockQ4_1 {
    const ROWS: Rows<Self> = Rows::Exact;
}
impl Case for BlockQ5_0 {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8_0, s| d_isum(x.d(), y.d(), s));
}
impl Case for BlockQ5_1 {
    const ROWS: Rows<Self> = Rows::Exact;
}
impl Case for BlockIQ4NL {
    const ROWS: Rows<Self> = Rows::Exact;
}
impl Case for BlockQ2K {
    const ROWS: Rows<Self> = Rows::Exact;
}
impl Case for BlockQ3K {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8K, s| d_isum(x.d(), y.d(), s));
}
impl Case for BlockQ4K {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8K, (s, m)| {
        d_isum(x.d(), y.d(), s) + d_isum(x.dmin(), y.d(), m)
    });
}
impl Case for BlockQ5K {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8K, (s, m)| {
        d_isum(x.d(), y.d(), s) + d_isum(x.dmin(), y.d(), m)
    });
}
impl Case for BlockQ6K {
    const ROWS: Rows<Self> = Rows::Normalized(|x, y: &BlockQ8K, s| d_isum(x.d(), y.d(), s));
}
impl Case for BlockIQ4XS {
    const ROWS: Rows<Self> = Rows::Exact;
}

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
fn f16_and_bf16_rows_match_scalar_by_normalized_error() {
    let mut rng = Rng::new(141);
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
        let scalar = kernel(Isa::Scalar);
        for n in (0..=70).chain([127, 128, 129, 255, 256, 257, 511, 513, 1000, 4096, 4103]) {
            let x = random_halves(&mut rng, n, bf16);
            let y = random_halves(&mut rng, n, bf16);
            let want = scalar(&x, &y);
            let scale: f64 = half_values(&x, bf16)
                .iter()
                .zip(half_values(&y, bf16))
                .map(|(a, b)| (a * b).abs())
                .sum();
            for isa in Isa::all() {
                let got = kernel(isa)(&x, &y);
                let e = normalized_error(got, want, scale);
                assert!(
                    e <= 1e-6,
                    "{format} {isa:?}, {n} values: {got} vs {want}, error {e}"
                );
            }
            let best = kernel(Isa::detect())(&x, &y);
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
                float::simd::kernel_bf16(Isa::Scalar)(x, y)
            } else {
                float::simd::kernel_f16(Isa::Scalar)(x, y)
            };
            for isa in Isa::all() {
                let got = if bf16 {
                    float::simd::kernel_bf16(isa)(x, y)
                } else {
                    float::simd::kernel_f16(isa)(x, y)
                };
                assert_eq!(got, want, "bf16 {bf16}, {isa:?}, {} values", x.len() / 2);
            }
        }
    }
}

/// The activation quantizer (`quantize_row_q8_0`, which takes the AVX-512
/// twin where the CPU has it) gives exactly the scalar reference's blocks:
/// random rows of several scales, a zero block, exact halves (the rounding
/// ties, away from zero) and values at the block maximum.
#[test]
fn q8_0_quantize_simd_matches_scalar_exactly() {
    let mut rng = Rng::new(0xa11ce);
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
            hearth_kernels::quant::q8_0::quantize_row_q8_0(&x, &mut got).unwrap();
            hearth_kernels::quant::q8_0::quantize_row_q8_0_scalar(&x, &mut want).unwrap();
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
    let mut rng = Rng::new(0xb0b);
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
