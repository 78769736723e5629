//! The dispatch layer of the quantized dot products, written once for every
//! format.
//!
//! A weight format implements [`SimdDot`]: its scalar reference (ggml's
//! `_generic` twin), the integer sums of one block pair, and for each ISA
//! the one step that differs between formats (AVX2: one row, and where the
//! format has one an `M x N` tile; AVX-512 VNNI: an `M x N` tile that
//! unpacks each weight block once for `N` activation rows). Everything
//! else is derived here, for every format alike: the one-row, one-by-four,
//! four-by-one and two-by-four kernels of each ISA, and the choice among
//! them, made from the crate's one cached [`Isa::detect`]. Adding a format
//! is its file plus an `impl SimdDot`; adding an ISA is a method on the
//! trait and an arm in [`dot_kernels`].
//!
//! Every kernel of a [`DotKernels`] computes each output with the same
//! operations as the set's one-row kernel, so all tile shapes are
//! bit-identical to it (tested per format in `tests/quant_simd.rs`).

use std::fmt::Debug;

use super::{
    check_pair, Block, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, Format, QuantError, VecDot,
};
use crate::Isa;

/// A weight format's integer dot-product kernels (see the module docs).
///
/// Rows passed to any of these hold the same number of blocks; the public
/// entry points check that first ([`vec_dot`]).
pub trait SimdDot: Block + Sync {
    /// The activation block of the dot product (ggml's `vec_dot_type`).
    type Act: Block + Sync;
    /// What the integer part of one block pair is: one `i32`, or several
    /// (per sub-block, or the sum and the min correction of a K-quant).
    type Isum: Copy + PartialEq + Debug;

    /// ggml's `ggml_vec_dot_*_generic`: the reference every variant is
    /// tested against.
    fn scalar_row(x: &[Self], y: &[Self::Act]) -> f32;
    /// The integer sums of one block pair, as the scalar code forms them.
    fn scalar_isum(x: &Self, y: &Self::Act) -> Self::Isum;

    /// The AVX2 one-row kernel.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_row(x: &[Self], y: &[Self::Act]) -> f32;
    /// The AVX2 integer sums of one block pair, equal to `scalar_isum`.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_isum(x: &Self, y: &Self::Act) -> Self::Isum;
    /// `M` weight rows against `N` activation rows on AVX2, each output
    /// bit-identical to [`SimdDot::avx2_row`]. The default calls the row
    /// kernel per output; a format with a real tile (unpacking each block
    /// once per tile) overrides it.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_tile<const M: usize, const N: usize>(
        xs: [&[Self]; M],
        ys: [&[Self::Act]; N],
    ) -> [[f32; N]; M] {
        // SAFETY: the caller's contract is the row kernel's.
        xs.map(|x| ys.map(|y| unsafe { Self::avx2_row(x, y) }))
    }

    /// `M` weight rows against `N` activation rows on AVX-512 VNNI; output
    /// `[m][n]` is computed by the same operations whatever `M` and `N` are.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL with VNNI, and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx512_tile<const M: usize, const N: usize>(
        xs: [&[Self]; M],
        ys: [&[Self::Act]; N],
    ) -> [[f32; N]; M];
    /// The AVX-512 integer sums of one block pair, equal to `scalar_isum`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL with VNNI, and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx512_isum(x: &Self, y: &Self::Act) -> Self::Isum;
}

/// Something to do with a format's block type, for [`visit`] (a generic
/// closure, which Rust does not have).
pub trait FormatVisitor {
    type Out;
    fn visit<W: SimdDot>(self) -> Self::Out;
}

/// Runs `v` on the block type of `format`, or `None` if the format has no
/// SIMD dot product here. The one table of the formats in this layer: a
/// new format joins with one line.
pub fn visit<V: FormatVisitor>(format: Format, v: V) -> Option<V::Out> {
    Some(match format {
        Format::Q4_0 => v.visit::<BlockQ4_0>(),
        Format::Q4_1 => v.visit::<BlockQ4_1>(),
        Format::Q5_0 => v.visit::<BlockQ5_0>(),
        Format::Q5_1 => v.visit::<BlockQ5_1>(),
        Format::Q8_0 => v.visit::<BlockQ8_0>(),
        Format::Q2_K => v.visit::<BlockQ2K>(),
        Format::Q3_K => v.visit::<BlockQ3K>(),
        Format::Q4_K => v.visit::<BlockQ4K>(),
        Format::Q5_K => v.visit::<BlockQ5K>(),
        Format::Q6_K => v.visit::<BlockQ6K>(),
        Format::IQ4_NL => v.visit::<BlockIQ4NL>(),
        Format::IQ4_XS => v.visit::<BlockIQ4XS>(),
        _ => return None,
    })
}

/// The variant of each format's dot product on `isa`, in ggml's type order
/// (what `hearth info` prints).
pub fn variants(isa: Isa) -> Vec<(Format, &'static str)> {
    struct Variant(Isa);
    impl FormatVisitor for Variant {
        type Out = &'static str;
        fn visit<W: SimdDot>(self) -> &'static str {
            dot_kernels::<W>(self.0).variant
        }
    }
    Format::ALL
        .into_iter()
        .filter_map(|f| Some((f, visit(f, Variant(isa))?)))
        .collect()
}

/// One weight row against one activation row.
pub type Row<W> = fn(&[W], &[<W as SimdDot>::Act]) -> f32;
/// One weight row against four activation rows.
pub type RowX4<W> = fn(&[W], [&[<W as SimdDot>::Act]; 4]) -> [f32; 4];
/// Four weight rows against one activation row.
pub type Rows4<W> = fn([&[W]; 4], &[<W as SimdDot>::Act]) -> [f32; 4];
/// Two weight rows against four activation rows.
pub type Tile2x4<W> = fn([&[W]; 2], [&[<W as SimdDot>::Act]; 4]) -> [[f32; 4]; 2];
/// The integer sums of one block pair.
pub type Isum<W> = fn(&W, &<W as SimdDot>::Act) -> <W as SimdDot>::Isum;

/// The kernels of one weight format on one ISA. Only [`dot_kernels`]
/// builds one from the real kernels, after the CPU proved it can run them.
pub struct DotKernels<W: SimdDot> {
    /// Which variant these are: `"scalar"`, `"avx2"` or `"avx512-vnni"`.
    pub variant: &'static str,
    /// One weight row against one activation row.
    pub row: Row<W>,
    /// One weight row against four activation rows.
    pub row_x4: RowX4<W>,
    /// Four weight rows against one activation row (the one-token matmul).
    pub rows4: Rows4<W>,
    /// Two weight rows against four activation rows.
    pub tile2x4: Tile2x4<W>,
    /// The integer sums of one block pair.
    pub isum: Isum<W>,
}

impl<W: SimdDot> Clone for DotKernels<W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: SimdDot> Copy for DotKernels<W> {}

impl<W: SimdDot> Debug for DotKernels<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DotKernels<{}>({})", W::FORMAT, self.variant)
    }
}

/// The kernels of `W` for `isa`: the best variant the format has that `isa`
/// can run (AVX-512 without VNNI runs the AVX2 kernels).
pub fn dot_kernels<W: SimdDot>(isa: Isa) -> DotKernels<W> {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512_vnni().is_some() {
        return x86::avx512::<W>();
    }
    #[cfg(target_arch = "x86_64")]
    if isa.avx2().is_some() {
        return x86::avx2::<W>();
    }
    let _ = isa;
    scalar::<W>()
}

/// The dot product of a weight row with an activation row on this CPU's
/// kernels, after checking that both hold the same number of values: what
/// every format's `vec_dot_*` is.
pub fn vec_dot<W: SimdDot>(x: &[W], y: &[W::Act]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    Ok((best::<W>().row)(x, y))
}

impl<W: SimdDot> VecDot<W::Act> for W {
    fn vec_dot(w: &[Self], a: &[W::Act]) -> Result<f32, QuantError> {
        vec_dot(w, a)
    }
}

/// The kernels of `W` for this CPU ([`Isa::detect`], detected once).
#[inline]
pub fn best<W: SimdDot>() -> DotKernels<W> {
    dot_kernels(Isa::detect())
}

fn scalar<W: SimdDot>() -> DotKernels<W> {
    DotKernels {
        variant: "scalar",
        row: W::scalar_row,
        row_x4: |x, ys| ys.map(|y| W::scalar_row(x, y)),
        rows4: |xs, y| xs.map(|x| W::scalar_row(x, y)),
        tile2x4: |xs, ys| xs.map(|x| ys.map(|y| W::scalar_row(x, y))),
        isum: W::scalar_isum,
    }
}

/// The x86 variants. Each function here is safe to call only on a CPU with
/// its ISA, and is reachable only through a [`DotKernels`] that
/// [`dot_kernels`] built after holding the ISA's token.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{DotKernels, SimdDot};

    pub(super) fn avx2<W: SimdDot>() -> DotKernels<W> {
        fn row<W: SimdDot>(x: &[W], y: &[W::Act]) -> f32 {
            // SAFETY: only `avx2`, called after an AVX2 token was held,
            // hands this function out (see the module docs).
            unsafe { W::avx2_row(x, y) }
        }
        fn isum<W: SimdDot>(x: &W, y: &W::Act) -> W::Isum {
            // SAFETY: as in `row`.
            unsafe { W::avx2_isum(x, y) }
        }
        fn row_x4<W: SimdDot>(x: &[W], ys: [&[W::Act]; 4]) -> [f32; 4] {
            // SAFETY: as in `row`.
            unsafe { W::avx2_tile::<1, 4>([x], ys)[0] }
        }
        fn rows4<W: SimdDot>(xs: [&[W]; 4], y: &[W::Act]) -> [f32; 4] {
            // SAFETY: as in `row`.
            unsafe { W::avx2_tile::<4, 1>(xs, [y]).map(|r| r[0]) }
        }
        fn tile2x4<W: SimdDot>(xs: [&[W]; 2], ys: [&[W::Act]; 4]) -> [[f32; 4]; 2] {
            // SAFETY: as in `row`.
            unsafe { W::avx2_tile::<2, 4>(xs, ys) }
        }
        DotKernels {
            variant: "avx2",
            row: row::<W>,
            row_x4: row_x4::<W>,
            rows4: rows4::<W>,
            tile2x4: tile2x4::<W>,
            isum: isum::<W>,
        }
    }

    pub(super) fn avx512<W: SimdDot>() -> DotKernels<W> {
        // SAFETY (every block below): only `avx512`, called after an AVX-512
        // VNNI token was held, hands these functions out.
        fn row<W: SimdDot>(x: &[W], y: &[W::Act]) -> f32 {
            // SAFETY: see above.
            unsafe { W::avx512_tile::<1, 1>([x], [y])[0][0] }
        }
        fn row_x4<W: SimdDot>(x: &[W], ys: [&[W::Act]; 4]) -> [f32; 4] {
            // SAFETY: see above.
            unsafe { W::avx512_tile::<1, 4>([x], ys)[0] }
        }
        fn rows4<W: SimdDot>(xs: [&[W]; 4], y: &[W::Act]) -> [f32; 4] {
            // SAFETY: see above.
            unsafe { W::avx512_tile::<4, 1>(xs, [y]).map(|r| r[0]) }
        }
        fn tile2x4<W: SimdDot>(xs: [&[W]; 2], ys: [&[W::Act]; 4]) -> [[f32; 4]; 2] {
            // SAFETY: see above.
            unsafe { W::avx512_tile::<2, 4>(xs, ys) }
        }
        fn isum<W: SimdDot>(x: &W, y: &W::Act) -> W::Isum {
            // SAFETY: see above.
            unsafe { W::avx512_isum(x, y) }
        }
        DotKernels {
            variant: "avx512-vnni",
            row: row::<W>,
            row_x4: row_x4::<W>,
            rows4: rows4::<W>,
            tile2x4: tile2x4::<W>,
            isum: isum::<W>,
        }
    }
}

/// `impl SimdDot` for a format whose kernels are the named functions: the
/// one line a format file writes to join the dispatch layer.
macro_rules! impl_simd_dot {
    // A 32-value format with the kernels of `block32_x86`.
    (block32: $w:ty, $a:ty, scalar: $srow:path, $sisum:path $(,)?) => {
        $crate::quant::simd::impl_simd_dot!(
            $w, $a, isum: i32,
            scalar: $srow, $sisum,
            avx2: $crate::quant::block32_x86::avx2_row::<$w>,
                $crate::quant::block32_x86::isum_avx2::<$w>,
            avx2_tile: $crate::quant::block32_x86::avx2_tile,
            avx512: $crate::quant::block32_x86::avx512_tile,
                $crate::quant::block32_x86::isum_avx512::<$w>,
        );
    };
    // A K-quant of 16-value sub-blocks with the kernels of `k16_x86`.
    (k16: $w:ty, scalar: $srow:path, $sisum:path $(,)?) => {
        $crate::quant::simd::impl_simd_dot!(
            $w, $crate::quant::q8_k::BlockQ8K, isum: i32,
            scalar: $srow, $sisum,
            avx2: $crate::quant::k16_x86::avx2_row::<$w>,
                $crate::quant::k16_x86::isum_avx2::<$w>,
            avx2_tile: $crate::quant::k16_x86::avx2_tile,
            avx512: $crate::quant::k16_x86::avx512_tile,
                $crate::quant::k16_x86::isum_avx512::<$w>,
        );
    };
    (
        $w:ty, $a:ty, isum: $isum:ty,
        scalar: $srow:path, $sisum:path,
        avx2: $row2:path, $isum2:path,
        $(avx2_tile: $tile2:path,)?
        avx512: $tile:path, $isum512:path $(,)?
    ) => {
        impl $crate::quant::simd::SimdDot for $w {
            type Act = $a;
            type Isum = $isum;
            fn scalar_row(x: &[Self], y: &[$a]) -> f32 {
                $srow(x, y)
            }
            fn scalar_isum(x: &Self, y: &$a) -> $isum {
                $sisum(x, y)
            }
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx2_row(x: &[Self], y: &[$a]) -> f32 {
                // SAFETY: the callee's contract is this function's.
                unsafe { $row2(x, y) }
            }
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx2_isum(x: &Self, y: &$a) -> $isum {
                // SAFETY: the callee's contract is this function's.
                unsafe { $isum2(x, y) }
            }
            $(
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx2_tile<const M: usize, const N: usize>(
                xs: [&[Self]; M],
                ys: [&[$a]; N],
            ) -> [[f32; N]; M] {
                // SAFETY: the callee's contract is this function's.
                unsafe { $tile2(xs, ys) }
            }
            )?
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx512_tile<const M: usize, const N: usize>(
                xs: [&[Self]; M],
                ys: [&[$a]; N],
            ) -> [[f32; N]; M] {
                // SAFETY: the callee's contract is this function's.
                unsafe { $tile(xs, ys) }
            }
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx512_isum(x: &Self, y: &$a) -> $isum {
                // SAFETY: the callee's contract is this function's.
                unsafe { $isum512(x, y) }
            }
        }
    };
}
pub(crate) use impl_simd_dot;

#[cfg(test)]
mod tests {
    use super::*;

    /// The table holds every format with a `SimdDot` and nothing else: the
    /// formats the matmul's typed path takes.
    #[test]
    fn the_table_lists_every_block_format_with_a_dot_product() {
        let listed: Vec<Format> = variants(Isa::Scalar).iter().map(|&(f, _)| f).collect();
        let expected: Vec<Format> = Format::ALL
            .into_iter()
            .filter(|f| {
                let k = super::super::kernels(*f);
                k.vec_dot.is_some() && f.block_size() > 1
            })
            .collect();
        assert_eq!(listed, expected);
        assert!(variants(Isa::Scalar).iter().all(|&(_, v)| v == "scalar"));
        let best = variants(Isa::detect());
        assert!(best.iter().all(|&(_, v)| v == best[0].1), "{best:?}");
    }
}
