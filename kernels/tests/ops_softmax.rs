//! Softmax: every instruction set against an f64 oracle and against the
//! scalar reference, by normalised mean squared error; masking semantics.

use hearth_kernels::ops::softmax::{softmax_inplace_with, softmax_with, Mask};
use hearth_kernels::ops::Isa;
use hearth_testkit::{as_f64, nmse, Rng};
use proptest::prelude::*;

/// Largest accepted `sum((a - b)^2) / sum(b^2)`. One exp (about 2 ulp) and
/// one scale per element put the real error near 1e-13.
const NMSE_MAX: f64 = 1e-6;

/// Lengths that are not multiples of the 8-lane vector, and some that are.
const LENS: &[usize] = &[1, 2, 7, 8, 9, 15, 16, 33, 64, 257, 1000, 4099];

/// `softmax(x * scale + mask)` in f64; the first `n` entries only for a
/// causal mask; all zeros when everything is masked.
fn oracle(x: &[f32], scale: f32, mask: Mask<'_>) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|&a| f64::from(a) * f64::from(scale)).collect();
    let live = match mask {
        Mask::None => v.len(),
        Mask::Add(m) => {
            v.iter_mut().zip(m).for_each(|(a, &b)| *a += f64::from(b));
            v.len()
        }
        Mask::Causal(n) => n,
    };
    let max = v[..live].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out = vec![0.0; v.len()];
    if max == f64::NEG_INFINITY {
        return out;
    }
    let sum: f64 = v[..live].iter().map(|a| (a - max).exp()).sum();
    for (o, a) in out.iter_mut().zip(&v[..live]) {
        *o = (a - max).exp() / sum;
    }
    out
}

fn check(x: &[f32], scale: f32, mask: Mask<'_>, what: &str) {
    let want = oracle(x, scale, mask);
    let mut scalar = vec![0.0; x.len()];
    softmax_with(Isa::Scalar, x, scale, mask, &mut scalar);
    for isa in Isa::all() {
        let mut y = vec![0.0; x.len()];
        softmax_with(isa, x, scale, mask, &mut y);
        let e = nmse(&y, &want);
        assert!(
            e <= NMSE_MAX,
            "{} {what} n={}: nmse {e:e} vs f64",
            isa.name(),
            x.len()
        );
        let e = nmse(&y, &as_f64(&scalar));
        assert!(
            e <= NMSE_MAX,
            "{} {what} n={}: nmse {e:e} vs scalar",
            isa.name(),
            x.len()
        );
        let mut z = x.to_vec();
        softmax_inplace_with(isa, &mut z, scale, mask);
        assert_eq!(y, z, "{} {what}: in place differs", isa.name());
    }
}

#[test]
fn unmasked_rows_match_oracle() {
    let mut rng = Rng(11);
    for &n in LENS {
        for &(lo, hi, scale) in &[(-1.0, 1.0, 1.0), (-30.0, 30.0, 1.0), (-8.0, 8.0, 0.125)] {
            let x = rng.vec(n, lo, hi);
            check(&x, scale, Mask::None, "none");
        }
    }
}

#[test]
fn additive_mask_with_minus_infinity_matches_oracle() {
    let mut rng = Rng(12);
    for &n in LENS {
        let x = rng.vec(n, -5.0, 5.0);
        let mask: Vec<f32> = (0..n)
            .map(|i| match i % 3 {
                0 => f32::NEG_INFINITY,
                1 => rng.uniform(-2.0, 0.0),
                _ => 0.0,
            })
            .collect();
        check(&x, 0.5, Mask::Add(&mask), "add");
    }
}

#[test]
fn causal_mask_zeroes_the_tail() {
    let mut rng = Rng(13);
    for &n in LENS {
        let x = rng.vec(n, -5.0, 5.0);
        for live in [0, 1, n / 2, n.saturating_sub(1), n] {
            check(&x, 1.0, Mask::Causal(live), "causal");
            for isa in Isa::all() {
                let mut y = x.clone();
                softmax_inplace_with(isa, &mut y, 1.0, Mask::Causal(live));
                assert!(y[live..].iter().all(|&v| v == 0.0));
            }
        }
    }
}

#[test]
fn fully_masked_row_is_zero_not_nan() {
    for isa in Isa::all() {
        let mut x = vec![1.0f32; 33];
        softmax_inplace_with(isa, &mut x, 1.0, Mask::Add(&[f32::NEG_INFINITY; 33]));
        assert!(x.iter().all(|&v| v == 0.0), "{}", isa.name());
    }
}

#[test]
fn huge_logits_do_not_overflow() {
    // Without the max subtraction e^1e4 is inf and the row turns to NaN.
    let mut x: Vec<f32> = (0..100).map(|i| 1.0e4 + i as f32).collect();
    x[17] = -1.0e4;
    check(&x, 1.0, Mask::None, "huge");
}

proptest! {
    /// The output is a probability vector and matches the oracle.
    #[test]
    fn output_is_a_distribution(
        x in prop::collection::vec(-80.0f32..80.0, 1..300),
        scale in 0.01f32..2.0,
    ) {
        let want = oracle(&x, scale, Mask::None);
        for isa in Isa::all() {
            let mut y = vec![0.0; x.len()];
            softmax_with(isa, &x, scale, Mask::None, &mut y);
            let sum: f64 = y.iter().map(|&v| f64::from(v)).sum();
            prop_assert!((sum - 1.0).abs() < 1e-5, "{}: sum {sum}", isa.name());
            prop_assert!(y.iter().all(|&v| (0.0..=1.0).contains(&v)));
            prop_assert!(nmse(&y, &want) <= NMSE_MAX);
        }
    }
}
