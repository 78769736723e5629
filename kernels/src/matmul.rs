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

use rayon::prelude::*;

use crate::quant::{kernels, Format, QuantError};

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
