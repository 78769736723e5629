//! Random blocks for the kernel suites: every field over its full range
//! (the full i8 range too, -128 included, which ggml's own quantizers never
//! emit but a file may hold), and the extreme blocks of each format (every
//! quant and scale at its minimum or maximum, the scale 1.0).
#![allow(dead_code)]

use hearth_kernels::quant::{
    BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
};
pub use hearth_testkit::Rng;

/// f16 1.0, little-endian.
const ONE: [u8; 2] = [0, 0x3c];

/// A finite f16 scale around 0.01, either sign.
pub fn f16_scale(rng: &mut Rng) -> [u8; 2] {
    let v = ((rng.next_u64() % 2001) as f32 - 1000.0) * 1e-5;
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// A block type the suites can generate.
pub trait RandomBlock: Sized {
    /// Every byte random but the scales, which are finite and small.
    fn random(rng: &mut Rng) -> Self;
    /// The format's extreme blocks (see the module docs).
    fn extremes() -> Vec<Self>;
}

pub fn random_blocks<B: RandomBlock>(rng: &mut Rng, n: usize) -> Vec<B> {
    (0..n).map(|_| B::random(rng)).collect()
}

fn bytes<const N: usize>(rng: &mut Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill(&mut b);
    b
}

/// `(all minimum, all maximum)` byte patterns, as `[0; N]` and `[0xFF; N]`.
fn lows_highs<const N: usize>() -> [[u8; N]; 2] {
    [[0; N], [0xFF; N]]
}

impl RandomBlock for BlockQ8_0 {
    fn random(rng: &mut Rng) -> Self {
        BlockQ8_0 {
            d: f16_scale(rng),
            qs: bytes::<32>(rng).map(|b| b as i8),
        }
    }
    fn extremes() -> Vec<Self> {
        [-128i8, 127]
            .map(|q| BlockQ8_0 {
                d: ONE,
                qs: [q; 32],
            })
            .into()
    }
}

impl RandomBlock for BlockQ8_1 {
    fn random(rng: &mut Rng) -> Self {
        let qs = bytes::<32>(rng).map(|b| b as i8);
        BlockQ8_1 {
            d: f16_scale(rng),
            s: f16_scale(rng),
            qs,
        }
    }
    fn extremes() -> Vec<Self> {
        [-128i8, 127]
            .map(|q| BlockQ8_1 {
                d: ONE,
                s: ONE,
                qs: [q; 32],
            })
            .into()
    }
}

impl RandomBlock for BlockQ8K {
    /// The group sums are those of the quants, as `quantize_row_q8_K`
    /// writes them (the K-quant kernels rely on them).
    fn random(rng: &mut Rng) -> Self {
        let qs = bytes::<256>(rng).map(|b| b as i8);
        let d = ((rng.next_u64() % 2001) as f32 - 1000.0) * 1e-5;
        q8_k(d, qs)
    }
    fn extremes() -> Vec<Self> {
        [-128i8, 127].map(|q| q8_k(1.0, [q; 256])).into()
    }
}

fn q8_k(d: f32, qs: [i8; 256]) -> BlockQ8K {
    let mut bsums = [0u8; 32];
    for j in 0..16 {
        let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        bsums[2 * j..2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    BlockQ8K {
        d: d.to_le_bytes(),
        qs,
        bsums,
    }
}

impl RandomBlock for BlockQ4_0 {
    fn random(rng: &mut Rng) -> Self {
        BlockQ4_0 {
            d: f16_scale(rng),
            qs: bytes(rng),
        }
    }
    /// Every quant 0 (-8), every quant 15 (+7).
    fn extremes() -> Vec<Self> {
        lows_highs().map(|qs| BlockQ4_0 { d: ONE, qs }).into()
    }
}

impl RandomBlock for BlockQ4_1 {
    fn random(rng: &mut Rng) -> Self {
        BlockQ4_1 {
            d: f16_scale(rng),
            m: f16_scale(rng),
            qs: bytes(rng),
        }
    }
    fn extremes() -> Vec<Self> {
        lows_highs()
            .map(|qs| BlockQ4_1 { d: ONE, m: ONE, qs })
            .into()
    }
}

impl RandomBlock for BlockQ5_0 {
    fn random(rng: &mut Rng) -> Self {
        BlockQ5_0 {
            d: f16_scale(rng),
            qh: bytes(rng),
            qs: bytes(rng),
        }
    }
    /// Every quant 0 (-16), every quant 31 (+15).
    fn extremes() -> Vec<Self> {
        let [h0, h1] = lows_highs();
        let [s0, s1] = lows_highs();
        vec![
            BlockQ5_0 {
                d: ONE,
                qh: h0,
                qs: s0,
            },
            BlockQ5_0 {
                d: ONE,
                qh: h1,
                qs: s1,
            },
        ]
    }
}

impl RandomBlock for BlockQ5_1 {
    fn random(rng: &mut Rng) -> Self {
        BlockQ5_1 {
            d: f16_scale(rng),
            m: f16_scale(rng),
            qh: bytes(rng),
            qs: bytes(rng),
        }
    }
    fn extremes() -> Vec<Self> {
        [0u8, 0xFF]
            .map(|b| BlockQ5_1 {
                d: ONE,
                m: ONE,
                qh: [b; 4],
                qs: [b; 16],
            })
            .into()
    }
}

impl RandomBlock for BlockIQ4NL {
    fn random(rng: &mut Rng) -> Self {
        BlockIQ4NL {
            d: f16_scale(rng),
            qs: bytes(rng),
        }
    }
    /// Every index 0 (-127), every index 15 (+113), and each index once
    /// per nibble.
    fn extremes() -> Vec<Self> {
        [
            [0u8; 16],
            [0xFF; 16],
            core::array::from_fn(|j| (j as u8) | ((15 - j as u8) << 4)),
        ]
        .map(|qs| BlockIQ4NL { d: ONE, qs })
        .into()
    }
}

impl RandomBlock for BlockQ2K {
    fn random(rng: &mut Rng) -> Self {
        BlockQ2K {
            scales: bytes(rng),
            qs: bytes(rng),
            d: f16_scale(rng),
            dmin: f16_scale(rng),
        }
    }
    /// Every quant 3 with every scale and min 15, and all zero.
    fn extremes() -> Vec<Self> {
        [0xFFu8, 0]
            .map(|b| BlockQ2K {
                scales: [b; 16],
                qs: [b; 64],
                d: ONE,
                dmin: ONE,
            })
            .into()
    }
}

impl RandomBlock for BlockQ3K {
    fn random(rng: &mut Rng) -> Self {
        BlockQ3K {
            hmask: bytes(rng),
            qs: bytes(rng),
            scales: bytes(rng),
            d: f16_scale(rng),
        }
    }
    /// Every quant -4 with every scale -32 (all bits clear), and every
    /// quant +3 with every scale +31 (all bits set).
    fn extremes() -> Vec<Self> {
        [0u8, 0xFF]
            .map(|b| BlockQ3K {
                hmask: [b; 32],
                qs: [b; 64],
                scales: [b; 12],
                d: ONE,
            })
            .into()
    }
}

impl RandomBlock for BlockQ4K {
    fn random(rng: &mut Rng) -> Self {
        BlockQ4K {
            d: f16_scale(rng),
            dmin: f16_scale(rng),
            scales: bytes(rng),
            qs: bytes(rng),
        }
    }
    /// Every nibble 15 and every scale/min 63, and every nibble 0.
    fn extremes() -> Vec<Self> {
        [0xFFu8, 0]
            .map(|b| BlockQ4K {
                d: ONE,
                dmin: ONE,
                scales: [0xFF; 12],
                qs: [b; 128],
            })
            .into()
    }
}

impl RandomBlock for BlockQ5K {
    fn random(rng: &mut Rng) -> Self {
        BlockQ5K {
            d: f16_scale(rng),
            dmin: f16_scale(rng),
            scales: bytes(rng),
            qh: bytes(rng),
            qs: bytes(rng),
        }
    }
    /// Every quant 31 and every quant 0, with every scale/min 63.
    fn extremes() -> Vec<Self> {
        [0xFFu8, 0]
            .map(|b| BlockQ5K {
                d: ONE,
                dmin: ONE,
                scales: [0xFF; 12],
                qh: [b; 32],
                qs: [b; 128],
            })
            .into()
    }
}

impl RandomBlock for BlockQ6K {
    fn random(rng: &mut Rng) -> Self {
        BlockQ6K {
            ql: bytes(rng),
            qh: bytes(rng),
            scales: bytes::<16>(rng).map(|v| v as i8),
            d: f16_scale(rng),
        }
    }
    /// Every quant 0 (-32) or 63 (+31), every scale -128 or 127.
    fn extremes() -> Vec<Self> {
        [(0u8, -128i8), (0xFF, -128), (0, 127), (0xFF, 127)]
            .map(|(q, sc)| BlockQ6K {
                ql: [q; 128],
                qh: [q; 64],
                scales: [sc; 16],
                d: ONE,
            })
            .into()
    }
}

impl RandomBlock for BlockIQ4XS {
    fn random(rng: &mut Rng) -> Self {
        BlockIQ4XS {
            d: f16_scale(rng),
            scales_h: bytes(rng),
            scales_l: bytes(rng),
            qs: bytes(rng),
        }
    }
    /// Every index 0 (-127) and every index 15 (+113), the largest scales.
    fn extremes() -> Vec<Self> {
        lows_highs()
            .map(|qs| BlockIQ4XS {
                d: ONE,
                scales_h: [0xFF; 2],
                scales_l: [0xFF; 4],
                qs,
            })
            .into()
    }
}

/// `|got - want| / scale` (absolute when the scale is 0).
pub fn normalized_error(got: f32, want: f32, scale: f64) -> f64 {
    if scale == 0.0 {
        return (got as f64 - want as f64).abs();
    }
    (got as f64 - want as f64).abs() / scale
}
