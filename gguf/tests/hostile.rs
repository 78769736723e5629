//! Random corruption of a valid file must never panic, and parsing must never
//! allocate more than a small multiple of the bytes it was given, whatever
//! the header claims. A counting allocator watches every allocation.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::Deref;

use common::{sample, Raw};
use hearth_gguf::{parse, Gguf, GgufWriter, ValueRef};
use proptest::prelude::*;

/// Tracks the largest single allocation made by the current thread.
struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the bookkeeping only
// touches a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Watch {
    /// # Safety
    /// As [`GlobalAlloc::alloc`]; forwarded to [`System`].
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    /// # Safety
    /// As [`GlobalAlloc::dealloc`]; forwarded to [`System`].
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    /// # Safety
    /// As [`GlobalAlloc::realloc`]; forwarded to [`System`].
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(new_size)));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static WATCH: Watch = Watch;

/// The bound the parser promises: one index entry per metadata key or tensor
/// actually present, each at most 8x its smallest encoding, plus a constant.
fn allocation_bound(len: usize) -> usize {
    8 * len + 4096
}

/// Parses and, on success, reads everything a caller could; returns the
/// largest allocation parsing made.
fn parse_and_use(bytes: &[u8]) -> usize {
    LARGEST.with(|l| l.set(0));
    let parsed = parse(bytes);
    let largest = LARGEST.with(|l| l.get());
    if let Ok(g) = parsed {
        use_everything(&g);
    }
    largest
}

fn use_everything<B: Deref<Target = [u8]>>(g: &Gguf<B>) {
    let mut total = 0u64;
    for (key, v) in g.metadata() {
        let _ = v.to_string();
        let _ = v.to_value();
        if let ValueRef::Array(a) = v {
            assert!(a.iter().count() as u64 <= a.len());
        }
        let _ = g.get_u32(key);
        let _ = g.get_f32(key);
        let _ = g.get_str(key);
        let _ = g.get_str_array(key);
        let _ = g.get_i32_array(key);
    }
    for t in g.tensors() {
        assert_eq!(t.data.len() as u64, t.info.size, "{}", t.info.name);
        total += t.info.size;
    }
    assert!(total <= g.bytes().len() as u64);
    let _ = GgufWriter::from_gguf(g).map(|w| w.to_bytes());
}

#[derive(Clone, Debug)]
enum Mutation {
    SetByte(usize, u8),
    SetU64(usize, u64),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 32),
        Just(1 << 63),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, v)| Mutation::SetU64(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match *m {
        Mutation::SetByte(i, b) if !bytes.is_empty() => bytes[i % len] = b,
        Mutation::SetU64(i, v) if bytes.len() >= 8 => {
            let at = i % (bytes.len() - 7);
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Insert(i, ref b) => {
            let at = i % len;
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete(i, n) if !bytes.is_empty() => {
            let at = i % bytes.len();
            bytes.drain(at..(at + n).min(bytes.len()));
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_files_never_panic_or_over_allocate(muts in proptest::collection::vec(mutation(), 1..6)) {
        let (mut bytes, _) = sample();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let largest = parse_and_use(&bytes);
        prop_assert!(largest <= allocation_bound(bytes.len()), "allocated {largest} for {} bytes", bytes.len());
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        n_tensors in prop_oneof![0u64..4, any::<u64>()],
        n_kv in prop_oneof![0u64..4, any::<u64>()],
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut r = Raw::header(3, n_tensors, n_kv);
        r.bytes(&body);
        let largest = parse_and_use(&r.0);
        prop_assert!(largest <= allocation_bound(r.0.len()));
    }
}

#[test]
fn header_claiming_billions_of_entries_allocates_nothing_large() {
    for (n_tensors, n_kv) in [(0, 1 << 40), (1 << 40, 0), (u64::MAX, u64::MAX)] {
        let mut r = Raw::header(3, n_tensors, n_kv);
        r.zeros(1000);
        let largest = parse_and_use(&r.0);
        assert!(
            largest <= 4096,
            "claimed ({n_tensors}, {n_kv}): allocated {largest}"
        );
    }
}
