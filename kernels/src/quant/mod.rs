//! Quantized block formats, laid out exactly as ggml stores them on disk.
//!
//! One file per format. Each holds the `#[repr(C)]` block (a compile-time
//! size assert pins it to ggml's `static_assert` in `ggml-common.h`), the
//! scalar reference `dequantize_row_*`, `quantize_row_*` and the dot product
//! named after its operands (`vec_dot_q4_K_q8_K`), then any SIMD variants.
//!
//! Alignment: every block struct here is made of byte arrays only, so it has
//! alignment 1 and a slice of blocks can be borrowed from any byte offset of a
//! memory-mapped GGUF file (ggml's blocks with `ggml_half` fields have
//! alignment 2 and the file only guarantees the tensor data alignment).
//! Multi-byte fields are decoded with `from_le_bytes` by accessor methods.
//!
//! The kernel table ([`kernels`]) is plain data, like ggml's `type_traits` and
//! `type_traits_cpu`: a `match` on the [`Format`] returns a `&'static`
//! [`Kernels`]. Combinations that do not exist (a weight format with the wrong
//! activation format, a format without a dot product) are a [`QuantError`].

// The public functions spell ggml's names (`vec_dot_q4_K_q8_K`,
// `Format::Q4_K`) so that a grep for the ggml name finds the Rust twin.
#![allow(non_snake_case)]
// Index loops mirror ggml's index arithmetic, so each kernel can be checked
// line by line against the C it follows.
#![allow(clippy::needless_range_loop)]

use bytemuck::Pod;

#[cfg(target_arch = "x86_64")]
mod block32_x86;
pub mod float;
pub mod iq4_nl;
pub mod iq4_xs;
#[cfg(target_arch = "x86_64")]
pub(crate) mod k16_x86;
mod kquants;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
pub mod simd;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_util;

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use iq4_nl::BlockIQ4NL;
pub use iq4_xs::BlockIQ4XS;
pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8K;

/// Values per super-block of the K-quants (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;

/// The storage formats this module implements, named as ggml names them
/// (`enum ggml_type` in ggml.h).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ4_NL,
    IQ4_XS,
}

impl Format {
    /// Every format, in ggml's type order.
    pub const ALL: [Format; 17] = [
        Format::F32,
        Format::F16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q8_1,
        Format::Q2_K,
        Format::Q3_K,
        Format::Q4_K,
        Format::Q5_K,
        Format::Q6_K,
        Format::Q8_K,
        Format::IQ4_NL,
        Format::IQ4_XS,
        Format::BF16,
    ];

    /// Whether weights are stored in this format: every format but the
    /// activation-only Q8_1 and Q8_K.
    pub const fn is_weight(self) -> bool {
        !matches!(self, Format::Q8_1 | Format::Q8_K)
    }

    /// The weight formats ([`is_weight`](Self::is_weight)), in ggml's type order.
    pub fn weights() -> impl Iterator<Item = Format> {
        Self::ALL.into_iter().filter(|f| f.is_weight())
    }

    /// ggml's name for the type (`type_name` in ggml.c's `type_traits`).
    pub const fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::BF16 => "bf16",
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
            Format::Q5_0 => "q5_0",
            Format::Q5_1 => "q5_1",
            Format::Q8_0 => "q8_0",
            Format::Q8_1 => "q8_1",
            Format::Q2_K => "q2_K",
            Format::Q3_K => "q3_K",
            Format::Q4_K => "q4_K",
            Format::Q5_K => "q5_K",
            Format::Q6_K => "q6_K",
            Format::Q8_K => "q8_K",
            Format::IQ4_NL => "iq4_nl",
            Format::IQ4_XS => "iq4_xs",
        }
    }

    /// Values per block (`blck_size` in ggml.c's `type_traits`).
    pub const fn block_size(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 => 32,
            Format::Q8_0 | Format::Q8_1 | Format::IQ4_NL => 32,
            Format::Q2_K | Format::Q3_K | Format::Q4_K | Format::Q5_K => QK_K,
            Format::Q6_K | Format::Q8_K | Format::IQ4_XS => QK_K,
        }
    }

    /// Bytes per block (`type_size` in ggml.c's `type_traits`).
    pub const fn type_size(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q4_0 => size_of::<BlockQ4_0>(),
            Format::Q4_1 => size_of::<BlockQ4_1>(),
            Format::Q5_0 => size_of::<BlockQ5_0>(),
            Format::Q5_1 => size_of::<BlockQ5_1>(),
            Format::Q8_0 => size_of::<BlockQ8_0>(),
            Format::Q8_1 => size_of::<BlockQ8_1>(),
            Format::Q2_K => size_of::<BlockQ2K>(),
            Format::Q3_K => size_of::<BlockQ3K>(),
            Format::Q4_K => size_of::<BlockQ4K>(),
            Format::Q5_K => size_of::<BlockQ5K>(),
            Format::Q6_K => size_of::<BlockQ6K>(),
            Format::Q8_K => size_of::<BlockQ8K>(),
            Format::IQ4_NL => size_of::<BlockIQ4NL>(),
            Format::IQ4_XS => size_of::<BlockIQ4XS>(),
        }
    }

    /// Bytes taken by a row of `n` values, or an error if `n` is not a whole
    /// number of blocks (`ggml_row_size`).
    pub fn row_size(self, n: usize) -> Result<usize, QuantError> {
        let qk = self.block_size();
        if !n.is_multiple_of(qk) {
            return Err(QuantError::NotBlockMultiple {
                format: self,
                n,
                block_size: qk,
            });
        }
        (n / qk)
            .checked_mul(self.type_size())
            .ok_or(QuantError::Overflow { format: self, n })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a quantized-row kernel refused its input. No kernel panics on a bad
/// length: each checks its slices first and returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// A byte buffer is not a whole number of blocks.
    #[error("{format}: {len} bytes is not a whole number of {type_size}-byte blocks")]
    PartialBlock {
        format: Format,
        len: usize,
        type_size: usize,
    },
    /// A float row is not a whole number of blocks.
    #[error("{format}: a row of {n} values is not a multiple of the block size {block_size}")]
    NotBlockMultiple {
        format: Format,
        n: usize,
        block_size: usize,
    },
    /// The two sides of a kernel disagree on the number of values.
    #[error("{format}: the blocks hold {expected} values but the other operand has {got}")]
    LengthMismatch {
        format: Format,
        expected: usize,
        got: usize,
    },
    /// A row size does not fit in `usize`.
    #[error("{format}: the size of a row of {n} values overflows")]
    Overflow { format: Format, n: usize },
    /// The format has no `quantize_row` here.
    #[error("{0}: quantize_row is not implemented")]
    NoQuantize(Format),
    /// The format is never a weight of a dot product (ggml's `vec_dot` is
    /// absent for it, as for the activation-only Q8_1 and Q8_K).
    #[error("{0}: there is no vec_dot with this format as the weight")]
    NoVecDot(Format),
    /// The weight format's dot product takes another activation format.
    #[error("vec_dot of {weight} weights takes {expected} activations, not {activation}")]
    UnsupportedPair {
        weight: Format,
        activation: Format,
        expected: Format,
    },
}

/// A ggml block: `QK` values in `size_of::<Self>()` bytes, alignment 1.
pub trait Block: Pod {
    /// The format this block belongs to.
    const FORMAT: Format;
    /// Values per block.
    const QK: usize;

    /// Dequantize `x` into `y`, which must hold `x.len() * QK` values.
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError>;
}

/// `impl Block` and `impl Quantize` for a block type from its format, its
/// values per block and its two named ggml functions.
macro_rules! impl_block {
    ($b:ty, $format:ident, $qk:expr, $dequantize:path, $quantize:path) => {
        impl $crate::quant::Block for $b {
            const FORMAT: $crate::quant::Format = $crate::quant::Format::$format;
            const QK: usize = $qk;
            fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), $crate::quant::QuantError> {
                $dequantize(x, y)
            }
        }
        impl $crate::quant::Quantize for $b {
            fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), $crate::quant::QuantError> {
                $quantize(x, y)
            }
        }
    };
}
use impl_block;

/// A block that can be produced from floats (ggml's `from_float`).
pub trait Quantize: Block {
    /// Quantize `x` (`y.len() * QK` values) into `y`.
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError>;
}

/// A weight block with a dot product against activation blocks `A`.
pub trait VecDot<A: Block>: Block {
    /// `sum_i w_i * a_i` over two rows holding the same number of values.
    fn vec_dot(w: &[Self], a: &[A]) -> Result<f32, QuantError>;
}

/// Borrow a byte buffer as blocks. Never fails on alignment (all blocks have
/// alignment 1); fails with [`QuantError::PartialBlock`] on a length that is
/// not a whole number of blocks.
pub fn blocks_from_bytes<B: Block>(bytes: &[u8]) -> Result<&[B], QuantError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| partial_block::<B>(bytes.len()))
}

/// Mutable twin of [`blocks_from_bytes`].
pub fn blocks_from_bytes_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], QuantError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| partial_block::<B>(len))
}

fn partial_block<B: Block>(len: usize) -> QuantError {
    QuantError::PartialBlock {
        format: B::FORMAT,
        len,
        type_size: size_of::<B>(),
    }
}

/// Check that `n_blocks` blocks of `format` (`qk` values each) match a row of
/// `n_values` values.
pub(crate) fn check_len(
    format: Format,
    qk: usize,
    n_blocks: usize,
    n_values: usize,
) -> Result<(), QuantError> {
    if !n_values.is_multiple_of(qk) {
        return Err(QuantError::NotBlockMultiple {
            format,
            n: n_values,
            block_size: qk,
        });
    }
    if n_values / qk != n_blocks {
        return Err(QuantError::LengthMismatch {
            format,
            expected: n_blocks.saturating_mul(qk),
            got: n_values,
        });
    }
    Ok(())
}

/// Check that a weight row and an activation row hold the same number of
/// values.
pub(crate) fn check_pair<W: Block, A: Block>(w: &[W], a: &[A]) -> Result<(), QuantError> {
    let n_w = w.len().saturating_mul(W::QK);
    let n_a = a.len().saturating_mul(A::QK);
    if n_w != n_a {
        return Err(QuantError::LengthMismatch {
            format: W::FORMAT,
            expected: n_w,
            got: n_a,
        });
    }
    Ok(())
}

/// Dequantize a row stored as raw bytes.
pub type DequantizeRowFn = fn(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError>;
/// Quantize a row of floats into raw bytes.
pub type QuantizeRowFn = fn(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError>;
/// Dot product of a weight row with an activation row, both raw bytes.
pub type VecDotFn = fn(weights: &[u8], activations: &[u8]) -> Result<f32, QuantError>;

/// The kernels of one format, as ggml's `type_traits` + `type_traits_cpu`.
#[derive(Debug)]
pub struct Kernels {
    pub format: Format,
    pub dequantize_row: DequantizeRowFn,
    /// `None` where this module has no quantizer for the format.
    pub quantize_row: Option<QuantizeRowFn>,
    /// `None` for the activation-only formats (Q8_1, Q8_K).
    pub vec_dot: Option<VecDotFn>,
    /// The format the activations must be quantized to for `vec_dot`.
    pub vec_dot_type: Format,
}

impl Kernels {
    /// The dot product of this format's weights with `activation` rows, or a
    /// typed error if ggml has no such pairing.
    pub fn vec_dot_with(&self, activation: Format) -> Result<VecDotFn, QuantError> {
        let f = self.vec_dot.ok_or(QuantError::NoVecDot(self.format))?;
        if activation != self.vec_dot_type {
            return Err(QuantError::UnsupportedPair {
                weight: self.format,
                activation,
                expected: self.vec_dot_type,
            });
        }
        Ok(f)
    }

    /// The quantizer, or a typed error if this format has none here.
    pub fn quantizer(&self) -> Result<QuantizeRowFn, QuantError> {
        self.quantize_row.ok_or(QuantError::NoQuantize(self.format))
    }
}

/// The kernel set of `format`.
pub fn kernels(format: Format) -> &'static Kernels {
    match format {
        Format::F32 => &float::KERNELS_F32,
        Format::F16 => &float::KERNELS_F16,
        Format::BF16 => &float::KERNELS_BF16,
        Format::Q4_0 => &KERNELS_Q4_0,
        Format::Q4_1 => &KERNELS_Q4_1,
        Format::Q5_0 => &KERNELS_Q5_0,
        Format::Q5_1 => &KERNELS_Q5_1,
        Format::Q8_0 => &KERNELS_Q8_0,
        Format::Q8_1 => &KERNELS_Q8_1,
        Format::Q2_K => &KERNELS_Q2_K,
        Format::Q3_K => &KERNELS_Q3_K,
        Format::Q4_K => &KERNELS_Q4_K,
        Format::Q5_K => &KERNELS_Q5_K,
        Format::Q6_K => &KERNELS_Q6_K,
        Format::Q8_K => &KERNELS_Q8_K,
        Format::IQ4_NL => &KERNELS_IQ4_NL,
        Format::IQ4_XS => &KERNELS_IQ4_XS,
    }
}

/// The dot product for `weight` rows against `activation` rows, or a typed
/// error for a pairing ggml does not have.
pub fn vec_dot_for(weight: Format, activation: Format) -> Result<VecDotFn, QuantError> {
    kernels(weight).vec_dot_with(activation)
}

fn dequantize_bytes<B: Block>(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    B::dequantize_row(blocks_from_bytes::<B>(src)?, dst)
}

fn quantize_bytes<B: Quantize>(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    B::quantize_row(src, blocks_from_bytes_mut::<B>(dst)?)
}

fn vec_dot_bytes<W: VecDot<A>, A: Block>(w: &[u8], a: &[u8]) -> Result<f32, QuantError> {
    W::vec_dot(blocks_from_bytes::<W>(w)?, blocks_from_bytes::<A>(a)?)
}

const fn block_kernels<W: Quantize + VecDot<A>, A: Block>() -> Kernels {
    Kernels {
        format: W::FORMAT,
        dequantize_row: dequantize_bytes::<W>,
        quantize_row: Some(quantize_bytes::<W>),
        vec_dot: Some(vec_dot_bytes::<W, A>),
        vec_dot_type: A::FORMAT,
    }
}

const fn activation_kernels<B: Quantize>() -> Kernels {
    Kernels {
        format: B::FORMAT,
        dequantize_row: dequantize_bytes::<B>,
        quantize_row: Some(quantize_bytes::<B>),
        vec_dot: None,
        vec_dot_type: B::FORMAT,
    }
}

// The pairings are ggml-cpu.c's `type_traits_cpu[].vec_dot_type`.
static KERNELS_Q4_0: Kernels = block_kernels::<BlockQ4_0, BlockQ8_0>();
static KERNELS_Q4_1: Kernels = block_kernels::<BlockQ4_1, BlockQ8_1>();
static KERNELS_Q5_0: Kernels = block_kernels::<BlockQ5_0, BlockQ8_0>();
static KERNELS_Q5_1: Kernels = block_kernels::<BlockQ5_1, BlockQ8_1>();
static KERNELS_Q8_0: Kernels = block_kernels::<BlockQ8_0, BlockQ8_0>();
static KERNELS_Q8_1: Kernels = activation_kernels::<BlockQ8_1>();
static KERNELS_Q2_K: Kernels = block_kernels::<BlockQ2K, BlockQ8K>();
static KERNELS_Q3_K: Kernels = block_kernels::<BlockQ3K, BlockQ8K>();
static KERNELS_Q4_K: Kernels = block_kernels::<BlockQ4K, BlockQ8K>();
static KERNELS_Q5_K: Kernels = block_kernels::<BlockQ5K, BlockQ8K>();
static KERNELS_Q6_K: Kernels = block_kernels::<BlockQ6K, BlockQ8K>();
static KERNELS_Q8_K: Kernels = activation_kernels::<BlockQ8K>();
static KERNELS_IQ4_NL: Kernels = block_kernels::<BlockIQ4NL, BlockQ8_0>();
static KERNELS_IQ4_XS: Kernels = block_kernels::<BlockIQ4XS, BlockQ8K>();

/// Read a little-endian f16 stored as two bytes. Exact; uses half's
/// branch-light software conversion, which inlines, rather than `to_f32`,
/// which checks for F16C at run time on every call (a third of the time of
/// a Q8_0 block dot product).
#[inline(always)]
pub(crate) fn f16_le(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32_const()
}

/// Round to f16 (nearest even, as `GGML_FP32_TO_FP16`) and store little-endian.
#[inline(always)]
pub(crate) fn f16_bytes(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}
