//! Matrix products of quantized weights with f32 activations:
//! `out[t][r] = sum_c w[r][c] * x[t][c]`.
//!
//! As ggml's `ggml_compute_forward_mul_mat`: each activation row is first
//! quantized to the weight format's partner (`vec_dot_type`: Q8_0 for Q4_0,
//! Q5_0, Q8_0, IQ4_NL; Q8_K for the K-quants; ...), then every output is one
//! `vec_dot` of a weight row with an activation row. Work is split over
//! weight rows on rayon's pool. For many tokens (prefill) each task takes a
//! block of weight rows and runs every token against each row while it is hot
//! in L1, so a weight row is read from memory once per call, not once per
//! token.
//!
//! The block formats with SIMD kernels (Q8_0, Q5_0, Q4_K, Q6_K: what a
//! Q4_K_M model holds; Q4_0, Q4_1, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS)
//! take a typed path: the matrix and the activations are cast to blocks once
//! per call and the dispatched kernels are called directly,
//! with no per-row checks or `Result`s. That path computes tiles:
//!
//! - one token (decode, a GEMV): four weight rows against the activation
//!   row (`rows4`: the activation blocks, their sums and scales are
//!   loaded once per four rows), the rows of the next tile prefetched, as
//!   the whole matrix streams from memory once per call;
//! - many tokens (prefill): two weight rows against four activation rows
//!   (`tile2x4`: each weight block is unpacked once per four tokens, each
//!   activation block loaded once per two rows), over token blocks of about
//!   L1 size; an odd last row takes `kernel4`, the last one to three tokens
//!   the one-row kernel.
//!
//! Every tile computes each of its outputs with exactly the operations of
//! the one-row kernel, so the result does not depend on the tiling or the
//! token count (tests/matmul.rs checks this bit for bit). The other formats
//! go through the byte-level `vec_dot` of the kernel table.

use rayon::prelude::*;

use crate::quant::simd::{self, SimdDot};
use crate::quant::{blocks_from_bytes, kernels, Block, Format, QuantError};

/// A weight matrix of `rows` rows of `cols` values, stored row after row in
/// `format` (a GGUF tensor with `dims = [cols, rows]`).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    format: Format,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` values.
    pub fn new(
        format: Format,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, QuantError> {
        let row_bytes = format.row_size(cols)?;
        let expected = row_bytes
            .checked_mul(rows)
            .ok_or(QuantError::Overflow { format, n: cols })?;
        if data.len() != expected {
            return Err(QuantError::PartialBlock {
                format,
                len: data.len(),
                type_size: row_bytes,
            });
        }
        Ok(QMatrix {
            format,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Row `r` as stored.
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Row `r` dequantized into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), QuantError> {
        (kernels(self.format).dequantize_row)(self.row(r), out)
    }
}

/// Memory reused across calls: the quantized activations and the
/// row-major partial results. Grows to the largest call and stays there.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    act: Vec<u8>,
    tmp: Vec<f32>,
    /// Activations packed for [`crate::packed`].
    #[cfg(target_arch = "x86_64")]
    apack: Vec<crate::packed::APairBuf>,
    /// The activation packed for [`crate::packed::gemv`].
    #[cfg(target_arch = "x86_64")]
    gpack: Vec<crate::packed::GPair>,
}

/// Weight rows per parallel task: enough tasks for rayon to balance (about
/// 8 per thread), each large enough that the task overhead is noise.
fn rows_per_task(rows: usize, n_tokens: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = rows.div_ceil(8 * threads);
    // For many tokens a task's work is rows * tokens dot products.
    let min_rows = (256 / n_tokens.max(1)).clamp(1, 64);
    by_balance.clamp(min_rows, 4096)
}

/// `out[t * w.rows() + r] = dot(w.row(r), x[t * w.cols() ..][.. w.cols()])`
/// for every token `t < n_tokens` and weight row `r`.
///
/// # Errors
/// If the operand lengths do not match, or the weight format has no dot
/// product.
pub fn matmul(
    w: &QMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<(), QuantError> {
    let (rows, cols) = (w.rows, w.cols);
    let check = |expected: usize, got: usize| {
        if expected == got {
            Ok(())
        } else {
            Err(QuantError::LengthMismatch {
                format: w.format,
                expected,
                got,
            })
        }
    };
    check(n_tokens * cols, x.len())?;
    check(n_tokens * rows, out.len())?;
    let k = kernels(w.format);
    let act_format = k.vec_dot_type;
    let vec_dot = k.vec_dot_with(act_format)?;
    let quantize = kernels(act_format).quantizer()?;
    let act_row = act_format.row_size(cols)?;
    if n_tokens == 0 || rows == 0 || cols == 0 {
        // Nothing to compute (and no zero-sized chunks to split into): an
        // empty sum is zero.
        out.fill(0.0);
        return Ok(());
    }

    scratch.act.resize(n_tokens * act_row, 0);
    if n_tokens == 1 {
        quantize(x, &mut scratch.act)?;
    } else {
        scratch
            .act
            .par_chunks_mut(act_row)
            .zip(x.par_chunks(cols))
            .try_for_each(|(q, xr)| quantize(xr, q))?;
    }
    let act = &scratch.act;
    let chunk = rows_per_task(rows, n_tokens);

    #[cfg(target_arch = "x86_64")]
    if n_tokens == 1 {
        if let Some(r) = crate::packed::gemv(w, act, out, &mut scratch.gpack, chunk) {
            return r;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if n_tokens >= crate::packed::MIN_TOKENS {
        if let Some(r) = crate::packed::run(w, act, n_tokens, out, &mut scratch.apack, chunk) {
            return r;
        }
    }
    if let Some(run) = tiled_kernels(w.format) {
        return run(w, act, n_tokens, out, &mut scratch.tmp, chunk);
    }

    if n_tokens == 1 {
        return out
            .par_chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(c, o)| {
                let r0 = c * chunk;
                for (i, o) in o.iter_mut().enumerate() {
                    *o = vec_dot(w.row(r0 + i), act)?;
                }
                Ok(())
            });
    }

    // Results land row-major ([rows][n_tokens]) so each task owns a
    // contiguous slice, then are transposed into `out`.
    scratch.tmp.resize(rows * n_tokens, 0.0);
    scratch
        .tmp
        .par_chunks_mut(chunk * n_tokens)
        .enumerate()
        .try_for_each(|(c, tmp)| {
            let r0 = c * chunk;
            for (i, per_token) in tmp.chunks_exact_mut(n_tokens).enumerate() {
                let wr = w.row(r0 + i);
                for (t, o) in per_token.iter_mut().enumerate() {
                    *o = vec_dot(wr, &act[t * act_row..(t + 1) * act_row])?;
                }
            }
            Ok::<(), QuantError>(())
        })?;
    let tmp = &scratch.tmp;
    out.par_chunks_mut(rows).enumerate().for_each(|(t, o)| {
        for (r, o) in o.iter_mut().enumerate() {
            *o = tmp[r * n_tokens + t];
        }
    });
    Ok(())
}

/// [`run_tiled`] for one weight block type.
type TiledFn =
    fn(&QMatrix<'_>, &[u8], usize, &mut [f32], &mut Vec<f32>, usize) -> Result<(), QuantError>;

fn tiled_kernels(format: Format) -> Option<TiledFn> {
    struct Tiled;
    impl simd::FormatVisitor for Tiled {
        type Out = TiledFn;
        fn visit<W: SimdDot>(self) -> TiledFn {
            run_tiled::<W>
        }
    }
    simd::visit(format, Tiled)
}

/// How far ahead of the rows being multiplied the one-token path asks for
/// weight rows to be brought into cache.
const PREFETCH_ROWS: usize = 8;

/// Hint the CPU to bring `data[start..start + len]` (clipped to `data`) into
/// cache: the one-token matmul streams the whole matrix once, and the rows of
/// the next tile are requested while this one is computed.
#[inline(always)]
pub(crate) fn prefetch(data: &[u8], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = start.saturating_add(len).min(data.len());
        for off in (start..end).step_by(64) {
            // SAFETY: SSE is part of x86_64; a prefetch never faults and
            // reads nothing observable, and the pointer is inside `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data[off..].as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, start, len);
}

/// Activation bytes a task keeps hot while it sweeps its weight rows (about
/// L1): the tokens are taken in blocks of this size.
const ACT_BLOCK_BYTES: usize = 32 * 1024;

/// The typed matmul of [`matmul`] for weight blocks `W` and activations
/// already quantized into `act`, with `chunk` weight rows per task.
fn run_tiled<W: SimdDot>(
    w: &QMatrix<'_>,
    act: &[u8],
    n_tokens: usize,
    out: &mut [f32],
    tmp: &mut Vec<f32>,
    chunk: usize,
) -> Result<(), QuantError> {
    type A<W> = <W as SimdDot>::Act;
    let k = simd::best::<W>();
    let (one, four) = (k.row, k.row_x4);
    let rows = w.rows;
    let wb = blocks_from_bytes::<W>(w.data)?;
    let ab = blocks_from_bytes::<A<W>>(act)?;
    // Checked by `QMatrix::new` and `row_size`: whole blocks on both sides.
    let nbw = w.cols / W::QK;
    let nba = w.cols / A::<W>::QK;
    debug_assert_eq!(wb.len(), rows * nbw);
    debug_assert_eq!(ab.len(), n_tokens * nba);
    let wrow = |r: usize| &wb[r * nbw..(r + 1) * nbw];
    let arow = |t: usize| &ab[t * nba..(t + 1) * nba];

    if n_tokens == 1 {
        let rows4 = k.rows4;
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            let r0 = c * chunk;
            let mut i = 0;
            for o in o.chunks_exact_mut(4) {
                let r = r0 + i;
                prefetch(w.data, (r + PREFETCH_ROWS) * w.row_bytes, 4 * w.row_bytes);
                o.copy_from_slice(&rows4([wrow(r), wrow(r + 1), wrow(r + 2), wrow(r + 3)], ab));
                i += 4;
            }
            for o in &mut o[i..] {
                *o = one(wrow(r0 + i), ab);
                i += 1;
            }
        });
        return Ok(());
    }

    let tile2x4 = k.tile2x4;
    let transpose = |tmp: &[f32], out: &mut [f32]| {
        out.par_chunks_mut(rows).enumerate().for_each(|(t, o)| {
            for (r, o) in o.iter_mut().enumerate() {
                *o = tmp[r * n_tokens + t];
            }
        });
    };
    tmp.resize(rows * n_tokens, 0.0);

    if n_tokens < 4 {
        // Two or three tokens (a server decoding a few slots together): too
        // few for a 2x4 tile. As for one token, the matrix streams from
        // memory once, four rows at a time with the next ones prefetched,
        // and every token's dot products reuse those rows from L1.
        let rows4 = k.rows4;
        tmp.par_chunks_mut(chunk * n_tokens)
            .enumerate()
            .for_each(|(c, tmp)| {
                let r0 = c * chunk;
                let mut per_row = tmp.chunks_exact_mut(4 * n_tokens);
                let mut i = 0;
                for four_rows in &mut per_row {
                    let r = r0 + i;
                    prefetch(w.data, (r + PREFETCH_ROWS) * w.row_bytes, 4 * w.row_bytes);
                    let w4 = [wrow(r), wrow(r + 1), wrow(r + 2), wrow(r + 3)];
                    for t in 0..n_tokens {
                        for (k, d) in rows4(w4, arow(t)).into_iter().enumerate() {
                            four_rows[k * n_tokens + t] = d;
                        }
                    }
                    i += 4;
                }
                for per_token in per_row.into_remainder().chunks_exact_mut(n_tokens) {
                    for (t, o) in per_token.iter_mut().enumerate() {
                        *o = one(wrow(r0 + i), arow(t));
                    }
                    i += 1;
                }
            });
        transpose(tmp, out);
        return Ok(());
    }

    let act_row = size_of::<A<W>>() * nba;
    let t_block = (ACT_BLOCK_BYTES / act_row.max(1)).max(4) / 4 * 4;
    tmp.par_chunks_mut(chunk * n_tokens)
        .enumerate()
        .for_each(|(c, tmp)| {
            let r0 = c * chunk;
            let arows4 = |t: usize| [arow(t), arow(t + 1), arow(t + 2), arow(t + 3)];
            for t0 in (0..n_tokens).step_by(t_block) {
                let t1 = (t0 + t_block).min(n_tokens);
                // Weight rows two at a time, then the odd last row alone.
                let mut pairs = tmp.chunks_exact_mut(2 * n_tokens);
                let mut i = 0;
                for two in &mut pairs {
                    if t0 == 0 {
                        // A few tokens leave the loop bound by memory, as
                        // for one token: request the next rows early.
                        prefetch(
                            w.data,
                            (r0 + i + PREFETCH_ROWS) * w.row_bytes,
                            2 * w.row_bytes,
                        );
                    }
                    let pair = [wrow(r0 + i), wrow(r0 + i + 1)];
                    let (p0, p1) = two.split_at_mut(n_tokens);
                    let mut t = t0;
                    while t + 4 <= t1 {
                        let r = tile2x4(pair, arows4(t));
                        p0[t..t + 4].copy_from_slice(&r[0]);
                        p1[t..t + 4].copy_from_slice(&r[1]);
                        t += 4;
                    }
                    for t in t..t1 {
                        p0[t] = one(pair[0], arow(t));
                        p1[t] = one(pair[1], arow(t));
                    }
                    i += 2;
                }
                for per_token in pairs.into_remainder().chunks_exact_mut(n_tokens) {
                    let wr = wrow(r0 + i);
                    let mut t = t0;
                    while t + 4 <= t1 {
                        per_token[t..t + 4].copy_from_slice(&four(wr, arows4(t)));
                        t += 4;
                    }
                    for (t, o) in per_token.iter_mut().enumerate().take(t1).skip(t) {
                        *o = one(wr, arow(t));
                    }
                    i += 1;
                }
            }
        });
    transpose(tmp, out);
    Ok(())
}
