//! The parser: a bounds-checked cursor and the walk over header, metadata and
//! tensor infos.
//!
//! Every count, length, dimension, offset and size is checked with
//! overflow-safe arithmetic against the bytes actually left in the file
//! before it is used. Nothing is allocated from a count alone: metadata arrays
//! are validated in place and kept as byte ranges, and the only growing
//! collections (one entry per key and per tensor) grow as entries are parsed,
//! with a capacity reserved up front no larger than the file could hold.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{GgufError, Location, Result};
use crate::types::removed_type_name;
use crate::value::{ArrayRef, ValueRef, ValueType};
use crate::GgmlType;

pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
/// `GGUF_DEFAULT_ALIGNMENT` in the spec.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGUF spec: keys are at most 65535 bytes.
pub const MAX_KEY_LEN: u64 = 65535;
/// ggml's `GGML_MAX_NAME` is 64 including the NUL, so names have at most 63 bytes.
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; deeper nesting than this is only an attack on
/// the stack.
pub const MAX_ARRAY_DEPTH: u32 = 8;

/// Smallest encoding of one metadata entry: key length, a one-byte key, a
/// type id and a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Smallest encoding of one tensor info: name length, a one-byte name, n_dims,
/// one dimension, type id and offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// Not enough bytes: the low-level failure, given a [`Location`] by the caller.
#[derive(Debug)]
pub(crate) struct Short {
    offset: u64,
    needed: u64,
    available: u64,
}

impl Short {
    fn at(self, at: Location) -> GgufError {
        GgufError::Truncated {
            at,
            offset: self.offset,
            needed: self.needed,
            available: self.available,
        }
    }
}

/// A read position in a byte slice. Never reads past the end.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let available = self.remaining();
        if n > available {
            return Err(Short {
                offset: self.pos(),
                needed: n,
                available,
            });
        }
        // n <= available <= usize::MAX, so the cast and the slice are in range.
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Decodes one value of type `ty` from bytes the parser has already validated
/// (used by accessors and array iteration). Still bounds-checked: it fails
/// rather than panics if the bytes are not what the parser saw.
pub(crate) fn decode_value<'a>(cur: &mut Cursor<'a>, ty: ValueType) -> Result<ValueRef<'a>, Short> {
    Ok(match ty {
        ValueType::U8 => ValueRef::U8(cur.u8()?),
        ValueType::I8 => ValueRef::I8(cur.u8()? as i8),
        ValueType::U16 => ValueRef::U16(u16::from_le_bytes(cur.array()?)),
        ValueType::I16 => ValueRef::I16(i16::from_le_bytes(cur.array()?)),
        ValueType::U32 => ValueRef::U32(cur.u32()?),
        ValueType::I32 => ValueRef::I32(i32::from_le_bytes(cur.array()?)),
        ValueType::F32 => ValueRef::F32(f32::from_le_bytes(cur.array()?)),
        ValueType::Bool => ValueRef::Bool(cur.u8()? != 0),
        ValueType::U64 => ValueRef::U64(cur.u64()?),
        ValueType::I64 => ValueRef::I64(i64::from_le_bytes(cur.array()?)),
        ValueType::F64 => ValueRef::F64(f64::from_le_bytes(cur.array()?)),
        ValueType::String => {
            let n = cur.u64()?;
            ValueRef::String(cur.take(n)?)
        }
        ValueType::Array => {
            let elem_id = cur.u32()?;
            let len = cur.u64()?;
            let start = cur.rest();
            // An unknown element type cannot pass the parser; treat as empty.
            let elem = ValueType::from_id(elem_id).unwrap_or(ValueType::U8);
            for _ in 0..len {
                decode_value(cur, elem)?;
            }
            let used = start.len() - cur.rest().len();
            ValueRef::Array(ArrayRef {
                elem,
                len,
                payload: &start[..used],
            })
        }
    })
}

/// A metadata value as stored in the index: scalars inline, strings and
/// arrays as byte ranges of the file.
#[derive(Clone, Debug)]
pub(crate) enum RawValue {
    Scalar(ScalarValue),
    String(Range<usize>),
    Array {
        elem: ValueType,
        len: u64,
        payload: Range<usize>,
    },
}

/// [`ValueRef`] minus the borrowed variants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScalarValue(pub(crate) ValueRef<'static>);

impl RawValue {
    pub(crate) fn to_ref<'a>(&self, bytes: &'a [u8]) -> ValueRef<'a> {
        match self {
            RawValue::Scalar(s) => s.0,
            RawValue::String(r) => ValueRef::String(bytes.get(r.clone()).unwrap_or_default()),
            RawValue::Array { elem, len, payload } => match bytes.get(payload.clone()) {
                Some(p) => ValueRef::Array(ArrayRef {
                    elem: *elem,
                    len: *len,
                    payload: p,
                }),
                None => ValueRef::Array(ArrayRef {
                    elem: *elem,
                    len: 0,
                    payload: &[],
                }),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct KvEntry {
    pub(crate) key: String,
    /// File offset of the entry (its key length field).
    pub(crate) offset: u64,
    pub(crate) value: RawValue,
}

/// One tensor's description from the file's tensor info section, with its
/// data range resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// Dimensions in ggml order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    /// Offset of the data from the start of the data section, as stored.
    pub data_offset: u64,
    /// Size of the data in bytes, from the type and the dimensions.
    pub size: u64,
    /// File offset of this tensor info (its name length field).
    pub info_offset: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the dimensions; checked at parse).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of rows: elements divided by the row length `dims[0]`.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// The parsed index of a GGUF file: everything but the tensor data, which
/// stays in the file.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    pub(crate) version: u32,
    pub(crate) kvs: Vec<KvEntry>,
    pub(crate) kv_by_key: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_by_name: HashMap<String, usize>,
    pub(crate) alignment: u64,
    /// File offset of the data section.
    pub(crate) data_start: u64,
}

struct Parser<'a> {
    cur: Cursor<'a>,
}

impl<'a> Parser<'a> {
    fn string(&mut self, at: impl Fn() -> Location) -> Result<(u64, &'a [u8])> {
        let offset = self.cur.pos();
        let n = self.cur.u64().map_err(|s| s.at(at()))?;
        let bytes = self.cur.take(n).map_err(|s| s.at(at()))?;
        Ok((offset, bytes))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// what is left of the file: the guard before any loop or reservation
    /// driven by a count.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &'static str,
        at: impl Fn() -> Location,
    ) -> Result<()> {
        let available = self.cur.remaining();
        match count.checked_mul(min_size) {
            Some(n) if n <= available => Ok(()),
            _ => Err(GgufError::CountTooLarge {
                at: at(),
                offset: self.cur.pos(),
                what,
                count,
                available,
            }),
        }
    }

    fn value_type(&mut self, at: &impl Fn() -> Location) -> Result<ValueType> {
        let offset = self.cur.pos();
        let id = self.cur.u32().map_err(|s| s.at(at()))?;
        ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
            at: at(),
            offset,
            type_id: id,
        })
    }

    /// Parses and validates one value of type `ty`.
    fn value(&mut self, ty: ValueType, depth: u32, at: &impl Fn() -> Location) -> Result<RawValue> {
        let offset = self.cur.pos();
        let start = offset as usize;
        match ty {
            ValueType::String => {
                let (_, s) = self.string(at)?;
                Ok(RawValue::String(start + 8..start + 8 + s.len()))
            }
            ValueType::Array => {
                let elem = self.value_type(at)?;
                let len = self.cur.u64().map_err(|s| s.at(at()))?;
                let payload_start = self.cur.pos() as usize;
                self.array_elements(elem, len, depth + 1, at)?;
                Ok(RawValue::Array {
                    elem,
                    len,
                    payload: payload_start..self.cur.pos() as usize,
                })
            }
            ValueType::Bool => {
                let b = self.cur.u8().map_err(|s| s.at(at()))?;
                if b > 1 {
                    return Err(GgufError::InvalidBool {
                        at: at(),
                        offset,
                        value: b,
                    });
                }
                Ok(RawValue::Scalar(ScalarValue(ValueRef::Bool(b == 1))))
            }
            _ => {
                let raw = self
                    .cur
                    .take(ty.fixed_size().unwrap_or(0))
                    .map_err(|s| s.at(at()))?;
                // `raw` holds exactly one scalar of type `ty`, so this cannot fail.
                let v = decode_value(&mut Cursor::new(raw), ty).map_err(|s| s.at(at()))?;
                Ok(RawValue::Scalar(ScalarValue(scalar_static(v))))
            }
        }
    }

    /// Validates the `len` encoded elements of an array, without allocating.
    fn array_elements(
        &mut self,
        elem: ValueType,
        len: u64,
        depth: u32,
        at: &impl Fn() -> Location,
    ) -> Result<()> {
        if elem == ValueType::Array && depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep {
                at: at(),
                offset: self.cur.pos(),
                max: MAX_ARRAY_DEPTH,
            });
        }
        self.check_count(len, elem.min_encoded_size(), "array elements", at)?;
        match elem.fixed_size() {
            Some(size) => {
                let offset = self.cur.pos();
                // len * size <= remaining was checked just above.
                let bytes = self.cur.take(len * size).map_err(|s| s.at(at()))?;
                if elem == ValueType::Bool {
                    if let Some(i) = bytes.iter().position(|&b| b > 1) {
                        return Err(GgufError::InvalidBool {
                            at: at(),
                            offset: offset + i as u64,
                            value: bytes[i],
                        });
                    }
                }
            }
            None => {
                for _ in 0..len {
                    self.value(elem, depth, at)?;
                }
            }
        }
        Ok(())
    }
}

fn scalar_static(v: ValueRef<'_>) -> ValueRef<'static> {
    match v {
        ValueRef::U8(x) => ValueRef::U8(x),
        ValueRef::I8(x) => ValueRef::I8(x),
        ValueRef::U16(x) => ValueRef::U16(x),
        ValueRef::I16(x) => ValueRef::I16(x),
        ValueRef::U32(x) => ValueRef::U32(x),
        ValueRef::I32(x) => ValueRef::I32(x),
        ValueRef::F32(x) => ValueRef::F32(x),
        ValueRef::Bool(x) => ValueRef::Bool(x),
        ValueRef::U64(x) => ValueRef::U64(x),
        ValueRef::I64(x) => ValueRef::I64(x),
        ValueRef::F64(x) => ValueRef::F64(x),
        // Only called on scalar types.
        ValueRef::String(_) | ValueRef::Array(_) => ValueRef::U8(0),
    }
}

/// Parses the header, metadata and tensor infos of a GGUF file held in `bytes`,
/// and checks every tensor's data range against the data section.
pub(crate) fn parse_index(bytes: &[u8]) -> Result<Index> {
    let mut p = Parser {
        cur: Cursor::new(bytes),
    };
    let hdr = || Location::Header;

    let magic: [u8; 4] = p.cur.array().map_err(|s| s.at(hdr()))?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = p.cur.u32().map_err(|s| s.at(hdr()))?;
    match version {
        2 | 3 => {}
        1 => return Err(GgufError::VersionOne),
        v if v.swap_bytes() <= 3 && v.swap_bytes() >= 1 => return Err(GgufError::BigEndian(v)),
        v => return Err(GgufError::UnsupportedVersion(v)),
    }
    let n_tensors = p.cur.u64().map_err(|s| s.at(hdr()))?;
    let n_kv = p.cur.u64().map_err(|s| s.at(hdr()))?;
    p.check_count(n_kv, MIN_KV_BYTES, "metadata entries", hdr)?;
    p.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos", hdr)?;

    // Both counts are now bounded by file length / (14 or 33 bytes).
    let mut kvs: Vec<KvEntry> = Vec::with_capacity(n_kv as usize);
    let mut kv_by_key: HashMap<String, usize> = HashMap::with_capacity(n_kv as usize);
    for index in 0..n_kv {
        let at_key = || Location::MetadataKey { index };
        let (offset, key) = p.string(at_key)?;
        if key.is_empty() {
            return Err(GgufError::InvalidKey {
                at: at_key(),
                offset,
                reason: "the key is empty",
            });
        }
        if key.len() as u64 > MAX_KEY_LEN {
            return Err(GgufError::InvalidKey {
                at: at_key(),
                offset,
                reason: "the key is longer than 65535 bytes",
            });
        }
        let key = std::str::from_utf8(key).map_err(|_| GgufError::InvalidUtf8 {
            at: at_key(),
            offset: offset + 8,
            what: "the key",
        })?;
        if let Some(&first) = kv_by_key.get(key) {
            return Err(GgufError::DuplicateKey {
                key: key.to_string(),
                offset,
                first_offset: kvs[first].offset,
            });
        }
        let at_value = || Location::MetadataValue {
            key: key.to_string(),
        };
        let ty = p.value_type(&at_value)?;
        let value = p.value(ty, 0, &at_value)?;
        kv_by_key.insert(key.to_string(), kvs.len());
        kvs.push(KvEntry {
            key: key.to_string(),
            offset,
            value,
        });
    }

    let alignment = match kv_by_key.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => {
            let kv = &kvs[i];
            match kv.value.to_ref(bytes) {
                ValueRef::U32(a) if a != 0 && a.is_power_of_two() => u64::from(a),
                ValueRef::U32(a) => {
                    return Err(GgufError::BadAlignment {
                        offset: kv.offset,
                        value: a,
                    })
                }
                v => {
                    return Err(GgufError::AlignmentType {
                        offset: kv.offset,
                        found: v.value_type(),
                    })
                }
            }
        }
    };

    p.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos", hdr)?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut tensor_by_name: HashMap<String, usize> = HashMap::with_capacity(n_tensors as usize);
    for index in 0..n_tensors {
        let info_offset = p.cur.pos();
        let (_, name) = p.string(|| Location::TensorInfo { index, name: None })?;
        let bad_name = |reason| GgufError::InvalidTensorName {
            at: Location::TensorInfo { index, name: None },
            offset: info_offset,
            reason,
        };
        if name.is_empty() {
            return Err(bad_name("is empty"));
        }
        if name.len() as u64 > MAX_TENSOR_NAME_LEN {
            return Err(bad_name("is longer than 63 bytes (ggml's GGML_MAX_NAME)"));
        }
        let name = std::str::from_utf8(name).map_err(|_| bad_name("is not valid UTF-8"))?;
        if let Some(&first) = tensor_by_name.get(name) {
            return Err(GgufError::DuplicateTensor {
                name: name.to_string(),
                offset: info_offset,
                first_offset: tensors[first].info_offset,
            });
        }
        let at = || Location::TensorInfo {
            index,
            name: Some(name.to_string()),
        };
        let n_dims = p.cur.u32().map_err(|s| s.at(at()))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                tensor: name.to_string(),
                offset: info_offset,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(p.cur.u64().map_err(|s| s.at(at()))?);
        }
        let bad_shape = |dims: &[u64], reason| GgufError::BadShape {
            tensor: name.to_string(),
            offset: info_offset,
            dims: dims.to_vec(),
            reason,
        };
        if dims.contains(&0) {
            return Err(bad_shape(&dims, "has a zero dimension"));
        }
        // ggml counts elements in int64_t.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad_shape(&dims, "has more elements than fit in 63 bits"))?;
        let type_offset = p.cur.pos();
        let type_id = p.cur.u32().map_err(|s| s.at(at()))?;
        let ggml_type = match GgmlType::from_id(type_id) {
            Some(t) => t,
            None => {
                return Err(match removed_type_name(type_id) {
                    Some(removed) => GgufError::RemovedTensorType {
                        tensor: name.to_string(),
                        offset: type_offset,
                        type_id,
                        name: removed,
                    },
                    None => GgufError::UnknownTensorType {
                        tensor: name.to_string(),
                        offset: type_offset,
                        type_id,
                    },
                })
            }
        };
        if dims[0] % ggml_type.block_size() != 0 {
            return Err(GgufError::PartialBlock {
                tensor: name.to_string(),
                offset: info_offset,
                ggml_type,
                ne0: dims[0],
                block_size: ggml_type.block_size(),
            });
        }
        let size = (n_elements / ggml_type.block_size())
            .checked_mul(ggml_type.type_size())
            .ok_or_else(|| bad_shape(&dims, "has a byte size that overflows 64 bits"))?;
        let data_offset = p.cur.u64().map_err(|s| s.at(at()))?;
        tensor_by_name.insert(name.to_string(), tensors.len());
        tensors.push(TensorInfo {
            name: name.to_string(),
            ggml_type,
            dims,
            data_offset,
            size,
            info_offset,
        });
    }

    // The data section starts at the next multiple of the alignment.
    let file_len = bytes.len() as u64;
    let data_start = p.cur.pos().div_ceil(alignment) * alignment;
    let data_len = file_len.saturating_sub(data_start);
    if data_start > file_len && !tensors.is_empty() {
        return Err(Short {
            offset: p.cur.pos(),
            needed: data_start - p.cur.pos(),
            available: p.cur.remaining(),
        }
        .at(Location::Header));
    }
    for t in &tensors {
        if !t.data_offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                data_offset: t.data_offset,
                alignment,
            });
        }
        match t.data_offset.checked_add(t.size) {
            Some(end) if end <= data_len => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    data_offset: t.data_offset,
                    size: t.size,
                    data_start,
                    data_len,
                })
            }
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by_key(|&i| tensors[i].data_offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        // Both ranges were checked in bounds above, so the sum cannot overflow.
        let a_end = a.data_offset + a.size;
        if a_end > b.data_offset {
            return Err(GgufError::OverlappingTensors {
                first: a.name.clone(),
                second: b.name.clone(),
                first_end: a_end,
                second_start: b.data_offset,
            });
        }
    }

    Ok(Index {
        version,
        kvs,
        kv_by_key,
        tensors,
        tensor_by_name,
        alignment,
        data_start,
    })
}
