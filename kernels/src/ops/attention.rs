//! Attention of queries over a KV cache, with online softmax.
//!
//! Layout (row-major, `head_dim` innermost):
//! - queries `q`: `[n_tokens][n_head][head_dim]` f32, token `t` at position
//!   `q_pos[t]`;
//! - cache `k`, `v`: `[n_kv][n_head_kv][head_dim]` of f16 or f32 ([`KvElem`]),
//!   entry `j` at position `kv.pos[j]` (any order; a cache need not be full
//!   or sorted);
//! - output: `[n_tokens][n_head][head_dim]` f32, like `q`.
//!
//! The caller writes the current tokens' keys and values into the cache
//! before the call, so a token attends to itself and to the earlier tokens of
//! its own batch.
//!
//! For query head `h` (kv head `h / (n_head / n_head_kv)`, grouped-query
//! attention) at position `p`, key `j` at position `pk` is visible when
//! `pk <= p` (if causal) and `|p - pk| < window` (if a sliding window is set;
//! causal, that is `p - window < pk <= p`). Its score is
//! `s = scale * q . k_j`, soft-capped to `cap * tanh(s / cap)` if a cap is
//! set (Gemma 2), and the output is `sum_j softmax(s)_j v_j` over visible
//! keys. A query that sees no key gets a zero row.
//!
//! The softmax is online (flash-attention style): one pass over the keys
//! keeps a running max `m`, a running sum `l` of `e^(s - m)` and an
//! accumulator rescaled by `e^(m_old - m_new)` whenever the max grows, so
//! memory does not grow with context. [`attention_par`] splits the keys of
//! each query head into chunks run on rayon's pool; each chunk yields a
//! partial `(m, l, acc)` and the partials are merged exactly:
//! `m = max m_c`, `l = sum l_c e^(m_c - m)`, `acc = sum acc_c e^(m_c - m)`.

use std::ops::Range;

use half::f16;
use rayon::prelude::*;

use super::{Isa, ShapeError};
use crate::quant::q8_0::QK8_0;
use crate::quant::BlockQ8_0;

/// Shape and options of an attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads; divides `n_head`.
    pub n_head_kv: usize,
    /// Dims per head, for queries, keys and values alike.
    pub head_dim: usize,
    /// Multiplies `q . k`, usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// Keys after the query's position are hidden.
    pub causal: bool,
    /// Sliding window: only keys less than this many positions away are
    /// visible (Mistral, Gemma 2/3 local layers).
    pub window: Option<usize>,
    /// Logit soft-capping `s = cap * tanh(s / cap)` (Gemma 2).
    pub softcap: Option<f32>,
}

impl AttentionParams {
    /// Causal attention with scale `1/sqrt(head_dim)`, no window, no cap.
    pub fn new(n_head: usize, n_head_kv: usize, head_dim: usize) -> AttentionParams {
        AttentionParams {
            n_head,
            n_head_kv,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            causal: true,
            window: None,
            softcap: None,
        }
    }

    /// Whether a query at `q_pos` sees a key at `k_pos`.
    pub fn visible(&self, q_pos: i32, k_pos: i32) -> bool {
        let d = i64::from(q_pos) - i64::from(k_pos);
        if self.causal && d < 0 {
            return false;
        }
        match self.window {
            Some(w) => d.unsigned_abs() < w as u64,
            None => true,
        }
    }
}

/// A view of a KV cache: `k` and `v` are `[pos.len()][n_head_kv][head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct KvCache<'a, T> {
    /// Keys.
    pub k: &'a [T],
    /// Values.
    pub v: &'a [T],
    /// Position of each cache entry.
    pub pos: &'a [i32],
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for crate::quant::BlockQ8_0 {}
}

/// What a KV cache may hold: `f32`, `half::f16`, or Q8_0 blocks
/// ([`BlockQ8_0`]: 32 values, one f16 scale, 8.5 bits per value).
pub trait KvElem: Copy + Send + Sync + sealed::Sealed + 'static {
    /// Values per element (32 for a Q8_0 block); `head_dim` must be a
    /// multiple, and every offset and length in a cache counts elements.
    const PER: usize = 1;
    /// The value as f32 (one-value elements only; a block returns its scale).
    fn to_f32(self) -> f32;
    /// `q . k` in f32.
    fn dot(isa: Isa, q: &[f32], k: &[Self]) -> f32;
    /// `acc = acc * c + sum_i w[i] * v[rows[i]..rows[i] + acc.len()]`: a
    /// tile of value rows, each starting at an offset into `v`, weighted and
    /// added to a rescaled accumulator that is loaded and stored once.
    fn mix(isa: Isa, acc: &mut [f32], c: f32, w: &[f32], v: &[Self], rows: &[usize]);
    /// `out[h][i] = q_h . k[rows[i]..]` for the `out.len()` query heads
    /// `q_h = q[h * hd..][..hd]` sharing one kv head: [`KvElem::dot`] per
    /// head and key, unless a SIMD variant reads each key once for every
    /// head.
    fn dot_heads(
        isa: Isa,
        q: &[f32],
        hd: usize,
        k: &[Self],
        rows: &[usize],
        out: &mut [[f32; TILE]],
    ) {
        dot_heads_each(isa, q, hd, k, rows, out);
    }
    /// [`KvElem::mix`] for each head `h` of `acc` (`hd` values each) with
    /// `c[h]` and the first `rows.len()` weights of `w[h]`, unless a SIMD
    /// variant reads each value row once for every head.
    fn mix_heads(
        isa: Isa,
        acc: &mut [f32],
        hd: usize,
        c: &[f32],
        w: &[[f32; TILE]],
        v: &[Self],
        rows: &[usize],
    ) {
        mix_heads_each(isa, acc, hd, c, w, v, rows);
    }
}

/// The reference of [`KvElem::dot_heads`]: one `dot` per head and key.
fn dot_heads_each<T: KvElem>(
    isa: Isa,
    q: &[f32],
    hd: usize,
    k: &[T],
    rows: &[usize],
    out: &mut [[f32; TILE]],
) {
    for (qh, o) in q.chunks_exact(hd).zip(out.iter_mut()) {
        for (s, &row) in o.iter_mut().zip(rows) {
            *s = T::dot(isa, qh, &k[row..row + hd / T::PER]);
        }
    }
}

/// The reference of [`KvElem::mix_heads`]: one `mix` per head.
fn mix_heads_each<T: KvElem>(
    isa: Isa,
    acc: &mut [f32],
    hd: usize,
    c: &[f32],
    w: &[[f32; TILE]],
    v: &[T],
    rows: &[usize],
) {
    let n = rows.len();
    for ((a, &c), w) in acc.chunks_exact_mut(hd).zip(c).zip(w) {
        T::mix(isa, a, c, &w[..n], v, rows);
    }
}

impl KvElem for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }

    #[inline]
    fn dot(isa: Isa, q: &[f32], k: &[f32]) -> f32 {
        match isa {
            Isa::Scalar => dot_scalar(q, k),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA
            // and F16C were detected on this CPU.
            Isa::Avx2(_) => unsafe { avx2::dot_f32(q, k) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2,
            // FMA and F16C.
            Isa::Avx512(_) => unsafe { avx512::dot_f32(q, k) },
        }
    }

    #[inline]
    fn mix(isa: Isa, acc: &mut [f32], c: f32, w: &[f32], v: &[f32], rows: &[usize]) {
        match isa {
            Isa::Scalar => mix_scalar(acc, c, w, v, rows),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `dot`.
            Isa::Avx2(_) => unsafe { avx2::mix_f32(acc, c, w, v, rows) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `dot`.
            Isa::Avx512(_) => unsafe { avx512::mix_f32(acc, c, w, v, rows) },
        }
    }
}

impl KvElem for f16 {
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[inline]
    fn dot(isa: Isa, q: &[f32], k: &[f16]) -> f32 {
        match isa {
            Isa::Scalar => dot_scalar(q, k),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA
            // and F16C were detected on this CPU.
            Isa::Avx2(_) => unsafe { avx2::dot_f16(q, k) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2,
            // FMA and F16C.
            Isa::Avx512(_) => unsafe { avx512::dot_f16(q, k) },
        }
    }

    #[inline]
    fn mix(isa: Isa, acc: &mut [f32], c: f32, w: &[f32], v: &[f16], rows: &[usize]) {
        match isa {
            Isa::Scalar => mix_scalar(acc, c, w, v, rows),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `dot`.
            Isa::Avx2(_) => unsafe { avx2::mix_f16(acc, c, w, v, rows) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `dot`.
            Isa::Avx512(_) => unsafe { avx512::mix_f16(acc, c, w, v, rows) },
        }
    }

    fn dot_heads(
        isa: Isa,
        q: &[f32],
        hd: usize,
        k: &[f16],
        rows: &[usize],
        out: &mut [[f32; TILE]],
    ) {
        #[cfg(target_arch = "x86_64")]
        if let Isa::Avx512(_) = isa {
            if out.len() == 4 && hd.is_multiple_of(32) {
                // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL,
                // AVX2, FMA and F16C.
                return unsafe { avx512::dot_heads4_f16(q, hd, k, rows, out) };
            }
        }
        dot_heads_each(isa, q, hd, k, rows, out);
    }

    fn mix_heads(
        isa: Isa,
        acc: &mut [f32],
        hd: usize,
        c: &[f32],
        w: &[[f32; TILE]],
        v: &[f16],
        rows: &[usize],
    ) {
        #[cfg(target_arch = "x86_64")]
        if let Isa::Avx512(_) = isa {
            if w.len() == 4 && hd.is_multiple_of(32) {
                // SAFETY: as in `dot_heads`.
                return unsafe { avx512::mix_heads4_f16(acc, hd, c, w, v, rows) };
            }
        }
        mix_heads_each(isa, acc, hd, c, w, v, rows);
    }
}

/// Q8_0 keys and values: each head row is `head_dim / 32` blocks, dequantized
/// on the fly (`d * q`, as ggml's `dequantize_row_q8_0`). Plain Rust for every
/// instruction set: the compiler vectorises the 32-value inner loops.
impl KvElem for BlockQ8_0 {
    const PER: usize = QK8_0;

    fn to_f32(self) -> f32 {
        self.d()
    }

    fn dot(_isa: Isa, q: &[f32], k: &[BlockQ8_0]) -> f32 {
        q.chunks_exact(QK8_0)
            .zip(k)
            .map(|(q, b)| {
                b.d()
                    * q.iter()
                        .zip(&b.qs)
                        .map(|(&x, &y)| x * f32::from(y))
                        .sum::<f32>()
            })
            .sum()
    }

    fn mix(_isa: Isa, acc: &mut [f32], c: f32, w: &[f32], v: &[BlockQ8_0], rows: &[usize]) {
        if c != 1.0 {
            acc.iter_mut().for_each(|a| *a *= c);
        }
        let n_blocks = acc.len() / QK8_0;
        for (&wi, &row) in w.iter().zip(rows) {
            for (a, b) in acc.chunks_exact_mut(QK8_0).zip(&v[row..row + n_blocks]) {
                let s = wi * b.d();
                for (a, &y) in a.iter_mut().zip(&b.qs) {
                    *a += s * f32::from(y);
                }
            }
        }
    }
}

fn dot_scalar<T: KvElem>(q: &[f32], k: &[T]) -> f32 {
    q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum()
}

fn mix_scalar<T: KvElem>(acc: &mut [f32], c: f32, w: &[f32], v: &[T], rows: &[usize]) {
    if c != 1.0 {
        acc.iter_mut().for_each(|a| *a *= c);
    }
    let hd = acc.len();
    for (&wi, &row) in w.iter().zip(rows) {
        for (a, &b) in acc.iter_mut().zip(&v[row..row + hd]) {
            *a += wi * b.to_f32();
        }
    }
}

/// Keys scored together: their softmax weights go through one vector `exp`
/// and their value rows through one pass over the accumulator.
const TILE: usize = 16;
// The SIMD `exp_tile`s take the tile in whole 8- and 16-lane vectors.
const _: () = assert!(TILE.is_multiple_of(16));

/// `x = e^x` on a tile of scores.
#[inline]
fn exp_tile(isa: Isa, x: &mut [f32; TILE]) {
    match isa {
        Isa::Scalar => x.iter_mut().for_each(|v| *v = v.exp()),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA and
        // F16C were detected on this CPU.
        Isa::Avx2(_) => unsafe { avx2::exp_tile(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2, FMA
        // and F16C.
        Isa::Avx512(_) => unsafe { avx512::exp_tile(x) },
    }
}

/// Reusable memory for [`attention_par`]'s per-chunk partials; keep one per
/// thread of the caller and pass it to every call.
#[derive(Clone, Debug, Default)]
pub struct AttentionScratch {
    partials: Vec<f32>,
}

impl AttentionScratch {
    /// Empty scratch; it grows to what the largest call needs and stays there.
    pub fn new() -> AttentionScratch {
        AttentionScratch::default()
    }
}

fn check<T: KvElem>(
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
    out: &[f32],
) -> Result<(), ShapeError> {
    let err = |detail: String| {
        Err(ShapeError {
            op: "attention",
            detail,
        })
    };
    if p.head_dim == 0 || p.n_head == 0 || p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv)
    {
        return err(format!(
            "n_head {} must be a non-zero multiple of n_head_kv {}, head_dim {} non-zero",
            p.n_head, p.n_head_kv, p.head_dim
        ));
    }
    if !p.scale.is_finite() {
        return err(format!("scale {} is not finite", p.scale));
    }
    if let Some(cap) = p.softcap {
        if !(cap.is_finite() && cap > 0.0) {
            return err(format!("softcap {cap} must be finite and positive"));
        }
    }
    if p.window == Some(0) {
        return err("a sliding window of 0 hides every key".to_string());
    }
    let q_row = p.n_head * p.head_dim;
    if Some(q.len()) != q_pos.len().checked_mul(q_row) || out.len() != q.len() {
        return err(format!(
            "q has {} and out {} floats, want {} tokens x {} heads x {}",
            q.len(),
            out.len(),
            q_pos.len(),
            p.n_head,
            p.head_dim
        ));
    }
    if !p.head_dim.is_multiple_of(T::PER) {
        return err(format!(
            "head_dim {} is not a multiple of the cache's block of {}",
            p.head_dim,
            T::PER
        ));
    }
    let kv_len = kv.pos.len().checked_mul(p.n_head_kv * p.head_dim / T::PER);
    if Some(kv.k.len()) != kv_len || Some(kv.v.len()) != kv_len {
        return err(format!(
            "k has {} and v {} elements, want {} entries x {} kv heads x {}",
            kv.k.len(),
            kv.v.len(),
            kv.pos.len(),
            p.n_head_kv,
            p.head_dim
        ));
    }
    Ok(())
}

/// Most query heads processed together over one pass of the keys.
const MAX_BLOCK: usize = 16;

/// How many query heads sharing a kv head run together: the largest divisor
/// of the group size that is at most [`MAX_BLOCK`]. Each K/V row is then read
/// from memory once per block instead of once per query head, which is most
/// of decode's memory traffic under grouped-query attention.
fn block_len(group: usize) -> usize {
    (1..=group.min(MAX_BLOCK))
        .rev()
        .find(|b| group.is_multiple_of(*b))
        .unwrap_or(1)
}

/// A block of query heads (contiguous in `q`, sharing `kv_head`) over the
/// cache entries in `keys`: the online softmax.
///
/// Visible keys are gathered in tiles of [`TILE`]; per head, a tile's scores
/// are computed, the running max `m` moves to the tile's max if larger, the
/// accumulator and sum `l` are rescaled by `e^(m_old - m_new)` once, and the
/// tile's weights `e^(s - m_new)` are added in. Leaves each head's
/// unnormalised accumulator in `acc` (`[heads][head_dim]`) and its running
/// max and sum in `m` and `l` (one per head); `m = -inf, l = 0` for a head
/// when no key in the range is visible.
#[allow(clippy::too_many_arguments)] // the operands of one block, spelled out
#[inline(always)] // into `avx2::attend`, so the SIMD kernels inline too
fn attend<T: KvElem>(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    q_pos: i32,
    kv: &KvCache<'_, T>,
    kv_head: usize,
    keys: Range<usize>,
    acc: &mut [f32],
    m: &mut [f32],
    l: &mut [f32],
) {
    acc.fill(0.0);
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);
    let mut rows = [0usize; TILE];
    let mut n = 0;
    let mut keys = keys;
    loop {
        let next = keys.next();
        if let Some(j) = next {
            if !p.visible(q_pos, kv.pos[j]) {
                continue;
            }
            rows[n] = (j * p.n_head_kv + kv_head) * (p.head_dim / T::PER);
            n += 1;
            if n < TILE {
                continue;
            }
        }
        if n > 0 {
            attend_tile(isa, p, q, kv, &rows[..n], acc, m, l);
            n = 0;
        }
        if next.is_none() {
            return;
        }
    }
}

/// One tile of visible keys (`rows`: offsets of their K/V rows) for a block
/// of query heads; see [`attend`].
#[allow(clippy::too_many_arguments)] // as `attend`
#[inline(always)]
fn attend_tile<T: KvElem>(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    kv: &KvCache<'_, T>,
    rows: &[usize],
    acc: &mut [f32],
    m: &mut [f32],
    l: &mut [f32],
) {
    let hd = p.head_dim;
    let n = rows.len();
    let nh = m.len();
    let mut w = [[f32::NEG_INFINITY; TILE]; MAX_BLOCK];
    let w = &mut w[..nh];
    T::dot_heads(isa, q, hd, kv.k, rows, w);
    let mut cs = [1.0f32; MAX_BLOCK];
    let mut skipped = [false; MAX_BLOCK];
    for (h, w) in w.iter_mut().enumerate() {
        let mut tile_max = f32::NEG_INFINITY;
        for s in &mut w[..n] {
            *s *= p.scale;
            if let Some(cap) = p.softcap {
                *s = cap * (*s / cap).tanh();
            }
            // Unlike `f32::max`, keep a NaN score: it must reach the output.
            if *s > tile_max || s.is_nan() {
                tile_max = *s;
            }
        }
        let new_m = if tile_max.is_nan() {
            tile_max
        } else {
            m[h].max(tile_max)
        };
        if new_m == f32::NEG_INFINITY {
            // Every score is -inf (e^-inf = 0): nothing to add.
            skipped[h] = true;
            continue;
        }
        // 1 when the max did not move; 0 the first time, when m = -inf and
        // acc and l are still zero. A NaN score makes c, w and so l NaN, and
        // l stays NaN, which `finish` passes on rather than hiding.
        let c = (m[h] - new_m).exp();
        w[..n].iter_mut().for_each(|s| *s -= new_m);
        exp_tile(isa, w);
        l[h] = l[h] * c + w[..n].iter().sum::<f32>();
        cs[h] = c;
        m[h] = new_m;
    }
    if skipped[..nh].iter().any(|&s| s) {
        for (h, a) in acc.chunks_exact_mut(hd).enumerate() {
            if !skipped[h] {
                T::mix(isa, a, cs[h], &w[h][..n], kv.v, rows);
            }
        }
    } else {
        T::mix_heads(isa, acc, hd, &cs[..nh], w, kv.v, rows);
    }
}

/// [`attend`] on `isa`. The SIMD arms run the whole key loop inside a
/// `#[target_feature]` function so the per-key dot product and
/// accumulate inline into it instead of being a call each.
#[allow(clippy::too_many_arguments)] // as `attend`
fn attend_on<T: KvElem>(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    q_pos: i32,
    kv: &KvCache<'_, T>,
    kv_head: usize,
    keys: Range<usize>,
    acc: &mut [f32],
    m: &mut [f32],
    l: &mut [f32],
) {
    match isa {
        Isa::Scalar => attend(isa, p, q, q_pos, kv, kv_head, keys, acc, m, l),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx2` holds a token built only after AVX2, FMA and
        // F16C were detected on this CPU.
        Isa::Avx2(t) => unsafe { avx2::attend(t, p, q, q_pos, kv, kv_head, keys, acc, m, l) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa::Avx512` token proves AVX-512 F/BW/VL, AVX2, FMA
        // and F16C.
        Isa::Avx512(t) => unsafe { avx512::attend(t, p, q, q_pos, kv, kv_head, keys, acc, m, l) },
    }
}

/// `out = acc / l` per head, or zeros for a head that saw nothing.
fn finish(out: &mut [f32], l: &[f32]) {
    let hd = out.len() / l.len();
    for (o, &l) in out.chunks_exact_mut(hd).zip(l) {
        if l == 0.0 {
            o.fill(0.0);
        } else {
            let inv = 1.0 / l;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// Where block `b` of query heads sits: its token and its kv head.
fn locate(p: &AttentionParams, block: usize, b: usize) -> (usize, usize) {
    let first = b * block;
    let (t, h) = (first / p.n_head, first % p.n_head);
    (t, h / (p.n_head / p.n_head_kv))
}

/// Attention on the calling thread (see the module docs for layout and
/// semantics). Allocates nothing.
///
/// # Errors
/// If the operands' shapes do not fit `p`, or `p` is invalid (`n_head` not a
/// multiple of `n_head_kv`, zero window, non-positive cap).
pub fn attention<T: KvElem>(
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    attention_with(Isa::detect(), p, q, q_pos, kv, out)
}

/// [`attention`] on a chosen instruction set.
///
/// # Errors
/// As [`attention`].
pub fn attention_with<T: KvElem>(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    check(p, q, q_pos, kv, out)?;
    let hd = p.head_dim;
    let block = block_len(p.n_head / p.n_head_kv);
    let (mut m, mut l) = ([0.0f32; MAX_BLOCK], [0.0f32; MAX_BLOCK]);
    let (m, l) = (&mut m[..block], &mut l[..block]);
    let n_kv = kv.pos.len();
    for (b, (qb, ob)) in q
        .chunks_exact(block * hd)
        .zip(out.chunks_exact_mut(block * hd))
        .enumerate()
    {
        let (t, kv_head) = locate(p, block, b);
        attend_on(isa, p, qb, q_pos[t], kv, kv_head, 0..n_kv, ob, m, l);
        finish(ob, l);
    }
    Ok(())
}

/// Keys per parallel task: fixed, at cache rows `0..128`, `128..256`, ...
/// Each chunk's partial softmax is computed alone and the partials merged in
/// order, so a query's result depends only on the keys it sees, never on how
/// many other queries share its batch or how many threads run: a prompt
/// evaluated in chunks of 64, or its last 20 tokens on top of a reused
/// cache, gives the same bits (the server's prefix reuse relies on it). A
/// single non-empty chunk merges to exactly the unsplit result.
pub const KV_CHUNK: usize = 128;

/// [`attention`] spread over rayon's pool: one task per block of query
/// heads and chunk of [`KV_CHUNK`] keys, partial results merged exactly.
/// Allocates only when `scratch` must grow.
///
/// # Errors
/// As [`attention`].
pub fn attention_par<T: KvElem>(
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
    out: &mut [f32],
    scratch: &mut AttentionScratch,
) -> Result<(), ShapeError> {
    attention_chunked_with(Isa::detect(), p, q, q_pos, kv, out, KV_CHUNK, scratch)
}

/// [`attention_par`] with an explicit instruction set and keys per task
/// (`kv_chunk >= n_kv` means one task per block of query heads and no
/// scratch).
///
/// # Errors
/// As [`attention`], and if `kv_chunk` is zero.
#[allow(clippy::too_many_arguments)] // attention's operands plus isa, chunk, scratch
pub fn attention_chunked_with<T: KvElem>(
    isa: Isa,
    p: &AttentionParams,
    q: &[f32],
    q_pos: &[i32],
    kv: &KvCache<'_, T>,
    out: &mut [f32],
    kv_chunk: usize,
    scratch: &mut AttentionScratch,
) -> Result<(), ShapeError> {
    check(p, q, q_pos, kv, out)?;
    if kv_chunk == 0 {
        return Err(ShapeError {
            op: "attention",
            detail: "kv_chunk must be non-zero".to_string(),
        });
    }
    let hd = p.head_dim;
    let block = block_len(p.n_head / p.n_head_kv);
    let n_kv = kv.pos.len();
    let n_chunks = n_kv.div_ceil(kv_chunk).max(1);

    if n_chunks == 1 {
        out.par_chunks_mut(block * hd)
            .enumerate()
            .for_each(|(b, ob)| {
                let (t, kv_head) = locate(p, block, b);
                let qb = &q[b * block * hd..(b + 1) * block * hd];
                let (mut m, mut l) = ([0.0f32; MAX_BLOCK], [0.0f32; MAX_BLOCK]);
                let (m, l) = (&mut m[..block], &mut l[..block]);
                attend_on(isa, p, qb, q_pos[t], kv, kv_head, 0..n_kv, ob, m, l);
                finish(ob, l);
            });
        return Ok(());
    }

    // One partial per (block, chunk): the block's accumulators, then its
    // heads' running maxima, then their sums: `[acc (block x head_dim) |
    // m (block) | l (block)]`.
    let part_len = block * (hd + 2);
    let need = out.len() / (block * hd) * n_chunks * part_len;
    if scratch.partials.len() < need {
        scratch.partials.resize(need, 0.0);
    }
    let partials = &mut scratch.partials[..need];
    partials
        .par_chunks_mut(part_len)
        .enumerate()
        .for_each(|(u, part)| {
            let (b, c) = (u / n_chunks, u % n_chunks);
            let (t, kv_head) = locate(p, block, b);
            let qb = &q[b * block * hd..(b + 1) * block * hd];
            let keys = c * kv_chunk..((c + 1) * kv_chunk).min(n_kv);
            let (acc, ml) = part.split_at_mut(block * hd);
            let (m, l) = ml.split_at_mut(block);
            attend_on(isa, p, qb, q_pos[t], kv, kv_head, keys, acc, m, l);
        });
    out.par_chunks_mut(block * hd)
        .zip(partials.par_chunks(n_chunks * part_len))
        .for_each(|(ob, parts)| {
            for (r, oh) in ob.chunks_exact_mut(hd).enumerate() {
                let head_parts = parts.chunks_exact(part_len).map(|part| {
                    let m = part[block * hd + r];
                    let l = part[block * hd + block + r];
                    (&part[r * hd..(r + 1) * hd], m, l)
                });
                merge(isa, head_parts, oh);
            }
        });
    Ok(())
}

/// Merge one query head's `(acc, m, l)` partials into `out`.
fn merge<'a>(
    isa: Isa,
    parts: impl Iterator<Item = (&'a [f32], f32, f32)> + Clone,
    out: &mut [f32],
) {
    let m = parts
        .clone()
        .map(|(_, m, _)| m)
        .fold(f32::NEG_INFINITY, f32::max);
    out.fill(0.0);
    let mut l = 0.0f32;
    for (acc, m_c, l_c) in parts {
        if l_c == 0.0 {
            // No visible key in this chunk (its m is -inf).
            continue;
        }
        let w = (m_c - m).exp();
        l += l_c * w;
        f32::mix(isa, out, 1.0, &[w], acc, &[0]);
    }
    finish(out, &[l]);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{AttentionParams, KvCache, KvElem, TILE};
    use crate::ops::x86::{exp, hsum, load, load_f16, store, Avx2};
    use crate::ops::Isa;
    use half::f16;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// `dot` and `mix` for one element type, with `$load` reading 8 elements
    /// as f32.
    macro_rules! kernels {
        ($dot:ident, $mix:ident, $t:ty, $load:ident) => {
            /// AVX2 twin of `dot_scalar`: four accumulators over 32 lanes.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) fn $dot(q: &[f32], k: &[$t]) -> f32 {
                let n = q.len().min(k.len());
                let (q, k) = (&q[..n], &k[..n]);
                let mut a = [_mm256_setzero_ps(); 4];
                let body = n - n % 32;
                for (qs, ks) in q[..body].chunks_exact(32).zip(k[..body].chunks_exact(32)) {
                    for u in 0..4 {
                        a[u] = _mm256_fmadd_ps(load(&qs[8 * u..]), $load(&ks[8 * u..]), a[u]);
                    }
                }
                let mut acc = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
                let body8 = n - n % 8;
                for (qs, ks) in q[body..body8]
                    .chunks_exact(8)
                    .zip(k[body..body8].chunks_exact(8))
                {
                    acc = _mm256_fmadd_ps(load(qs), $load(ks), acc);
                }
                let mut s = hsum(acc);
                for (&x, &y) in q[body8..].iter().zip(&k[body8..]) {
                    s += x * <$t as KvElem>::to_f32(y);
                }
                s
            }

            /// AVX2 twin of `mix_scalar`: a 32-column strip of the
            /// accumulator stays in four registers across the tile's rows,
            /// then 8-column strips, then a scalar tail.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) fn $mix(acc: &mut [f32], c: f32, w: &[f32], v: &[$t], rows: &[usize]) {
                let hd = acc.len();
                let vc = _mm256_set1_ps(c);
                let scaled = |a: __m256| if c == 1.0 { a } else { _mm256_mul_ps(a, vc) };
                let body32 = hd - hd % 32;
                for col in (0..body32).step_by(32) {
                    let strip = &mut acc[col..col + 32];
                    let mut a = [0, 8, 16, 24].map(|u| scaled(load(&strip[u..])));
                    for (&wi, &row) in w.iter().zip(rows) {
                        let vs = &v[row + col..row + col + 32];
                        let wv = _mm256_set1_ps(wi);
                        for u in 0..4 {
                            a[u] = _mm256_fmadd_ps($load(&vs[8 * u..]), wv, a[u]);
                        }
                    }
                    for u in 0..4 {
                        store(&mut strip[8 * u..], a[u]);
                    }
                }
                let body8 = hd - hd % 8;
                for col in (body32..body8).step_by(8) {
                    let mut a = scaled(load(&acc[col..]));
                    for (&wi, &row) in w.iter().zip(rows) {
                        let vs = &v[row + col..row + col + 8];
                        a = _mm256_fmadd_ps($load(vs), _mm256_set1_ps(wi), a);
                    }
                    store(&mut acc[col..], a);
                }
                for col in body8..hd {
                    let mut a = acc[col] * c;
                    for (&wi, &row) in w.iter().zip(rows) {
                        a += wi * <$t as KvElem>::to_f32(v[row + col]);
                    }
                    acc[col] = a;
                }
            }
        };
    }

    kernels!(dot_f32, mix_f32, f32, load);
    kernels!(dot_f16, mix_f16, f16, load_f16);

    /// AVX2 twin of the scalar arm of `super::exp_tile`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_tile(x: &mut [f32; TILE]) {
        for c in x.chunks_exact_mut(8) {
            store(c, exp(load(c)));
        }
    }

    /// `super::attend` compiled for AVX2; the token fixes the instruction
    /// set so every per-key dispatch folds to the AVX2 kernels.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)] // as `super::attend`
    pub(super) fn attend<T: KvElem>(
        t: Avx2,
        p: &AttentionParams,
        q: &[f32],
        q_pos: i32,
        kv: &KvCache<'_, T>,
        kv_head: usize,
        keys: Range<usize>,
        acc: &mut [f32],
        m: &mut [f32],
        l: &mut [f32],
    ) {
        super::attend(Isa::Avx2(t), p, q, q_pos, kv, kv_head, keys, acc, m, l);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{AttentionParams, KvCache, KvElem, TILE};
    use crate::ops::x86::v512::{exp, load, load_f16, store};
    use crate::ops::x86::Avx512;
    use crate::ops::Isa;
    use half::f16;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// `dot` and `mix` for one element type, with `$load` reading 16
    /// elements as f32: the 512-bit twins of `super::avx2`'s.
    macro_rules! kernels {
        ($dot:ident, $mix:ident, $t:ty, $load:ident) => {
            /// AVX-512 twin of `dot_scalar`: four accumulators over 64 lanes.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            pub(super) fn $dot(q: &[f32], k: &[$t]) -> f32 {
                let n = q.len().min(k.len());
                let (q, k) = (&q[..n], &k[..n]);
                let mut a = [_mm512_setzero_ps(); 4];
                let body = n - n % 64;
                for (qs, ks) in q[..body].chunks_exact(64).zip(k[..body].chunks_exact(64)) {
                    for u in 0..4 {
                        a[u] = _mm512_fmadd_ps(load(&qs[16 * u..]), $load(&ks[16 * u..]), a[u]);
                    }
                }
                let mut acc = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
                let body16 = n - n % 16;
                for (qs, ks) in q[body..body16]
                    .chunks_exact(16)
                    .zip(k[body..body16].chunks_exact(16))
                {
                    acc = _mm512_fmadd_ps(load(qs), $load(ks), acc);
                }
                let mut s = _mm512_reduce_add_ps(acc);
                for (&x, &y) in q[body16..].iter().zip(&k[body16..]) {
                    s += x * <$t as KvElem>::to_f32(y);
                }
                s
            }

            /// AVX-512 twin of `mix_scalar`: a 64-column strip of the
            /// accumulator stays in four registers across the tile's rows,
            /// then 16-column strips, then a scalar tail.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            pub(super) fn $mix(acc: &mut [f32], c: f32, w: &[f32], v: &[$t], rows: &[usize]) {
                let hd = acc.len();
                let vc = _mm512_set1_ps(c);
                let scaled = |a: __m512| if c == 1.0 { a } else { _mm512_mul_ps(a, vc) };
                let body64 = hd - hd % 64;
                for col in (0..body64).step_by(64) {
                    let strip = &mut acc[col..col + 64];
                    let mut a = [0, 16, 32, 48].map(|u| scaled(load(&strip[u..])));
                    for (&wi, &row) in w.iter().zip(rows) {
                        let vs = &v[row + col..row + col + 64];
                        let wv = _mm512_set1_ps(wi);
                        for u in 0..4 {
                            a[u] = _mm512_fmadd_ps($load(&vs[16 * u..]), wv, a[u]);
                        }
                    }
                    for u in 0..4 {
                        store(&mut strip[16 * u..], a[u]);
                    }
                }
                let body16 = hd - hd % 16;
                for col in (body64..body16).step_by(16) {
                    let mut a = scaled(load(&acc[col..]));
                    for (&wi, &row) in w.iter().zip(rows) {
                        let vs = &v[row + col..row + col + 16];
                        a = _mm512_fmadd_ps($load(vs), _mm512_set1_ps(wi), a);
                    }
                    store(&mut acc[col..], a);
                }
                for col in body16..hd {
                    let mut a = acc[col] * c;
                    for (&wi, &row) in w.iter().zip(rows) {
                        a += wi * <$t as KvElem>::to_f32(v[row + col]);
                    }
                    acc[col] = a;
                }
            }
        };
    }

    kernels!(dot_f32, mix_f32, f32, load);
    kernels!(dot_f16, mix_f16, f16, load_f16);

    /// `KvElem::dot_heads` for four heads of f16 keys: each key is widened
    /// once for the four heads (`head_dim` a multiple of 32; two
    /// accumulators per head, summed then reduced).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn dot_heads4_f16(
        q: &[f32],
        hd: usize,
        k: &[f16],
        rows: &[usize],
        out: &mut [[f32; TILE]],
    ) {
        let q = &q[..4 * hd];
        for (i, &row) in rows.iter().enumerate() {
            let kr = &k[row..row + hd];
            let mut a = [[_mm512_setzero_ps(); 2]; 4];
            for c in (0..hd).step_by(32) {
                let k0 = load_f16(&kr[c..]);
                let k1 = load_f16(&kr[c + 16..]);
                for (h, a) in a.iter_mut().enumerate() {
                    let qh = &q[h * hd + c..];
                    a[0] = _mm512_fmadd_ps(load(qh), k0, a[0]);
                    a[1] = _mm512_fmadd_ps(load(&qh[16..]), k1, a[1]);
                }
            }
            for (h, a) in a.iter().enumerate() {
                out[h][i] = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
            }
        }
    }

    /// `KvElem::mix_heads` for four heads of f16 values: each value row is
    /// widened once for the four heads, over 32-column strips of the four
    /// accumulators (`head_dim` a multiple of 32).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn mix_heads4_f16(
        acc: &mut [f32],
        hd: usize,
        c: &[f32],
        w: &[[f32; TILE]],
        v: &[f16],
        rows: &[usize],
    ) {
        let n = rows.len();
        let cv: [__m512; 4] = std::array::from_fn(|h| _mm512_set1_ps(c[h]));
        for col in (0..hd).step_by(32) {
            let mut a: [[__m512; 2]; 4] = std::array::from_fn(|h| {
                let s = &acc[h * hd + col..];
                let (a0, a1) = (load(s), load(&s[16..]));
                if c[h] == 1.0 {
                    [a0, a1]
                } else {
                    [_mm512_mul_ps(a0, cv[h]), _mm512_mul_ps(a1, cv[h])]
                }
            });
            for (i, &row) in rows.iter().enumerate().take(n) {
                let vs = &v[row + col..row + col + 32];
                let (v0, v1) = (load_f16(vs), load_f16(&vs[16..]));
                for (h, a) in a.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(w[h][i]);
                    a[0] = _mm512_fmadd_ps(v0, wv, a[0]);
                    a[1] = _mm512_fmadd_ps(v1, wv, a[1]);
                }
            }
            for (h, a) in a.iter().enumerate() {
                let s = &mut acc[h * hd + col..];
                store(s, a[0]);
                store(&mut s[16..], a[1]);
            }
        }
    }

    /// AVX-512 twin of the scalar arm of `super::exp_tile`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) fn exp_tile(x: &mut [f32; TILE]) {
        for c in x.chunks_exact_mut(16) {
            store(c, exp(load(c)));
        }
    }

    /// `super::attend` compiled for AVX-512; the token fixes the
    /// instruction set so every per-key dispatch folds to the 512-bit
    /// kernels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)] // as `super::attend`
    pub(super) fn attend<T: KvElem>(
        t: Avx512,
        p: &AttentionParams,
        q: &[f32],
        q_pos: i32,
        kv: &KvCache<'_, T>,
        kv_head: usize,
        keys: Range<usize>,
        acc: &mut [f32],
        m: &mut [f32],
        l: &mut [f32],
    ) {
        super::attend(Isa::Avx512(t), p, q, q_pos, kv, kv_head, keys, acc, m, l);
    }
}
