// ggml block_q3_K (110 bytes): u8 hmask[32], u8 qs[64], u8 scales[12] (16
// 6-bit scales, offset 32), f16 d. Chunk c (half n = c / 4, j = c % 4),
// value l < 32: q = ((qs[32n + l] >> 2j) & 3) - (bit c of hmask[l] ? 0 : 4),
// x = d * (scale[8n + 2j + l / 16] - 32) * q.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 110u;

// Scale i: low four bits from byte i (or the high nibble of byte i - 8),
// high two bits from byte 8 + i % 4 at bit 2 (i / 4).
fn scale3(s: u32, i: u32) -> f32 {
    var low: u32;
    if i < 8u {
        low = w_u8(s + i) & 15u;
    } else {
        low = w_u8(s + i - 8u) >> 4u;
    }
    let high = (w_u8(s + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return f32(i32(low | (high << 4u)) - 32);
}

fn dequant32(b: u32, c: u32) {
    let n = c / 4u;
    let j = c % 4u;
    let d = w_f16(b + 108u);
    for (var i = 0u; i < 8u; i++) {
        let sc = d * scale3(b + 96u, 8u * n + 2u * j + i / 4u);
        let q = (w_u32(b + 32u + 32u * n + 4u * i) >> (2u * j)) & 0x03030303u;
        let h = (w_u32(b + 4u * i) >> c) & 0x01010101u;
        dq[i] = sc * (u8x4(q) - 4.0 + 4.0 * u8x4(h));
    }
}
