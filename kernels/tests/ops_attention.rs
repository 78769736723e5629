//! Attention: the online-softmax kernels (serial, chunked, parallel) on every
//! instruction set against a naive reference that materialises every score
//! in f64, then softmax, then the weighted sum.

use half::f16;
use hearth_kernels::ops::attention::{
    attention, attention_chunked_with, attention_par, attention_with, AttentionParams,
    AttentionScratch, KvCache, KvElem,
};
use hearth_kernels::ops::Isa;
use hearth_testkit::{nmse, Rng};
use proptest::prelude::*;

/// Largest accepted `sum((a - b)^2) / sum(b^2)` against the f64 reference.
/// f32 dot products over head_dim and the running rescale put the real
/// error near 1e-12.
const NMSE_MAX: f64 = 1e-6;

/// The definition: for each query head, every visible key's score in f64,
/// soft-capped, a plain max-subtracted softmax, the weighted sum of values.
fn naive<T: KvElem>(
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
) -> Vec<f64> {
    let hd = p.head_dim;
    let group = p.n_head / p.n_head_kv;
    let mut out = vec![0.0f64; q.len()];
    for (t, &qp) in q_pos.iter().enumerate() {
        for h in 0..p.n_head {
            let qh = &q[(t * p.n_head + h) * hd..][..hd];
            let kvh = h / group;
            let mut scores = Vec::new();
            for (j, &kp) in kv.pos.iter().enumerate() {
                let visible = (!p.causal || kp <= qp)
                    && p.window
                        .is_none_or(|w| (i64::from(qp) - i64::from(kp)).unsigned_abs() < w as u64);
                if !visible {
                    continue;
                }
                let k = &kv.k[(j * p.n_head_kv + kvh) * hd..][..hd];
                let mut s: f64 = qh
                    .iter()
                    .zip(k)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b.to_f32()))
                    .sum::<f64>()
                    * f64::from(p.scale);
                if let Some(cap) = p.softcap {
                    let cap = f64::from(cap);
                    s = cap * (s / cap).tanh();
                }
                scores.push((j, s));
            }
            if scores.is_empty() {
                continue;
            }
            let m = scores
                .iter()
                .map(|&(_, s)| s)
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|&(_, s)| (s - m).exp()).sum();
            let o = &mut out[(t * p.n_head + h) * hd..][..hd];
            for &(j, s) in &scores {
                let w = (s - m).exp() / sum;
                let v = &kv.v[(j * p.n_head_kv + kvh) * hd..][..hd];
                for (oi, &vi) in o.iter_mut().zip(v) {
                    *oi += w * f64::from(vi.to_f32());
                }
            }
        }
    }
    out
}

/// A random problem: `n_tokens` queries at the last positions of an
/// `n_kv`-entry cache (prefill of a chunk, or decode when `n_tokens` is 1).
struct Problem<T> {
    p: AttentionParams,
    q: Vec<f32>,
    q_pos: Vec<i32>,
    k: Vec<T>,
    v: Vec<T>,
    kv_pos: Vec<i32>,
}

impl<T: KvElem> Problem<T> {
    fn new(
        rng: &mut Rng,
        p: AttentionParams,
        n_tokens: usize,
        n_kv: usize,
        from_f32: fn(f32) -> T,
        q_amp: f32,
    ) -> Self {
        let hd = p.head_dim;
        let kv_len = n_kv * p.n_head_kv * hd;
        Problem {
            q: rng.vec(n_tokens * p.n_head * hd, -q_amp, q_amp),
            q_pos: (0..n_tokens)
                .map(|t| (n_kv - n_tokens + t) as i32)
                .collect(),
            k: rng
                .vec(kv_len, -1.0, 1.0)
                .into_iter()
                .map(from_f32)
                .collect(),
            v: rng
                .vec(kv_len, -1.0, 1.0)
                .into_iter()
                .map(from_f32)
                .collect(),
            kv_pos: (0..n_kv as i32).collect(),
            p,
        }
    }

    fn kv(&self) -> KvCache<'_, T> {
        KvCache {
            k: &self.k,
            v: &self.v,
            pos: &self.kv_pos,
        }
    }

    /// Every kernel on every instruction set against the naive reference.
    fn check_all(&self, what: &str) {
        let want = naive(&self.p, &self.q, &self.q_pos, &self.kv());
        let n_kv = self.kv_pos.len();
        let mut scratch = AttentionScratch::new();
        for isa in Isa::all() {
            let mut out = vec![f32::NAN; self.q.len()];
            attention_with(isa, &self.p, &self.q, &self.q_pos, &self.kv(), &mut out).unwrap();
            let e = nmse(&out, &want);
            assert!(e <= NMSE_MAX, "{what} {} serial: nmse {e:e}", isa.name());
            for chunk in [1, 7, 64, n_kv.max(1)] {
                let mut out = vec![f32::NAN; self.q.len()];
                attention_chunked_with(
                    isa,
                    &self.p,
                    &self.q,
                    &self.q_pos,
                    &self.kv(),
                    &mut out,
                    chunk,
                    &mut scratch,
                )
                .unwrap();
                let e = nmse(&out, &want);
                assert!(
                    e <= NMSE_MAX,
                    "{what} {} chunk {chunk}: nmse {e:e}",
                    isa.name()
                );
            }
        }
        let mut out = vec![f32::NAN; self.q.len()];
        attention_par(
            &self.p,
            &self.q,
            &self.q_pos,
            &self.kv(),
            &mut out,
            &mut scratch,
        )
        .unwrap();
        let e = nmse(&out, &want);
        assert!(e <= NMSE_MAX, "{what} par: nmse {e:e}");
        let mut out = vec![f32::NAN; self.q.len()];
        attention(&self.p, &self.q, &self.q_pos, &self.kv(), &mut out).unwrap();
        let e = nmse(&out, &want);
        assert!(e <= NMSE_MAX, "{what} default: nmse {e:e}");
    }
}

fn f16_of(x: f32) -> f16 {
    f16::from_f32(x)
}

fn f32_of(x: f32) -> f32 {
    x
}

fn sweep<T: KvElem>(from_f32: fn(f32) -> T, seed: u64) {
    let mut rng = Rng(seed);
    for &(n_head, n_head_kv) in &[(2usize, 2usize), (4, 2), (8, 2), (4, 1)] {
        for &head_dim in &[7usize, 64, 80, 96] {
            for &window in &[None, Some(1), Some(16)] {
                for &softcap in &[None, Some(2.0f32)] {
                    for &(n_tokens, n_kv) in &[(1usize, 1usize), (1, 37), (5, 5), (3, 300)] {
                        let mut p = AttentionParams::new(n_head, n_head_kv, head_dim);
                        p.window = window;
                        p.softcap = softcap;
                        // Larger queries when capping, so the cap bites.
                        let amp = if softcap.is_some() { 4.0 } else { 1.5 };
                        let prob = Problem::new(&mut rng, p, n_tokens, n_kv, from_f32, amp);
                        prob.check_all(&format!(
                            "gqa {n_head}/{n_head_kv} hd {head_dim} window {window:?} cap {softcap:?} \
                             tokens {n_tokens} kv {n_kv}"
                        ));
                    }
                }
            }
        }
    }
}

#[test]
fn f32_cache_matches_naive_reference() {
    sweep(f32_of, 41);
}

#[test]
fn f16_cache_matches_naive_reference() {
    sweep(f16_of, 42);
}

#[test]
fn long_context_decode_matches_naive_reference() {
    // The shape attention_par splits across threads: one token, many keys.
    let mut rng = Rng(43);
    for &(n_head, n_head_kv) in &[(8usize, 8usize), (8, 4), (8, 2)] {
        let mut p = AttentionParams::new(n_head, n_head_kv, 128);
        p.window = Some(1500);
        Problem::new(&mut rng, p, 1, 4000, f16_of, 2.0).check_all("decode f16");
        p.window = None;
        Problem::new(&mut rng, p, 1, 4000, f32_of, 2.0).check_all("decode f32");
    }
}

#[test]
fn sharp_scores_stay_finite() {
    // Scores of several hundred: e^s overflows f32 unless every exponent is
    // taken relative to the running max.
    let mut rng = Rng(44);
    let mut p = AttentionParams::new(4, 2, 64);
    p.scale = 1.0;
    let prob = Problem::new(&mut rng, p, 4, 200, f32_of, 20.0);
    prob.check_all("sharp");
}

#[test]
fn non_causal_sees_future_keys() {
    let mut rng = Rng(45);
    let mut p = AttentionParams::new(4, 2, 33);
    p.causal = false;
    let mut prob = Problem::new(&mut rng, p, 6, 40, f32_of, 1.5);
    prob.q_pos = vec![0, 3, 10, 20, 39, 50];
    prob.check_all("non-causal");
    prob.p.window = Some(5);
    prob.check_all("non-causal window");
}

#[test]
fn query_that_sees_nothing_gets_zeros() {
    // All keys are in the query's future: the row is zero, not NaN.
    let mut rng = Rng(46);
    let p = AttentionParams::new(2, 1, 16);
    let mut prob = Problem::new(&mut rng, p, 1, 10, f32_of, 1.0);
    prob.kv_pos = (100..110).collect();
    prob.q_pos = vec![50];
    prob.check_all("nothing visible");
    let mut out = vec![f32::NAN; prob.q.len()];
    attention(&prob.p, &prob.q, &prob.q_pos, &prob.kv(), &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn cache_order_does_not_matter() {
    // Entries carry their positions; a ring-buffer cache that has wrapped
    // holds them out of order.
    let mut rng = Rng(47);
    let mut p = AttentionParams::new(4, 2, 32);
    p.window = Some(20);
    let prob = Problem::new(&mut rng, p, 3, 50, f32_of, 1.5);
    let entry = p.n_head_kv * p.head_dim;
    let rot = 17;
    let rotate = |v: &[f32]| -> Vec<f32> {
        let mut r = v.to_vec();
        r.rotate_left(rot * entry);
        r
    };
    let mut kv_pos = prob.kv_pos.clone();
    kv_pos.rotate_left(rot);
    let (k, v) = (rotate(&prob.k), rotate(&prob.v));
    let wrapped = KvCache {
        k: &k,
        v: &v,
        pos: &kv_pos,
    };
    let want = naive(&p, &prob.q, &prob.q_pos, &prob.kv());
    let mut out = vec![0.0; prob.q.len()];
    attention(&p, &prob.q, &prob.q_pos, &wrapped, &mut out).unwrap();
    assert!(nmse(&out, &want) <= NMSE_MAX);
}

#[test]
fn sliding_window_hides_old_keys() {
    // With window 1 a query sees only its own position: the output is that
    // entry's value row exactly.
    let mut rng = Rng(48);
    let mut p = AttentionParams::new(2, 1, 9);
    p.window = Some(1);
    let prob = Problem::new(&mut rng, p, 2, 12, f32_of, 1.0);
    let mut out = vec![0.0; prob.q.len()];
    attention(&p, &prob.q, &prob.q_pos, &prob.kv(), &mut out).unwrap();
    for (t, &pos) in prob.q_pos.iter().enumerate() {
        let v = &prob.v[pos as usize * 9..][..9];
        for h in 0..2 {
            assert_eq!(&out[(t * 2 + h) * 9..][..9], v);
        }
    }
}

#[test]
fn rejects_bad_shapes() {
    let q = vec![0.0f32; 2 * 3 * 4];
    let k = vec![0.0f32; 5 * 3 * 4];
    let pos: Vec<i32> = (0..5).collect();
    let kv = KvCache {
        k: &k,
        v: &k,
        pos: &pos,
    };
    let mut out = vec![0.0f32; q.len()];
    let ok = AttentionParams::new(3, 3, 4);
    attention(&ok, &q, &[3, 4], &kv, &mut out).unwrap();
    // n_head not a multiple of n_head_kv.
    let e = attention(&AttentionParams::new(3, 2, 4), &q, &[3, 4], &kv, &mut out).unwrap_err();
    assert!(e.to_string().contains("multiple"), "{e}");
    // q too short for its positions.
    assert!(attention(&ok, &q, &[3, 4, 5], &kv, &mut out).is_err());
    // k and v lengths disagree with the positions.
    let short = KvCache {
        k: &k[1..],
        v: &k,
        pos: &pos,
    };
    assert!(attention(&ok, &q, &[3, 4], &short, &mut out).is_err());
    let mut zero_window = ok;
    zero_window.window = Some(0);
    assert!(attention(&zero_window, &q, &[3, 4], &kv, &mut out).is_err());
    let mut bad_cap = ok;
    bad_cap.softcap = Some(-1.0);
    assert!(attention(&bad_cap, &q, &[3, 4], &kv, &mut out).is_err());
    let mut scratch = AttentionScratch::new();
    assert!(attention_chunked_with(
        Isa::Scalar,
        &ok,
        &q,
        &[3, 4],
        &kv,
        &mut out,
        0,
        &mut scratch
    )
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random shapes, windows, caps and chunkings agree with the reference.
    #[test]
    fn random_configurations_match_reference(
        seed in any::<u64>(),
        n_head_kv in 1usize..4,
        group in prop::sample::select(vec![1usize, 2, 4]),
        head_dim in 1usize..40,
        n_tokens in 1usize..4,
        extra_kv in 0usize..60,
        window in prop::option::of(1usize..30),
        softcap in prop::option::of(0.5f32..30.0),
        chunk in 1usize..70,
        f16_kv in any::<bool>(),
    ) {
        let mut rng = Rng(seed);
        let mut p = AttentionParams::new(n_head_kv * group, n_head_kv, head_dim);
        p.window = window;
        p.softcap = softcap;
        let n_kv = n_tokens + extra_kv;
        let mut scratch = AttentionScratch::new();
        let mut run = |q: &[f32], q_pos: &[i32], want: &[f64], got: &mut dyn FnMut(Isa, &mut [f32], &mut AttentionScratch)| {
            for isa in Isa::all() {
                let mut out = vec![f32::NAN; q.len()];
                got(isa, &mut out, &mut scratch);
                let e = nmse(&out, want);
                assert!(e <= NMSE_MAX, "{} nmse {e:e} (q_pos {q_pos:?})", isa.name());
            }
        };
        if f16_kv {
            let prob = Problem::new(&mut rng, p, n_tokens, n_kv, f16_of, 2.0);
            let want = naive(&p, &prob.q, &prob.q_pos, &prob.kv());
            run(&prob.q, &prob.q_pos, &want, &mut |isa, out, s| {
                attention_chunked_with(isa, &p, &prob.q, &prob.q_pos, &prob.kv(), out, chunk, s).unwrap();
            });
        } else {
            let prob = Problem::new(&mut rng, p, n_tokens, n_kv, f32_of, 2.0);
            let want = naive(&p, &prob.q, &prob.q_pos, &prob.kv());
            run(&prob.q, &prob.q_pos, &want, &mut |isa, out, s| {
                attention_chunked_with(isa, &p, &prob.q, &prob.q_pos, &prob.kv(), out, chunk, s).unwrap();
            });
        }
    }
}

#[test]
fn nan_in_a_query_reaches_the_output() {
    // A NaN activation must surface, not be masked into a zero row: every
    // score of that head is NaN, which an `f32::max` running max would skip.
    let mut rng = Rng(49);
    let p = AttentionParams::new(2, 1, 16);
    let mut prob = Problem::new(&mut rng, p, 1, 40, f32_of, 1.0);
    prob.q[3] = f32::NAN; // head 0 only
    let mut scratch = AttentionScratch::new();
    for isa in Isa::all() {
        for chunk in [5, 40] {
            let mut out = vec![0.0; prob.q.len()];
            attention_chunked_with(
                isa,
                &p,
                &prob.q,
                &prob.q_pos,
                &prob.kv(),
                &mut out,
                chunk,
                &mut scratch,
            )
            .unwrap();
            assert!(
                out[..16].iter().all(|v| v.is_nan()),
                "{} chunk {chunk}: {:?}",
                isa.name(),
                &out[..16]
            );
            assert!(
                out[16..].iter().all(|v| v.is_finite()),
                "{} chunk {chunk}",
                isa.name()
            );
        }
    }
}

/// `attention_par` gives a query the same bits however many other queries
/// share its batch and however many keys after it are in the cache: the
/// keys are split at fixed rows, never by batch size or thread count. A
/// server that evaluates the last 20 tokens of a prompt on top of a reused
/// cache must match evaluating it in chunks from scratch.
#[test]
fn attention_par_is_batch_invariant() {
    let mut rng = Rng(47);
    let p = AttentionParams::new(4, 1, 256);
    let hd = p.head_dim;
    let n_kv = 900;
    let prob = Problem::new(&mut rng, p, 20, n_kv, f16_of, 2.0);
    let row = p.n_head * hd;
    let mut scratch = AttentionScratch::new();
    let mut all = vec![f32::NAN; prob.q.len()];
    attention_par(&p, &prob.q, &prob.q_pos, &prob.kv(), &mut all, &mut scratch).unwrap();
    for pool_threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(pool_threads)
            .build()
            .unwrap();
        // The same queries alone and in small groups, each against a cache
        // that ends at the group's last position (as when evaluated first).
        for group in [1usize, 2, 3, 7] {
            for t0 in (0..20).step_by(group) {
                let t1 = (t0 + group).min(20);
                let n_kv_then = prob.q_pos[t1 - 1] as usize + 1;
                let kv = KvCache {
                    k: &prob.k[..n_kv_then * hd],
                    v: &prob.v[..n_kv_then * hd],
                    pos: &prob.kv_pos[..n_kv_then],
                };
                let mut out = vec![f32::NAN; (t1 - t0) * row];
                pool.install(|| {
                    attention_par(
                        &p,
                        &prob.q[t0 * row..t1 * row],
                        &prob.q_pos[t0..t1],
                        &kv,
                        &mut out,
                        &mut scratch,
                    )
                })
                .unwrap();
                let want = &all[t0 * row..t1 * row];
                assert!(
                    out.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{pool_threads} threads, queries {t0}..{t1}: not bit-identical"
                );
            }
        }
    }
}
