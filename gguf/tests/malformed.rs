//! Hostile and broken files, built byte by byte: each must be rejected with a
//! typed error that says what and where, never a panic or a huge allocation.
//! Several cases pin the classes of bug behind llama.cpp's GGUF CVEs
//! (CVE-2024-21802: unchecked tensor counts; CVE-2024-23605: string lengths
//! overflowing allocation; CVE-2025-53630: integer overflow in data sizes).

mod common;

use common::{sample, Raw};
use hearth_gguf::{parse, GgufError, Location};

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(_) => panic!("parse accepted a malformed file"),
        Err(e) => {
            // Every error renders to a message without panicking.
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn set_u32(b: &mut [u8], at: u64, v: u32) {
    b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u64(b: &mut [u8], at: u64, v: u64) {
    b[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn truncated_at_every_byte_is_an_error() {
    let (bytes, layout) = sample();
    for cut in 0..bytes.len() {
        let e = err(&bytes[..cut]);
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::TensorOutOfBounds { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
    // Cut inside the last entry of a section (where the header's counts still
    // fit the bytes left), the error says which entry.
    let last_kv = layout.kv_offsets.len() as u64 - 1;
    let e = err(&bytes[..*layout.kv_offsets.last().unwrap() as usize + 3]);
    assert!(
        matches!(e, GgufError::Truncated { at: Location::MetadataKey { index }, .. } if index == last_kv),
        "{e}"
    );
    let e = err(&bytes[..*layout.tensor_info_offsets.last().unwrap() as usize + 30]);
    assert!(
        matches!(&e, GgufError::Truncated { at: Location::TensorInfo { index: 3, name: Some(n) }, .. } if n == "blk.0.attn_q.weight"),
        "{e}"
    );
    let e = err(&bytes[..layout.data_start as usize + 1]);
    assert!(
        matches!(&e, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "token_embd.weight"),
        "{e}"
    );
    assert!(matches!(
        err(&bytes[..10]),
        GgufError::Truncated {
            at: Location::Header,
            offset: 8,
            needed: 8,
            available: 2
        }
    ));
}

#[test]
fn bad_magic_and_versions() {
    assert!(matches!(err(b"GGML\x03\0\0\0"), GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(matches!(
        err(&Raw::header(1, 0, 0).0),
        GgufError::VersionOne
    ));
    assert!(matches!(
        err(&Raw::header(4, 0, 0).0),
        GgufError::UnsupportedVersion(4)
    ));
    assert!(matches!(
        err(&Raw::header(0, 0, 0).0),
        GgufError::UnsupportedVersion(0)
    ));
    assert!(matches!(
        err(&Raw::header(3u32.swap_bytes(), 0, 0).0),
        GgufError::BigEndian(_)
    ));
    assert!(err(&Raw::header(1, 0, 0).0)
        .to_string()
        .contains("version 1"));
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    // CVE-2024-21802 class: counts that promise more entries than the file holds.
    let e = err(&Raw::header(3, 0, u64::MAX).0);
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                what: "metadata entries",
                count: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    let e = err(&Raw::header(3, u64::MAX / 2, 0).0);
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                what: "tensor infos",
                ..
            }
        ),
        "{e}"
    );
    // A count that fits the header check but not what is left after metadata.
    let mut r = Raw::header(3, 2, 1);
    r.kv(b"k", 8).str(&[b'x'; 60]);
    let e = err(&r.0);
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                what: "tensor infos",
                ..
            } | GgufError::Truncated { .. }
        ),
        "{e}"
    );

    // CVE-2024-23605 class: a string length near u64::MAX.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).bytes(b"key").zeros(16);
    let e = err(&r.0);
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                at: Location::MetadataKey { index: 0 },
                offset: 32,
                needed: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"general.name", 8).u64(1 << 62).bytes(b"abc");
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::Truncated { at: Location::MetadataValue { key }, .. } if key == "general.name"),
        "{e}"
    );

    // Arrays: huge element counts of every element kind, and of nested arrays.
    for (elem, what) in [(4u32, "u32"), (8, "string"), (9, "array"), (7, "bool")] {
        let mut r = Raw::header(3, 0, 1);
        r.kv(b"arr", 9).u32(elem).u64(u64::MAX / 3).zeros(64);
        let e = err(&r.0);
        assert!(
            matches!(&e, GgufError::CountTooLarge { what: "array elements", at: Location::MetadataValue { key }, .. } if key == "arr"),
            "{what}: {e}"
        );
    }
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"arr", 9).u32(9).u64(1).u32(8).u64(1 << 40).zeros(32);
    assert!(matches!(
        err(&r.0),
        GgufError::CountTooLarge {
            what: "array elements",
            ..
        }
    ));
}

#[test]
fn arrays_nested_too_deep_are_rejected_without_recursing_forever() {
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"deep", 9);
    for _ in 0..10_000 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::NestingTooDeep { max: 8, at: Location::MetadataValue { key }, .. } if key == "deep"),
        "{e}"
    );
    // Eight levels are fine.
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"ok", 9);
    for _ in 0..7 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(1).u8(5);
    assert!(parse(&r.0).is_ok());
}

#[test]
fn keys_must_be_nonempty_unique_utf8() {
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"bad\xff\xfekey", 4).u32(1);
    let e = err(&r.0);
    assert!(
        matches!(
            e,
            GgufError::InvalidUtf8 {
                at: Location::MetadataKey { index: 0 },
                offset: 32,
                ..
            }
        ),
        "{e}"
    );

    let mut r = Raw::header(3, 0, 1);
    r.kv(b"", 4).u32(1);
    assert!(matches!(
        err(&r.0),
        GgufError::InvalidKey {
            reason: "the key is empty",
            ..
        }
    ));

    let mut r = Raw::header(3, 0, 1);
    r.kv(&vec![b'k'; 70_000], 4).u32(1);
    assert!(matches!(err(&r.0), GgufError::InvalidKey { .. }));

    let mut r = Raw::header(3, 0, 2);
    r.kv(b"general.name", 8)
        .str(b"a")
        .kv(b"general.name", 8)
        .str(b"b");
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::DuplicateKey { key, offset: 57, first_offset: 24 } if key == "general.name"),
        "{e}"
    );
}

#[test]
fn wrong_value_types_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"k", 13).u32(0);
    assert!(matches!(
        err(&r.0),
        GgufError::UnknownValueType { type_id: 13, .. }
    ));
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"k", 9).u32(99).u64(0);
    assert!(matches!(
        err(&r.0),
        GgufError::UnknownValueType { type_id: 99, .. }
    ));
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"flag", 7).u8(2);
    assert!(matches!(err(&r.0), GgufError::InvalidBool { value: 2, .. }));
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"flags", 9).u32(7).u64(3).bytes(&[1, 0, 9]);
    assert!(matches!(
        err(&r.0),
        GgufError::InvalidBool {
            value: 9,
            offset: 55,
            ..
        }
    ));
}

#[test]
fn alignment_must_be_a_u32_power_of_two() {
    for bad in [0u32, 3, 48, 0x8000_0001] {
        let mut r = Raw::header(3, 0, 1);
        r.kv(b"general.alignment", 4).u32(bad);
        let e = err(&r.0);
        assert!(
            matches!(e, GgufError::BadAlignment { value, offset: 24 } if value == bad),
            "{e}"
        );
    }
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"general.alignment", 10).u64(32);
    assert!(matches!(err(&r.0), GgufError::AlignmentType { .. }));
    // The largest legal alignment parses.
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"general.alignment", 4).u32(1 << 31);
    assert_eq!(parse(&r.0).unwrap().alignment(), 1 << 31);
}

/// One tensor info in an otherwise valid file with 32 bytes of data.
fn one_tensor(name: &[u8], dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor(name, dims, type_id, offset).pad(32).zeros(32);
    r.0
}

#[test]
fn tensor_infos_are_checked() {
    assert!(
        parse(&one_tensor(b"w", &[8], 0, 0)).is_ok(),
        "the base case is valid"
    );
    let e = err(&one_tensor(b"w", &[8, 1, 1, 1, 1], 0, 0));
    assert!(
        matches!(&e, GgufError::BadDimCount { tensor, n_dims: 5, offset: 24 } if tensor == "w"),
        "{e}"
    );
    assert!(matches!(
        err(&one_tensor(b"w", &[], 0, 0)),
        GgufError::BadDimCount { n_dims: 0, .. }
    ));
    assert!(matches!(
        err(&one_tensor(b"w", &[8, 0], 0, 0)),
        GgufError::BadShape {
            reason: "has a zero dimension",
            ..
        }
    ));
    // CVE-2025-53630 class: element counts and byte sizes that overflow.
    let e = err(&one_tensor(b"w", &[1 << 32, 1 << 32], 0, 0));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    let e = err(&one_tensor(b"w", &[1 << 62], 0, 0));
    assert!(
        matches!(e, GgufError::BadShape { .. }),
        "4 bytes x 2^62 overflows: {e}"
    );
    let e = err(&one_tensor(b"w", &[8], 1000, 0));
    assert!(
        matches!(&e, GgufError::UnknownTensorType { tensor, type_id: 1000, .. } if tensor == "w"),
        "{e}"
    );
    let e = err(&one_tensor(b"w", &[32], 31, 0));
    assert!(
        matches!(
            e,
            GgufError::RemovedTensorType {
                name: "Q4_0_4_4",
                ..
            }
        ),
        "{e}"
    );
    let e = err(&one_tensor(b"w", &[100], 12, 0));
    assert!(
        matches!(
            e,
            GgufError::PartialBlock {
                ne0: 100,
                block_size: 256,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        err(&one_tensor(b"", &[8], 0, 0)),
        GgufError::InvalidTensorName { .. }
    ));
    assert!(matches!(
        err(&one_tensor(b"w\xc3", &[8], 0, 0)),
        GgufError::InvalidTensorName { .. }
    ));
    assert!(matches!(
        err(&one_tensor(&[b'n'; 64], &[8], 0, 0)),
        GgufError::InvalidTensorName { .. }
    ));
    assert!(
        parse(&one_tensor(&[b'n'; 63], &[8], 0, 0)).is_ok(),
        "63 bytes is ggml's limit"
    );
}

#[test]
fn tensor_data_must_be_in_bounds_aligned_and_disjoint() {
    let e = err(&one_tensor(b"w", &[16], 0, 0));
    assert!(
        matches!(&e, GgufError::TensorOutOfBounds { tensor, size: 64, data_len: 32, .. } if tensor == "w"),
        "{e}"
    );
    let e = err(&one_tensor(b"w", &[8], 0, 16));
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                data_offset: 16,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    let e = err(&one_tensor(b"w", &[8], 0, u64::MAX - 31));
    assert!(
        matches!(e, GgufError::TensorOutOfBounds { .. }),
        "offset + size overflows: {e}"
    );

    let mut r = Raw::header(3, 2, 0);
    r.tensor(b"a", &[16], 0, 0)
        .tensor(b"b", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    let e = err(&r.0);
    assert!(
        matches!(&e, GgufError::OverlappingTensors { first, second, first_end: 64, second_start: 32 } if first == "a" && second == "b"),
        "{e}"
    );
    let mut r = Raw::header(3, 2, 0);
    r.tensor(b"a", &[8], 0, 0)
        .tensor(b"a", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(err(&r.0), GgufError::DuplicateTensor { .. }));
    // Out of order but disjoint is fine.
    let mut r = Raw::header(3, 2, 0);
    r.tensor(b"a", &[8], 0, 32)
        .tensor(b"b", &[8], 0, 0)
        .pad(32)
        .zeros(64);
    assert!(parse(&r.0).is_ok());
}

#[test]
fn patched_sample_offsets_are_caught() {
    let (bytes, layout) = sample();
    // Point the second tensor's data offset past the end of the file.
    let ti = layout.tensor_info_offsets[1] as usize;
    let name_len = u64::from_le_bytes(bytes[ti..ti + 8].try_into().unwrap());
    let n_dims_at = ti as u64 + 8 + name_len;
    let offset_at = n_dims_at + 4 + 8 + 4; // one dimension, then the type
    let mut b = bytes.clone();
    set_u64(&mut b, offset_at, 1 << 40);
    assert!(
        matches!(err(&b), GgufError::TensorOutOfBounds { ref tensor, .. } if tensor == "output_norm.weight")
    );
    // Claim four dimensions where there is one: the infos misparse and fail typed.
    let mut b = bytes.clone();
    set_u32(&mut b, n_dims_at, 4);
    err(&b);
}

#[test]
fn errors_name_what_and_where() {
    let mut r = Raw::header(3, 0, 1);
    r.kv(b"general.name", 8).u64(1 << 40);
    let msg = err(&r.0).to_string();
    assert!(
        msg.contains("general.name") && msg.contains("byte 56"),
        "{msg}"
    );
    let msg = err(&one_tensor(b"blk.0.attn_q.weight", &[100], 12, 0)).to_string();
    assert!(
        msg.contains("blk.0.attn_q.weight") && msg.contains("Q4_K") && msg.contains("byte 24"),
        "{msg}"
    );
}
