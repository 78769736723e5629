//! Metadata values: the type ids of the GGUF spec, borrowed views of values in
//! a parsed file ([`ValueRef`]), and owned values for the writer ([`Value`]).

use std::fmt;

/// The metadata value types of the GGUF spec (`gguf_metadata_value_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type with this id, if the spec defines it.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The id stored in the file.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// Encoded size of a scalar of this type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Smallest possible encoding of one value of this type: what a hostile
    /// count is checked against before anything is allocated for it.
    pub(crate) fn min_encoded_size(self) -> u64 {
        match self {
            // u64 length, possibly empty.
            ValueType::String => 8,
            // u32 element type + u64 count, possibly empty.
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value borrowed from a parsed file.
///
/// Strings are handed out as bytes: the GGUF spec says UTF-8, but llama.cpp
/// does not check value strings and some vocabularies hold raw bytes, so a
/// value is only required to be UTF-8 when it is read as a `&str`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a [u8]),
    Array(ArrayRef<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> ValueRef<'a> {
    pub fn value_type(&self) -> ValueType {
        match self {
            ValueRef::U8(_) => ValueType::U8,
            ValueRef::I8(_) => ValueType::I8,
            ValueRef::U16(_) => ValueType::U16,
            ValueRef::I16(_) => ValueType::I16,
            ValueRef::U32(_) => ValueType::U32,
            ValueRef::I32(_) => ValueType::I32,
            ValueRef::F32(_) => ValueType::F32,
            ValueRef::Bool(_) => ValueType::Bool,
            ValueRef::String(_) => ValueType::String,
            ValueRef::Array(_) => ValueType::Array,
            ValueRef::U64(_) => ValueType::U64,
            ValueRef::I64(_) => ValueType::I64,
            ValueRef::F64(_) => ValueType::F64,
        }
    }

    /// A description of the type for messages: `u32`, `array of string`.
    pub fn type_description(&self) -> String {
        match self {
            ValueRef::Array(a) => format!("array of {}", a.elem_type()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as an integer, whatever integer type stores it.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            ValueRef::U8(v) => v.into(),
            ValueRef::I8(v) => v.into(),
            ValueRef::U16(v) => v.into(),
            ValueRef::I16(v) => v.into(),
            ValueRef::U32(v) => v.into(),
            ValueRef::I32(v) => v.into(),
            ValueRef::U64(v) => v.into(),
            ValueRef::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as UTF-8 text, if it is a valid string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueRef::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An owned copy; `None` if a string in it is not UTF-8.
    pub fn to_value(&self) -> Option<Value> {
        Some(match *self {
            ValueRef::U8(v) => Value::U8(v),
            ValueRef::I8(v) => Value::I8(v),
            ValueRef::U16(v) => Value::U16(v),
            ValueRef::I16(v) => Value::I16(v),
            ValueRef::U32(v) => Value::U32(v),
            ValueRef::I32(v) => Value::I32(v),
            ValueRef::F32(v) => Value::F32(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::String(_) => Value::String(self.as_str()?.to_string()),
            ValueRef::Array(a) => Value::Array(
                a.elem_type(),
                a.iter().map(|v| v.to_value()).collect::<Option<Vec<_>>>()?,
            ),
            ValueRef::U64(v) => Value::U64(v),
            ValueRef::I64(v) => Value::I64(v),
            ValueRef::F64(v) => Value::F64(v),
        })
    }
}

impl fmt::Display for ValueRef<'_> {
    /// Scalars as written; strings quoted (lossily decoded); arrays summarised
    /// by type and length with their first few items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::U8(v) => write!(f, "{v}"),
            ValueRef::I8(v) => write!(f, "{v}"),
            ValueRef::U16(v) => write!(f, "{v}"),
            ValueRef::I16(v) => write!(f, "{v}"),
            ValueRef::U32(v) => write!(f, "{v}"),
            ValueRef::I32(v) => write!(f, "{v}"),
            ValueRef::F32(v) => write!(f, "{v}"),
            ValueRef::Bool(v) => write!(f, "{v}"),
            ValueRef::String(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            ValueRef::U64(v) => write!(f, "{v}"),
            ValueRef::I64(v) => write!(f, "{v}"),
            ValueRef::F64(v) => write!(f, "{v}"),
            ValueRef::Array(a) => {
                write!(f, "[{}; {}]", a.elem_type(), a.len())?;
                const SHOWN: usize = 5;
                if !a.is_empty() {
                    f.write_str(" [")?;
                    for (i, v) in a.iter().take(SHOWN).enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{v}")?;
                    }
                    if a.len() > SHOWN as u64 {
                        f.write_str(", ...")?;
                    }
                    f.write_str("]")?;
                }
                Ok(())
            }
        }
    }
}

/// An array value borrowed from a parsed file: its element type, its length,
/// and its encoded elements, decoded on demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayRef<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: u64,
    /// The encoded elements (everything after the element type and count).
    pub(crate) payload: &'a [u8],
}

impl<'a> ArrayRef<'a> {
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order. The parser validated the encoding, so every
    /// element decodes; should the bytes change underneath (a file modified
    /// while mapped), the iterator stops early rather than panicking.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            elem: self.elem,
            remaining: self.len,
            bytes: self.payload,
        }
    }
}

/// Iterator over the elements of an [`ArrayRef`].
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    elem: ValueType,
    remaining: u64,
    bytes: &'a [u8],
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut cur = crate::reader::Cursor::new(self.bytes);
        let v = crate::reader::decode_value(&mut cur, self.elem).ok()?;
        self.bytes = cur.rest();
        self.remaining -= 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, usize::try_from(self.remaining).ok())
    }
}

/// An owned metadata value, for writing files.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and elements; every element must be of that type.
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// An array of strings.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    /// An array of f32.
    pub fn f32s(items: impl IntoIterator<Item = f32>) -> Value {
        Value::Array(ValueType::F32, items.into_iter().map(Value::F32).collect())
    }

    /// An array of i32.
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Value {
        Value::Array(ValueType::I32, items.into_iter().map(Value::I32).collect())
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$v(x) }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

/// Conversion of a metadata value to a Rust type, for the typed accessors.
pub trait FromValue<'a>: Sized {
    /// The expected type, as named in error messages.
    const EXPECTED: &'static str;
    /// `Err(true)` when the type fits but the value is out of range,
    /// `Err(false)` when the type is wrong.
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool>;
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        /// Any integer type is accepted if the value fits: converters differ in
        /// the width they write counts with.
        impl<'a> FromValue<'a> for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
                let i = v.as_i128().ok_or(false)?;
                <$t>::try_from(i).map_err(|_| true)
            }
        }
    )*};
}
int_from_value!(u8, u16, u32, u64, i32, i64, usize);

impl<'a> FromValue<'a> for f32 {
    const EXPECTED: &'static str = "f32";
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
        match v {
            ValueRef::F32(x) => Ok(x),
            ValueRef::F64(x) => Ok(x as f32),
            _ => Err(false),
        }
    }
}

impl<'a> FromValue<'a> for f64 {
    const EXPECTED: &'static str = "f64";
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
        match v {
            ValueRef::F32(x) => Ok(x.into()),
            ValueRef::F64(x) => Ok(x),
            _ => Err(false),
        }
    }
}

impl<'a> FromValue<'a> for bool {
    const EXPECTED: &'static str = "bool";
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
        match v {
            ValueRef::Bool(b) => Ok(b),
            _ => Err(false),
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    const EXPECTED: &'static str = "string (UTF-8)";
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
        match v {
            ValueRef::String(_) => v.as_str().ok_or(true),
            _ => Err(false),
        }
    }
}

impl<'a> FromValue<'a> for ArrayRef<'a> {
    const EXPECTED: &'static str = "array";
    fn from_value(v: ValueRef<'a>) -> Result<Self, bool> {
        match v {
            ValueRef::Array(a) => Ok(a),
            _ => Err(false),
        }
    }
}
