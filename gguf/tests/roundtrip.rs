//! Write → parse → identical, for hand-picked and generated files.

mod common;

use common::{sample, sample_writer};
use hearth_gguf::{parse, GgmlType, GgufError, GgufWriter, Value, ValueRef, ValueType};
use proptest::prelude::*;

#[test]
fn sample_round_trips_metadata_tensors_and_bytes() {
    let w = sample_writer();
    let (bytes, layout) = sample();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.data_start(), layout.data_start);
    assert_eq!(g.metadata_len(), layout.kv_offsets.len());
    assert_eq!(g.tensor_infos().len(), 4);

    // Every value comes back as written.
    let rewritten = GgufWriter::from_gguf(&g).unwrap();
    assert_eq!(
        rewritten.to_bytes().unwrap(),
        bytes,
        "write(parse(write(x))) == write(x)"
    );

    // Typed accessors.
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(
        g.get_u32("llama.context_length").unwrap(),
        128,
        "u64 value read as u32"
    );
    assert_eq!(
        g.get_u64("llama.embedding_length").unwrap(),
        64,
        "i32 value read as u64"
    );
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(
        g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(),
        1e-5
    );
    assert!(g.get_bool("test.bool").unwrap());
    assert_eq!(g.get_as::<i64>("test.i64").unwrap(), -5_000_000_000);
    assert_eq!(g.get("test.i16"), Some(ValueRef::I16(-300)));
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["<unk>", "<s>", "</s>", "▁hi", "é", ""]
    );
    assert_eq!(g.get_f32_array("tokenizer.ggml.scores").unwrap()[3], -1.5);
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        [2, 3, 3, 1, 1, 1]
    );
    let nested = g.get_array("test.nested").unwrap();
    assert_eq!(nested.elem_type(), ValueType::Array);
    let inner: Vec<_> = nested.iter().collect();
    assert_eq!(inner.len(), 3);
    match inner[0] {
        ValueRef::Array(a) => assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [ValueRef::U16(1), ValueRef::U16(2)]
        ),
        v => panic!("expected an array, got {v:?}"),
    }

    // Tensors are slices of the input, at the offsets written, with the data written.
    for (i, t) in g.tensors().enumerate() {
        assert_eq!(t.info.data_offset, layout.tensor_data_offsets[i]);
        let start = (layout.data_start + t.info.data_offset) as usize;
        assert_eq!(
            t.data.as_ptr(),
            bytes[start..].as_ptr(),
            "zero-copy: {}",
            t.info.name
        );
        assert_eq!(t.data.len() as u64, t.info.size);
    }
    let q4k = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        (q4k.info.ggml_type, q4k.info.dims.as_slice(), q4k.info.size),
        (GgmlType::Q4_K, &[256u64, 3][..], 432)
    );
    assert_eq!(q4k.info.n_rows(), 3);
    assert!(g.tensor("missing").is_none());
    // Unchanged writer gives the same bytes twice.
    assert_eq!(w.to_bytes().unwrap(), bytes);
}

#[test]
fn accessor_errors_name_the_key_and_the_types() {
    let (bytes, _) = sample();
    let g = parse(&bytes).unwrap();
    let e = g.get_u32("llama.nope").unwrap_err();
    assert!(
        matches!(&e, GgufError::MissingKey { key } if key == "llama.nope"),
        "{e}"
    );
    let e = g.get_u32("general.name").unwrap_err();
    assert!(
        matches!(&e, GgufError::WrongType { key, expected: "u32", found } if key == "general.name" && found == "string"),
        "{e}"
    );
    let e = g.get_u32("test.i64").unwrap_err();
    assert!(
        matches!(&e, GgufError::OutOfRange { key, .. } if key == "test.i64"),
        "{e}"
    );
    assert!(e.to_string().contains("-5000000000"), "{e}");
    let e = g.get_str_array("tokenizer.ggml.scores").unwrap_err();
    assert!(
        e.to_string().contains("tokenizer.ggml.scores")
            && e.to_string().contains("array of string"),
        "{e}"
    );
    let e = g.get_str("tokenizer.ggml.tokens").unwrap_err();
    assert!(e.to_string().contains("array of string"), "{e}");
    assert_eq!(g.get_opt_as::<u32>("absent").unwrap(), None);
}

#[test]
fn gguf_v2_and_empty_files_round_trip() {
    let mut w = GgufWriter::new();
    w.version(2).kv("general.architecture", "x");
    let bytes = w.to_bytes().unwrap();
    let g = parse(&bytes).unwrap();
    assert_eq!((g.version(), g.tensor_infos().len()), (2, 0));

    let empty = GgufWriter::new().to_bytes().unwrap();
    assert_eq!(
        empty.len(),
        32,
        "24-byte header padded to the alignment, as llama.cpp writes it"
    );
    let g = parse(&empty).unwrap();
    assert_eq!((g.metadata_len(), g.tensor_infos().len()), (0, 0));
}

#[test]
fn writer_rejects_what_it_cannot_write_validly() {
    let mut w = GgufWriter::new();
    w.tensor("t", GgmlType::Q4_K, &[100], vec![0; 144]);
    assert!(
        w.to_bytes().is_err(),
        "row of 100 is not a whole Q4_K block"
    );
    let mut w = GgufWriter::new();
    w.tensor("t", GgmlType::F32, &[4], vec![0; 15]);
    assert!(matches!(
        w.to_bytes(),
        Err(hearth_gguf::WriteError::DataSize {
            expected: 16,
            found: 15,
            ..
        })
    ));
    let mut w = GgufWriter::new();
    w.kv("a", 1u8).kv("a", 2u8);
    assert!(matches!(
        w.to_bytes(),
        Err(hearth_gguf::WriteError::DuplicateKey(_))
    ));
    let mut w = GgufWriter::new();
    w.kv("a", Value::Array(ValueType::U8, vec![Value::U16(1)]));
    assert!(matches!(
        w.to_bytes(),
        Err(hearth_gguf::WriteError::MixedArray { .. })
    ));
    let mut w = GgufWriter::new();
    w.kv("general.alignment", 48u32);
    assert!(matches!(
        w.to_bytes(),
        Err(hearth_gguf::WriteError::BadAlignment)
    ));
}

#[test]
fn custom_alignment_places_data_on_its_boundaries() {
    let mut w = GgufWriter::new();
    w.kv("general.alignment", 256u32)
        .tensor("a", GgmlType::F32, &[3], vec![1; 12])
        .tensor("b", GgmlType::Q8_0, &[32], vec![2; 34]);
    let (bytes, layout) = w.to_bytes_with_layout().unwrap();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.alignment(), 256);
    assert_eq!(g.data_start() % 256, 0);
    assert_eq!(layout.tensor_data_offsets, [0, 256]);
    assert_eq!(g.tensor("b").unwrap().data, &[2u8; 34][..]);
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        // Finite floats: NaN != NaN would make equality checks meaningless.
        (-1e30f32..1e30).prop_map(Value::F32),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        (-1e300f64..1e300).prop_map(Value::F64),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 32, 6, |inner| {
        (inner, 0usize..6).prop_map(|(v, n)| Value::Array(v.value_type(), vec![v; n]))
    })
}

const TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
];

proptest! {
    #[test]
    fn generated_files_round_trip(
        kvs in proptest::collection::btree_map("[a-z.]{1,20}", value(), 0..12),
        tensors in proptest::collection::vec((0..TYPES.len(), 1u64..3, 1u64..4, any::<u8>()), 0..6),
        align_log2 in 0u32..9,
    ) {
        let mut w = GgufWriter::new();
        for (k, v) in &kvs {
            if k != "general.alignment" {
                w.kv(k.clone(), v.clone());
            }
        }
        w.kv("general.alignment", 1u32 << align_log2);
        for (i, &(ti, blocks, rows, fill)) in tensors.iter().enumerate() {
            let t = TYPES[ti];
            let ne0 = blocks * t.block_size();
            let size = t.row_bytes(ne0).unwrap() * rows;
            w.tensor(format!("t{i}"), t, &[ne0, rows], vec![fill; size as usize]);
        }
        let bytes = w.to_bytes().unwrap();
        let g = parse(&bytes).unwrap();
        let again = GgufWriter::from_gguf(&g).unwrap().to_bytes().unwrap();
        prop_assert_eq!(&again, &bytes);
        for (k, v) in &kvs {
            if k != "general.alignment" {
                let got = g.get(k).and_then(|r| r.to_value());
                prop_assert_eq!(got.as_ref(), Some(v));
            }
        }
        for (i, &(_, _, _, fill)) in tensors.iter().enumerate() {
            let t = g.tensor(&format!("t{i}")).unwrap();
            prop_assert!(t.data.iter().all(|&b| b == fill));
        }
    }
}
