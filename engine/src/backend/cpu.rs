//! The CPU backend: weights used in place from the memory-mapped file,
//! kernels from `hearth-kernels`, parallel over rayon's pool.

use std::sync::Arc;

use half::f16;
use hearth_gguf::{GgmlType, TensorInfo};
use hearth_kernels::matmul::{matmul, MatmulScratch, QMatrix};
use hearth_kernels::ops::act::{add_inplace, gelu_mul_inplace, silu_mul_inplace};
use hearth_kernels::ops::attention::{attention_par, AttentionScratch, KvCache, KvElem};
use hearth_kernels::ops::norm::{rms_norm, rms_norm_heads_inplace, rms_norm_inplace};
use hearth_kernels::ops::rope::{Rope, RopeOrdering};
use hearth_kernels::quant::q8_0::{quantize_row_q8_0, QK8_0};
use hearth_kernels::quant::BlockQ8_0;
use hearth_kernels::quant::Format;
use rayon::prelude::*;
use std::sync::Mutex;

use super::kv::{AttentionShapes, KvBook};
use super::profile::{self, Op};
use super::{AttentionParams, Backend, CacheSpec, KvType, ModelFile, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};

/// The kernel format of a GGUF tensor type, if the CPU kernels have it.
pub fn kernel_format(t: GgmlType) -> Option<Format> {
    Some(match t {
        GgmlType::F32 => Format::F32,
        GgmlType::F16 => Format::F16,
        GgmlType::BF16 => Format::BF16,
        GgmlType::Q4_0 => Format::Q4_0,
        GgmlType::Q4_1 => Format::Q4_1,
        GgmlType::Q5_0 => Format::Q5_0,
        GgmlType::Q5_1 => Format::Q5_1,
        GgmlType::Q8_0 => Format::Q8_0,
        GgmlType::Q2_K => Format::Q2_K,
        GgmlType::Q3_K => Format::Q3_K,
        GgmlType::Q4_K => Format::Q4_K,
        GgmlType::Q5_K => Format::Q5_K,
        GgmlType::Q6_K => Format::Q6_K,
        GgmlType::IQ4_NL => Format::IQ4_NL,
        GgmlType::IQ4_XS => Format::IQ4_XS,
        _ => return None,
    })
}

/// A weight: a matrix left in the mapped file, or a small f32 vector copied
/// out of it.
pub enum CpuWeight {
    Matrix {
        file: Arc<ModelFile>,
        format: Format,
        rows: usize,
        cols: usize,
        /// Byte range of the data in the file.
        start: usize,
        len: usize,
    },
    Vector(Vec<f32>),
}

impl CpuWeight {
    fn matrix(&self) -> Result<QMatrix<'_>> {
        match self {
            CpuWeight::Matrix {
                file,
                format,
                rows,
                cols,
                start,
                len,
            } => Ok(QMatrix::new(
                *format,
                *rows,
                *cols,
                &file.bytes()[*start..*start + *len],
            )?),
            CpuWeight::Vector(_) => Err(Error::shape(
                "matmul",
                "a vector weight was used as a matrix".into(),
            )),
        }
    }

    fn vector(&self) -> Result<&[f32]> {
        match self {
            CpuWeight::Vector(v) => Ok(v),
            CpuWeight::Matrix { .. } => Err(Error::shape(
                "vector op",
                "a matrix weight was used as a vector".into(),
            )),
        }
    }
}

/// Activations: `rows x cols` f32, row-major.
#[derive(Clone, Debug, Default)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl CpuTensor {
    fn resize(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.data.resize(rows * cols, 0.0);
    }

    pub fn from_rows(rows: usize, cols: usize, data: Vec<f32>) -> CpuTensor {
        assert_eq!(data.len(), rows * cols);
        CpuTensor { data, rows, cols }
    }
}

enum KvStore {
    F16(Vec<f16>),
    F32(Vec<f32>),
    Q8_0(Vec<BlockQ8_0>),
}

impl KvStore {
    /// Room for `n` values.
    fn new(t: KvType, n: usize) -> KvStore {
        match t {
            KvType::F16 => KvStore::F16(vec![f16::ZERO; n]),
            KvType::F32 => KvStore::F32(vec![0.0; n]),
            KvType::Q8_0 => KvStore::Q8_0(vec![bytemuck::Zeroable::zeroed(); n / QK8_0]),
        }
    }

    /// Stores `src` at value offset `at` (whole blocks for Q8_0, which the
    /// cache's row size guarantees).
    fn write(&mut self, at: usize, src: &[f32]) -> Result<()> {
        match self {
            KvStore::F16(d) => d[at..at + src.len()]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = f16::from_f32(s)),
            KvStore::F32(d) => d[at..at + src.len()].copy_from_slice(src),
            KvStore::Q8_0(d) => {
                quantize_row_q8_0(src, &mut d[at / QK8_0..(at + src.len()) / QK8_0])?
            }
        }
        Ok(())
    }
}

/// Attention of `q` over the first `n_values` values of one sequence's keys
/// and values, whatever they are stored as.
#[allow(clippy::too_many_arguments)] // attention's operands, spelled out
fn attend_store(
    p: &AttentionParams,
    (k, v): (&KvStore, &KvStore),
    n_values: usize,
    q: &[f32],
    q_pos: &[i32],
    pos: &[i32],
    out: &mut [f32],
    scratch: &mut AttentionScratch,
) -> Result<()> {
    #[allow(clippy::too_many_arguments)]
    fn go<T: KvElem>(
        p: &AttentionParams,
        (k, v): (&[T], &[T]),
        n: usize,
        q: &[f32],
        q_pos: &[i32],
        pos: &[i32],
        out: &mut [f32],
        scratch: &mut AttentionScratch,
    ) -> Result<()> {
        let kv = KvCache {
            k: &k[..n],
            v: &v[..n],
            pos,
        };
        Ok(attention_par(p, q, q_pos, &kv, out, scratch)?)
    }
    match (k, v) {
        (KvStore::F16(k), KvStore::F16(v)) => go(p, (k, v), n_values, q, q_pos, pos, out, scratch),
        (KvStore::F32(k), KvStore::F32(v)) => go(p, (k, v), n_values, q, q_pos, pos, out, scratch),
        (KvStore::Q8_0(k), KvStore::Q8_0(v)) => {
            go(p, (k, v), n_values / QK8_0, q, q_pos, pos, out, scratch)
        }
        _ => Err(Error::Cache("keys and values differ in type".into())),
    }
}

/// Per sequence and layer, a ring of keys and values and the position each
/// slot holds; the rings and their bookkeeping are [`KvBook`]'s (see
/// `backend::kv` for why stale slots are never wrongly visible).
pub struct CpuCache {
    book: KvBook,
    /// `[seq][layer]`.
    k: Vec<Vec<KvStore>>,
    v: Vec<Vec<KvStore>>,
    /// `[seq][layer]`: the position held by each slot.
    slot_pos: Vec<Vec<Vec<i32>>>,
}

impl CpuCache {
    /// Filled positions of sequence `seq`.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.book.seq_len(seq)
    }

    /// Rows of keys and values held per layer (all sequences).
    pub fn capacity(&self, layer: usize) -> usize {
        self.book.capacity(layer)
    }
}

/// The CPU backend.
#[derive(Default)]
pub struct Cpu {
    matmul_scratch: Mutex<MatmulScratch>,
    attn_scratch: Mutex<AttentionScratch>,
}

impl Cpu {
    pub fn new() -> Cpu {
        Cpu::default()
    }
}

/// The profiler's kind for a matmul of `m`.
fn matmul_op(m: &QMatrix<'_>) -> Op {
    match m.format() {
        _ if m.rows() > 65536 => Op::MatmulOutput,
        Format::Q5_0 => Op::MatmulQ5_0,
        Format::Q8_0 => Op::MatmulQ8_0,
        Format::Q4_K => Op::MatmulQ4K,
        Format::Q6_K => Op::MatmulQ6K,
        _ => Op::MatmulOther,
    }
}

fn check_cols(op: &'static str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::shape(op, format!("width {a} does not match {b}")))
    }
}

impl Backend for Cpu {
    type Weight = CpuWeight;
    type Tensor = CpuTensor;
    type Cache = CpuCache;
    type Rope = Rope;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn load_matrix(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<CpuWeight> {
        let format = kernel_format(info.ggml_type).ok_or_else(|| Error::UnsupportedTensorType {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
            backend: "cpu",
        })?;
        let start = (file.data_start() + info.data_offset) as usize;
        let w = CpuWeight::Matrix {
            file: Arc::clone(file),
            format,
            rows: info.n_rows() as usize,
            cols: info.dims[0] as usize,
            start,
            len: info.size as usize,
        };
        w.matrix()?; // checks the size once at load
        Ok(w)
    }

    fn load_vector(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<CpuWeight> {
        let format = kernel_format(info.ggml_type).ok_or_else(|| Error::UnsupportedTensorType {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
            backend: "cpu",
        })?;
        let mut v = vec![0.0; info.n_elements() as usize];
        let data = file.tensor_data(info);
        (hearth_kernels::quant::kernels(format).dequantize_row)(data, &mut v)?;
        Ok(CpuWeight::Vector(v))
    }

    fn new_tensor(&self) -> CpuTensor {
        CpuTensor::default()
    }

    fn new_cache(&self, spec: &CacheSpec) -> Result<CpuCache> {
        if spec.kv_type == KvType::Q8_0 && !spec.kv_dim.is_multiple_of(QK8_0) {
            return Err(Error::Cache(format!(
                "Q8_0 needs rows of whole 32-value blocks; this model's are {}",
                spec.kv_dim
            )));
        }
        let book = KvBook::new(spec)?;
        let stores = || {
            (0..spec.n_seq)
                .map(|_| {
                    (0..spec.n_layer)
                        .map(|l| KvStore::new(spec.kv_type, book.ring_values(l)))
                        .collect()
                })
                .collect()
        };
        Ok(CpuCache {
            k: stores(),
            v: stores(),
            slot_pos: (0..spec.n_seq)
                .map(|_| {
                    (0..spec.n_layer)
                        .map(|l| vec![0; book.capacity(l)])
                        .collect()
                })
                .collect(),
            book,
        })
    }

    fn clear_seq(&self, cache: &mut CpuCache, seq: usize) -> Result<()> {
        cache.book.clear_seq(seq)
    }

    fn rope(&self, cfg: &RopeConfig) -> Result<Rope> {
        let ordering = if cfg.neox {
            RopeOrdering::Neox
        } else {
            RopeOrdering::Normal
        };
        Ok(Rope::new(
            cfg.head_dim,
            cfg.n_rot,
            cfg.freq_base,
            cfg.freq_scale,
            ordering,
        )?)
    }

    fn embed(&self, w: &CpuWeight, ids: &[u32], scale: f32, out: &mut CpuTensor) -> Result<()> {
        let _t = profile::start(Op::Embed, ids.len());
        let m = w.matrix()?;
        out.resize(ids.len(), m.cols());
        out.data
            .par_chunks_mut(m.cols())
            .zip(ids)
            .try_for_each(|(row, &id)| {
                if id as usize >= m.rows() {
                    return Err(Error::TokenOutOfVocabulary {
                        id,
                        n_vocab: m.rows(),
                    });
                }
                m.dequantize_row(id as usize, row)?;
                if scale != 1.0 {
                    row.iter_mut().for_each(|x| *x *= scale);
                }
                Ok(())
            })
    }

    fn matmul(&self, w: &CpuWeight, x: &CpuTensor, out: &mut CpuTensor) -> Result<()> {
        let m = w.matrix()?;
        let _t = profile::start(matmul_op(&m), x.rows);
        check_cols("matmul", x.cols, m.cols())?;
        out.resize(x.rows, m.rows());
        let mut scratch = self
            .matmul_scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        matmul(&m, &x.data, x.rows, &mut out.data, &mut scratch)?;
        Ok(())
    }

    fn add_bias(&self, x: &mut CpuTensor, b: &CpuWeight) -> Result<()> {
        let b = b.vector()?;
        check_cols("add_bias", x.cols, b.len())?;
        x.data
            .chunks_mut(x.cols)
            .for_each(|row| add_inplace(row, b));
        Ok(())
    }

    fn rms_norm(&self, x: &CpuTensor, w: &CpuWeight, eps: f32, out: &mut CpuTensor) -> Result<()> {
        let _t = profile::start(Op::RmsNorm, x.rows);
        let w = w.vector()?;
        check_cols("rms_norm", x.cols, w.len())?;
        out.resize(x.rows, x.cols);
        out.data
            .par_chunks_mut(x.cols)
            .zip(x.data.par_chunks(x.cols))
            .for_each(|(y, x)| rms_norm(x, w, eps, y));
        Ok(())
    }

    fn rms_norm_inplace(&self, x: &mut CpuTensor, w: &CpuWeight, eps: f32) -> Result<()> {
        let _t = profile::start(Op::RmsNorm, x.rows);
        let w = w.vector()?;
        check_cols("rms_norm", x.cols, w.len())?;
        x.data
            .par_chunks_mut(w.len())
            .for_each(|row| rms_norm_inplace(row, w, eps));
        Ok(())
    }

    fn rms_norm_heads(&self, x: &mut CpuTensor, w: &CpuWeight, eps: f32) -> Result<()> {
        let _t = profile::start(Op::RmsNorm, x.rows);
        let w = w.vector()?;
        if w.is_empty() || !x.cols.is_multiple_of(w.len()) {
            return Err(Error::shape(
                "rms_norm_heads",
                format!(
                    "head norm of {} does not divide rows of {}",
                    w.len(),
                    x.cols
                ),
            ));
        }
        x.data
            .par_chunks_mut(x.cols)
            .for_each(|row| rms_norm_heads_inplace(row, w, eps));
        Ok(())
    }

    fn apply_rope(
        &self,
        x: &mut CpuTensor,
        rope: &Rope,
        n_heads: usize,
        positions: &[i32],
    ) -> Result<()> {
        let _t = profile::start(Op::Rope, x.rows);
        check_cols("rope", x.cols, n_heads * rope.head_dim())?;
        check_cols("rope positions", x.rows, positions.len())?;
        let cols = x.cols;
        x.data
            .par_chunks_mut(cols)
            .zip(positions.par_iter())
            .for_each(|(row, &p)| rope.apply_inplace(row, n_heads, std::slice::from_ref(&p)));
        Ok(())
    }

    fn attention(
        &self,
        cache: &mut CpuCache,
        layer: usize,
        batch: &Batch,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        p: &AttentionParams,
        out: &mut CpuTensor,
    ) -> Result<()> {
        let _t = profile::start(Op::Attention, q.rows);
        let shapes = AttentionShapes {
            q: (q.rows, q.cols),
            k: (k.rows, k.cols),
            v: (v.rows, v.cols),
        };
        let kd = cache.book.spec().kv_dim;
        out.resize(q.rows, q.cols);
        let mut scratch = self.attn_scratch.lock().unwrap_or_else(|e| e.into_inner());
        for s in cache.book.store(layer, batch, &shapes, p)? {
            let (ks, vs) = (&mut cache.k[s.seq][layer], &mut cache.v[s.seq][layer]);
            let slot_pos = &mut cache.slot_pos[s.seq][layer];
            for (row, slot, pos) in s.rows() {
                ks.write(slot * kd, &k.data[row * kd..(row + 1) * kd])?;
                vs.write(slot * kd, &v.data[row * kd..(row + 1) * kd])?;
                slot_pos[slot] = pos as i32;
            }
            let (qs, os) = (s.start * q.cols, (s.start + s.len) * q.cols);
            let positions = &batch.positions()[s.start..s.start + s.len];
            attend_store(
                p,
                (ks, vs),
                s.n_kv * kd,
                &q.data[qs..os],
                positions,
                &slot_pos[..s.n_kv],
                &mut out.data[qs..os],
                &mut scratch,
            )?;
        }
        Ok(())
    }

    fn commit(&self, cache: &mut CpuCache, batch: &Batch) -> Result<()> {
        cache.book.commit(batch)
    }

    fn gelu_mul(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        let _t = profile::start(Op::GeluMul, a.rows);
        check_cols("gelu_mul", a.data.len(), b.data.len())?;
        a.data
            .par_chunks_mut(4096)
            .zip(b.data.par_chunks(4096))
            .for_each(|(a, b)| gelu_mul_inplace(a, b));
        Ok(())
    }

    fn silu_mul(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        check_cols("silu_mul", a.data.len(), b.data.len())?;
        a.data
            .par_chunks_mut(4096)
            .zip(b.data.par_chunks(4096))
            .for_each(|(a, b)| silu_mul_inplace(a, b));
        Ok(())
    }

    fn add(&self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        let _t = profile::start(Op::Add, a.rows);
        check_cols("add", a.data.len(), b.data.len())?;
        add_inplace(&mut a.data, &b.data);
        Ok(())
    }

    fn scale(&self, x: &mut CpuTensor, s: f32) -> Result<()> {
        let _t = profile::start(Op::Other, x.rows);
        x.data.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn softcap(&self, x: &mut CpuTensor, cap: f32) -> Result<()> {
        let _t = profile::start(Op::Other, x.rows);
        // llama.cpp's three ops: scale by 1/cap, tanh, scale by cap.
        let inv = 1.0 / cap;
        x.data.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
        Ok(())
    }

    fn select_rows(&self, x: &CpuTensor, rows: &[usize], out: &mut CpuTensor) -> Result<()> {
        let _t = profile::start(Op::Other, x.rows);
        out.resize(rows.len(), x.cols);
        for (o, &r) in out.data.chunks_mut(x.cols.max(1)).zip(rows) {
            if r >= x.rows {
                return Err(Error::Batch(format!("row {r} of {}", x.rows)));
            }
            o.copy_from_slice(&x.data[r * x.cols..(r + 1) * x.cols]);
        }
        Ok(())
    }

    fn read(&self, x: &CpuTensor, out: &mut Vec<f32>) -> Result<(usize, usize)> {
        out.clear();
        out.extend_from_slice(&x.data);
        Ok((x.rows, x.cols))
    }

    fn write(&self, x: &mut CpuTensor, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
        check_cols("write", data.len(), rows * cols)?;
        x.resize(rows, cols);
        x.data.copy_from_slice(data);
        Ok(())
    }
}
