//! IQ4_XS: 256 values in 8 sub-blocks of 32, `x = d * (ls_j - 32) *
//! kvalues_iq4nl[q]` with 6-bit sub-block scales `ls_j`.
//!
//! Layout (`block_iq4_xs` in ggml-common.h, 136 bytes):
//! `{ ggml_half d; uint16_t scales_h; uint8_t scales_l[QK_K/64]; uint8_t
//! qs[QK_K/2]; }`. Scale `j` has its low nibble in `scales_l[j/2]` (low
//! nibble for even `j`) and its top 2 bits at bit `2j` of `scales_h`; each
//! 16 bytes of `qs` hold one sub-block, nibbles packed as IQ4_NL.

use bytemuck::{Pod, Zeroable};

use super::iq4_nl::{quantize_iq4_impl, KVALUES_IQ4NL};
use super::q8_k::BlockQ8K;
use super::{check_len, check_pair, f16_le, Block, Format, QuantError, Quantize, VecDot, QK_K};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockIQ4XS {
    /// f16 super-block scale, little-endian.
    pub d: [u8; 2],
    /// High 2 bits of the 8 sub-block scales, a little-endian u16.
    pub scales_h: [u8; 2],
    /// Low 4 bits of the sub-block scales.
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockIQ4XS>() == 136);

impl BlockIQ4XS {
    /// The super-block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_le(self.d)
    }
    /// Sub-block scale `ib` (0..8), 6 bits, before subtracting 32.
    #[inline(always)]
    pub fn scale(&self, ib: usize) -> u8 {
        let h = u16::from_le_bytes(self.scales_h);
        ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((h >> (2 * ib)) & 3) as u8) << 4)
    }
}

/// ggml's `dequantize_row_iq4_xs`.
pub fn dequantize_row_iq4_xs(x: &[BlockIQ4XS], y: &mut [f32]) -> Result<(), QuantError> {
    check_len(Format::IQ4_XS, QK_K, x.len(), y.len())?;
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (ib, (qs, y)) in
            b.qs.chunks_exact(16)
                .zip(y.chunks_exact_mut(32))
                .enumerate()
        {
            let dl = d * (b.scale(ib) as i32 - 32) as f32;
            let (lo, hi) = y.split_at_mut(16);
            for j in 0..16 {
                lo[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
                hi[j] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
    Ok(())
}

/// ggml's `quantize_row_iq4_xs_ref` (`quantize_row_iq4_nl_impl` over a
/// super-block of 256 with `ntry = 7` and no importance weights).
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIQ4XS]) -> Result<(), QuantError> {
    check_len(Format::IQ4_XS, QK_K, y.len(), x.len())?;
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 32];
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut scales_l = [0u8; QK_K / 64];
        let mut scales_h = 0u16;
        let d = quantize_iq4_impl(
            x,
            &mut l,
            &mut scales,
            7,
            |ib, ls| {
                scales_l[ib / 2] |= (ls & 0xF) << (4 * (ib % 2));
                scales_h |= ((ls >> 4) as u16) << (2 * ib);
            },
            &mut b.qs,
        );
        b.d = d;
        b.scales_l = scales_l;
        b.scales_h = scales_h.to_le_bytes();
    }
    Ok(())
}

/// The integer dot products of the eight sub-blocks of one block,
/// `sum kvalues[q] * q8` each, as `ggml_vec_dot_iq4_xs_q8_K_generic` forms
/// them.
#[inline(always)]
pub(crate) fn block_isums(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
    let mut out = [0i32; 8];
    for (ib, (qs, q8)) in x.qs.chunks_exact(16).zip(y.qs.chunks_exact(32)).enumerate() {
        let mut sumi1 = 0i32;
        let mut sumi2 = 0i32;
        for j in 0..16 {
            sumi1 += q8[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32;
            sumi2 += q8[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
        }
        out[ib] = sumi1 + sumi2;
    }
    out
}

/// The f32 part of `ggml_vec_dot_iq4_xs_q8_K_generic` for one block, given
/// its sub-block sums: `sumf += (d4d8 * (ls - 32)) * sumi` per sub-block.
#[inline(always)]
fn accumulate(sumf: &mut f32, x: &BlockIQ4XS, dx: f32, dy: f32, isums: &[i32; 8]) {
    let d4d8 = dx * dy;
    for (ib, &sumi) in isums.iter().enumerate() {
        let dl = d4d8 * (x.scale(ib) as i32 - 32) as f32;
        *sumf += dl * sumi as f32;
    }
}

/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`.
fn scalar_row(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        accumulate(&mut sumf, bx, bx.d(), by.d(), &block_isums(bx, by));
    }
    sumf
}

/// The dot product of an IQ4_XS weight row with a Q8_K activation row:
/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`, or the SIMD variant of this
/// CPU (picked once, see [`simd`]; bit-identical).
pub fn vec_dot_iq4_xs_q8_K(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> Result<f32, QuantError> {
    check_pair(x, y)?;
    Ok(simd::dispatch()(x, y))
}

impl Block for BlockIQ4XS {
    const FORMAT: Format = Format::IQ4_XS;
    const QK: usize = QK_K;
    fn dequantize_row(x: &[Self], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row_iq4_xs(x, y)
    }
}

impl Quantize for BlockIQ4XS {
    fn quantize_row(x: &[f32], y: &mut [Self]) -> Result<(), QuantError> {
        quantize_row_iq4_xs(x, y)
    }
}

impl VecDot<BlockQ8K> for BlockIQ4XS {
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> Result<f32, QuantError> {
        vec_dot_iq4_xs_q8_K(w, a)
    }
}

/// SIMD variants of `vec_dot_iq4_xs_q8_K`, picked at run time once.
///
/// Each sub-block of 32 values is an IQ4_NL block: the nibbles are looked
/// up in the level table with `pshufb`, widened to i16 with the activations
/// and multiplied pairwise into i32 lanes with `madd` (exact for every i8
/// activation, -128 included). The eight sub-block sums are reduced to
/// integers ([`simd::isum_kernel`]) and the f32 part runs the scalar code's
/// operations in its order, so the result is bit-identical to the scalar
/// reference (ggml's generic kernel, which `tests/quant_fixtures.rs` checks
/// through the kernel table). There is no 512-bit variant: the per
/// sub-block reduction dominates. The matmul reaches it through the kernel
/// table.
pub mod simd {
    use std::sync::OnceLock;

    use super::{BlockIQ4XS, BlockQ8K};

    /// A dot product over two rows already checked to have equal length.
    pub type Kernel = fn(&[BlockIQ4XS], &[BlockQ8K]) -> f32;
    /// The eight sub-block integer dot products of one pair of blocks.
    pub type IsumKernel = fn(&BlockIQ4XS, &BlockQ8K) -> [i32; 8];

    /// The ISAs this module has a variant for, best last.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Isa {
        Scalar,
        Avx2,
    }

    /// The ISAs usable on this CPU, scalar first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2]
            .into_iter()
            .filter(|&isa| kernel(isa).is_some())
            .collect()
    }

    /// The row kernel for `isa`, or `None` if this CPU lacks it.
    pub fn kernel(isa: Isa) -> Option<Kernel> {
        match isa {
            Isa::Scalar => Some(super::scalar_row as Kernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2::new().map(|_| x86::avx2 as Kernel),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The per-block integer kernel for `isa`, or `None` if this CPU lacks it.
    pub fn isum_kernel(isa: Isa) -> Option<IsumKernel> {
        match isa {
            Isa::Scalar => Some(super::block_isums as IsumKernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2::new().map(|_| x86::isums_avx2 as IsumKernel),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The best ISA of this CPU, chosen on first use and cached.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| *available().last().unwrap_or(&Isa::Scalar))
    }

    pub(crate) fn dispatch() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| kernel(best()).unwrap_or(super::scalar_row))
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        use super::super::{accumulate, KVALUES_IQ4NL};
        use super::{BlockIQ4XS, BlockQ8K};
        use crate::quant::x86_util::{f16c, hsum_i32_256};

        /// Proof that AVX2 and F16C are available.
        #[derive(Clone, Copy)]
        pub struct Avx2(());
        impl Avx2 {
            pub fn new() -> Option<Self> {
                (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"))
                    .then_some(Avx2(()))
            }
        }

        pub fn avx2(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
            match Avx2::new() {
                // SAFETY: the CPU supports AVX2 and F16C (just detected).
                Some(_) => unsafe { avx2_row(x, y) },
                None => super::super::scalar_row(x, y),
            }
        }

        pub fn isums_avx2(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
            match Avx2::new() {
                // SAFETY: the CPU supports AVX2 and F16C (just detected).
                Some(_) => unsafe { block_isums_avx2(x, y) },
                None => super::super::block_isums(x, y),
            }
        }

        /// The eight sub-block sums of one block.
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn block_isums_avx2(x: &BlockIQ4XS, y: &BlockQ8K) -> [i32; 8] {
            // SAFETY: `KVALUES_IQ4NL` is 16 readable bytes; `loadu` needs no
            // alignment.
            let levels = _mm256_broadcastsi128_si256(unsafe {
                _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast())
            });
            let mask = _mm_set1_epi8(0x0F);
            let mut out = [0i32; 8];
            for (ib, out) in out.iter_mut().enumerate() {
                // SAFETY: 16 bytes of `qs` and 32 of `y.qs` from offsets
                // inside the arrays; `loadu` needs no alignment.
                let (qs, qy) = unsafe {
                    (
                        _mm_loadu_si128(x.qs.as_ptr().add(16 * ib).cast()),
                        _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                    )
                };
                let lo = _mm_and_si128(qs, mask);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
                let q = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                // The signed levels, -127..=113, in value order.
                let qx = _mm256_shuffle_epi8(levels, q);
                let x_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qx));
                let x_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qx));
                let y_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(qy));
                let y_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(qy));
                let lanes =
                    _mm256_add_epi32(_mm256_madd_epi16(x_lo, y_lo), _mm256_madd_epi16(x_hi, y_hi));
                *out = hsum_i32_256(lanes);
            }
            out
        }

        /// # Safety
        /// The CPU must support AVX2 and F16C.
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn avx2_row(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
            let mut sumf = 0.0f32;
            for (bx, by) in x.iter().zip(y) {
                // SAFETY: AVX2 is enabled for this function.
                let isums = unsafe { block_isums_avx2(bx, by) };
                accumulate(&mut sumf, bx, f16c(bx.d), by.d(), &isums);
            }
            sumf
        }
    }
}
