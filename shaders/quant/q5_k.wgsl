// ggml block_q5_K (176 bytes): f16 d, f16 dmin, u8 scales[12] (as Q4_K),
// u8 qh[32], u8 qs[128]. Chunk c: the nibbles of Q4_K's layout plus bit c of
// qh[l] as the fifth bit; x = d * sc * q - dmin * m.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if j < 4u {
        return vec2<f32>(f32(w_u8(s + j) & 63u), f32(w_u8(s + j + 4u) & 63u));
    }
    let sc = (w_u8(s + j + 4u) & 15u) | ((w_u8(s + j - 4u) >> 6u) << 4u);
    let m = (w_u8(s + j + 4u) >> 4u) | ((w_u8(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn dequant32(b: u32, c: u32) {
    let sm = scale_min_k4(b + 4u, c);
    let d = w_f16(b) * sm.x;
    let m = w_f16(b + 2u) * sm.y;
    let qs = b + 48u + 32u * (c / 2u);
    let shift = (c & 1u) * 4u;
    for (var i = 0u; i < 8u; i++) {
        let lo = (w_u32(qs + 4u * i) >> shift) & 0x0f0f0f0fu;
        let hi = ((w_u32(b + 16u + 4u * i) >> c) & 0x01010101u) << 4u;
        dq[i] = d * u8x4(lo | hi) - m;
    }
}
