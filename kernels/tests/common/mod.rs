//! Helpers shared by the SIMD test suites: a seeded generator and random
//! activation blocks over the full range of every field.
#![allow(dead_code)]

use hearth_kernels::quant::{BlockQ8K, BlockQ8_0};

pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.next_u64() as u8;
        }
    }
    /// A finite f16 scale around 0.01, either sign.
    pub fn f16_scale(&mut self) -> [u8; 2] {
        let v = ((self.next_u64() % 2001) as f32 - 1000.0) * 1e-5;
        half::f16::from_f32(v).to_bits().to_le_bytes()
    }
}

pub fn random_q8_0(rng: &mut Rng, n: usize) -> Vec<BlockQ8_0> {
    (0..n)
        .map(|_| {
            let mut qs = [0u8; 32];
            rng.fill(&mut qs);
            BlockQ8_0 {
                d: rng.f16_scale(),
                qs: qs.map(|b| b as i8),
            }
        })
        .collect()
}

/// `|got - want| / scale` (absolute when the scale is 0).
pub fn normalized_error(got: f32, want: f32, scale: f64) -> f64 {
    if scale == 0.0 {
        return (got as f64 - want as f64).abs();
    }
    (got as f64 - want as f64).abs() / scale
}

pub fn random_q8_k(rng: &mut Rng, n: usize) -> Vec<BlockQ8K> {
    (0..n)
        .map(|_| {
            let mut qs = [0u8; 256];
            rng.fill(&mut qs);
            let qs = qs.map(|b| b as i8);
            let mut bsums = [0u8; 32];
            for j in 0..16 {
                let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
                bsums[2 * j..2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
            }
            let d = ((rng.next_u64() % 2001) as f32 - 1000.0) * 1e-5;
            BlockQ8K {
                d: d.to_le_bytes(),
                qs,
                bsums,
            }
        })
        .collect()
}
