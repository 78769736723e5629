//! Fuzz target: `hearth_gguf::parse` on arbitrary bytes must return Ok or a
//! typed error, never panic, and a parsed file must be fully usable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = hearth_gguf::parse(data) else { return };
    for (key, v) in g.metadata() {
        let _ = v.to_string();
        let _ = v.to_value();
        let _ = g.get_u32(key);
        let _ = g.get_str_array(key);
    }
    let mut total = 0u64;
    for t in g.tensors() {
        assert_eq!(t.data.len() as u64, t.info.size);
        total += t.info.size;
    }
    assert!(total <= data.len() as u64);
});
