// F16 weights: 32 values (64 bytes, word-aligned) per "block".
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn dequant32(b: u32, c: u32) {
    let o = b >> 2u;
    for (var i = 0u; i < 8u; i++) {
        dq[i] = vec4<f32>(unpack2x16float(w[o + 2u * i]), unpack2x16float(w[o + 2u * i + 1u]));
    }
}
