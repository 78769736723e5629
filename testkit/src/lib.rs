//! What Hearth's test suites share, so each defines none of it again: a
//! seeded generator ([`Rng`]) and the error metrics every kernel is judged
//! by ([`nmse`], [`nerr`]), as ggml's `test-backend-ops` judges its ops.
//!
//! No dependencies, so every crate of the workspace (even `hearth-gguf`)
//! can use it as a dev-dependency without a cycle.

/// SplitMix64: small, seeded, so a failure replays exactly.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant to tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`, 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Roughly Gaussian with mean 0 and standard deviation `std` (a sum of
    /// four uniforms: no tails beyond `3.5 std`).
    pub fn normal(&mut self, std: f32) -> f32 {
        ((0..4).map(|_| self.unit()).sum::<f32>() - 2.0) * std * 3f32.sqrt()
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box-Muller, with tails), for tests whose
    /// bounds are stated for Gaussian data.
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.unit_f64().max(1e-300);
        let u2 = self.unit_f64();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// `n` values from [`normal`](Self::normal).
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(std)).collect()
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.next_u64() as u8;
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Normalized mean squared error, `sum (got - want)^2 / sum want^2`
/// (test-backend-ops' `nmse`); the plain squared error when `want` is 0.
///
/// Panics on different lengths or a non-finite `got`: both are the bug.
pub fn nmse(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g}");
        num += (f64::from(g) - w).powi(2);
        den += w * w;
    }
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Normalized error `|got - want| / |want|` in L2 norms: the square root of
/// [`nmse`], in the units a relative error is usually stated in.
pub fn nerr(got: &[f32], want: &[f32]) -> f64 {
    nmse(got, &as_f64(want)).sqrt()
}

pub fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_replays_and_spreads() {
        let a: Vec<u64> = (0..4).map(|_| Rng(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut r = Rng(7);
        let v = r.vec(10_000, -1.0, 1.0);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        let n = r.normal_vec(10_000, 2.0);
        let var = n.iter().map(|x| x * x).sum::<f32>() / n.len() as f32;
        assert!((var.sqrt() - 2.0).abs() < 0.1, "std {}", var.sqrt());
    }

    #[test]
    fn the_metrics_are_relative() {
        let want = [3.0f32, 4.0];
        assert_eq!(nerr(&want, &want), 0.0);
        // An error of norm 0.5 against a norm of 5.
        let got = [3.3f32, 4.4];
        assert!((nerr(&got, &want) - 0.1).abs() < 1e-6);
        assert!((nmse(&got, &as_f64(&want)) - 0.01).abs() < 1e-6);
        assert_eq!(nmse(&[0.5], &[0.0]), 0.25);
    }

    #[test]
    #[should_panic(expected = "non-finite")]
    fn a_nan_is_never_close() {
        nmse(&[f32::NAN], &[1.0]);
    }
}
