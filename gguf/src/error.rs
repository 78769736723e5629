//! Every way a GGUF file can be rejected, each saying what was wrong and where.

use std::fmt;
use std::path::PathBuf;

use crate::{GgmlType, ValueType};

/// Where in the file a problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Header,
    /// The key of metadata entry `index` (0-based), not yet read.
    MetadataKey {
        index: u64,
    },
    /// The value of the metadata entry with this key.
    MetadataValue {
        key: String,
    },
    /// Tensor info `index` (0-based), with its name once read.
    TensorInfo {
        index: u64,
        name: Option<String>,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => f.write_str("the header"),
            Location::MetadataKey { index } => write!(f, "the key of metadata entry #{index}"),
            Location::MetadataValue { key } => write!(f, "metadata value {key:?}"),
            Location::TensorInfo { index, name: None } => write!(f, "tensor info #{index}"),
            Location::TensorInfo {
                index,
                name: Some(n),
            } => write!(f, "tensor info #{index} ({n:?})"),
        }
    }
}

/// A GGUF file could not be read, or a metadata lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot lock {} ({len} bytes) in memory: {source}; raise the limit on locked \
         memory (`ulimit -l`, RLIMIT_MEMLOCK; e.g. `ulimit -l unlimited` as root) or run without mlock",
        path.display()
    )]
    Lock {
        path: PathBuf,
        len: u64,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "not a GGUF file: it starts with {:?}, not \"GGUF\"",
        String::from_utf8_lossy(found)
    )]
    BadMagic { found: [u8; 4] },

    #[error("GGUF version 1 is not supported (it used 32-bit counts); re-convert the model with a current llama.cpp")]
    VersionOne,

    #[error("GGUF version {0} is not supported (Hearth reads versions 2 and 3)")]
    UnsupportedVersion(u32),

    #[error("big-endian GGUF files are not supported (version field reads {0:#010x})")]
    BigEndian(u32),

    #[error("file truncated in {at}: at byte {offset} it needs {needed} bytes but only {available} remain")]
    Truncated {
        at: Location,
        offset: u64,
        needed: u64,
        available: u64,
    },

    #[error("{at} at byte {offset}: {count} {what} cannot fit in the {available} bytes left in the file")]
    CountTooLarge {
        at: Location,
        offset: u64,
        what: &'static str,
        count: u64,
        available: u64,
    },

    #[error("{at} at byte {offset}: {what} is not valid UTF-8")]
    InvalidUtf8 {
        at: Location,
        offset: u64,
        what: &'static str,
    },

    #[error("{at} at byte {offset}: {reason}")]
    InvalidKey {
        at: Location,
        offset: u64,
        reason: &'static str,
    },

    #[error(
        "duplicate metadata key {key:?} at byte {offset} (first defined at byte {first_offset})"
    )]
    DuplicateKey {
        key: String,
        offset: u64,
        first_offset: u64,
    },

    #[error("{at} at byte {offset}: unknown value type id {type_id}")]
    UnknownValueType {
        at: Location,
        offset: u64,
        type_id: u32,
    },

    #[error("{at} at byte {offset}: a bool must be 0 or 1, found {value}")]
    InvalidBool {
        at: Location,
        offset: u64,
        value: u8,
    },

    #[error("{at} at byte {offset}: arrays nested deeper than {max} levels")]
    NestingTooDeep { at: Location, offset: u64, max: u32 },

    #[error("general.alignment at byte {offset} must be a u32, found {found}")]
    AlignmentType { offset: u64, found: ValueType },

    #[error("general.alignment = {value} at byte {offset}: must be a non-zero power of two")]
    BadAlignment { offset: u64, value: u32 },

    #[error("{at} at byte {offset}: tensor name {reason}")]
    InvalidTensorName {
        at: Location,
        offset: u64,
        reason: &'static str,
    },

    #[error("duplicate tensor name {name:?} in tensor info at byte {offset} (first at byte {first_offset})")]
    DuplicateTensor {
        name: String,
        offset: u64,
        first_offset: u64,
    },

    #[error("tensor {tensor:?} (info at byte {offset}): {n_dims} dimensions; must be 1 to 4")]
    BadDimCount {
        tensor: String,
        offset: u64,
        n_dims: u32,
    },

    #[error("tensor {tensor:?} (info at byte {offset}): shape {dims:?} {reason}")]
    BadShape {
        tensor: String,
        offset: u64,
        dims: Vec<u64>,
        reason: &'static str,
    },

    #[error("tensor {tensor:?} (info at byte {offset}): unknown ggml type id {type_id}")]
    UnknownTensorType {
        tensor: String,
        offset: u64,
        type_id: u32,
    },

    #[error("tensor {tensor:?} (info at byte {offset}): type {name} (id {type_id}) was removed from GGUF; re-convert the model")]
    RemovedTensorType {
        tensor: String,
        offset: u64,
        type_id: u32,
        name: &'static str,
    },

    #[error("tensor {tensor:?} (info at byte {offset}): row length {ne0} is not a multiple of the {ggml_type} block size {block_size}")]
    PartialBlock {
        tensor: String,
        offset: u64,
        ggml_type: GgmlType,
        ne0: u64,
        block_size: u64,
    },

    #[error("tensor {tensor:?}: data at offset {data_offset} must be a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        data_offset: u64,
        alignment: u64,
    },

    #[error("tensor {tensor:?}: data at offset {data_offset} of {size} bytes lies outside the {data_len}-byte data section (which starts at byte {data_start})")]
    TensorOutOfBounds {
        tensor: String,
        data_offset: u64,
        size: u64,
        data_start: u64,
        data_len: u64,
    },

    #[error("tensors {first:?} and {second:?} overlap: {first:?} ends at data offset {first_end}, {second:?} starts at {second_start}")]
    OverlappingTensors {
        first: String,
        second: String,
        first_end: u64,
        second_start: u64,
    },

    #[error("metadata key {key:?} not found")]
    MissingKey { key: String },

    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("metadata key {key:?}: value {value} does not fit in {expected}")]
    OutOfRange {
        key: String,
        expected: &'static str,
        value: String,
    },
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
