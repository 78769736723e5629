//! [`Gguf`]: a parsed file, its metadata accessors and zero-copy tensor data.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{GgufError, Location, Result};
use crate::reader::{parse_index, Index, TensorInfo};
use crate::value::{ArrayRef, FromValue, ValueRef};

/// A parsed GGUF file over its bytes `B`: a memory map for [`open`](crate::open),
/// a borrowed slice for [`parse`](crate::parse).
///
/// The index (metadata entries, tensor infos) is built once and holds byte
/// ranges, not copies; strings, arrays and tensor data are slices of `B`.
pub struct Gguf<B> {
    bytes: B,
    index: Index,
}

/// One tensor: its description and its data, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<B: Deref<Target = [u8]>> Gguf<B> {
    /// Parses `bytes` as a GGUF file.
    pub fn from_bytes(bytes: B) -> Result<Self> {
        let index = parse_index(&bytes)?;
        Ok(Gguf { bytes, index })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.index.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.index.alignment
    }

    /// File offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.index.data_start
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, ValueRef<'_>)> + '_ {
        self.index
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.to_ref(&self.bytes)))
    }

    /// Number of metadata entries.
    pub fn metadata_len(&self) -> usize {
        self.index.kvs.len()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<ValueRef<'_>> {
        let &i = self.index.kv_by_key.get(key)?;
        Some(self.index.kvs[i].value.to_ref(&self.bytes))
    }

    /// The value of `key` as `T`; an error names the key and the types.
    pub fn get_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T> {
        self.get_opt_as(key)?.ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    /// Like [`get_as`](Self::get_as), but a missing key is `Ok(None)`.
    pub fn get_opt_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        T::from_value(v).map(Some).map_err(|out_of_range| {
            if out_of_range {
                GgufError::OutOfRange {
                    key: key.to_string(),
                    expected: T::EXPECTED,
                    value: v.to_string(),
                }
            } else {
                GgufError::WrongType {
                    key: key.to_string(),
                    expected: T::EXPECTED,
                    found: v.type_description(),
                }
            }
        })
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_as(key)
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_as(key)
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_as(key)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get_as(key)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get_as(key)
    }

    pub fn get_array(&self, key: &str) -> Result<ArrayRef<'_>> {
        self.get_as(key)
    }

    /// An array of strings, each checked to be UTF-8.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.typed_array(key, "array of string (UTF-8)", |v| v.as_str())
    }

    /// An array of raw byte strings (vocabularies may hold non-UTF-8 bytes).
    pub fn get_bytes_array(&self, key: &str) -> Result<Vec<&[u8]>> {
        self.typed_array(key, "array of string", |v| match v {
            ValueRef::String(b) => Some(b),
            _ => None,
        })
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.typed_array(key, "array of f32", |v| f32::from_value(v).ok())
    }

    /// An array of any integer type whose values fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.typed_array(key, "array of i32", |v| i32::from_value(v).ok())
    }

    /// An array of any integer type whose values fit in u32.
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>> {
        self.typed_array(key, "array of u32", |v| u32::from_value(v).ok())
    }

    fn typed_array<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl Fn(ValueRef<'a>) -> Option<T>,
    ) -> Result<Vec<T>> {
        let a = self.get_array(key).map_err(|e| match e {
            GgufError::WrongType { key, found, .. } => GgufError::WrongType {
                key,
                expected,
                found,
            },
            e => e,
        })?;
        // The array was validated against the file length, so its length is
        // bounded by the file size; the Vec grows as elements decode.
        let mut out = Vec::new();
        for v in a.iter() {
            match f(v) {
                Some(x) => out.push(x),
                None => {
                    return Err(GgufError::WrongType {
                        key: key.to_string(),
                        expected,
                        found: match v {
                            ValueRef::String(_) if a.elem_type() == crate::ValueType::String => {
                                "array of string with an element that is not UTF-8".to_string()
                            }
                            ValueRef::Array(_) => "array of array".to_string(),
                            _ => format!("array of {} with value {v}", a.elem_type()),
                        },
                    })
                }
            }
        }
        Ok(out)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.index.tensors
    }

    /// Tensors (info and data) in file order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = Tensor<'_>> + '_ {
        self.index.tensors.iter().map(|info| Tensor {
            info,
            data: self.tensor_data(info),
        })
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<Tensor<'_>> {
        let &i = self.index.tensor_by_name.get(name)?;
        let info = &self.index.tensors[i];
        Some(Tensor {
            info,
            data: self.tensor_data(info),
        })
    }

    /// The data of a tensor of this file: a slice of the file, no copy.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // The parser checked data_start + data_offset + size <= file length for
        // every tensor of this file; `get` keeps a foreign `info` from panicking.
        let start = self.index.data_start.saturating_add(info.data_offset);
        let end = start.saturating_add(info.size);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes.get(s..e))
            .unwrap_or_default()
    }
}

/// How [`open_with`] holds a file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Map the file (the default): weights are paged in from the page cache
    /// when first touched and shared with every process mapping the file.
    /// Without it the whole file is read into memory this process owns, so
    /// a later change to the file (a re-download over it, a truncation) can
    /// no longer reach us; opening then costs the file's size in memory and
    /// one read of it.
    pub mmap: bool,
    /// Lock the bytes in RAM (`mlock`) so the OS never pages them out. Fails
    /// with [`GgufError::Lock`] when the limit on locked memory
    /// (`ulimit -l`, `RLIMIT_MEMLOCK`) is smaller than the file.
    pub mlock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            mmap: true,
            mlock: false,
        }
    }
}

/// Memory-maps and parses the GGUF file at `path`.
///
/// Tensor data is not read: it stays in the page cache and is paged in when a
/// kernel first touches it, so opening a model costs a few MB of memory, not
/// its size.
pub fn open(path: impl AsRef<Path>) -> Result<Gguf<Mmap>> {
    open_with(path, OpenOptions::default())
}

/// Opens and parses the GGUF file at `path`, mapped or read into memory and
/// optionally locked, as `opts` say. Both ways give a [`Mmap`]: without
/// `mmap` it is an anonymous mapping (page-aligned, owned by this process,
/// not backed by the file) that the file is read into.
pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Gguf<Mmap>> {
    let path = path.as_ref();
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        // mmap of an empty file fails with EINVAL; report what `parse(&[])` reports.
        return Err(GgufError::Truncated {
            at: Location::Header,
            offset: 0,
            needed: 4,
            available: 0,
        });
    }
    let bytes = if opts.mmap {
        // SAFETY: the mapping is read-only and every access to it is
        // bounds-checked against its length. The contract Hearth states once
        // (ARCHITECTURE.md, "mmap"): a model file must not be modified or
        // truncated while it is open. If it is modified we may read
        // inconsistent bytes (every decode stays bounds-checked and fails
        // rather than misbehaves); if it is truncated the OS raises SIGBUS,
        // as it does for llama.cpp and every mmap-based loader (`hearth`
        // turns it into one line and exit code 74; `mmap: false` avoids it).
        unsafe { Mmap::map(&file) }.map_err(io)?
    } else {
        let len = usize::try_from(len).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "the file is larger than the address space",
            ))
        })?;
        let mut owned = memmap2::MmapMut::map_anon(len).map_err(io)?;
        // A file that shrank since `metadata` is an UnexpectedEof here.
        std::io::Read::read_exact(&mut file, &mut owned).map_err(io)?;
        owned.make_read_only().map_err(io)?
    };
    if opts.mlock {
        bytes.lock().map_err(|source| GgufError::Lock {
            path: path.to_path_buf(),
            len,
            source,
        })?;
    }
    Gguf::from_bytes(bytes)
}

/// Parses a GGUF file held in memory, without copying it.
pub fn parse(bytes: &[u8]) -> Result<Gguf<&[u8]>> {
    Gguf::from_bytes(bytes)
}
