//! RMSNorm: every instruction set against an f64 oracle and against the
//! scalar reference, by normalised mean squared error.

use hearth_kernels::ops::norm::{
    rms_norm_heads_inplace_with, rms_norm_heads_with, rms_norm_inplace_with, rms_norm_with,
};
use hearth_kernels::ops::Isa;
use hearth_testkit::{as_f64, nmse, Rng};
use proptest::prelude::*;

/// Largest accepted `sum((a - b)^2) / sum(b^2)`. f32 rounding of one product
/// and one scale per element puts the real error near 1e-14.
const NMSE_MAX: f64 = 1e-6;

/// Lengths that are not multiples of the 8-lane vector, and some that are.
const LENS: &[usize] = &[1, 2, 7, 8, 9, 15, 16, 33, 64, 257, 1000, 4096];

/// `x / sqrt(mean(x^2) + eps) * w`, all in f64.
fn oracle(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    let ss: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    let scale = 1.0 / (ss / x.len() as f64 + f64::from(eps)).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &wi)| f64::from(v) * scale * f64::from(wi))
        .collect()
}

#[test]
fn every_isa_matches_f64_oracle_and_scalar() {
    let mut rng = Rng(1);
    for &n in LENS {
        let x = rng.vec(n, -3.0, 3.0);
        let w = rng.vec(n, 0.5, 1.5);
        let want = oracle(&x, &w, 1e-5);
        let mut scalar = vec![0.0; n];
        rms_norm_with(Isa::Scalar, &x, &w, 1e-5, &mut scalar);
        for isa in Isa::all() {
            let mut y = vec![0.0; n];
            rms_norm_with(isa, &x, &w, 1e-5, &mut y);
            let e = nmse(&y, &want);
            assert!(e <= NMSE_MAX, "{} n={n}: nmse {e:e} vs f64", isa.name());
            let e = nmse(&y, &as_f64(&scalar));
            assert!(e <= NMSE_MAX, "{} n={n}: nmse {e:e} vs scalar", isa.name());
        }
    }
}

#[test]
fn inplace_equals_out_of_place() {
    let mut rng = Rng(2);
    for isa in Isa::all() {
        let x = rng.vec(257, -2.0, 2.0);
        let w = rng.vec(257, -1.0, 1.0);
        let mut y = vec![0.0; 257];
        rms_norm_with(isa, &x, &w, 1e-6, &mut y);
        let mut z = x.clone();
        rms_norm_inplace_with(isa, &mut z, &w, 1e-6);
        assert_eq!(y, z, "{}", isa.name());
    }
}

#[test]
fn eps_dominates_an_all_zero_row() {
    // mean(x^2) = 0: the output is 0, not NaN (1/sqrt(eps) is finite).
    for isa in Isa::all() {
        let mut x = vec![0.0f32; 33];
        rms_norm_inplace_with(isa, &mut x, &[1.0; 33], 1e-5);
        assert!(x.iter().all(|&v| v == 0.0), "{}", isa.name());
    }
}

#[test]
fn per_head_norm_matches_oracle_per_head() {
    let mut rng = Rng(3);
    for &head_dim in &[1usize, 7, 64, 128, 257] {
        for &n_heads in &[1usize, 3, 8] {
            let x = rng.vec(head_dim * n_heads, -4.0, 4.0);
            let w = rng.vec(head_dim, 0.0, 2.0);
            let want: Vec<f64> = x
                .chunks_exact(head_dim)
                .flat_map(|h| oracle(h, &w, 1e-6))
                .collect();
            for isa in Isa::all() {
                let mut y = vec![0.0; x.len()];
                rms_norm_heads_with(isa, &x, &w, 1e-6, &mut y);
                let e = nmse(&y, &want);
                assert!(
                    e <= NMSE_MAX,
                    "{} head_dim={head_dim} n_heads={n_heads}: nmse {e:e}",
                    isa.name()
                );
                let mut z = x.clone();
                rms_norm_heads_inplace_with(isa, &mut z, &w, 1e-6);
                assert_eq!(y, z);
            }
        }
    }
}

#[test]
fn per_head_norm_normalises_heads_independently() {
    // A head scaled by 1000 must not change the other heads' outputs.
    let mut rng = Rng(4);
    let head_dim = 33;
    let w = vec![1.0; head_dim];
    let x = rng.vec(3 * head_dim, -1.0, 1.0);
    let mut x_loud = x.clone();
    x_loud[head_dim..2 * head_dim]
        .iter_mut()
        .for_each(|v| *v *= 1000.0);
    for isa in Isa::all() {
        let (mut a, mut b) = (x.clone(), x_loud.clone());
        rms_norm_heads_inplace_with(isa, &mut a, &w, 0.0);
        rms_norm_heads_inplace_with(isa, &mut b, &w, 0.0);
        assert_eq!(a[..head_dim], b[..head_dim]);
        assert_eq!(a[2 * head_dim..], b[2 * head_dim..]);
    }
}

#[test]
#[should_panic(expected = "not a whole number of heads")]
fn per_head_norm_rejects_partial_head() {
    let mut x = vec![1.0; 10];
    rms_norm_heads_inplace_with(Isa::Scalar, &mut x, &[1.0; 3], 1e-6);
}

proptest! {
    /// With unit weight and negligible eps, the output has unit RMS, for any
    /// length and magnitude.
    #[test]
    fn unit_weight_output_has_unit_rms(
        x in prop::collection::vec(-1.0e3f32..1.0e3, 1..300),
    ) {
        prop_assume!(x.iter().any(|v| v.abs() > 1e-3));
        let w = vec![1.0f32; x.len()];
        for isa in Isa::all() {
            let mut y = vec![0.0; x.len()];
            rms_norm_with(isa, &x, &w, 1e-12, &mut y);
            let ms: f64 = y.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / y.len() as f64;
            prop_assert!((ms - 1.0).abs() < 1e-5, "{}: mean square {ms}", isa.name());
            prop_assert!(nmse(&y, &oracle(&x, &w, 1e-12)) <= NMSE_MAX);
        }
    }
}
