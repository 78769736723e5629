//! Packed matmuls on AVX-512 VNNI: the GEMM for many tokens (prefill) of
//! Q8_0, Q5_0, Q4_K and Q6_K weights, and the one-token GEMV of Q8_0 and
//! Q5_0 weights (the output matrix and most of a Q4_K_M model's layers).
//!
//! The tiled path of [`crate::matmul`] unpacks each weight block once per
//! four tokens and re-derives each activation block's sums and scales once
//! per two weight rows; at 640 columns that bookkeeping costs about three
//! times the arithmetic. Here both operands are packed once per call into
//! the registers' layout (llamafile's `tinyBLAS` and ggml's repacked
//! `block_q8_0x4` follow the same idea):
//!
//! - a weight pair of blocks ([`WPair`]): 64 signed quants, the 16 i32
//!   lanes of `-128 * sum` of each 4 quants, and the two f32 scales, each
//!   spread over 8 lanes; a task packs its own rows;
//! - an activation pair ([`APair`]): 64 quants plus 128 as u8 and the two
//!   scales, packed once per call.
//!
//! `vpdpbusd` then gives `sum (y + 128) * x - 128 * sum x = sum x * y` per
//! lane, exactly, starting from the weight's `-128 * sum` lanes, and each
//! output of a 4x4 tile costs one `vpdpbusd`, one product of the scale
//! vectors, one conversion and one FMA per pair of blocks.
//!
//! The K-quants (Q4_K, Q6_K, activations Q8_K) keep their one-row
//! kernel's `vpmaddubs`/`vpdpwssd` arithmetic; each row task unpacks its
//! weight blocks once ([`KBlock`]) instead of once per four tokens. The
//! GEMV packs the one activation row ([`GPair`]: quants, `-C * sum` lanes,
//! scales) once per call instead of once per four weight rows. Every path
//! writes its results straight into the `[tokens][rows]` output.
//!
//! Bit for bit: every output is computed with exactly the operations, in
//! the order, of the weight format's one-row AVX-512 kernel (`avx512_tile`
//! in `quant/q8_0.rs` and `quant/q5_0.rs`): the same exact integer lanes,
//! `fma(dx * dy, float(lanes), acc)` per pair, the same horizontal sum. An
//! odd last block pairs with a zero block where the one-row kernel pairs it
//! with a copy of itself weighted 0; both add only zeros. So the scalar
//! twin of this path is the format's scalar `vec_dot`, and
//! `tests/matmul.rs` checks it bit for bit against the one-row kernel.

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{gemv, run, APairBuf, GPair};

/// Tokens from which [`crate::matmul`] takes this path: packing costs about
/// a weight-row pass, repaid from a few tokens on.
pub(crate) const MIN_TOKENS: usize = 8;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    use rayon::prelude::*;

    use crate::matmul::QMatrix;
    use crate::quant::x86_util::{f16c, halves_f16, hsum_f32_512, hsum_i32_256};
    use crate::quant::{
        blocks_from_bytes, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, Format, QuantError,
    };

    /// Two consecutive 32-value weight blocks of one row, packed (see the
    /// module docs). A missing second block is all zeros.
    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    pub(crate) struct WPair {
        q: [i8; 64],
        neg: [i32; 16],
        d: [f32; 16],
    }

    /// Two consecutive Q8_0 activation blocks of one token, packed: quants
    /// plus 128 as u8, and the two scales spread over 8 lanes each.
    #[repr(C, align(64))]
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct APair {
        q: [u8; 64],
        d: [f32; 16],
    }

    const ZERO_W: WPair = WPair {
        q: [0; 64],
        neg: [0; 16],
        d: [0.0; 16],
    };
    const ZERO_A: APair = APair {
        q: [0; 64],
        d: [0.0; 16],
    };

    /// Output rows and tokens of one tile.
    const MR: usize = 4;
    const NR: usize = 4;
    /// Tokens swept per pass over a task's weight rows: their packed
    /// activations (at 640 columns, 1.3 KB each) stay in L1/L2.
    const T_BLOCK: usize = 32;

    /// A weight format this path packs.
    trait Pack: crate::quant::Block + Sync {
        /// The signed quants of blocks `a` and `b` (zeros if `None`), 32
        /// each, as i8 in value order.
        ///
        /// # Safety
        /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
        unsafe fn quants(a: &Self, b: Option<&Self>) -> __m512i;
        /// The quants of `a` (bytes 0..32) and `b` (32..64) plus [`Pack::C`],
        /// as u8: the weight operand of the one-row kernel's `vpdpbusd`.
        ///
        /// # Safety
        /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
        unsafe fn unsigned(a: &Self, b: &Self) -> __m512i;
        /// The offset [`Pack::unsigned`] adds (as u8 for `vpdpbusd`).
        const C: i8;
        fn scale(&self) -> [u8; 2];
    }

    impl Pack for BlockQ8_0 {
        /// # Safety
        /// As [`Pack::quants`]: AVX-512 F/BW/VL, VNNI and F16C.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn quants(a: &Self, b: Option<&Self>) -> __m512i {
            // SAFETY: each `qs` is 32 readable bytes; `loadu` needs no
            // alignment.
            unsafe {
                let lo = _mm256_loadu_si256(a.qs.as_ptr().cast());
                let hi = match b {
                    Some(b) => _mm256_loadu_si256(b.qs.as_ptr().cast()),
                    None => _mm256_setzero_si256(),
                };
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            }
        }
        /// # Safety
        /// As [`Pack::unsigned`]: AVX-512 F/BW/VL, VNNI and F16C.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn unsigned(a: &Self, b: &Self) -> __m512i {
            // SAFETY: the features are enabled for this function.
            let q = unsafe { Self::quants(a, Some(b)) };
            // `x ^ 0x80` is `x + 128` as u8, -128 included.
            _mm512_xor_si512(q, _mm512_set1_epi8(-128))
        }
        const C: i8 = -128;
        fn scale(&self) -> [u8; 2] {
            self.d
        }
    }

    impl Pack for BlockQ5_0 {
        /// # Safety
        /// As [`Pack::quants`]: AVX-512 F/BW/VL, VNNI and F16C.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn quants(a: &Self, b: Option<&Self>) -> __m512i {
            // Low nibbles then high nibbles, the fifth bit added from `qh`,
            // minus 16 (`Q5_0`'s values, -16..16).
            // SAFETY: the features are enabled for this function.
            let (qa, qb, bits_b, keep) = unsafe {
                match b {
                    Some(b) => (nibbles(a), nibbles(b), b.qh() as u64, u64::MAX),
                    None => (nibbles(a), _mm256_setzero_si256(), 0, u32::MAX as u64),
                }
            };
            let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
            let bits = a.qh() as u64 | bits_b << 32;
            let q = _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(0x10));
            // Subtract 16 only where there is a block (a missing one stays 0).
            _mm512_mask_sub_epi8(q, keep, q, _mm512_set1_epi8(16))
        }
        /// # Safety
        /// As [`Pack::unsigned`]: AVX-512 F/BW/VL, VNNI and F16C.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn unsigned(a: &Self, b: &Self) -> __m512i {
            // SAFETY: the features are enabled for this function.
            let (qa, qb) = unsafe { (nibbles(a), nibbles(b)) };
            let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
            let bits = a.qh() as u64 | (b.qh() as u64) << 32;
            _mm512_mask_add_epi8(q, bits, q, _mm512_set1_epi8(0x10))
        }
        const C: i8 = 16;
        fn scale(&self) -> [u8; 2] {
            self.d
        }
    }

    /// A Q5_0 block's 32 low-4-bit quants in value order: the low nibbles
    /// of `qs`, then the high ones.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nibbles(x: &BlockQ5_0) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; `loadu` needs no alignment.
        let qs = unsafe { _mm_loadu_si128(x.qs.as_ptr().cast()) };
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), mask);
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
    }

    /// Packs weight row `row` (`nb` blocks) into `out` (`nb.div_ceil(2)`
    /// pairs).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pack_row<W: Pack>(row: &[W], out: &mut [WPair]) {
        let ones = _mm512_set1_epi8(1);
        for (p, o) in out.iter_mut().enumerate() {
            let a = &row[2 * p];
            let b = row.get(2 * p + 1);
            // SAFETY: the features are enabled for this function.
            let q = unsafe { W::quants(a, b) };
            // `ones` as u8 times the signed quants: the sum of each 4.
            let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
            let neg = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(sum));
            let d = halves_f16(a.scale(), b.map_or([0; 2], |b| b.scale()));
            // SAFETY: `o` is a whole `WPair`, 64-byte aligned; each store
            // writes one of its 64-byte fields.
            unsafe {
                _mm512_store_si512(o.q.as_mut_ptr().cast(), q);
                _mm512_store_si512(o.neg.as_mut_ptr().cast(), neg);
                _mm512_store_ps(o.d.as_mut_ptr(), d);
            }
        }
    }

    /// Packs one token's Q8_0 activation row into `out`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pack_act(row: &[BlockQ8_0], out: &mut [APair]) {
        let bias = _mm512_set1_epi8(-128);
        for (p, o) in out.iter_mut().enumerate() {
            let a = &row[2 * p];
            let b = row.get(2 * p + 1);
            // SAFETY: the features are enabled for this function.
            let q = unsafe { BlockQ8_0::quants(a, b) };
            // `y ^ 0x80` is `y + 128` as u8; a missing block's quants stay
            // 0, against weights that are 0 there too.
            let q = match b {
                Some(_) => _mm512_xor_si512(q, bias),
                None => _mm512_mask_xor_epi64(q, 0x0F, q, bias),
            };
            let d = halves_f16(a.d, b.map_or([0; 2], |b| b.d));
            // SAFETY: `o` is a whole `APair`, 64-byte aligned.
            unsafe {
                _mm512_store_si512(o.q.as_mut_ptr().cast(), q);
                _mm512_store_ps(o.d.as_mut_ptr(), d);
            }
        }
    }

    /// `MR` weight rows (pairs `w[m * np..][..np]`) against `NR` tokens
    /// (`a[n * np..][..np]`).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL and VNNI; `w` must hold `MR *
    /// np` pairs and `a` `NR * np`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn tile(w: &[WPair], a: &[APair], np: usize) -> [[f32; NR]; MR] {
        let mut acc = [[_mm512_setzero_ps(); NR]; MR];
        for p in 0..np {
            let mut wq = [_mm512_setzero_si512(); MR];
            let mut neg = [_mm512_setzero_si512(); MR];
            let mut dx = [_mm512_setzero_ps(); MR];
            for m in 0..MR {
                let wp = &w[m * np + p];
                // SAFETY: aligned loads of whole 64-byte fields.
                unsafe {
                    wq[m] = _mm512_load_si512(wp.q.as_ptr().cast());
                    neg[m] = _mm512_load_si512(wp.neg.as_ptr().cast());
                    dx[m] = _mm512_load_ps(wp.d.as_ptr());
                }
            }
            for n in 0..NR {
                let ap = &a[n * np + p];
                // SAFETY: aligned loads of whole 64-byte fields.
                let (qy, dy) = unsafe {
                    (
                        _mm512_load_si512(ap.q.as_ptr().cast()),
                        _mm512_load_ps(ap.d.as_ptr()),
                    )
                };
                for m in 0..MR {
                    let lanes = _mm512_dpbusd_epi32(neg[m], qy, wq[m]);
                    let d = _mm512_mul_ps(dx[m], dy);
                    acc[m][n] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[m][n]);
                }
            }
        }
        let mut out = [[0.0f32; NR]; MR];
        for m in 0..MR {
            for n in 0..NR {
                out[m][n] = hsum_f32_512(acc[m][n]);
            }
        }
        out
    }

    /// One pair of Q8_0 activation blocks for the one-token matmul: the
    /// signed quants, the `-C * sum` lanes of the weight format's offset
    /// `C`, and the two scales over 8 lanes each (a missing second block:
    /// zeros).
    #[repr(C, align(64))]
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct GPair {
        q: [i8; 64],
        neg: [i32; 16],
        d: [f32; 16],
    }

    const ZERO_G: GPair = GPair {
        q: [0; 64],
        neg: [0; 16],
        d: [0.0; 16],
    };

    /// Packs the one activation row for [`gemv_rows`].
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn pack_gemv_act<W: Pack>(row: &[BlockQ8_0], out: &mut [GPair]) {
        let zero = _mm512_setzero_si512();
        let c = _mm512_set1_epi8(W::C);
        for (p, o) in out.iter_mut().enumerate() {
            let a = &row[2 * p];
            let b = row.get(2 * p + 1);
            // SAFETY: the features are enabled for this function.
            let q = unsafe { BlockQ8_0::quants(a, b) };
            // `-C * sum` of each 4 quants, as the one-row kernel computes it.
            let neg = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c, q));
            let d = halves_f16(a.d, b.map_or([0; 2], |b| b.d));
            // SAFETY: `o` is a whole `GPair`, 64-byte aligned.
            unsafe {
                _mm512_store_si512(o.q.as_mut_ptr().cast(), q);
                _mm512_store_si512(o.neg.as_mut_ptr().cast(), neg);
                _mm512_store_ps(o.d.as_mut_ptr(), d);
            }
        }
    }

    /// `M` consecutive weight rows against the packed activation row, with
    /// the operations of the format's one-row kernel (`avx512_tile::<M, 1>`)
    /// per output; the activation's per-pair work is done once per call
    /// instead of once per `M` rows.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C; each of `xs`
    /// holds `nb` blocks and `a` `nb.div_ceil(2)` pairs.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn gemv_rows<W: Pack, const M: usize>(
        xs: [&[W]; M],
        a: &[GPair],
        nb: usize,
    ) -> [f32; M] {
        let mut acc = [_mm512_setzero_ps(); M];
        for (p, ap) in a.iter().enumerate() {
            let i = 2 * p;
            let pair = i + 1 < nb;
            let ib = if pair { i + 1 } else { i };
            // SAFETY: aligned loads of whole 64-byte fields.
            let (qy, neg, dy) = unsafe {
                (
                    _mm512_load_si512(ap.q.as_ptr().cast()),
                    _mm512_load_si512(ap.neg.as_ptr().cast()),
                    _mm512_load_ps(ap.d.as_ptr()),
                )
            };
            for m in 0..M {
                let (xa, xb) = (&xs[m][i], &xs[m][ib]);
                // SAFETY: the features are enabled for this function.
                let wq = unsafe { W::unsigned(xa, xb) };
                let dx = halves_f16(xa.scale(), if pair { xb.scale() } else { [0; 2] });
                let lanes = _mm512_dpbusd_epi32(neg, wq, qy);
                let d = _mm512_mul_ps(dx, dy);
                acc[m] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), acc[m]);
            }
        }
        acc.map(|a| hsum_f32_512(a))
    }

    /// How far ahead of the rows being multiplied the one-token path asks
    /// for weight rows (as `crate::matmul`'s tiled path).
    const PREFETCH_ROWS: usize = 8;

    fn gemv_go<W: Pack>(
        w: &QMatrix<'_>,
        act: &[u8],
        out: &mut [f32],
        gpack: &mut Vec<GPair>,
        chunk: usize,
    ) -> Result<(), QuantError> {
        let nb = w.cols() / 32;
        let np = nb.div_ceil(2);
        let wb = blocks_from_bytes::<W>(w.data())?;
        let ab = blocks_from_bytes::<BlockQ8_0>(act)?;
        debug_assert_eq!(ab.len(), nb);
        gpack.clear();
        gpack.resize(np, ZERO_G);
        // SAFETY: `run` checked AVX-512 VNNI and F16C on this CPU.
        unsafe { pack_gemv_act::<W>(ab, gpack) };
        let a = &*gpack;
        let row_bytes = nb * size_of::<W>();
        let data = w.data();
        let wrow = |r: usize| &wb[r * nb..(r + 1) * nb];
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            let r0 = c * chunk;
            let mut i = 0;
            for o in o.chunks_exact_mut(4) {
                let r = r0 + i;
                crate::matmul::prefetch(data, (r + PREFETCH_ROWS) * row_bytes, 4 * row_bytes);
                let xs = [wrow(r), wrow(r + 1), wrow(r + 2), wrow(r + 3)];
                // SAFETY: `run` checked the CPU; every row has `nb` blocks.
                o.copy_from_slice(&unsafe { gemv_rows::<W, 4>(xs, a, nb) });
                i += 4;
            }
            for o in &mut o[i..] {
                // SAFETY: as above.
                *o = unsafe { gemv_rows::<W, 1>([wrow(r0 + i)], a, nb) }[0];
                i += 1;
            }
        });
        Ok(())
    }

    /// The one-token matmul of Q8_0 and Q5_0 weights: as the tiled path's
    /// four-row kernel, with the activation's per-pair work (loads, sums,
    /// scales) done once per call. `None` if this CPU or format has no such
    /// path.
    pub(crate) fn gemv(
        w: &QMatrix<'_>,
        act: &[u8],
        out: &mut [f32],
        gpack: &mut Vec<GPair>,
        chunk: usize,
    ) -> Option<Result<(), QuantError>> {
        crate::Isa::detect().avx512_vnni()?;
        Some(match w.format() {
            Format::Q8_0 => gemv_go::<BlockQ8_0>(w, act, out, gpack, chunk),
            Format::Q5_0 => gemv_go::<BlockQ5_0>(w, act, out, gpack, chunk),
            _ => return None,
        })
    }

    /// One K-quant weight block (256 values) unpacked as its one-row
    /// AVX-512 kernel unpacks it: quants as u8 for `vpmaddubsw`, per-lane
    /// i16 sub-block scales for `vpdpwssd`, the 16 i16 lanes multiplied with
    /// the activation's `bsums` (Q4_K: the mins; Q6_K: the scales, for its
    /// `-32` offset), and the f32 scales.
    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    pub(crate) struct KBlock {
        q: [[u8; 64]; 4],
        sc: [[i16; 32]; 4],
        off: [i16; 16],
        d: f32,
        dmin: f32,
    }

    const ZERO_K: KBlock = KBlock {
        q: [[0; 64]; 4],
        sc: [[0; 32]; 4],
        off: [0; 16],
        d: 0.0,
        dmin: 0.0,
    };

    /// A K-quant format this path packs.
    trait KPack: crate::quant::Block + Sync {
        /// Whether the `off` lanes are mins (Q4_K, subtracted in f32 after
        /// the block) or offset scales (Q6_K, subtracted in the integer
        /// lanes): the two one-row kernels' epilogues.
        const MINS: bool;
        /// # Safety
        /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C.
        unsafe fn pack(x: &Self, out: &mut KBlock);
    }

    /// Stores unpacked quants, scales and offsets into `out`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn store_k(out: &mut KBlock, q: [__m512i; 4], sc: [__m512i; 4], off: __m256i) {
        for k in 0..4 {
            // SAFETY: `out` is 64-byte aligned and each row of `q` and `sc`
            // is 64 bytes at a multiple of 64.
            unsafe {
                _mm512_store_si512(out.q[k].as_mut_ptr().cast(), q[k]);
                _mm512_store_si512(out.sc[k].as_mut_ptr().cast(), sc[k]);
            }
        }
        // SAFETY: `off` is 32 bytes at a multiple of 32.
        unsafe { _mm256_store_si256(out.off.as_mut_ptr().cast(), off) };
    }

    impl KPack for BlockQ4K {
        const MINS: bool = true;
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn pack(x: &Self, out: &mut KBlock) {
            // SAFETY: the features are enabled for this function.
            unsafe {
                let (q, sc, mins16, d, dmin) = crate::quant::q4_k::unpacked_avx512(x);
                store_k(out, q, sc, mins16);
                (out.d, out.dmin) = (d, dmin);
            }
        }
    }

    impl KPack for BlockQ6K {
        const MINS: bool = false;
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
        unsafe fn pack(x: &Self, out: &mut KBlock) {
            // SAFETY: the features are enabled for this function.
            unsafe {
                let u = crate::quant::k16_x86::unpack_avx512(x);
                store_k(out, u.q, u.sc, u.sc16);
                (out.d, out.dmin) = (f16c(x.d), 0.0);
            }
        }
    }

    /// Weight rows of one K-quant tile.
    const KMR: usize = 2;

    /// `KMR` packed weight rows (`w[m * nb..][..nb]`) against `N` Q8_K
    /// activation rows, with the operations of the format's one-row
    /// `avx512_tile` for each output.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL, VNNI and F16C; `w` must hold
    /// `KMR * nb` blocks and each of `ys` `nb`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn ktile<W: KPack, const N: usize>(
        w: &[KBlock],
        ys: [&[BlockQ8K]; N],
        nb: usize,
    ) -> [[f32; N]; KMR] {
        let mut acc = [[_mm512_setzero_ps(); N]; KMR];
        let mut sum_min = [[0.0f32; N]; KMR];
        for i in 0..nb {
            let mut lanes = [[_mm512_setzero_si512(); N]; KMR];
            for k in 0..4 {
                // SAFETY: aligned 64-byte rows of packed blocks.
                let q: [__m512i; KMR] = std::array::from_fn(|m| unsafe {
                    _mm512_load_si512(w[m * nb + i].q[k].as_ptr().cast())
                });
                for n in 0..N {
                    // SAFETY: 64 bytes of `qs` from an offset inside the
                    // array; `loadu` needs no alignment.
                    let y = unsafe { _mm512_loadu_si512(ys[n][i].qs.as_ptr().add(64 * k).cast()) };
                    for m in 0..KMR {
                        // SAFETY: an aligned 64-byte row of a packed block.
                        let sc = unsafe { _mm512_load_si512(w[m * nb + i].sc[k].as_ptr().cast()) };
                        lanes[m][n] =
                            _mm512_dpwssd_epi32(lanes[m][n], _mm512_maddubs_epi16(q[m], y), sc);
                    }
                }
            }
            for n in 0..N {
                let by = &ys[n][i];
                let dy = by.d();
                // SAFETY: `bsums` is 32 readable bytes; `loadu` needs no
                // alignment.
                let bs = unsafe { _mm256_loadu_si256(by.bsums.as_ptr().cast()) };
                for m in 0..KMR {
                    let wb = &w[m * nb + i];
                    // SAFETY: `off` is 32 bytes at a multiple of 32.
                    let off = unsafe { _mm256_load_si256(wb.off.as_ptr().cast()) };
                    let d = _mm512_set1_ps(wb.d * dy);
                    if W::MINS {
                        let summ = hsum_i32_256(_mm256_madd_epi16(bs, off));
                        let v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(lanes[m][n]));
                        acc[m][n] = _mm512_add_ps(acc[m][n], v);
                        sum_min[m][n] -= wb.dmin * dy * summ as f32;
                    } else {
                        let o = _mm512_zextsi256_si512(_mm256_madd_epi16(off, bs));
                        let l = _mm512_sub_epi32(lanes[m][n], _mm512_slli_epi32::<5>(o));
                        let v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(l));
                        acc[m][n] = _mm512_add_ps(acc[m][n], v);
                    }
                }
            }
        }
        let mut out = [[0.0f32; N]; KMR];
        for m in 0..KMR {
            for n in 0..N {
                out[m][n] = if W::MINS {
                    hsum_f32_512(acc[m][n]) + sum_min[m][n]
                } else {
                    hsum_f32_512(acc[m][n])
                };
            }
        }
        out
    }

    thread_local! {
        /// A task's packed K-quant weight rows.
        static KPACK: RefCell<Vec<KBlock>> = const { RefCell::new(Vec::new()) };
    }

    /// Activation bytes swept per pass over a task's K-quant rows (about
    /// L1).
    const K_ACT_BYTES: usize = 32 * 1024;

    fn go_k<W: KPack>(
        w: &QMatrix<'_>,
        act: &[u8],
        n_tokens: usize,
        out: &mut [f32],
        chunk: usize,
    ) -> Result<(), QuantError> {
        let rows = w.rows();
        let nb = w.cols() / 256;
        let wb = blocks_from_bytes::<W>(w.data())?;
        let ab = blocks_from_bytes::<BlockQ8K>(act)?;
        debug_assert_eq!(wb.len(), rows * nb);
        debug_assert_eq!(ab.len(), n_tokens * nb);
        let arow = |t: usize| &ab[t * nb..(t + 1) * nb];
        let t_block = (K_ACT_BYTES / (nb * size_of::<BlockQ8K>()).max(1)).max(4) / 4 * 4;

        let dst = Out::new(out, rows, n_tokens);
        (0..rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let r0 = c * chunk;
            let n_rows = chunk.min(rows - r0);
            let r_pad = n_rows.next_multiple_of(KMR);
            KPACK.with_borrow_mut(|wpack| {
                wpack.clear();
                wpack.resize(r_pad * nb, ZERO_K);
                for (i, o) in wpack.chunks_exact_mut(nb).take(n_rows).enumerate() {
                    let r = r0 + i;
                    for (x, o) in wb[r * nb..(r + 1) * nb].iter().zip(o) {
                        // SAFETY: `run` checked AVX-512 VNNI and F16C.
                        unsafe { W::pack(x, o) };
                    }
                }
                let put = |i: usize, t: usize, v: f32| {
                    if i < n_rows {
                        dst.put(t, r0 + i, v);
                    }
                };
                for t0 in (0..n_tokens).step_by(t_block) {
                    let t1 = (t0 + t_block).min(n_tokens);
                    for i0 in (0..r_pad).step_by(KMR) {
                        let wt = &wpack[i0 * nb..(i0 + KMR) * nb];
                        let mut t = t0;
                        while t + 4 <= t1 {
                            let ys = [arow(t), arow(t + 1), arow(t + 2), arow(t + 3)];
                            // SAFETY: `run` checked the CPU; `wt` holds KMR
                            // rows of `nb` blocks, each activation row `nb`.
                            let r = unsafe { ktile::<W, 4>(wt, ys, nb) };
                            for (m, rm) in r.iter().enumerate() {
                                for (n, &v) in rm.iter().enumerate() {
                                    put(i0 + m, t + n, v);
                                }
                            }
                            t += 4;
                        }
                        while t < t1 {
                            // SAFETY: as above.
                            let r = unsafe { ktile::<W, 1>(wt, [arow(t)], nb) };
                            for (m, rm) in r.iter().enumerate() {
                                put(i0 + m, t, rm[0]);
                            }
                            t += 1;
                        }
                    }
                }
            });
        });
        Ok(())
    }

    /// The output `[n_tokens][rows]`, written in place by the row tasks:
    /// each task owns the columns of its weight rows, which are not
    /// contiguous, so it writes through a pointer rather than a slice (the
    /// tiled path writes `[rows][tokens]` slices and transposes after; this
    /// saves that pass).
    #[derive(Clone, Copy)]
    struct Out {
        ptr: *mut f32,
        rows: usize,
        n_tokens: usize,
    }

    // SAFETY: `Out` is a pointer into one `&mut [f32]` borrowed for the
    // whole parallel loop that uses it; the tasks write disjoint elements
    // (each task only the rows of its own chunk), and nothing reads them
    // until the loop has joined.
    unsafe impl Send for Out {}
    // SAFETY: as for `Send`.
    unsafe impl Sync for Out {}

    impl Out {
        fn new(out: &mut [f32], rows: usize, n_tokens: usize) -> Out {
            assert_eq!(out.len(), rows * n_tokens);
            Out {
                ptr: out.as_mut_ptr(),
                rows,
                n_tokens,
            }
        }

        /// `out[t][r] = v`. Each `(t, r)` must be written by one task only.
        #[inline(always)]
        fn put(self, t: usize, r: usize, v: f32) {
            assert!(t < self.n_tokens && r < self.rows);
            // SAFETY: in bounds (just checked) of the buffer `new` took,
            // which outlives the loop; no other task writes this element
            // (see the `Send` impl).
            unsafe { *self.ptr.add(t * self.rows + r) = v };
        }
    }

    thread_local! {
        /// A task's packed weight rows.
        static WPACK: RefCell<Vec<WPair>> = const { RefCell::new(Vec::new()) };
    }

    /// The packed matmul of [`crate::matmul::matmul`] for `w` (Q8_0, Q5_0,
    /// Q4_K or Q6_K) and activations already quantized to Q8_0 in `act`, with
    /// `chunk` weight rows per task; `None` if this CPU or format has no
    /// packed path.
    pub(crate) fn run(
        w: &QMatrix<'_>,
        act: &[u8],
        n_tokens: usize,
        out: &mut [f32],
        apack: &mut Vec<APairBuf>,
        chunk: usize,
    ) -> Option<Result<(), QuantError>> {
        crate::Isa::detect().avx512_vnni()?;
        Some(match w.format() {
            Format::Q8_0 => go::<BlockQ8_0>(w, act, n_tokens, out, apack, chunk),
            Format::Q5_0 => go::<BlockQ5_0>(w, act, n_tokens, out, apack, chunk),
            Format::Q4_K => go_k::<BlockQ4K>(w, act, n_tokens, out, chunk),
            Format::Q6_K => go_k::<BlockQ6K>(w, act, n_tokens, out, chunk),
            _ => return None,
        })
    }

    /// The scratch of packed activations ([`APair`], opaque outside).
    pub(crate) type APairBuf = APair;

    fn go<W: Pack>(
        w: &QMatrix<'_>,
        act: &[u8],
        n_tokens: usize,
        out: &mut [f32],
        apack: &mut Vec<APair>,
        chunk: usize,
    ) -> Result<(), QuantError> {
        let rows = w.rows();
        let nb = w.cols() / 32;
        let np = nb.div_ceil(2);
        let wb = blocks_from_bytes::<W>(w.data())?;
        let ab = blocks_from_bytes::<BlockQ8_0>(act)?;
        debug_assert_eq!(wb.len(), rows * nb);
        debug_assert_eq!(ab.len(), n_tokens * nb);

        // Tokens padded to whole tiles with zero activations.
        let t_pad = n_tokens.next_multiple_of(NR);
        apack.clear();
        apack.resize(t_pad * np, ZERO_A);
        apack[..n_tokens * np]
            .par_chunks_mut(np)
            .zip(ab.par_chunks(nb))
            // SAFETY: `run` checked AVX-512 VNNI (and F16C) on this CPU.
            .for_each(|(o, row)| unsafe { pack_act(row, o) });
        let apack = &*apack;

        let dst = Out::new(out, rows, n_tokens);
        (0..rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let r0 = c * chunk;
            let n_rows = chunk.min(rows - r0);
            let r_pad = n_rows.next_multiple_of(MR);
            WPACK.with_borrow_mut(|wpack| {
                wpack.clear();
                wpack.resize(r_pad * np, ZERO_W);
                for (i, o) in wpack.chunks_exact_mut(np).take(n_rows).enumerate() {
                    let r = r0 + i;
                    // SAFETY: `run` checked AVX-512 VNNI and F16C.
                    unsafe { pack_row(&wb[r * nb..(r + 1) * nb], o) };
                }
                for t0 in (0..t_pad).step_by(T_BLOCK) {
                    let t1 = (t0 + T_BLOCK).min(t_pad);
                    for i0 in (0..r_pad).step_by(MR) {
                        let wt = &wpack[i0 * np..(i0 + MR) * np];
                        for t in (t0..t1).step_by(NR) {
                            let at = &apack[t * np..(t + NR) * np];
                            // SAFETY: `run` checked the CPU; `wt` holds
                            // MR rows of `np` pairs and `at` NR tokens.
                            let r = unsafe { tile(wt, at, np) };
                            for (m, rm) in r.iter().enumerate() {
                                let i = i0 + m;
                                if i >= n_rows {
                                    break;
                                }
                                for (n, &v) in rm.iter().enumerate() {
                                    if t + n < n_tokens {
                                        dst.put(t + n, r0 + i, v);
                                    }
                                }
                            }
                        }
                    }
                }
            });
        });
        Ok(())
    }
}
