//! Named intermediates: what a forward pass computed, layer by layer, under
//! the names llama.cpp gives the same tensors, so that a model that
//! disagrees with llama.cpp shows at which layer and which step.
//!
//! A [`Tap`] set on a [`Workspace`](crate::model::Workspace) receives every
//! tensor the model files name (`attn_norm` of layer 3 is `attn_norm-3`,
//! as llama.cpp's graph callback names it). No tap is the default, and then
//! each named point costs one branch: nothing is read back from the device.
//!
//! Shapes are llama.cpp's `ne`, innermost first: a per-head tensor of a
//! batch of `n` tokens is `[head_dim, n_head, n, 1]`, a row tensor is
//! `[n_embd, n, 1, 1]`. [`write_eval_callback`] prints a tensor exactly as
//! llama.cpp's `llama-eval-callback` does (the first and last three values
//! of each dimension, then the sum), which `scripts/compare-tap.py` reads
//! from both programs to find the first tensor that diverges.
//!
//! The names, in the order a layer emits them (not every architecture has
//! every step): `embd` or `inp_scaled` (Gemma's scaled embedding), then
//! per layer `attn_norm`, `Qcur_normed`, `Kcur_normed` (QK-norm), `Qcur`,
//! `Kcur` (after RoPE), `Vcur`, `kqv_out` (attention, before the output
//! projection), `attn_out` (after it), `attn_post_norm`, `sa_out` or
//! `ffn_inp` (the residual after attention), `ffn_norm`, `ffn_gate`,
//! `ffn_up`, `ffn_geglu` or `ffn_swiglu`, `ffn_out`, `ffn_post_norm`,
//! `l_out`; and last `result_norm` and `result_output` (the logits) of the
//! rows that asked for logits.

use std::fmt;
use std::io::{self, Write};

use crate::backend::Backend;
use crate::error::Result;

/// Where a tensor was computed: its step and, inside the layers, the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TapName {
    pub op: &'static str,
    pub layer: Option<usize>,
}

impl fmt::Display for TapName {
    /// llama.cpp's name: `attn_norm-3`, or `result_norm` outside the layers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            Some(il) => write!(f, "{}-{il}", self.op),
            None => f.write_str(self.op),
        }
    }
}

/// Receives the named intermediates of a forward pass.
pub trait Tap {
    /// Whether to read `name` back at all (a copy from the device); by
    /// default every tensor.
    fn wants(&self, name: &TapName) -> bool {
        let _ = name;
        true
    }

    /// One tensor: `ne` as llama.cpp orders it (innermost first), `values`
    /// of length `ne.iter().product()`, row-major in that order.
    fn tensor(&mut self, name: TapName, ne: [usize; 4], values: &[f32]) -> Result<()>;
}

/// A tensor a [`Recorder`] kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Tapped {
    pub name: TapName,
    pub ne: [usize; 4],
    pub values: Vec<f32>,
}

/// A [`Tap`] that keeps everything, for tests and scripts.
#[derive(Debug, Default)]
pub struct Recorder {
    pub tensors: Vec<Tapped>,
}

impl Tap for Recorder {
    fn tensor(&mut self, name: TapName, ne: [usize; 4], values: &[f32]) -> Result<()> {
        self.tensors.push(Tapped {
            name,
            ne,
            values: values.to_vec(),
        });
        Ok(())
    }
}

/// The tap point of a workspace: a [`Tap`] or nothing, and the buffer the
/// tensors are read into.
#[derive(Default)]
pub(crate) struct TapPoint {
    sink: Option<Box<dyn Tap + Send>>,
    buf: Vec<f32>,
}

impl TapPoint {
    pub(crate) fn set(&mut self, tap: Option<Box<dyn Tap + Send>>) -> Option<Box<dyn Tap + Send>> {
        std::mem::replace(&mut self.sink, tap)
    }

    /// `t`, a row tensor (`rows x cols`), as `op` of layer `layer`.
    #[inline]
    pub(crate) fn rows<B: Backend>(
        &mut self,
        be: &B,
        op: &'static str,
        layer: impl Into<Option<usize>>,
        t: &B::Tensor,
    ) -> Result<()> {
        if self.sink.is_none() {
            return Ok(());
        }
        self.emit(
            be,
            TapName {
                op,
                layer: layer.into(),
            },
            None,
            t,
        )
    }

    /// `t`, each row of which holds `heads` heads, as `op` of layer `layer`.
    #[inline]
    pub(crate) fn heads<B: Backend>(
        &mut self,
        be: &B,
        op: &'static str,
        layer: usize,
        heads: usize,
        t: &B::Tensor,
    ) -> Result<()> {
        if self.sink.is_none() {
            return Ok(());
        }
        let name = TapName {
            op,
            layer: Some(layer),
        };
        self.emit(be, name, Some(heads), t)
    }

    #[cold]
    fn emit<B: Backend>(
        &mut self,
        be: &B,
        name: TapName,
        heads: Option<usize>,
        t: &B::Tensor,
    ) -> Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        if !sink.wants(&name) {
            return Ok(());
        }
        let (rows, cols) = be.read(t, &mut self.buf)?;
        let ne = match heads {
            Some(heads) if heads > 0 => [cols / heads, heads, rows, 1],
            _ => [cols, rows, 1, 1],
        };
        sink.tensor(name, ne, &self.buf)
    }
}

/// How many values of each dimension llama-eval-callback prints at each
/// end (`common_debug_print_tensor(.., n = 3)`).
const EDGE: usize = 3;

/// The indices of a dimension of `ne` that llama-eval-callback prints: all
/// of them, or the first and last `EDGE` (3) when there are more than twice
/// as many. `None` marks where it prints `...`.
pub fn printed_indices(ne: usize) -> Vec<Option<usize>> {
    if ne > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((ne - EDGE..ne).map(Some))
            .collect()
    } else {
        (0..ne).map(Some).collect()
    }
}

/// Writes one tensor as llama.cpp's `llama-eval-callback` prints it: a
/// header `hearth_tap: NAME = (f32) ... = {ne0, ne1, ne2, ne3}`, the first
/// and last values of each dimension in brackets, then `sum = S` (summed in
/// f32 in index order, as llama.cpp does).
pub fn write_eval_callback(
    w: &mut impl Write,
    name: &TapName,
    ne: [usize; 4],
    values: &[f32],
) -> io::Result<()> {
    let [n0, n1, n2, n3] = ne;
    writeln!(
        w,
        "hearth_tap: {:>24} = (f32) {:>10}(hearth) = {{{n0}, {n1}, {n2}, {n3}}}",
        name.to_string(),
        name.op
    )?;
    let at =
        |i0: usize, i1: usize, i2: usize, i3: usize| values[((i3 * n2 + i2) * n1 + i1) * n0 + i0];
    let (d0, d1, d2) = (
        printed_indices(n0),
        printed_indices(n1),
        printed_indices(n2),
    );
    for i3 in 0..n3 {
        writeln!(w, "    [")?;
        for i2 in &d2 {
            let Some(i2) = *i2 else {
                writeln!(w, "        ..., ")?;
                continue;
            };
            writeln!(w, "        [")?;
            for i1 in &d1 {
                let Some(i1) = *i1 else {
                    writeln!(w, "            ..., ")?;
                    continue;
                };
                write!(w, "            [")?;
                for i0 in &d0 {
                    match *i0 {
                        None => write!(w, "   ..., ")?,
                        Some(i0) => {
                            write!(w, "{:12.4}", at(i0, i1, i2, i3))?;
                            if i0 + 1 < n0 {
                                write!(w, ", ")?;
                            }
                        }
                    }
                }
                writeln!(w, "  ],")?;
            }
            writeln!(w, "        ],")?;
        }
        writeln!(w, "    ]")?;
        let sum = (0..n2 * n1 * n0).fold(0f32, |s, i| s + values[i3 * n2 * n1 * n0 + i]);
        writeln!(w, "    sum = {sum:.6}")?;
    }
    Ok(())
}

/// A [`Tap`] that writes every tensor it is given with
/// [`write_eval_callback`], optionally only those of some steps or layers.
pub struct EvalCallbackWriter<W: Write> {
    out: W,
    ops: Vec<String>,
    layers: Vec<usize>,
}

impl<W: Write> EvalCallbackWriter<W> {
    /// Writes to `out`; `ops` and `layers`, when not empty, keep only
    /// those steps (`attn_norm`) and layers (tensors outside the layers are
    /// kept whatever `layers` says).
    pub fn new(out: W, ops: Vec<String>, layers: Vec<usize>) -> Self {
        EvalCallbackWriter { out, ops, layers }
    }
}

impl<W: Write> Tap for EvalCallbackWriter<W> {
    fn wants(&self, name: &TapName) -> bool {
        (self.ops.is_empty() || self.ops.iter().any(|o| o == name.op))
            && (self.layers.is_empty() || name.layer.is_none_or(|l| self.layers.contains(&l)))
    }

    fn tensor(&mut self, name: TapName, ne: [usize; 4], values: &[f32]) -> Result<()> {
        write_eval_callback(&mut self.out, &name, ne, values)?;
        // Flushed per tensor: the tap is owned by the workspace, and what
        // was written must be there even if a later step fails.
        Ok(self.out.flush()?)
    }
}
