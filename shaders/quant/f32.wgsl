// F32 weights: 32 values (128 bytes, always word-aligned) per "block".
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

fn dequant32(b: u32, c: u32) {
    let o = b >> 2u;
    for (var i = 0u; i < 8u; i++) {
        dq[i] = vec4<f32>(bitcast<f32>(w[o + 4u * i]), bitcast<f32>(w[o + 4u * i + 1u]), bitcast<f32>(w[o + 4u * i + 2u]), bitcast<f32>(w[o + 4u * i + 3u]));
    }
}
