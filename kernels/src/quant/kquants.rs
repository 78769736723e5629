//! Helpers shared by the quantizers, following ggml-quants.c ("Helper
//! functions" section): `nearest_int`, `make_qx_quants`, `make_q3_quants`,
//! `make_qkx2_quants`, `get_scale_min_k4`.
//!
//! The float expressions keep ggml's evaluation order (C evaluates `w*x*l` as
//! `(w*x)*(float)l`), so a quantizer here picks the same levels as ggml's
//! `quantize_row_*_ref` built without FMA contraction.

use super::q8_k::BlockQ8K;
use super::{f16_bytes, f16_le, QK_K};

/// Smallest group maximum treated as non-zero (`GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even, by ggml's magic-number trick
/// (`nearest_int`): adding 1.5 * 2^23 leaves the integer in the low mantissa
/// bits. Valid for |x| <= 4194303, as in ggml (which only `assert`s it); a
/// value outside that range gives a wrong integer, never UB.
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `make_qx_quants` with `qw == NULL`: symmetric quantization of `x`
/// to `[-nmax, nmax-1]`, written to `l` offset by `nmax`; returns the scale.
/// `rmse_type` selects the weighting (1: x^2, 2: 1, 3: |x|, else sqrt|x|);
/// 0 skips the search and negative values return early, as in ggml.
pub(crate) fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l: &mut [i8],
    mut rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &xi in x {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for (li, &xi) in l.iter_mut().zip(x) {
            let q = nearest_int(iscale * xi);
            *li = (nmax + q.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |i: usize| -> f32 {
        let xi = x[i];
        match qw {
            Some(w) => w[i],
            None => match rmse_type {
                1 => xi * xi,
                2 => 1.0,
                3 => xi.abs(),
                _ => xi.abs().sqrt(),
            },
        }
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
        let w = weight(i);
        let qf = q as f32;
        sumlx += w * x[i] * qf;
        suml2 += w * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = weight(i);
            let qf = q as f32;
            sumlx += w * x[i] * qf;
            suml2 += w * qf * qf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let q = nearest_int(iscale * x[i]);
                l[i] = (nmax + q.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants`: symmetric quantization to `[-nmax, nmax-1]` with
/// an iterative x^2-weighted refinement when `do_rmse`; levels are written to
/// `l` offset by `nmax`; returns the scale.
pub(crate) fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &xi in x {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l[i] = q as i8;
            let w = x[i] * x[i];
            let qf = q as f32;
            sumlx += w * x[i] * qf;
            suml2 += w * qf * qf;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l[i] as i32 {
                        let nf = new_l as f32;
                        slx += w * x[i] * nf;
                        sl2 += w * nf * nf;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for li in l[..n].iter_mut() {
            *li += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
    }
    1.0 / iscale
}

/// ggml's `make_qkx2_quants`: asymmetric quantization `x ~ scale * l - min`
/// with `l` in `[0, nmax]`, searching `nstep + 1` scales around `nmax` and
/// keeping the one with the least weighted error (absolute when `use_mad`,
/// squared otherwise). Returns `(scale, min)` where `min >= 0` is subtracted
/// (ggml's `*the_min = -min`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let nmaxf = nmax as f32;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block
/// (`get_scale_min_k4` in ggml-quants.c). The 12 bytes hold, for j < 4, the
/// scale in `q[j]` and the min in `q[j+4]` (low 6 bits); for j >= 4 the low
/// nibbles in `q[j+4]` and the top 2 bits in the spare bits of `q[j-4]` and
/// `q[j]`.
#[inline(always)]
/// The part of `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` they
/// share, for one super-block `x` of 256 values: per sub-block of 32,
/// `make_qkx2_quants(nmax, weights = sqrt(mean x^2) + |x|, rmin, rdelta
/// 0.1, nstep)`; the 8 scales and mins quantized to 6 bits against their
/// maxima; then every value re-quantized against the rounded scales into
/// `l` (0..=nmax). Returns the packed scales and the f16 `d` and `dmin`.
pub(crate) fn quantize_scale_min_k4(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 12], [u8; 2], [u8; 2]) {
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut scales = [0.0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        // ggml stores nearest_int's int in a uint8_t, then clamps.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let (d, dmin) = (f16_bytes(max_scale / 63.0), f16_bytes(max_min / 63.0));

    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let d = f16_le(d) * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = f16_le(dmin) * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
    (packed, d, dmin)
}

/// The eight lane sums of ggml's generic K-quant dot products:
/// `aux32[l] = sum_j scale(j) * sum_{i = l mod 8} a_i * q8_i` over the
/// sub-blocks `j` of `SUB` values, for the block's values `a` and the Q8_K
/// quants `q8` (Q3_K, Q6_K: 16 values; Q4_K, Q5_K: 32).
#[inline(always)]
pub(crate) fn lane_sums<const SUB: usize>(
    a: &[i8; QK_K],
    q8: &[i8; QK_K],
    scale: impl Fn(usize) -> i32,
) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for (j, (a, q8)) in a.chunks_exact(SUB).zip(q8.chunks_exact(SUB)).enumerate() {
        let scale = scale(j);
        for (a, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
            for l in 0..8 {
                aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
            }
        }
    }
    aux32
}

/// The integer parts of ggml's generic Q4_K and Q5_K dot products, for a
/// block's values `a` and its 6-bit scales and mins (`scale_min(j)`): the
/// lane sums of [`lane_sums`] over 32-value sub-blocks, and
/// `sumi = sum_j bsum_j * m_{j/2}`.
#[inline(always)]
pub(crate) fn scale_min_isums(
    a: &[i8; QK_K],
    y: &BlockQ8K,
    scale_min: impl Fn(usize) -> (u8, u8),
) -> ([i32; 8], i32) {
    let mut sumi = 0i32;
    for j in 0..QK_K / 16 {
        sumi += y.bsum(j) as i32 * scale_min(j / 2).1 as i32;
    }
    (lane_sums::<32>(a, &y.qs, |j| scale_min(j).0 as i32), sumi)
}

pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Pack 8 six-bit scales and mins into the 12-byte layout read by
/// [`get_scale_min_k4`] (the packing loop of `quantize_row_q4_K_ref`).
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// ggml's generic K-quant row (`ggml_vec_dot_q{3,4,5,6}_K_q8_K_generic`):
/// per block, eight i32 lanes scaled by `d` into eight f32 partial sums and
/// the min term (0 for the formats without mins) subtracted as it comes;
/// the partial sums added at the end. `block` gives `(d, lanes, min)` of a
/// block pair in the scalar code's operations.
#[inline(always)]
pub(crate) fn row_of_lanes<X, Y>(
    x: &[X],
    y: &[Y],
    block: impl Fn(&X, &Y) -> (f32, [i32; 8], f32),
) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let (d, aux32, min) = block(bx, by);
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
        sumf -= min;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-3.7), -4);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn scale_min_k4_round_trips() {
        let ls = [0, 1, 17, 63, 5, 33, 62, 48];
        let lm = [63, 0, 31, 32, 1, 60, 15, 16];
        let packed = pack_scale_min_k4(&ls, &lm);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &packed), (ls[j], lm[j]), "j={j}");
        }
    }
}
