//! Writing GGUF files: for tests that build small models and malformed
//! variants, and for tools that produce models.
//!
//! The layout follows llama.cpp's `gguf_write_to_buf`: header, metadata,
//! tensor infos, padding to the alignment, then each tensor's data padded to
//! the alignment.

use std::collections::HashSet;
use std::io::{self, Write};
use std::ops::Deref;
use std::path::Path;

use crate::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::value::{Value, ValueType};
use crate::{GgmlType, Gguf};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("metadata key {key:?}: array of {expected} holds a {found}")]
    MixedArray {
        key: String,
        expected: ValueType,
        found: ValueType,
    },
    #[error("general.alignment must be a u32 that is a non-zero power of two")]
    BadAlignment,
    #[error("tensor {tensor:?}: shape {dims:?} {reason}")]
    BadShape {
        tensor: String,
        dims: Vec<u64>,
        reason: &'static str,
    },
    #[error("tensor {tensor:?}: {found} bytes of data given, its type and shape need {expected}")]
    DataSize {
        tensor: String,
        expected: u64,
        found: u64,
    },
    #[error("metadata key {0:?} is not valid for GGUF (empty or longer than 65535 bytes)")]
    BadKey(String),
}

/// Where each part of a written file starts: lets tests truncate or corrupt
/// a file at exact section boundaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrittenLayout {
    /// File offset of each metadata entry (its key length).
    pub kv_offsets: Vec<u64>,
    /// File offset of each tensor info (its name length).
    pub tensor_info_offsets: Vec<u64>,
    /// File offset of the data section.
    pub data_start: u64,
    /// Offset of each tensor's data from the data section start.
    pub tensor_data_offsets: Vec<u64>,
    /// Total length of the file.
    pub len: u64,
}

struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF file: metadata first, then tensors, in the order added.
pub struct GgufWriter {
    version: u32,
    kvs: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version field. Any value is written as given, so tests can
    /// produce files of unsupported versions.
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Adds a metadata entry (checked when written).
    pub fn kv(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.kvs.push((key.into(), value.into()));
        self
    }

    /// Adds a tensor; `dims` in ggml order (`dims[0]` is the row length) and
    /// `data` its bytes as stored.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            ggml_type,
            dims: dims.to_vec(),
            data: data.into(),
        });
        self
    }

    /// A writer holding the metadata and tensors of a parsed file, so that
    /// writing it reproduces the file. Fails on a metadata string that is not
    /// UTF-8, which an owned [`Value`] cannot hold.
    pub fn from_gguf<B: Deref<Target = [u8]>>(g: &Gguf<B>) -> Result<Self, WriteError> {
        let mut w = GgufWriter::new();
        w.version(g.version());
        for (key, v) in g.metadata() {
            let value = v.to_value().ok_or_else(|| {
                WriteError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("metadata {key:?} holds a string that is not UTF-8"),
                ))
            })?;
            w.kv(key, value);
        }
        for t in g.tensors() {
            w.tensor(t.info.name.clone(), t.info.ggml_type, &t.info.dims, t.data);
        }
        Ok(w)
    }

    fn alignment(&self) -> Result<u64, WriteError> {
        match self.kvs.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, Value::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
            Some(_) => Err(WriteError::BadAlignment),
        }
    }

    fn validate(&self) -> Result<(), WriteError> {
        let mut keys = HashSet::new();
        for (k, v) in &self.kvs {
            if k.is_empty() || k.len() > 65535 {
                return Err(WriteError::BadKey(k.clone()));
            }
            if !keys.insert(k.as_str()) {
                return Err(WriteError::DuplicateKey(k.clone()));
            }
            check_array(k, v)?;
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(WriteError::DuplicateTensor(t.name.clone()));
            }
            let bad = |reason| WriteError::BadShape {
                tensor: t.name.clone(),
                dims: t.dims.clone(),
                reason,
            };
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize {
                return Err(bad("must have 1 to 4 dimensions"));
            }
            let expected = tensor_size(t.ggml_type, &t.dims)
                .ok_or_else(|| bad("is not a whole number of blocks, or overflows"))?;
            if expected != t.data.len() as u64 {
                return Err(WriteError::DataSize {
                    tensor: t.name.clone(),
                    expected,
                    found: t.data.len() as u64,
                });
            }
        }
        Ok(())
    }

    /// Writes the file to `out`.
    pub fn write_to(&self, out: impl Write) -> Result<WrittenLayout, WriteError> {
        self.validate()?;
        let alignment = self.alignment()?;
        let mut w = Counting { inner: out, pos: 0 };
        let mut layout = WrittenLayout::default();

        w.put(&MAGIC)?;
        w.put(&self.version.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.kvs.len() as u64).to_le_bytes())?;
        for (k, v) in &self.kvs {
            layout.kv_offsets.push(w.pos);
            w.string(k)?;
            w.put(&v.value_type().id().to_le_bytes())?;
            w.value(v)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            layout.tensor_info_offsets.push(w.pos);
            layout.tensor_data_offsets.push(offset);
            w.string(&t.name)?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ggml_type.id().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            offset += (t.data.len() as u64).next_multiple_of(alignment);
        }
        w.pad(alignment)?;
        layout.data_start = w.pos;
        for t in &self.tensors {
            w.put(&t.data)?;
            w.pad(alignment)?;
        }
        layout.len = w.pos;
        w.inner.flush()?;
        Ok(layout)
    }

    /// The file as bytes, with its layout.
    pub fn to_bytes_with_layout(&self) -> Result<(Vec<u8>, WrittenLayout), WriteError> {
        let mut buf = Vec::new();
        let layout = self.write_to(&mut buf)?;
        Ok((buf, layout))
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        self.to_bytes_with_layout().map(|(b, _)| b)
    }

    /// Writes the file at `path` (through a buffer).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<WrittenLayout, WriteError> {
        let f = std::fs::File::create(path)?;
        self.write_to(io::BufWriter::new(f))
    }
}

/// Bytes of a tensor of this type and shape, if valid.
fn tensor_size(t: GgmlType, dims: &[u64]) -> Option<u64> {
    let rows = dims[1..].iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
    if dims.contains(&0) {
        return None;
    }
    t.row_bytes(dims[0])?.checked_mul(rows)
}

fn check_array(key: &str, v: &Value) -> Result<(), WriteError> {
    if let Value::Array(elem, items) = v {
        for item in items {
            if item.value_type() != *elem {
                return Err(WriteError::MixedArray {
                    key: key.to_string(),
                    expected: *elem,
                    found: item.value_type(),
                });
            }
            check_array(key, item)?;
        }
    }
    Ok(())
}

struct Counting<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.inner.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: u64) -> io::Result<()> {
        let n = self.pos.next_multiple_of(alignment) - self.pos;
        const ZEROS: [u8; 64] = [0; 64];
        let mut left = n;
        while left > 0 {
            let k = left.min(ZEROS.len() as u64);
            self.put(&ZEROS[..k as usize])?;
            left -= k;
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> io::Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn value(&mut self, v: &Value) -> io::Result<()> {
        match v {
            Value::U8(x) => self.put(&[*x]),
            Value::I8(x) => self.put(&x.to_le_bytes()),
            Value::U16(x) => self.put(&x.to_le_bytes()),
            Value::I16(x) => self.put(&x.to_le_bytes()),
            Value::U32(x) => self.put(&x.to_le_bytes()),
            Value::I32(x) => self.put(&x.to_le_bytes()),
            Value::F32(x) => self.put(&x.to_le_bytes()),
            Value::Bool(x) => self.put(&[u8::from(*x)]),
            Value::String(s) => self.string(s),
            Value::U64(x) => self.put(&x.to_le_bytes()),
            Value::I64(x) => self.put(&x.to_le_bytes()),
            Value::F64(x) => self.put(&x.to_le_bytes()),
            Value::Array(elem, items) => {
                self.put(&elem.id().to_le_bytes())?;
                self.put(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|i| self.value(i))
            }
        }
    }
}
