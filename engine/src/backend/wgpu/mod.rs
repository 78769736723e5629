//! The WebGPU backend: WGSL kernels (`shaders/`) run through `wgpu` on any
//! Vulkan, Metal or DX12 device, lavapipe included.
//!
//! - Weights are uploaded once at load as the GGUF bytes they are (no
//!   dequantization); a matrix larger than the adapter's storage binding
//!   limit is split into parts of whole rows, one dispatch each.
//! - Every op records into one command encoder held by the backend; its
//!   parameter blocks and small per-call data (token ids, RoPE cos/sin,
//!   cache slots) go to a host arena that is written to one uniform/storage
//!   buffer, created once, just before the encoder is submitted. [`Backend::read`]
//!   submits and maps: one submit per forward pass.
//! - Activations stay f32 on the device (the CPU quantizes them to 8 bits
//!   for its dot products). The KV cache is f32 or f16, a ring per
//!   sliding-window layer as on the CPU.
//! - Where the adapter has `SHADER_F16`, an f16 cache is written and read
//!   as native `f16` (`kv_store_f16.wgsl`, `attention_kv_f16.wgsl`);
//!   elsewhere, or with `HEARTH_WGPU_F16=0`, as f16 pairs packed in u32
//!   words. Arithmetic stays f32 on both paths.

pub mod device;
mod profile;
pub mod shaders;

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hearth_gguf::TensorInfo;
use hearth_kernels::ops::rope::{Rope, RopeOrdering};
use hearth_kernels::quant::Format;
use wgpu::util::DeviceExt;

use super::cpu::kernel_format;
use super::kv::{AttentionShapes, KvBook};
use super::{AttentionParams, Backend, CacheSpec, KvType, ModelFile, RopeConfig};
use crate::batch::Batch;
use crate::error::{Error, Result};
use shaders::*;

pub use device::{list_adapters, AdapterSummary};
pub use profile::KernelTime;

/// Bytes of the parameter arena; a forward pass that needs more is split
/// into several submits.
const ARENA_BYTES: usize = 16 << 20;

/// A weight on the device.
pub enum WgpuWeight {
    /// GGUF rows as stored, in parts of whole rows.
    Matrix {
        format: Format,
        rows: usize,
        cols: usize,
        row_bytes: usize,
        parts: Vec<Part>,
    },
    /// f32 values (norm weights, biases).
    Vector { buf: wgpu::Buffer, len: usize },
}

/// Rows `row0..row0 + rows` of a matrix.
pub struct Part {
    buf: wgpu::Buffer,
    row0: usize,
    rows: usize,
}

/// Activations: `rows x cols` f32, row-major, in a buffer that only grows.
#[derive(Default)]
pub struct WgpuTensor {
    buf: Option<wgpu::Buffer>,
    rows: usize,
    cols: usize,
}

impl WgpuTensor {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    fn bytes(&self) -> u64 {
        (self.rows * self.cols * 4) as u64
    }
}

/// The keys, values and slot positions of one sequence and layer.
struct LayerKv {
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    pos: wgpu::Buffer,
}

/// The KV cache on the device, laid out as `CpuCache`; the bookkeeping
/// stays on the host, in [`KvBook`] (see `backend::kv`).
pub struct WgpuCache {
    book: KvBook,
    /// `[seq][layer]`.
    kv: Vec<Vec<LayerKv>>,
    f16: bool,
}

impl WgpuCache {
    pub fn seq_len(&self, seq: usize) -> usize {
        self.book.seq_len(seq)
    }
}

/// A RoPE configuration; the angles are computed on the host in f64.
pub struct WgpuRope {
    rope: Rope,
    id: usize,
}

/// Compiled kernels.
struct Pipelines {
    rms_norm: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    glu: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    kv_store: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    /// With `SHADER_F16`: (kv_store, attention) over a native f16 cache.
    f16: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
    /// f16 caches use [`Pipelines::f16`].
    use_f16: bool,
    /// Per weight format: (matmul, embed), compiled at first use.
    quant: Mutex<HashMap<Format, Arc<QuantPipes>>>,
    /// Which matmul kernel runs.
    matmul: MatmulKernel,
}

/// What one forward pass has recorded and not yet submitted.
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    arena: Vec<u8>,
    arena_buf: wgpu::Buffer,
    readback: Option<wgpu::Buffer>,
    /// RoPE tables staged in this arena: (rope id, positions, offset).
    rope_tables: Vec<(usize, Vec<i32>, u64)>,
    profiler: Option<profile::Profiler>,
}

/// The WebGPU backend.
pub struct Wgpu {
    gpu: device::Gpu,
    pipes: Pipelines,
    rec: Mutex<Recorder>,
    /// Offset alignment of uniform and storage bindings.
    align: u64,
    /// Largest storage binding and buffer.
    max_binding: u64,
    max_buffer: u64,
}

/// The kernels over one weight format, with their profile labels.
struct QuantPipes {
    matmul: wgpu::ComputePipeline,
    embed: wgpu::ComputePipeline,
    matmul_label: &'static str,
    embed_label: &'static str,
}

/// The two shapes of the matmul kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// `matmul.wgsl`: a workgroup of 32 threads per row, reduced in
    /// workgroup memory (GPUs: neighbouring threads read neighbouring bytes).
    Workgroup,
    /// `matmul_rows.wgsl`: a thread per 16 rows and 16 tokens (CPU adapters
    /// such as lavapipe).
    Rows,
    /// `matmul_subgroup.wgsl`: as `Workgroup`, reduced with `subgroupAdd`
    /// (adapters with subgroups; `Workgroup` is the fallback).
    Subgroup,
}

/// Profile labels of the per-format kernels.
const LABELS: &[(&str, &str, &str)] = &[
    ("f32", "matmul f32", "embed f32"),
    ("f16", "matmul f16", "embed f16"),
    ("q4_0", "matmul q4_0", "embed q4_0"),
    ("q4_1", "matmul q4_1", "embed q4_1"),
    ("q5_0", "matmul q5_0", "embed q5_0"),
    ("q5_1", "matmul q5_1", "embed q5_1"),
    ("q8_0", "matmul q8_0", "embed q8_0"),
    ("q2_k", "matmul q2_k", "embed q2_k"),
    ("q3_k", "matmul q3_k", "embed q3_k"),
    ("q4_k", "matmul q4_k", "embed q4_k"),
    ("q5_k", "matmul q5_k", "embed q5_k"),
    ("q6_k", "matmul q6_k", "embed q6_k"),
];

static ROPE_IDS: AtomicUsize = AtomicUsize::new(0);

/// Workgroups `(x, y)` covering `n` with x at most 65535.
fn grid(n: usize) -> Result<(u32, u32)> {
    let x = n.clamp(1, 65535);
    let y = n.div_ceil(x);
    if y > 65535 {
        return Err(Error::Gpu(format!("{n} workgroups exceed one dispatch")));
    }
    Ok((x as u32, y as u32))
}

fn check_cols(op: &'static str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::shape(op, format!("width {a} does not match {b}")))
    }
}

fn u32_of(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Gpu(format!("{what} {n} does not fit a u32")))
}

fn entry(binding: u32, buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: NonZeroU64::new(size.max(4)),
        }),
    }
}

impl Wgpu {
    /// Opens the best adapter (see [`device::open`]).
    pub fn new() -> Result<Wgpu> {
        Wgpu::with_options(false)
    }

    /// With `profile`, records timestamps around every kernel if the
    /// adapter offers timestamp queries (see [`Wgpu::take_profile`]).
    pub fn with_options(profile: bool) -> Result<Wgpu> {
        let gpu = device::open(profile)?;
        let compile = |label: &str, src: &str| -> wgpu::ComputePipeline {
            let module = gpu
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
        };
        let pipes = Pipelines {
            rms_norm: compile("rms_norm", RMS_NORM),
            rope: compile("rope", ROPE),
            glu: compile("glu", GLU),
            add: compile("add", ADD),
            kv_store: compile("kv_store", KV_STORE),
            attention: compile("attention", &attention()),
            f16: gpu.shader_f16.then(|| {
                (
                    compile("kv_store f16", KV_STORE_F16),
                    compile("attention f16", &attention_f16()),
                )
            }),
            use_f16: gpu.shader_f16 && std::env::var("HEARTH_WGPU_F16").as_deref() != Ok("0"),
            quant: Mutex::new(HashMap::new()),
            matmul: match std::env::var("HEARTH_WGPU_MATMUL").as_deref() {
                Ok("rows") => MatmulKernel::Rows,
                Ok("workgroup") => MatmulKernel::Workgroup,
                Ok("subgroup") if gpu.subgroups => MatmulKernel::Subgroup,
                _ if gpu.info.device_type == "Cpu" => MatmulKernel::Rows,
                _ if gpu.subgroups => MatmulKernel::Subgroup,
                _ => MatmulKernel::Workgroup,
            },
        };
        let arena_buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: ARENA_BYTES as u64,
            usage: wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let align = u64::from(
            gpu.limits
                .min_uniform_buffer_offset_alignment
                .max(gpu.limits.min_storage_buffer_offset_alignment),
        );
        let max_binding = gpu.limits.max_storage_buffer_binding_size & !3;
        let max_buffer = gpu.limits.max_buffer_size;
        let profiler = gpu
            .timestamps
            .then(|| profile::Profiler::new(&gpu.device, &gpu.queue));
        Ok(Wgpu {
            rec: Mutex::new(Recorder {
                encoder: None,
                arena: Vec::with_capacity(ARENA_BYTES),
                arena_buf,
                readback: None,
                rope_tables: Vec::new(),
                profiler,
            }),
            gpu,
            pipes,
            align,
            max_binding,
            max_buffer,
        })
    }

    /// Lowers the largest storage binding this backend uses to `bytes`
    /// (rounded down to the binding alignment), so that tests split small
    /// matrices and outputs as the 178 MB output matrix is split on lavapipe.
    /// Weights already loaded keep their parts.
    pub fn with_binding_limit(mut self, bytes: u64) -> Wgpu {
        self.max_binding = self
            .max_binding
            .min(bytes / self.align * self.align)
            .max(self.align);
        self
    }

    /// Chooses the matmul kernel (default: [`MatmulKernel::Rows`] on a CPU
    /// adapter, else [`MatmulKernel::Workgroup`]; `HEARTH_WGPU_MATMUL=rows`
    /// or `workgroup` overrides). Call before loading weights.
    /// [`MatmulKernel::Subgroup`] falls back to `Workgroup` without subgroups.
    pub fn with_matmul_kernel(mut self, k: MatmulKernel) -> Wgpu {
        self.pipes.matmul = match k {
            MatmulKernel::Subgroup if !self.gpu.subgroups => MatmulKernel::Workgroup,
            k => k,
        };
        self.pipes
            .quant
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self
    }

    pub fn matmul_kernel(&self) -> MatmulKernel {
        self.pipes.matmul
    }

    /// Chooses how an f16 KV cache is written and read: with `on`, as
    /// native `f16` (the default where the adapter has `SHADER_F16`, unless
    /// `HEARTH_WGPU_F16=0`); without, or where the adapter lacks it, as f16
    /// pairs packed in u32 words.
    pub fn with_f16_shaders(mut self, on: bool) -> Wgpu {
        self.pipes.use_f16 = on && self.pipes.f16.is_some();
        self
    }

    /// Whether an f16 KV cache uses the native `f16` kernels.
    pub fn f16_shaders(&self) -> bool {
        self.pipes.use_f16
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.info
    }

    /// Whether `--profile` timing is on (the adapter has timestamp queries).
    pub fn profiling(&self) -> bool {
        self.lock().profiler.is_some()
    }

    /// Time per kernel since the last call, summed over dispatches, slowest
    /// first; empty when profiling is off.
    pub fn take_profile(&self) -> Vec<KernelTime> {
        self.lock()
            .profiler
            .as_mut()
            .map(|p| p.take())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quant_pipes(&self, format: Format) -> Result<Arc<QuantPipes>> {
        let mut map = self.pipes.quant.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&format) {
            return Ok(Arc::clone(p));
        }
        let compile = |kind: &str, body: &str| -> Result<wgpu::ComputePipeline> {
            let src = with_format(format, body)
                .ok_or_else(|| Error::Gpu(format!("no WGSL kernel reads {format:?} weights")))?;
            let label = format!("{kind} {format:?}");
            let module = self
                .gpu
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
            Ok(self
                .gpu
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }))
        };
        let body = match self.pipes.matmul {
            MatmulKernel::Workgroup => MATMUL,
            MatmulKernel::Rows => MATMUL_ROWS,
            MatmulKernel::Subgroup => MATMUL_SUBGROUP,
        };
        let name = FORMATS.iter().find(|f| f.0 == format).map_or("?", |f| f.1);
        let (matmul_label, embed_label) = LABELS
            .iter()
            .find(|l| l.0 == name)
            .map_or(("matmul", "embed"), |l| (l.1, l.2));
        let p = Arc::new(QuantPipes {
            matmul: compile("matmul", body)?,
            embed: compile("embed", EMBED)?,
            matmul_label,
            embed_label,
        });
        map.insert(format, Arc::clone(&p));
        Ok(p)
    }

    /// Makes room for `bytes` of staged data (with alignment), submitting
    /// what is recorded if the arena is full.
    fn reserve(&self, rec: &mut Recorder, bytes: usize) -> Result<()> {
        let need = bytes + 8 * self.align as usize;
        if need > ARENA_BYTES {
            return Err(Error::Gpu(format!(
                "{bytes} bytes of kernel parameters in one op exceed the arena of {ARENA_BYTES}"
            )));
        }
        if rec.arena.len() + need > ARENA_BYTES {
            self.submit(rec);
        }
        Ok(())
    }

    /// Stages `data` in the arena; returns its offset (after [`Self::reserve`]).
    fn stage(&self, rec: &mut Recorder, data: &[u8]) -> u64 {
        let off = rec.arena.len().next_multiple_of(self.align as usize);
        rec.arena.resize(off, 0);
        rec.arena.extend_from_slice(data);
        // Bindings are at least 4 bytes; keep the tail addressable.
        while rec.arena.len() < off + 4 {
            rec.arena.push(0);
        }
        off as u64
    }

    fn encoder<'r>(&self, rec: &'r mut Recorder) -> &'r mut wgpu::CommandEncoder {
        rec.encoder.get_or_insert_with(|| {
            self.gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("forward"),
                })
        })
    }

    /// Writes the arena and submits the recorded commands.
    fn submit(&self, rec: &mut Recorder) {
        let Some(mut enc) = rec.encoder.take() else {
            rec.arena.clear();
            rec.rope_tables.clear();
            return;
        };
        if let Some(p) = rec.profiler.as_mut() {
            p.resolve(&mut enc);
        }
        if !rec.arena.is_empty() {
            let n = rec.arena.len().next_multiple_of(4);
            rec.arena.resize(n, 0);
            self.gpu.queue.write_buffer(&rec.arena_buf, 0, &rec.arena);
        }
        self.gpu.queue.submit([enc.finish()]);
        rec.arena.clear();
        rec.rope_tables.clear();
        if let Some(p) = rec.profiler.as_mut() {
            p.collect(&self.gpu.device);
        }
    }

    /// Records one dispatch of `pipe` with `params` at binding 0 and `bind`.
    fn dispatch<P: bytemuck::Pod>(
        &self,
        rec: &mut Recorder,
        label: &'static str,
        pipe: &wgpu::ComputePipeline,
        params: &P,
        bind: &[(u32, &wgpu::Buffer, u64, u64)],
        groups: (u32, u32, u32),
    ) {
        let off = self.stage(rec, bytemuck::bytes_of(params));
        let mut entries = vec![entry(0, &rec.arena_buf, off, size_of::<P>() as u64)];
        entries.extend(bind.iter().map(|&(b, buf, o, s)| entry(b, buf, o, s)));
        let bg = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &pipe.get_bind_group_layout(0),
                entries: &entries,
            });
        let rec = &mut *rec;
        let ts = rec.profiler.as_mut().and_then(|p| p.next(label));
        let enc = rec.encoder.get_or_insert_with(|| {
            self.gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("forward"),
                })
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: ts.as_ref().map(|(qs, i)| wgpu::ComputePassTimestampWrites {
                query_set: qs,
                beginning_of_pass_write_index: Some(*i),
                end_of_pass_write_index: Some(*i + 1),
            }),
        });
        pass.set_pipeline(pipe);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Sizes `t` to `rows x cols`, growing its buffer if needed.
    fn ensure(&self, t: &mut WgpuTensor, rows: usize, cols: usize) -> Result<()> {
        let bytes = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| Error::Gpu("tensor size overflows".into()))? as u64;
        let cap = t.buf.as_ref().map_or(0, |b| b.size());
        if bytes > cap {
            if bytes > self.max_buffer {
                return Err(Error::Gpu(format!(
                    "a {rows} x {cols} tensor ({bytes} bytes) exceeds the adapter's largest buffer ({})",
                    self.max_buffer
                )));
            }
            t.buf = Some(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tensor"),
                size: bytes.max(16).next_multiple_of(16),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        t.rows = rows;
        t.cols = cols;
        Ok(())
    }

    /// `t`'s buffer and the bytes to bind (all of its rows).
    fn whole<'t>(&self, t: &'t WgpuTensor, what: &'static str) -> Result<(&'t wgpu::Buffer, u64)> {
        let buf = t
            .buf
            .as_ref()
            .ok_or_else(|| Error::shape(what, "the tensor is empty".into()))?;
        let n = t.bytes();
        if n > self.max_binding {
            return Err(Error::Gpu(format!(
                "{what}: a {} x {} tensor exceeds the adapter's storage binding limit of {} bytes",
                t.rows, t.cols, self.max_binding
            )));
        }
        Ok((buf, n.max(4)))
    }

    fn vector<'w>(&self, w: &'w WgpuWeight) -> Result<(&'w wgpu::Buffer, usize)> {
        match w {
            WgpuWeight::Vector { buf, len } => Ok((buf, *len)),
            WgpuWeight::Matrix { .. } => Err(Error::shape(
                "vector op",
                "a matrix weight was used as a vector".into(),
            )),
        }
    }

    fn upload(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let padded;
        let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            bytes
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().next_multiple_of(4).max(4), 0);
            padded = v;
            &padded
        };
        self.gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
    }

    /// Uploads f32 values as a weight vector (tests, biases).
    pub fn vector_from(&self, v: &[f32]) -> WgpuWeight {
        WgpuWeight::Vector {
            buf: self.upload(
                "vector",
                bytemuck::cast_slice(v),
                wgpu::BufferUsages::STORAGE,
            ),
            len: v.len(),
        }
    }

    /// A matrix of `rows` rows of `cols` in `format` from its GGUF bytes.
    pub fn matrix_from(
        &self,
        name: &str,
        format: Format,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<WgpuWeight> {
        let unsupported = || {
            Error::Gpu(format!("{name}: the wgpu backend cannot read {format:?} weights of {cols} columns (it reads {}, rows of whole 32-value chunks)",
            FORMATS.iter().map(|f| f.1).collect::<Vec<_>>().join(", ")))
        };
        if quant_source(format).is_none() || !cols.is_multiple_of(32) || rows == 0 {
            return Err(unsupported());
        }
        if !data.len().is_multiple_of(rows) {
            return Err(Error::Gpu(format!(
                "{name}: {} bytes are not {rows} equal rows",
                data.len()
            )));
        }
        let row_bytes = data.len() / rows;
        // Checks the row size against the format's blocks.
        hearth_kernels::matmul::QMatrix::new(format, rows, cols, data)?;
        let per_part = (self.max_binding.min(self.max_buffer) as usize / row_bytes).max(1);
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = per_part.min(rows - row0);
            let bytes = &data[row0 * row_bytes..(row0 + n) * row_bytes];
            parts.push(Part {
                buf: self.upload(name, bytes, wgpu::BufferUsages::STORAGE),
                row0,
                rows: n,
            });
            row0 += n;
        }
        Ok(WgpuWeight::Matrix {
            format,
            rows,
            cols,
            row_bytes,
            parts,
        })
    }

    /// Uploads `rows x cols` f32 values as a tensor (tests).
    pub fn tensor_from(&self, rows: usize, cols: usize, data: &[f32]) -> Result<WgpuTensor> {
        let mut t = WgpuTensor::default();
        self.write(&mut t, rows, cols, data)?;
        Ok(t)
    }

    /// Dispatches an elementwise kernel over `n` values, 64 per workgroup.
    fn elementwise(n: usize) -> Result<(u32, u32, u32)> {
        let (x, y) = grid(n.div_ceil(64))?;
        Ok((x, y, 1))
    }
}

impl Backend for Wgpu {
    type Weight = WgpuWeight;
    type Tensor = WgpuTensor;
    type Cache = WgpuCache;
    type Rope = WgpuRope;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn load_matrix(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<WgpuWeight> {
        let unsupported = || Error::UnsupportedTensorType {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
            backend: "wgpu",
        };
        let format = kernel_format(info.ggml_type).ok_or_else(unsupported)?;
        if quant_source(format).is_none() {
            return Err(unsupported());
        }
        self.matrix_from(
            &info.name,
            format,
            info.n_rows() as usize,
            info.dims[0] as usize,
            file.tensor_data(info),
        )
    }

    fn load_vector(&self, file: &Arc<ModelFile>, info: &TensorInfo) -> Result<WgpuWeight> {
        let format = kernel_format(info.ggml_type).ok_or_else(|| Error::UnsupportedTensorType {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
            backend: "wgpu",
        })?;
        let mut v = vec![0.0; info.n_elements() as usize];
        (hearth_kernels::quant::kernels(format).dequantize_row)(file.tensor_data(info), &mut v)?;
        Ok(self.vector_from(&v))
    }

    fn new_tensor(&self) -> WgpuTensor {
        WgpuTensor::default()
    }

    fn new_cache(&self, spec: &CacheSpec) -> Result<WgpuCache> {
        let (f16, elem) = match spec.kv_type {
            KvType::F32 => (false, 4),
            KvType::F16 if spec.kv_dim.is_multiple_of(2) => (true, 2),
            KvType::F16 => {
                return Err(Error::Gpu(format!(
                    "an f16 KV cache on wgpu needs an even row width; this model's is {}",
                    spec.kv_dim
                )))
            }
            KvType::Q8_0 => {
                return Err(Error::Gpu(
                    "the wgpu backend keeps its KV cache in f16 or f32, not Q8_0".into(),
                ))
            }
        };
        let book = KvBook::new(spec)?;
        let mut kv = Vec::with_capacity(spec.n_seq);
        for _ in 0..spec.n_seq {
            let mut layers = Vec::with_capacity(spec.n_layer);
            for l in 0..spec.n_layer {
                let cap = book.capacity(l);
                let bytes = book
                    .ring_values(l)
                    .checked_mul(elem)
                    .filter(|&n| (n as u64) <= self.max_binding)
                    .ok_or_else(|| {
                        Error::Gpu(format!(
                            "a KV cache of {cap} x {} exceeds the adapter's binding limit of {} bytes",
                            spec.kv_dim, self.max_binding
                        ))
                    })?;
                let buf = |label, size: usize| {
                    self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: (size as u64).max(4).next_multiple_of(4),
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                };
                layers.push(LayerKv {
                    k: buf("k cache", bytes),
                    v: buf("v cache", bytes),
                    pos: buf("slot positions", cap * 4),
                });
            }
            kv.push(layers);
        }
        Ok(WgpuCache { book, kv, f16 })
    }

    fn clear_seq(&self, cache: &mut WgpuCache, seq: usize) -> Result<()> {
        cache.book.clear_seq(seq)
    }

    fn rope(&self, cfg: &RopeConfig) -> Result<WgpuRope> {
        let ordering = if cfg.neox {
            RopeOrdering::Neox
        } else {
            RopeOrdering::Normal
        };
        Ok(WgpuRope {
            rope: Rope::new(
                cfg.head_dim,
                cfg.n_rot,
                cfg.freq_base,
                cfg.freq_scale,
                ordering,
            )?,
            id: ROPE_IDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn embed(&self, w: &WgpuWeight, ids: &[u32], scale: f32, out: &mut WgpuTensor) -> Result<()> {
        let WgpuWeight::Matrix {
            format,
            rows,
            cols,
            row_bytes,
            parts,
        } = w
        else {
            return Err(Error::shape(
                "embed",
                "a vector weight was used as a matrix".into(),
            ));
        };
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= *rows) {
            return Err(Error::TokenOutOfVocabulary { id, n_vocab: *rows });
        }
        self.ensure(out, ids.len(), *cols)?;
        let pipes = self.quant_pipes(*format)?;
        let (obuf, obytes) = self.whole(out, "embed")?;
        let mut rec = self.lock();
        for part in parts {
            let pairs: Vec<u32> = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| (part.row0..part.row0 + part.rows).contains(&(id as usize)))
                .flat_map(|(t, &id)| [t as u32, (id as usize - part.row0) as u32])
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let n = pairs.len() / 2;
            self.reserve(&mut rec, pairs.len() * 4 + 64)?;
            let poff = self.stage(&mut rec, bytemuck::cast_slice(&pairs));
            let groups = Self::elementwise(n * cols / 32)?;
            let params = EmbedParams {
                cols: u32_of("columns", *cols)?,
                n: n as u32,
                row_bytes: u32_of("row bytes", *row_bytes)?,
                scale,
                grid_x: groups.0,
                _pad: [0; 3],
            };
            let arena = rec.arena_buf.clone();
            self.dispatch(
                &mut rec,
                pipes.embed_label,
                &pipes.embed,
                &params,
                &[
                    (1, &part.buf, 0, part.buf.size()),
                    (2, &arena, poff, (pairs.len() * 4) as u64),
                    (3, obuf, 0, obytes),
                ],
                groups,
            );
        }
        Ok(())
    }

    fn matmul(&self, w: &WgpuWeight, x: &WgpuTensor, out: &mut WgpuTensor) -> Result<()> {
        let WgpuWeight::Matrix {
            format,
            rows,
            cols,
            row_bytes,
            parts,
        } = w
        else {
            return Err(Error::shape(
                "matmul",
                "a vector weight was used as a matrix".into(),
            ));
        };
        check_cols("matmul", x.cols, *cols)?;
        self.ensure(out, x.rows, *rows)?;
        if x.rows == 0 {
            return Ok(());
        }
        let pipes = self.quant_pipes(*format)?;
        let (xbuf, xbytes) = self.whole(x, "matmul input")?;
        let obuf = out.buf.as_ref().expect("sized above");
        // Token ranges whose output rows fit one binding.
        let row_out = (*rows * 4) as u64;
        let per_range = ((self.max_binding - self.align) / row_out).max(1) as usize;
        let tile = match self.pipes.matmul {
            MatmulKernel::Workgroup | MatmulKernel::Subgroup => MATMUL_TOKENS as usize,
            MatmulKernel::Rows => ROWS_TOKENS as usize,
        };
        let per_range = if per_range >= tile {
            per_range / tile * tile
        } else {
            per_range
        };
        let mut rec = self.lock();
        let mut t0 = 0;
        while t0 < x.rows {
            let nt = per_range.min(x.rows - t0);
            let start = t0 as u64 * row_out;
            let bind_off = start / self.align * self.align;
            let bind_len = start + nt as u64 * row_out - bind_off;
            if bind_len > self.max_binding {
                return Err(Error::Gpu(format!(
                    "matmul: one output row of {rows} exceeds the adapter's binding limit"
                )));
            }
            // Activations of tokens t0.. : bind x whole and offset by rows.
            for part in parts {
                self.reserve(&mut rec, 64)?;
                let (gx, gy) = match self.pipes.matmul {
                    MatmulKernel::Workgroup | MatmulKernel::Subgroup => grid(part.rows)?,
                    MatmulKernel::Rows => grid(part.rows.div_ceil(32 * ROWS_PER_THREAD))?,
                };
                let params = MatmulParams {
                    rows: part.rows as u32,
                    cols: u32_of("columns", *cols)?,
                    n_tok: nt as u32,
                    y_stride: u32_of("rows", *rows)?,
                    y_col0: part.row0 as u32,
                    row_bytes: u32_of("row bytes", *row_bytes)?,
                    grid_x: gx,
                    y_off: ((start - bind_off) / 4) as u32,
                };
                let xoff = (t0 * cols * 4) as u64;
                let (xb, xo, xl) = if xoff.is_multiple_of(self.align) {
                    (xbuf, xoff, xbytes - xoff)
                } else {
                    return Err(Error::Gpu(
                        "matmul: a token range of the input is not aligned to a binding offset"
                            .into(),
                    ));
                };
                let tiles = u32_of("token tiles", nt.div_ceil(tile))?;
                if tiles > 65535 {
                    return Err(Error::Gpu(format!("matmul: {nt} tokens in one dispatch")));
                }
                self.dispatch(
                    &mut rec,
                    pipes.matmul_label,
                    &pipes.matmul,
                    &params,
                    &[
                        (1, &part.buf, 0, part.buf.size()),
                        (2, xb, xo, xl),
                        (3, obuf, bind_off, bind_len.next_multiple_of(4)),
                    ],
                    (gx, gy, tiles),
                );
            }
            t0 += nt;
        }
        Ok(())
    }

    fn add_bias(&self, x: &mut WgpuTensor, b: &WgpuWeight) -> Result<()> {
        let (bbuf, blen) = self.vector(b)?;
        check_cols("add_bias", x.cols, blen)?;
        self.add_kernel(x, bbuf, (blen * 4) as u64, blen)
    }

    fn rms_norm(
        &self,
        x: &WgpuTensor,
        w: &WgpuWeight,
        eps: f32,
        out: &mut WgpuTensor,
    ) -> Result<()> {
        let (_, len) = self.vector(w)?;
        check_cols("rms_norm", x.cols, len)?;
        self.ensure(out, x.rows, x.cols)?;
        if x.rows == 0 {
            return Ok(());
        }
        let (xbuf, n) = self.whole(x, "rms_norm")?;
        {
            let mut rec = self.lock();
            let obuf = out.buf.as_ref().expect("sized above");
            self.encoder(&mut rec)
                .copy_buffer_to_buffer(xbuf, 0, obuf, 0, n);
        }
        self.norm_rows(out, w, len, eps)
    }

    fn rms_norm_inplace(&self, x: &mut WgpuTensor, w: &WgpuWeight, eps: f32) -> Result<()> {
        let (_, len) = self.vector(w)?;
        check_cols("rms_norm", x.cols, len)?;
        self.norm_rows(x, w, len, eps)
    }

    fn rms_norm_heads(&self, x: &mut WgpuTensor, w: &WgpuWeight, eps: f32) -> Result<()> {
        let (_, len) = self.vector(w)?;
        if len == 0 || !x.cols.is_multiple_of(len) {
            return Err(Error::shape(
                "rms_norm_heads",
                format!("head norm of {len} does not divide rows of {}", x.cols),
            ));
        }
        self.norm_rows(x, w, len, eps)
    }

    fn apply_rope(
        &self,
        x: &mut WgpuTensor,
        rope: &WgpuRope,
        n_heads: usize,
        positions: &[i32],
    ) -> Result<()> {
        let r = &rope.rope;
        check_cols("rope", x.cols, n_heads * r.head_dim())?;
        check_cols("rope positions", x.rows, positions.len())?;
        let half = r.n_rot() / 2;
        if x.rows == 0 || half == 0 {
            return Ok(());
        }
        let (buf, n) = self.whole(x, "rope")?;
        let mut rec = self.lock();
        let table_bytes = positions.len() * half * 8;
        self.reserve(&mut rec, table_bytes + 64)?;
        let staged = rec
            .rope_tables
            .iter()
            .find(|(id, p, _)| *id == rope.id && p == positions)
            .map(|t| t.2);
        let toff = match staged {
            Some(o) => o,
            None => {
                let mut table = Vec::with_capacity(positions.len() * half * 2);
                for &p in positions {
                    for i in 0..half {
                        let (s, c) = r.theta(p, i).sin_cos();
                        table.extend([c as f32, s as f32]);
                    }
                }
                let o = self.stage(&mut rec, bytemuck::cast_slice(&table));
                rec.rope_tables.push((rope.id, positions.to_vec(), o));
                o
            }
        };
        let groups = Self::elementwise(positions.len() * n_heads * half)?;
        let params = RopeParams {
            n_tok: positions.len() as u32,
            n_heads: n_heads as u32,
            head_dim: r.head_dim() as u32,
            n_rot: r.n_rot() as u32,
            neox: u32::from(r.ordering() == RopeOrdering::Neox),
            grid_x: groups.0,
            _pad: [0; 2],
        };
        let arena = rec.arena_buf.clone();
        self.dispatch(
            &mut rec,
            "rope",
            &self.pipes.rope,
            &params,
            &[(1, &arena, toff, table_bytes as u64), (2, buf, 0, n)],
            groups,
        );
        Ok(())
    }

    fn attention(
        &self,
        cache: &mut WgpuCache,
        layer: usize,
        batch: &Batch,
        q: &WgpuTensor,
        k: &WgpuTensor,
        v: &WgpuTensor,
        p: &AttentionParams,
        out: &mut WgpuTensor,
    ) -> Result<()> {
        // What only this backend's kernels limit; the cache's own checks
        // are `KvBook::store`'s, made before anything is stored.
        if p.head_dim > ATTN_MAX_HEAD_DIM {
            return Err(Error::Gpu(format!(
                "attention: heads of {} (the kernel takes heads up to {ATTN_MAX_HEAD_DIM})",
                p.head_dim
            )));
        }
        if let Some(s) = batch.spans().iter().find(|s| s.len > 65535) {
            return Err(Error::Gpu(format!(
                "{} tokens of one sequence in one batch",
                s.len
            )));
        }
        let shapes = AttentionShapes {
            q: (q.rows, q.cols),
            k: (k.rows, k.cols),
            v: (v.rows, v.cols),
        };
        let kd = cache.book.spec().kv_dim;
        self.ensure(out, q.rows, q.cols)?;
        let (qbuf, qn) = self.whole(q, "attention queries")?;
        let (kbuf, kn) = self.whole(k, "attention keys")?;
        let (vbuf, vn) = self.whole(v, "attention values")?;
        let (obuf, on) = self.whole(out, "attention output")?;
        let stores = cache.book.store(layer, batch, &shapes, p)?;
        let mut rec = self.lock();
        for s in stores {
            // Later rows of the batch win a slot, as on the CPU (a ring
            // shorter than the batch cannot happen: capacity >= n_batch).
            let slots: Vec<u32> = s
                .rows()
                .flat_map(|(row, slot, pos)| [row as u32, slot as u32, pos as u32])
                .collect();
            let kvl = &cache.kv[s.seq][layer];
            let words = if cache.f16 { kd / 2 } else { kd };
            self.reserve(&mut rec, slots.len() * 4 + s.len * 4 + 4 * 64)?;
            let soff = self.stage(&mut rec, bytemuck::cast_slice(&slots));
            let arena = rec.arena_buf.clone();
            let groups = Self::elementwise(s.len * words)?;
            let (kv_store, attention, labels) = match &self.pipes.f16 {
                Some((st, at)) if cache.f16 && self.pipes.use_f16 => {
                    (st, at, ("kv_store f16", "attention f16"))
                }
                _ => (
                    &self.pipes.kv_store,
                    &self.pipes.attention,
                    ("kv_store", "attention"),
                ),
            };
            for (src, sn, dst, write_pos) in [(kbuf, kn, &kvl.k, 1), (vbuf, vn, &kvl.v, 0)] {
                let params = KvStoreParams {
                    kv_dim: kd as u32,
                    n: s.len as u32,
                    f16: u32::from(cache.f16),
                    write_pos,
                    grid_x: groups.0,
                    _pad: [0; 3],
                };
                self.dispatch(
                    &mut rec,
                    labels.0,
                    kv_store,
                    &params,
                    &[
                        (1, src, 0, sn),
                        (2, &arena, soff, (slots.len() * 4) as u64),
                        (3, dst, 0, dst.size()),
                        (4, &kvl.pos, 0, kvl.pos.size()),
                    ],
                    groups,
                );
            }
            let positions = &batch.positions()[s.start..s.start + s.len];
            let qpoff = self.stage(&mut rec, bytemuck::cast_slice(positions));
            let params = AttnParams {
                n_tok: s.len as u32,
                q_row0: s.start as u32,
                n_head: p.n_head as u32,
                n_head_kv: p.n_head_kv as u32,
                head_dim: p.head_dim as u32,
                n_kv: s.n_kv as u32,
                causal: u32::from(p.causal),
                window: p.window.map_or(0, |w| w.min(u32::MAX as usize) as u32),
                scale: p.scale,
                softcap: p.softcap.unwrap_or(0.0),
                f16: u32::from(cache.f16),
                _pad: 0,
            };
            self.dispatch(
                &mut rec,
                labels.1,
                attention,
                &params,
                &[
                    (1, qbuf, 0, qn),
                    (2, &kvl.k, 0, kvl.k.size()),
                    (3, &kvl.v, 0, kvl.v.size()),
                    (4, &kvl.pos, 0, kvl.pos.size()),
                    (5, &arena, qpoff, (positions.len() * 4) as u64),
                    (6, obuf, 0, on),
                ],
                (s.len as u32, p.n_head as u32, 1),
            );
        }
        Ok(())
    }

    fn commit(&self, cache: &mut WgpuCache, batch: &Batch) -> Result<()> {
        cache.book.commit(batch)
    }

    fn gelu_mul(&self, a: &mut WgpuTensor, b: &WgpuTensor) -> Result<()> {
        self.glu(a, b, 0)
    }

    fn silu_mul(&self, a: &mut WgpuTensor, b: &WgpuTensor) -> Result<()> {
        self.glu(a, b, 1)
    }

    fn add(&self, a: &mut WgpuTensor, b: &WgpuTensor) -> Result<()> {
        check_cols("add", a.rows * a.cols, b.rows * b.cols)?;
        if a.rows * a.cols == 0 {
            return Ok(());
        }
        let (bbuf, bn) = self.whole(b, "add")?;
        self.add_kernel(a, bbuf, bn, a.rows * a.cols)
    }

    fn select_rows(&self, x: &WgpuTensor, rows: &[usize], out: &mut WgpuTensor) -> Result<()> {
        if let Some(&r) = rows.iter().find(|&&r| r >= x.rows) {
            return Err(Error::Batch(format!("row {r} of {}", x.rows)));
        }
        self.ensure(out, rows.len(), x.cols)?;
        if rows.is_empty() || x.cols == 0 {
            return Ok(());
        }
        let src = x.buf.as_ref().expect("has rows");
        let dst = out.buf.as_ref().expect("sized above");
        let row = (x.cols * 4) as u64;
        let mut rec = self.lock();
        let enc = self.encoder(&mut rec);
        // Runs of consecutive rows are one copy.
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            enc.copy_buffer_to_buffer(
                src,
                rows[i] as u64 * row,
                dst,
                i as u64 * row,
                (j - i) as u64 * row,
            );
            i = j;
        }
        Ok(())
    }

    fn write(&self, x: &mut WgpuTensor, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
        if data.len() != rows * cols {
            return Err(Error::shape(
                "write",
                format!("{} values are not {rows} x {cols}", data.len()),
            ));
        }
        self.ensure(x, rows, cols)?;
        if !data.is_empty() {
            let mut rec = self.lock();
            // Commands recorded so far read the old values: submit them
            // first (a queue write is ordered before the next submit).
            self.submit(&mut rec);
            let buf = x.buf.as_ref().expect("sized above");
            self.gpu
                .queue
                .write_buffer(buf, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    fn read(&self, x: &WgpuTensor, out: &mut Vec<f32>) -> Result<(usize, usize)> {
        out.clear();
        let n = x.bytes();
        let mut rec = self.lock();
        if n == 0 {
            self.submit(&mut rec);
            return Ok((x.rows, x.cols));
        }
        let src = x
            .buf
            .as_ref()
            .ok_or_else(|| Error::shape("read", "the tensor is empty".into()))?;
        if rec.readback.as_ref().is_none_or(|b| b.size() < n) {
            rec.readback = Some(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: n.next_multiple_of(wgpu::MAP_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let rb = rec.readback.clone().expect("created above");
        self.encoder(&mut rec)
            .copy_buffer_to_buffer(src, 0, &rb, 0, n);
        self.submit(&mut rec);
        let (tx, rx) = std::sync::mpsc::channel();
        rb.map_async(wgpu::MapMode::Read, 0..n, move |r| {
            let _ = tx.send(r);
        });
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("the read-back callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))?;
        {
            let view = rb
                .get_mapped_range(0..n)
                .map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e:?}")))?;
            out.extend_from_slice(bytemuck::cast_slice(&view));
        }
        rb.unmap();
        Ok((x.rows, x.cols))
    }
}

impl Wgpu {
    /// RMSNorm in place over rows of `len` values of `x`.
    fn norm_rows(&self, x: &mut WgpuTensor, w: &WgpuWeight, len: usize, eps: f32) -> Result<()> {
        let (wbuf, _) = self.vector(w)?;
        let rows = x.rows * x.cols / len;
        if rows == 0 {
            return Ok(());
        }
        let (buf, n) = self.whole(x, "rms_norm")?;
        let (gx, gy) = grid(rows)?;
        let params = NormParams {
            rows: rows as u32,
            n: len as u32,
            eps,
            grid_x: gx,
        };
        let mut rec = self.lock();
        self.reserve(&mut rec, 64)?;
        self.dispatch(
            &mut rec,
            "rms_norm",
            &self.pipes.rms_norm,
            &params,
            &[(1, wbuf, 0, (len * 4) as u64), (2, buf, 0, n)],
            (gx, gy, 1),
        );
        Ok(())
    }

    /// `a[i] += b[i % b_len]` over `a`'s values.
    fn add_kernel(
        &self,
        a: &mut WgpuTensor,
        b: &wgpu::Buffer,
        bn: u64,
        b_len: usize,
    ) -> Result<()> {
        let n = a.rows * a.cols;
        if n == 0 {
            return Ok(());
        }
        let (abuf, an) = self.whole(a, "add")?;
        let groups = Self::elementwise(n)?;
        let params = AddParams {
            n: n as u32,
            b_len: b_len as u32,
            grid_x: groups.0,
            _pad: 0,
        };
        let mut rec = self.lock();
        self.reserve(&mut rec, 64)?;
        self.dispatch(
            &mut rec,
            "add",
            &self.pipes.add,
            &params,
            &[(1, b, 0, bn), (2, abuf, 0, an)],
            groups,
        );
        Ok(())
    }

    fn glu(&self, a: &mut WgpuTensor, b: &WgpuTensor, op: u32) -> Result<()> {
        let n = a.rows * a.cols;
        check_cols("glu", n, b.rows * b.cols)?;
        if n == 0 {
            return Ok(());
        }
        let (abuf, an) = self.whole(a, "glu")?;
        let (bbuf, bn) = self.whole(b, "glu")?;
        let groups = Self::elementwise(n)?;
        let params = GluParams {
            n: n as u32,
            op,
            grid_x: groups.0,
            _pad: 0,
        };
        let mut rec = self.lock();
        self.reserve(&mut rec, 64)?;
        self.dispatch(
            &mut rec,
            if op == 0 { "gelu_mul" } else { "silu_mul" },
            &self.pipes.glu,
            &params,
            &[(1, bbuf, 0, bn), (2, abuf, 0, an)],
            groups,
        );
        Ok(())
    }
}
