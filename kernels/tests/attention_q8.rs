//! Attention over a Q8_0 KV cache against a naive f64 reference computed on
//! the same cache dequantized, so only float ordering separates them
//! (threshold: NMSE 1e-6, as for the f32 and f16 caches in ops_attention.rs).

use hearth_kernels::ops::attention::{
    attention, attention_par, AttentionParams, AttentionScratch, KvCache,
};
use hearth_kernels::quant::q8_0::{dequantize_row_q8_0, quantize_row_q8_0};
use hearth_kernels::quant::BlockQ8_0;

use hearth_testkit::Rng;

fn naive(
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    k: &[f32],
    v: &[f32],
    kv_pos: &[i32],
) -> Vec<f64> {
    let (hd, group) = (p.head_dim, p.n_head / p.n_head_kv);
    let mut out = vec![0f64; q.len()];
    for (t, &qp) in q_pos.iter().enumerate() {
        for h in 0..p.n_head {
            let kvh = h / group;
            let qh = &q[(t * p.n_head + h) * hd..][..hd];
            let scores: Vec<(usize, f64)> = kv_pos
                .iter()
                .enumerate()
                .filter(|&(_, &kp)| p.visible(qp, kp))
                .map(|(j, _)| {
                    let kr = &k[(j * p.n_head_kv + kvh) * hd..][..hd];
                    (
                        j,
                        qh.iter()
                            .zip(kr)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * p.scale as f64,
                    )
                })
                .collect();
            let m = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s.1 - m).exp()).sum();
            let o = &mut out[(t * p.n_head + h) * hd..][..hd];
            for &(j, s) in &scores {
                let w = (s - m).exp() / z;
                for (o, &x) in o.iter_mut().zip(&v[(j * p.n_head_kv + kvh) * hd..][..hd]) {
                    *o += w * x as f64;
                }
            }
        }
    }
    out
}

fn quantize(x: &[f32]) -> (Vec<BlockQ8_0>, Vec<f32>) {
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); x.len() / 32];
    quantize_row_q8_0(x, &mut blocks).unwrap();
    let mut back = vec![0f32; x.len()];
    dequantize_row_q8_0(&blocks, &mut back).unwrap();
    (blocks, back)
}

#[test]
fn q8_0_cache_matches_the_dequantized_reference() {
    let mut rng = Rng(0x51f1);
    for (n_head, n_head_kv, window) in [(4, 1, None), (4, 2, Some(40)), (2, 2, None)] {
        let hd = 64;
        let mut p = AttentionParams::new(n_head, n_head_kv, hd);
        p.window = window;
        let n_kv = 300;
        let n_tok = 5;
        let q: Vec<f32> = (0..n_tok * n_head * hd)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let kf: Vec<f32> = (0..n_kv * n_head_kv * hd)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let vf: Vec<f32> = (0..n_kv * n_head_kv * hd)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let (kq, kd) = quantize(&kf);
        let (vq, vd) = quantize(&vf);
        let kv_pos: Vec<i32> = (0..n_kv as i32).collect();
        let q_pos: Vec<i32> = (0..n_tok as i32).map(|t| 295 + t).collect();
        let want = naive(&p, &q, &q_pos, &kd, &vd, &kv_pos);
        let cache = KvCache {
            k: &kq[..],
            v: &vq[..],
            pos: &kv_pos,
        };
        let mut serial = vec![f32::NAN; q.len()];
        attention(&p, &q, &q_pos, &cache, &mut serial).unwrap();
        let mut par = vec![f32::NAN; q.len()];
        attention_par(
            &p,
            &q,
            &q_pos,
            &cache,
            &mut par,
            &mut AttentionScratch::new(),
        )
        .unwrap();
        for got in [&serial, &par] {
            let err: f64 = got
                .iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).powi(2))
                .sum();
            let norm: f64 = want.iter().map(|w| w * w).sum();
            assert!(
                err / norm <= 1e-6,
                "({n_head}, {n_head_kv}, {window:?}): NMSE {}",
                err / norm
            );
        }
    }
}

#[test]
fn q8_0_cache_needs_head_dim_in_whole_blocks() {
    let p = AttentionParams::new(1, 1, 48);
    let blocks = vec![bytemuck::Zeroable::zeroed(); 3];
    let cache: KvCache<'_, BlockQ8_0> = KvCache {
        k: &blocks,
        v: &blocks,
        pos: &[0, 1],
    };
    let mut out = vec![0.0; 48];
    assert!(attention(&p, &[0.0; 48], &[1], &cache, &mut out).is_err());
}
