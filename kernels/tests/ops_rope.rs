//! RoPE: both orderings against the direct f64 formula, every instruction
//! set against the scalar reference, and the rotation's invariants.

use hearth_kernels::ops::rope::{Rope, RopeOrdering, MAX_N_ROT};
use hearth_kernels::ops::Isa;
use hearth_testkit::{as_f64, nmse, Rng};
use proptest::prelude::*;

/// Largest accepted `sum((a - b)^2) / sum(b^2)`. cos/sin are rounded once
/// from f64 and each output takes two products, so the real error is near
/// 1e-14.
const NMSE_MAX: f64 = 1e-6;

/// The definition, straight: pair `i` of a head at position `p` is rotated by
/// `p * freq_scale * base^(-2i/n_rot)`; Normal pairs `(2i, 2i+1)`, NeoX pairs
/// `(i, i + n_rot/2)`; the dims past `n_rot` are copied.
#[allow(clippy::too_many_arguments)] // the definition's parameters, spelled out
fn oracle(
    x: &[f32],
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    base: f64,
    freq_scale: f64,
    ordering: RopeOrdering,
    positions: &[i32],
) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for (t, &p) in positions.iter().enumerate() {
        for h in 0..n_heads {
            let head = &mut out[(t * n_heads + h) * head_dim..][..head_dim];
            for i in 0..n_rot / 2 {
                let theta = f64::from(p) * freq_scale * base.powf(-2.0 * i as f64 / n_rot as f64);
                let (i0, i1) = match ordering {
                    RopeOrdering::Normal => (2 * i, 2 * i + 1),
                    RopeOrdering::Neox => (i, i + n_rot / 2),
                };
                let (x0, x1) = (head[i0], head[i1]);
                head[i0] = x0 * theta.cos() - x1 * theta.sin();
                head[i1] = x0 * theta.sin() + x1 * theta.cos();
            }
        }
    }
    out
}

const ORDERINGS: [RopeOrdering; 2] = [RopeOrdering::Normal, RopeOrdering::Neox];

/// (head_dim, n_rot): full rotation, partial rotation with pass-through
/// (Phi-2, StableLM, GPT-J style), and sizes that leave SIMD tails.
const SHAPES: &[(usize, usize)] = &[
    (2, 2),
    (7, 6),
    (14, 14),
    (32, 32),
    (64, 64),
    (80, 32),
    (96, 66),
    (128, 128),
    (256, 64),
];

fn rope(x: &[f32], r: &Rope, isa: Isa, n_heads: usize, pos: &[i32]) -> Vec<f32> {
    let mut y = x.to_vec();
    r.apply_inplace_with(isa, &mut y, n_heads, pos);
    y
}

#[test]
fn matches_direct_f64_formula_for_every_isa() {
    let mut rng = Rng(31);
    let positions = [0, 1, 2, 17, 511, 4095, 32767];
    for &(head_dim, n_rot) in SHAPES {
        for ordering in ORDERINGS {
            for &(base, freq_scale) in &[(10_000.0f32, 1.0f32), (1_000_000.0, 0.25)] {
                let r = Rope::new(head_dim, n_rot, base, freq_scale, ordering).unwrap();
                let n_heads = 3;
                let x = rng.vec(positions.len() * n_heads * head_dim, -2.0, 2.0);
                let want = oracle(
                    &x,
                    n_heads,
                    head_dim,
                    n_rot,
                    f64::from(base),
                    f64::from(freq_scale),
                    ordering,
                    &positions,
                );
                let scalar = rope(&x, &r, Isa::Scalar, n_heads, &positions);
                for isa in Isa::all() {
                    let y = rope(&x, &r, isa, n_heads, &positions);
                    let what =
                        format!("{} {ordering:?} {head_dim}/{n_rot} base {base}", isa.name());
                    let e = nmse(&y, &want);
                    assert!(e <= NMSE_MAX, "{what}: nmse {e:e} vs f64");
                    let e = nmse(&y, &as_f64(&scalar));
                    assert!(e <= NMSE_MAX, "{what}: nmse {e:e} vs scalar");
                    // Dims past n_rot pass through bit for bit.
                    for (a, b) in y.chunks_exact(head_dim).zip(x.chunks_exact(head_dim)) {
                        assert_eq!(a[n_rot..], b[n_rot..], "{what}: pass-through");
                    }
                }
            }
        }
    }
}

#[test]
fn normal_and_neox_orderings_differ() {
    let mut rng = Rng(32);
    let x = rng.vec(64, -1.0, 1.0);
    let normal = Rope::new(64, 64, 10_000.0, 1.0, RopeOrdering::Normal).unwrap();
    let neox = Rope::new(64, 64, 10_000.0, 1.0, RopeOrdering::Neox).unwrap();
    for isa in Isa::all() {
        let a = rope(&x, &normal, isa, 1, &[5]);
        let b = rope(&x, &neox, isa, 1, &[5]);
        let e = nmse(&a, &as_f64(&b));
        assert!(e > 1e-2, "{}: orderings agree (nmse {e:e})", isa.name());
    }
}

#[test]
fn each_ordering_rotates_its_own_pairs() {
    // A unit vector in dim 0 at position 1 with n_rot = 4: pair 0 has
    // theta = 1, so dim 0 becomes cos 1 and its partner sin 1. The partner
    // is dim 1 for Normal and dim 2 (= n_rot/2) for NeoX.
    let (c, s) = (1.0f32.cos(), 1.0f32.sin());
    for isa in Isa::all() {
        for (ordering, partner) in [(RopeOrdering::Normal, 1), (RopeOrdering::Neox, 2)] {
            let r = Rope::new(4, 4, 10_000.0, 1.0, ordering).unwrap();
            let y = rope(&[1.0, 0.0, 0.0, 0.0], &r, isa, 1, &[1]);
            let mut want = [0.0f32; 4];
            want[0] = c;
            want[partner] = s;
            for (g, w) in y.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-6,
                    "{} {ordering:?}: {y:?} vs {want:?}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn position_zero_is_identity() {
    let mut rng = Rng(33);
    let x = rng.vec(2 * 4 * 128, -3.0, 3.0);
    for ordering in ORDERINGS {
        let r = Rope::new(128, 128, 10_000.0, 1.0, ordering).unwrap();
        for isa in Isa::all() {
            assert_eq!(rope(&x, &r, isa, 4, &[0, 0]), x, "{}", isa.name());
        }
    }
}

#[test]
fn freq_scale_multiplies_positions() {
    // Linear interpolation: scale 0.25 at position 4p is position p unscaled.
    // theta is formed in f64 where 4p * 0.25 = p exactly, so bits agree.
    let mut rng = Rng(34);
    let x = rng.vec(3 * 96, -1.0, 1.0);
    for ordering in ORDERINGS {
        let plain = Rope::new(96, 64, 10_000.0, 1.0, ordering).unwrap();
        let scaled = Rope::new(96, 64, 10_000.0, 0.25, ordering).unwrap();
        for isa in Isa::all() {
            assert_eq!(
                rope(&x, &plain, isa, 1, &[3, 100, 9000]),
                rope(&x, &scaled, isa, 1, &[12, 400, 36000]),
                "{} {ordering:?}",
                isa.name()
            );
        }
    }
}

#[test]
fn freq_factors_divide_frequencies() {
    // Factor 2 on every pair halves every angle: position 2p with factors
    // equals position p without.
    let mut rng = Rng(35);
    let x = rng.vec(64, -1.0, 1.0);
    let plain = Rope::new(64, 64, 500_000.0, 1.0, RopeOrdering::Normal).unwrap();
    let halved = plain.clone().with_freq_factors(&[2.0; 32]).unwrap();
    for isa in Isa::all() {
        assert_eq!(
            rope(&x, &plain, isa, 1, &[77]),
            rope(&x, &halved, isa, 1, &[154])
        );
    }
    assert!(plain.clone().with_freq_factors(&[2.0; 31]).is_err());
    assert!(plain.with_freq_factors(&[0.0; 32]).is_err());
}

#[test]
fn rejects_bad_configurations() {
    assert!(Rope::new(64, 63, 10_000.0, 1.0, RopeOrdering::Normal).is_err());
    assert!(Rope::new(64, 0, 10_000.0, 1.0, RopeOrdering::Normal).is_err());
    assert!(Rope::new(64, 66, 10_000.0, 1.0, RopeOrdering::Neox).is_err());
    assert!(Rope::new(64, 64, 0.0, 1.0, RopeOrdering::Neox).is_err());
    assert!(Rope::new(64, 64, 10_000.0, f32::NAN, RopeOrdering::Neox).is_err());
    assert!(Rope::new(4096, MAX_N_ROT + 2, 10_000.0, 1.0, RopeOrdering::Neox).is_err());
    assert!(Rope::new(4096, MAX_N_ROT, 10_000.0, 1.0, RopeOrdering::Neox).is_ok());
}

#[test]
#[should_panic(expected = "rope:")]
fn rejects_wrong_row_length() {
    let r = Rope::new(8, 8, 10_000.0, 1.0, RopeOrdering::Normal).unwrap();
    let mut x = vec![0.0; 15];
    r.apply_inplace_with(Isa::Scalar, &mut x, 2, &[0]);
}

proptest! {
    /// A rotation preserves the norm of every rotated pair.
    #[test]
    fn rotation_preserves_each_pair_norm(
        pos in -40_000i32..40_000,
        neox in any::<bool>(),
        x in prop::collection::vec(-10.0f32..10.0, 96),
    ) {
        let ordering = if neox { RopeOrdering::Neox } else { RopeOrdering::Normal };
        let (head_dim, n_rot) = (96, 80);
        let r = Rope::new(head_dim, n_rot, 10_000.0, 1.0, ordering).unwrap();
        for isa in Isa::all() {
            let y = rope(&x, &r, isa, 1, &[pos]);
            for i in 0..n_rot / 2 {
                let (i0, i1) = match ordering {
                    RopeOrdering::Normal => (2 * i, 2 * i + 1),
                    RopeOrdering::Neox => (i, i + n_rot / 2),
                };
                let before = f64::from(x[i0]).hypot(f64::from(x[i1]));
                let after = f64::from(y[i0]).hypot(f64::from(y[i1]));
                prop_assert!(
                    (before - after).abs() <= 1e-5 * before.max(1e-3),
                    "{} pair {i}: |x| {before} -> {after}", isa.name()
                );
            }
        }
    }
}
